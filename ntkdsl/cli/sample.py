"""``ntkdsl sample``: finite networks of growing width against the analytic kernels.

    ntkdsl sample SPEC --widths 64,256,1024,4096 --samples 20 [--x1 A.npy [--graph1 G.npy] [--mask1 M.npy]] [--plot out.png]

Per width: the relative error of the Monte Carlo NNGP and NTK (means over draws) against the
analytic kernels at the same widths, and the relative spread of one draw (per-entry standard
deviation); then the least-squares slope of the NTK spread against width on a log-log scale
(theory −1/2, kernel-math.md §5). One draw's NNGP f(x)·f(x′) does not shrink with width (f is
Gaussian at every width): its spread is printed, not fitted.
"""

from __future__ import annotations

import argparse
from typing import List

import numpy as np

from .. import progress
from .._files import write_npz
from ..progress import tile_progress
from .._plotting import pyplot, save_figure
from .inputs import load_graphs, load_masks, load_network, load_points, require_gpu  # the loaders with readable errors
from ..errors import UserError
from ..sampler.montecarlo import WidthStudy, loglog_slope, width_study


def register(subparsers) -> None:
    """Add the ``sample`` subcommand to the ``ntkdsl`` argument parser."""
    s = subparsers.add_parser(
        "sample", help="Monte Carlo over finite networks of growing width vs the analytic kernels",
        description="Draw finite networks of each width in the spec's parameterization, compare their "
                    "mean NNGP/NTK with the analytic kernels and fit how one draw's NTK spread shrinks "
                    "with width (theory: slope -1/2 on a log-log scale).")
    s.add_argument("spec", help="a .ntk file")
    s.add_argument("--network", help="which network, when the file defines several")
    s.add_argument("--widths", default="64,256,1024,4096",
                   help="comma-separated hidden widths (default %(default)s)")
    s.add_argument("--samples", type=int, default=20, help="random draws per width, >= 2 (default %(default)s)")
    s.add_argument("--x1", help=".npy inputs (N, *input shape); default: random points on the unit sphere "
                                "(random normalised images for image inputs)")
    s.add_argument("--graph1", metavar="FILE", help="networks with aggregate: each --x1 point's graph, (N, V, V) "
                   "adjacency floats or (N, E, 2) integer [sender, receiver] edge lists (.npy, or .npz with 'graph')")
    s.add_argument("--mask1", metavar="FILE", help="position masks of the --x1 points, booleans (N, *S) with True = "
                   "masked (.npy, or .npz with 'mask'); per-position layers only")
    s.add_argument("--points", type=int, default=8, help="number of random inputs without --x1 (default %(default)s)")
    s.add_argument("--seed", type=_seed, default=0, help="root random seed, an integer >= 0 (default %(default)s)")
    s.add_argument("--plot", help="image file for spread and error vs width (needs matplotlib)")
    s.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="array module of the finite networks (default %(default)s; cupy needs a GPU)")
    s.add_argument("-o", "--out", help=".npz to write (atomically): widths, nngp_error, ntk_error, nngp_spread, "
                                       "ntk_spread, n_samples, x")
    progress.add_option(s, "over the draws of every width")
    s.set_defaults(run=run)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


class _Draws:
    """``progress(done, total)`` for width_study, drawing one bar over all draws of all widths."""

    def __init__(self, show, total: int):
        self.bar, self.done = tile_progress(show, total, desc="finite networks", unit="draw"), 0

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.done)
        self.done = done
        if done >= total:
            self.bar.close()


def parameter_count(ir, width: int) -> int:
    """The number of parameters of the spec's finite network with every hidden width ``width``.

    The count is a polynomial of degree ≤ 2 in the width (products of two widths in dense and conv
    weights, one width in biases and norms), so Newton's forward differences through widths 1, 2 and 3
    give it exactly at any width without allocating it.
    """
    from ..sampler.network import FiniteNetwork, override_widths

    p1, p2, p3 = (FiniteNetwork.initialise(override_widths(ir, w), 0).num_params for w in (1, 2, 3))
    return p1 + (width - 1) * (p2 - p1) + (width - 1) * (width - 2) // 2 * (p3 - 2 * p2 + p1)


def refuse_oversized(ir, widths: List[int]) -> None:
    """A UserError, before any work, when the parameters of the widest network alone (float64) exceed
    the memory budget (:func:`ntkdsl.tiling.memory_budget`: half the available memory)."""
    from ..tiling import format_bytes, memory_budget

    widest = max(widths)
    need = 8 * parameter_count(ir, widest)
    budget = memory_budget()
    if need > budget:
        raise UserError(f"--widths: a network of width {widest} has {need // 8:.3g} parameters, "
                        f"{format_bytes(need)} in float64 before any activation; the memory budget is "
                        f"{format_bytes(budget)} (half the available memory): use smaller widths")


def parse_widths(text: str) -> List[int]:
    """'64,256' → [64, 256].

    Raises:
        UserError: an entry that is not a positive integer, or a repeated width.
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 18 or int(part) < 1:  # 18 digits: far beyond any memory, within int64
            shown = part if len(part) <= 20 else part[:20] + "..."
            raise UserError(f"--widths: {shown!r} is not a positive integer below 10^18 (use e.g. 64,256,1024)")
        out.append(int(part))
    if len(set(out)) != len(out):
        raise UserError(f"--widths: {text!r} repeats a width")
    return sorted(out)


def default_inputs(input_shape, n: int, seed: int) -> np.ndarray:
    """n random inputs: on the unit sphere of R^d, or for images (H, W, C) Gaussian pixels normalised
    per image to mean 0 and variance 1."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *input_shape))
    if len(input_shape) == 1:
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    axes = tuple(range(1, x.ndim))
    x -= x.mean(axis=axes, keepdims=True)
    return x / x.std(axis=axes, keepdims=True)


