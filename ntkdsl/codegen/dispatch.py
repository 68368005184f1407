"""Which evaluator runs a kernel request: the backend choice, its fallbacks, and the result's dtype.

``backend="auto"`` (the default of :meth:`ntkdsl.CompiledNetwork.kernels`) takes the fused numba
kernels (:mod:`.fused`) when numba is installed, the network is fusable and they pay for
themselves on this request (:func:`fused_pays`): the NumPy time it saves (from the static cost
model :func:`ntkdsl.codegen.cost.seconds`, calibrated by the NumPy runs of the same structure) exceeds
what numba must do first. That is nothing once the module is compiled in this process, a load of
:data:`NUMBA_LOAD_SECONDS` when numba's disk cache holds it, or a compile (:func:`compile_seconds`)
on a cold cache, each for the request's dtype (the vector loops compile once per dtype:
float64's code does not serve a float32 request). On a cold cache a mid-size request therefore runs on NumPy; the NumPy seconds
spent on a structure count towards the compile (ski rental: a sweep or a loop of such requests
compiles once it has spent about a compile's time on NumPy). ``backend="numba"`` asks for the fused
kernels at any size; without numba, or for a network they cannot evaluate (an image network with
a numerical dual), it warns and uses NumPy. ``backend="cupy"`` runs on the GPU: the Gram matrix on cuBLAS and each run of
elementwise layers as one fused CUDA kernel (:mod:`.cuda`); it never falls back to the CPU silently.
"""

from __future__ import annotations

import importlib.util
import inspect
import time
import warnings
import weakref
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..arraycode.backends import BACKENDS
from ..arraycode.loader import load_module
from ..progress import note, pair_progress, wanted
from ..symbolic.program import KernelProgram
from . import cost
from .cache import _compiled_in, compiled_for, compiled_on_disk, load_cached_module
from .cuda import emit_cupy_module
from .emit import emit_module
from .fused import NotFusable, emit_fused_module, fusable
from .prologue import uses_graphs

AUTO = "auto"
# measured by benchmarks/sweeps.py (results/sweeps.json) on the 2-core development machine, CPU seconds
NUMBA_LOAD_SECONDS = 0.4  # the first call of a module that numba's disk cache holds (0.22–0.36 s)
MODEL_NUMPY_OVERESTIMATE = 6.0  # ntkdsl.codegen.cost.seconds over measured NumPy CPU time: 1.2–6.0x on 5 workloads
SMALL_SECONDS = 0.01  # below this much NumPy time the fused call's overheads (threads, stacks) eat the gain
RATIO_SECONDS = 0.05  # NumPy calls at least this long calibrate the cost model for their structure
TIMING = "_numpy_timing"  # key of a modules dict: NumPy seconds spent and measured/model ratio of its structure


class BackendFallbackWarning(UserWarning):
    """A requested backend could not run this request; another one did (the message says why)."""


