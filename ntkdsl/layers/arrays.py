"""The array module of finite networks: NumPy (default) or CuPy, chosen once per network.

The finite-width rules of the layers (:mod:`ntkdsl.layers`) never name NumPy
or CuPy for array math: they take the namespace ``xp`` of the arrays they are given
(:func:`namespace`, the array-API convention), so one set of rules runs on both. Parameters are
drawn on the host with NumPy (the same seed gives the same network on every backend) and moved to
the device once, in :meth:`ntkdsl.sampler.FiniteNetwork.initialise`. CuPy is imported lazily.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "cupy")


def array_module(backend: str = "numpy"):
    """The module of ``backend``.

    Raises:
        ValueError: an unknown backend name.
        ImportError: ``backend = "cupy"`` without CuPy (or without a usable GPU).
    """
    if backend == "numpy":
        return np
    if backend != "cupy":
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    try:
        import cupy
    except ImportError as exc:
        raise ImportError("backend='cupy' needs CuPy and a CUDA GPU: pip install 'ntkdsl[gpu]' "
                          f"(import failed: {exc})") from None
    return cupy


def namespace(*arrays):
    """numpy, or cupy when any argument is a CuPy array (found without importing CuPy)."""
    for a in arrays:
        if type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    return np


def to_numpy(a) -> np.ndarray:
    """A host NumPy array of ``a`` (a copy only when it lives on a device)."""
    get = getattr(a, "get", None)
    return get() if callable(get) and not isinstance(a, np.ndarray) else np.asarray(a)
