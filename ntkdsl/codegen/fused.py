"""The fused CPU backend: a KernelProgram -> a module whose elementwise layers run in compiled loops.

For a fully connected network everything after the input Gram matrix x1·x2ᵀ/d is elementwise over
the entries (i, j): affine maps of Σ and Θ and the activations' dual kernels. The NumPy backend
evaluates that one array operation at a time, so every operation crosses memory (benchmarks/run.py measured
a NumPy ReLU layer on 4000² entries at four times the Gram matrix). Here the same SSA program is
printed a second way, by :class:`ScalarPrinter` (the one printer with a scalar math namespace in
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
from typing import Dict, List, Optional, Tuple

import sympy as sp

from ..algebra.functions import GaussianExpectation, to_atan2
from ..symbolic.program import KernelProgram
from . import fused_support, mehler_fused
from ..arraycode.sources import support_sources
from .emit import layer_location, module_header, parameter_binding, parameter_table, point_helpers
from ..arraycode.printer import ArrayPrinter, CodegenError, conditional_chain

FASTMATH = "False"  # no FMA contraction: q1·q2 − c² must stay exactly 0 on the diagonal, as on the NumPy path


class NotFusable(Exception):
    """The program has a step that the fused kernel cannot evaluate; the message says which."""


# numpy/scipy names that the shared printer asks for -> the scalar code of the loop body
_SCALAR = {
    "numpy.sqrt": "math.sqrt", "numpy.exp": "math.exp", "numpy.expm1": "math.expm1", "numpy.log": "math.log",
    "numpy.log1p": "math.log1p", "numpy.sin": "math.sin", "numpy.cos": "math.cos", "numpy.tan": "math.tan",
    "numpy.arctan": "math.atan", "numpy.tanh": "math.tanh", "numpy.sinh": "math.sinh", "numpy.cosh": "math.cosh",
    "numpy.floor": "math.floor", "numpy.ceil": "math.ceil", "numpy.pi": "math.pi", "numpy.e": "math.e",
    "scipy.constants.pi": "math.pi",
    "numpy.abs": "abs", "numpy.maximum": "max", "numpy.minimum": "min",
    "numpy.arctan2": "atan2", "numpy.hypot": "hypot",  # vectorisable helpers (fused_support)
    "scipy.special.erf": "math.erf", "scipy.special.erfc": "math.erfc", "scipy.special.gamma": "math.gamma",
    "scipy.special.gammaln": "math.lgamma",
}
_HELPERS = ("atan2", "asin", "hypot", "perp_scaled", "pow2_scale")


class ScalarPrinter(ArrayPrinter):
    """The shared printer with a scalar namespace: the statements of one entry (i, j) of a layer loop.

    Symbols print as the loop sees them: a variance of x1 as ``cov1_3_i`` (loaded once per row), of
    x2 as ``cov2_3_j`` (loaded at the top of the layer's loop), the input Gram matrix as
    ``nngp_0[i, j]``, a quantity that a later layer reads as its row buffer ``nngp_3[j]``, any other
    by its SSA name (a local of the layer's loop). Functions without a scalar translation raise
    :class:`CodegenError` (the program is then not fusable).
    """

    def __init__(self, rows, cols, matrices):
        super().__init__()
        self._rows, self._cols, self._matrices = set(rows), set(cols), set(matrices)
        self.buffered = set()  # quantities kept in a row buffer (read by a later layer or the output)
        self.arrays: Dict[str, str] = {}  # per-point inputs of the kernel: name -> "row" | "col" | "matrix"
        self.cols_used: List[str] = []  # column numbers the current layer reads (loaded at its loop's top)
        self.hoisted: Dict[str, str] = {}  # name -> NumPy expression computed before the loop
        self.helpers = set()
        self.cast: Optional[str] = None  # the loop's number type (F: float32 or float64); None: Python floats

    def _number(self, text: str) -> str:
        """A constant in the loop's number type: Python's float or int literals would make numba
        promote float32 arithmetic to float64."""
        return f"{self.cast}({text})" if self.cast else text

    def _module_format(self, fqn, register=True):
        if fqn not in _SCALAR:
            raise CodegenError(f"{fqn} has no scalar translation for the fused kernel")
        name = _SCALAR[fqn]
        if name.startswith("math."):
            self.modules_used.add("math")
            if name in ("math.pi", "math.e"):
                return self._number(name)
        elif name in _HELPERS:
            self.helpers.add(name)
        return name

    def _print_Symbol(self, expr):
        name = expr.name
        if expr in self._rows:
            return self._row(name)
        if expr in self._cols:
            return self._column(name)
        if expr in self._matrices:
            self.arrays[name] = "matrix"
            return f"{name}[i, j]"
        if expr in self.buffered:
            return f"{name}[j]"
        return name

    def _row(self, name: str) -> str:
        """A per-point number of x1 (a variance or a scale): a local loaded once per row i."""
        self.arrays[name] = "row"
        return f"{name}_i"

    def _column(self, name: str) -> str:
        """A per-point number of x2: a local loaded at the top of the layer's loop over j."""
        self.arrays[name] = "col"
        if name not in self.cols_used:
            self.cols_used.append(name)
        return f"{name}_j"

    def _print_Rational(self, expr):
        return self._number(f"{expr.p}/{expr.q}") if self.cast else f"({expr.p}/{expr.q})"

    def _print_Integer(self, expr):
        return self._number(str(expr.p))

    def _print_Float(self, expr):
        return self._number(super()._print_Float(expr))

    def _print_Pow(self, expr, rational=False):
        """Integer powers as ``x**n`` (numba keeps a float32 x in float32), others in the loop's type."""
        base, exp = expr.base, expr.exp
        if not self.cast or not (exp.is_Integer or abs(exp) == sp.S.Half):
            return super()._print_Pow(expr, rational)
        base_text = self._print(base)
        if exp.is_Integer:
            power = f"{self.parenthesize(base, sp.printing.precedence.PRECEDENCE['Pow'])}**{abs(exp.p)}"
        else:
            power = f"{self._module_format('numpy.sqrt')}({base_text})"
        return power if exp > 0 else f"({self._number('1')}/{power})"

    def _print_asin(self, expr):
        self.helpers.add("asin")
        return f"asin({self._print(expr.args[0])})"

    def _print_perp(self, expr):  # √max(q1·q2 − c², 0) with the overflow-safe scales hoisted out of the loop
        c, p = expr.args
        factors = p.as_ordered_factors() if p.is_Mul else []
        if len(factors) != 2:
            return f"math.sqrt(max({self._print(p - c**2)}, {self._number('0.0')}))"
        self.helpers.add("perp_scaled")
        self.modules_used.add("math")
        q1, q2 = factors
        scales = ", ".join(self._scale(q, inverse) for inverse in (False, True) for q in (q1, q2))
        return f"perp_scaled({self._print(c)}, {self._print(q1)}, {self._print(q2)}, {scales})"

    def _scale(self, q, inverse: bool) -> str:
        """The exact power-of-two scale of a variance (or its inverse): hoisted where q is a per-point
        variance, else computed in the loop."""
        if q in self._rows or q in self._cols:
            name = f"{'inv_' if inverse else ''}scale_{q.name}"
            self.hoisted[name] = f"1 / scale_{q.name}" if inverse else f"_pow2_scale({q.name})"
            return self._row(name) if q in self._rows else self._column(name)
        if q.func.__name__ in ("smaller", "larger") and all(a in self._rows or a in self._cols for a in q.args):
            a, b = q.args
            op = "<=" if q.func.__name__ == "smaller" else ">="
            return f"({self._scale(a, inverse)} if {self._print(a)} {op} {self._print(b)} else {self._scale(b, inverse)})"
        self.helpers.add("pow2_scale")
        return f"{'1 / ' if inverse else ''}pow2_scale({self._print(q)})"

    def _print_smaller(self, expr):
        return f"min({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_larger(self, expr):
        return f"max({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_Piecewise(self, expr):  # Python's conditional expressions, nested
        return conditional_chain(self, expr, lambda condition, value, rest: f"(({value}) if {condition} else {rest})")

    def _print_Relational(self, expr):
        if expr.rel_op not in ("==", "!=", "<", "<=", ">", ">="):
            raise CodegenError(f"relation {expr.rel_op}")
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_wedge_routine(self, expr):  # the ELU dual's wedge integrals: numba versions (wedge_support)
        self.helpers.add("wedge_support")
        self.modules_used.add("math")
        args = (self._print(a) for a in expr.args)  # in float64 whatever the loop's type (their series and
        args = (f"numba.float64({a})" for a in args) if self.cast else args  # continued fractions: float64 constants)
        return f"{type(expr).__name__}_scalar({', '.join(args)})"

    _print_mills = _print_mills_rem = _print_wedge = _print_wedge_rem = _print_wedge_routine

    def _print_GaussianExpectation(self, expr):  # emit_fused_module replaces them (mehler_fused.FusedDuals)
        raise CodegenError("a numerical dual inside an expression that the fused loop cannot split off")

    def _print_Heaviside(self, expr):
        raise CodegenError("Heaviside in a kernel formula")


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


def structural_reason(program: KernelProgram) -> Optional[str]:
    """Why the program's layers cannot be fused (for a vector network, a layer that is not
    elementwise after the Gram matrix; for an image network, a numerical dual), or None."""
    vector = len(program.network.input_shape) == 1
    for step in program.steps[1:]:
        if vector and not all(layer.entrywise for layer in (step.layer, *step.merged)):
            return f"layer {step.index} ({step.label}) is not elementwise after the input Gram matrix"
        if not vector and any(expr.has(GaussianExpectation) for _, expr in step.assignments):
            return f"layer {step.index} ({step.label}) has a numerical dual (quadrature)"
    return None


def emit_fused_module(program: KernelProgram, source: Optional[str] = None, filename: str = "<string>") -> str:
    """The source of a module defining ``kernels(x1, x2=None, dtype=numpy.float64) -> (nngp, ntk)``.

    Args:
        program: the derived recursion of a fully connected network with closed-form duals.
        source: the .ntk text it came from (hashed into the header).
        filename: where that text came from.

    Returns:
        The module's source text (numpy + numba).

    Raises:
        NotFusable: a layer the kernel cannot evaluate (the NumPy backend can).
    """
    if len(program.network.input_shape) > 1:
        from .fused_spatial import emit_fused_spatial_module

        return emit_fused_spatial_module(program, source, filename)
    reason = structural_reason(program)
    if reason:
        raise NotFusable(reason)
    net = program.network
    values = program.fixed_parameters  # the run-time ones stay names: locals of kernels() and of the loops
    rows = {s.state.cov1 for s in program.steps if isinstance(s.state.cov1, sp.Symbol)}
    cols = {s.state.cov2 for s in program.steps if isinstance(s.state.cov2, sp.Symbol)}
    scalar = ScalarPrinter(rows, cols, {program.steps[0].state.nngp})
    scalar.cast = "F"  # the loops compute in the request's dtype (one numba specialisation each)
    vector = ArrayPrinter()
    out = program.output
    duals = mehler_fused.FusedDuals(vector)
    entries, groups = {}, {}  # step index -> its entry (i, j) assignments (parameters substituted), its numerical duals
    for step in program.steps[1:]:
        entries[step.index], groups[step.index] = duals.split(
            [(s, to_atan2(e.xreplace(values))) for s, e in step.assignments if s not in rows | cols], f"e{step.index}_")
        duals.layers.append((step.index, entries[step.index], groups[step.index]))
    reads = {k: [e for _, e in assigned] + [a for group in groups[k] for _, ge in group for a in ge.args[2:5]]
             for k, assigned in entries.items()}
    for step in program.steps[1:]:  # a quantity read outside its own layer lives in a row buffer
        later = [e for k, read in reads.items() if k > step.index for e in read] + [out.nngp, out.ntk]
        scalar.buffered |= {s for s, _ in entries[step.index] if any(e.has(s) for e in later)}
    outer: List[str] = [parameter_binding(program).rstrip("\n")]  # lines of kernels(): the variances, layer by layer
    loop: List[str] = []  # the body of the loop over rows i: one loop over j per layer
    indent = " " * 8
    for step in program.steps[1:]:
        where = layer_location(step.layer)
        comment = f"# layer {step.index}: {step.label}{where}"
        outer.append(f"    {comment}")
        loop.append(indent + comment)
        if not step.assignments:
            outer.append("    # (leaves the kernel unchanged)")
            loop.append(indent + "# (leaves the kernel unchanged)")
            continue
        vec, variance_duals = duals.split([(s, to_atan2(e.xreplace(values))) for s, e in step.assignments
                                           if s in rows or s in cols], f"v{step.index}_e")
        outer += duals.points_lines(step.index, groups[step.index], "    ")
        outer += duals.variance_lines(variance_duals, "    ")
        outer += _cse_lines(vec, {}, vector, f"v{step.index}_", "    ")  # K(q, q, q), simplified
        if step.state.cov2 in dict(vec) and step.state.cov1 in dict(vec):  # sympy may order the two formulas'
            outer.append("    if same:  # terms differently: x2 is x1, so its numbers are x1's, bit for bit")
            outer.append(f"        {step.state.cov2} = xp.transpose({step.state.cov1})  # a column, or a constant")
        if not entries[step.index]:
            continue
        scalar.cols_used = []
        try:
            lines = _cse_lines(entries[step.index], {}, scalar, f"t{step.index}_", indent + "    ")
            series = duals.loop_lines(groups[step.index], scalar, indent + "    ")
        except CodegenError as exc:
            raise NotFusable(f"layer {step.index} ({step.label}): {exc}") from None
        loop.append(indent + "for j in range(lo, hi):")
        loop += [f"{indent}    {name}_j = cols[{{{name}}}, j]" for name in scalar.cols_used]
        loop += series + lines
        if step.state.nngp in scalar.buffered and step.state.cov1 in dict(step.assignments):
            loop.append(indent + "if same:  # Σ(x, x) is the variance, bit for bit (as on the NumPy path)")
            loop.append(f"{indent}    {step.state.nngp}[i] = {scalar.doprint(step.state.cov1)}")
    scalar.cols_used = []
    last = [f"{indent}    nngp[i, j] = {scalar.doprint(out.nngp)}", f"{indent}    ntk[i, j] = {scalar.doprint(out.ntk)}"]
    loop.append(indent + "# the results")
    loop.append(indent + "for j in range(lo, hi):")
    loop += [f"{indent}    {name}_j = cols[{{{name}}}, j]" for name in scalar.cols_used] + last

    arrays = sorted(scalar.arrays, key=_argument_order)
    by_kind = {kind: [n for n in arrays if scalar.arrays[n] == kind] for kind in ("matrix", "row", "col")}
    column_index = {name: k for k, name in enumerate(by_kind["col"])}
    loop = [line.format(**column_index) if "= cols[{" in line else line for line in loop]
    buffers = sorted((s.name for s in scalar.buffered), key=_argument_order)
    numerical = "mehler_rows, mehler_cols, flags, " if duals.series else ""
    kernel = _kernel_source(program, by_kind, buffers, loop, numerical)
    hoisted = [f"    {name} = {expr}" for name, expr in sorted(scalar.hoisted.items(), key=lambda kv: kv[0].startswith("inv"))]
    body = outer
    if hoisted:
        body += ["    # exact power-of-two scales of the variances (perp without overflow), once per point"] + hoisted
    if duals.series:
        body += duals.stack_lines("    ")
    body += [f"    # layers 1–{program.steps[-1].index}, fused: Σ is written over the Gram matrix",
             "    nngp = nngp_0",
             "    ntk = xp.empty_like(nngp_0)",
             f"    rows = _stack([{', '.join(by_kind['row'])}], nngp.shape[0], dtype)",
             f"    cols = _stack([{', '.join(by_kind['col'])}], nngp.shape[1], dtype)",
             f"    parameters = xp.array([{', '.join(map(str, program.runtime_parameters))}], dtype=xp.float64)",
             "    F = numba.float32 if dtype == xp.float32 else numba.float64  # the loops' arithmetic",
             (f"    _in_threads(_row_blocks, nngp.shape[0], _rows_per_block(nngp.shape[1]), progress, same, "
              f"{''.join(n + ', ' for n in by_kind['matrix'])}{numerical}rows, cols, nngp, ntk, parameters, F)")]
    refill = ""
    if duals.series:  # the entries flagged in the loops, every layer again on NumPy
        refill, lines = duals.refill(rows | cols, [str(p) for p in program.runtime_parameters], out, net.input_dim,
                                     _cse_lines, _argument_order)
        body += lines + ["    if progress is not None:  # the refill: the last step of progress_steps",
                         "        progress(1)"]
    body += ["    if same:",
             "        _in_threads(_mirror_upper, nngp, ntk)",
             "    return nngp, ntk"]

    header = module_header(net, source, filename, "numba (fused CPU kernels)",
                           "The variances are computed with NumPy; every layer's covariance update runs in `_fused_layers`, one\n"
                           "numba loop over the entries (i, j) (ntkdsl/codegen/fused.py explains the layout).")
    imports = ["import concurrent.futures", "import math", "import os", "", "import numba", "import numpy as xp",
               "import scipy.linalg.blas"]
    if "xps" in vector.modules_used:
        imports.append("import scipy.special as xps")
    helpers = fused_support.scalar_helpers(scalar.helpers)
    if duals.series:
        helpers += "\n\n" + mehler_fused.scalar_source()
    prologue = fused_support.PROLOGUE.format(d=net.input_dim)
    return (header + "\n".join(imports) + "\n\n" + f"FASTMATH = {FASTMATH}\n" + support_sources(vector.functions)
            + point_helpers(net.input_shape) + parameter_table(program) + "\n\n" + fused_support.array_helpers(net.input_dim)
            + ("\n\n" + mehler_fused.array_source() + "\n\n" + refill if duals.series else "")
            + helpers + "\n\n" + kernel + "\n\n" + _ROW_BLOCKS.format(
                entries=ROW_BLOCK_ENTRIES, refill=" + 1" if duals.series else "",
                refill_doc=", then one step: the refill of the entries no series covered" if duals.series else "")
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


def _cse_lines(assignments, values, printer, prefix, indent) -> List[str]:
    """One statement per line: the shared subexpressions of a layer, then its assignments."""
    if not assignments:
        return []
    targets = [s for s, _ in assignments]
    exprs = [to_atan2(e.xreplace(values)) for _, e in assignments]
    shared, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix), order="none")
    lines = [f"{indent}{s} = {printer.doprint(e)}" for s, e in shared]
    lines += [f"{indent}{printer.doprint(s)} = {printer.doprint(e)}" for s, e in zip(targets, reduced)]
    return lines


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