def module_available(name: str) -> bool:
    """Whether ``import name`` would find a module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve(program: KernelProgram, backend: Optional[str], entries: int = 0,
            modules: Optional[dict] = None, dtype=None) -> Tuple[str, str]:
    """The backend that will run, and why it differs from the one asked for ("" if it does not).

    Args:
        program: the network's recursion.
        backend: "auto", None (= "auto") or a key of :data:`BACKENDS`.
        entries: N1·N2 of the request (only "auto" looks at it).
        modules: the network's loaded modules (:func:`module_for`) and NumPy timings; "auto"
            takes numba more readily where its module is loaded or NumPy was measured slow.
        dtype: the request's dtype (None: float64); "auto" counts a compile where the fused module
            is compiled for the other dtype only (the vector loops: one numba specialisation each).

    Raises:
        ValueError: an unknown backend name.
        ImportError: ``cupy`` asked for but not installed (there is no silent GPU -> CPU fallback).
    """
    backend = AUTO if backend is None else backend
    if backend != AUTO and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(BACKENDS)}")
    if backend == AUTO:
        if module_available("numba") and fusable(program) is None and fused_pays(program, entries, modules or {}, dtype):
            return "numba", ""
        return "numpy", ""
    spec = BACKENDS[backend]
    if spec.requires and not module_available(spec.requires):
        if backend == "cupy":
            raise ImportError("backend 'cupy' needs CuPy and a CUDA GPU: pip install 'ntkdsl[gpu]'")
        return "numpy", f"{spec.requires} is not installed (pip install 'ntkdsl[{spec.extra}]'); using NumPy"
    if spec.cuda and (uses_graphs(program) or program.masked):  # kernels(diagonal=True) runs the CuPy array module
        return "numpy", "the CUDA kernels cannot evaluate this network (per-point graphs or masks); using NumPy"
    if spec.fused:
        reason = fusable(program)
        if reason:
            return "numpy", f"the fused kernels cannot evaluate this network ({reason}); using NumPy"
    return backend, ""


def compile_seconds(program: KernelProgram) -> float:
    """Estimated CPU seconds of numba's first compile of the program's fused module. Measured (CPU
    seconds, benchmarks/sweeps.py): vector networks 1.7 s (3 layers), 3.9 s (11), 16.8 s (41);
    image networks 4.3 s (2 convolutions), 6.0 s (21: their identical layers share a function)."""
    layers = len(program.steps) - 1
    if len(program.network.input_shape) > 1:
        return 4.0 + 0.05 * layers
    return max(1.5, 0.5 + 0.4 * layers)


def _numpy_seconds_per_pair(program: KernelProgram) -> float:
    if program not in _PER_PAIR:
        _PER_PAIR[program] = cost.seconds(program, 1, 1, "numpy")
    return _PER_PAIR[program]


_PER_PAIR: "weakref.WeakKeyDictionary[KernelProgram, float]" = weakref.WeakKeyDictionary()
_FUSED_TEXT: "weakref.WeakKeyDictionary[KernelProgram, str]" = weakref.WeakKeyDictionary()


def fused_pays(program: KernelProgram, pairs: int, modules: dict, dtype=None) -> bool:
    """Whether the fused kernels are the faster way to evaluate ``pairs`` input pairs in ``dtype``
    (None: float64), counting what numba must do before its first call (the module docstring gives
    the rule): compiled means compiled for dtype (:func:`.cache.specialised`)."""
    timing = modules.get(TIMING, {})
    model = pairs * _numpy_seconds_per_pair(program) * timing.get("ratio", 1.0)  # calibrated where measured
    dtype = np.float64 if dtype is None else dtype
    fused = modules.get("numba")
    if fused is not None and compiled_for(fused, dtype):
        return model >= SMALL_SECONDS  # compiled for dtype in this process: only the call's overheads to beat
    lower = model if "ratio" in timing else model / MODEL_NUMPY_OVERESTIMATE  # NumPy's time, or a lower bound
    saving = lower * (1 - 1 / _fused_speedup()) + timing.get("spent", 0.0)
    if saving < NUMBA_LOAD_SECONDS:
        return False
    if program not in _FUSED_TEXT:  # emitted once per program: a request may ask again and again
        _FUSED_TEXT[program] = emit_source(program, "numba")
    ready = compiled_on_disk(_FUSED_TEXT[program], program.network.name, dtype=dtype)
    return saving >= (NUMBA_LOAD_SECONDS if ready else compile_seconds(program))


def _fused_speedup() -> float:
    """The fused kernels' speedup over the NumPy evaluator that the cost model assumes."""
    return cost.FUSED_SPEEDUP


def _record_numpy(modules: dict, program: KernelProgram, pairs: int, seconds: float) -> None:
    """Remember a NumPy evaluation of this structure: the seconds spent, and measured over model."""
    timing = modules.setdefault(TIMING, {})
    timing["spent"] = timing.get("spent", 0.0) + seconds
    if seconds >= RATIO_SECONDS:  # a shorter call measures per-call overheads more than the layers
        timing["ratio"] = seconds / (pairs * _numpy_seconds_per_pair(program))


