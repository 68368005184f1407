"""Which evaluator runs a kernel request: the backend choice, its fallbacks, and the result's dtype.

``backend="auto"`` (the default of :meth:`ntkdsl.CompiledNetwork.kernels`) takes the fused numba
kernels (:mod:`.fused`) when numba is installed, the network is fusable and the request has at
least :data:`AUTO_FUSED_ENTRIES` entries (image networks: kernel entries of every pixel,
:data:`AUTO_FUSED_PIXEL_ENTRIES`); otherwise NumPy. Below that size NumPy is fast enough and the
first use of a network would spend longer compiling (seconds, once per network and machine: the
compiled code is cached on disk) than the fused loop saves. ``backend="numba"`` asks for the fused
kernels at any size; without numba, or for a network they cannot evaluate (numerical duals), it
warns and uses NumPy. ``backend="cupy"`` runs on the GPU: the Gram matrix on cuBLAS and each run of
elementwise layers as one fused CUDA kernel (:mod:`.cuda`); it never falls back to the CPU silently.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Optional, Tuple

import numpy as np

from ..symbolic.program import KernelProgram
from .backends import BACKENDS
from .emit import emit_module

AUTO = "auto"
AUTO_FUSED_ENTRIES = 4_000_000  # N1·N2 from which "auto" compiles (about 2000 x 2000 points)
AUTO_FUSED_PIXEL_ENTRIES = 64_000_000  # N1·N2·P for image networks (256 x 256 images of 32 x 32 pixels)


class BackendFallbackWarning(UserWarning):
    """A requested backend could not run this request; another one did (the message says why)."""


def module_available(name: str) -> bool:
    """Whether ``import name`` would find a module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve(program: KernelProgram, backend: Optional[str], entries: int = 0) -> Tuple[str, str]:
    """The backend that will run, and why it differs from the one asked for ("" if it does not).

    Args:
        program: the network's recursion.
        backend: "auto", None (= "auto") or a key of :data:`BACKENDS`.
        entries: N1·N2 of the request (only "auto" looks at it; for an image network it counts
            each pixel of the largest kernel array).

    Raises:
        ValueError: an unknown backend name.
        ImportError: ``cupy`` asked for but not installed (there is no silent GPU -> CPU fallback).
    """
    from .fused import fusable

    backend = AUTO if backend is None else backend
    if backend != AUTO and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    if backend == AUTO:
        threshold = AUTO_FUSED_ENTRIES
        if len(program.network.input_shape) > 1:
            from ..symbolic.layout import largest_kernel

            entries *= largest_kernel(program)
            threshold = AUTO_FUSED_PIXEL_ENTRIES
        if entries >= threshold and module_available("numba") and fusable(program) is None:
            return "numba", ""
        return "numpy", ""
    spec = BACKENDS[backend]
    if spec.requires and not module_available(spec.requires):
        if backend == "cupy":
            raise ImportError("backend 'cupy' needs CuPy and a CUDA GPU: pip install 'ntkdsl[gpu]'")
        return "numpy", f"{spec.requires} is not installed (pip install 'ntkdsl[{spec.extra}]'); using NumPy"
    if spec.fused:
        reason = fusable(program)
        if reason:
            return "numpy", f"the fused kernels cannot evaluate this network ({reason}); using NumPy"
    return backend, ""


def emit_source(program: KernelProgram, backend: str = "numpy", source: Optional[str] = None,
                filename: str = "<string>") -> str:
    """The module text for a backend; a fused backend that cannot fuse the program gives NumPy's."""
    if BACKENDS[backend].cuda:
        from .cuda import emit_cupy_module

        return emit_cupy_module(program, source=source, filename=filename)
    if BACKENDS[backend].fused:
        from .fused import NotFusable, emit_fused_module

        try:
            return emit_fused_module(program, source=source, filename=filename)
        except NotFusable:
            backend = "numpy"
    return emit_module(program, backend=backend, source=source, filename=filename)


_SHARED: dict = {}  # (backend, structure digest) -> the loaded NumPy or CuPy module of that structure


def module_for(modules: dict, program: KernelProgram, backend: str, source: Optional[str] = None,
               filename: str = "<string>", name: str = "network"):
    """The loaded module of a backend (emitted and imported once, kept in ``modules``; numba compiles
    its functions at their first call, not here). Networks of the same structure share one module
    (:func:`.cache.structure_digest`: only their run-time parameters differ, passed at each call):
    the fused ones through the disk cache, the NumPy and CuPy ones in this process."""
    if backend not in modules:
        from .cache import load_cached_module, structure_digest

        text = emit_source(program, backend, source, filename)
        if BACKENDS[backend].fused:
            modules[backend] = load_cached_module(text, name)
        else:
            from .loader import load_module

            key = (backend, structure_digest(text))
            if key not in _SHARED:
                _SHARED[key] = load_module(text, name)
            modules[backend] = _SHARED[key]
    return modules[backend]


def runtime_values(program: KernelProgram) -> dict:
    """The ``params`` of a module call: each run-time parameter's name and value (a float)."""
    return {str(sym): float(value) for sym, value in program.runtime_parameters.items()}


def run(modules: dict, program: KernelProgram, x1, x2=None, *, backend: Optional[str] = None, dtype=None,
        to_numpy: bool = False, source: Optional[str] = None, filename: str = "<string>", name: str = "network"):
    """Evaluate (nngp, ntk), loading (and caching in ``modules``) the module of the chosen backend.

    Args:
        modules: a dict owned by the caller: backend name -> loaded module.
        dtype: float64 (default) or float32. The fused CPU and CUDA kernels produce it directly (the
            Gram matrix in dtype, the layers in float64); the NumPy program computes in float64 and
            returns the results cast to it.
        to_numpy: return NumPy arrays whatever the backend (CuPy results are copied to the host).
    """
    n1 = np.shape(x1)[0] if np.ndim(x1) else 0
    entries = n1 * (n1 if x2 is None else (np.shape(x2)[0] if np.ndim(x2) else 0))
    chosen, note = resolve(program, backend, entries)
    if note:
        warnings.warn(f"backend {backend!r}: {note}", BackendFallbackWarning, stacklevel=3)
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    module = module_for(modules, program, chosen, source, filename, name)
    params = runtime_values(program)
    if BACKENDS[chosen].fused or BACKENDS[chosen].cuda:
        nngp, ntk = module.kernels(x1, x2, dtype=dtype, params=params)
    else:
        nngp, ntk = module.kernels(x1, x2, params=params)
        if dtype != np.float64:
            nngp, ntk = nngp.astype(dtype), ntk.astype(dtype)
    if to_numpy:
        nngp, ntk = (a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a for a in (nngp, ntk))
    return nngp, ntk
