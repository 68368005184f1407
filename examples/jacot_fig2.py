"""Jacot, Gabriel & Hongler (2018), Fig. 2: kernel regression on 4 points of the unit circle.

The seed's network (jacot_fig1.ntk: depth 4, ReLU, NTK parameterization, β = 0.1) of widths 50
and 1000, 10 random initialisations each, trained by full-batch gradient descent at learning rate
1 on the loss (1/2N)·Σ(f − f*)² for 1000 steps; its outputs f(T) along the unit circle are drawn
against the 10th, 50th and 90th percentiles of the infinite-width limit: a Gaussian over random
initialisations with the mean and covariance of Lee et al. (2019), eq. 16 (kernel-math.md §4).

    python examples/jacot_fig2.py                 # reduced size (the test suite runs this)
    python examples/jacot_fig2.py --full          # the paper's sizes; saves jacot_fig2.png

Choices the paper leaves open: the 4 training angles (−2.4, −0.8, 0.5, 2.0 rad) and the target
f*(x) = x₁x₂ (the function of its Fig. 1). The percentiles are those at the training time T
(identical to t = ∞ to ~1e-16 at T = 1000; the slowest rate is 0.038 per step).

Asserts what the figure shows: (1) every network fits the 4 points (its loss falls by 10³ or
more); (2) each trained network is
close to the kernel-flow prediction from its own initial outputs, and closer at the larger width
(the finite-width deviation is O(1/√n)); (3) the wide networks fall inside the limit's 10–90%
band about as often as they should (80%; with a few networks the observed share is loose).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import ntkdsl
from ntkdsl.flow import KernelFlow

Z90 = 1.2815515655446004          # the 90th percentile of N(0, 1)
ANGLES = np.array([-2.4, -0.8, 0.5, 2.0])
SIZES = {"full": dict(widths=(50, 1000), inits=10, steps=1000),
         "quick": dict(widths=(50, 250), inits=4, steps=300)}


def on_circle(gamma: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(gamma), np.sin(gamma)], axis=1)


def run(widths, inits, steps, plot=None) -> dict:
    """Train the networks, compare with the limit, assert the claims; returns the measurements."""
    net = ntkdsl.load(Path(__file__).with_name("jacot_fig1.ntk"))
    x = on_circle(ANGLES)
    y = x[:, 0] * x[:, 1]
    gamma = np.linspace(-np.pi, np.pi, 121)
    probe = on_circle(gamma)
    flow = KernelFlow(net, x, y, learning_rate=1.0)
    mean, var = flow.ensemble(probe, steps, compute_cov=False)
    mean_inf, var_inf = flow.ensemble(probe, np.inf, compute_cov=False)
    std = np.sqrt(var)
    print(f"limit at T = {steps}: |mean - mean(inf)| {np.abs(mean - mean_inf).max():.1e}, "
          f"|std - std(inf)| {np.abs(std - np.sqrt(var_inf)).max():.1e}; slowest rate "
          f"{flow.eigen().rates[-1]:.3f} per step")

    results = {}
    for width in widths:
        start = time.perf_counter()
        curves, devs, losses = [], [], []
        for seed in range(inits):
            fnet = net.finite(width=width, seed=seed)
            record = fnet.train(x, y, learning_rate=1.0, steps=steps, probe=probe, record_every=steps)
            f0x, f0s = record.train_outputs[0][:, 0], record.probe_outputs[0][:, 0]   # step 0: the initial outputs
            trained = record.probe_outputs[-1][:, 0]
            own = flow.predict(probe, steps, f0=(f0x, f0s))   # the flow from this network's f0
            devs.append(np.linalg.norm(trained - own) / np.linalg.norm(own - f0s))
            losses.append(record.loss[-1] / record.loss[0])
            curves.append(trained)
        curves = np.array(curves)
        inside = np.mean(np.abs(curves - mean) <= Z90 * std)
        results[width] = dict(curves=curves, deviation=float(np.mean(devs)), fit=float(np.max(losses)),
                              inside=float(inside))
        print(f"width {width:5d}: {inits} networks, training loss reduced {1 / max(losses):.2g}-fold or more, "
              f"deviation from their own kernel flow {np.mean(devs):.3f} (mean), "
              f"inside the 10-90% band {inside:.0%}  [{time.perf_counter() - start:.1f} s]")

    narrow, wide = results[widths[0]], results[widths[-1]]
    assert all(r["fit"] < 1e-3 for r in results.values()), "a network did not fit the 4 points"
    assert wide["deviation"] < narrow["deviation"], "the wider networks should follow the flow more closely"
    assert wide["deviation"] < 0.15, wide["deviation"]
    assert 0.5 <= wide["inside"] <= 1.0, wide["inside"]
    print("claims hold: the networks fit the data, follow the kernel flow closer as width grows, "
          "and the wide ones spread like the limiting Gaussian")
    if plot:
        save_plot(plot, gamma, ANGLES, y, mean, std, results)
    return results


def save_plot(path, gamma, angles, y, mean, std, results) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install 'ntkdsl[plot]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (width, r), color in zip(results.items(), ("tab:green", "tab:red")):
        for i, curve in enumerate(r["curves"]):
            ax.plot(gamma, curve, color=color, lw=0.7, alpha=0.7, label=f"n = {width}" if i == 0 else None)
    for z, style in ((-Z90, "--"), (0.0, "-"), (Z90, "--")):
        ax.plot(gamma, mean + z * std, "k" + style, lw=1.2,
                label={0.0: "limit: 50th percentile", Z90: "limit: 10th/90th"}.get(z))
    ax.plot(angles, y, "ko", ms=6, label="training points")
    ax.set(xlabel="γ (x = (cos γ, sin γ))", ylabel="f(x) after training",
           title="Jacot et al. (2018), Fig. 2: networks vs the infinite-width limit")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    print(f"saved {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the paper's sizes (several minutes)")
    p.add_argument("--quick", action="store_true", help="reduced size (the default)")
    p.add_argument("--plot", help="save the figure here (default with --full: jacot_fig2.png)")
    args = p.parse_args(argv)
    size = SIZES["full" if args.full else "quick"]
    print(f"{'full' if args.full else 'reduced'} size: {size}")
    run(**size, plot=args.plot or ("jacot_fig2.png" if args.full else None))


if __name__ == "__main__":
    main(sys.argv[1:])
