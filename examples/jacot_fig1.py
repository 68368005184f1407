"""Jacot, Gabriel & Hongler (2018), Fig. 1: the limiting NTK Θ(x0, x) on the unit circle.

Run: python examples/jacot_fig1.py   (asserts the published values of kernel-math.md §6)
"""

from pathlib import Path

import numpy as np

import ntkdsl

PUBLISHED = {0.0: 0.2825, np.pi / 4: 0.1700, np.pi / 2: 0.0927, 3 * np.pi / 4: 0.0660, np.pi: 0.0644}


def main() -> None:
    net = ntkdsl.load(Path(__file__).with_name("jacot_fig1.ntk"))
    gammas = np.array(list(PUBLISHED))
    x = np.stack([np.cos(gammas), np.sin(gammas)], axis=1)
    theta = net.ntk(np.array([[1.0, 0.0]]), x)[0]
    print("gamma      Theta(x0, x)   published")
    for g, t in zip(gammas, theta):
        print(f"{g:8.4f}   {t:.6f}       {PUBLISHED[g]:.4f}")
        assert round(t, 4) == PUBLISHED[g], (g, t)
    print("all five values agree to 4 digits")


if __name__ == "__main__":
    main()