def emit_source(program: KernelProgram, backend: str = "numpy", source: Optional[str] = None,
                filename: str = "<string>") -> str:
    """The module text for a backend; a fused backend that cannot fuse the program gives NumPy's."""
    if BACKENDS[backend].cuda and (uses_graphs(program) or program.masked):  # the CUDA module lacks graphs and
        # masks: the array module with xp = CuPy (what `ntkdsl compile --backend cupy` writes; kernels_diagonal runs it)
        return emit_module(program, backend=backend, source=source, filename=filename)
    if BACKENDS[backend].cuda:
        return emit_cupy_module(program, source=source, filename=filename)
    if BACKENDS[backend].fused:
        try:
            return emit_fused_module(program, source=source, filename=filename)
        except NotFusable:
            backend = "numpy"
    return emit_module(program, backend=backend, source=source, filename=filename)


def module_for(modules: dict, program: KernelProgram, backend: str, source: Optional[str] = None,
               filename: str = "<string>", name: str = "network"):
    """The loaded module of a backend (emitted and imported once, kept in ``modules``; numba compiles
    its functions at their first call, not here). Fused networks of the same structure share one
    compiled module through the disk cache (:func:`.cache.structure_digest`: only their run-time
    parameters differ, passed at each call); NumPy and CuPy modules are each network's own text."""
    if backend not in modules:
        text = emit_source(program, backend, source, filename)
        if BACKENDS[backend].fused:
            modules[backend] = load_cached_module(text, name)
        else:  # a Python compile of its own text (milliseconds): tracebacks show this network's lines
            modules[backend] = load_module(text, name)
    return modules[backend]


