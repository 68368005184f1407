"""Monte Carlo estimates of the NNGP and NTK over random finite networks, and convergence in width.

For i.i.d. draws the mean of the empirical kernels estimates E[·] with standard error s/√S (s the
sample standard deviation over S draws). E over draws of a finite network's kernels is not the
analytic kernel exactly: for depth ≥ 2 hidden layers it has an O(1/n) bias, while one draw's
fluctuation around it is O(1/√n) for the NTK (kernel-math.md §5; Hanin & Nica 2020, "Finite depth and
width corrections to the neural tangent kernel"). One draw's NNGP f(x)·f(x′)/k does not shrink with
width: f is a Gaussian process at every width, so only its mean converges.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

from ..layers.arrays import to_numpy
from ..validate import seed as valid_seed
from .network import FiniteNetwork, as_inputs, override_widths


class MonteCarloKernels(NamedTuple):
    """Means over random draws (and outputs) of the empirical kernels and their standard errors, each (N1, N2)."""

    nngp: np.ndarray
    ntk: np.ndarray
    nngp_stderr: np.ndarray
    ntk_stderr: np.ndarray


def _seeds(seed, n: int):
    return np.random.SeedSequence(seed).spawn(n)


def monte_carlo(net, x1, x2=None, width: Optional[int] = None, n_samples: int = 100, seed=0,
                progress: Optional[Callable[[int, int], None]] = None, backend: str = "numpy", graph1=None,
                graph2=None, mask1=None, mask2=None) -> MonteCarloKernels:
    """Average the empirical NNGP and NTK of ``n_samples`` independent finite networks.

    Args:
        net: a :class:`ntkdsl.CompiledNetwork` (or a :class:`ntkdsl.ir.Network`).
        x1: inputs (N1, *input_shape).
        x2: inputs (N2, *input_shape), or None for ``x1``.
        width: overrides every hidden width (None: the spec's widths).
        n_samples: the number of draws S ≥ 2 (the standard error needs two).
        seed: the root seed; draw s uses the s-th child of ``numpy.random.SeedSequence(seed)``.
        progress: called as ``progress(done, total)`` after each draw.
        backend: "numpy" or "cupy" for the finite networks; the results are NumPy arrays.
        graph1, graph2: the points' adjacencies for a network with aggregate layers (as ``net.kernels``).
        mask1, mask2: the points' position masks, True = masked (as ``net.kernels``).

    Returns:
        :class:`MonteCarloKernels`; multiply a standard error by √S for one draw's spread.

    Raises:
        ValueError: n_samples < 2, an invalid width, or inputs of the wrong shape.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer ≥ 2, not {n_samples!r}")
    ir = override_widths(getattr(net, "ir", net), width)
    valid_seed(seed, root=True)
    a1 = as_inputs(x1, ir, "x1")
    a2 = None if x2 is None else as_inputs(x2, ir, "x2")
    nngp, ntk = [], []
    for s, child in enumerate(_seeds(seed, n_samples)):
        fnet = FiniteNetwork.initialise(ir, child, backend)
        nngp.append(to_numpy(fnet.nngp(a1, a2, graph1, graph2, mask1, mask2)))
        ntk.append(to_numpy(fnet.ntk(a1, a2, graph1=graph1, graph2=graph2, mask1=mask1, mask2=mask2)))
        if progress is not None:
            progress(s + 1, n_samples)
    nngp, ntk = np.stack(nngp), np.stack(ntk)
    root = np.sqrt(n_samples)
    return MonteCarloKernels(nngp.mean(0), ntk.mean(0), nngp.std(0, ddof=1) / root, ntk.std(0, ddof=1) / root)


class WidthStudy(NamedTuple):
    """Per width: relative errors of the Monte Carlo means and relative single-draw spreads.

    Each error is ‖K̂ − K‖_F/‖K‖_F (K̂ the mean over draws, K the analytic kernel at that width);
    each spread is ‖s‖_F/‖K‖_F with s the per-entry standard deviation of one draw's kernel.
    """

    widths: np.ndarray
    nngp_error: np.ndarray
    ntk_error: np.ndarray
    nngp_spread: np.ndarray
    ntk_spread: np.ndarray
    n_samples: int


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    scale = np.linalg.norm(ref)
    return float(np.linalg.norm(a) / scale) if scale > 0 else float(np.linalg.norm(a))


def width_study(net, x1, widths: Sequence[int], n_samples: int = 20, seed=0,
                progress: Optional[Callable[[int, int], None]] = None, backend: str = "numpy",
                graph1=None, mask1=None) -> WidthStudy:
    """Monte Carlo kernels at each width against the analytic kernels at the same widths.

    Args:
        net: a :class:`ntkdsl.CompiledNetwork`.
        x1: inputs (N, *input_shape); the kernels are (N, N).
        widths: hidden widths to try.
        n_samples: draws per width.
        seed: root seed (each width uses the same one).
        progress: called as ``progress(done, total)`` over all draws of all widths.
        backend: "numpy" or "cupy" for the finite networks.
        graph1: the points' adjacencies for a network with aggregate layers (as ``net.kernels``).
        mask1: the points' position masks, True = masked (as ``net.kernels``).

    Returns:
        :class:`WidthStudy`.
    """
    rows = []
    total = len(widths) * n_samples
    for j, w in enumerate(widths):
        tick = None if progress is None else (lambda done, _, j=j: progress(j * n_samples + done, total))
        mc = monte_carlo(net, x1, width=w, n_samples=n_samples, seed=seed, progress=tick, backend=backend,
                         graph1=graph1, mask1=mask1)
        exact = net.with_width(w).kernels(x1, graph1=graph1, mask1=mask1)
        root = np.sqrt(n_samples)
        rows.append((_rel(mc.nngp - exact.nngp, exact.nngp), _rel(mc.ntk - exact.ntk, exact.ntk),
                     _rel(mc.nngp_stderr * root, exact.nngp), _rel(mc.ntk_stderr * root, exact.ntk)))
    cols = np.array(rows).T
    return WidthStudy(np.asarray(widths), *cols, n_samples=n_samples)


def loglog_slope(widths, values) -> float:
    """The least-squares slope of log(values) against log(widths) (theory for a spread: −1/2)."""
    return float(np.polyfit(np.log(np.asarray(widths, dtype=float)), np.log(np.asarray(values, dtype=float)), 1)[0])
