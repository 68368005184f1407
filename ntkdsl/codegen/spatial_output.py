"""Kernels of a network that ends in an image or signal (``readout = none``): their result layout.

The kernel arrays of a spatial state hold the pixel axes first and the points last (``(*S, N1, N2)``
in the diagonal layout, ``(*S, *S, N1, N2)`` in the full one; kernel-math.md §1). A network with
``readout = none`` returns its last state as it is, points first: Σ(x, x′)(p) of shape
(N1, N2, *S) (the pixel pairs (p, p) only: neural-tangents' ``diagonal_spatial=True``), or with
every state in the full layout (``ntkdsl.loads(..., layout="full")``) Σ(x, x′)(p, p′) of shape
(N1, N2, *S, *S) (neural-tangents without ``diagonal_spatial`` orders these axes (N1, N2, H, H′, W, W′)).
Exchanging x and x′ exchanges p and p′: :func:`pair_axes` is the permutation that transposes such
a result, used by the self-kernels' symmetry and by tiles below the diagonal.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

from ..algebra.spatial import FULL

__all__ = ["output_bytes", "output_pixels", "pair_axes", "result_shape", "result_statements", "diagonal_statements"]


def output_pixels(program) -> Tuple[int, ...]:
    """The pixel axes of the program's result per input pair: () for a vector output, S (diagonal
    layout) or S + S (full layout) for a network with ``readout = none``."""
    out = program.output
    if not out.shape:
        return ()
    return tuple(out.shape) * (2 if out.layout == FULL else 1)


def result_shape(program) -> str:
    """The pixel axes of :func:`output_pixels` as a generated docstring's shape continues after
    ``(N1, N2``: "" for a vector output, ", 4, 3" for pixels (4, 3)."""
    return "".join(f", {d}" for d in output_pixels(program))


def output_bytes(program) -> int:
    """Bytes per input pair of the two float64 results: 16, times the pixel entries of a spatial output."""
    return 16 * math.prod(output_pixels(program))


def pair_axes(program) -> Optional[Tuple[int, ...]]:
    """The axes permutation of a result (N1, N2, *pixels) that exchanges x and x′ (and p with p′ in
    the full layout); None for a vector output, whose transposition is ``.T``."""
    pixels = output_pixels(program)
    if not pixels:
        return None
    r = len(program.output.shape)
    if program.output.layout == FULL:
        return (1, 0) + tuple(range(2 + r, 2 + 2 * r)) + tuple(range(2, 2 + r))
    return (1, 0) + tuple(range(2, 2 + r))


def result_statements(program, printer) -> List[List[str]]:
    """The last statements of an array module (NumPy or CuPy) for a spatial output: the last state's
    (*pixels, N1, N2) arrays moved to (N1, N2, *pixels) new contiguous arrays (a kernel that does not
    depend on the inputs, a number, broadcast first), exactly symmetric for a self-kernel."""
    out, pixels = program.output, output_pixels(program)
    axes = pair_axes(program)
    shape = f"{pixels} + (x1.shape[0], x2.shape[0])"
    lines = []
    for name, expr in (("nngp", out.nngp), ("ntk", out.ntk)):
        k = f"xp.broadcast_to(xp.asarray({printer.doprint(expr)}) * 1.0, {shape})"  # a number as float64, arrays keep their dtype
        lines.append([f"    {name} = xp.moveaxis({k}, (-2, -1), (0, 1)).copy()  # (N1, N2, {_dims(pixels)})"])
    # exact symmetry K(x, x')(p, p') = K(x', x)(p', p): the pair (i, i) is unchanged ((a + a)/2 = a)
    lines.append(["    if same:  # exact symmetry", f"        nngp = (nngp + xp.transpose(nngp, {axes})) * 0.5",
                  f"        ntk = (ntk + xp.transpose(ntk, {axes})) * 0.5"])
    return lines


def diagonal_statements(program, printer) -> List[List[str]]:
    """The last statements of ``kernels_diagonal`` for a spatial output: (*pixels, N, 1) -> (N, *pixels)."""
    out, pixels = program.output, output_pixels(program)
    lines = []
    for name, expr in (("nngp", out.nngp), ("ntk", out.ntk)):
        k = f"xp.broadcast_to(xp.asarray({printer.doprint(expr)}) * 1.0, {pixels} + (x.shape[0], 1))"
        lines.append([f"    {name} = xp.moveaxis({k}[..., 0], -1, 0).copy()  # (N, {_dims(pixels)})"])
    return lines


def _dims(pixels) -> str:
    return ", ".join(map(str, pixels))
