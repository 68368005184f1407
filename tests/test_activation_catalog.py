"""Every closed-form activation row against independent oracles (kernel-math.md §3).

The tests iterate over the registry: a closed-form row without an entry in ``SETTINGS`` fails
``test_every_closed_form_row_has_settings``, so a new row cannot skip them. For each row and each of
its parameter settings (defaults plus at least one non-trivial setting):

* Price's theorem: the row's K̇ equals ∂K/∂c (the symbolic derivative, evaluated); for σ with jumps
  K̇ = 0 instead, and E[σ'σ'] (σ' without the Dirac deltas, as backpropagation sees it) is 0;
* 2-D quadrature of E[σ(u)σ(v)] and E[σ'(u)σ'(v)] (polar Gauss–Legendre, split at the kinks);
* Monte Carlo with 10⁶ samples, within 5 measured standard errors;
* the symbolic diagonal K(q, q, q) against the off-diagonal formula at c → q, and against 1-D
  quadrature of E[σ(u)²];
* finiteness at ρ = ±1 and at zero-norm inputs, where K(0, q, 0) = σ(0)·E[σ(v)] (the row's ``mean``,
  itself checked against quadrature);
* depth-20 networks compiled through ``ntkdsl.loads`` stay finite.

Everything numerical goes through :func:`evaluate_dual` / :func:`evaluate_sigma`, i.e. through the
code printer that generated modules use.
"""

import numpy as np
import pytest
import sympy as sp

import ntkdsl
from ntkdsl.activations import REGISTRY
from ntkdsl.activations.evaluate import _kwargs, evaluate_dual, evaluate_sigma
from ntkdsl.activations.registry import price_derivative
from ntkdsl.arraycode.printer import array_function

# Parameter settings per closed-form row: the defaults ({}) where every parameter has one, plus
# non-trivial values. Keep every value inside the row's domain of finiteness (gaussian: b < 1/(4q)).
SETTINGS = {
    "relu": [{}],
    "leaky_relu": [{}, {"alpha": 0.3}, {"alpha": -1.5}],
    "abrelu": [{"a": -0.5, "b": 2.0}, {"a": 0.25, "b": -1.0}],
    "abs": [{}],
    "step": [{}],
    "rectified_monomial": [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 5}],
    "erf": [{}, {"a": 2.0, "b": 0.5, "c": 0.3}],
    "sigmoid_like": [{}],
    "sign": [{}],
    "gelu": [{}],
    "sin": [{}, {"a": 1.5, "b": 0.7, "c": 0.4}],
    "cos": [{}, {"a": 0.8, "b": 1.3, "c": -0.3}],
    "rbf": [{}, {"gamma": 0.3}],
    "exp": [{}, {"a": 0.5, "b": -0.6}],
    "gaussian": [{}, {"a": 2.0, "b": 0.05}],
    "gabor": [{}],
    "monomial": [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}],
    "polynomial": [{"coefficients": (0.5, -1.0, 0.3)}, {"coefficients": (0.2, 0.0, -0.4, 0.0, 0.1)},
                   {"coefficients": (1.0,)}],
    "hermite": [{"k": 0}, {"k": 1}, {"k": 3}, {"k": 4}],
    "elu": [{}, {"alpha": 0.5}, {"alpha": 2.5}],
    "selu": [{}],
}

CLOSED = sorted(row.name for row in REGISTRY if row.exact)

# (q1, q2, ρ) in the interior: equal and unequal variances, zero, moderate and strong correlations
POINTS = [(1.0, 1.0, 0.0), (0.5, 2.0, 0.5), (2.0, 0.7, -0.9), (1.3, 1.3, 0.95)]
MC_POINTS = [(0.5, 2.0, 0.5), (2.0, 0.7, -0.9)]


def _cases(names):
    return [pytest.param(name, s, id=f"{name}-{i}") for name in names for i, s in enumerate(SETTINGS.get(name, []))]


def _sigma(name, params, derivative=False):
    return lambda x: evaluate_sigma(name, x, derivative, **params)


