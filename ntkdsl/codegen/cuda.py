"""The CuPy backend: a KernelProgram -> a module whose elementwise runs are fused CUDA kernels.

Everything a kernel recursion does between its structural operations is elementwise over the
entries of the kernel arrays: the affine maps of dense and conv layers, the activations' dual
kernels, the sums and products of branches. The NumPy program evaluates that one array operation
at a time; on a GPU every operation is a kernel launch and a pass over device memory. Here each
*run* of consecutive elementwise steps is printed, by :class:`.cuda_printer.CudaPrinter` (sympy's
C99 printer with ntkdsl's functions), as the body of ONE ``cupy.ElementwiseKernel``: the run
reads its inputs once and writes only what later statements read. For a fully connected network
that is the whole recursion after the Gram matrix.

Outside the kernels, as CuPy array operations (the statements of the NumPy program, :mod:`.emit`):

* the Gram matrix x1·x2ᵀ/d: ``cupy.matmul``, i.e. a cuBLAS GEMM, in the requested dtype;
* the variances cov1 and cov2 (per point, O(N)), K(q, q, q) as simplified in the program;
* what CUDA cannot print, hoisted out of the run and evaluated with CuPy array operations before
  the kernel that reads it: the structural operations of image kernels (conv taps, pooling,
  flatten, pixel variances), numerical duals (``gaussian_expectation``, a quadrature) and Owen's T
  of the ELU/SELU closed forms (``owens_t``: SciPy on the host, as CuPy has none). Where such an
  operation reads a quantity of the current run, the run ends there (its quantities are written
  out) and a new run starts after it. A step whose assignments cannot be split this way runs
  entirely as the NumPy program's statements on CuPy arrays.

Exactness: Σ(x, x) is the variance cov1 itself on the diagonal (every kernel that updates Σ and
cov1 sets it there), the self-kernel is symmetrised exactly, the kernels compute in float64
without FMA contraction (``--fmad=false``), and the Gram matrix's diagonal is read as cov1 (so a
float32 GEMM does not perturb θ = 0 there). ``dtype`` float32 stores the Gram matrix and the
results in float32 (half the device memory and transfers); the arithmetic stays float64, unlike the
fused CPU kernels (:mod:`.fused`): a float32 variant of the printed kernels (float literals, float
math functions, the stand-in's C++ checks) is not written, and no GPU has measured whether it
would pay (float64 runs at half the float32 rate on data-centre GPUs, 1/32–1/64 on consumer ones).
Agreement with the NumPy backend: about 1e-15 relative (CUDA's libm).

The generated CUDA source is tested without a GPU: ``tests/cupy_standin.py`` compiles the very same
kernel text with a C++ compiler and runs it in place of ``cupy.ElementwiseKernel``, and ``nvcc``
(where installed) compiles it as CUDA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

import sympy as sp

from ..arraycode.backends import BACKENDS
from ..arraycode.printer import CodegenError
from ..arraycode.sources import support_sources
from ..symbolic.program import KernelProgram
from . import cuda_support
from .cuda_printer import CUDA_PRINTABLE, CudaPrinter, CupyArrayPrinter, c_comment
from . import spatial_output
from .emit import result_statements, step_statements
from .prologue import module_header, parameter_binding, parameter_table, point_helpers, same_point_binding, spatial_fields
from .schedule import LayerSchedule, cse, cse_lines, free_after_last_use, schedule

# SSA names of the Python statements (kernel fields, CSE temporaries t*, per-point temporaries v*,
# hoisted operations h*), freed after their last use
_NAME = re.compile(r"\b(?:(?:cov1|cov2|nngp_dot|nngp|ntk)_\d+|[tvh]\d+_\d+)\b")


@dataclass
class _Python:
    """Statements of the array program (each a list of lines)."""

    statements: List[List[str]]

    @property
    def names(self) -> Set[str]:
        return {n for s in self.statements for line in s for n in _NAME.findall(line.split("#")[0])}


@dataclass
class _KernelStep:
    """One step's part of a fused kernel: C statements and the quantities they assign and read."""

    index: int
    comment: str
    lines: List[str]
    assigned: List[str]
    reads: Set[str]


