"""Sequences with a recurrent network's NTK: which of two frequencies a noisy sine wave has.

Each input is 16 samples of sin(ω·t + φ) plus noise, ω ∈ {0.5, 1.2}, random phase φ; the label is
±1 by frequency. examples/rnn.ntk is a ReLU RNN read out at its last step; the infinite-width
network trained by gradient descent on the squared loss (ntkdsl.KernelFlow, t = ∞) classifies the
test waves from their kernel with the training ones (the recurrent NTK, Alemohammad et al. 2021).

Asserts: finite RNNs of width 512 (ntkdsl.monte_carlo, 40 draws) reproduce the analytic NTK within
the Monte Carlo error plus the 1/width finite-width bias; the flow's test accuracy is far above
chance (≥ 85 % on 200 test waves).

    python examples/rnn_sequences.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ntkdsl
from ntkdsl.flow import KernelFlow

HERE = Path(__file__).resolve().parent


def waves(n: int, rng) -> tuple:
    """n noisy sine waves of 16 steps, shape (n, 16, 1), and their ±1 frequency labels."""
    freq = rng.integers(0, 2, n)
    t = np.arange(16)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    x = np.sin(np.where(freq[:, None] == 1, 1.2, 0.5) * t + phase) + 0.3 * rng.standard_normal((n, 16))
    return x[..., None], 2.0 * freq - 1.0


def main() -> None:
    rng = np.random.default_rng(0)
    net = ntkdsl.load(HERE / "rnn.ntk")
    x_train, y_train = waves(200, rng)
    x_test, y_test = waves(200, rng)

    exact = net.kernels(x_train[:4])
    mc = ntkdsl.monte_carlo(net, x_train[:4], width=512, n_samples=40, seed=1)
    scale = np.abs(exact.ntk).max()
    worst = np.max(np.abs(mc.ntk - exact.ntk) - 4 * mc.ntk_stderr) / scale
    print(f"finite RNNs (width 512, 40 draws) vs the analytic NTK: excess over 4 standard errors {max(worst, 0):.3f} of scale")
    assert worst <= 4 / 512, worst  # Monte Carlo error (4 SE) plus the O(1/width) finite-width bias

    flow = KernelFlow(net, x_train, y_train, learning_rate=1.0)
    f = flow.predict(x_test, [np.inf])[0].ravel()
    accuracy = np.mean(np.sign(f) == y_test)
    print(f"kernel-flow classifier at t = inf: test accuracy {accuracy:.1%} on {len(y_test)} waves")
    assert accuracy >= 0.85, accuracy


if __name__ == "__main__":
    main()
