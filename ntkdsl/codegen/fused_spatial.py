"""The fused CPU backend of image and signal networks: blocks of input pairs, layer by layer, in cache.

The kernel of an input pair (i, j) is a small grid per layer: its pixels p in the diagonal layout
(convolutions, activations, flatten, layer norm, branches), its pixel pairs (p, q) in the full
layout (pooling and global pooling need them), and no layer ever mixes two input pairs. The
NumPy backend nevertheless holds (P, N1, N2) or (P, P, N1, N2) arrays and crosses them a dozen
times per layer (benchmarks/run.py measured the 21-layer CNN on 32 x 32 images at 0.84x neural-tangents that
way). Here the generated ``_pairs`` takes a block of pairs (i, j0 … j1), as many as keep a layer's
grids in the L2 cache (one pair for a 32 x 32 image under pooling: 8 MiB grids), through the whole
network: Σ⁰ of their pixels from the inputs, then per layer the window sums of convolution and
pooling (``_window_pass``, one spatial axis at a time; ``_window_pass2`` moves p and q by the same
tap, a convolution in the full layout; the taps and axes in the order of
:mod:`.spatial_support`, so both paths round alike), the diagonal, the means, or one compiled
loop over the block's grid, printed from the layer's SSA statements by the shared scalar printer
(:class:`PixelPrinter`). The work is arithmetic, not memory traffic.

The layer sequence itself is plain Python (``_pairs``), one call per layer and block; each loop is a
numba function, one per distinct body (:func:`_outline`: the 20 relu layers of a deep CNN share
one). One compiled function holding every layer was measured at a second of compile time per layer
(LLVM optimises each inlined body again); this way a network compiles in a few seconds, and the
Python calls cost a few percent of a block's work.

Around the blocks, in NumPy: the per-point numbers (each layer's variances, computed by the same
printed statements as on the NumPy path; in the full layout their pixel variances K(p, p), which
the duals read; the exact power-of-two scales of ``perp``), stacked as ``rows[i, k, p]`` and
``cols[j, k, p]``; with x2 None, x2's are x1's (not computed twice). Grids that outlive one loop get a slot of a
per-thread scratch array, reused once dead (a linear scan over the layers). Threads take every
THREADS-th block; with x2 None only pairs j ≥ i are computed and mirrored (exactly symmetric), and
the pair (i, i) takes every layer's variance as its Σ, bit for bit, as the NumPy path does (in the
full layout on its pixel pairs (p, p), where θ = 0 would otherwise amplify a rounding). The NumPy
path overrides every pixel pair (p, q) of (i, i) with the point's own covariance grid; keeping those
grids for every layer and point would cost O(N·P²·layers) memory, so here the pixel pairs p ≠ q of
(i, i) are computed. Where an image repeats a multi-channel pixel vector (x(p) = x(q)), θ = 0 at
that pixel pair, and the rounding difference between the two paths is amplified: a review measured
Θ(x, x) 4.7e-11 apart from the NumPy path on such an image (off the diagonal: 1e-16).

Memory: the two outputs, the stacked per-point numbers (O((N1 + N2)·P·layers)), the per-point
variance arrays of a layer (O(N·P²) in the full layout), the inputs, the scratch; no array of
P·N1·N2 (:func:`memory_terms`). Agreement with the NumPy backend and neural-tangents: ~1e-15.

Networks with a numerical dual, or a dual without a scalar form (ELU's Owen's T), are
:class:`.fused.NotFusable`; they run on NumPy.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Set, Tuple

import sympy as sp

from ..algebra.geometry import window_geometry
from ..algebra.functions import to_atan2
from ..symbolic.program import KernelProgram
from ..algebra.spatial import (FULL, variance_at, _SpatialOp, conv_taps, flatten_mean, global_pool, pixel_variance, pool_window,
                                spatial_diagonal)
from . import fused_support
from ..arraycode.sources import support_sources
from .emit import free_after_last_use, layer_location, module_header, parameter_binding, parameter_table, point_helpers
from .fused import FASTMATH, NotFusable, ScalarPrinter, _cse_lines, structural_reason
from ..arraycode.printer import ArrayPrinter, CodegenError

class PixelPrinter(ScalarPrinter):
    """The scalar printer inside a loop over a block's pairs and their grids.

    The loop runs over the pairs b of a block (i, j0 + b) and the pixels p of the layer's grid (the
    pixel pairs (p, q) in the full layout). A per-point number of x1 prints as ``rows_i[k, p]``, of
    x2 as ``cols_b[b, k, p]`` (``[b, k, q]`` in the full layout); a grid that
    outlives its loop as ``name[at]`` (at = b·P + p: the block's grids are (pairs, pixels) arrays,
    flat); a quantity without pixels (after flatten) at pixel 0. The index k of a per-point number
    is shared by its x1 and x2 versions (cov1_3 and cov2_3 are row k of rows and of cols), so that
    a self-kernel passes one stack for both.
    """

    def __init__(self, rows, cols, grids: Dict[str, Tuple[int, int]]):
        super().__init__(rows, cols, ())
        self.grids = grids  # name -> (entries of its grid: P, or P² in the full layout; P there, else 0)
        self.loop = 1  # entries of the loop being printed
        self.side = 0  # in the full layout: the pixels P of each side of the loop's pairs (p, q)
        self.slots: Dict[str, int] = {}  # per-point key (the cov1 name) -> k

    def _pixel(self, name: str, axis: str = "p") -> str:
        """The index of ``name`` in the loop: "0" without pixels; a per-point number of x1 at p, of
        x2 at q in a full-layout loop (pixel pairs (p, q)), both at p in a diagonal one."""
        pixels = self.grids[name if name in self.grids else name.split("scale_", 1)[1]][0]
        if pixels == 1:
            return "0"
        if self.side and pixels == self.side:
            return axis
        if pixels == self.loop and not self.side:
            return "p"
        raise CodegenError(f"{name} has {pixels} pixels inside a loop over {self.loop}")

    def _slot(self, name: str) -> int:
        key = name.replace("cov2_", "cov1_")
        return self.slots.setdefault(key, len(self.slots))

    def _row(self, name: str) -> str:
        return f"rows_i[{self._slot(name)}, {self._pixel(name)}]"

    def _column(self, name: str) -> str:
        return f"cols_b[b, {self._slot(name)}, {self._pixel(name, 'q')}]"

    def _print_Symbol(self, expr):
        if expr in self._rows:
            return self._row(expr.name)
        if expr in self._cols:
            return self._column(expr.name)
        if expr in self.buffered:
            entries = self.grids[expr.name][0]
            if entries not in (1, self.loop):
                raise CodegenError(f"{expr.name} has {entries} entries inside a loop over {self.loop}")
            return f"{expr.name}[{'b' if entries == 1 else 'at'}]"
        return expr.name

    def _print_spatial(self, expr):  # each one is replaced by a grid before printing
        raise CodegenError(f"{type(expr).__name__} inside an elementwise loop")

    _print_conv_taps = _print_pool_window = _print_flatten_mean = _print_spatial
    _print_global_pool = _print_pixel_variance = _print_spatial_diagonal = _print_spatial


def _op_grid(op) -> Tuple[int, int]:
    """(entries, side) of a spatial operation's output grid: side = P in the full layout, else 0."""
    if isinstance(op, (flatten_mean, global_pool)):
        return 1, 0
    if isinstance(op, (spatial_diagonal, pixel_variance)):
        return math.prod(op.settings[0]), 0
    shape, window, stride, padding = op.settings[:4]
    pixels = math.prod(window_geometry(n, k, s, padding)[2] for n, k, s in zip(shape, window, stride))
    full = isinstance(op, pool_window) or op.settings[4] == FULL
    return (pixels * pixels, pixels) if full else (pixels, 0)


