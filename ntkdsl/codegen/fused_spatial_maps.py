"""The fused loops of the spatial maps beyond windows and pooling (:mod:`.fused_spatial`): transposed
convolutions, resizing, spatial indexing, the recurrent time shift and the unshared-weight embedding.

Each of the first four is, along every spatial dimension it changes, a linear map of the pixel
axis: a matrix M (resize, index, time shift) or a sum over taps Σ_t M_t·K·M_tᵀ (a transposed
convolution in the full layout). The matrices are the NumPy path's own (``transpose_taps`` and
``resize_matrix`` of :mod:`ntkdsl.arraycode.spatial_maps`, copied into the module as its NumPy
routines are; a 0/1 pick or shift matrix for index and time shift), built once when the module is
imported, kept in sparse rows (``_sparse_rows``) and applied to a block's grids one spatial axis at a
time (``_matrix_pass``; the axes of p and then of q in the full layout) or, for the taps of a
transposed convolution, on the axes of p and q together (``_matrix_pass2``), in the NumPy path's
order: dimension by dimension, taps in order, each row's terms by column. Where a row holds a single
1 (picks, shifts, the taps of a transposed convolution without wrap-around) both paths compute the
same numbers bit for bit; elsewhere (linear resizing, the diagonal layout's tap sums) they differ by
the order of a few additions in BLAS.
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

from ..algebra.spatial import FULL, conv_transpose_taps, diagonal_embed, resize_map, spatial_index, time_shift
from ..arraycode.spatial_maps import transpose_geometry

MAP_OPERATIONS = (conv_transpose_taps, resize_map, spatial_index, time_shift, diagonal_embed)


class MapTables:
    """The sparse matrices a module's spatial maps apply: one module-level name per distinct matrix,
    and the NumPy routines (by their printed name, :data:`ntkdsl.arraycode.sources.ROUTINES`) that
    build them."""

    def __init__(self):
        self.names: Dict[str, str] = {}  # the NumPy expression of a matrix -> its module-level name
        self.routines: List[str] = []

    def name(self, matrix: str, routine: str = "") -> str:
        if routine and routine not in self.routines:
            self.routines.append(routine)
        return self.names.setdefault(matrix, f"_MAP_{len(self.names)}")

    def source(self) -> str:
        """The definitions, run when the module is imported."""
        if not self.names:
            return ""
        lines = "".join(f"{name} = _sparse_rows({matrix})\n" for matrix, name in self.names.items())
        return "\n\n# the spatial maps of the layers as sparse rows (idx, w): fused_spatial_maps\n" + lines


def _passes(op) -> Tuple[Tuple[int, ...], bool, List[Tuple[int, int, str, str, bool]], object]:
    """(input shape, full layout, [(dimension, output size, matrix, routine, several taps)], divisor) of a map."""
    settings = op.settings
    shape = settings[0]
    if isinstance(op, conv_transpose_taps):
        _, kernel, stride, padding, layout = settings
        full = layout == FULL
        passes = []
        for d, (n, k, s) in enumerate(zip(shape, kernel, stride)):
            matrix = f"transpose_taps({n}, {k}, {s}, {padding!r})" + ("" if full else ".sum(axis=0)")
            size = n * s if padding == "circular" else transpose_geometry(n, k, s, padding)[1]  # circular: folded onto n·s
            passes.append((d, size, matrix, "conv_transpose_taps", full))
        return shape, full, passes, float(math.prod(kernel))
    if isinstance(op, resize_map):
        _, size, method, antialias, layout = settings
        passes = [(d, m, f"resize_matrix({n}, {m}, {method!r}, {antialias == 'true'})", "resize_map", False)
                  for d, (n, m) in enumerate(zip(shape, size)) if n != m]
        return shape, layout == FULL, passes, None
    if isinstance(op, spatial_index):
        _, picks, _, layout = settings
        passes = [(d, len(p), f"_pick_matrix({n}, {tuple(p)!r})", "", False)
                  for d, (n, p) in enumerate(zip(shape, picks)) if tuple(p) != tuple(range(n))]
        return shape, layout == FULL, passes, None
    if isinstance(op, time_shift):
        return shape, settings[1] == FULL, [(0, shape[0], f"_shift_matrix({shape[0]})", "", False)], None
    raise TypeError(f"{type(op).__name__} is not a spatial map")


def map_grid(op) -> Tuple[int, int]:
    """(entries, side) of a map's output grid: side = P in the full layout, else 0."""
    if isinstance(op, diagonal_embed):
        pixels = math.prod(op.settings[0])
        return pixels * pixels, pixels
    shape, full, passes, _ = _passes(op)
    out = list(shape)
    for d, size, *_ in passes:
        out[d] = size
    pixels = math.prod(out)  # an axis index[k] drops has one pixel left: the flat grid is the same
    return (pixels * pixels, pixels) if full else (pixels, 0)


def map_lines(op, src: str, dst: str, temporaries: int, tables: MapTables) -> Tuple[List[str], int, int]:
    """The calls of a spatial map on the block's grids, how many scratch grids it needs (the passes
    alternate between two, as :func:`.spatial_blocks.op_lines`) and the entries per pair of the largest
    grid it writes (an intermediate one can exceed input and output: resizing one axis up, another down);
    the matrices go into ``tables``."""
    if isinstance(op, diagonal_embed):
        pixels = math.prod(op.settings[0])
        return [f"_embed_diagonal({src}, {dst}, nb, {pixels})  # unshared weights: δ(p, q)·K(p)"], temporaries, pixels**2
    shape, full, passes, divisor = _passes(op)
    n = len(shape)
    if not passes:  # picks every pixel in order: a copy, through the identity
        passes = [(0, shape[0], f"_pick_matrix({shape[0]}, {tuple(range(shape[0]))!r})", "", False)]
    steps = []  # (axis, output size, matrix name, the axes of p and q together)
    for d, size, matrix, routine, taps in passes:
        name = tables.name(matrix, routine)
        steps += [(d, size, name, True)] if full and taps else [(d, size, name, False)] + (
            [(n + d, size, name, False)] if full else [])
    current = list(shape) * (2 if full else 1)
    largest = 0
    lines = [f"# {type(op).__name__}: a sparse matrix along each axis it changes ({'full' if full else 'diagonal'} layout)"]
    for k, (axis, size, name, both) in enumerate(steps):
        target = dst if k == len(steps) - 1 else f"tmp_{k % 2}"
        if both:
            outer, mid, inner = math.prod(current[:axis]), math.prod(current[axis + 1:n + axis]), math.prod(current[n + axis + 1:])
            lines.append(f"_matrix_pass2({src}, {target}, nb * {outer}, {current[axis]}, {mid}, {inner}, {size}, *{name})")
            current[axis] = current[n + axis] = size
        else:
            outer, inner = math.prod(current[:axis]), math.prod(current[axis + 1:])
            lines.append(f"_matrix_pass({src}, {target}, nb * {outer}, {current[axis]}, {inner}, {size}, *{name})")
            current[axis] = size
        largest = max(largest, math.prod(current))
        src = target
    if divisor is not None:
        lines.append(f"_divide({dst}, nb * {math.prod(current)}, {divisor!r})")
    return lines, max(temporaries, min(len(steps) - 1, 2)), largest


__all__ = ["MAP_OPERATIONS", "MapTables", "map_grid", "map_lines"]
