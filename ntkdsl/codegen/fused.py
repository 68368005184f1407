"""The fused CPU backend: a KernelProgram -> a module whose elementwise layers run in compiled loops.

For a fully connected network everything after the input Gram matrix x1·x2ᵀ/d is elementwise over
the entries (i, j): affine maps of Σ and Θ and the activations' dual kernels. The NumPy backend
evaluates that one array operation at a time, so every operation crosses memory (benchmarks/run.py measured
a NumPy ReLU layer on 4000² entries at four times the Gram matrix). Here the same SSA program is
printed a second way, by :class:`.loops.ScalarPrinter` (the one printer with a scalar math namespace in
place of ``xp``), into ``_fused_layers``: for each row i, one loop over j per layer, reading the
previous layers' row buffers (a few KiB, in cache) and writing its own. numba compiles it
(``nogil``, cached on disk) and ``_in_threads`` runs interleaved rows on every core, each thread
its rows in blocks of about :data:`ROW_BLOCK_ENTRIES` entries (``_row_blocks``), calling
``progress(rows)`` after each block where ``kernels(progress=...)`` is given
(:class:`ntkdsl.progress.pair_progress`; a block is milliseconds, a call microseconds). One loop
through all layers per entry was measured slower: its long dependency chain leaves the vector
units waiting, where short per-layer loops overlap independent iterations.

Outside the loops, in NumPy:

* the Gram matrix (BLAS ``syrk``, upper triangle only, when ``x2`` is None; else a GEMM);
* the variances cov1 (a column) and cov2 (a row), K(q, q, q) as simplified in the program: O(N);
* the exact power-of-two scales that keep ``perp`` free of overflow (and their inverses), per point.

Symmetry: with ``x2`` None only j ≥ i is computed and then mirrored (exactly symmetric); the
diagonal of Σ is set to the variance after every layer that changes it, as on the NumPy path.
Memory: Σ is written over the Gram matrix and Θ is the only other N1 x N2 array.
Precision: ``dtype`` (float64 default, or float32) is the type of the Gram matrix, of the loops'
arithmetic and of the results: ``_fused_layers`` takes the number type ``F`` (one numba
specialisation each), the per-point numbers (computed in float64, rounded once) and the parameters
come in F, and constants print as ``F(...)`` (a Python literal would promote float32 to float64).
float32 loops keep two steps in float64: ``perp_scaled`` (q1·q2 − c² cancels near ρ = ±1; float32
products are exact in float64) and the ELU wedge integrals. float32 runs 1.7x (relu) to 2.1x (erf)
faster at N = 2000 (benchmarks/float32.py) within 32u (u = 2⁻²⁴) normwise (|ΔK| / √(K(x, x)K(x', x')))
of float64 and of the closed forms away from ρ = ±1; near it the duals' conditioning amplifies the
rounding of Σ (already of the float32 Gram matrix): the rectifiers' NTK by √(2δρ) ≈ 5e-4, the
step/sign K̇ ∝ 1/sin θ more (tests/test_float32.py; README, "float32"). No fast-math (no FMA
contraction: q1·q2 − c² stays exactly 0 on the diagonal). float64 agrees with the NumPy backend to
about 1e-15 relative.

The loops vectorise (AVX2/AVX-512) because every function in them is an LLVM intrinsic (sqrt, min,
max, abs) or a small branch-free helper printed into the module (``atan2``, ``asin``, ``hypot``,
``perp_scaled``), and because j is unsigned and the per-point numbers come stacked in two arrays
(``rows``, ``cols``): LLVM then needs few run-time overlap checks. Other math functions (exp, erf,
...) are libm calls: correct, not vectorised.

Numerical duals (Mehler series, :mod:`.mehler_fused`): the per-point Hermite coefficients and tails
come from NumPy before the loops, the series of each entry is evaluated in its layer's loop; the
entries that no series degree covers are flagged there and computed again afterwards, every layer
on NumPy's formulas (the 2-D quadrature where the series is short of its bound).

A vector network whose steps are not all dense/identity/activations is :class:`NotFusable`
(:mod:`.dispatch` then uses NumPy); so is an image network with a numerical dual.
"""

from __future__ import annotations

import weakref
from functools import cached_property
from typing import List, Optional, Tuple

from ..arraycode.printer import ArrayPrinter, CodegenError
from ..symbolic.program import KernelProgram
from . import fused_spatial, fused_support, mehler_fused
from .loops import NotFusable, ScalarPrinter, module_start, structural_reason
from .prologue import module_header, parameter_binding
from .schedule import LayerSchedule, cse_lines, schedule

