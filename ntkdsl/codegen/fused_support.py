"""The text of fused modules (:mod:`.fused`, :mod:`.fused_spatial`) around their loops: the run-time
routines they carry (:mod:`.fused_routines`, :mod:`.fused_spatial_routines`, the ELU dual's wedge
integrals of :mod:`ntkdsl.arraycode.wedge_support`) and the head of their ``kernels()``.
"""

from __future__ import annotations

from typing import Iterable

from ..arraycode import wedge_support
from . import fused_routines, fused_spatial_routines
from .emit import POINTS_AND_DTYPE

_SCALAR = fused_routines.SCALAR_HELPERS
_NEEDS = {"asin": ("atan2",)}


def scalar_helpers(names: Iterable[str]) -> str:
    """The source of the scalar helpers the loop body calls (and those they call), in a fixed order;
    ``wedge_support``: the ELU dual's wedge integrals (numba functions, not vectorised: loops)."""
    wanted = set(names)
    for name in list(wanted):
        wanted.update(_NEEDS.get(name, ()))
    parts = [fused_routines.source(f) for name, f in _SCALAR.items() if name in wanted]
    if "wedge_support" in wanted:
        parts.append(wedge_support.scalar_source())
    return "".join("\n\n" + part for part in parts)


def array_helpers(d: int) -> str:
    """The NumPy-side helpers of a fused vector module (the Gram matrix x1·x2ᵀ/d reads d from its inputs)."""
    return fused_routines.source(fused_routines._gram, fused_routines._stack) + "\n\n" + fused_routines.common_source()


PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64, params=None, progress=None):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {d}).
        x2: inputs, shape (N2, {d}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32: the Gram matrix, the layers' arithmetic and the results
            (float32 keeps perp and the ELU wedge integrals in float64; ntkdsl/codegen/fused.py).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.
        progress: None, or a thread-safe callable progress(n) that every worker thread calls
            after each block of n rows (ntkdsl.progress.pair_progress.advance; see progress_steps).

    Returns:
        (nngp, ntk): arrays of shape (N1, N2) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
''' + POINTS_AND_DTYPE + '''    if x1.shape[0] == 0 or x2.shape[0] == 0:  # no pair (BLAS refuses empty matrices)
        return xp.zeros((x1.shape[0], x2.shape[0]), dtype=dtype), xp.zeros((x1.shape[0], x2.shape[0]), dtype=dtype)
    # input: Σ⁰(x, x') = x·x'/d, Θ⁰ = 0 (kernel-math.md §1); cov1 is a column, cov2 a row
    cov1_0 = xp.sum(x1 * x1, axis=1, keepdims=True) / {d}
    cov2_0 = cov1_0.T if same else xp.sum(x2 * x2, axis=1, keepdims=True).T / {d}
    nngp_0 = _gram(x1, None if same else x2, dtype)
    if same:  # exact diagonal: Σ(x, x) is cov1 bit for bit
        _exact_diagonal(nngp_0, cov1_0)
'''


def spatial_helpers(shape, channels: int, full: bool) -> str:
    """The helpers of a fused image module: per-point arrays (NumPy), the scales, the mirror and the
    threads, the pair routines (numba). ``full``: the input is read in the full layout (the routines
    read the grid ``shape`` and the ``channels`` from the inputs' shape)."""
    return (fused_spatial_routines.arrays_source(full) + "\n\n" + fused_routines.common_source() + "\n\n"
            + fused_spatial_routines.routines_source())


SPATIAL_PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64, params=None, progress=None):
    """The NNGP and NTK kernels of the network between two sets of inputs.

    Args:
        x1: inputs, shape (N1, {shape}) (channels last).
        x2: inputs, shape (N2, {shape}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32 results (every layer computes in float64).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.
        progress: None, or a thread-safe callable progress(n) that every worker thread
            calls after each block of n pairs (ntkdsl.progress.pair_progress.advance).

    Returns:
        (nngp, ntk): arrays of shape (N1, N2) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
''' + POINTS_AND_DTYPE + '''    n1, n2 = x1.shape[0], x2.shape[0]
    if n1 == 0 or n2 == 0:  # no pair: nothing to stack or loop over
        return xp.zeros((n1, n2), dtype=dtype), xp.zeros((n1, n2), dtype=dtype)
    # per-point numbers, stacked as rows[i, k, p] (x1) and cols[j, k, p] (x2; the same array when x2 is x1)
    rows = xp.empty((n1, {count}, {width}))
    cols = rows if same else xp.empty((n2, {count}, {width}))
    # input: each point's Σ⁰(x, x)(p, p') = x(p)·x(p')/{channels} (kernel-math.md §1), {layout} layout, pixel axes first
    cov1_0 = _input_variances_{layout}(x1, 0)
    cov2_0 = _other_side(cov1_0) if same else _input_variances_{layout}(x2, 1)
'''