@dataclass
class _Run:
    steps: List[_KernelStep] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)  # read and not assigned in the run
    outputs: List[str] = field(default_factory=list)  # assigned in the run and read after it
    results: List[str] = field(default_factory=list)  # outputs written in the requested dtype

    @property
    def assigned(self) -> Set[str]:
        return {name for s in self.steps for name in s.assigned}

    @property
    def name(self) -> str:
        first, last = self.steps[0].index, self.steps[-1].index
        return f"_layer_{first}" if first == last else f"_layers_{first}_{last}"


class _Emitter:
    """A CuPy module while it is printed: the scheduled layers as array statements (:class:`_Python`)
    and parts of fused kernels (:class:`_KernelStep`), grouped into runs (:meth:`segments`)."""

    def __init__(self, program: KernelProgram):
        self.program = program
        self.plan = schedule(program)  # the run-time parameters stay names: scalar kernel arguments
        self.parameter_names = {str(s) for s in program.runtime_parameters}
        self.spatial = len(program.network.input_shape) > 1
        self.arrays = CupyArrayPrinter()
        self.cuda = CudaPrinter()
        self.duals: List[str] = []
        self.per_point = self.plan.per_point
        self.point_names = {s.name for s in self.per_point}
        self.point_hoisted: Set[str] = set()  # hoisted operations of variances only: per-point inputs

    # ------------------------------------------------------------------ one step

    def items(self):
        """The program as a sequence of array statements (:class:`_Python`) and fusable steps."""
        out = []
        for layer in self.plan.layers:
            comment = f"{layer.heading}; {layer.grid}" if layer.grid else layer.heading
            fused = self._fuse(layer, comment) if layer.assignments else None
            if fused is None:
                out.append(_Python([[f"    # {comment}"]] + step_statements(layer, self.plan.values, self.arrays,
                                                                            self.duals)))
            else:
                out += fused
        return out

    def _fuse(self, layer: LayerSchedule, comment):
        """A step as [per-point statements, hoisted operations..., its kernel part], or None when its
        assignments cannot be split into CUDA and array operations (it then runs as array code)."""
        vector, matrix = layer.points, layer.pairs
        if not matrix:
            return None
        targets = [s for s, _ in matrix]
        hoisted: Dict[sp.Expr, sp.Symbol] = {}

        def hoist(e):
            name = type(e).__name__
            if isinstance(e, sp.Function) and name not in CUDA_PRINTABLE:
                if e not in hoisted:
                    hoisted[e] = sp.Symbol(f"h{layer.index}_{len(hoisted)}", real=True)
                return hoisted[e]
            if not e.args or e.is_Atom:
                return e
            return e.func(*[hoist(a) for a in e.args])

        hoisted_matrix = [(s, hoist(e)) for s, e in matrix]
        if any(e.free_symbols & set(targets) for e in hoisted):
            return None  # an operation CUDA cannot print reads this very step's quantities
        shared, reduced = cse(hoisted_matrix, f"t{layer.index}_")
        lines = []
        try:
            for sym, e in shared:
                lines.append(f"const double {sym} = {self.cuda.doprint(e)};")
            for sym, e in reduced:
                exact = sym == layer.state.nngp and layer.exact_diagonal
                lines.append(f"{'' if exact else 'const '}double {sym} = {self.cuda.doprint(e)};")
                if exact:  # Σ(x, x) is the variance, bit for bit (as on the NumPy path)
                    lines.append(f"if (diagonal) {sym} = {layer.state.cov1};")
        except CodegenError:
            return None
        reads = set()
        for e in [e for _, e in reduced + shared]:
            reads |= {s.name for s in e.free_symbols}
        reads -= {s.name for s, _ in shared} | {s.name for s in targets}
        out = []
        if vector:
            out.append(_Python([[f"    # {comment}: the variances"]] + self._vector_lines(layer, vector)))
        for e, sym in hoisted.items():
            what = "CuPy array operations between the kernels"
            if {str(s) for s in e.free_symbols} <= self.point_names | self.parameter_names:
                what = "per point, an input of the kernel"
                self.point_hoisted.add(sym.name)
            out.append(_Python([[f"    # layer {layer.index}: {type(e).__name__}, {what}"],
                                [f"    {sym} = {self.arrays.doprint(e)}"]]))
        if layer.exact_diagonal:
            reads |= {"same", layer.state.cov1.name}
        out.append(_KernelStep(layer.index, comment, lines, [s.name for s in targets], reads))
        return out

    def _vector_lines(self, layer: LayerSchedule, vector):
        lines = [[line] for line in cse_lines(vector, self.arrays, f"v{layer.index}_", "    ")]
        if layer.both_variances:  # sympy may order the terms of
            lines.append(["    if same:  # the two formulas differently: x2 is x1, so its numbers are x1's, bit for bit",
                          f"        {layer.state.cov2} = {layer.state.cov1} if xp.ndim({layer.state.cov1}) < 2 else "
                          f"xp.swapaxes({layer.state.cov1}, -1, -2)"])
        return lines

    # ------------------------------------------------------------------ runs

    def segments(self):
        """Group the items: consecutive kernel steps form a run; array statements that do not read
        the current run's quantities are evaluated before its kernel, the others end the run."""
        segments, run, waiting = [], _Run(), []
        for item in self.items():
            if isinstance(item, _KernelStep):
                run.steps.append(item)
                continue
            if run.steps and item.names & run.assigned:
                segments += waiting + [run]
                run, waiting = _Run(), []
            (waiting if run.steps else segments).append(item)
        segments += waiting + ([run] if run.steps else [])
        final = self._final()
        later: Set[str] = set(final)
        for seg in reversed(segments):  # liveness: a run writes out what later statements read
            if isinstance(seg, _Run):
                assigned = seg.assigned
                seg.outputs = [n for s in seg.steps for n in s.assigned if n in later]
                # the results in the requested dtype, unless a later kernel or statement reads them
                seg.results = [n for n in seg.outputs if n in final and n not in later - final]
                for s in seg.steps:
                    seg.inputs += [n for n in sorted(s.reads, key=_ssa_order) if n not in assigned and n not in seg.inputs]
                if "nngp_0" in seg.inputs and not self.spatial:  # read as cov1_0 on the diagonal
                    seg.inputs += [n for n in ("cov1_0", "same") if n not in seg.inputs]
                seg.inputs.sort(key=self._input_order)
                later |= set(seg.inputs)
            else:
                later |= seg.names
        return segments

    def kernel_definition(self, run: _Run, net_name: str) -> str:
        """The module-level ``cupy.ElementwiseKernel`` of a run."""
        diagonal = "same" in run.inputs
        params, body = [], []
        for name in run.inputs:
            if name == "same":
                continue
            if name == "nngp_0" and not self.spatial:
                params.append("G nngp_0_in")
            else:
                params.append(f"float64 {name}")
        if diagonal:
            params += ["int64 n1", "int64 n2", "bool same"]
            body.append("const bool diagonal = same && (i / n2) % n1 == i % n2;  // an entry K(x, x) of a self-kernel")
            if "nngp_0" in run.inputs and not self.spatial:
                body.append("const double nngp_0 = diagonal ? cov1_0 : (double) nngp_0_in;  // the variance, exactly")
        outputs = [f"{'R' if n in run.results else 'float64'} {n}_out" for n in run.outputs]
        for step in run.steps:
            body.append(c_comment(step.comment))
            body += step.lines
        body += [f"{n}_out = {n};" for n in run.outputs]
        body = _drop_unused(body)
        first, last = run.steps[0].index, run.steps[-1].index
        title = f"layer {first}" if first == last else f"layers {first}–{last}"
        ident = re.sub(r"\W", "_", net_name.encode("ascii", "replace").decode())
        code = "\n".join("    " + line for line in body)
        return (f"# {title}, fused: one pass over the kernel's entries (float64 arithmetic)\n"
                f"{run.name} = xp.ElementwiseKernel(\n"
                f'    "{", ".join(params)}",\n'
                f'    "{", ".join(outputs)}",\n'
                f'    r"""\n{code}\n""",\n'
                f'    "ntkdsl_{ident}{run.name}", preamble=_CUDA_HELPERS, options=_CUDA_OPTIONS)\n')

    def kernel_call(self, run: _Run) -> List[List[str]]:
        first, last = run.steps[0].index, run.steps[-1].index
        what = f"layer {first}" if first == last else f"layers {first}–{last}"
        diagonal = "same" in run.inputs
        matrices = [n for n in run.inputs if n != "same" and n not in self.point_names | self.point_hoisted | self.parameter_names]
        shape = f"{matrices[0]}.shape" if matrices else "(n1, n2)"
        out = [[f"    # {what}: fused CUDA kernel {run.name} (one pass over the entries)"]]
        for n in run.outputs:
            out.append([f"    {n} = xp.empty({shape}, dtype={'dtype' if n in run.results else 'xp.float64'})"])
        args = [n for n in run.inputs if n != "same"] + (["n1", "n2", "same"] if diagonal else []) + run.outputs
        out.append([f"    {run.name}({', '.join(args)})"])
        return out

    def _input_order(self, name: str):
        """Kernel arguments: the kernel-shaped arrays, then the per-point ones, each by layer, then the
        run-time parameters (scalars)."""
        number = re.search(r"(\d+)(?:_\d+)?$", name) if name.startswith("h") else re.search(r"(\d+)$", name)
        point = name in self.point_names or name in self.point_hoisted
        return (2 if name in self.parameter_names else int(point), int(number.group(1)) if number else 0, name)

    def _final(self) -> Set[str]:
        out = self.program.output
        return {str(s) for s in (out.nngp, out.ntk) if isinstance(s, sp.Symbol)}


