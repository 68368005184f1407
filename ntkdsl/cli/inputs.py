"""What the CLI's commands read before they run, each refused with a one-line UserError: the spec file,
arrays from .npy/.npz files (their headers checked before the data is read), the network's input
points, and the CUDA GPU that ``--backend cupy`` needs."""

from __future__ import annotations

import os

import numpy as np

from ..api import CompiledNetwork, load
from ..errors import UserError
from ..frontend.limits import read_source
from ..validate import npy_header, npz_member_header, points


def read_spec(path: str) -> str:
    """The text of the spec file at ``path``; a UserError when it cannot be read."""
    try:
        return read_source(path)  # at most the size limit + 1 characters are read
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path!r}: {getattr(exc, 'strerror', None) or exc}") from None


def load_network(args) -> CompiledNetwork:
    """The network ``args.network`` of the spec ``args.spec``; a readable message for a missing file first."""
    read_spec(args.spec)
    return load(args.spec, args.network, layout=getattr(args, "layout", "auto"))


def load_array(path: str, name: str, shape=None) -> np.ndarray:
    """The array stored at ``path``: a .npy file, an .npz file holding one array, or ``FILE.npz:KEY``
    (the array KEY of an .npz); a UserError naming ``name`` (the option) otherwise. Its header is
    checked first (:func:`ntkdsl.validate.npy_header`; ``shape``: the per-point shape the array must
    have, or None), so a wrong, forged or truncated array is refused before its data is read."""
    key = None
    if not os.path.exists(path) and ".npz:" in path:
        path, key = path.rsplit(":", 1)
    where = f" in {path!r}"
    try:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                _header(f, os.fstat(f.fileno()).st_size, name, where, shape)
        data = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise UserError(f"cannot load {name} from {path!r}: {exc.strerror or exc}") from None
    except (ValueError, EOFError):  # numpy speaks of pickles and an option this CLI does not have; EOF: empty file
        raise UserError(f"cannot load {name} from {path!r}: not a .npy file of numbers (write one with numpy.save; "
                        "numpy.savez files work too)") from None
    if isinstance(data, np.ndarray):
        if key is not None:
            raise UserError(f"{name} {path!r} is a .npy file holding one array; drop ':{key}'")
        return data
    with data:
        names = list(data.files)
        if key is None and len(names) == 1:
            key = names[0]
        if key not in names:
            held = ", ".join(names) or "no arrays"
            ask = f"has no array {key!r}" if key is not None else "holds several arrays"
            raise UserError(f"{name} {path!r} {ask} ({held}); choose one as {path}:NAME")
        try:
            npz_member_header(data, key, name, where=f" in {path}:{key}", shape=shape, allow_empty=False)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        try:
            return data[key]
        except (ValueError, OSError, EOFError):
            raise UserError(f"cannot load {name} from {path}:{key}: not an array of numbers") from None


def _header(f, size: int, name: str, where: str, shape) -> None:
    """:func:`ntkdsl.validate.npy_header` with its ValueError as a UserError."""
    try:
        npy_header(f, size, name, where=where, shape=shape, allow_empty=False)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def load_points(path: str, shape, name: str) -> np.ndarray:
    """The inputs at ``path`` (:func:`load_array`) with per-point ``shape`` (the network's input shape),
    at least one point; a UserError naming ``name`` (the option) when they cannot be read, have
    another shape or non-finite values."""
    x = load_array(path, name, tuple(shape))
    try:
        return points(x, tuple(shape), name, where=f" in {path!r}", allow_empty=False)  # the API's rules (ntkdsl.validate)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def load_graphs(args, net: CompiledNetwork, x1, x2) -> dict:
    """``graph1``/``graph2`` of ``net.kernels`` from ``--graph1/--graph2`` (.npy, or .npz with the array
    ``graph``, or FILE.npz:NAME; headers checked before reading) for a network with ``aggregate``
    layers, checked against the points (:func:`ntkdsl.graphs.as_graphs`); {} for one without."""
    from ..codegen.prologue import uses_graphs
    from ..graphs import as_graphs

    graph2 = getattr(args, "graph2", None)  # (`ntkdsl sample` has --graph1 alone)
    if not uses_graphs(net.program):
        if args.graph1 or graph2:
            raise UserError(f"network {net.name} has no aggregate layer: --graph1/--graph2 are not used; leave them out")
        return {}
    nodes = int(net.ir.input_shape[0])
    if not args.graph1:
        raise UserError(f"network {net.name} aggregates over graphs: pass --graph1 FILE, each --x1 point's adjacency "
                        f"((N1, {nodes}, {nodes}) floats or an (N1, E, 2) integer edge list; .npy or .npz with 'graph')")
    if (x2 is None) != (not graph2):
        raise UserError("--graph2 goes with --x2 (its points' adjacencies); a self kernel uses --graph1 for both sides"
                        if x2 is None else f"network {net.name} aggregates over graphs: --x2 is given, so pass --graph2 FILE")
    return _per_point_arrays("graph", (args.graph1, x1), (graph2, x2),
                             lambda raw, n, option, points, where: as_graphs(raw, n, nodes, option, points, where=where))