class _Block:
    """One statement of the pair loop's body: its lines, the grids it writes and those it reads."""

    def __init__(self, lines: List[str], writes=(), reads=(), compiled: bool = False):
        self.lines, self.writes, self.reads = lines, set(writes), set(reads)
        self.compiled = compiled  # the lines become a compiled function (:func:`_outline`)


def emit_fused_spatial_module(program: KernelProgram, source: Optional[str] = None, filename: str = "<string>") -> str:
    """The source of a module defining ``kernels(x1, x2=None, dtype=numpy.float64) -> (nngp, ntk)``
    for an image or signal network (either layout).

    Raises:
        NotFusable: a layer the pair loop cannot evaluate (the NumPy backend can).
    """
    reason = structural_reason(program)
    if reason:
        raise NotFusable(reason)
    net, values = program.network, program.fixed_parameters  # the run-time parameters stay names (arguments of the loops)
    first = program.steps[0].state
    shape0 = tuple(first.shape)
    full0 = first.layout == FULL
    channels = net.input_dim
    rows = {s.state.cov1 for s in program.steps if isinstance(s.state.cov1, sp.Symbol)}
    cols = {s.state.cov2 for s in program.steps if isinstance(s.state.cov2, sp.Symbol)}
    p0 = math.prod(shape0)
    # name -> (entries of its grid per pair or point, P for a full-layout grid of P x P pixel pairs else 0)
    grids: Dict[str, Tuple[int, int]] = {}
    for sym in (first.nngp, first.cov1, first.cov2):
        grids[sym.name] = (p0 * p0, p0) if full0 else (p0, 0)
    printer = PixelPrinter(rows, cols, grids)
    vector = ArrayPrinter()
    variances: Dict[str, Tuple[str, sp.Expr]] = {}  # pv_<name> -> (<name>, its pixel variances as an expression)

    def pixel_variances(sym: sp.Symbol, expr: Optional[sp.Expr] = None) -> sp.Symbol:
        """The per-point pixel variances K(p, p) of a full-layout per-point array, as a stacked number."""
        name = f"pv_{sym.name}"
        if name not in variances:
            side = 1 if sym in cols else 0
            variances[name] = (sym.name, expr if expr is not None else variance_at(sym, sides_shape[sym.name], side))
            grids[name] = (grids[sym.name][1], 0)
            (printer._cols if sym in cols else printer._rows).add(sp.Symbol(name))
        return sp.Symbol(name)

    def grid_of(expr) -> Tuple[int, int]:
        if isinstance(expr, _SpatialOp):
            return _op_grid(expr)
        if isinstance(expr, sp.Symbol):
            return grids.get(expr.name, (1, 0))
        found = {grid_of(a) for a in expr.args} - {(1, 0)}
        full = {g for g in found if g[1]}
        if len(full) == 1 and all(g in full or g[0] == next(iter(full))[1] for g in found):
            return full.pop()  # a full grid with per-point numbers of its pixels (pixel variances)
        if len(found) > 1:
            raise NotFusable(f"an expression mixes grids of {sorted(found)} entries")
        return found.pop() if found else (1, 0)

    # pass 1: each layer's pair statements, spatial operations replaced by the grids they fill
    sides_shape: Dict[str, Tuple[int, ...]] = {first.cov1.name: shape0, first.cov2.name: shape0}
    layers = []  # (step, ops [(result, op, argument)], pair assignments, vector assignments)
    for step in program.steps[1:]:
        vec = [(s, e) for s, e in step.assignments if s in rows or s in cols]
        pair = [(s, to_atan2(e.xreplace(values))) for s, e in step.assignments if s not in rows and s not in cols]
        ops: List[Tuple[sp.Symbol, sp.Expr, sp.Expr]] = []
        found = []
        for _, e in pair:  # inner operations first: spatial_diagonal(pool_window(K)) pools, then takes the diagonal
            found += [op for op in sp.postorder_traversal(e) if isinstance(op, _SpatialOp) and op not in found]
        swap = {}
        for k, op in enumerate(found):
            argument = op.args[0].xreplace(swap)
            if isinstance(op, pixel_variance):  # a variance of x1 (side 0) or x2 (side 1): a stacked number
                side = op.settings[1]
                if not (argument in rows and side == 0 or argument in cols and side == 1):
                    raise NotFusable(f"layer {step.index} ({step.label}): pixel variances of {argument} on side {side}")
                swap[op] = pixel_variances(argument, op)
                continue
            if argument.free_symbols & {t for t, _ in pair}:
                raise NotFusable(f"layer {step.index} ({step.label}): a window sum of the layer's own result")
            if not argument.free_symbols - rows - cols - set(program.parameters):
                raise NotFusable(f"layer {step.index} ({step.label}): a window sum of per-point numbers only")
            result = sp.Symbol(f"s{step.index}_{k}")
            grids[result.name] = _op_grid(op)
            swap[op] = result
            ops.append((result, op, argument))
        pair = [(s, e.xreplace(swap)) for s, e in pair]
        shape = tuple(step.state.shape)
        pixels = math.prod(shape)
        here = ((pixels * pixels, pixels) if step.state.layout == FULL else (pixels, 0)) if shape else (1, 0)
        for s, e in pair:  # on the layer's grid, even where the value is one number (a constant activation)
            found_grid = grid_of(e)
            if found_grid not in ((1, 0), here):
                raise NotFusable(f"layer {step.index} ({step.label}): {s} on a grid of {found_grid} entries, not {here}")
            grids[s.name] = here
        for s, e in vec:  # per-point arrays on the layer's grid too (a constant broadcasts)
            found_grid = grid_of(e.xreplace(values))
            if found_grid not in ((1, 0), here):
                raise NotFusable(f"layer {step.index} ({step.label}): {s} on a grid of {found_grid} entries, not {here}")
            grids[s.name] = here
            sides_shape[s.name] = tuple(step.state.shape)
        layers.append((step, ops, pair, vec))

    # grids read outside the loop that writes them: by a later layer, a window sum, or the output
    out = program.output
    printer.buffered |= {first.nngp}
    for n, (step, ops, pair, _) in enumerate(layers):
        later = [e for _, _, p, _ in layers[n + 1:] for _, e in p] + [a for _, _, a in ops]
        later += [a for _, o, _, _ in layers[n + 1:] for _, _, a in o] + [out.nngp, out.ntk]
        printer.buffered |= {s for s, _ in pair if any(e.has(s) for e in later)}
        printer.buffered |= {result for result, _, _ in ops}

    # pass 2: the block's statements, layer by layer
    entries0, step0 = (p0 * p0, p0 + 1) if full0 else (p0, 1)  # the pixel pairs (p, p) of a block's pair: every step0-th
    exact = printer._slot((pixel_variances(first.cov1) if full0 else first.cov1).name)
    blocks: List[_Block] = [_Block([
        f"# input: Σ⁰ = x(p)·x'(q)/{channels} at each of the {entries0} {'pixel pairs' if full0 else 'pixels'}; "
        "Σ(x, x)(p, p) is the variance, bit for bit",
        f"{'_input_pairs_full' if full0 else '_input_pairs'}(x1[i], x2[j0:j1], {first.nngp}, {p0}, {channels})",
        "if diagonal >= 0:",
        f"    {first.nngp}[diagonal * {entries0}:(diagonal + 1) * {entries0}{f':{step0}' if full0 else ''}] = rows_i[{exact}, :{p0}]"],
        writes={first.nngp.name})]
    vector_lines: List[List[List[str]]] = []  # per layer: its per-point statements
    temporaries = 0
    for step, ops, pair, vec in layers:
        comment = f"# layer {step.index}: {step.label}{layer_location(step.layer)}"
        blocks.append(_Block([comment] if step.assignments else [comment, "# (leaves the kernel unchanged)"]))
        ones = [(t, e) for t, e in vec if t in rows]
        twos = [(t, e) for t, e in vec if t not in rows]
        lines = [[f"    {comment}"]] + [[line] for line in _cse_lines(ones, values, vector, f"v{step.index}_", "    ")]
        if [t for t, _ in twos] == [step.state.cov2] and step.state.cov1 in dict(ones):
            # x2's variance is x1's when x2 is x1 (the same arithmetic on the same numbers): not computed twice
            other = _cse_lines(twos, values, vector, f"u{step.index}_", "    ")
            dead = sorted({n for line in other for n in re.findall(rf"\bu{step.index}_\d+\b", line)})  # freed in the branch
            lines.append(["    if same:"] + [f"        {t} = _other_side({step.state.cov1})" for t, _ in twos]
                         + ["    else:"] + ["    " + line for line in other]
                         + ([f"        del {', '.join(dead)}"] if dead else []))
        else:
            lines += [[line] for line in _cse_lines(twos, values, vector, f"w{step.index}_", "    ")]
        vector_lines.append(lines)
        for k, (result, op, argument) in enumerate(ops):
            source_name, pre = _materialize(step, k, argument, printer, grids)
            if pre is not None:
                blocks.append(pre)
            lines, temporaries = _op_lines(op, source_name, result.name, temporaries)
            blocks.append(_Block(lines, writes={result.name}, reads={source_name},
                                 compiled=isinstance(op, (conv_taps, pool_window))))
        pair = [(s, e) for s, e in pair if s in printer.buffered or any(e2.has(s) for _, e2 in pair)]  # no dead locals
        if not pair:
            continue
        loop = {grids[s.name] for s, _ in pair}
        if len(loop) != 1:
            raise NotFusable(f"layer {step.index} ({step.label}): quantities on grids of {sorted(loop)} entries")
        printer.loop, printer.side = loop.pop()
        indent = " " * (12 if printer.side else 8)
        try:
            body = _cse_lines(pair, {}, printer, f"t{step.index}_", indent)
            if step.state.cov1 in dict(step.assignments) and step.state.nngp in dict(pair):
                # the pair (x, x) takes the variance itself (_exact_diagonal): on the pixel pairs (p, p) in the full layout
                if printer.side:
                    variance, where = printer.doprint(pixel_variances(step.state.cov1)), "b == diagonal and p == q"
                else:
                    variance, where = printer.doprint(step.state.cov1), "b == diagonal"
                target = printer.doprint(step.state.nngp)
                for n, line in enumerate(body):
                    if line.startswith(f"{indent}{target} = "):
                        body[n] = f"{indent}{target} = {variance} if {where} else {line.split(' = ', 1)[1]}"
        except CodegenError as exc:
            raise NotFusable(f"layer {step.index} ({step.label}): {exc}") from None
        reads = {s.name for _, e in pair for s in e.free_symbols if s in printer.buffered}
        writes = {s.name for s, _ in pair if s in printer.buffered}
        blocks.append(_Block(_loop_lines(printer.loop, printer.side, body), writes=writes, reads=reads, compiled=True))
    printer.loop, printer.side = 1, 0
    results = []
    for field, value in (("nngp", out.nngp), ("ntk", out.ntk)):
        if value.is_number:
            results.append(f"{field}[i, j0:j1] = {float(value)!r}")
        elif isinstance(value, sp.Symbol) and value in printer.buffered:
            results.append(f"{field}[i, j0:j1] = {value}[:nb]")
        else:
            raise NotFusable(f"the network's {field} is not one computed quantity ({value})")
    blocks.append(_Block(["# the results: the read-out kernels of the block's pairs"] + results,
                         reads={s.name for e in (out.nngp, out.ntk) for s in e.free_symbols if s in printer.buffered}))
    slots, count = _allocate(blocks, temporaries)
    pmax = max(entries for entries, _ in grids.values())
    block_pairs = max(1, min(64, BLOCK_ENTRIES // pmax))
    loops = _outline(blocks, set(slots), {s.name for _, _, pair, _ in layers for s, _ in pair},
                     {str(sym) for sym in program.runtime_parameters})

    # the per-point numbers: each layer's variances as on the NumPy path, then the rows of the stacks they fill
    derived = {pv: (base, vector.doprint(expr)) for pv, (base, expr) in variances.items()}
    statements = [["    parameters = _parameters(params)"]]
    statements += [[parameter_binding(program, source="parameters").rstrip("\n")]] if program.runtime_parameters else []
    statements += _put_statements([first.cov1.name, first.cov2.name], printer.slots, derived)
    for (_, _, _, vec), lines in zip(layers, vector_lines):
        statements += lines + _put_statements([s.name for s, _ in vec], printer.slots, derived)
    width = max([grids.get(key, grids.get(key.replace("cov1_", "cov2_"), (1, 0)))[0]
                 for key in (k.split("scale_", 1)[1] if "scale_" in k else k for k in printer.slots)] + [1])
    point_entries = max(grids.get(s.name, (1, 0))[0] for s in rows | cols)
    outer = free_after_last_use(statements, _OUTER_NAMES)
    body = outer + [
        "    nngp = xp.empty((n1, n2), dtype=dtype)",
        "    ntk = xp.empty((n1, n2), dtype=dtype)",
        f"    scratch = xp.zeros((THREADS, {count}, {block_pairs * pmax}))  # each thread's grids: (pairs, entries), flat",
        f"    _in_threads(_pairs, same, {block_pairs}, x1.reshape(n1, {p0}, {channels}), x2.reshape(n2, {p0}, {channels}), "
        "rows, cols, scratch, nngp, ntk, parameters, progress)",
        "    if same:",
        "        _in_threads(_mirror_upper, nngp, ntk)",
        "    return nngp, ntk"]
    header = module_header(net, source, filename, "numba (fused CPU kernels, blocks of input pairs)",
                           "The per-point variances are computed with NumPy; `_pairs` takes blocks of pairs (i, j) through every\n"
                           "layer, each layer's loop a compiled `_loop_*` (ntkdsl/codegen/fused_spatial.py explains the layout).")
    imports = ["import concurrent.futures", "import math", "import os", "", "import numba", "import numpy as xp"]
    if "xps" in vector.modules_used:
        imports.append("import scipy.special as xps")
    prologue = fused_support.SPATIAL_PROLOGUE.format(
        shape=", ".join(map(str, net.input_shape)), channels=channels, count=max(len(printer.slots), 1), width=width,
        layout=first.layout)
    per_point, fixed = memory_terms(p0 * channels, len(printer.slots) * width, count, block_pairs * pmax, point_entries)
    memory = ("\n\n# peak bytes of kernels(x1, x2) ≈ PER_PAIR·N1·N2 + PER_POINT·(N1 + N2) + FIXED (fused_spatial.memory_terms)\n"
              f"MEMORY_MODEL = (16.0, {per_point:.1f}, THREADS * {fixed[0]:.1f} + {fixed[1]:.1f})\n")
    return (header + "\n".join(imports) + "\n\n" + f"FASTMATH = {FASTMATH}\n" + support_sources(vector.functions)
            + point_helpers(net.input_shape) + parameter_table(program) + "\n\n"
            + fused_support.spatial_helpers(shape0, channels, full0) + memory
            + fused_support.scalar_helpers(printer.helpers) + "\n\n" + "".join(loops)
            + _driver_source(program, blocks, slots) + prologue + "\n".join(body) + "\n")


def memory_terms(input_size: int, stacked: int, grids: int, grid_size: int, entries: int) -> Tuple[float, Tuple[float, float]]:
    """Bytes per point and (bytes per thread, bytes) fixed of a fused image module, from what it
    allocates (all of it NumPy arrays, so tracemalloc sees it; the two outputs are 16 bytes a pair).

    Per point: its ``stacked`` numbers in the stack, the per-point arrays of the variance
    statements alive at once (4 of ``entries``, P or P² in the full layout: a layer's variance,
    its window sums' accumulator and padded copy, a dual's temporary; measured ≤ 3), and three
    float64 copies of the input point (``input_size`` numbers: the float64 input, its pixel-major
    copy, its square). Per thread: ``grids`` scratch grids of ``grid_size`` numbers. Plus 1 MiB.
    """
    per_point = 8.0 * (max(stacked, 1) + 4 * entries + 3 * input_size)
    return per_point, (8.0 * grids * grid_size, float(2**20))


# per-point arrays of kernels(), freed after their last use: variances, their CSE temporaries, pixel variances
_OUTER_NAMES = re.compile(r"\b(?:(?:pv_)?cov[12]_\d+|[vw]\d+_\d+)\b")

BLOCK_ENTRIES = 16384  # pair-pixels per block: 128 KiB per grid, a layer's few grids within a 1 MiB L2 cache


def _loop_lines(entries: int, side: int, body: List[str]) -> List[str]:
    """A loop over the block's pairs b and the grid's pixels p (pixel pairs (p, q) in the full
    layout, side = P) around a layer's statements."""
    if side:
        return (["for b in range(nb):", f"    for p in range({side}):", f"        for q in range({side}):",
                 f"            at = b * {entries} + p * {side} + q"] + body)
    return ["for b in range(nb):", f"    for p in range({entries}):", f"        at = b * {entries} + p"] + body


def _materialize(step, k, argument, printer: PixelPrinter, grids) -> Tuple[str, Optional[_Block]]:
    """The grid a spatial operation reads: the argument's own buffer, or one filled by a loop first."""
    if isinstance(argument, sp.Symbol):
        return argument.name, None
    name = f"m{step.index}_{k}"
    found = {grids[s.name] for s in argument.free_symbols
             if s.name in grids and s not in printer._rows and s not in printer._cols} - {(1, 0)}
    if len(found) > 1:
        raise NotFusable(f"layer {step.index} ({step.label}): an argument mixes grids of {sorted(found)} entries")
    printer.loop, printer.side = found.pop() if found else (1, 0)
    grids[name] = (printer.loop, printer.side)
    printer.buffered.add(sp.Symbol(name))
    try:
        value = printer.doprint(argument)
    except CodegenError as exc:
        raise NotFusable(f"layer {step.index} ({step.label}): {exc}") from None
    reads = {s.name for s in argument.free_symbols if s in printer.buffered}
    indent = " " * (12 if printer.side else 8)
    return name, _Block(_loop_lines(printer.loop, printer.side, [f"{indent}{name}[at] = {value}"]), writes={name},
                        reads=reads, compiled=True)


def _op_lines(op, src: str, dst: str, temporaries: int) -> Tuple[List[str], int]:
    """The calls of one spatial operation on the block's grids, and how many scratch grids it needs.

    Window sums run one spatial axis at a time (``_window_pass``; a convolution in the full layout
    moves p and q by the same tap: ``_window_pass2`` on their two axes at once), alternating
    between two scratch grids, in the axis order and with the final division of the NumPy path's
    routines (spatial_support.conv_taps, pool_window), so both round alike.
    """
    if isinstance(op, (flatten_mean, global_pool)):
        pixels = math.prod(op.settings[0])
        if isinstance(op, global_pool):
            divisor = float(pixels * pixels) if op.settings[1] == "avg" else 1.0
            return [f"_pixel_sums({src}, {dst}, nb, {pixels * pixels}, {divisor!r})  # global {op.settings[1]} pool"], temporaries
        if op.settings[1] == FULL:
            return [f"_pixel_traces({src}, {dst}, nb, {pixels})  # flatten: the mean of K(p, p) over the {pixels} pixels"], temporaries
        return [f"_pixel_sums({src}, {dst}, nb, {pixels}, {float(pixels)!r})  # flatten: the mean over the {pixels} pixels"], temporaries
    if isinstance(op, spatial_diagonal):
        pixels = math.prod(op.settings[0])
        return [f"_diagonals({src}, {dst}, nb, {pixels})  # the pixel pairs (p, p): the diagonal layout"], temporaries
    if isinstance(op, pool_window):
        shape, window, stride, padding, mode = op.settings
        axes = [pair for d in range(len(shape)) for pair in ((d, d), (d, len(shape) + d))]
        what = f"{mode} pool {'x'.join(map(str, window))}: each of the {2 * len(shape)} pixel axes of (p, q) on its own"
        kernel, full, divisor = window, True, float(math.prod(window) ** 2) if mode == "avg" else None
    else:
        shape, kernel, stride, padding, layout = op.settings
        full = layout == FULL
        axes = [(d, None) for d in range(len(shape))]
        what = f"conv: the mean over the {'x'.join(map(str, kernel))} filter's shifted diagonal, one axis at a time"
        divisor = float(math.prod(kernel))
    n = len(shape)
    current = list(shape) * (2 if full else 1)
    lines = [f"# {what}"]
    for k, (d, axis) in enumerate(axes):
        lo, _, size = window_geometry(shape[d], kernel[d], stride[d], padding)
        target = dst if k == len(axes) - 1 else f"tmp_{k % 2}"
        circular = padding == "circular"
        if axis is None and full:  # the same tap on the axes of p and of q
            outer, mid, inner = math.prod(current[:d]), math.prod(current[d + 1:n + d]), math.prod(current[n + d + 1:])
            lines.append(f"_window_pass2({src}, {target}, nb * {outer}, {current[d]}, {mid}, {inner}, {size}, {kernel[d]}, "
                         f"{stride[d]}, {lo}, {circular})")
            current[d] = current[n + d] = size
        else:
            axis = d if axis is None else axis
            outer, inner = math.prod(current[:axis]), math.prod(current[axis + 1:])
            lines.append(f"_window_pass({src}, {target}, nb * {outer}, {current[axis]}, {inner}, {size}, {kernel[d]}, "
                         f"{stride[d]}, {lo}, {circular})")
            current[axis] = size
        src = target
    if divisor is not None:
        lines.append(f"_divide({dst}, nb * {math.prod(current)}, {divisor!r})")
    return lines, max(temporaries, min(len(axes) - 1, 2))


def _allocate(blocks: List[_Block], temporaries: int) -> Tuple[Dict[str, int], int]:
    """Scratch slots for the grids: a linear scan over the blocks, a slot freed after its grid's last
    read (the first ``temporaries`` slots are the window sums' intermediate grids)."""
    last: Dict[str, int] = {}
    for n, block in enumerate(blocks):
        for name in block.writes | block.reads:
            last[name] = n
    slots: Dict[str, int] = {f"tmp_{k}": k for k in range(temporaries)}
    free: List[int] = []
    count = temporaries
    live: Set[str] = set()
    for n, block in enumerate(blocks):
        for name in sorted(live):
            if last[name] < n:
                live.discard(name)
                free.append(slots[name])
        for name in sorted(block.writes):
            if name not in slots:
                if free:
                    slots[name] = free.pop()
                else:
                    slots[name] = count
                    count += 1
                live.add(name)
    return slots, max(count, 1)


def _put_statements(names, slots: Dict[str, int], derived: Dict[str, Tuple[str, str]]) -> List[List[str]]:
    """After per-point arrays ``names`` are computed: the pixel variances the loops read of a
    full-layout one (``derived``: pv name -> (its array, the NumPy expression)), then every stack row
    k that the loops read (a number itself, its power-of-two scale or its inverse scale); x2's only
    if x2 is not x1."""
    out: List[List[str]] = []
    for name in names:
        extra = [pv for pv, (base, _) in derived.items() if base == name]
        out += [[f"    {pv} = {derived[pv][1]}"] for pv in extra]
        for quantity in [name] + extra:
            puts = []
            key = quantity.replace("cov2_", "cov1_")
            for value, k in ((quantity, slots.get(key)), (f"_pow2_scale({quantity})", slots.get(f"scale_{key}")),
                             (f"1 / _pow2_scale({quantity})", slots.get(f"inv_scale_{key}"))):
                if k is not None:
                    puts.append(f"_put({'cols' if 'cov2_' in quantity else 'rows'}, {k}, {value})")
            if "cov2_" in quantity and puts:
                out.append(["    if not same:"] + [f"        {line}" for line in puts])
            else:
                out += [[f"    {line}"] for line in puts]
    return out


_TOKEN = re.compile(r"\brows_i\[(\d+)|\bcols_b\[b, (\d+)|\b([A-Za-z_]\w*)\b")


def _outline(blocks: List[_Block], grids: Set[str], locals_: Set[str], parameters: Set[str] = frozenset()) -> List[str]:
    """Each loop and each window sum becomes a call of a compiled function, one per distinct body.

    The body is made generic: its grids become arguments g0, g1, ..., its stack rows arguments
    k0, k1, ..., its run-time parameters (σ_w, σ_b, ...) arguments c0, c1, ..., its temporaries and
    locals v0, v1, ... So the 20 identical relu layers of a deep CNN share one function, whatever
    their parameters (compile-time constants stay in its text). Returns the
    functions' sources; rewrites the blocks to their calls. A window sum's function fixes its
    geometry as constants, so that LLVM unrolls the taps and vectorises the runs of ``_window_pass``.
    """
    functions: Dict[str, str] = {}  # generic body -> function name
    sources: List[str] = []
    for block in blocks:
        if not block.compiled:
            continue
        names: Dict[str, str] = {}
        arguments: List[str] = []
        stack: Dict[str, str] = {}
        stack_arguments: List[str] = []
        constants: List[str] = []

        def generic(match):
            row, col, word = match.groups()
            if row is not None or col is not None:
                k = row if row is not None else col
                if k not in stack:
                    stack[k] = f"k{len(stack)}"
                    stack_arguments.append(k)
                return ("rows_i[" if row is not None else "cols_b[b, ") + stack[k]
            if word in grids:
                if word not in names:
                    names[word] = f"g{len(arguments)}"
                    arguments.append(word)
                return names[word]
            if word in parameters:
                if word not in names:
                    names[word] = f"c{len(constants)}"
                    constants.append(word)
                return names[word]
            if word in locals_ or re.fullmatch(r"t\d+_\d+", word):
                if word not in names:
                    names[word] = f"v{sum(1 for v in names.values() if v.startswith('v'))}"
                return names[word]
            return word

        body = [_TOKEN.sub(generic, line) for line in block.lines]
        key = "\n".join(body)
        if key not in functions:
            functions[key] = f"_loop_{len(functions)}"
            params = ", ".join([f"g{k}" for k in range(len(arguments))] + ["rows_i", "cols_b"]
                               + [f"k{k}" for k in range(len(stack))] + [f"c{k}" for k in range(len(constants))]
                               + ["nb", "diagonal"])
            sources.append(f"@numba.njit(nogil=True, fastmath=FASTMATH, error_model=\"numpy\", cache=True)\n"
                           f"def {functions[key]}({params}):\n" + "".join(f"    {line}\n" for line in body) + "\n\n")
        call = ", ".join(arguments + ["rows_i", "cols_b"] + stack_arguments + constants + ["nb", "diagonal"])
        block.lines = [f"{functions[key]}({call})"]
    return sources


def _driver_source(program: KernelProgram, blocks: List[_Block], slots: Dict[str, int]) -> str:
    last = program.steps[-1].index
    labels = ", ".join(s.label.split("(")[0] for s in program.steps[1:])
    names = sorted(slots, key=lambda name: (slots[name], name))
    bind = "".join(f"    {name} = grids[{slots[name]}]\n" for name in names)
    bind += parameter_binding(program, source="parameters")
    body = "\n".join("        " + line for block in blocks for line in block.lines)
    return f'''def _pairs(first, step, same, size, x1, x2, rows, cols, scratch, nngp, ntk, parameters, progress):
    """Layers 1–{last} ({labels}) for this thread's blocks of at most ``size`` pairs (i, j0 … j1 − 1).

    x1, x2: inputs as (N, P, C); rows[i, k, p], cols[j, k, p]: per-point numbers (variances, scales);
    scratch[first]: this thread's grids, each reused once dead (the names bound below); parameters:
    the run-time parameters (PARAMETERS' order); diagonal: the block's pair (i, i) of a self-kernel, or −1;
    progress: None, or called with the number of pairs after each block. Each call below runs compiled,
    without the GIL.
    """
    grids = scratch[first]
{bind}    n1, n2 = nngp.shape
    for i, j0, j1, diagonal in _pair_blocks(n1, n2, same, size, first, step):
        nb = j1 - j0
        rows_i = rows[i]
        cols_b = cols[j0:j1]
{body}
        if progress is not None:
            progress(nb)
'''


__all__ = ["BLOCK_ENTRIES", "PixelPrinter", "emit_fused_spatial_module"]
