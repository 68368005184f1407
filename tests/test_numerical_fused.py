"""Numerical duals on the fused numba path (ntkdsl/codegen/mehler_fused.py and fused.py) against
independent references: the 25-digit mpmath table of tests/data/numerical_duals_mpmath.json (random
(q1, q2, c) with variances 1e-6…1e6, ρ → ±1 and ρ = ±1 exactly; made by
benchmarks/numerical_duals.py, which shares no code with ntkdsl), the NumPy path (same series, same
fallback quadrature), and the invariants (exact symmetry and diagonal, one compile per structure)."""

import math

import numpy as np
import pytest

import ntkdsl
from ntkdsl.arraycode import mehler
from ntkdsl.codegen.fused import fusable
from ntkdsl.codegen.mehler_fused import mehler_points, scalar_source
from shared import needs_numba, numba_compilations
from tests.oracles import MEHLER_FUNCTIONS, mehler_table_rows

pytestmark = needs_numba

# The documented bound (docs/numerical-duals.md): series truncation ≤ MEHLER_TOLERANCE = 1e-10 plus the
# coefficient and fallback quadratures (~1e-13), relative to √(E[σ(u)²]·E[σ(v)²]); 1e-9 leaves a factor 10.
BOUND = 1e-9
# Fused against NumPy: the same coefficients, degrees and Horner order (bit for bit on the same (q1, q2, c),
# test_series_in_the_loop_is_the_numpy_series); the paths' Gram matrices differ in rounding (syrk or dot
# products against GEMM), ~1e-16 relative, which a few layers of kernel maps amplify to ~1e-15; a degree that
# the bound chooses differently for so perturbed inputs moves an entry by less than the series' own truncation
# (≤ 1e-10 of the scale) — none does on these inputs, so 1e-13 of the entry's scale is the agreement stated.
AGREE = 1e-13


FUNCTIONS = MEHLER_FUNCTIONS
_rows = mehler_table_rows


@pytest.fixture(scope="module")
def compiled():
    """mehler_rho and mehler_series as a fused module compiles them, with a loop over entries."""
    import numba

    space = {"numba": numba, "math": math, "FASTMATH": False, "MEHLER_DEGREES": mehler.MEHLER_DEGREES,
             "MEHLER_TOLERANCE": mehler.MEHLER_TOLERANCE}
    exec(scalar_source().replace("cache=True", "cache=False"), space)  # noqa: S102 - the module's own text
    rho_of, series = space["mehler_rho"], space["mehler_series"]

    @numba.njit
    def entries(q1, q2, c, rows, cols, flags, out):
        for n in range(c.size):
            rho, log, diagonal = rho_of(q1[n], q2[n], c[n])
            out[n] = series(rho, log, diagonal, rows, cols, n, n, 0, flags)

    return entries


def test_series_in_the_loop_is_the_numpy_series(compiled, monkeypatch):
    """Entry by entry, the compiled series equals mehler_expectations' bit for bit, and it flags
    exactly the entries that mehler_expectations integrates by its fallback quadrature; the entries
    are the table's (all six σ, ρ → ±1, ρ = ±1, exact diagonals) and a kernel of varied inputs."""
    integrated = []
    fallback = mehler._fallback
    monkeypatch.setattr(mehler, "_fallback", lambda pairs, q1, q2, c, kinks: integrated.append(c.size) or fallback(pairs, q1, q2, c, kinks))
    rows = _rows()
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 4)) * 10 ** rng.uniform(-3, 3, size=(30, 1))
    x[4], x[6] = x[2], 0.0  # duplicate inputs (ρ = 1 off the diagonal), a zero-norm input
    i, j = np.triu_indices(30)
    gram = x @ x.T / 4
    q = np.diag(gram).copy()
    cases = [(name, *(np.array([r[k] for r in rows if r["sigma"] == name]) for k in ("q1", "q2", "c"))) for name in FUNCTIONS]
    cases += [("tanh", q[i], q[j], gram[i, j]), ("softplus", q[i], q[j], gram[i, j])]
    flagged = 0
    for name, q1, q2, c in cases:
        f = FUNCTIONS[name]
        integrated.clear()
        want = mehler.mehler_expectations(((f, f),), q1, q2, c)[0]
        stack_rows, stack_cols = mehler_points(((f, f),), q1, q2, q1.size, q2.size)
        flags, got = np.zeros((c.size, c.size), np.uint8), np.empty(c.size)
        compiled(q1, q2, c, stack_rows, stack_cols, flags, got)
        bad = np.diag(flags) == 1
        assert bad.sum() == sum(integrated), name  # the same entries go to the quadrature
        np.testing.assert_array_equal(got[~bad], want[~bad])
        flagged += bad.sum()
    assert flagged > 0  # the fallback was exercised


def _probe(sigma):
    return ntkdsl.loads(f"network probe_{sigma}(input = 2) {{ dense(1); {sigma}; dense(1) }}")  # σ_w = 1, no bias


def _realize(q1, q2, c):
    """Inputs x1, x2 in R² with x1·x1/2 = q1, x2·x2/2 = q2, x1·x2/2 = c (to rounding)."""
    rho = np.clip(c / np.sqrt(q1 * q2), -1, 1)
    x1 = np.stack([np.sqrt(2 * q1), 0 * q1], axis=1)
    x2 = np.sqrt(2 * q2)[:, None] * np.stack([rho, np.sqrt(1 - rho * rho)], axis=1)
    return x1, x2


