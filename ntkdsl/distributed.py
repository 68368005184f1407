"""Kernels on a dask cluster: one task per tile, written into a zarr store; resumable, fault tolerant.

:func:`kernels` splits a request into square tiles (:func:`ntkdsl.tiling.tiles`: for a self-kernel
only the tiles on and above the block diagonal, each mirrored below it) and submits one
``dask.distributed`` task per tile. A task runs on a worker: it rebuilds the network from its
canonical text (once per worker process), evaluates the tile with the network's evaluator (the
fused numba kernels where backend "auto" would choose them for the whole request:
:func:`ntkdsl.codegen.dispatch.resolve`, decided once on the driver), writes the tile (and its mirror)
into the store, and only then sets the tile's done flag. The store is a zarr group:

* ``nngp``, ``ntk``: (N1, N2) arrays, float64 or float32, chunked by the tile (each chunk written
  by exactly one task, as one atomic file: no two tasks touch one chunk);
* ``done``: (tile rows, tile columns) uint8 flags, one chunk per flag;
* attributes: the identity of the request (network name, SHA-256 of the canonical network text,
  shape, dtype and SHA-256 of each input, output dtype: :func:`ntkdsl.streaming.request_fingerprint`),
  the tile side, and ``complete``.

A task is idempotent (it rewrites the same values), so the scheduler may rerun it: when a worker
dies, dask reschedules its tasks on the others (up to ``distributed.scheduler.allowed-failures``
times) and ``retries`` more on any error. A rerun of :func:`kernels` with the same network, inputs
and dtype computes only the tiles whose flag is not set; a store of another request is refused
with a message naming what differs (:class:`ntkdsl.streaming.ResumeMismatchError`). When every
tile is done, pairs of identical points get the exact value at (x, x) as in ``net.kernels``
(:func:`ntkdsl.tiling.exact_duplicates`, on the driver) and the store is marked complete.

Inputs may be NumPy, zarr or dask arrays: each becomes a dask array chunked by tile rows, so a
worker reads the rows of its tile (from the zarr store, or from the graph for NumPy inputs). The
store must be on a file system that every worker and the driver can reach (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Optional

import numpy as np

from .codegen.overflow import KernelOverflowError
from .codegen.prologue import uses_same_point
from .codegen.spatial_output import output_pixels, pair_axes
from .errors import NtkdslError
from .streaming import ResumeMismatchError, _check, request_fingerprint
from .tiling import transpose_pairs

NAMES = ("nngp", "ntk")
DONE = "done"
FORMAT = 1
RETRIES = 3  # extra attempts of a failing tile task (a lost worker is rescheduled besides these)
DEFAULT_TILE = 2048  # points: the tile side at most when none is given (64 MiB of float64 output a tile)


class DaskMissingError(NtkdslError, ImportError):
    """dask.distributed or zarr is not installed."""


def _require():
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as exc:
        raise DaskMissingError(f"distributed kernels need dask, distributed and zarr ({exc}): "
                               "pip install 'ntkdsl[dask]'") from None


def local_client(n_workers: Optional[int] = None, **options):
    """A ``distributed.Client`` of a new LocalCluster on this machine: one single-threaded worker
    process per core (``n_workers``, default: the cores this process may run on). Closing the client
    closes the cluster."""
    _require()
    from distributed import Client

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Client(n_workers=n_workers or cores, threads_per_worker=1, processes=True, **options)


def connect(address: Optional[str] = None, timeout: float = 30.0):
    """A client of the scheduler at ``address`` (e.g. tcp://host:8786), or of a new local cluster."""
    if address is None:
        return local_client()
    _require()
    from distributed import Client

    return Client(address, timeout=timeout)


def kernels(net, x1, x2=None, store="kernels.zarr", client=None, *, tile: Optional[int] = None, dtype=None,
            backend: Optional[str] = None, progress=None, retries: int = RETRIES, graph1=None, graph2=None,
            mask1=None, mask2=None):
    """Σ and Θ of ``net`` computed on a dask cluster into the zarr store ``store``, tile by tile.

    Args:
        net: a :class:`ntkdsl.CompiledNetwork`.
        x1: inputs (N1, *input shape): a NumPy, zarr or dask array.
        x2: inputs (N2, *input shape), or None for the self-kernel of ``x1`` (tiles on and above
            the diagonal, mirrored: exactly symmetric).
        store: path of the zarr group (created if missing; resumed if it holds this request).
        client: a ``distributed.Client``; None: a LocalCluster of this machine's cores, closed at
            the end.
        tile: tile side in points (default: :data:`DEFAULT_TILE`, smaller if one tile's estimated
            working memory exceeds the budget of :func:`ntkdsl.tiling.memory_budget` here). A
            resumed store keeps its tile.
        dtype: float64 (default) or float32.
        backend: "auto" (None), "numpy" or "numba": the evaluator of every tile; "auto" decides
            by the size of the whole request.
        progress: as for :func:`ntkdsl.streaming.kernels_to_disk`: called with (done, total) as
            each tile's task finishes on the cluster.
        retries: extra attempts of a tile task that raises.
        graph1, graph2: each point's adjacency for a network with ``aggregate`` layers
            (:func:`ntkdsl.side.request_side`), shipped with the rows of each tile; mask1, mask2 likewise
            for position masks (:mod:`ntkdsl.masks`).

    Returns:
        :class:`ntkdsl.Kernels` of two dask arrays reading the store.

    Raises:
        ResumeMismatchError: ``store`` holds another request (the message names what differs).
        DaskMissingError: dask, distributed or zarr is not installed.
        ValueError: inputs of the wrong shape, a bad dtype, tile or backend.
    """
    _require()
    from .results import Kernels
    from .codegen.dispatch import resolve
    from .progress import tile_progress
    from .side import request_side
    from .streaming import array_fingerprint
    from .tiling import tiles

    x1 = _points(net, x1, "x1")
    x2 = None if x2 is None else _points(net, x2, "x2")
    net, side_data = request_side(net, x1, x2, graph1, graph2, mask1, mask2)  # masks: the masked twin
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if backend not in (None, "auto", "numpy", "numba"):
        raise ValueError(f"backend must be auto, numpy or numba on a cluster (CPU tiles), not {backend!r}")
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    ident = request_fingerprint(net, x1, x2, dtype)
    if side_data is not None:  # another graph (mask) is another request
        ident.update({name: None if g is None else array_fingerprint(g) for name, g in side_data.items()})
    shape = (n1, n2) + output_pixels(net.program)  # readout = none: (N1, N2, *S)
    root, side = _open_store(store, ident, shape, _tile_side(net, n1, n2, tile), dtype)
    result = Kernels(*(_lazy(store, name) for name in NAMES))
    if root.attrs.get("complete"):
        return result
    done = root[DONE][...]
    blocks = tiles(n1, None if x2 is None else n2, (side, side))
    missing = [(a.start // side, b.start // side) for a, b in blocks if not done[a.start // side, b.start // side]]
    chosen = resolve(net.program, backend, n1 * n2, dtype=dtype)[0]
    bar = tile_progress(progress, len(blocks), initial=len(blocks) - len(missing), desc=f"{net.name} -> {store}")
    try:
        if missing:
            with _session(client) as c:
                try:
                    _run(c, net, x1, x2, missing, os.fspath(store), side, chosen, dtype, bar, retries, side_data)
                except KernelOverflowError as exc:  # name the rows of the request, not of the tile
                    raise exc.relocated(x1, x2) from None
    finally:
        bar.close()
    _exact_duplicates(net, root, x1, x2, backend, dtype, side_data is not None)
    root.attrs["complete"] = True
    return result


def _points(net, x, name):
    """``x`` checked as points of the network's input shape: NumPy-like inputs by
    :func:`ntkdsl.validate.points` (NaN and infinity refused here), zarr and dask arrays by shape
    only (not read here: each worker refuses non-finite rows of its tile)."""
    from .validate import points

    if not (hasattr(x, "shape") and hasattr(x, "dtype")) or isinstance(x, np.ndarray):
        return points(x, net.ir.input_shape, name, allow_empty=False)
    shape = tuple(net.ir.input_shape)
    if len(x.shape) != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; this network needs (N, {', '.join(map(str, shape))})")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no points")
    if np.dtype(x.dtype).kind not in "fiu":
        raise ValueError(f"{name} holds {x.dtype} values, not real numbers")
    return x


def _tile_side(net, n1: int, n2: int, tile) -> int:
    from .streaming import _disk_tile
    from .tiling import batch_tile

    if tile is not None:
        return batch_tile(tile)[0]
    return min(DEFAULT_TILE, _disk_tile(net, n1, n2, None, None)[0])


def _open_store(store, ident: dict, shape, side: int, dtype):
    """The zarr group of this request (created, or checked and resumed) and its tile side."""
    import zarr

    root = zarr.open_group(os.fspath(store), mode="a")
    record = dict(root.attrs)
    if "format" not in record:
        if list(root.keys()):
            raise ResumeMismatchError(f"{store} holds arrays but no ntkdsl request: use another store or remove it")
        root.attrs.update(dict(ident, format=FORMAT, tile=side, complete=False))  # the identity first
    elif record.get("format") != FORMAT or not isinstance(record.get("tile"), int):
        raise ResumeMismatchError(f"{store} holds an unknown ntkdsl store format; remove it to start over")
    else:
        count = int(np.count_nonzero(root[DONE][...])) if DONE in root else 0
        _check(dict(record, done=range(count)), ident, store)
        side = record["tile"]
    grid = tuple(-(-n // side) for n in shape[:2])
    if DONE not in root or any(root[n].shape != shape or root[n].dtype != dtype for n in NAMES if n in root):
        for name in NAMES:  # nothing is done yet: (re)create the arrays, then the flags
            # uncompressed: zstd (zarr's default) saved 7.5% of a 2048 x 2048 FCN NTK tile and took 2.3x as long to write
            root.create_array(name, shape=shape, chunks=(side, side) + shape[2:], dtype=dtype, fill_value=np.nan,
                              compressors=None, overwrite=True)
        root.create_array(DONE, shape=grid, chunks=(1, 1), dtype="uint8", fill_value=0, compressors=None,
                          overwrite=True)
    return root, side


def _lazy(store, name: str):
    import dask.array as da

    return da.from_zarr(os.fspath(store), component=name)


@contextlib.contextmanager
def _session(client):
    if client is not None:
        yield client
        return
    with local_client() as own:
        yield own


def _rows(x, side: int):
    """``x`` as one dask Delayed per block of ``side`` rows."""
    import dask.array as da

    chunks = (side,) + tuple(x.shape[1:])
    if isinstance(x, da.Array):
        x = x.rechunk(chunks)
    elif isinstance(x, np.ndarray):
        x = da.from_array(x, chunks=chunks)
    else:
        x = da.from_zarr(x, chunks=chunks) if type(x).__module__.startswith("zarr") else da.from_array(x, chunks=chunks)
    return list(x.to_delayed().reshape(-1))


def _run(client, net, x1, x2, missing, store: str, side: int, backend: str, dtype, bar, retries: int,
         side_data=None) -> None:
    """Submit one task per missing tile and wait for all; cancel the rest if one fails or the
    driver is interrupted (tasks already running finish their tile, which is kept). ``side_data``: the
    request's graphs and masks, cut into the same blocks of rows as the points."""
    import dask
    from distributed import as_completed

    from .side import side_rows

    spec = (net.to_ntk(), net.layout, net.program.masked)
    token = hashlib.sha256(repr((spec, store, side, backend, str(dtype))).encode()).hexdigest()[:16]
    rows1 = _rows(x1, side)
    rows2 = None if x2 is None else _rows(x2, side)
    blocks = None if side_data is None else {name: None if g is None else _rows(g, side) for name, g in side_data.items()}
    tasks = []
    for i, j in missing:
        other = (None if i == j else rows1[j]) if x2 is None else rows2[j]
        tile_side = None if side_data is None else side_rows(blocks, i, None if x2 is None and i == j else j, x2 is None)
        tasks.append(dask.delayed(_tile_task, pure=True)(spec, rows1[i], other, i, j, store, side, x2 is None,
                                                         backend, str(dtype), tile_side,
                                                         dask_key_name=f"ntkdsl-tile-{token}-{i}-{j}"))
    futures = client.compute(tasks, retries=retries)
    try:
        for future in as_completed(futures):
            future.result()  # re-raises a task's error here
            bar.update(1)
    except BaseException:
        client.cancel(futures)
        raise


_NETWORKS: dict = {}


def _network(spec):
    """The compiled network of ``spec`` (canonical text, layout, masked), built once per worker process."""
    key = hashlib.sha256(repr(spec).encode("utf-8")).hexdigest()
    if key not in _NETWORKS:
        from .api import loads
        from .masks import masked_network

        net = loads(spec[0], layout=spec[1])
        _NETWORKS[key] = masked_network(net) if spec[2] else net
    return _NETWORKS[key]


def _tile_task(spec, rows, other, i: int, j: int, store: str, side: int, mirror: bool, backend: str, dtype: str,
               side_data=None):
    """On a worker: evaluate tile (i, j), write it (and its mirror), then set its done flag.
    ``side_data``: the rows' graphs or masks (``name1``) and the other rows' (``name2``, None on the diagonal)."""
    import zarr

    net = _network(spec)
    x_a = _host_rows(rows)
    x_b = None if other is None else _host_rows(other)
    for rows_of, x in ((i, x_a), (j, x_b)):
        if x is not None and not np.all(np.isfinite(x)):
            raise ValueError(f"the input rows {rows_of * side}..{rows_of * side + len(x) - 1} hold NaN or infinite values")
    tile_side = None if side_data is None else {name: None if g is None else np.asarray(g) for name, g in side_data.items()}
    nngp, ntk = net._evaluate(x_a, x_b, backend, dtype, True, False, tile_side)
    root = zarr.open_group(store, mode="r+")
    a = slice(i * side, i * side + nngp.shape[0])
    b = slice(j * side, j * side + nngp.shape[1])
    for name, value in zip(NAMES, (nngp, ntk)):
        root[name][a, b] = value
        if mirror and i != j:
            root[name][b, a] = np.ascontiguousarray(transpose_pairs(value, pair_axes(net.program)))
    root[DONE][i, j] = 1  # after the data: a flag never marks a tile that is not on disk
    return i, j


def _host_rows(rows) -> np.ndarray:
    """Rows as a NumPy array; float32/float64 kept, other numbers to float64 (as :mod:`ntkdsl.validate`)."""
    x = np.asarray(rows)
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


class _Orthogonal:
    """A zarr array indexed like NumPy by :func:`ntkdsl.tiling.exact_duplicates` (``np.ix_`` keys)."""

    def __init__(self, array):
        self.array = array

    def __getitem__(self, key):
        return self.array[key]

    def __setitem__(self, key, value):
        key = tuple(np.ravel(k) for k in key)
        shape = tuple(len(k) for k in key) + tuple(self.array.shape[len(key):])  # a spatial output's pixel axes too
        self.array.oindex[key] = np.broadcast_to(value, shape)


def _exact_duplicates(net, root, x1, x2, backend, dtype, side_data: bool = False) -> None:
    """Identical points get the exact value at (x, x), as in ``net.kernels`` (idempotent); not where
    points carry side data (equal rows with other graphs or masks are other points)."""
    from .tiling import exact_duplicates

    exact_duplicates(_Orthogonal(root["nngp"]), _Orthogonal(root["ntk"]), np.asarray(x1),
                     None if x2 is None else np.asarray(x2), lambda a: net._evaluate(a, None, backend, dtype, True),
                     uses_same_point(net.program) or side_data)
