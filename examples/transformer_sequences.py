"""Sequences with a transformer's NTK: which of two frequencies a noisy sine wave has.

The waves of examples/rnn_sequences.py (16 samples of sin(ω·t + φ) plus noise, ω ∈ {0.5, 1.2}, random
phase φ, label ±1 by frequency) through examples/transformer.ntk: one encoder block (self-attention with
positional embeddings, neural-tangents' GlobalSelfAttention, then a position-wise ReLU MLP, each a
residual branch followed by layer norm) and mean pooling over the sequence. The infinite-width network
trained by gradient descent on the squared loss (ntkdsl.KernelFlow, t = ∞) classifies test waves from
their kernel with the training ones.

Asserts: finite transformers of width 128 (ntkdsl.monte_carlo, 12 draws; key and value channels follow
the width) reproduce the analytic NTK within 4 standard errors plus the 4/width finite-width bias; the
flow's test accuracy is well above chance (≥ 70 % on 200 test waves; the RNN of rnn_sequences.py, whose
recurrence suits this task better, reaches 99.5 %).

    python examples/transformer_sequences.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ntkdsl
from ntkdsl.flow import KernelFlow
from rnn_sequences import waves  # the same task (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent


def main() -> None:
    rng = np.random.default_rng(0)
    net = ntkdsl.load(HERE / "transformer.ntk")
    x_train, y_train = waves(200, rng)
    x_test, y_test = waves(200, rng)

    exact = net.kernels(x_train[:3])
    mc = ntkdsl.monte_carlo(net, x_train[:3], width=128, n_samples=12, seed=1)
    scale = np.abs(exact.ntk).max()
    worst = np.max(np.abs(mc.ntk - exact.ntk) - 4 * mc.ntk_stderr) / scale
    print(f"finite transformers (width 128, 12 draws) vs the analytic NTK: excess over 4 standard errors "
          f"{max(worst, 0):.3f} of scale")
    assert worst <= 4 / 128, worst  # Monte Carlo error (4 SE) plus the O(1/width) finite-width bias

    flow = KernelFlow(net, x_train, y_train, learning_rate=1.0)
    f = flow.predict(x_test, [np.inf])[0].ravel()
    accuracy = np.mean(np.sign(f) == y_test)
    print(f"kernel-flow classifier at t = inf: test accuracy {accuracy:.1%} on {len(y_test)} waves")
    assert accuracy >= 0.70, accuracy


if __name__ == "__main__":
    main()
