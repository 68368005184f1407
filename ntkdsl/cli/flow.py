"""``ntkdsl flow``: the kernel-flow solution of a spec on data from .npz files.

    ntkdsl flow SPEC --train train.npz --test test.npz --times 0,10,100,inf [--plot out.png]

Each .npz holds arrays ``x`` (N, *input shape) and ``y`` (N,) or (N, k); ``y`` is optional in the test
file. A network with ``aggregate`` layers (a GNN) also reads ``graph`` from each file: the points'
adjacencies, (N, V, V) floats or (N, E, 2) integer edge lists (as ``ntkdsl eval --graph1``). A file may
hold ``mask``, the points' position masks (N, *S) booleans, True = masked (as ``ntkdsl eval --mask1``; a
file without it: nothing masked), for a network of per-position layers.
Prints the training loss and the test predictions (and test loss, when the test file has ``y``)
at each time; ``-o`` saves them, ``--plot`` draws the loss and the principal components over time.
"""

from __future__ import annotations

import sys
import warnings
from typing import Optional, Tuple

import numpy as np

from .. import progress
from .._files import write_npz
from .._plotting import pyplot, save_figure
from .inputs import load_network, require_gpu
from ..errors import UserError
from ..validate import npz_member_header
from ..flow.arrays import to_numpy
from ..flow.solver import KernelFlow

SHOWN = 5  # test predictions printed per time (all of them go to -o)


def register(subparsers) -> None:
    """Add the ``flow`` subcommand to the ``ntkdsl`` argument parser."""
    f = subparsers.add_parser(
        "flow", help="training dynamics of the infinitely wide network (kernel gradient flow)",
        description="Solve the kernel gradient flow df/dt = -(lr/N) K (f - y) of a spec in closed "
                    "form (loss (1/2N) sum |f - y|^2, time in gradient steps, f0 = 0).")
    f.add_argument("spec", help="a .ntk file")
    f.add_argument("--network", help="which network, when the file defines several")
    f.add_argument("--train", required=True, help=".npz with arrays x (N, *input shape) and y (N,) or (N, k) "
                   "(and graph, the adjacencies, for a network with aggregate layers; optionally mask, (N, *S) "
                   "booleans, True = masked)")
    f.add_argument("--test", help=".npz with array x (and optionally y, mask; graph for aggregate) of test points")
    f.add_argument("--times", default="0,10,100,1000,inf",
                   help="comma-separated times in gradient steps, 'inf' allowed (default %(default)s)")
    f.add_argument("--learning-rate", type=float, default=1.0, help="eta (default 1)")
    f.add_argument("--diag-reg", type=float, default=0.0, help="relative ridge (default 0)")
    f.add_argument("--kernel", choices=("ntk", "nngp"), default="ntk",
                   help="ntk: train all layers; nngp: the last layer only")
    f.add_argument("--loss-normalization", choices=("points", "entries"), default="points",
                   help="divide the squared loss by 2N (points) or 2Nk (entries)")
    f.add_argument("-o", "--out", help=".npz to write (atomically): times, train_loss, test_pred[, test_loss]")
    f.add_argument("--plot", help="image file for the loss and principal components over time (needs matplotlib)")
    f.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="where the kernels and the linear algebra run: numpy (default) or cupy (a CUDA GPU)")
    progress.add_option(f, "over the tiles of the kernels")
    f.set_defaults(run=run)


def parse_times(text: str) -> np.ndarray:
    """'0,10,inf' → array([0., 10., inf]).

    Raises:
        UserError: an entry that is not a number ≥ 0 or inf.
    """
    out = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            raise UserError(f"--times: {part.strip()!r} is not a number (use e.g. 0,10,100,inf)") from None
        if np.isnan(value) or value < 0:
            raise UserError(f"--times: {part.strip()!r} must be ≥ 0 or inf")
        out.append(value)
    return np.array(out)