_FUSABLE: "weakref.WeakKeyDictionary[KernelProgram, Optional[str]]" = weakref.WeakKeyDictionary()


def fusable(program: KernelProgram) -> Optional[str]:
    """None when :func:`emit_fused_module` can fuse the whole program, else the reason it cannot:
    the layer kinds first, then a trial emission (a function without a scalar translation, such
    as Owen's T of ELU, shows only there). Remembered per program: each request asks."""
    if program not in _FUSABLE:
        reason = structural_reason(program)
        if reason is None:
            try:
                emit_fused_module(program)
            except NotFusable as exc:
                reason = str(exc)
            except Exception as exc:  # a defect of this generator must not break requests NumPy can serve
                reason = f"the fused code generator failed ({type(exc).__name__}: {exc}); please report it"
        _FUSABLE[program] = reason
    return _FUSABLE[program]


def emit_fused_module(program: KernelProgram, source: Optional[str] = None, filename: str = "<string>") -> str:
    """The source of a module defining ``kernels(x1, x2=None, dtype=numpy.float64) -> (nngp, ntk)``.

    Args:
        program: the derived recursion of a fully connected network with closed-form duals (an
            image or signal network goes to :func:`.fused_spatial.emit_fused_spatial_module`).
        source: the .ntk text it came from (hashed into the header).
        filename: where that text came from.

    Returns:
        The module's source text (numpy + numba).

    Raises:
        NotFusable: a layer the kernel cannot evaluate (the NumPy backend can).
    """
    if len(program.network.input_shape) > 1:
        return fused_spatial.emit_fused_spatial_module(program, source, filename)
    reason = structural_reason(program)
    if reason:
        raise NotFusable(reason)
    module = _VectorModule(program)
    for layer in module.plan.layers:
        module.add_layer(layer)
    module.add_results()
    return module.source(source, filename)


