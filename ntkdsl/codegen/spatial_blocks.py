"""The pieces of a fused image module's pair loop (:mod:`.fused_spatial`): the printer of a loop over
a block's grids, the block's statements, the calls of the window sums, the scratch slots of the
grids and the compiled functions the loops become.
"""

from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Set, Tuple

import sympy as sp

from ..algebra.geometry import window_geometry
from ..algebra.spatial import FULL, conv_taps, flatten_mean, global_pool, pixel_variance, pool_window, spatial_diagonal
from ..arraycode.printer import CodegenError
from ..symbolic.program import KernelProgram
from .fused_spatial_maps import MAP_OPERATIONS, map_grid
from .loops import NotFusable, ScalarPrinter
from .prologue import parameter_binding
from .schedule import last_uses

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

    def slot(self, name: str) -> int:
        key = name.replace("cov2_", "cov1_")
        return self.slots.setdefault(key, len(self.slots))

    def _row(self, name: str) -> str:
        return f"rows_i[{self.slot(name)}, {self._pixel(name)}]"

    def _column(self, name: str) -> str:
        return f"cols_b[b, {self.slot(name)}, {self._pixel(name, 'q')}]"

    def _print_Symbol(self, expr):
        if expr in self.rows:
            return self._row(expr.name)
        if expr in self.cols:
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
    _print_conv_transpose_taps = _print_resize_map = _print_spatial_index = _print_spatial
    _print_time_shift = _print_diagonal_embed = _print_graph_aggregate = _print_spatial

    def _print_SamePoint(self, expr):  # δ(x, x′): the block's pair (i, i) of a self request (diagonal = −1 otherwise)
        return "(1.0 if b == diagonal else 0.0)"


# the spatial operations the fused loops implement; any other (a new layer's) is refused, never guessed
FUSED_OPERATIONS = (conv_taps, pool_window, flatten_mean, global_pool, pixel_variance, spatial_diagonal) + MAP_OPERATIONS


def op_grid(op) -> Tuple[int, int]:
    """(entries, side) of a spatial operation's output grid: side = P in the full layout, else 0."""
    if not isinstance(op, FUSED_OPERATIONS):
        raise NotFusable(f"no fused loop implements the spatial operation {type(op).__name__}")
    if isinstance(op, MAP_OPERATIONS):
        return map_grid(op)
    if isinstance(op, (flatten_mean, global_pool)):
        return 1, 0
    if isinstance(op, (spatial_diagonal, pixel_variance)):
        return math.prod(op.settings[0]), 0
    shape, window, stride, padding = op.settings[:4]
    pixels = math.prod(window_geometry(n, k, s, padding)[2] for n, k, s in zip(shape, window, stride))
    full = isinstance(op, pool_window) or op.settings[4] == FULL
    return (pixels * pixels, pixels) if full else (pixels, 0)


class Block:
    """One statement of the pair loop's body: its lines, the grids it writes and those it reads."""

    def __init__(self, lines: List[str], writes=(), reads=(), compiled: bool = False):
        self.lines, self.writes, self.reads = lines, set(writes), set(reads)
        self.compiled = compiled  # the lines become a compiled function (:func:`outline`)


def loop_lines(entries: int, side: int, body: List[str]) -> List[str]:
    """A loop over the block's pairs b and the grid's pixels p (pixel pairs (p, q) in the full
    layout, side = P) around a layer's statements."""
    if side:
        return (["for b in range(nb):", f"    for p in range({side}):", f"        for q in range({side}):",
                 f"            at = b * {entries} + p * {side} + q"] + body)
    return ["for b in range(nb):", f"    for p in range({entries}):", f"        at = b * {entries} + p"] + body


def materialize(step, k, argument, printer: PixelPrinter, grids) -> Tuple[str, Optional[Block]]:
    """The grid a spatial operation reads: the argument's own buffer, or one filled by a loop first."""
    if isinstance(argument, sp.Symbol):
        return argument.name, None
    name = f"m{step.index}_{k}"
    found = {grids[s.name] for s in argument.free_symbols
             if s.name in grids and s not in printer.rows and s not in printer.cols} - {(1, 0)}
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
    return name, Block(loop_lines(printer.loop, printer.side, [f"{indent}{name}[at] = {value}"]), writes={name},
                        reads=reads, compiled=True)


def op_lines(op, src: str, dst: str, temporaries: int) -> Tuple[List[str], int]:
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
    elif isinstance(op, conv_taps):
        shape, kernel, stride, padding, layout = op.settings
        full = layout == FULL
        axes = [(d, None) for d in range(len(shape))]
        what = f"conv: the mean over the {'x'.join(map(str, kernel))} filter's shifted diagonal, one axis at a time"
        divisor = float(math.prod(kernel))
    else:
        raise NotFusable(f"no fused loop implements the spatial operation {type(op).__name__}")
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


def allocate(blocks: List[Block], temporaries: int) -> Tuple[Dict[str, int], int]:
    """Scratch slots for the grids: a linear scan over the blocks, a slot freed after its grid's last
    read (the first ``temporaries`` slots are the window sums' intermediate grids)."""
    last = last_uses(block.writes | block.reads for block in blocks)
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


_TOKEN = re.compile(r"\brows_i\[(\d+)|\bcols_b\[b, (\d+)|\b([A-Za-z_]\w*)\b")


def outline(blocks: List[Block], grids: Set[str], locals_: Set[str], parameters: Set[str] = frozenset()) -> List[str]:
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


def driver_source(program: KernelProgram, blocks: List[Block], slots: Dict[str, int]) -> str:
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


__all__ = ["Block", "PixelPrinter", "allocate", "driver_source", "loop_lines", "materialize", "op_grid", "op_lines", "outline"]
