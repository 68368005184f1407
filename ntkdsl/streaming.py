"""Kernels larger than memory: tiles streamed into memory-mapped .npy files, resumable.

:func:`kernels_to_disk` (``net.kernels_to_disk``, ``ntkdsl eval --memmap DIR``) evaluates the
tiles of :func:`ntkdsl.tiling.tiles` one at a time and writes each into two memory-mapped arrays
(:func:`numpy.lib.format.open_memmap`), so only one tile's working memory is ever held. The
directory holds:

* ``nngp.partial.npy``, ``ntk.partial.npy``: the arrays being filled (float64 or float32, (N1, N2));
* ``progress.json``: the manifest, rewritten atomically after every tile: what is being computed
  (network name, SHA-256 of the canonical network text, shape, dtype and SHA-256 of each input, the
  output dtype), the tile shape, and each finished tile with the SHA-256 of its values (both
  arrays, and the mirrored block of a self-kernel), and whether the result is complete;
* when every tile is written, and only then: ``nngp.npy`` and ``ntk.npy`` (the partial files,
  flushed and renamed), and the manifest marked complete.

A tile is recorded as done only after both arrays are flushed to disk (msync), so an interruption
at any point (an exception, Ctrl-C, a killed process) loses at most the tile in flight, and a final
file name never holds an incomplete result. Calling again with the same network, inputs and dtype
resumes: every recorded tile is read back and checked against its checksum (a truncated or
damaged partial file, or a damaged final one, loses only the tiles whose bytes changed: they are
computed again, with a :class:`ResumeWarning`), and only the missing tiles are computed, in the
tile shape of the first call (the results equal the in-memory kernels to round-off either way).
A directory holding any other request is refused (:class:`ResumeMismatchError`), never
overwritten; so is a manifest that cannot be read (the message says what to remove to start
over). Identical points get the exact value at (x, x) tile by tile, as in ``net.kernels``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Dict, Optional, Tuple

import numpy as np

from ._files import atomic_open
from .codegen.overflow import KernelOverflowError
from .codegen.prologue import uses_same_point
from .errors import NtkdslError

MANIFEST = "progress.json"
NAMES = ("nngp", "ntk")
FORMAT = 2  # 2: each done tile with its SHA-256 (format 1 had none: its tiles are computed again)
DISK_TILE = 2048  # points: the default tile side at most (64 MiB of float64 output a tile; the resume granularity)


class ResumeMismatchError(NtkdslError, ValueError):
    """The output directory holds tiles or results of another request (network, inputs or dtype),
    or a manifest that cannot be read."""


class ResumeWarning(UserWarning):
    """Finished tiles on disk did not match their checksums (or could not be read): computed again."""


def array_fingerprint(x) -> dict:
    """Shape, dtype and SHA-256 of an array's values (C order), without copying a contiguous array.

    A NumPy array is hashed at once; any other array with ``shape``, ``dtype`` and row slicing
    (zarr, dask, memory maps larger than memory) in blocks of about 2^24 bytes of rows, read one at a
    time (the same digest: SHA-256 is computed over the bytes in order).
    """
    h = hashlib.sha256()
    if isinstance(x, np.ndarray):
        blocks = [x]
    else:
        row = max(1, int(np.prod(x.shape[1:], dtype=np.int64)) * np.dtype(x.dtype).itemsize)
        step = max(1, 2**24 // row)
        blocks = (x[i:i + step] for i in range(0, x.shape[0], step))
    for block in blocks:
        data = np.ascontiguousarray(block)
        if data.size:
            h.update(data.reshape(-1).view(np.uint8))
    return {"shape": list(x.shape), "dtype": str(x.dtype), "sha256": h.hexdigest()}


def request_fingerprint(net, x1: np.ndarray, x2: Optional[np.ndarray], dtype: np.dtype) -> dict:
    """What a manifest must match to be resumed: the network, both inputs and the output dtype."""
    spec = hashlib.sha256(net.to_ntk().encode("utf-8")).hexdigest()
    return {"network": net.name, "spec_sha256": spec, "x1": array_fingerprint(x1),
            "x2": None if x2 is None else array_fingerprint(x2), "dtype": str(dtype)}


def _request(net, x1, x2, dtype, graph1, graph2, mask1=None, mask2=None):
    """The validated request: (the network that evaluates it (masks: its masked twin), x1, x2, the
    per-point graphs or masks, dtype, its fingerprint, graphs and masks included)."""
    from .side import request_side

    x1 = _points(net, x1, "x1")
    x2 = None if x2 is None else _points(net, x2, "x2")
    net, side_data = request_side(net, x1, x2, graph1, graph2, mask1, mask2)
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    ident = request_fingerprint(net, x1, x2, dtype)
    if side_data is not None:  # another graph (mask) is another request
        ident.update({name: None if g is None else array_fingerprint(g) for name, g in side_data.items()})
    return net, x1, x2, side_data, dtype, ident


def kernels_to_disk(net, x1, x2=None, directory=".", *, batch_size: Optional[int] = None,
                    memory_budget: Optional[int] = None, backend: Optional[str] = None, dtype=None, progress=None,
                    graph1=None, graph2=None, mask1=None, mask2=None):
    """Evaluate Σ and Θ of ``net`` into ``directory``/nngp.npy and ntk.npy, tile by tile, resumable.

    Args:
        net: a :class:`ntkdsl.CompiledNetwork`.
        x1: inputs, shape (N1, *input shape).
        x2: inputs, shape (N2, *input shape), or None for the self-kernel of ``x1`` (only the tiles on
            and above the block diagonal are computed; the result is exactly symmetric).
        directory: created if missing; see the module docstring for what it holds.
        batch_size: tile side in points (default: the largest square tile, at most
            :data:`DISK_TILE`, whose estimated working memory fits ``memory_budget`` and, for image
            networks, the cache-sized tile of :func:`ntkdsl.tiling.preferred_peak`). A resume keeps
            the first call's tile.
        memory_budget: bytes one tile may use (default: :func:`ntkdsl.tiling.memory_budget`).
        backend: evaluator of each tile, as in :meth:`ntkdsl.CompiledNetwork.kernels` (CPU results).
        dtype: float64 (default) or float32 files.
        progress: None (a bar when stderr is a terminal), True, False or a callable ``(done, total)``
            called after each tile is on disk (:mod:`ntkdsl.progress`).
        graph1, graph2: each point's adjacency for a network with ``aggregate`` layers
            (:func:`ntkdsl.side.request_side`), sliced with the points of each tile and part of
            the request a resume must match; mask1, mask2 likewise for position masks (:mod:`ntkdsl.masks`).

    Returns:
        :class:`ntkdsl.Kernels` of the two files opened read-only as memory maps.

    Raises:
        ResumeMismatchError: ``directory`` holds a manifest or result of another request, or a
            manifest that cannot be read.
        ValueError: inputs whose shape does not match the network, a bad dtype or batch_size.
        MemoryBudgetError: not even a tile of one pair fits the budget.
        OSError: the directory or files cannot be created or written.

    Warns:
        ResumeWarning: recorded tiles whose bytes on disk no longer match their checksums.
    """
    from .codegen.spatial_output import output_pixels
    from .results import Kernels
    from .progress import tile_progress
    from .tiling import tiles

    net, x1, x2, side_data, dtype, ident = _request(net, x1, x2, dtype, graph1, graph2, mask1, mask2)
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    os.makedirs(directory, exist_ok=True)
    final = {name: os.path.join(directory, f"{name}.npy") for name in NAMES}
    part = {name: os.path.join(directory, f"{name}.partial.npy") for name in NAMES}
    tile, done = _resume(net, directory, ident, final, part, (n1, n2), batch_size, memory_budget)
    blocks = tiles(n1, None if x2 is None else n2, tile)
    pixels = output_pixels(net.program)  # readout = none: (N1, N2, *S) on disk
    out, done = _open_partials(part, (n1, n2) + pixels, dtype, done, blocks, x2 is None, directory)
    record = dict(ident, format=FORMAT, tile=list(tile), tiles=len(blocks), complete=False)
    _write_manifest(directory, record, done)

    bar = tile_progress(progress, len(blocks), initial=sum((a.start, b.start) in done for a, b in blocks),
                        desc=f"{net.name} -> {directory}")
    try:
        for a, b in blocks:
            if (a.start, b.start) in done:
                continue
            try:
                _write_tile(net, out, x1, x2, a, b, backend, dtype, side_data)
            except KernelOverflowError as exc:  # name the rows of the request, not of the tile
                raise exc.relocated(x1, x2) from None
            done[a.start, b.start] = _tile_digest(out, a, b, x2 is None)
            _write_manifest(directory, record, done)
            bar.update(1)
    finally:
        bar.close()
        for array in out.values():
            array.flush()
        del out
    for name in NAMES:
        os.replace(part[name], final[name])
    _fsync_directory(directory)
    _write_manifest(directory, dict(record, complete=True), done)
    return Kernels(*(np.load(final[name], mmap_mode="r") for name in NAMES))


def _resume(net, directory, ident, final, part, shape, batch_size, memory_budget):
    """(tile side, tiles done) of a new request, or of the one recorded in ``directory``'s manifest
    (refused if it is another request's); a complete result is moved back to partial files, to be
    checked tile by tile like them."""
    manifest = _read_manifest(directory)
    if manifest is None:
        present = [os.path.basename(p) for p in final.values() if os.path.exists(p)]
        if present:
            raise ResumeMismatchError(f"{directory} already holds {' and '.join(present)} but no {MANIFEST}: "
                                      "not a result of this request; use another directory or remove them")
        return _disk_tile(net, *shape, batch_size, memory_budget), {}
    _check(manifest, ident, directory)
    if manifest["complete"] and all(os.path.exists(p) for p in final.values()):
        for name in NAMES:  # checked like partial files; a damaged one is repaired later
            os.replace(final[name], part[name])
    return tuple(manifest["tile"]), manifest["done"]


def _write_tile(net, out, x1, x2, a: slice, b: slice, backend, dtype, side_data=None) -> None:
    """Evaluate one tile, give its identical points the exact value at (x, x)
    (:func:`ntkdsl.tiling.exact_duplicates`, as ``net.kernels`` does), write it (and, for a
    self-kernel, its mirror below the diagonal) and flush both files. ``side_data``: the request's
    graphs and masks, sliced with the tile's points."""
    from .codegen.spatial_output import pair_axes
    from .tiling import transpose_pairs
    from .side import side_rows
    from .tiling import exact_duplicates

    right = (None if a == b else x1[b]) if x2 is None else x2[b]
    tile_side = None if side_data is None else side_rows(side_data, a, None if x2 is None and a == b else b, x2 is None)
    k = [np.array(v) for v in net._evaluate(x1[a], right, backend, dtype, True, False, tile_side)]
    exact_duplicates(k[0], k[1], x1[a], right, lambda p: net._evaluate(p, None, backend, dtype, True),
                     uses_same_point(net.program) or side_data is not None)  # equal x with other side data differ
    for name, value in zip(NAMES, k):
        out[name][a, b] = value
        if x2 is None and a != b:
            out[name][b, a] = transpose_pairs(value, pair_axes(net.program))
    for name in NAMES:
        out[name].flush()


def _tile_digest(out, a: slice, b: slice, mirrored: bool) -> str:
    """SHA-256 of a tile's values in both arrays (and of its mirror below the diagonal)."""
    h = hashlib.sha256()
    for name in NAMES:
        for block in ((out[name][a, b], out[name][b, a]) if mirrored and a != b else (out[name][a, b],)):
            h.update(np.ascontiguousarray(block).reshape(-1).view(np.uint8))
    return h.hexdigest()


def _open_partials(part: dict, shape, dtype, done: Dict[tuple, str], blocks, mirrored: bool, directory):
    """The two partial arrays opened for writing, and the recorded tiles whose bytes match their
    checksums. Missing or unreadable files (another shape, a damaged header) are created afresh;
    numpy extends a truncated one with zeros, whose tiles then fail their checksum."""
    from numpy.lib.format import open_memmap

    out, lost = None, 0
    if done:
        try:
            out = {name: open_memmap(part[name], mode="r+") for name in NAMES}
            if any(a.shape != tuple(shape) or a.dtype != dtype for a in out.values()):
                raise ValueError("another shape or dtype")
        except (OSError, ValueError):
            out, lost = None, len(done)
    if out is None:
        out = {name: open_memmap(part[name], mode="w+", dtype=dtype, shape=tuple(shape)) for name in NAMES}
        done = {}
    else:
        keys = {(a.start, b.start): (a, b) for a, b in blocks}
        good = {key: digest for key, digest in done.items()
                if key in keys and digest is not None and _tile_digest(out, *keys[key], mirrored) == digest}
        lost, done = len(done) - len(good), good
    if lost:
        warnings.warn(f"{lost} finished tile{'s' if lost > 1 else ''} in {directory} did not match the checksum "
                      f"recorded in {MANIFEST} (a removed, damaged, truncated or older partial file): computing "
                      f"{'them' if lost > 1 else 'it'} again", ResumeWarning, stacklevel=3)
    return out, done


def _points(net, x, name) -> np.ndarray:
    from .validate import points

    return points(x, net.ir.input_shape, name, allow_empty=False)


def _disk_tile(net, n1: int, n2: int, batch_size, memory_budget) -> Tuple[int, int]:
    """The tile side: ``batch_size``, else the largest square (≤ :data:`DISK_TILE`) within the budget."""
    from . import tiling

    if batch_size is not None:
        return tiling.batch_tile(batch_size)
    budget = tiling.memory_budget(memory_budget)
    preferred = net._preferred_peak(n1, n2)
    limit = budget if preferred is None else min(budget, preferred)
    cap = min(DISK_TILE, max(n1, n2))
    t = _largest_square(net.memory_model, limit, cap)
    if t < 1:
        raise tiling.MemoryBudgetError(f"one pair of points needs about {tiling.format_bytes(net.memory_model.peak(1, 1))}"
                                       f", more than the budget of {tiling.format_bytes(limit)}")
    return t, t


def _largest_square(model, limit: float, cap: int) -> int:
    """The largest t ≤ cap with model.peak(t, t) ≤ limit (0 if none)."""
    lo, hi = 0, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if model.peak(mid, mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _read_manifest(directory) -> Optional[dict]:
    """The manifest with ``done`` as {(row, column): SHA-256 or None}, or None when there is none.

    Raises:
        ResumeMismatchError: it exists but cannot be read or is not a manifest of this format.
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict) or manifest.get("format") not in (1, FORMAT):
            raise ValueError("not a manifest of a known format")
        tile, entries = manifest.get("tile"), manifest.get("done")
        if not (isinstance(tile, list) and len(tile) == 2 and all(isinstance(t, int) and t > 0 for t in tile)):
            raise ValueError("no valid tile shape")
        if not isinstance(entries, list) or not all(_entry(e) for e in entries):
            raise ValueError("no valid list of finished tiles")
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResumeMismatchError(f"cannot resume in {directory}: {path} is damaged ({exc}); remove {path} and the "
                                  "*.partial.npy files beside it (or the whole directory) to start over") from None
    manifest["done"] = {(e[0], e[1]): (e[2] if len(e) == 3 else None) for e in entries}  # format 1: no checksums
    manifest["complete"] = manifest.get("complete") is True
    return manifest


def _entry(e) -> bool:
    """Whether a manifest entry is [row, column] (format 1) or [row, column, SHA-256]."""
    return (isinstance(e, list) and len(e) in (2, 3) and all(isinstance(v, int) and v >= 0 for v in e[:2])
            and (len(e) == 2 or (isinstance(e[2], str) and len(e[2]) == 64)))


def _check(manifest: dict, ident: dict, directory) -> None:
    """Refuse a manifest of another request, naming what differs."""
    differ = []
    for key, label in (("spec_sha256", "the network"), ("x1", "--x1 / x1"), ("x2", "--x2 / x2"),
                       ("dtype", "the dtype"), ("graph1", "--graph1 / graph1"), ("graph2", "--graph2 / graph2"),
                       ("mask1", "--mask1 / mask1"), ("mask2", "--mask2 / mask2")):
        if manifest.get(key) != ident.get(key):
            differ.append(f"{label}: {_describe(manifest.get(key))} there, {_describe(ident.get(key))} here")
    if differ:
        state = "a complete result" if manifest.get("complete") else f"{len(manifest['done'])} tiles"
        raise ResumeMismatchError(
            f"cannot resume in {directory}: it holds {state} of another request (network "
            f"{manifest.get('network')!r}); differs in " + "; ".join(differ)
            + ". Use another directory, or remove this one to start over")


def _describe(value) -> str:
    if value is None:
        return "none (x2 = x1)"
    if isinstance(value, dict):
        return f"shape {tuple(value['shape'])} {value['dtype']} sha256 {value['sha256'][:12]}"
    if isinstance(value, str) and len(value) == 64:
        return f"sha256 {value[:12]}"
    return str(value)


def _write_manifest(directory, record: dict, done: Dict[tuple, str]) -> None:
    data = dict(record, done=[[i, j, digest] for (i, j), digest in sorted(done.items())])
    with atomic_open(os.path.join(directory, MANIFEST)) as f:
        f.write((json.dumps(data, indent=1) + "\n").encode("utf-8"))


def _fsync_directory(directory) -> None:
    """Make the renames durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