def load_masks(args, net: CompiledNetwork, x1, x2) -> dict:
    """``mask1``/``mask2`` of ``net.kernels`` from ``--mask1/--mask2`` (.npy, or .npz with the array ``mask``,
    or FILE.npz:NAME; headers checked before reading), checked against the points
    (:func:`ntkdsl.masks.as_masks`); {} without them."""
    from ..masks import as_masks

    mask2 = getattr(args, "mask2", None)  # (`ntkdsl sample` has --mask1 alone)
    if not args.mask1 and not mask2:
        return {}
    if not args.mask1:
        raise UserError("--mask2 goes with --mask1 (the --x1 points' masks)" if x2 is not None else
                        "--mask2 goes with --x2 (its points' masks); a self kernel uses --mask1 for both sides")
    if (x2 is None) != (not mask2):
        raise UserError("--mask2 goes with --x2 (its points' masks); a self kernel uses --mask1 for both sides"
                        if x2 is None else "--x2 is given, so pass --mask2 FILE (its points' masks; all False: none masked)")
    shape = tuple(net.ir.input_shape[:-1])
    return _per_point_arrays("mask", (args.mask1, x1), (mask2, x2),
                             lambda raw, n, option, points, where: as_masks(raw, n, shape, option, points, where=where))


def _per_point_arrays(key: str, side1, side2, convert) -> dict:
    """``{key}1``/``{key}2`` of ``net.kernels`` read from the files of ``--{key}1``/``--{key}2`` (``side``:
    (path or None, the points)): .npy, an .npz's array ``key`` or FILE.npz:NAME, converted by ``convert``
    (raw, N, option, points' option, where) with its ValueError as the UserError; ``{key}2`` None without a file."""
    out = {f"{key}2": None}
    for number, (path, rows) in enumerate((side1, side2), start=1):
        if path is None:
            continue
        option = f"--{key}{number}"
        if path.endswith(".npz") and os.path.exists(path):
            path = f"{path}:{key}"
        raw = load_array(path, option)
        try:
            out[f"{key}{number}"] = convert(raw, len(rows), option, f"--x{number}", f" in {path!r}")
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return out


def require_gpu() -> None:
    """A UserError unless CuPy imports and runs a tiny array operation on a CUDA device.

    CuPy reports a missing driver, device or runtime library by many exception types (CUDARuntimeError,
    CompileException, RuntimeError, ...) at the first array operation; one probe turns them all into
    one line instead of a long CUDA traceback.
    """
    try:
        import cupy
    except ImportError:
        raise UserError("--backend cupy needs CuPy and a CUDA GPU: pip install 'ntkdsl[gpu]'") from None
    try:
        float((cupy.arange(2, dtype=cupy.float64) + 1.0).sum())
    except Exception as exc:  # noqa: BLE001 (see the docstring: CuPy's failures have no common base)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UserError(f"--backend cupy: no usable CUDA GPU ({type(exc).__name__}: {first}); "
                        "use --backend numpy") from None