class _VectorModule:
    """A fused vector module while it is printed: the lines of ``kernels()`` (per-point numbers, in
    NumPy) and the body of ``_fused_layers``' loop over the rows i (one loop over j per layer)."""

    INDENT = " " * 8  # of a layer's lines in the loop over rows

    def __init__(self, program: KernelProgram):
        self.program = program
        self.plan = plan = schedule(program)
        self.scalar = ScalarPrinter(plan.rows, plan.cols, {plan.input.nngp})
        self.scalar.cast = "F"  # the loops compute in the request's dtype (one numba specialisation each)
        self.scalar.buffered |= plan.kept  # a quantity read outside its own layer lives in a row buffer
        self.vector = ArrayPrinter()
        self.duals = mehler_fused.FusedDuals(self.vector)
        self.entries, self.groups = {}, {}  # layer -> its entry (i, j) assignments, its numerical duals
        for layer in plan.layers:
            self.entries[layer.index], self.groups[layer.index] = self.duals.split(list(layer.pairs), f"e{layer.index}_")
            self.duals.layers.append((layer.index, self.entries[layer.index], self.groups[layer.index]))
        self.outer: List[str] = [parameter_binding(program).rstrip("\n")]  # kernels(): the variances, layer by layer
        self.loop: List[str] = []  # the loop over rows i

    def add_layer(self, layer: LayerSchedule) -> None:
        """A layer's variances (kernels()) and its loop over j (``_fused_layers``)."""
        indent, index = self.INDENT, layer.index
        self.outer.append(f"    # {layer.title}")
        self.loop.append(f"{indent}# {layer.title}")
        if not layer.assignments:
            self.outer.append("    # (leaves the kernel unchanged)")
            self.loop.append(indent + "# (leaves the kernel unchanged)")
            return
        vec, variance_duals = self.duals.split(list(layer.points), f"v{index}_e")
        self.outer += self.duals.points_lines(index, self.groups[index], "    ")
        self.outer += self.duals.variance_lines(variance_duals, "    ")
        self.outer += cse_lines(vec, self.vector, f"v{index}_", "    ")  # K(q, q, q), simplified
        if layer.both_variances:
            self.outer.append("    if same:  # terms differently: x2 is x1, so its numbers are x1's, bit for bit")
            self.outer.append(f"        {layer.state.cov2} = xp.transpose({layer.state.cov1})  # a column, or a constant")
        if not self.entries[index]:
            return
        self.scalar.cols_used = []
        try:
            lines = cse_lines(self.entries[index], self.scalar, f"t{index}_", indent + "    ")
            series = self.duals.loop_lines(self.groups[index], self.scalar, indent + "    ")
        except CodegenError as exc:
            raise NotFusable(f"layer {index} ({layer.label}): {exc}") from None
        self.loop += self._loop_over_j() + series + lines
        if layer.exact_diagonal and layer.state.nngp in self.scalar.buffered:
            self.loop.append(indent + "if same:  # Σ(x, x) is the variance, bit for bit (as on the NumPy path)")
            self.loop.append(f"{indent}    {layer.state.nngp}[i] = {self.scalar.doprint(layer.state.cov1)}")

    def _loop_over_j(self) -> List[str]:
        """The head of a loop over j: x2's numbers it reads loaded at its top (their row of ``cols``
        is filled in when the module is assembled)."""
        return ([self.INDENT + "for j in range(lo, hi):"]
                + [f"{self.INDENT}    {name}_j = cols[{{{name}}}, j]" for name in self.scalar.cols_used])

    def add_results(self) -> None:
        out, indent = self.program.output, self.INDENT
        self.scalar.cols_used = []
        last = [f"{indent}    nngp[i, j] = {self.scalar.doprint(out.nngp)}", f"{indent}    ntk[i, j] = {self.scalar.doprint(out.ntk)}"]
        self.loop += [indent + "# the results"] + self._loop_over_j() + last

    def kernels_lines(self, by_kind) -> List[str]:
        """The body of ``kernels()`` after its prologue: per-point numbers, the threads, the refill, the mirror."""
        program, duals = self.program, self.duals
        hoisted = [f"    {name} = {expr}" for name, expr in sorted(self.scalar.hoisted.items(), key=lambda kv: kv[0].startswith("inv"))]
        body = list(self.outer)
        if hoisted:
            body += ["    # exact power-of-two scales of the variances (perp without overflow), once per point"] + hoisted
        if duals.series:
            body += duals.stack_lines("    ")
        numerical = "mehler_rows, mehler_cols, flags, " if duals.series else ""
        body += [f"    # layers 1–{program.steps[-1].index}, fused: Σ is written over the Gram matrix",
                 "    nngp = nngp_0",
                 "    ntk = xp.empty_like(nngp_0)",
                 f"    rows = _stack([{', '.join(by_kind['row'])}], nngp.shape[0], dtype)",
                 f"    cols = _stack([{', '.join(by_kind['col'])}], nngp.shape[1], dtype)",
                 f"    parameters = xp.array([{', '.join(map(str, program.runtime_parameters))}], dtype=xp.float64)",
                 "    F = numba.float32 if dtype == xp.float32 else numba.float64  # the loops' arithmetic",
                 (f"    _in_threads(_row_blocks, nngp.shape[0], _rows_per_block(nngp.shape[1]), progress, same, "
                  f"{''.join(n + ', ' for n in by_kind['matrix'])}{numerical}rows, cols, nngp, ntk, parameters, F)")]
        if duals.series:  # the entries flagged in the loops, every layer again on NumPy
            body += self.refill[1] + ["    if progress is not None:  # the refill: the last step of progress_steps",
                                      "        progress(1)"]
        return body + ["    if same:", "        _in_threads(_mirror_upper, nngp, ntk)", "    return nngp, ntk"]

    @cached_property
    def refill(self):
        """(the source of ``_refill``, the lines of kernels() that call it) of the numerical duals."""
        return self.duals.refill(self.plan.per_point, [str(p) for p in self.program.runtime_parameters],
                                 self.program.output, self.program.network.input_dim,
                                 lambda assignments, _values, printer, prefix, indent: cse_lines(assignments, printer, prefix, indent),
                                 _argument_order)

    def source(self, source: Optional[str], filename: str) -> str:
        """The module's text."""
        program, net, scalar, series = self.program, self.program.network, self.scalar, self.duals.series
        arrays = sorted(scalar.arrays, key=_argument_order)
        by_kind = {kind: [n for n in arrays if scalar.arrays[n] == kind] for kind in ("matrix", "row", "col")}
        column_index = {name: k for k, name in enumerate(by_kind["col"])}
        loop = [line.format(**column_index) if "= cols[{" in line else line for line in self.loop]
        buffers = sorted((s.name for s in scalar.buffered), key=_argument_order)
        kernel = _kernel_source(program, by_kind, buffers, loop, "mehler_rows, mehler_cols, flags, " if series else "")
        body = self.kernels_lines(by_kind)
        header = module_header(net, source, filename, "numba (fused CPU kernels)",
                               "The variances are computed with NumPy; every layer's covariance update runs in `_fused_layers`, one\n"
                               "numba loop over the entries (i, j) (ntkdsl/codegen/fused.py explains the layout).")
        helpers = fused_support.scalar_helpers(scalar.helpers)
        if series:
            helpers += "\n\n" + mehler_fused.scalar_source()
        prologue = fused_support.PROLOGUE.format(d=net.input_dim)
        return (module_start(program, header, self.vector, ["import scipy.linalg.blas"])
                + "\n\n" + fused_support.array_helpers(net.input_dim)
                + ("\n\n" + mehler_fused.array_source() + "\n\n" + self.refill[0] if series else "")
                + helpers + "\n\n" + kernel + "\n\n" + _ROW_BLOCKS.format(
                    entries=ROW_BLOCK_ENTRIES, refill=" + 1" if series else "",
                    refill_doc=", then one step: the refill of the entries no series covered" if series else "")
                + prologue + "\n".join(body) + "\n")


