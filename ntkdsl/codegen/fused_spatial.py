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
:mod:`.spatial_support`, so both paths round alike), the sparse matrices of transposed convolution,
resize, index and time shift (:mod:`.fused_spatial_maps`), the diagonal, the means, or one compiled
loop over the block's grid, printed from the layer's SSA statements by the shared scalar printer
(:class:`.spatial_blocks.PixelPrinter`). The work is arithmetic, not memory traffic.

The layer sequence itself is plain Python (``_pairs``), one call per layer and block; each loop is a
numba function, one per distinct body (:func:`.spatial_blocks.outline`: the 20 relu layers of a deep CNN share
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

Networks with a numerical dual, a dual without a scalar form (ELU's Owen's T), per-point graphs
(aggregate) or a spatial operation without a fused loop (``spatial_blocks.FUSED_OPERATIONS``) are
:class:`.loops.NotFusable`; they run on NumPy. Per-point means that a pair statement reads (layer_norm
over space: the mean variance of each input) are stacked numbers, as the pixel variances; the
same-point indicator of dropout is 1 on the block's pair (i, i) of a self request.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Tuple

import sympy as sp

from ..algebra.spatial import FULL, conv_taps, flatten_mean, pixel_variance, pool_window, spatial_diagonal, variance_at
from ..algebra.spatial_base import SpatialOp as _SpatialOp
from ..arraycode.printer import ArrayPrinter, CodegenError
from ..symbolic.program import KernelProgram
from . import fused_support
from .loops import NotFusable, module_start, structural_reason
from .prologue import module_header, parameter_binding
from .schedule import LayerSchedule, cse_lines, free_after_last_use, schedule
from .fused_spatial_maps import MAP_OPERATIONS, MapTables, map_lines
from .spatial_blocks import (Block, PixelPrinter, allocate, driver_source, loop_lines, materialize, op_grid, op_lines,
                             outline)

# per-point arrays of kernels(), freed after their last use: variances, their CSE temporaries, pixel variances
_OUTER_NAMES = re.compile(r"\b(?:(?:pv_|diag_|mean_)?cov[12]_\d+|[vw]\d+_\d+)\b")

BLOCK_ENTRIES = 16384  # pair-pixels per block: 128 KiB per grid, a layer's few grids within a 1 MiB L2 cache


def emit_fused_spatial_module(program: KernelProgram, source: Optional[str] = None, filename: str = "<string>") -> str:
    """The source of a module defining ``kernels(x1, x2=None, dtype=numpy.float64) -> (nngp, ntk)``
    for an image or signal network (either layout).

    Raises:
        NotFusable: a layer the pair loop cannot evaluate (the NumPy backend can).
    """
    reason = structural_reason(program)
    if reason:
        raise NotFusable(reason)
    module = _PairModule(program)
    for layer in module.plan.layers:
        module.find_grids(layer)
    module.printer.buffered |= {module.first.nngp} | module.plan.kept  # grids read outside the loop that writes them
    module.add_input()
    for layer, ops, pair in module.layers:
        module.add_layer(layer, ops, pair)
    module.add_results()
    return module.source(source, filename)


def _grid_here(layer: LayerSchedule) -> Tuple[int, int]:
    """(entries, side) of the layer's grid: P pixels, or P² pixel pairs (side P) in the full layout."""
    shape = tuple(layer.state.shape)
    pixels = math.prod(shape)
    return ((pixels * pixels, pixels) if layer.state.layout == FULL else (pixels, 0)) if shape else (1, 0)


class _PairModule:
    """A fused image module while it is printed: every grid's size, the pair loop's blocks
    (:class:`.spatial_blocks.Block`) and the per-point statements of ``kernels()``."""

    def __init__(self, program: KernelProgram):
        self.program = program
        self.plan = plan = schedule(program)
        self.first = first = plan.input
        self.shape0, self.full0 = tuple(first.shape), first.layout == FULL
        self.p0 = p0 = math.prod(self.shape0)
        # name -> (entries of its grid per pair or point, P for a full-layout grid of P x P pixel pairs else 0)
        self.grids: Dict[str, Tuple[int, int]] = {
            sym.name: (p0 * p0, p0) if self.full0 else (p0, 0) for sym in (first.nngp, first.cov1, first.cov2)}
        self.sides_shape: Dict[str, Tuple[int, ...]] = {first.cov1.name: self.shape0, first.cov2.name: self.shape0}
        self.printer = PixelPrinter(plan.rows, plan.cols, self.grids)
        self.vector = ArrayPrinter()
        self.variances: Dict[str, Tuple[str, sp.Expr]] = {}  # pv_<name> -> (<name>, its pixel variances as an expression)
        self.layers = []  # (layer, spatial ops [(result, op, argument)], pair assignments with the ops replaced)
        self.blocks: List[Block] = []
        self.vector_lines: List[List[List[str]]] = []  # per layer: its per-point statements
        self.maps = MapTables()  # the sparse matrices of the layers' spatial maps (fused_spatial_maps)
        self.scratch_entries = 1  # per pair: the largest grid a map writes (its intermediate grids are not named)
        self.temporaries = 0

    def pixel_variances(self, sym: sp.Symbol, expr: Optional[sp.Expr] = None, prefix: str = "pv") -> sp.Symbol:
        """The per-point pixel variances K(p, p) of a full-layout per-point array, as a stacked number;
        with prefix "diag", ``expr`` is its diagonal layout (the same numbers), with "mean" a mean of
        ``sym`` over its pixels (one number per point)."""
        name = f"{prefix}_{sym.name}"
        if name not in self.variances:
            side = 1 if sym in self.plan.cols else 0
            self.variances[name] = (sym.name, expr if expr is not None else variance_at(sym, self.sides_shape[sym.name], side))
            self.grids[name] = (1, 0) if prefix == "mean" else (self.grids[sym.name][1], 0)
            (self.printer.cols if sym in self.plan.cols else self.printer.rows).add(sp.Symbol(name))
        return sp.Symbol(name)

    def grid_of(self, expr) -> Tuple[int, int]:
        if isinstance(expr, _SpatialOp):
            return op_grid(expr)
        if isinstance(expr, sp.Symbol):
            return self.grids.get(expr.name, (1, 0))
        found = {self.grid_of(a) for a in expr.args} - {(1, 0)}
        full = {g for g in found if g[1]}
        if len(full) == 1 and all(g in full or g[0] == next(iter(full))[1] for g in found):
            return full.pop()  # a full grid with per-point numbers of its pixels (pixel variances)
        if len(found) > 1:
            raise NotFusable(f"an expression mixes grids of {sorted(found)} entries")
        return found.pop() if found else (1, 0)

    def find_grids(self, layer: LayerSchedule) -> None:
        """Pass 1: the layer's pair statements, spatial operations replaced by the grids they fill,
        and the grid of every quantity it assigns."""
        ops, pair = self._spatial_ops(layer)
        here = _grid_here(layer)
        for s, e in list(pair) + list(layer.points):  # on the layer's grid, even where the value is one number
            found_grid = self.grid_of(e)  # (a constant activation); per-point arrays too (a constant broadcasts)
            if found_grid not in ((1, 0), here):
                raise NotFusable(f"layer {layer.index} ({layer.label}): {s} on a grid of {found_grid} entries, not {here}")
            self.grids[s.name] = here
        for s, _ in layer.points:
            self.sides_shape[s.name] = tuple(layer.state.shape)
        self.layers.append((layer, ops, pair))

    def _spatial_ops(self, layer: LayerSchedule):
        """The layer's spatial operations as (result grid, op, argument) and its pair assignments reading the results."""
        rows, cols, pair = self.plan.rows, self.plan.cols, layer.pairs
        found, ops, swap = [], [], {}
        for _, e in pair:  # inner operations first: spatial_diagonal(pool_window(K)) pools, then takes the diagonal
            found += [op for op in sp.postorder_traversal(e) if isinstance(op, _SpatialOp) and op not in found]
        for k, op in enumerate(found):
            argument = op.args[0].xreplace(swap)
            if isinstance(op, pixel_variance):  # a variance of x1 (side 0) or x2 (side 1): a stacked number
                side = op.settings[1]
                if not (argument in rows and side == 0 or argument in cols and side == 1):
                    raise NotFusable(f"layer {layer.index} ({layer.label}): pixel variances of {argument} on side {side}")
                swap[op] = self.pixel_variances(argument, op)
                continue
            if argument.free_symbols & {t for t, _ in pair}:
                raise NotFusable(f"layer {layer.index} ({layer.label}): a window sum of the layer's own result")
            if not argument.free_symbols - rows - cols - set(self.program.parameters):
                prefix = {flatten_mean: "mean", spatial_diagonal: "diag"}.get(type(op))  # layer_norm over space; a
                if prefix is None or not (argument in rows or argument in cols):  # full-layout branch read diagonally
                    raise NotFusable(f"layer {layer.index} ({layer.label}): a window sum of per-point numbers only")
                swap[op] = self.pixel_variances(argument, op, prefix)  # a stacked number, as the pixel variances
                continue
            result = sp.Symbol(f"s{layer.index}_{k}")
            self.grids[result.name] = op_grid(op)
            swap[op] = result
            ops.append((result, op, argument))
            self.printer.buffered.add(result)
        return ops, [(s, e.xreplace(swap)) for s, e in pair]

    def add_input(self) -> None:
        """The block's first statement: Σ⁰ of its pairs' pixels, the variance on the pair (i, i)."""
        first, p0, full0, channels = self.first, self.p0, self.full0, self.program.network.input_dim
        entries0, step0 = (p0 * p0, p0 + 1) if full0 else (p0, 1)  # the pixel pairs (p, p) of a block's pair: every step0-th
        exact = self.printer.slot((self.pixel_variances(first.cov1) if full0 else first.cov1).name)
        self.blocks.append(Block([
            f"# input: Σ⁰ = x(p)·x'(q)/{channels} at each of the {entries0} {'pixel pairs' if full0 else 'pixels'}; "
            "Σ(x, x)(p, p) is the variance, bit for bit",
            f"{'_input_pairs_full' if full0 else '_input_pairs'}(x1[i], x2[j0:j1], {first.nngp}, {p0}, {channels})",
            "if diagonal >= 0:",
            f"    {first.nngp}[diagonal * {entries0}:(diagonal + 1) * {entries0}{f':{step0}' if full0 else ''}] = rows_i[{exact}, :{p0}]"],
            writes={first.nngp.name}))

    def add_layer(self, layer: LayerSchedule, ops, pair) -> None:
        """Pass 2: a layer's per-point statements, its window sums and its loop over the block's grids."""
        comment = f"# {layer.title}"
        self.blocks.append(Block([comment] if layer.assignments else [comment, "# (leaves the kernel unchanged)"]))
        self.vector_lines.append([[f"    {comment}"]] + self._variance_statements(layer))
        for k, (result, op, argument) in enumerate(ops):
            source_name, pre = materialize(layer.step, k, argument, self.printer, self.grids)
            if pre is not None:
                self.blocks.append(pre)
            if isinstance(op, MAP_OPERATIONS):
                lines, self.temporaries, entries = map_lines(op, source_name, result.name, self.temporaries, self.maps)
                self.scratch_entries = max(self.scratch_entries, entries)
            else:
                lines, self.temporaries = op_lines(op, source_name, result.name, self.temporaries)
            self.blocks.append(Block(lines, writes={result.name}, reads={source_name},
                                     compiled=isinstance(op, (conv_taps, pool_window))))
        pair = [(s, e) for s, e in pair if s in self.printer.buffered or any(e2.has(s) for _, e2 in pair)]  # no dead locals
        if pair:
            self.blocks.append(self._pair_loop(layer, pair))

    def _variance_statements(self, layer: LayerSchedule) -> List[List[str]]:
        """The layer's per-point statements (NumPy, as on the NumPy path); x2's variance is x1's when
        x2 is x1 (the same arithmetic on the same numbers): not computed twice."""
        index, state, rows = layer.index, layer.state, self.plan.rows
        ones = [(t, e) for t, e in layer.points if t in rows]
        twos = [(t, e) for t, e in layer.points if t not in rows]
        lines = [[line] for line in cse_lines(ones, self.vector, f"v{index}_", "    ")]
        if [t for t, _ in twos] == [state.cov2] and state.cov1 in dict(ones):
            other = cse_lines(twos, self.vector, f"u{index}_", "    ")
            dead = sorted({n for line in other for n in re.findall(rf"\bu{index}_\d+\b", line)})  # freed in the branch
            lines.append(["    if same:"] + [f"        {t} = _other_side({state.cov1})" for t, _ in twos]
                         + ["    else:"] + ["    " + line for line in other]
                         + ([f"        del {', '.join(dead)}"] if dead else []))
        else:
            lines += [[line] for line in cse_lines(twos, self.vector, f"w{index}_", "    ")]
        return lines

    def _pair_loop(self, layer: LayerSchedule, pair) -> Block:
        """The layer's loop over the block's grid, printed from its pair statements."""
        printer = self.printer
        loop = {self.grids[s.name] for s, _ in pair}
        if len(loop) != 1:
            raise NotFusable(f"layer {layer.index} ({layer.label}): quantities on grids of {sorted(loop)} entries")
        printer.loop, printer.side = loop.pop()
        indent = " " * (12 if printer.side else 8)
        try:
            body = cse_lines(pair, printer, f"t{layer.index}_", indent)
            if layer.exact_diagonal and layer.state.nngp in dict(pair):
                # the pair (x, x) takes the variance itself (_exact_diagonal): on the pixel pairs (p, p) in the full layout
                if printer.side:
                    variance, where = printer.doprint(self.pixel_variances(layer.state.cov1)), "b == diagonal and p == q"
                else:
                    variance, where = printer.doprint(layer.state.cov1), "b == diagonal"
                target = printer.doprint(layer.state.nngp)
                for n, line in enumerate(body):
                    if line.startswith(f"{indent}{target} = "):
                        body[n] = f"{indent}{target} = {variance} if {where} else {line.split(' = ', 1)[1]}"
        except CodegenError as exc:
            raise NotFusable(f"layer {layer.index} ({layer.label}): {exc}") from None
        reads = {s.name for _, e in pair for s in e.free_symbols if s in printer.buffered}
        writes = {s.name for s, _ in pair if s in printer.buffered}
        return Block(loop_lines(printer.loop, printer.side, body), writes=writes, reads=reads, compiled=True)

    def add_results(self) -> None:
        """The block's last statement: the read-out kernels of its pairs."""
        out, printer = self.program.output, self.printer
        printer.loop, printer.side = 1, 0
        results = []
        for field, value in (("nngp", out.nngp), ("ntk", out.ntk)):
            if value.is_number:
                results.append(f"{field}[i, j0:j1] = {float(value)!r}")
            elif isinstance(value, sp.Symbol) and value in printer.buffered:
                results.append(f"{field}[i, j0:j1] = {value}[:nb]")
            else:
                raise NotFusable(f"the network's {field} is not one computed quantity ({value})")
        self.blocks.append(Block(["# the results: the read-out kernels of the block's pairs"] + results,
                                 reads={s.name for e in (out.nngp, out.ntk) for s in e.free_symbols if s in printer.buffered}))

    def point_statements(self) -> List[str]:
        """kernels()' per-point numbers: each layer's variances as on the NumPy path, then the rows
        of the stacks they fill; freed after their last use."""
        program, first, slots = self.program, self.first, self.printer.slots
        derived = {pv: (base, self.vector.doprint(expr)) for pv, (base, expr) in self.variances.items()}
        statements = [["    parameters = _parameters(params)"]]
        statements += [[parameter_binding(program, source="parameters").rstrip("\n")]] if program.runtime_parameters else []
        statements += _put_statements([first.cov1.name, first.cov2.name], slots, derived)
        for (layer, _, _), lines in zip(self.layers, self.vector_lines):
            statements += lines + _put_statements([s.name for s, _ in layer.points], slots, derived)
        return free_after_last_use(statements, _OUTER_NAMES)

    def source(self, source: Optional[str], filename: str) -> str:
        """The module's text."""
        program, net, printer, grids, p0 = self.program, self.program.network, self.printer, self.grids, self.p0
        channels = net.input_dim
        slots, count = allocate(self.blocks, self.temporaries)
        pmax = max([entries for entries, _ in grids.values()] + [self.scratch_entries])
        block_pairs = max(1, min(64, BLOCK_ENTRIES // pmax))
        loops = outline(self.blocks, set(slots), {s.name for _, _, pair in self.layers for s, _ in pair},
                        {str(sym) for sym in program.runtime_parameters})
        width = max([grids.get(key, grids.get(key.replace("cov1_", "cov2_"), (1, 0)))[0]
                     for key in (k.split("scale_", 1)[1] if "scale_" in k else k for k in printer.slots)] + [1])
        point_entries = max(grids.get(s.name, (1, 0))[0] for s in self.plan.per_point)
        for routine in self.maps.routines:  # the NumPy routines that build the maps' matrices
            self.vector.functions.setdefault(routine, "")
        body = self.point_statements() + [
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
        prologue = fused_support.SPATIAL_PROLOGUE.format(
            shape=", ".join(map(str, net.input_shape)), channels=channels, count=max(len(printer.slots), 1), width=width,
            layout=self.first.layout)
        per_point, fixed = memory_terms(p0 * channels, len(printer.slots) * width, count, block_pairs * pmax, point_entries)
        memory = ("\n\n# peak bytes of kernels(x1, x2) ≈ PER_PAIR·N1·N2 + PER_POINT·(N1 + N2) + FIXED (fused_spatial.memory_terms)\n"
                  f"MEMORY_MODEL = (16.0, {per_point:.1f}, THREADS * {fixed[0]:.1f} + {fixed[1]:.1f})\n")
        return (module_start(program, header, self.vector) + "\n\n"
                + fused_support.spatial_helpers(self.shape0, channels, self.full0) + self.maps.source() + memory
                + fused_support.scalar_helpers(printer.helpers) + "\n\n" + "".join(loops)
                + driver_source(program, self.blocks, slots) + prologue + "\n".join(body) + "\n")


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



__all__ = ["BLOCK_ENTRIES", "PixelPrinter", "emit_fused_spatial_module", "memory_terms"]
