"""The parts of a kernel request of :meth:`ntkdsl.CompiledNetwork.kernels` around the evaluation itself:
the points and their side data checked, the diagonal request, the tiled evaluation and the exact
values of identical points."""

from __future__ import annotations

import numpy as np

from .codegen.overflow import KernelOverflowError, _to_numpy, refuse_nonfinite
from .codegen.prologue import uses_same_point
from .codegen.spatial_output import pair_axes
from .progress import request_note
from .results import Kernels


def checked(net, x1, x2, diagonal: bool, graph1=None, graph2=None, mask1=None, mask2=None):
    """(the network that evaluates the request, x1, x2, the side data or None): the points checked as
    inputs of ``net`` (:func:`ntkdsl.validate.points`), and their graphs and masks
    (:func:`ntkdsl.side.request_side`: with masks, the network is ``net``'s masked twin).

    Raises:
        ValueError: a bad input, or ``x2`` given with ``diagonal``.
    """
    from .side import request_side
    from .validate import points

    if diagonal and x2 is not None:
        raise ValueError("diagonal=True evaluates K(x, x) for each row of x1 alone; x2 must be None")
    try:
        x1 = points(x1, net.ir.input_shape, "x1")
        x2 = None if x2 is None else points(x2, net.ir.input_shape, "x2")
    except ValueError as exc:
        if mask1 is None and mask2 is None or "NaN" not in str(exc):
            raise
        raise ValueError(f"{exc} (every entry must be finite, masked positions too: pad them with 0)") from None
    evaluator, side = request_side(net, x1, x2, graph1, graph2, mask1, mask2)
    return evaluator, x1, x2, side


def diagonal(net, x, backend, dtype, to_numpy, progress, side=None) -> Kernels:
    """Σ(x, x) and Θ(x, x) of each row of ``x`` (:func:`ntkdsl.codegen.dispatch.run_diagonal`); a
    value that is not finite is refused naming its row and the layer that overflowed. ``side``: the
    rows' graphs or masks (:func:`ntkdsl.side.request_side`)."""
    from .codegen.dispatch import run_diagonal

    request_note(net, len(x), 1, progress)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # an overflow is refused below
        nngp, ntk = run_diagonal(net._modules, net.program, x, backend=backend, dtype=dtype, to_numpy=to_numpy,
                                 source=net.source, filename=net.filename, name=net.name,
                                 graph=(side or {}).get("graph1"), mask=(side or {}).get("mask1"))
    bad = np.nonzero(~(np.isfinite(_to_numpy(nngp)) & np.isfinite(_to_numpy(ntk))))[0]  # rows (pixels after them)
    if bad.size and side:
        from .side import overflow_reason

        raise KernelOverflowError(f"the kernels of row {int(bad[0])} of x1 are not finite with its "
                                  f"{overflow_reason(side)}")
    if bad.size:  # the self-kernel of that row names the layer; then the row in x
        i = int(bad[0])
        try:
            refuse_nonfinite(net._modules, net.program, x[i:i + 1], None, nngp[i:i + 1, None], ntk[i:i + 1, None],
                             dtype=dtype, source=net.source, filename=net.filename, name=net.name)
        except KernelOverflowError as exc:
            raise exc.relocated(x) from None
    return Kernels(nngp, ntk)


def covers(tile, x1, x2) -> bool:
    """Whether ``tile`` holds the whole request (a self-kernel's tiles are squares of the smaller side)."""
    n1 = x1.shape[0]
    if x2 is None:
        return min(tile) >= n1
    return tile[0] >= n1 and tile[1] >= x2.shape[0]


def tiled(net, x1, x2, tile, backend, dtype, to_numpy, progress, side=None):
    """(nngp, ntk) of ``net`` evaluated in tiles (:func:`ntkdsl.tiling.evaluate`), each tile's side data
    (graphs, masks) sliced with its points (:func:`ntkdsl.side.with_side`); an overflow names the
    rows of the request, not of the tile."""
    from . import tiling
    from .side import with_side

    fn, rows1, rows2 = (lambda a, b=None: net._evaluate(a, b, backend, dtype, to_numpy)), x1, x2
    if side is not None:  # tiles of row numbers
        fn, rows1, rows2 = with_side(lambda a, b, g: net._evaluate(a, b, backend, dtype, to_numpy, False, g),
                                     x1, x2, side)
    try:
        return tiling.evaluate(fn, rows1, rows2, tile, progress, pair_axes(net.program))
    except KernelOverflowError as exc:
        raise exc.relocated(x1, x2) from None


def with_exact_duplicates(net, k, x1, x2, backend, dtype, side=None):
    """(nngp, ntk) ``k`` with identical points given the exact value at (x, x)
    (:func:`ntkdsl.tiling.exact_duplicates`), for NumPy results of host inputs; not where points carry
    side data (equal rows with other graphs or masks are other points) or the kernel tells a point
    from its copy (:func:`ntkdsl.codegen.prologue.uses_same_point`)."""
    from . import tiling

    on_host = not any(hasattr(x, "__cuda_array_interface__") for x in (x1, x2))
    if not (isinstance(k[0], np.ndarray) and on_host):
        return k
    nngp, ntk = (a if a.flags.writeable else a.copy() for a in k)
    return tiling.exact_duplicates(nngp, ntk, x1, x2, lambda a: net._evaluate(a, None, backend, dtype, True),
                                   uses_same_point(net.program) or side is not None)


__all__ = ["checked", "covers", "diagonal", "tiled", "with_exact_duplicates"]