def read_data(path: str, shape: Tuple[int, ...], need_y: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Arrays x (N, *shape) and y (N, ...) from an .npz file.

    Raises:
        UserError: unreadable file, missing arrays, wrong shapes or non-finite values.
    """
    want = "x and y" if need_y else "x"
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            raise UserError(f"{path!r} is a .npy file (one array); flow reads an .npz with arrays {want}: "
                            "numpy.savez(path, x=x, y=y)")
        with data:
            found = sorted(data.files)
            for k, per_point in (("x", shape), ("y", None)):  # headers first: a forged shape is not allocated
                if k in data.files:
                    npz_member_header(data, k, k, where=f" in {path!r}", shape=per_point)
            arrays = {k: data[k] for k in ("x", "y") if k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"cannot load {path!r} as .npz: {getattr(exc, 'strerror', None) or exc}") from None
    if "x" not in arrays or (need_y and "y" not in arrays):
        raise UserError(f"{path!r} must hold arrays {want} (found {', '.join(found) or 'none'})")
    x, y = arrays["x"], arrays.get("y")
    if need_y and x.shape[:1] == (0,):
        raise UserError(f"{path!r} holds no training points (x has shape {x.shape})")
    if x.shape[1:] != tuple(shape):
        raise UserError(f"x in {path!r} has shape {x.shape}; this network needs (N, {', '.join(map(str, shape))})")
    for name, a in (("x", x), ("y", y)):
        if a is None:
            continue
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise UserError(f"{name} in {path!r} must hold finite numbers")
    if y is not None and (y.ndim == 0 or y.shape[0] != x.shape[0]):
        raise UserError(f"y in {path!r} has shape {y.shape}; expected ({x.shape[0]}, ...) to match x")
    return x.astype(np.float64), None if y is None else y.astype(np.float64)


def read_side(path: str, net, x: np.ndarray) -> dict:
    """The per-point side data in the .npz at ``path`` of its points ``x``, as keyword arguments of the flow
    (``graph``, ``mask``; :func:`ntkdsl.side.point_side`): the array ``graph``, dense (N, V, V),
    for a network with aggregate layers, where it is required; the array ``mask`` (N, *S) booleans where held.

    Raises:
        UserError: a network that aggregates without the array graph, one that does not with it, a mask for
            a network that cannot take masks (naming the layer), or bad graphs or masks.
    """
    from ..codegen.prologue import uses_graphs
    from ..errors import SpecError
    from ..side import point_side

    with np.load(path, allow_pickle=False) as data:  # read_data has read it as an .npz already
        held = {k: k in data.files for k in ("graph", "mask")}
        if held["graph"] and not uses_graphs(net.program):
            raise UserError(f"{path!r} holds an array graph, but network {net.name} has no aggregate layer; leave it out")
        if not held["graph"] and uses_graphs(net.program):
            nodes = int(net.ir.input_shape[0])
            raise UserError(f"network {net.name} aggregates over graphs: {path!r} must hold an array graph, each x "
                            f"point's adjacency ((N, {nodes}, {nodes}) floats or an (N, E, 2) integer edge list)")
        try:
            for k in ("graph", "mask"):
                if held[k]:
                    npz_member_header(data, k, k, where=f" in {path!r}")  # before its data is read
            side = {k: data[k] for k in held if held[k]}
            return point_side(net, x, "x", f" in {path!r}", side.get("graph"), side.get("mask"))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        except SpecError as exc:  # a layer that cannot take masks, located in the spec
            raise UserError(f"{path!r} holds an array mask, but {exc}") from None


class _WithProgress:
    """The network with the CLI's --progress choice passed to every kernel request of the flow."""

    def __init__(self, net, show):
        self._net, self._show = net, show

    def __getattr__(self, name):  # program, ir, name: the network's
        return getattr(self._net, name)

    def kernels(self, x1, x2=None, **options):
        return self._net.kernels(x1, x2, progress=self._show, **options)


def run(args) -> int:
    """Solve the flow and report; returns the exit status."""
    times = parse_times(args.times)
    if args.plot:
        pyplot(args.plot)   # fail early, before any work, when matplotlib is missing
    net = load_network(args)
    shape = tuple(net.ir.input_shape)
    x, y = read_data(args.train, shape, need_y=True)
    x_test, y_test = read_data(args.test, shape, need_y=False) if args.test else (None, None)
    side = read_side(args.train, net, x)
    side_test = {f"{k}_test": v for k, v in (read_side(args.test, net, x_test) if args.test else {}).items()}
    if y_test is not None and y_test.shape[1:] != y.shape[1:]:
        raise UserError(f"test y has outputs {y_test.shape[1:]}; the training y has {y.shape[1:]}")
    if args.backend == "cupy":
        require_gpu()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            flow = KernelFlow(_WithProgress(net, args.progress), x, y, learning_rate=args.learning_rate,
                              diag_reg=args.diag_reg, kernel=args.kernel,
                              loss_normalization=args.loss_normalization, backend=args.backend,
                              graph_train=side.get("graph"), mask_train=side.get("mask"))
            loss = to_numpy(flow.loss(times))
            pred = to_numpy(flow.predict(x_test, times, **side_test)) if x_test is not None else None
        except (ValueError, ImportError) as exc:  # ImportError: --backend cupy without CuPy
            raise UserError(str(exc)) from None
    for w in {str(w.message) for w in caught}:
        print(f"ntkdsl: warning: {w}", file=sys.stderr)
    _warn_unstable(flow)
    test_loss = None if pred is None or y_test is None else _test_loss(flow, pred, y_test)
    _report(net.name, flow, times, loss, pred, test_loss)
    if args.out:
        arrays = {"times": times, "train_loss": loss}
        if pred is not None:
            arrays["test_pred"] = pred
        if test_loss is not None:
            arrays["test_loss"] = test_loss
        _write(args.out, lambda: write_npz(args.out, **arrays))
        print(f"wrote {args.out}: {', '.join(arrays)}")
    if args.plot:
        _plot(flow, times, args.plot, x_test, y_test, side_test)
        print(f"wrote {args.plot}")
    return 0


def _test_loss(flow: KernelFlow, pred: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """The test loss at each time, normalised as the training loss: (1/2M)·Σ‖f − y‖² (or 1/(2Mk))."""
    per_point = flow.normaliser // flow.n_train       # 1, or k for "entries"
    axes = tuple(range(1, pred.ndim))
    return np.sum((pred - y_test[None]) ** 2, axis=axes) / (2.0 * per_point * len(y_test))


def _warn_unstable(flow: KernelFlow) -> None:
    """A warning when η exceeds 2n/λ_max: gradient descent with steps of that size diverges along the
    top principal component (|1 − η·λ_max/n| > 1), while the continuous flow printed here does not."""
    top = flow.max_learning_rate()
    if flow.learning_rate > top:
        print(f"ntkdsl: warning: learning rate {flow.learning_rate:g} exceeds the largest stable one, "
              f"{top:.6g} (2n/λ_max): gradient descent with steps this large diverges; the results below "
              f"are the continuous-time flow (times in units of steps of {flow.learning_rate:g})", file=sys.stderr)


def _report(name, flow, times, loss, pred, test_loss) -> None:
    rates = to_numpy(flow.eigen().rates)
    print(f"network {name}: {flow.n_train} training points, kernel {flow.kernel}, "
          f"learning rate {flow.learning_rate:g}, ridge {flow.ridge:.3g}, "
          f"loss normalisation {flow.loss_normalization}")
    print(f"largest stable learning rate {flow.max_learning_rate():.6g}; top decay rates per step "
          + " ".join(f"{r:.4g}" for r in rates[:5]))
    head = f"{'time':>10s}  {'train loss':>12s}"
    if test_loss is not None:
        head += f"  {'test loss':>12s}"
    if pred is not None:
        head += f"  test predictions (first {min(SHOWN, pred.shape[1])} of {pred.shape[1]})"
    print(head)
    for i, t in enumerate(times):
        line = f"{t:>10g}  {loss[i]:>12.6g}"
        if test_loss is not None:
            line += f"  {test_loss[i]:>12.6g}"
        if pred is not None:
            line += "  " + " ".join(f"{v:.5g}" for v in pred[i].reshape(pred.shape[1], -1)[:SHOWN, 0])
        print(line)


def _write(path: str, writer) -> None:
    try:
        writer()
    except OSError as exc:
        raise UserError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def _plot(flow: KernelFlow, times: np.ndarray, path: str, x_test=None, y_test=None, side_test=None) -> None:
    """Training (and test) loss and the first principal components of the residual against time, on
    log-log axes from 1/100 of the fastest decay time to past the slowest shown one."""
    plt = pyplot()
    eig = flow.eigen()
    rates = to_numpy(eig.rates)
    shown = min(5, flow.n_train)
    positive = rates[:shown][rates[:shown] > 0]
    finite = times[np.isfinite(times) & (times > 0)]
    first = 1e-2 / positive[0] if positive.size else (finite.min() if finite.size else 1e-2)
    last = max(10.0 / positive[-1] if positive.size else 1.0, finite.max() if finite.size else 0.0)
    grid = np.geomspace(first, max(last, 10 * first), 200)
    comps = np.abs(to_numpy(eig.components(grid))).reshape(grid.size, flow.n_train, -1).max(axis=2)
    train = to_numpy(flow.loss(grid))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.loglog(grid, train, label="training loss")
    curves = [train]
    if x_test is not None and y_test is not None:
        test = _test_loss(flow, to_numpy(flow.predict(x_test, grid, **(side_test or {}))), y_test)
        a.loglog(grid, test, label="test loss")
        curves.append(test)
    start = max(float(c[0]) for c in curves)
    a.set_ylim(bottom=max(min(float(c.min()) for c in curves), 1e-8 * start) / 2, top=2 * start)
    a.set(xlabel="t (gradient steps)", ylabel="loss", title=f"loss ({flow.kernel} flow)")
    a.legend(fontsize="small")
    for i in range(shown):
        b.loglog(grid, comps[:, i], label=f"component {i + 1} (rate {rates[i]:.3g})")
    top = max(float(comps[0, :shown].max()), 1e-300)
    b.set_ylim(bottom=1e-8 * top, top=2 * top)   # 8 decades below the start
    b.set(xlabel="t (gradient steps)", ylabel="|residual along eigenvector|",
          title="kernel principal components")
    b.legend(fontsize="small")
    fig.tight_layout()
    save_figure(plt, fig, path)
