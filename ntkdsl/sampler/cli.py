"""``ntkdsl sample``: finite networks of growing width against the analytic kernels.

    ntkdsl sample SPEC --widths 64,256,1024,4096 --samples 20 [--x1 A.npy] [--plot out.png]

Per width: the relative error of the Monte Carlo NNGP and NTK (means over draws) against the
analytic kernels at the same widths, and the relative spread of one draw (per-entry standard
deviation); then the least-squares slope of the NTK spread against width on a log-log scale
(theory −1/2, kernel-math.md §5). One draw's NNGP f(x)·f(x′) does not shrink with width (f is
Gaussian at every width): its spread is printed, not fitted.
"""

from __future__ import annotations

import sys
import time
from typing import List, TextIO

import numpy as np

from .._plotting import pyplot, save_figure
from ..errors import UserError
from .montecarlo import WidthStudy, loglog_slope, width_study


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
    s.add_argument("--points", type=int, default=8, help="number of random inputs without --x1 (default %(default)s)")
    s.add_argument("--seed", type=int, default=0, help="root random seed (default %(default)s)")
    s.add_argument("--plot", help="image file for spread and error vs width (needs matplotlib)")
    s.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="array module of the finite networks (default %(default)s; cupy needs a GPU)")
    s.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr: auto = when stderr is a terminal (default)")
    s.set_defaults(run=run)


class ProgressBar:
    """A one-line progress bar on a text stream: ``[#######.......] 35/80 draws  12.3 s``."""

    def __init__(self, stream: TextIO, enabled: bool, width: int = 30, label: str = "draws"):
        self.stream, self.enabled, self.width, self.label = stream, enabled, width, label
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} {self.label}  {time.perf_counter() - self.start:.1f} s")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def parse_widths(text: str) -> List[int]:
    """'64,256' → [64, 256].

    Raises:
        UserError: an entry that is not a positive integer, or a repeated width.
    """
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UserError(f"--widths: {part!r} is not a positive integer (use e.g. 64,256,1024)")
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
    from ..cli import _load, load_points  # the spec and input loaders with readable errors

    widths = parse_widths(args.widths)
    if args.samples < 2:
        raise UserError(f"--samples must be at least 2 (a standard deviation needs two draws), not {args.samples}")
    if args.points < 1:
        raise UserError(f"--points must be at least 1, not {args.points}")
    if args.plot:
        pyplot(args.plot)  # fail before any work when matplotlib is missing
    net = _load(args)
    shape = tuple(net.ir.input_shape)
    if args.x1:
        x, where = load_points(args.x1, shape, "--x1").astype(np.float64), args.x1
    else:
        x, where = default_inputs(shape, args.points, args.seed), "random, unit sphere" if len(shape) == 1 else "random images"
    enabled = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    if args.backend != "numpy":
        from .backend import array_module

        try:
            array_module(args.backend)
        except ImportError as exc:
            raise UserError(str(exc)) from None
    study = width_study(net, x, widths, n_samples=args.samples, seed=args.seed,
                        progress=ProgressBar(sys.stderr, enabled), backend=args.backend)
    print(_report(net, study, len(x), where))
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
    b.set(xlabel="hidden width", ylabel="||mean - analytic|| / ||analytic||",
          title=f"Monte Carlo mean ({study.n_samples} draws)")
    b.legend(fontsize="small")
    fig.tight_layout()
    save_figure(plt, fig, path)