def _has_jump(name, params) -> bool:
    """The row says so, or σ jumps at one of its breakpoints (rectified_monomial(n = 0))."""
    row = REGISTRY.get(name)
    if row.jumps:
        return True
    for b in row.breakpoints:
        left, right = evaluate_sigma(name, [b - 1e-9, b + 1e-9], **params)
        if abs(right - left) > 1e-6:
            return True
    return False


def _symbolic_dual(name, params):
    """(K, K̇, ∂K/∂c) as functions of (q1, q2, c) through the code printer."""
    q1, q2 = sp.symbols("q1 q2", nonnegative=True)
    c = sp.Symbol("c", real=True)
    row = REGISTRY.get(name)
    k, kdot = row.dual(q1, q2, c, **_kwargs(row, params))
    return tuple(array_function(e, (q1, q2, c)) for e in (k, kdot, price_derivative(k, c)))


# ---------------------------------------------------------------- the oracles
_RADIAL = np.polynomial.legendre.leggauss(160)
_ANGULAR = np.polynomial.legendre.leggauss(48)
R_MAX = 12.0


def polar_expectation(f, q1, q2, rho):
    """(E[f(u)·f(v)], E[f(u)²], E[f(v)²]) for (u, v) ~ N(0, [[q1, c], [c, q2]]), c = ρ√(q1q2), by polar
    Gauss–Legendre quadrature (one evaluation of f on all nodes).

    With z = R(cos t, sin t) standard normal, u = √q1·R·cos t and v = √q2·R·cos(t − t0), cos t0 = ρ:
    the kink lines u = 0 and v = 0 of σ with breakpoints at 0 are rays t = ±π/2, t0 ± π/2, so splitting
    t at them leaves an integrand analytic in (R, t) on each sector, where Gauss–Legendre converges
    exponentially (160 radial nodes on [0, 12], e^{−72} beyond; 48 angular nodes per sector). Doubling
    both node counts changes no value in these tests by more than 4e-14 of its scale √(E[f²]E[g²]).
    """
    t0 = np.arccos(rho)
    cuts = {0.0, 2 * np.pi}
    for a in (np.pi / 2, 3 * np.pi / 2, t0 + np.pi / 2, t0 - np.pi / 2 + 2 * np.pi):
        cuts.add(a % (2 * np.pi))
    cuts = sorted(cuts)
    (xr, wr), (xt, wt) = _RADIAL, _ANGULAR
    R, wR = (xr + 1) / 2 * R_MAX, wr * R_MAX / 2
    t = np.concatenate([(xt + 1) / 2 * (b - a) + a for a, b in zip(cuts[:-1], cuts[1:]) if b - a > 1e-15])
    wT = np.concatenate([wt * (b - a) / 2 for a, b in zip(cuts[:-1], cuts[1:]) if b - a > 1e-15])
    rr, tt = np.meshgrid(R, t, indexing="ij")
    weights = np.outer(wR, wT) * rr * np.exp(-rr**2 / 2) / (2 * np.pi)
    u, v = np.sqrt(q1) * rr * np.cos(tt), np.sqrt(q2) * rr * np.cos(tt - t0)
    fu, fv = np.split(f(np.concatenate([u.ravel(), v.ravel()])), 2)
    w = weights.ravel()
    return w @ (fu * fv), w @ (fu * fu), w @ (fv * fv)


_LINE = np.polynomial.legendre.leggauss(400)


def line_expectation(f, q):
    """E[f(u)], u ~ N(0, q) (1-D oracle for means and diagonals): Gauss–Legendre on z ∈ [−13, 0] and
    [0, 13] (split at the kinks, φ(13) ~ 1e-37), exponentially convergent on each analytic half."""
    x, w = _LINE
    z = np.concatenate([(x - 1) / 2 * 13, (x + 1) / 2 * 13])
    weights = np.concatenate([w, w]) * 13 / 2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    return float(weights @ f(np.sqrt(q) * z))


@pytest.fixture(scope="module")
def normal_samples():
    """One set of 10⁶ standard normal pairs, reused by every Monte Carlo check (seeded)."""
    return np.random.default_rng(20250601).standard_normal((2, 10**6))


