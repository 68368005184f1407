"""Accuracy and cost of ntkdsl's numerical duals (the quadrature of ntkdsl/codegen/support.py).

For every numerical catalog row (tanh, sigmoid, softplus, silu, mish) and two kinked custom functions,
compares K = E[σ(u)σ(v)] and K̇ = E[σ'(u)σ'(v)] with a reference and reports the error
|K − K_ref| / (|K_ref| + √(q1·q2)) (absolute and relative parts, kernel-math.md §3) over variances
q1, q2 ∈ {0.01, 0.1, 1, 10, 100} and correlations ρ ∈ {−1, −0.99, −0.5, 0, 0.5, 0.9, 0.999, 1}.
The reference is nested adaptive quadrature (scipy.integrate.quad with breakpoints at the kinks
and at σ's transition, tolerances 1e-13), itself spot-checked against mpmath at 30 digits.

Run: python benchmarks/numerical_duals.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import mpmath
import numpy as np
from scipy import integrate

from ntkdsl.codegen.support import gaussian_expectation, gaussian_expectations

SMOOTH = {
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2, mpmath.tanh),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2,
                lambda x: 1 / (1 + mpmath.exp(-x))),
    "softplus": (lambda x: np.logaddexp(0, x), lambda x: 1 / (1 + np.exp(-x)), lambda x: mpmath.log(1 + mpmath.exp(x))),
    "silu": (lambda x: x / (1 + np.exp(-x)), lambda x: (1 + np.exp(-x) + x * np.exp(-x)) / (1 + np.exp(-x)) ** 2,
             lambda x: x / (1 + mpmath.exp(-x))),
    "mish": (lambda x: x * np.tanh(np.logaddexp(0, x)), None, lambda x: x * mpmath.tanh(mpmath.log(1 + mpmath.exp(x)))),
}
KINKED = {
    "relu(x) + tanh(x)": (lambda x: np.maximum(x, 0) + np.tanh(x), (0.0,)),
    "abs(x - 0.5)": (lambda x: np.abs(x - 0.5), (0.5,)),
}


def reference(f, g, q1, q2, c, points=(-1.0, 0.0, 1.0)):
    """Nested adaptive quadrature in (z1, z2) with breakpoints mapped from σ's special points."""
    r1, r2 = np.sqrt(q1), np.sqrt(q2)
    rho = np.clip(c / np.sqrt(q1 * q2), -1, 1)
    s = r2 * np.sqrt(max(1 - rho * rho, 0.0))
    phi = lambda z: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731

    def inner(z1):
        mu = r2 * rho * z1
        if s == 0:
            return g(mu)
        pts = [(t - mu) / s for t in points if -12 < (t - mu) / s < 12]
        return integrate.quad(lambda z2: phi(z2) * g(mu + s * z2), -12, 12, points=pts or None,
                              epsabs=1e-15, epsrel=1e-13, limit=500)[0]

    pts = [t / r1 for t in points if -12 < t / r1 < 12]
    return integrate.quad(lambda z1: phi(z1) * f(r1 * z1) * inner(z1), -12, 12, points=pts or None,
                          epsabs=1e-15, epsrel=1e-13, limit=500)[0]


def mp_reference(f, q, rho):
    """E[f(u)f(v)] at q1 = q2 = q to 30 digits (mpmath, nested tanh-sinh quadrature)."""
    mpmath.mp.dps = 30
    q, rho = mpmath.mpf(q), mpmath.mpf(rho)
    s = mpmath.sqrt(1 - rho**2)
    r = mpmath.sqrt(q)
    phi = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
    inner = lambda z1: mpmath.quad(lambda z2: phi(z2) * f(r * (rho * z1 + s * z2)), [-14, -1, 0, 1, 14])  # noqa: E731
    return float(mpmath.quad(lambda z1: phi(z1) * f(r * z1) * inner(z1), [-14, -1 / r, 0, 1 / r, 14]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer variances and correlations")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    qs = (0.01, 1.0, 10.0) if args.quick else (0.01, 0.1, 1.0, 10.0, 100.0)
    rhos = (-0.99, 0.0, 0.999, 1.0) if args.quick else (-1.0, -0.99, -0.5, 0.0, 0.5, 0.9, 0.999, 1.0)
    results = {}
    cases = [(name, f, df, ()) for name, (f, df, _) in SMOOTH.items()] + [(n, f, None, k) for n, (f, k) in KINKED.items()]
    for name, f, df, kinks in cases:
        worst_in, worst_out = 0.0, 0.0
        for q1 in qs:
            for q2 in (q1, q1 * 0.3):
                for rho in rhos:
                    c = rho * np.sqrt(q1 * q2)
                    pts = tuple(sorted({-1.0, 0.0, 1.0, *kinks}))
                    for a, b in ([(f, f)] + ([(df, df)] if df is not None else [])):
                        ref = reference(a, b, q1, q2, c, pts)
                        got = float(gaussian_expectation(a, b, q1, q2, c, kinks=kinks))
                        err = abs(got - ref) / (abs(ref) + np.sqrt(q1 * q2))
                        if 1e-2 <= min(q1, q2) and max(q1, q2) <= 10:
                            worst_in = max(worst_in, err)
                        else:
                            worst_out = max(worst_out, err)
        results[name] = {"worst_error_q_in_[1e-2,10]": worst_in, "worst_error_outside": worst_out}
        print(f"{name:20s} worst error, q in [1e-2, 10]: {worst_in:.1e}   outside (q = 1e-2·0.3 or 100): {worst_out:.1e}")
    # the reference itself against mpmath at 30 digits
    spot = []
    for name in ("tanh", "softplus"):
        f, _, fm = SMOOTH[name]
        for q, rho in ((1.0, 0.5), (10.0, 0.999)):
            ref = reference(f, f, q, q, rho * q)
            spot.append(abs(ref - mp_reference(fm, q, rho)) / (abs(ref) + q))
    print(f"reference vs mpmath (30 digits), worst: {max(spot):.1e}")
    results["reference_vs_mpmath"] = max(spot)
    # cost per kernel entry (median of 3 runs over 20 000 random entries)
    rng = np.random.default_rng(0)
    n = 20_000
    q1, q2 = rng.uniform(0.1, 10, n), rng.uniform(0.1, 10, n)
    c = rng.uniform(-1, 1, n) * np.sqrt(q1 * q2)
    def dtanh(x):
        return 1.0 - np.tanh(x) ** 2

    def median_time(fn):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    per_entry = median_time(lambda: gaussian_expectation(np.tanh, np.tanh, q1, q2, c)) / n
    both = median_time(lambda: gaussian_expectations(((np.tanh, np.tanh), (dtanh, dtanh)), q1, q2, c)) / n
    print(f"cost: {per_entry * 1e6:.1f} µs per kernel entry (tanh, K only); K and K̇ together on shared nodes "
          f"(what a layer computes): {both * 1e6:.1f} µs")
    results["microseconds_per_entry"] = per_entry * 1e6
    results["microseconds_per_entry_k_and_kdot"] = both * 1e6
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
