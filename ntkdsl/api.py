"""The Python API: load a spec, get a compiled network, evaluate its kernels."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Optional

import numpy as np

from .codegen.overflow import KernelOverflowError, refuse_nonfinite
from .codegen.spatial_output import output_bytes
from .frontend import parse
from .frontend.limits import read_source
from .hyperparameters import with_values
from .ir import Network, format_network, verify
from .lowering import lower
from .results import Kernels
from .progress import request_note
from .symbolic.latex import program_to_latex
from .symbolic.program import KernelProgram, derive

# what a network with other hyperparameters of the same structure shares (its compiled modules)
_SHARED = ("_module", "_backend_modules", "memory_model", "_largest_kernel", "_static_memory_model")


class CompiledNetwork:
    """A network compiled from a .ntk spec: its IR, symbolic program and generated evaluator.

    Attributes:
        ir: the verified :class:`ntkdsl.ir.Network`.
        program: the symbolic :class:`KernelProgram` (``str()`` prints it).
        source: the .ntk text it came from; ``filename`` where from.
    """

    def __init__(self, ir: Network, source: str = "", filename: str = "<string>", layout: str = "auto",
                 masked: bool = False):
        self.ir = verify(ir)
        self.source = source
        self.filename = filename
        self.layout = layout
        self.program: KernelProgram = derive(self.ir, layout=layout, masked=masked)  # masked: ntkdsl.masks

    @property
    def name(self) -> str:
        return self.ir.name

    def __repr__(self) -> str:
        shape = self.ir.input_dim if len(self.ir.input_shape) == 1 else list(self.ir.input_shape)
        return f"<CompiledNetwork {self.name}: input {shape}, {len(self.ir.layers)} layers>"

    @cached_property
    def _module(self):
        return self._backend_module("numpy")

    def kernels(self, x1, x2=None, *, backend: Optional[str] = None, dtype=None, to_numpy: bool = False,
                batch_size: Optional[int] = None, memory_budget: Optional[int] = None, progress=None,
                diagonal: bool = False, graph1=None, graph2=None, mask1=None, mask2=None) -> Kernels:
        """Σ and Θ between the rows of ``x1`` and of ``x2`` (None: ``x1`` itself).

        Args:
            x1: array-like of shape (N1, *input shape), e.g. (N1, d) or (N1, H, W, C).
            x2: array-like of shape (N2, *input shape), or None.
            backend: "auto" (None: fused numba kernels for large requests when numba is installed,
                else NumPy), "numpy", "numba" or "cupy" (see :mod:`ntkdsl.codegen.dispatch`).
            dtype: float64 (default) or float32 results.
            to_numpy: NumPy arrays even from the CuPy backend.
            batch_size: evaluate in tiles of at most ``batch_size`` x ``batch_size`` points.
            memory_budget: bytes one request may use (default: :func:`ntkdsl.tiling.memory_budget`,
                half the available memory); a larger estimate (:meth:`memory_estimate`) is
                evaluated in tiles automatically (NumPy and numba backends). Image networks also
                tile when their largest kernel array exceeds :data:`ntkdsl.tiling.PREFERRED_ARRAY`
                (cache-sized tiles run faster).
            progress: a bar over the tiles of a tiled request, or over the input pairs (image networks)
                or rows (vector networks) of one the fused kernels run in one piece: None (only when
                stderr is a terminal; pairs and rows: once the call has run a second), True, False,
                or a callable ``progress(done, total)`` (:mod:`ntkdsl.progress`).
            diagonal: only Σ(x, x) and Θ(x, x) of each row of ``x1`` (neural-tangents' diagonal_batch),
                arrays of shape (N1,) equal to the self-kernel's diagonal, in O(N1) time and memory (the
                modules' ``kernels_diagonal``; no tiles, no fused loop: any backend but "cupy" runs NumPy's).
            graph1, graph2: a network with ``aggregate`` layers: each point's adjacency, dense (N, V, V)
                floats (A[i, j] the weight of the edge i → j) or (N, E, 2) integer edge lists
                (:mod:`ntkdsl.graphs`); graph2 None in a self request (graph1 is used); NumPy module only.
            mask1, mask2: position masks, booleans (N, *S) with True = masked (neural-tangents' convention;
                :mod:`ntkdsl.masks`), for networks of per-position layers; mask2 None in a self request.

        Pairs of identical points get the exact value at (x, x) (:func:`ntkdsl.tiling.exact_duplicates`),
        so results do not depend on the tiles even there, where the kernels are ill-conditioned.

        Returns:
            :class:`Kernels` of arrays of shape (N1, N2), or (N1,) with ``diagonal`` ((N1, N2, *S) and (N1, *S)
            for a network with ``readout = none``, *S, *S in the full layout; CuPy arrays from
            the CuPy backend).

        Raises:
            ValueError: an input that is not an array of finite real numbers of shape
                (N, *input shape) (:func:`ntkdsl.validate.points`: the same rules as the CLI), or
                ``x2`` given with ``diagonal``.
            MemoryBudgetError: not even tiles fit the budget (the message says how much is needed).
        """
        from . import requests

        net, x1, x2, side = requests.checked(self, x1, x2, diagonal, graph1, graph2, mask1, mask2)
        if diagonal:
            return requests.diagonal(net, x1, backend, dtype, to_numpy, progress, side)
        if net is not self:  # masks: the masked twin's program and modules (ntkdsl.masks)
            return net.kernels(x1, x2, backend=backend, dtype=dtype, to_numpy=to_numpy, batch_size=batch_size,
                               memory_budget=memory_budget, progress=progress, mask1=mask1, mask2=mask2)
        request_note(self, len(x1), len(x1 if x2 is None else x2), progress)  # slow requests say so on stderr
        tile = self._tile(x1, x2, backend, batch_size, memory_budget)
        if tile is None or requests.covers(tile, x1, x2):  # one piece: the fused kernels show progress over its pairs or rows
            k = self._evaluate(x1, x2, backend, dtype, to_numpy, progress, side)
        else:
            k = requests.tiled(self, x1, x2, tile, backend, dtype, to_numpy or backend == "cupy", progress, side)
        return Kernels(*requests.with_exact_duplicates(self, k, x1, x2, backend, dtype, side))

    def kernels_to_disk(self, x1, x2=None, directory=".", *, batch_size: Optional[int] = None,
                        memory_budget: Optional[int] = None, backend: Optional[str] = None, dtype=None,
                        progress=None, graph1=None, graph2=None, mask1=None, mask2=None) -> Kernels:
        """Σ and Θ streamed tile by tile into ``directory``/nngp.npy and ntk.npy; resumable.

        For results larger than memory: only one tile is held at a time, and each finished tile is
        recorded in ``directory``/progress.json, so a call with the same network, inputs and dtype
        after an interruption computes only the missing tiles. The final files appear (by rename)
        only once every tile is written. See :func:`ntkdsl.streaming.kernels_to_disk` for details.

        Returns:
            :class:`Kernels` of read-only memory-mapped arrays of the two files.

        Raises:
            ntkdsl.streaming.ResumeMismatchError: ``directory`` holds (part of) another request.
        """
        from .streaming import kernels_to_disk

        return kernels_to_disk(self, x1, x2, directory, batch_size=batch_size, memory_budget=memory_budget,
                               backend=backend, dtype=dtype, progress=progress, graph1=graph1, graph2=graph2,
                               mask1=mask1, mask2=mask2)

    def _tile(self, x1, x2, backend, batch_size, memory_budget):
        """The tile of a request: ``batch_size`` squared, or planned from the budget, or None (whole)."""
        from . import tiling

        if batch_size is not None:
            return tiling.batch_tile(batch_size)
        if backend == "cupy":
            return None  # device memory is not what /proc/meminfo reports; explicit batch_size only
        n1 = np.shape(x1)[0]
        n2 = n1 if x2 is None else np.shape(x2)[0]
        budget = tiling.memory_budget(memory_budget)
        fused = self._fused_image_model(backend, n1, n2)
        if fused is not None:  # one block of pairs at a time: tiles only for the budget, none for the caches
            return tiling.plan(n1, n2, fused, budget)
        return tiling.plan(n1, n2, self.memory_model, budget, self._preferred_peak(n1, n2), output_bytes(self.program))

    def _fused_image_model(self, backend, n1: int, n2: int):
        """The memory model of the fused image module (its MEMORY_MODEL) when it will run this
        request, else None."""
        from . import tiling
        from .codegen.dispatch import resolve

        if len(self.ir.input_shape) < 2 or resolve(self.program, backend, n1 * n2, self._modules)[0] != "numba":
            return None
        module = self._backend_module("numba")
        return tiling.MemoryModel(*module.MEMORY_MODEL) if hasattr(module, "MEMORY_MODEL") else None

    @property
    def _modules(self) -> dict:
        """The loaded module of each backend by name (the NumPy one is :attr:`_module` once loaded)."""
        modules = self.__dict__.setdefault("_backend_modules", {})
        if "numpy" not in modules and "_module" in self.__dict__:
            modules["numpy"] = self._module
        return modules

    def _backend_module(self, backend: str):
        from .codegen.dispatch import module_for

        return module_for(self._modules, self.program, backend, self.source, self.filename, self.name)

    def _preferred_peak(self, n1: int, n2: int) -> Optional[float]:
        """The peak of a cache-sized tile (:func:`ntkdsl.tiling.preferred_peak`) where an image network's
        largest kernel array for n1 x n2 points exceeds :data:`ntkdsl.tiling.PREFERRED_ARRAY`, else None."""
        from . import tiling

        if len(self.ir.input_shape) > 1 and 8 * self._largest_kernel * n1 * n2 > tiling.PREFERRED_ARRAY:
            return tiling.preferred_peak(self.memory_model, self._largest_kernel)
        return None

    @cached_property
    def _largest_kernel(self) -> int:
        from .symbolic.layout import largest_kernel

        return largest_kernel(self.program)

    @cached_property
    def _static_memory_model(self):
        from . import tiling

        return tiling.static_model(self._largest_kernel, int(np.prod(self.ir.input_shape)))

    @cached_property
    def memory_model(self):
        """The :class:`ntkdsl.tiling.MemoryModel` of this network's NumPy evaluator, nothing run: the
        static model of :func:`ntkdsl.codegen.cost.numpy_memory` (the kernel arrays alive at each step and
        their temporaries) times :data:`ntkdsl.tiling.SAFETY`; for networks with numerical duals
        (whose quadrature works in chunks of its own) the generous :func:`ntkdsl.tiling.static_model`."""
        from . import tiling
        from .codegen.cost import numpy_memory
        from .algebra.functions import GaussianExpectation

        if any(expr.has(GaussianExpectation) for step in self.program.steps for _, expr in step.assignments):
            return self._static_memory_model
        m = numpy_memory(self.program)
        return tiling.MemoryModel(*(tiling.SAFETY * v for v in (m.per_pair, m.per_point, m.fixed,
                                                                   m.input_per_point, m.input_fixed)))

    def memory_estimate(self, n1: int, n2: Optional[int] = None, batch_size: Optional[int] = None) -> int:
        """Estimated peak bytes of evaluating the kernels of ``n1`` x ``n2`` points (``n2`` None: a
        self-kernel) in one piece, or in tiles of ``batch_size`` points: then the two (N1, N2)
        float64 outputs plus one tile's peak."""
        n2 = n1 if n2 is None else n2
        if batch_size is None or (batch_size >= n1 and batch_size >= n2):
            return int(self.memory_model.peak(n1, n2))
        return int(output_bytes(self.program) * n1 * n2 + self.memory_model.peak(min(batch_size, n1), min(batch_size, n2)))

    def _evaluate(self, x1, x2, backend, dtype, to_numpy, progress=False, side=None):
        """One evaluation by the chosen backend (no tiling); a result that is not finite is refused,
        naming the layer whose variance overflowed (:mod:`ntkdsl.codegen.overflow`). ``side``: the
        points' side data, graphs and masks (:func:`ntkdsl.side.request_side`)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # an overflow is refused below, with its layer
            if dtype is None and backend == "numpy":
                from .codegen.dispatch import runtime_values

                k = self._module.kernels(x1, x2, params=runtime_values(self.program), **(side or {}))  # nothing to choose
            else:
                k = self._run(x1, x2, backend=backend, dtype=dtype, to_numpy=to_numpy, progress=progress, graphs=side)
        if side is not None:  # the overflow tracer re-runs single points without their side data: name the request
            if not all(np.isfinite(np.asarray(a)).all() for a in k):
                from .side import overflow_reason

                raise KernelOverflowError(f"the kernels of network {self.name} are not finite at these inputs and "
                                          f"{overflow_reason(side)}")
            return k
        refuse_nonfinite(self._modules, self.program, x1, x2, *k, dtype=dtype, source=self.source,
                         filename=self.filename, name=self.name)
        return k

    def _run(self, x1, x2=None, **options):
        from .codegen.dispatch import run

        return run(self._modules, self.program, x1, x2, source=self.source, filename=self.filename, name=self.name, **options)

    def nngp(self, x1, x2=None, **options) -> np.ndarray:
        """The NNGP kernel Σ(x1, x2) (see :meth:`kernels`)."""
        return self.kernels(x1, x2, **options).nngp

    def ntk(self, x1, x2=None, **options) -> np.ndarray:
        """The neural tangent kernel Θ(x1, x2) (see :meth:`kernels`)."""
        return self.kernels(x1, x2, **options).ntk

    def to_python(self, backend: str = "numpy") -> str:
        """The source of a standalone module defining ``kernels(x1, x2=None) -> (nngp, ntk)``.

        ``backend``: "numpy", "cupy" or "numba" (fused kernels; a network they cannot evaluate
        gets the NumPy module).
        """
        from .codegen.dispatch import emit_source

        return emit_source(self.program, backend=backend, source=self.source, filename=self.filename)

    def to_latex(self) -> str:
        """The derived recursion, layer by layer, as a LaTeX ``align*`` environment."""
        return program_to_latex(self.program)

    def to_ntk(self) -> str:
        """The canonical .ntk text of the IR (blocks and repeats expanded); parses back to the same IR."""
        return format_network(self.ir)

    def finite(self, width: Optional[int] = None, seed=0, backend: str = "numpy"):
        """A finite network drawn from the prior, in the parameterization of the analytic kernel.

        Args:
            width: overrides every hidden width (None: the spec's); the output width stays.
            seed: anything :func:`numpy.random.default_rng` accepts.
            backend: "numpy" (default) or "cupy" (arrays and arithmetic on the GPU; same draw).

        Returns:
            :class:`ntkdsl.sampler.FiniteNetwork` (``apply``, ``ntk``, ``nngp``, ``train``, ``params``).

        Raises:
            ImportError: backend "cupy" without CuPy.
        """
        from .sampler import FiniteNetwork, override_widths

        return FiniteNetwork.initialise(override_widths(self.ir, width), seed, backend)

    def with_hyperparameters(self, **values) -> "CompiledNetwork":
        """This network with other values of its hyperparameters, sharing its compiled modules.

        Names: a ``let`` of the spec (``beta = 0.2``), or a layer parameter's kind set on every layer
        that has it (``w_std``, ``b_std``, ``scale``, ``erf_a``, ...; :mod:`ntkdsl.hyperparameters`).
        The numbers are run-time arguments of the generated modules, so a sweep compiles once per
        structure: ``[net.with_hyperparameters(w_std=w).kernels(x) for w in (1.2, 1.4, 1.6)]``.

        Raises:
            ValueError: an unknown name or a value that is not a finite real number.
        """
        if not values:
            return self
        ir, label, lets = with_values(self, values)
        new = CompiledNetwork(ir, self.source, f"{self.filename} ({label})", layout=self.layout)
        new._let_overrides = lets
        if new.program.same_structure(self.program):  # the same compiled modules, other run-time parameters
            for attr in _SHARED:
                if attr in self.__dict__:
                    new.__dict__[attr] = self.__dict__[attr]
            new.__dict__["_backend_modules"] = self._modules
        return new

    def with_width(self, n: Optional[int]) -> "CompiledNetwork":
        """The analytic network with every hidden width set to ``n`` (the output width stays).

        Only the standard parameterization's NTK depends on widths (kernel-math.md §2); compare a
        finite network of width n with ``net.with_width(n)``. None returns this network.
        """
        from .sampler import override_widths

        ir = override_widths(self.ir, n)
        if ir == self.ir:
            return self
        return CompiledNetwork(ir, format_network(ir), f"{self.filename} (hidden width {n})", layout=self.layout)


def loads(text: str, network: Optional[str] = None, filename: str = "<string>", layout: str = "auto") -> CompiledNetwork:
    """Compile a network from .ntk source text.

    Args:
        text: the source.
        network: which network, when the text defines several.
        filename: shown in error messages.
        layout: "auto" (the cheapest kernel layout the network needs) or "full" (all pixel pairs
            everywhere: the same kernels, slower; for comparisons).

    Raises:
        SpecError: any mistake in the text, with ``file:line:col`` and a caret.
    """
    module = parse(text, filename)
    return CompiledNetwork(lower(module, network), text, filename, layout=layout)


def load(path, network: Optional[str] = None, layout: str = "auto") -> CompiledNetwork:
    """Compile a network from a .ntk file (see :func:`loads`).

    Raises:
        SpecError: any mistake in the file; a file over the size limit is refused before it is read whole.
        OSError: the file cannot be read.
    """
    text = read_source(path)
    return loads(text, network, os.fspath(path), layout=layout)