@pytest.mark.parametrize("sigma", ["tanh", "silu", "softplus"])
def test_fused_kernels_match_mpmath(sigma):
    """The table's entries as kernels Σ(x1, x2) = E[σ(u)σ(v)] of `dense(1); σ; dense(1)` on the fused path,
    entries that no series degree covers integrated after the loop: within the bound of mpmath."""
    rows = [r for r in _rows() if r["sigma"] == sigma]  # all variances: σ' prints overflow-safe (algebra/stable.py)
    q1, q2, c = (np.array([r[k] for r in rows]) for k in ("q1", "q2", "c"))
    net = _probe(sigma)
    assert fusable(net.program) is None
    x1, x2 = _realize(q1, q2, c)
    same = np.array([r["q1"] == r["q2"] == r["c"] for r in rows])
    x2[same] = x1[same]  # the exact diagonals: identical inputs
    module = net._backend_module("numba")
    refilled = []
    refill = module._refill
    module._refill = lambda at, *args: refilled.append(at[0].size) or refill(at, *args)
    try:
        got = np.diag(net.kernels(x1, x2, backend="numba").nngp)
    finally:
        module._refill = refill
    for r, value in zip(rows, got):
        assert abs(value - r["value"]) <= BOUND * r["scale"], (r, value)
    assert sum(refilled) > 0  # some entries went through the fallback quadrature


NETWORKS = {  # three numerical layers; composed σ: tanh∘relu (a kink) and softplus∘tanh
    "mixed": "dense(8, w_std = 1.4, b_std = 0.1); tanh; dense(8, w_std = 1.1); softplus; dense(8, w_std = 1.2); silu; dense(1)",
    "composed": "dense(8, w_std = 1.2, b_std = 0.1); relu; tanh; dense(8, w_std = 1.3); tanh; softplus; dense(1)",
}


@pytest.fixture(scope="module")
def points():
    """Inputs whose variances span 1e-6…1e6, with a duplicate and a zero-norm input."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(24, 3)) * 10 ** rng.uniform(-3, 3, size=(24, 1))
    x[5], x[9] = x[1], 0.0
    return x, rng.normal(size=(7, 3)) * 10 ** rng.uniform(-3, 3, size=(7, 1))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_fused_path_agrees_with_numpy_path(name, points):
    """Self and cross kernels on both paths: within AGREE of each entry's Cauchy–Schwarz scale,
    the fused self-kernel exactly symmetric with the NumPy path's diagonal, bit for bit."""
    net = ntkdsl.loads(f"network {name}(input = 3) {{ {NETWORKS[name]} }}")
    assert fusable(net.program) is None
    x, x2 = points
    want, got = net.kernels(x, backend="numpy"), net.kernels(x, backend="numba")
    for a, b in ((want.nngp, got.nngp), (want.ntk, got.ntk)):
        scale = np.sqrt(np.outer(np.diag(a), np.diag(a)))
        assert np.all(np.abs(a - b) <= AGREE * scale)
        np.testing.assert_array_equal(b, b.T)
        np.testing.assert_array_equal(np.diag(b), np.diag(a))
    cross_want, cross_got = net.kernels(x, x2, backend="numpy"), net.kernels(x, x2, backend="numba")
    diag2 = net.kernels(x2, backend="numpy")
    for a, b, d2 in ((cross_want.nngp, cross_got.nngp, diag2.nngp), (cross_want.ntk, cross_got.ntk, diag2.ntk)):
        scale = np.sqrt(np.outer(np.diag(want.nngp if a is cross_want.nngp else want.ntk), np.diag(d2)))
        assert np.all(np.abs(a - b) <= AGREE * scale) and np.all(np.isfinite(b))


def test_a_sweep_compiles_once(points, tmp_path, monkeypatch):
    """Run-time parameters (σ_w, σ_b of the dense layers) reach the fused numerical module at each
    call: one compile of its loops for three values, each point agreeing with the NumPy path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cold disk cache: the first point must compile
    base = ntkdsl.loads("network sweep_tanh(input = 3) { dense(8, w_std = 1.2, b_std = 0.1); tanh; dense(1, w_std = 1.2) }")
    x = points[0][:12]
    results = []
    with numba_compilations() as compiled:
        for w in (1.2, 1.6, 2.0):
            net = base.with_hyperparameters(w_std=w)
            got, want = net.kernels(x, backend="numba"), net.kernels(x, backend="numpy")
            scale = np.sqrt(np.outer(np.diag(want.ntk), np.diag(want.ntk)))
            assert np.all(np.abs(got.ntk - want.ntk) <= AGREE * scale)
            results.append(got.ntk)
    assert compiled.count("_fused_layers") == 1
    assert not np.allclose(results[0], results[1])  # the values did reach the kernels


def test_infinite_expectations_are_refused_as_on_the_numpy_path():
    """E[exp(u²)²] is infinite for q ≥ 1/4: the fused path raises NumPy's error, never a number."""
    net = ntkdsl.loads("activation blowup(x) = exp(x**2)\nnetwork b(input = 1) { dense(1); blowup; dense(1) }")
    x = np.array([[0.1], [2.0]])
    with pytest.raises(FloatingPointError, match="variance 4") as numpy_error:
        net.kernels(x, backend="numpy")
    with pytest.raises(FloatingPointError) as fused_error:
        net.kernels(x, backend="numba")
    assert str(fused_error.value) == str(numpy_error.value)