ROW_BLOCK_ENTRIES = 2 ** 18  # entries per call of _fused_layers: milliseconds of work against a call's microseconds

_ROW_BLOCKS = '''def _rows_per_block(n2):
    """Rows per call of _fused_layers: about {entries} entries (i, j), milliseconds of work, so that progress
    comes often while the calls' overhead (microseconds each) stays far below the work."""
    return max(1, {entries} // max(n2, 1))


def _row_blocks(first, step, n1, block, progress, *args):
    """_fused_layers(…, *args) on this thread's rows first, first + step, … < n1, in calls of ``block``
    rows each (the same rows in the same order as one call: the results do not depend on ``block``),
    then progress(rows done) after each call where progress is not None."""
    for start in range(first, n1, step * block):
        stop = min(start + step * block, n1)
        _fused_layers(start, step, stop, *args)
        if progress is not None:
            progress(len(range(start, stop, step)))


def progress_steps(n1, n2):
    """(total, unit) of kernels()' progress for N1 x N2 inputs: the N1 rows (those of a self-kernel come
    from both ends of its triangle in turn, so the rows done track the work done){refill_doc}."""
    return (n1{refill} if n1 and n2 else 0), "row"
'''


def _argument_order(name: str) -> Tuple[int, int, str]:
    """Kernel arguments: the input matrix, then variances and scales by layer."""
    tail = name.rsplit("_", 1)[-1]
    return (0 if name.startswith("nngp") else 1, int(tail) if tail.isdigit() else 0, name)


def _kernel_source(program: KernelProgram, by_kind, buffers, loop, numerical: str = "") -> str:
    last = program.steps[-1].index
    labels = ", ".join(s.label.split("(")[0] for s in program.steps[1:])
    allocate = "".join(f"    {name} = xp.empty(n2, F)\n" for name in buffers)
    at_i = "".join(f"        {name}_i = rows[{k}, i]\n" for k, name in enumerate(by_kind["row"]))
    unpack = "".join(f"    {sym} = F(parameters[{k}])\n" for k, sym in enumerate(program.runtime_parameters))
    return (f'''@numba.njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _fused_layers(first, step, stop, same, {"".join(n + ", " for n in by_kind["matrix"])}{numerical}rows, cols, nngp, ntk, parameters, F):
    """Layers 1–{last} ({labels}) for the rows i = first, first + step, ... (before stop) of nngp and ntk.

    nngp_0 is the Gram matrix x1·x2ᵀ/d; rows holds the per-point numbers of x1 (cov1_L: the variance
    after layer L; scale_*: the exact scales of perp), cols those of x2. Row by row, each layer is one
    loop over j that reads the previous layers' row buffers (in cache) and writes its own: short
    loops that LLVM vectorises and overlaps, where one loop through every layer would wait on each
    layer's latency. With same (x2 is None) only j ≥ i is computed (the caller mirrors), the rows
    taken from both ends of the triangle in turn so that every thread gets long and short rows alike.
    parameters: the run-time parameters, in the order of PARAMETERS. F: the arithmetic's type, numba.float64
    or numba.float32 (rows, cols and the buffers are of it; constants are cast to it): numba compiles
    one specialisation per type.
    """
{unpack}    n1, n2 = nngp.shape
    hi = numba.uint64(n2)
{allocate}    for row in range(first, stop, step):
        i = (row // 2 if row % 2 == 0 else n1 - 1 - row // 2) if same else row
        lo = numba.uint64(i if same else 0)  # j unsigned: no negative-index wraparound, so LLVM vectorises
{at_i}''' + "\n".join(loop) + "\n")


__all__ = ["NotFusable", "ScalarPrinter", "emit_fused_module", "fusable", "structural_reason"]