def emit_cupy_module(program: KernelProgram, source: Optional[str] = None, filename: str = "<string>") -> str:
    """The source of a module defining ``kernels(x1, x2=None, dtype=cupy.float64) -> (nngp, ntk)``.

    Args:
        program: the derived recursion (any network: what CUDA cannot print runs as CuPy arrays).
        source: the .ntk text it came from (hashed into the header).
        filename: where that text came from.

    Returns:
        The module's source text (imports cupy; its kernels compile on first use, cached by CuPy).
    """
    net = program.network
    em = _Emitter(program)
    segments = em.segments()
    body: List[List[str]] = []
    kernels: List[str] = []
    for seg in segments:
        if isinstance(seg, _Run):
            kernels.append(em.kernel_definition(seg, net.name))
            body += em.kernel_call(seg)
        else:
            body += seg.statements
    printer = em.arrays
    body += result_statements(program, printer)
    lines = free_after_last_use(body, _NAME) + ["    return nngp.astype(dtype, copy=False), ntk.astype(dtype, copy=False)"]

    runs = sum(isinstance(s, _Run) for s in segments)
    header = module_header(net, source, filename, "cupy (fused CUDA kernels)",
                           "The Gram matrix is a cuBLAS GEMM; each run of elementwise layers is one cupy.ElementwiseKernel\n"
                           f"({runs} here), printed from the same program as the NumPy backend by sympy's C printer; what CUDA\n"
                           "cannot print (structural operations of image kernels, quadratures, Owen's T) runs as CuPy array\n"
                           "operations between them (ntkdsl/codegen/cuda.py explains).")
    if em.spatial:
        prologue = cuda_support.SPATIAL_PROLOGUE.format(**spatial_fields(program),
                                                        result_shape=spatial_output.result_shape(program))
        printer.functions.setdefault("input_covariances", "")
    else:
        prologue = cuda_support.PROLOGUE.format(d=net.input_dim)
    prologue = (point_helpers(net.input_shape, "CuPy array (from a NumPy or CuPy one)") + parameter_table(program)
                + prologue + parameter_binding(program) + same_point_binding(program))
    imports = BACKENDS["cupy"].imports(printer.modules_used | {"xp"})
    helpers = cuda_support.device_helpers(em.cuda.helpers)
    cuda = ""
    if kernels:
        cuda = (f"\n\n_CUDA_OPTIONS = {cuda_support.CUDA_OPTIONS!r}  # no FMA contraction: exact zeros on the diagonal\n"
                + (f'_CUDA_HELPERS = r"""{helpers}"""\n' if helpers else '_CUDA_HELPERS = ""  # no device helpers needed\n')
                + "".join("\n\n" + k for k in kernels))
    return (header + imports + "\n" + support_sources(printer.functions) + "".join("\n\n" + d for d in em.duals)
            + cuda + prologue + "\n".join(lines) + "\n")


def _drop_unused(lines: List[str]) -> List[str]:
    """The kernel body without the ``const`` locals that nothing reads (e.g. K̇ folded into Θ)."""
    while True:
        text = "\n".join(lines)
        unused = [i for i, line in enumerate(lines) if line.startswith("const double ")
                  and len(re.findall(rf"\b{line.split()[2]}\b", text)) == 1]
        if not unused:
            return lines
        lines = [line for i, line in enumerate(lines) if i not in unused]


def _ssa_order(name: str):
    """Kernel-argument order: by layer number (h2_0, t3_1), then name."""
    stem, _, number = name.rpartition("_")
    layer = re.match(r"[a-z]+(\d+)$", stem)
    return (int(layer.group(1)) if layer else int(number) if number.isdigit() else 0, stem, name)


__all__ = ["emit_cupy_module"]
