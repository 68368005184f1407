"""Jacot, Gabriel & Hongler (2018), Fig. 3: convergence along the kernel principal components.

Gradient descent on a wide network moves its outputs on the training set fastest along the top
eigenvectors of the NTK Θ(X, X): the residual's component along eigenvector i decays as
e^{−η·λᵢ·t} with λᵢ an eigenvalue of Θ/N (kernel-math.md §4). The seed shows this on 512 MNIST
digits: finite networks of widths 100, 1000 and 10000 trained towards f* = f₀ + 0.5·f⁽²⁾ (f₀ the
network's own initial function, f⁽²⁾ the 2nd eigenfunction) follow the line 0.5·e^{−ηλ₂t}, the
more closely the wider they are.

    python examples/jacot_fig3.py               # reduced size (the test suite runs this)
    python examples/jacot_fig3.py --full        # 512 digits, widths 100/1000/10000; saves jacot_fig3.png

Offline stand-in for MNIST: scikit-learn's bundled 8x8 digits (n₀ = 64), the first 512 of them.
Choices the paper leaves open, made here:
- pixels: each image centred (its mean pixel subtracted) and scaled to norm √64, so that every
  input has Σ⁰(x, x) = 1 (inputs on a sphere, as Jacot et al.'s theory assumes);
- depth: one hidden ReLU layer (jacot_fig3.ntk; σ_w = 1, β = 0.1 as in the seed's other figures),
  so that width 10000 trains on a CPU in minutes;
- f⁽²⁾ = √N·v₂ with v₂ the unit 2nd eigenvector of Θ(X, X), so that (1/N)·Σ f⁽²⁾(xᵢ)² = 1 and the
  component ⟨f* − f_t, f⁽²⁾⟩ = (1/N)·Σ (f* − f_t)(xᵢ)·f⁽²⁾(xᵢ) starts at 0.5;
- learning rate η = 0.05 (stable up to 2/λ₁ ≈ 4): gradient descent takes discrete steps, whose
  residual decays as (1 − ηλ₂)^t rather than e^{−ηλ₂t}; the gap between the two is at most
  ηλ₂/(2e) ≈ 5e-4 of the starting value, printed, and asserted to be far below the deviations.

Asserts: the eigenvalues are positive and decreasing; the component decays along the line, with a
deviation (max over time, relative to 0.5, mean over initialisations) that shrinks with width.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import ntkdsl
from ntkdsl.flow import KernelFlow

SIZES = {"full": dict(n_digits=512, widths=(100, 1000, 10000), seeds=(8, 4, 3), steps=700, records=14),
         "quick": dict(n_digits=128, widths=(10, 100, 1000), seeds=(8, 6, 3), steps=250, records=2)}
LEARNING_RATE = 0.05


def digits(n: int) -> np.ndarray:
    """The first n 8x8 digits, each centred and scaled to norm √64."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn (pip install 'ntkdsl[test]')")
    x = load_digits().data[:n].astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1])


def run(n_digits, widths, seeds, steps, records, plot=None) -> dict:
    """Train, measure the 2nd component against its line, assert the claims; returns the measurements."""
    net = ntkdsl.load(Path(__file__).with_name("jacot_fig3.ntk"))
    x = digits(n_digits)
    n = len(x)
    eig = KernelFlow(net, x, np.zeros(n), learning_rate=LEARNING_RATE).eigen()   # targets do not matter
    lam = eig.values / n                                      # eigenvalues of Θ/N
    rate = eig.rates[1]                                       # η·λ₂
    f2 = np.sqrt(n) * eig.vectors[:, 1]
    print(f"{n} digits: eigenvalues of Θ/N  λ1 = {lam[0]:.4g}, λ2 = {lam[1]:.4g}, λ3 = {lam[2]:.4g} "
          f"(the paper's MNIST network: 0.0457, 0.00108, 0.00078)")
    every = max(1, steps // records)
    t = np.arange(0, steps + 1, every)
    line = 0.5 * np.exp(-rate * t)
    gap = np.max(np.abs(0.5 * (1 - rate) ** t - line)) / 0.5   # discrete steps vs the continuous line
    print(f"learning rate {LEARNING_RATE}, {steps} steps: the line falls to {line[-1]:.3f}; "
          f"discrete-step gap to the line {gap:.1e}")

    results = {}
    for width, count in zip(widths, seeds):
        start = time.perf_counter()
        curves, devs = [], []
        for seed in range(count):
            fnet = net.finite(width=width, seed=seed)
            target = fnet.apply(x)[:, 0] + 0.5 * f2            # f* = f₀ + 0.5·f⁽²⁾
            record = fnet.train(x, target, learning_rate=LEARNING_RATE, steps=steps, record_every=every)
            comp = (target[None] - record.train_outputs[:, :, 0]) @ f2 / n
            curves.append((record.steps, comp))
            devs.append(np.max(np.abs(comp - 0.5 * np.exp(-rate * record.steps))) / 0.5)
        results[width] = dict(curves=curves, deviation=float(np.mean(devs)))
        print(f"width {width:6d}: {count} networks, deviation from the line {np.mean(devs):.4f} "
              f"(mean of max over time; each {' '.join(f'{d:.3f}' for d in devs)})  "
              f"[{time.perf_counter() - start:.1f} s]")

    dev = [results[w]["deviation"] for w in widths]
    assert np.all(lam[:-1] >= lam[1:]) and lam[-1] >= 0, "eigenvalues must be non-negative, decreasing"
    assert dev[0] > dev[-1], f"the deviation must shrink with width: {dev}"
    assert dev[-1] < 0.03, dev[-1]
    assert gap < dev[-1] / 3, "the discrete-step gap must be far below the finite-width deviation"
    if n_digits == 512:   # full size: every step of 10x in width lowers the deviation
        assert dev[0] > dev[1] > dev[2], dev
    print("claims hold: the 2nd component decays as 0.5·exp(-η λ2 t), the more closely the wider the network")
    if plot:
        save_plot(plot, lam, t, line, results)
    return results


def save_plot(path, lam, t, line, results) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install 'ntkdsl[plot]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.5))
    top = min(30, len(lam))
    a.semilogy(np.arange(1, top + 1), lam[:top], "o-", ms=3)
    a.set(xlabel="i", ylabel="λᵢ (eigenvalues of Θ/N)", title="kernel principal components")
    for (width, r), color in zip(results.items(), ("tab:green", "tab:orange", "tab:red")):
        for i, (steps, comp) in enumerate(r["curves"]):
            b.semilogy(steps, np.abs(comp), color=color, lw=0.8, alpha=0.8,
                       label=f"n = {width}" if i == 0 else None)
    b.semilogy(t, line, "k--", lw=1.5, label="0.5·exp(−ηλ₂t)")
    b.set(xlabel="t (gradient steps)", ylabel="component along f⁽²⁾",
          title="Jacot et al. (2018), Fig. 3 (8x8 digits)")
    b.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    print(f"saved {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="the paper's sizes (several minutes)")
    p.add_argument("--quick", action="store_true", help="reduced size (the default)")
    p.add_argument("--plot", help="save the figure here (default with --full: jacot_fig3.png)")
    args = p.parse_args(argv)
    size = SIZES["full" if args.full else "quick"]
    print(f"{'full' if args.full else 'reduced'} size: {size}")
    run(**size, plot=args.plot or ("jacot_fig3.png" if args.full else None))


if __name__ == "__main__":
    main(sys.argv[1:])