def _with_pair_progress(module, progress, name: str, x1, x2, **options):
    """module.kernels(x1, x2, **options), with a :class:`ntkdsl.progress.pair_progress` where the module
    takes ``progress`` (the fused kernels) and it is asked for: over the steps of the module's
    ``progress_steps(n1, n2)`` (the vector kernels' rows), else over the input pairs (image kernels)."""
    if progress is False or "progress" not in inspect.signature(module.kernels).parameters:
        return module.kernels(x1, x2, **options)
    n1 = len(x1)
    steps = getattr(module, "progress_steps", None)
    total, unit = (n1 * (n1 + 1) // 2 if x2 is None else n1 * len(x2)), "pair"
    if steps is not None:
        total, unit = steps(n1, n1 if x2 is None else len(x2))
    bar = pair_progress(progress, total, f"network {name}", unit=unit)
    try:
        return module.kernels(x1, x2, progress=bar.advance if bar.active else None, **options)
    finally:
        bar.close()


def _specialisation_note(module, dtype, name: str, progress) -> None:
    """A one-line note (:func:`ntkdsl.progress.note`) before numba compiles a fused module for a dtype
    that neither this process nor the disk cache has compiled it for, though it has another's (the
    first compile of all notes itself: :func:`.cache.load_cached_module`)."""
    if not wanted(progress) or compiled_for(module, dtype):
        return
    path = Path(module.__file__)
    if _compiled_in(path.parent, path.stem) and not _compiled_in(path.parent, path.stem, dtype):
        note(f"compiling the {np.dtype(dtype).name} numba kernels of network {name} once (seconds; cached in "
             f"{path.parent})", progress)


def runtime_values(program: KernelProgram) -> dict:
    """The ``params`` of a module call: each run-time parameter's name and value (a float)."""
    return {str(sym): float(value) for sym, value in program.runtime_parameters.items()}


def run(modules: dict, program: KernelProgram, x1, x2=None, *, backend: Optional[str] = None, dtype=None,
        to_numpy: bool = False, source: Optional[str] = None, filename: str = "<string>", name: str = "network",
        progress=False, graphs: Optional[dict] = None):
    """Evaluate (nngp, ntk), loading (and caching in ``modules``) the module of the chosen backend.

    Args:
        modules: a dict owned by the caller: backend name -> loaded module.
        dtype: float64 (default) or float32. The fused CPU and CUDA kernels produce it directly (the
            Gram matrix in dtype, the layers in float64); the NumPy program computes in float64 and
            returns the results cast to it.
        to_numpy: return NumPy arrays whatever the backend (CuPy results are copied to the host).
        progress: a bar over the input pairs or rows where the module reports them (the fused
            kernels): None, True, False or a callable (done, total), as :class:`ntkdsl.progress.pair_progress`.
        graphs: ``graph1``/``graph2`` of a network that aggregates over graphs (its NumPy module takes them).
    """
    n1 = np.shape(x1)[0] if np.ndim(x1) else 0
    entries = n1 * (n1 if x2 is None else (np.shape(x2)[0] if np.ndim(x2) else 0))
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    chosen, note = resolve(program, backend, entries, modules, dtype)
    if note:
        warnings.warn(f"backend {backend!r}: {note}", BackendFallbackWarning, stacklevel=3)
    module = module_for(modules, program, chosen, source, filename, name)
    params = runtime_values(program)
    if BACKENDS[chosen].fused or BACKENDS[chosen].cuda:
        if BACKENDS[chosen].fused:
            _specialisation_note(module, dtype, name, progress)
        nngp, ntk = _with_pair_progress(module, progress, name, x1, x2, dtype=dtype, params=params)
    else:
        start = time.perf_counter()
        nngp, ntk = module.kernels(x1, x2, params=params, **(graphs or {}))
        if backend in (None, AUTO):
            _record_numpy(modules, program, entries, time.perf_counter() - start)
        if dtype != np.float64:
            nngp, ntk = nngp.astype(dtype), ntk.astype(dtype)
    if to_numpy:
        nngp, ntk = (a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a for a in (nngp, ntk))
    return nngp, ntk


def run_diagonal(modules: dict, program: KernelProgram, x, *, backend: Optional[str] = None, dtype=None,
                 to_numpy: bool = False, source: Optional[str] = None, filename: str = "<string>",
                 name: str = "network", graph=None, mask=None):
    """(Σ(x_i, x_i), Θ(x_i, x_i)) of each row of ``x``, arrays of shape (N,): the ``kernels_diagonal``
    of the array module (O(N) time and memory, no loop to fuse): NumPy's for "auto", "numpy" and
    "numba", CuPy's (the same text with ``xp`` bound to CuPy, kept in ``modules["cupy-arrays"]``)
    for "cupy". Computed in float64 and returned cast to ``dtype``.

    Raises:
        ValueError: an unknown backend name or a dtype other than float64 and float32.
        ImportError: ``cupy`` asked for but not installed.
    """
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    chosen = AUTO if backend is None else backend
    if chosen == "cupy":  # graphs and masks included: the module binds them with xp.asarray (copied to the GPU)
        resolve(program, chosen)  # without CuPy: its ImportError, never a silent fall back to the CPU
        if "cupy-arrays" not in modules:
            modules["cupy-arrays"] = load_module(emit_module(program, "cupy", source, filename), name)
        module = modules["cupy-arrays"]
    else:
        if chosen != AUTO and chosen not in BACKENDS:
            resolve(program, chosen)  # the ValueError naming the backends
        module = module_for(modules, program, "numpy", source, filename, name)
    side = {name: value for name, value in (("graph", graph), ("mask", mask)) if value is not None}
    nngp, ntk = module.kernels_diagonal(x, params=runtime_values(program), **side)
    if dtype != np.float64:
        nngp, ntk = nngp.astype(dtype), ntk.astype(dtype)
    if to_numpy:
        nngp, ntk = (a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else a for a in (nngp, ntk))
    return nngp, ntk
