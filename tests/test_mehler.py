"""Numerical duals by Mehler series (ntkdsl/arraycode/mehler.py) against independent references:
a table of 25-digit mpmath expectations at random (q1, q2, c) (variances 1e-6…1e6, ρ → ±1 and ρ = ±1
exactly; made by benchmarks/numerical_duals.py, which shares no code with ntkdsl), scipy's adaptive
quadrature for kinked functions, and exact identities (the diagonal, zero variance, symmetry)."""

import os

import numpy as np
import pytest

import ntkdsl
from ntkdsl.arraycode.mehler import (
    MEHLER_TOLERANCE,
    mehler_coefficients,
    mehler_expectations,
)
from tests.oracles import MEHLER_FUNCTIONS, gauss_expectation, mehler_table_rows

# The documented bound (docs/numerical-duals.md): truncation ≤ MEHLER_TOLERANCE = 1e-10 per entry
# plus the 1-D coefficient quadratures (~1e-13) and the fallback quadrature (~1e-13 measured), all
# relative to the Cauchy–Schwarz scale √(E[σ(u)²]·E[σ(v)²]); 1e-9 leaves a factor 10 of margin.
BOUND = 1e-9


FUNCTIONS = MEHLER_FUNCTIONS
_rows = mehler_table_rows


def test_entries_match_mpmath_at_random_variances_and_correlations():
    rows = _rows()
    assert {r["sigma"] for r in rows} == set(FUNCTIONS) and len(rows) >= 60
    for name, f in FUNCTIONS.items():
        rs = [r for r in rows if r["sigma"] == name]
        got = mehler_expectations(((f, f),), *(np.array([r[k] for r in rs]) for k in ("q1", "q2", "c")))[0]
        for r, value in zip(rs, got):
            assert r["check"] < 1e-12  # the reference converged (12 vs 16 nodes a panel)
            assert abs(value - r["value"]) <= BOUND * r["scale"], (name, r, value)


def test_kernel_blocks_agree_with_single_entries_and_are_symmetric():
    """A kernel (column/row variances, as generated modules call it) equals entry-by-entry evaluation
    (different blocks, degrees and fallback batches), and K(x, x') == K(x', x) exactly."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 5))
    x[7] = x[3]  # duplicate inputs: ρ = 1 with equal variances off the diagonal
    x[9] = 0.0  # zero norm
    q = np.sum(x * x, 1) / 5 * 4
    c = x @ x.T / 5 * 4
    c = (c + c.T) / 2
    np.fill_diagonal(c, q)
    pairs = ((np.tanh, np.tanh), (FUNCTIONS["dtanh"], FUNCTIONS["dtanh"]))
    k, kdot = mehler_expectations(pairs, q[:, None], q[None, :], c)
    assert np.array_equal(k, k.T) and np.array_equal(kdot, kdot.T)
    i, j = np.triu_indices(40)
    single = mehler_expectations(pairs, q[i], q[j], c[i, j])
    # series of different degrees (blocks choose theirs) both within the bound: ≤ 2·bound apart
    np.testing.assert_allclose(k[i, j], single[0], rtol=0, atol=2 * BOUND)
    np.testing.assert_allclose(kdot[i, j], single[1], rtol=0, atol=2 * BOUND)
    assert k[9, 9] == np.tanh(0.0) ** 2 and kdot[9, 9] == 1.0  # zero variance: σ(0)σ(0) exactly


def test_kinked_functions_against_scipy():
    """Kinks slow the coefficients' decay (more entries fall back); both paths stay within bound."""
    relu_tanh, shifted_abs = (lambda x: np.maximum(x, 0) + np.tanh(x), (0.0,)), (lambda x: np.abs(x - 0.5), (0.5,))
    cases = [(relu_tanh, (0.5, 0.5, 0.97)), (relu_tanh, (4.0, 4.0, 0.9999)),  # series, then the fallback
             (shifted_abs, (1.0, 2.0, 0.3)), (shifted_abs, (10.0, 3.0, -0.6))]
    for (f, kinks), (q1, q2, rho) in cases:
        if True:
            c = rho * np.sqrt(q1 * q2)
            got = mehler_expectations(((f, f),), q1, q2, c, kinks)[0]
            ref = gauss_expectation(f, f, q1, q2, rho, points=tuple(sorted({-1.0, 0.0, 1.0, *kinks})))
            scale = np.sqrt(gauss_expectation(f, f, q1, q1, 1.0, kinks) * gauss_expectation(f, f, q2, q2, 1.0, kinks))
            assert abs(got - ref) <= BOUND * scale, (q1, q2, rho, got, ref)


def test_truncation_bound_holds_for_the_series_alone():
    """Parseval: the tail bound |ρ|^(L+1)·√(T1·T2) dominates the true remainder, computed against
    the mpmath table (entries away from the fallback region)."""
    rows = [r for r in _rows() if r["sigma"] == "tanh" and abs(r["c"]) < 0.9 * np.sqrt(r["q1"] * r["q2"])]
    assert rows
    for r in rows:
        q = np.array([r["q1"], r["q2"]])
        coef, logtail, _, _ = mehler_coefficients([np.tanh], ((np.tanh, np.tanh),), q, (), degree=16)
        rho = r["c"] / np.sqrt(r["q1"] * r["q2"])
        series = sum(coef[0][l, 0] * coef[0][l, 1] * rho**l for l in range(17))
        bound = abs(rho) ** 17 * np.exp(logtail[0][16, 0] + logtail[0][16, 1]) * r["scale"]
        assert abs(series - r["value"]) <= bound + 1e-13 * r["scale"], r  # 1e-13: coefficient quadrature


def test_generated_module_uses_the_series_and_stays_exact_on_its_diagonal():
    net = ntkdsl.loads("network n(input = 3) { dense(6, b_std = 0.1); silu; dense(1) }")
    assert "mehler_expectations(((_sigma_0, _sigma_0), (_sigma_1, _sigma_1),)" in net.to_python()
    x = np.random.default_rng(0).normal(size=(6, 3)) * 30
    k = net.kernels(x)
    assert np.all(np.isfinite(k.nngp)) and np.array_equal(k.nngp, k.nngp.T)
    assert MEHLER_TOLERANCE <= BOUND


@pytest.mark.slow
def test_table_reproduces_from_mpmath():
    """Recompute a few rows of the table with the benchmark's mpmath integrator (≈10 s each)."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from numerical_duals import MP, mp_expectation

    for r in _rows()[::20]:
        f = MP[r["sigma"]]
        assert abs(mp_expectation(f, f, r["q1"], r["q2"], r["c"]) - r["value"]) <= 1e-14 * r["scale"]


def test_infinite_expectations_are_refused_finite_ones_integrate():
    """E[exp(u²)·exp(v²)] = ((1 − 2q1)(1 − 2q2) − 4c²)^(−1/2) for q < 1/4 (Gaussian integral of a
    quadratic form); infinite for q ≥ 1/4: a FloatingPointError naming the variance, never a number."""
    f = lambda x: np.exp(x * x)
    q1, q2, c = 0.05, 0.08, 0.03
    exact = ((1 - 2 * q1) * (1 - 2 * q2) - 4 * c * c) ** -0.5
    assert abs(mehler_expectations(((f, f),), q1, q2, c)[0] - exact) <= BOUND * exact
    with pytest.raises(FloatingPointError, match="variance 0.3"):
        mehler_expectations(((f, f),), np.array([0.05, 0.3]), np.array([0.05, 0.3]), np.array([0.01, 0.2]))
