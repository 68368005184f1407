"""What a kernel request returns: the NNGP and NTK between two sets of points."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Kernels(NamedTuple):
    """The NNGP kernel Σ(x1, x2) and the neural tangent kernel Θ(x1, x2), each (N1, N2) float64; per
    output pixel, (N1, N2, *S), for a network with ``readout = none`` (kernel-math.md §1)."""

    nngp: np.ndarray
    ntk: np.ndarray