# ---------------------------------------------------------------- the tests
def test_every_closed_form_row_has_settings():
    missing = [name for name in CLOSED if not SETTINGS.get(name)]
    assert not missing, f"closed-form rows without parameter settings in SETTINGS: {missing}"
    stale = sorted(set(SETTINGS) - set(CLOSED))
    assert not stale, f"SETTINGS names rows that are not closed-form registry rows: {stale}"
    for name in CLOSED:  # the defaults are tested wherever every parameter has one
        row = REGISTRY.get(name)
        if row.variadic is None and all(p.default is not None for p in row.params):
            assert {} in SETTINGS[name], name
        # word parameters that leave the closed form (gelu(approximate = tanh): a numerical dual) are
        # tested against their own oracles (tests/test_gelu_approximate.py), not here
        if row.variadic or any(p.name not in dict(row.closed_form_when or ()) for p in row.params):
            assert len(SETTINGS[name]) >= 2, f"{name}: add a non-trivial parameter setting"
        assert row.citation, name
        assert row.breakpoints or not row.jumps, f"{name}: a row with jumps names them in breakpoints"


@pytest.mark.parametrize("name, params", _cases(CLOSED))
def test_price_theorem_and_quadrature(name, params):
    k_fn, kdot_fn, dk_fn = _symbolic_dual(name, params)
    sigma, dsigma = _sigma(name, params), _sigma(name, params, derivative=True)
    q1, q2, rho = (np.array(v) for v in zip(*POINTS))
    c = rho * np.sqrt(q1 * q2)
    k, kdot = evaluate_dual(name, q1, q2, c, **params)
    np.testing.assert_array_equal(k, k_fn(q1, q2, c) + 0 * q1)  # evaluate_dual is the printer path
    jump = _has_jump(name, params)
    if jump:
        assert np.all(kdot == 0), "σ with a jump: K̇ := 0 (kernel-math.md §3)"
    else:
        # Price's theorem: the row's K̇ is ∂K/∂c (sympy's derivative of the row's K), an exact identity
        # up to float64 round-off: measured ≤ 1.1e-11 relative (cancellation in rectified_monomial(5)
        # at ρ = −0.9), so the bound is 1e-12 of the Cauchy–Schwarz scale √(K̇(q1, q1, q1)·K̇(q2, q2, q2))
        # plus 1e-10 relative
        dscale = np.sqrt(evaluate_dual(name, q1, q1, q1, **params)[1] * evaluate_dual(name, q2, q2, q2, **params)[1])
        np.testing.assert_array_less(np.abs(kdot - dk_fn(q1, q2, c)), 1e-12 * dscale + 1e-10 * np.abs(kdot) + 1e-300)
    for i, (a, b, r) in enumerate(POINTS):
        for f, value in ((sigma, k[i]), (dsigma, kdot[i])):
            expected, fu2, fv2 = polar_expectation(f, a, b, r)
            scale = np.sqrt(fu2 * fv2)  # Cauchy–Schwarz scale of E[f(u)f(v)]
            # measured: quadrature converged to 4e-14·scale, closed forms agree to 4e-14·scale
            # (Owen's-T sums of ELU/SELU included); σ' = 0 a.e. for jumps makes both sides exactly 0
            assert abs(value - expected) <= 1e-12 * scale, (f is dsigma, a, b, r, value, expected, scale)
            if jump and f is dsigma:
                assert expected == 0.0 and value == 0.0


@pytest.mark.parametrize("name, params", _cases(CLOSED))
def test_monte_carlo(name, params, normal_samples):
    z1, z2 = normal_samples
    n = z1.size
    for q1, q2, rho in MC_POINTS:
        u = np.sqrt(q1) * z1
        v = np.sqrt(q2) * (rho * z1 + np.sqrt(1 - rho**2) * z2)
        k, kdot = evaluate_dual(name, q1, q2, rho * np.sqrt(q1 * q2), **params)
        for derivative, value in ((False, k), (True, kdot)):
            both = evaluate_sigma(name, np.concatenate([u, v]), derivative, **params)
            prod = both[:n] * both[n:]
            mean, se = prod.mean(), prod.std() / np.sqrt(n)
            # 5 standard errors: a false alarm has probability ~6e-7 per comparison (fixed seed anyway)
            assert abs(value - mean) <= 5 * se + 1e-12, (derivative, q1, q2, rho, value, mean, se)