def run(args) -> int:
    """Run the width study and report; returns the exit status."""

    widths = parse_widths(args.widths)
    if args.samples < 2:
        raise UserError(f"--samples must be at least 2 (a standard deviation needs two draws), not {args.samples}")
    if args.points < 1:
        raise UserError(f"--points must be at least 1, not {args.points}")
    if args.plot:
        pyplot(args.plot)  # fail before any work when matplotlib is missing
    net = load_network(args)
    shape = tuple(net.ir.input_shape)
    from ..codegen.prologue import uses_graphs

    if uses_graphs(net.program) and not args.x1:
        raise UserError(f"network {net.name} aggregates over graphs: pass --x1 FILE (the node signals, (N, "
                        f"{', '.join(map(str, shape))})) and --graph1 FILE (their adjacencies)")
    if args.mask1 and not args.x1:
        raise UserError("--mask1 goes with --x1 (the masks of its points)")
    if args.x1:
        x, where = load_points(args.x1, shape, "--x1").astype(np.float64), args.x1
    else:
        x, where = default_inputs(shape, args.points, args.seed), "random, unit sphere" if len(shape) == 1 else "random images"
    graph = load_graphs(args, net, x, None).get("graph1")  # None for a network without aggregate layers
    mask = load_masks(args, net, x, None).get("mask1")
    if mask is not None:
        from ..ir.layer import refuse_unmaskable

        refuse_unmaskable(net.ir)  # located at the layer, before any draw
    refuse_oversized(net.ir, widths)
    if args.backend != "numpy":
        from ..layers.arrays import array_module

        try:
            array_module(args.backend)
        except ImportError as exc:
            raise UserError(str(exc)) from None
        require_gpu()
    study = width_study(net, x, widths, n_samples=args.samples, seed=args.seed,
                        progress=_Draws(args.progress, len(widths) * args.samples), backend=args.backend, graph1=graph,
                        mask1=mask)
    print(_report(net, study, len(x), where))
    if args.out:
        try:
            write_npz(args.out, widths=study.widths, nngp_error=study.nngp_error, ntk_error=study.ntk_error,
                      nngp_spread=study.nngp_spread, ntk_spread=study.ntk_spread,
                      n_samples=np.array(study.n_samples), x=x)
        except OSError as exc:
            raise UserError(f"cannot write {args.out!r}: {exc.strerror or exc}") from None
        print(f"wrote {args.out}: widths, nngp_error, ntk_error, nngp_spread, ntk_spread, n_samples, x")
    if args.plot:
        _plot(study, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _report(net, study: WidthStudy, n: int, where: str) -> str:
    ir = net.ir
    lines = [f"network {ir.name}: {n} inputs ({where}), {study.n_samples} draws per width, "
             f"{ir.parameterization} parameterization, output width {ir.output_width}",
             "relative errors ||mean - analytic||/||analytic|| and one draw's spread ||std||/||analytic|| (Frobenius)",
             f"{'width':>8s}  {'nngp error':>11s}  {'ntk error':>11s}  {'nngp spread':>11s}  {'ntk spread':>11s}"]
    for row in zip(study.widths, study.nngp_error, study.ntk_error, study.nngp_spread, study.ntk_spread):
        lines.append(f"{row[0]:>8d}  " + "  ".join(f"{v:>11.4g}" for v in row[1:]))
    if len(study.widths) >= 2:
        slope = loglog_slope(study.widths, study.ntk_spread)
        lines.append(f"NTK spread vs width: log-log slope {slope:.3f} (theory -0.5)")
        lines.append("NNGP spread: one draw's f(x)f(x') stays O(1) at every width (f is Gaussian); "
                     "its Monte Carlo mean converges, with an O(1/n) bias beyond one hidden layer")
    lines.append(f"Monte Carlo noise alone makes an error of about spread/sqrt({study.n_samples}) "
                 f"= spread x {1 / np.sqrt(study.n_samples):.3f}")
    return "\n".join(lines)


def _plot(study: WidthStudy, path: str) -> None:
    """Spread and Monte Carlo error against width, log-log, with the n^(-1/2) reference."""
    plt = pyplot()
    w = study.widths.astype(float)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(w, study.ntk_spread, "o-", label="NTK, one draw")
    a.loglog(w, study.nngp_spread, "s-", label="NNGP, one draw")
    a.loglog(w, study.ntk_spread[0] * (w / w[0]) ** -0.5, "k--", label="slope -1/2")
    a.set(xlabel="hidden width", ylabel="||std|| / ||analytic||", title="single-draw spread")
    a.legend(fontsize="small")
    b.loglog(w, study.ntk_error, "o-", label="NTK")
    b.loglog(w, study.nngp_error, "s-", label="NNGP")
    root = np.sqrt(study.n_samples)   # the standard error of a mean over S draws: spread/√S
    b.loglog(w, study.ntk_spread / root, "C0:", label="NTK noise floor (spread/√S)")
    b.loglog(w, study.nngp_spread / root, "C1:", label="NNGP noise floor (spread/√S)")
    b.set(xlabel="hidden width", ylabel="||mean - analytic|| / ||analytic||",
          title=f"Monte Carlo mean ({study.n_samples} draws)")
    b.legend(fontsize="small")
    for ax in (a, b):  # one labelled tick per width, no minor width labels
        ax.set_xticks(w, [str(int(v)) for v in w])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
    fig.tight_layout()
    save_figure(plt, fig, path)
