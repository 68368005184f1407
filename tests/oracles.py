"""Independent numerical oracles shared by the tests (no ntkdsl code inside)."""

import json
import os

import numpy as np
from scipy import integrate


def gauss_expectation(f, g, q1, q2, rho, points=(0.0,)):
    """E[f(u)·g(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]) with c = ρ√(q1q2), by nested adaptive quadrature.

    u = √q1·z1, v = √q2·(ρ·z1 + √(1 − ρ²)·z2); σ's special points (kinks, jumps, the centre of its
    transition) become breakpoints of both integrals. Accurate to ~1e-12 for the functions tested.
    """
    r1, r2 = np.sqrt(q1), np.sqrt(q2)
    s = r2 * np.sqrt(max(1 - rho**2, 0.0))
    phi = lambda z: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731

    def inner(z1):
        mu = r2 * rho * z1
        if s == 0:
            return g(mu)
        pts = [(t - mu) / s for t in points if -12 < (t - mu) / s < 12]
        return integrate.quad(lambda z2: phi(z2) * g(mu + s * z2), -12, 12, points=pts or None,
                              epsabs=1e-15, epsrel=1e-13, limit=400)[0]

    pts = [t / r1 for t in points if r1 > 0 and -12 < t / r1 < 12]
    return integrate.quad(lambda z1: phi(z1) * f(r1 * z1) * inner(z1), -12, 12, points=pts or None,
                          epsabs=1e-15, epsrel=1e-13, limit=400)[0]


def fd_jacobian(fnet, x, h=1e-5):
    """∂f/∂θ of a finite network by central differences over its flat parameter vector, (N, k, P).

    Uses only ``flat_params``/``set_flat_params``/``apply`` (the parameters are restored afterwards).
    With h = 1e-5 and O(1) derivatives the truncation error h²·|f'''|/6 and the round-off
    eps·|f|/h are both ≈ 2e-11.
    """
    theta = fnet.flat_params()
    cols = []
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        fnet.set_flat_params(theta + e)
        plus = fnet.apply(x)
        fnet.set_flat_params(theta - e)
        minus = fnet.apply(x)
        cols.append((plus - minus) / (2 * h))
    fnet.set_flat_params(theta)
    return np.stack(cols, axis=-1)


# ---------------------------------------------------------------- the numerical duals' mpmath table
MEHLER_TABLE = os.path.join(os.path.dirname(__file__), "data", "numerical_duals_mpmath.json")


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))


# σ and σ' of the table's activations, in forms exact to rounding at every argument
MEHLER_FUNCTIONS = {
    "tanh": np.tanh, "dtanh": lambda x: 1 - np.tanh(x) ** 2,
    "silu": lambda x: x * _sigmoid(x), "dsilu": lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),
    "softplus": lambda x: np.logaddexp(0, x), "dsoftplus": _sigmoid,
}


def mehler_table_rows():
    """The rows of tests/data/numerical_duals_mpmath.json (25-digit references of E[f(u)g(v)])."""
    with open(MEHLER_TABLE) as fh:
        return json.load(fh)["rows"]


def flow_map(train, cross, t, learning_rate=1.0):
    """A with f_t(x*) = A·y for gradient flow on the squared loss (kernel-math.md §4; Lee et al. 2019, eq. 16):
    A = K(x*, X) K⁻¹ (I − e^{−ηKt/N}), and K(x*, X) K⁻¹ at t = ∞; by numpy's solve and scipy's expm."""
    from scipy.linalg import expm

    if np.isinf(t):
        return np.linalg.solve(train, cross.T).T
    n = len(train)
    return cross @ np.linalg.solve(train, np.eye(n) - expm(-learning_rate / n * t * train))


def flow_ensemble_cov(a, nngp_train, nngp_cross, nngp_test):
    """The ensemble's covariance over initialisations at the map ``a`` (Lee et al. 2019, eq. 16):
    Σ(x*, x*) + A Σ Aᵀ − A Σ(X, x*) − Σ(x*, X) Aᵀ."""
    return nngp_test + a @ nngp_train @ a.T - a @ nngp_cross.T - nngp_cross @ a.T