@pytest.mark.parametrize("name, params", _cases(CLOSED))
def test_diagonal_form(name, params):
    row = REGISTRY.get(name)
    q = sp.Symbol("q", nonnegative=True)
    diag = array_function(row.nngp(q, q, q, **_kwargs(row, params)), (q,))
    sigma = _sigma(name, params)
    qs = np.array([1e-3, 0.7, 2.0])
    d = diag(qs) + 0 * qs
    exact, _ = evaluate_dual(name, qs, qs, qs, **params)  # the off-diagonal formula at ρ = 1 exactly
    near, _ = evaluate_dual(name, qs, qs, qs * (1 - 1e-12), **params)
    np.testing.assert_allclose(d, exact, rtol=1e-10, atol=1e-14)
    # at ρ = 1 − 1e-12 kinked σ move by O(√1e-12) (sin θ ~ 1.4e-6), smooth ones by O(1e-12)
    np.testing.assert_allclose(d, near, rtol=1e-5, atol=1e-12)
    for qv, dv in zip(qs, d):
        assert dv == pytest.approx(line_expectation(lambda x: sigma(x) ** 2, qv), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("name, params", _cases(CLOSED))
def test_extremes_are_finite_and_zero_norm_exact(name, params):
    row = REGISTRY.get(name)
    q1 = np.array([1.0, 1.0, 2.0, 0.5, 0.0, 1.5, 0.0])
    q2 = np.array([1.0, 1.0, 0.5, 2.0, 1.5, 0.0, 0.0])
    rho = np.array([1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 0.0])
    c = rho * np.sqrt(q1 * q2)
    k, kdot = evaluate_dual(name, q1, q2, c, **params)
    assert np.all(np.isfinite(k)) and np.all(np.isfinite(kdot)), (k, kdot)
    # ρ = ±1 is the limit of the interior (continuity through the clamps); at ρ = ±(1 − 1e-12),
    # sin θ ≈ 1.4e-6, and kernels of σ with kinks or jumps move by O(sin θ) (e.g. step: θ/(2π) = 2.3e-7)
    inner = np.sign(rho[:4]) * (1 - 1e-12)
    k_in, _ = evaluate_dual(name, q1[:4], q2[:4], inner * np.sqrt(q1[:4] * q2[:4]), **params)
    np.testing.assert_allclose(k[:4], k_in, rtol=1e-5, atol=1e-6)
    # a zero-norm input is u = 0: K(0, q, 0) = σ(0)·E[σ(v)] and K(0, 0, 0) = σ(0)²
    s0 = float(evaluate_sigma(name, 0.0, **params))
    q = sp.Symbol("q", nonnegative=True)
    assert row.mean is not None, f"{name}: give the row its mean E[σ(u)]"
    mean = array_function(row.mean(q, **_kwargs(row, params)), (q,))
    assert k[4] == pytest.approx(s0 * mean(1.5), rel=1e-12, abs=1e-15)
    assert k[5] == pytest.approx(s0 * mean(1.5), rel=1e-12, abs=1e-15)
    assert k[6] == pytest.approx(s0**2, rel=1e-12, abs=1e-15)
    diag = array_function(row.nngp(q, q, q, **_kwargs(row, params)), (q,))
    assert diag(0.0) == pytest.approx(s0**2, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name, params", _cases(CLOSED))
def test_mean(name, params):
    row = REGISTRY.get(name)
    q = sp.Symbol("q", nonnegative=True)
    mean = array_function(row.mean(q, **_kwargs(row, params)), (q,))
    sigma = _sigma(name, params)
    for qv in (0.3, 1.7):
        assert mean(qv) == pytest.approx(line_expectation(sigma, qv), rel=1e-10, abs=1e-13)


def test_owens_t_and_angle_functions():
    """The special functions of the ELU dual: values, exact derivatives (fdiff), printing."""
    from scipy.special import owens_t

    from ntkdsl.arraycode.printer import ArrayPrinter
    from ntkdsl.algebra.functions import cos_angle, sin_angle
    from ntkdsl.algebra.special import owens_t_angle

    h, phi, c, p = sp.symbols("h phi c p", real=True)
    assert owens_t_angle(0, phi) == phi / (2 * sp.pi) and owens_t_angle(h, 0) == 0
    assert "xps.owens_t(" in ArrayPrinter().doprint(owens_t_angle(h, phi))
    at = {h: 0.7, phi: -0.4, c: 0.3, p: 2.0}
    f = array_function(owens_t_angle(h, phi), (h, phi))
    assert f(0.7, -0.4) == pytest.approx(owens_t(0.7, np.tan(-0.4)), rel=1e-15)
    assert float(owens_t_angle(sp.Float(0.7), sp.Float(-0.4)).evalf(30)) == pytest.approx(f(0.7, -0.4), rel=1e-14)
    assert f(0.0, np.pi / 2) == 0.25 and f(1.0, np.pi / 2) == pytest.approx(owens_t(1.0, np.inf), rel=1e-15)
    g = array_function(cos_angle(c, p) + 2 * sin_angle(c, p), (c, p))
    assert g(0.3, 2.0) == pytest.approx((0.3 + 2 * np.sqrt(2.0 - 0.09)) / np.sqrt(2.0), rel=1e-15)
    assert g(0.0, 0.0) == 1.0  # a zero-norm input reads as ρ = 1 (θ = 0), never 0/0
    step = 1e-6  # central differences: truncation O(step²) ~ 1e-12, round-off O(1e-16/step) ~ 1e-10
    for expr, args in ((owens_t_angle(h, phi), (h, phi)), (cos_angle(c, p), (c, p)), (sin_angle(c, p), (c, p))):
        fn = array_function(expr, args)
        point = [at[a] for a in args]
        for i, a in enumerate(args):
            d = array_function(sp.diff(expr, a), args)(*point)
            up, down = list(point), list(point)
            up[i] += step
            down[i] -= step
            assert d == pytest.approx((fn(*up) - fn(*down)) / (2 * step), rel=1e-8, abs=1e-10), (expr, a)


@pytest.mark.parametrize("name, params", _cases(CLOSED))
def test_symmetric_bit_for_bit(name, params):
    """K(q1, q2, c) == K(q2, q1, c) exactly, so that self-kernels are exactly symmetric matrices."""
    rng = np.random.default_rng(11)
    q1, q2 = rng.uniform(0.01, 2.0, 500), rng.uniform(0.01, 2.0, 500)
    c = rng.uniform(-1, 1, 500) * np.sqrt(q1 * q2)
    for a, b in zip(evaluate_dual(name, q1, q2, c, **params), evaluate_dual(name, q2, q1, c, **params)):
        np.testing.assert_array_equal(a, b)


# depth-20 stacks: weight scales that keep each recursion bounded (polynomial and exponential
# activations overflow float64 otherwise — their exact kernels grow like q^(n^L) or e^{e^{...}})
DEEP = {"exp": 0.3, "monomial": 0.5, "rectified_monomial": 0.6, "polynomial": 0.5, "hermite": 0.5,
        "gaussian": 1.0, "selu": 1.0}
DEEP_PARAMS = {"rectified_monomial": {"n": 2}, "monomial": {"n": 2}, "hermite": {"k": 3}}


def _ntk_call(name, params):
    if "coefficients" in params:
        return f"{name}({', '.join(str(a) for a in params['coefficients'])})"
    if not params:
        return name
    return f"{name}({', '.join(f'{k} = {v}' for k, v in params.items())})"


@pytest.mark.parametrize("name", CLOSED)
def test_deep_stacks_stay_finite(name):
    params = DEEP_PARAMS.get(name, SETTINGS[name][0])
    w = DEEP.get(name, 1.4)
    net = ntkdsl.loads(f"network deep(input = 3) {{ repeat 20 {{ dense(4, w_std = {w}, b_std = 0.1); "
                       f"{_ntk_call(name, params)} }}; dense(1) }}")
    x = np.random.default_rng(5).normal(size=(4, 3)) * 0.8
    x[3] = 0.0  # a zero-norm input (the bias keeps its variance positive after the first layer)
    k = net.kernels(x)
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    assert np.array_equal(k.nngp, k.nngp.T)
