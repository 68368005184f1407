"""ntkdsl's NNGP and NTK kernels against oracles that share no code with it (kernel-math.md §1–3, 5, 6).

1. A hand-written NumPy recursion (arc-cosine dual for ReLU, Cho & Saul 2009, θ = arccos ρ;
   arcsin dual for erf, Williams 1997; dense layers per §2 in both parameterizations), and a
   scalar mpmath copy of it for inputs whose squares leave float64's range.
2. Monte Carlo over random finite networks written here with NumPy (§5): empirical NNGP as the
   mean of f(x)·f(x') over draws and output units, empirical NTK by the per-layer factorisation.
3. The analytic values of Jacot et al. (2018), Fig. 1 (§6).
4. Properties: exact symmetry, PSD, transpose and diagonal consistency, zero-norm, anti-parallel
   and extreme-scale inputs.

Nothing here imports ntkdsl internals: the networks go in as .ntk text, the kernels come out of
``CompiledNetwork.kernels``.
"""

from functools import lru_cache
from pathlib import Path

import mpmath
import numpy as np
import pytest
from scipy.special import erf as sp_erf

import ntkdsl

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# ---------------------------------------------------------------------------------------------
# Network descriptions: one tuple list feeds both the .ntk text and the reference recursions.
#   ("dense", width, w_std, b_std or None) | ("relu",) | ("erf", a, b, c) | ("identity",)
# ---------------------------------------------------------------------------------------------

ERF = ("erf", 1.0, 1.0, 0.0)
ERF_P = ("erf", 2.0, 0.5, 0.3)  # 2·erf(0.5·x) + 0.3
RELU = ("relu",)


def ntk_text(layers, d, param="ntk"):
    lines = [f"network t(input = {d}, parameterization = {param}) {{"]
    for layer in layers:
        kind = layer[0]
        if kind == "dense":
            _, width, w, b = layer
            lines.append(f"    dense({width}, w_std = {w!r}, b_std = {'none' if b is None else repr(b)})")
        elif kind == "erf":
            lines.append(f"    erf(a = {layer[1]!r}, b = {layer[2]!r}, c = {layer[3]!r})")
        else:
            lines.append(f"    {kind}")
    lines.append("}")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=None)
def _compile(text):
    return ntkdsl.loads(text)


def compiled(layers, d, param="ntk"):
    return _compile(ntk_text(tuple(layers), d, param))


def mlp(depth, act, bias, widths=(64, 7, 512, 13), w_std=1.5, identity=False):
    """depth × (dense, act) then a dense readout of width 1 (optionally a trailing identity)."""
    layers = []
    for i in range(depth):
        layers += [("dense", widths[i % len(widths)], w_std, bias), act]
    layers.append(("dense", 1, w_std, bias))
    if identity:
        layers.append(("identity",))
    return layers


# ---------------------------------------------------------------------------------------------
# 1. Reference recursion in NumPy (vectorised over all pairs)
# ---------------------------------------------------------------------------------------------


def _relu_dual(q1, q2, c, diag):
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009) and its derivative kernel, by θ = arccos ρ."""
    g = np.sqrt(q1 * q2)
    rho = np.where(g > 0, c / np.where(g > 0, g, 1.0), 0.0)  # a zero-norm point: any ρ, K = 0
    rho = np.clip(rho, -1.0, 1.0)
    rho[diag] = 1.0  # a point with itself: ρ = 1 exactly (arccos is not differentiable there)
    theta = np.arccos(rho)
    k = g / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    kdot = (np.pi - theta) / (2 * np.pi)
    return k, kdot


def _erf_dual(q1, q2, c, a, b, c0):
    """Williams (1997) arcsin kernel of a·erf(b·x) + c0: (q, c) scaled by b², K by a², plus c0²."""
    s = b * b
    d1, d2 = 1 + 2 * s * q1, 1 + 2 * s * q2
    k = a * a * (2 / np.pi) * np.arcsin(np.clip(2 * s * c / np.sqrt(d1 * d2), -1.0, 1.0)) + c0 * c0
    kdot = a * a * s * (4 / np.pi) / np.sqrt(d1 * d2 - 4 * s * s * c * c)
    return k, kdot


def reference(layers, d, param, x1, x2=None):
    """(nngp, ntk) of the network, from kernel-math.md §1–3, written independently of ntkdsl."""
    x1 = np.asarray(x1, dtype=np.float64)
    same = x2 is None
    x2 = x1 if same else np.asarray(x2, dtype=np.float64)
    q1 = np.einsum("ik,ik->i", x1, x1)[:, None] / d  # column: Σ(x, x) for x in x1
    q2 = np.einsum("jk,jk->j", x2, x2)[None, :] / d  # row: Σ(x', x') for x' in x2
    c = np.einsum("ik,jk->ij", x1, x2) / d
    diag = np.zeros(c.shape, dtype=bool)
    if same:
        np.fill_diagonal(diag, True)
        c[diag] = q1[:, 0]
    t = np.zeros_like(c)
    n_in = d
    for layer in layers:
        kind = layer[0]
        if kind == "dense":
            _, width, w, b = layer
            w2, b2 = w * w, (0.0 if b is None else b * b)
            if param == "ntk":
                c_new = w2 * c + b2
                t = c_new + w2 * t
            else:  # standard: Θ' = n_in·Σ (before the layer) + σ_w²·Θ + 1{bias}
                c_new = w2 * c + b2
                t = n_in * c + w2 * t + (0.0 if b is None else 1.0)
            c, q1, q2 = c_new, w2 * q1 + b2, w2 * q2 + b2
            n_in = width
        elif kind == "relu":
            c, kdot = _relu_dual(q1, q2, c, diag)
            t = t * kdot
            q1, q2 = q1 / 2, q2 / 2  # K(q, q, q) = q/2 (θ = 0)
        elif kind == "erf":
            _, a, b, c0 = layer
            c, kdot = _erf_dual(q1, q2, c, a, b, c0)
            t = t * kdot
            s = b * b
            q1 = a * a * (2 / np.pi) * np.arcsin(2 * s * q1 / (1 + 2 * s * q1)) + c0 * c0
            q2 = a * a * (2 / np.pi) * np.arcsin(2 * s * q2 / (1 + 2 * s * q2)) + c0 * c0
        elif kind == "identity":
            pass
        else:
            raise ValueError(kind)
    return c, t


def _mp_erf_dual(q1, q2, c, a, s, c0):
    """Williams' arcsin kernel of a·erf(b·x) + c0 (s = b²) and its derivative kernel, in mpmath."""
    d1, d2 = 1 + 2 * s * q1, 1 + 2 * s * q2
    # (1 + 2s·q1)(1 + 2s·q2) − 4s²c², expanded so that ρ = ±1 at a huge scale cancels nothing
    det = 1 + 2 * s * (q1 + q2) + 4 * s * s * (q1 * q2 - c * c)
    k = a * a * 2 / mpmath.pi * mpmath.asin(2 * s * c / mpmath.sqrt(d1 * d2)) + c0 * c0
    return k, a * a * s * 4 / mpmath.pi / mpmath.sqrt(det)


def reference_mp(layers, d, param, x1, x2=None, dps=40):
    """The same recursion in mpmath, one pair at a time: no overflow or underflow at any scale."""
    with mpmath.workdps(dps):
        x1 = [[mpmath.mpf(float(v)) for v in row] for row in np.asarray(x1, dtype=np.float64)]
        same = x2 is None
        x2 = x1 if same else [[mpmath.mpf(float(v)) for v in row] for row in np.asarray(x2, dtype=np.float64)]
        out_k = np.empty((len(x1), len(x2)))
        out_t = np.empty((len(x1), len(x2)))
        for i, u in enumerate(x1):
            for j, v in enumerate(x2):
                is_diag = same and i == j
                q1 = mpmath.fsum(a * a for a in u) / d
                q2 = mpmath.fsum(b * b for b in v) / d
                c = mpmath.fsum(a * b for a, b in zip(u, v)) / d
                t = mpmath.mpf(0)
                n_in = d
                for layer in layers:
                    kind = layer[0]
                    if kind == "dense":
                        _, width, w, b = layer
                        w2 = mpmath.mpf(str(w)) ** 2
                        b2 = 0 if b is None else mpmath.mpf(str(b)) ** 2
                        c_new = w2 * c + b2
                        if param == "ntk":
                            t = c_new + w2 * t
                        else:
                            t = n_in * c + w2 * t + (0 if b is None else 1)
                        c, q1, q2, n_in = c_new, w2 * q1 + b2, w2 * q2 + b2, width
                    elif kind == "relu":
                        g = mpmath.sqrt(q1 * q2)
                        rho = mpmath.mpf(1) if is_diag else (max(-1, min(1, c / g)) if g > 0 else mpmath.mpf(0))
                        th = mpmath.acos(rho)
                        c = g / (2 * mpmath.pi) * (mpmath.sin(th) + (mpmath.pi - th) * mpmath.cos(th))
                        t = t * (mpmath.pi - th) / (2 * mpmath.pi)
                        q1, q2 = q1 / 2, q2 / 2
                    elif kind == "erf":
                        _, a, b, c0 = layer
                        a, s, c0 = mpmath.mpf(str(a)), mpmath.mpf(str(b)) ** 2, mpmath.mpf(str(c0))
                        c, kdot = _mp_erf_dual(q1, q2, c, a, s, c0)
                        t = t * kdot
                        q1, q2 = _mp_erf_dual(q1, q1, q1, a, s, c0)[0], _mp_erf_dual(q2, q2, q2, a, s, c0)[0]
                    elif kind != "identity":
                        raise ValueError(kind)
                out_k[i, j], out_t[i, j] = float(c), float(t)
        return out_k, out_t


def _inputs(n, d, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, size=(n, 1))  # varied norms


X1 = _inputs(6, 5, 1)
X2 = _inputs(4, 5, 2)

# rtol 1e-12: ntkdsl and the reference evaluate the same closed forms, but in a different float
# order (atan2(√(q1q2 − c²), c) vs arccos(c/√(q1q2)), CSE'd products, exact rational constants vs
# float products); each layer adds a few ulps times a condition number that stays O(10) for these
# well-separated inputs, so 10 layers stay orders of magnitude below 1e-12.
RTOL = 1e-12

ACTS = {"relu": RELU, "erf": ERF, "erf(a=2,b=0.5,c=0.3)": ERF_P}


@pytest.mark.parametrize("bias", [None, 0.1], ids=["nobias", "bias"])
@pytest.mark.parametrize("act", list(ACTS), ids=list(ACTS))
@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("depth", [1, 2, 5, 10])
def test_matches_numpy_reference(depth, param, act, bias):
    layers = mlp(depth, ACTS[act], bias)
    net = compiled(layers, 5, param)
    for args in ((X1,), (X1, X2)):
        got = net.kernels(*args)
        ref_k, ref_t = reference(layers, 5, param, *args)
        np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=0)
        np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=0)


MIXED = {
    # relu and erf interleaved (every relu before every erf), per-layer widths, w_std and b_std,
    # a zero-variance bias (counts +1 in the standard NTK, kernel-math §7), identity layers
    "relu-then-erf": [("dense", 9, 1.3, 0.2), RELU, ("identity",), ("dense", 33, 0.9, 0.0), RELU,
                      ("dense", 4, 2.0, None), ERF_P, ("dense", 300, 1.1, 0.5), ERF, ("dense", 3, 1.2, 0.0)],
    # the same features with an erf feeding a relu
    "erf-then-relu": [("dense", 9, 1.3, 0.2), RELU, ("identity",), ("dense", 33, 0.9, 0.0), ERF_P,
                      ("dense", 4, 2.0, None), ERF, ("dense", 300, 1.1, 0.5), RELU, ("dense", 3, 1.2, 0.0)],
    "single-dense": [("dense", 1, 1.7, 0.3)],
    "no-readout": [("dense", 16, 1.4, 0.1), RELU, ("dense", 8, 1.2, None), ERF_P],
}

_DIAG_AFTER_ERF = (
    "bug: after an erf layer the generated code computes the self-kernel's diagonal nngp[i, i] "
    "(arcsin(2s·c/(√(1+2s·q1)·√(1+2s·q2)))) and cov1[i] (arcsin(2s·q/(1+2s·q))) by different float "
    "expressions, so they differ by an ulp; a following relu then sees q1·q2 − c² ≈ ulp·q² instead of 0, "
    "θ ≈ 1e-8 instead of exactly 0 (kernel-math §3), and K̇ = (π − θ)/(2π) puts a ~1e-9 relative error "
    "(√eps, not eps) on the NTK diagonal"
)


def _mixed_cases():
    for name in MIXED:
        for param in ("ntk", "standard"):
            yield pytest.param(name, param, id=f"{name}-{param}")


@pytest.mark.parametrize("name, param", list(_mixed_cases()))
def test_mixed_networks_match_reference(name, param):
    layers = MIXED[name]
    net = compiled(layers, 5, param)
    for args in ((X1,), (X1, X2)):
        got = net.kernels(*args)
        ref_k, ref_t = reference(layers, 5, param, *args)
        np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=0)  # same closed forms, see RTOL
        np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=0)


def test_relu_after_erf_diagonal_has_theta_zero():
    """Minimal case: Θ(x, x) of erf → dense → relu is exactly ½·Θ(x, x) of erf → dense (θ = 0)."""
    head = [("dense", 1, 1.0, None), ERF, ("dense", 1, 1.0, None)]
    x = np.array([[1.0, 2.0], [0.3, -0.7], [2.0, 1.0]])
    before = compiled(head, 2).kernels(x)
    after = compiled(head + [RELU], 2).kernels(x)
    # K(q, q, q) = q/2 and K̇ = 1/2 at θ = 0: a multiplication by 0.5, so a few ulps at most
    np.testing.assert_allclose(np.diag(after.nngp), 0.5 * np.diag(before.nngp), rtol=1e-15, atol=0)
    np.testing.assert_allclose(np.diag(after.ntk), 0.5 * np.diag(before.ntk), rtol=1e-15, atol=0)


def test_repeat_block_matches_reference():
    text = """let beta = 0.1
network r(input = 5, parameterization = standard) {
    repeat 3 {
        dense(64, w_std = 1.5, b_std = beta)
        relu
    }
    dense(1, w_std = 1.5, b_std = beta)
}
"""
    net = ntkdsl.loads(text)
    layers = [("dense", 64, 1.5, 0.1), RELU] * 3 + [("dense", 1, 1.5, 0.1)]
    got = net.kernels(X1, X2)
    ref_k, ref_t = reference(layers, 5, "standard", X1, X2)
    np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=0)  # same closed forms, see RTOL
    np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=0)


def test_mpmath_reference_agrees_with_numpy_reference():
    """The two oracles agree at ordinary scales (so the mpmath one can stand alone at extreme ones)."""
    layers = MIXED["erf-then-relu"]
    for param in ("ntk", "standard"):
        for args in ((X1[:3],), (X1[:3], X2[:2])):
            a = reference(layers, 5, param, *args)
            b = reference_mp(layers, 5, param, *args)
            # float64 vs 40-digit evaluation of the same formulas: float64 rounding only
            np.testing.assert_allclose(a[0], b[0], rtol=1e-13, atol=0)
            np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=0)


# ---------------------------------------------------------------------------------------------
# 2. Monte Carlo over finite networks (kernel-math §5), NTK parameterization:
#    z = σ_w/√n_in · W·a + σ_b·b, all parameters N(0, 1)
# ---------------------------------------------------------------------------------------------


def _phi(act):
    """σ and σ' of an activation description, for finite networks."""
    if act[0] == "relu":
        return (lambda z: np.maximum(z, 0.0)), (lambda z: (z > 0).astype(np.float64))
    _, a, b, c0 = act
    return (lambda z: a * sp_erf(b * z) + c0), (lambda z: a * b * (2 / np.sqrt(np.pi)) * np.exp(-(b * z) ** 2))


def mc_nngp(x, hidden, readout, draws, rng):
    """Mean and standard error over draws of mean_over_outputs f(x)·f(x').

    hidden: [((width, w_std, b_std), act), ...]; readout: (k outputs, w_std, b_std).
    """
    est = np.empty((draws, len(x), len(x)))
    for r in range(draws):
        a = x
        for (n, w, b), act in hidden:
            W = rng.standard_normal((a.shape[1], n))
            z = (w / np.sqrt(a.shape[1])) * (a @ W) + b * rng.standard_normal(n)
            a = _phi(act)[0](z)
        k, w, b = readout
        f = (w / np.sqrt(a.shape[1])) * (a @ rng.standard_normal((a.shape[1], k))) + b * rng.standard_normal(k)
        est[r] = f @ f.T / k
    return est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(draws)


def empirical_ntk(x, hidden, readout, rng, param="ntk"):
    """The exact NTK of one random finite network with one output (kernel-math §5 factorisation).

    Θ(x, x') = Σ_l [bracket_l(x, x')] · δ_l(x)·δ_l(x'), with bracket (σ_w²/n_in)·a·a' + σ_b² in the
    NTK parameterization and a·a' + 1{bias} in the standard one; the forward function is the same.
    """
    a = x
    inputs, pres, mats, layer_params = [], [], [], []
    for (n, w, b), act in hidden + [(readout, None)]:
        n_in = a.shape[1]
        M = (w / np.sqrt(n_in)) * rng.standard_normal((n_in, n))  # z = a @ M + σ_b·b
        z = a @ M + (0.0 if b is None else b * rng.standard_normal(n))
        inputs.append(a)
        pres.append((z, act))
        mats.append(M)
        layer_params.append((n_in, w, b))
        a = z if act is None else _phi(act)[0](z)
    # back-propagate δ_l = ∂f/∂z_l from the single output
    delta = np.ones((len(x), 1))
    theta = np.zeros((len(x), len(x)))
    for l in range(len(mats) - 1, -1, -1):
        n_in, w, b = layer_params[l]
        a_in = inputs[l]
        if param == "ntk":
            bracket = (w * w / n_in) * (a_in @ a_in.T) + (0.0 if b is None else b * b)
        else:
            bracket = a_in @ a_in.T + (0.0 if b is None else 1.0)
        theta += bracket * (delta @ delta.T)
        if l > 0:
            z_prev, act_prev = pres[l - 1]
            delta = (delta @ mats[l].T) * _phi(act_prev)[1](z_prev)
    return theta


# 5 inputs in d = 3 with varied norms and pairwise correlations between −0.74 and 0.84 (away from
# ρ = ±1, where the duals' curvature and hence the finite-width bias is largest)
MC_X = np.array([[1.0, 0.2, -0.3], [0.3, 1.2, 0.4], [-0.8, 0.5, 0.6], [0.2, -0.4, 1.3], [0.9, 0.9, 0.1]])


def _assert_within(emp, se, analytic, bias_allowance, what):
    """|emp − analytic| ≤ 5·SE + bias allowance, entry by entry (printed when it fails)."""
    tol = 5 * se + bias_allowance
    err = np.abs(emp - analytic)
    assert np.all(err <= tol), (
        f"{what}: worst |emp − analytic| / tol = {np.max(err / tol):.3g}\nemp=\n{emp}\nanalytic=\n{analytic}\nse=\n{se}"
    )


def test_mc_nngp_relu_two_hidden_layers():
    d, n, k, draws = 3, 2048, 1024, 24
    x = MC_X
    hidden = [((n, 1.4, 0.2), RELU), ((n, 1.4, 0.2), RELU)]
    readout = (k, 1.4, 0.2)
    emp, se = mc_nngp(x, hidden, readout, draws, np.random.default_rng(11))
    layers = [("dense", n, 1.4, 0.2), RELU, ("dense", n, 1.4, 0.2), RELU, ("dense", 1, 1.4, 0.2)]
    analytic = compiled(layers, d).nngp(x)
    # 5 standard errors (measured over draws) bound the sampling error; the second hidden layer sees
    # the first layer's empirical covariance Σ̂ (fluctuation O(1/√n)), so E[K(Σ̂)] − K(Σ) =
    # ½·K''·Var(Σ̂) = O(1/n) (Jensen): allowance 10·scale/n (0.5% at n = 2048) bounds it for inputs away
    # from ρ = ±1 (MC_X). SE itself is ≈ 2.5% of scale here: hidden-layer fluctuations dominate.
    scale = np.sqrt(np.outer(np.diag(analytic), np.diag(analytic)))
    _assert_within(emp, se, analytic, 10 * scale / n, "relu NNGP")


def test_mc_nngp_parameterised_erf():
    d, n, k, draws = 3, 4096, 1024, 24
    x = MC_X
    hidden = [((n, 1.5, 0.3), ERF_P)]
    readout = (k, 1.2, 0.1)
    emp, se = mc_nngp(x, hidden, readout, draws, np.random.default_rng(21))
    layers = [("dense", n, 1.5, 0.3), ERF_P, ("dense", 1, 1.2, 0.1)]
    analytic = compiled(layers, d).nngp(x)
    # one hidden layer: its pre-activations are exactly Gaussian with the analytic covariance, so
    # the estimator is unbiased and 5 standard errors (measured over draws) is the whole tolerance
    _assert_within(emp, se, analytic, 0.0, "erf NNGP")


def _mc_ntk(x, hidden, readout, draws, seed, param="ntk"):
    rng = np.random.default_rng(seed)
    est = np.stack([empirical_ntk(x, hidden, readout, rng, param) for _ in range(draws)])
    return est.mean(axis=0), est.std(axis=0, ddof=1) / np.sqrt(draws)


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_mc_ntk_one_hidden_relu(param):
    d, n, draws = 3, 4096, 64
    x = MC_X
    hidden = [((n, 1.3, 0.2), RELU)]
    readout = (1, 1.1, 0.1)
    emp, se = _mc_ntk(x, hidden, readout, draws, 31, param)
    layers = [("dense", n, 1.3, 0.2), RELU, ("dense", 1, 1.1, 0.1)]
    analytic = compiled(layers, d, param).ntk(x)
    # one hidden layer: every term of the factorisation is an average over i.i.d. hidden units of
    # exactly Gaussian pre-activations, so the empirical NTK is unbiased: 5 standard errors (over
    # draws) is the whole tolerance. In the standard parameterization both sides carry the width n.
    _assert_within(emp, se, analytic, 0.0, f"relu NTK ({param})")


def test_mc_ntk_two_hidden_relu():
    d, n, draws = 3, 2048, 12
    x = MC_X
    hidden = [((n, 1.4, 0.1), RELU), ((n, 1.4, 0.1), RELU)]
    readout = (1, 1.4, 0.1)
    emp, se = _mc_ntk(x, hidden, readout, draws, 41)
    layers = [("dense", n, 1.4, 0.1), RELU, ("dense", n, 1.4, 0.1), RELU, ("dense", 1, 1.4, 0.1)]
    analytic = compiled(layers, d).ntk(x)
    # 5 standard errors over draws, plus the O(1/n) finite-width bias of a deep NTK (Jensen on the
    # layer-2 dual as in the NNGP test, and the correlation of W2 with δ): 10·scale/n = 0.5%
    scale = np.sqrt(np.outer(np.diag(analytic), np.diag(analytic)))
    _assert_within(emp, se, analytic, 10 * scale / n, "relu NTK, 2 hidden layers")


# ---------------------------------------------------------------------------------------------
# 3. Jacot, Gabriel & Hongler (2018), Fig. 1 (kernel-math §6)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gamma, value",
    [(0.0, 0.2825), (np.pi / 4, 0.1700), (np.pi / 2, 0.0927), (3 * np.pi / 4, 0.0660), (np.pi, 0.0644)],
    ids=["0", "pi/4", "pi/2", "3pi/4", "pi"],
)
def test_jacot_fig1(gamma, value):
    net = ntkdsl.load(EXAMPLES / "jacot_fig1.ntk")
    x0 = np.array([[1.0, 0.0]])
    for g in (gamma, -gamma):  # Θ depends only on the angle
        x = np.array([[np.cos(g), np.sin(g)]])
        theta = net.ntk(x0, x)[0, 0]
        assert abs(theta - value) <= 0.5e-4, theta  # the paper quotes 4 decimals: half a unit of the last


# ---------------------------------------------------------------------------------------------
# 4. Properties
# ---------------------------------------------------------------------------------------------

PROPERTY_NETS = {
    "relu-5-bias": (mlp(5, RELU, 0.1), "ntk"),
    "erf-p-3": (mlp(3, ERF_P, None), "ntk"),
    "mixed-standard": (MIXED["relu-then-erf"], "standard"),
    "erf-then-relu": (MIXED["erf-then-relu"], "ntk"),
    "relu-10-nobias-standard": (mlp(10, RELU, None), "standard"),
}


def _hard_points(d=5, seed=3):
    """Random points plus a duplicate, a near-duplicate, a scaled copy, a negation and a zero row."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, d))
    return np.vstack([x, x[0], x[1] + 1e-9, 3.0 * x[2], -x[3], np.zeros(d)])


@pytest.mark.parametrize("name", list(PROPERTY_NETS))
def test_self_kernel_exactly_symmetric(name):
    layers, param = PROPERTY_NETS[name]
    k = compiled(layers, 5, param).kernels(_hard_points())
    assert np.array_equal(k.nngp, k.nngp.T)  # the API promises exact (bitwise) symmetry for x2=None
    assert np.array_equal(k.ntk, k.ntk.T)


@pytest.mark.parametrize("name", list(PROPERTY_NETS))
def test_self_kernel_psd(name):
    layers, param = PROPERTY_NETS[name]
    k = compiled(layers, 5, param).kernels(np.vstack([_hard_points(), _inputs(10, 5, 4)]))
    for m in (k.nngp, k.ntk):
        ev = np.linalg.eigvalsh(m)
        # a Gram matrix; duplicated points make it singular, so eigenvalues may dip below 0 by
        # rounding only: a few ulps of the largest eigenvalue times the size, far below 1e-10·λ_max
        assert ev[0] >= -1e-10 * ev[-1], (ev[0], ev[-1])


@pytest.mark.parametrize("name", list(PROPERTY_NETS))
def test_cross_kernel_transposes(name):
    layers, param = PROPERTY_NETS[name]
    net = compiled(layers, 5, param)
    a, b = net.kernels(X1, X2), net.kernels(X2, X1)
    # the same pairs evaluated with the roles of x and x' swapped: only the order of the dot
    # product's sum and of the commutative products can differ (a few ulps)
    np.testing.assert_allclose(a.nngp, b.nngp.T, rtol=1e-14, atol=0)
    np.testing.assert_allclose(a.ntk, b.ntk.T, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", list(PROPERTY_NETS))
def test_diagonal_equals_single_point_kernels(name):
    layers, param = PROPERTY_NETS[name]
    net = compiled(layers, 5, param)
    x = _hard_points()
    k = net.kernels(x)
    alone_k = np.array([net.kernels(x[i:i + 1]).nngp[0, 0] for i in range(len(x))])
    alone_t = np.array([net.kernels(x[i:i + 1]).ntk[0, 0] for i in range(len(x))])
    # Σ(x, x) in a batch and alone: same arithmetic on the same numbers, up to a few ulps
    np.testing.assert_allclose(np.diag(k.nngp), alone_k, rtol=1e-14, atol=0)
    np.testing.assert_allclose(np.diag(k.ntk), alone_t, rtol=1e-14, atol=0)


ZERO_NETS = {
    "relu-nobias": (mlp(3, RELU, None), "ntk"),
    "relu-nobias-standard": (mlp(3, RELU, None), "standard"),
    "erf-nobias": (mlp(3, ERF, None), "ntk"),
    "erf-p-nobias": (mlp(3, ERF_P, None), "standard"),
    "relu-bias": (mlp(3, RELU, 0.1), "ntk"),
    "relu-then-erf": (MIXED["relu-then-erf"], "standard"),
    "erf-then-relu": (MIXED["erf-then-relu"], "standard"),
}


@pytest.mark.parametrize("name", [
    n for n in ZERO_NETS
])
def test_zero_norm_inputs(name):
    layers, param = ZERO_NETS[name]
    net = compiled(layers, 5, param)
    x = np.vstack([np.zeros(5), X1[:3], np.zeros(5)])
    for args in ((x,), (x, X2), (X2, x)):
        got = net.kernels(*args)
        assert np.all(np.isfinite(got.nngp)) and np.all(np.isfinite(got.ntk))
        ref_k, ref_t = reference(layers, 5, param, *args)
        # exact zeros (a bias-free net maps 0 to 0) must come out as zeros up to rounding of the
        # other entries: absolute part 1e-14 of the largest entry; elsewhere the RTOL of section 1
        np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=1e-14 * np.max(np.abs(ref_k)))
        np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=1e-14 * np.max(np.abs(ref_t)))


ANTI_NETS = {
    "relu-nobias": (mlp(3, RELU, None), "ntk"),
    "relu-nobias-standard": (mlp(2, RELU, None), "standard"),
    "relu-bias": (mlp(3, RELU, 0.1), "ntk"),
    "erf-nobias": (mlp(2, ERF, None), "ntk"),
    "erf-p-bias": (mlp(2, ERF_P, 0.2), "standard"),
}


@pytest.mark.parametrize("name", list(ANTI_NETS))
def test_antiparallel_inputs(name):
    layers, param = ANTI_NETS[name]
    net = compiled(layers, 5, param)
    # dyadic entries: x·x and x·(−x) are exact, so ρ = −1 exactly at the first activation
    x = np.array([[1.0, -0.5, 0.25, 2.0, 0.0], [0.5, 0.5, -1.0, 0.0, 1.5]])
    for args in ((np.vstack([x, -x]),), (x, -x)):
        got = net.kernels(*args)
        assert np.all(np.isfinite(got.nngp)) and np.all(np.isfinite(got.ntk))
        ref_k, ref_t = reference(layers, 5, param, *args)
        # at ρ = −1 the ReLU dual is 0 = (π − θ)·… with θ = π: computed as a difference of O(q)
        # terms, so only absolute agreement at the rounding level of the kernel's scale is
        # meaningful there (1e-13 of the largest entry); elsewhere the RTOL of section 1
        np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=1e-13 * np.max(np.abs(ref_k)))
        np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=1e-13 * np.max(np.abs(ref_t)))


# Extreme scales. The kernels of these networks stay finite in float64 at every scale tested
# (|x| up to 1e±150, d = 2, w_std ≤ 1.4, NTK parameterization), so a NaN or inf is a bug.
EXTREME_NETS = {
    "relu": [("dense", 8, 1.4, None), RELU, ("dense", 8, 1.4, None), RELU, ("dense", 1, 1.0, None)],
    "erf": [("dense", 8, 1.4, None), ERF, ("dense", 1, 1.0, None)],
    "erf-p": [("dense", 8, 1.2, None), ERF_P, ("dense", 1, 1.0, None)],
}
# includes an anti-parallel pair and a zero row
EXTREME_X = np.array([[1.0, 0.0], [0.6, 0.8], [-0.28, 0.96], [-1.0, 0.0], [0.0, 0.0]])

_RELU_OVERFLOW = (
    "bug: the generated relu code forms sqrt(max(cov1*cov2 - nngp**2, 0)) in float64; for q ≳ 1e154 "
    "(|x| ≳ 1e77) both products overflow to inf and inf − inf = NaN, though the kernel (~|x|²) is finite")
_RELU_UNDERFLOW = (
    "bug: for q ≲ 1e-154 (|x| ≲ 1e-77) cov1*cov2 − nngp**2 underflows to 0 in the generated relu code, so "
    "θ = atan2(0, c) collapses to 0 (or π) for every pair: off-diagonal ReLU kernels are wrong without any "
    "NaN (network dense(1); relu, x = s·(1, 0), y = s·(0.6, 0.8), s = 1e-150: Σ = 0.15·s² instead of "
    "0.16939·s², Θ = 0.15·s² instead of 0.10572·s²)")
_ERF_CANCEL = (
    "bug: the generated erf dual is ill-conditioned at large variance. K̇ = (4/π)/sqrt((1 + 2s·q1)(1 + 2s·q2) "
    "− 4s²c²) subtracts two O(q²) numbers whose difference on the diagonal (and at ρ = ±1) is 1 + 4s·q: the "
    "NTK's relative error grows like q·eps (network dense(1); erf, x = 1e6·(0.6, 0.8): Θ = 450160.593 "
    "instead of 450158.158), it is inf once 1 + 2s·q rounds to 2s·q (x = 1e8·(0.6, 0.8)) and NaN once the "
    "product overflows (|x| ≳ 1e77). Likewise K = arcsin(u), u = 2s·c/√(d1·d2) within 1/(2s·q) of ±1, "
    "amplifies u's rounding by 1/√(1 − u²): Σ(x, x) is 3e-11 off at |x| = 1e6")
_ERF_DIAG = (
    "and once u rounds to 1 − ulp the error is √eps: the diagonal, computed as arcsin(2s·c/(√(1+2s·q)·"
    "√(1+2s·q))) rather than like cov1 (arcsin(2s·q/(1+2s·q)) = arcsin(1.0)), gives 0.99999999051 instead of "
    "1.0 at |x| = 1e60 (a stable form: arcsin u = atan2(2s·c, √det), det = 1 + 2s(q1 + q2) + 4s²(q1q2 − c²))")


def _extreme_cases():
    for name in EXTREME_NETS:
        for scale in (1e-150, 1e150):
            yield pytest.param(name, scale, id=f"{name}-{scale:g}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name, scale", list(_extreme_cases()))
def test_extreme_scale_no_nan(name, scale):
    net = compiled(EXTREME_NETS[name], 2)
    for args in ((scale * EXTREME_X,), (scale * EXTREME_X, scale * EXTREME_X[::-1])):
        got = net.kernels(*args)
        assert np.all(np.isfinite(got.nngp)), got.nngp
        assert np.all(np.isfinite(got.ntk)), got.ntk


def _extreme_value_cases():
    for name in EXTREME_NETS:
        for scale in (1e-150, 1e-60, 1e6, 1e60, 1e150):
            yield pytest.param(name, scale, id=f"{name}-{scale:g}")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name, scale", list(_extreme_value_cases()))
def test_extreme_scale_values_match_mpmath(name, scale):
    layers = EXTREME_NETS[name]
    net = compiled(layers, 2)
    x = scale * EXTREME_X
    got = net.kernels(x)
    ref_k, ref_t = reference_mp(layers, 2, "ntk", x)
    # the RTOL of section 1 against an overflow-free 40-digit evaluation; entries that are exactly 0
    # (ρ = −1 for ReLU, the zero row) are checked absolutely at 1e-13 of the largest entry
    np.testing.assert_allclose(got.nngp, ref_k, rtol=RTOL, atol=1e-13 * np.max(np.abs(ref_k)))
    np.testing.assert_allclose(got.ntk, ref_t, rtol=RTOL, atol=1e-13 * np.max(np.abs(ref_t)))


# Minimal reproductions of the extreme-scale bugs, each against a closed form written out by hand.
ONE_RELU = [("dense", 1, 1.0, None), RELU]  # Σ = K_relu(x·x'/2), Θ = Σ¹·K̇ with Σ¹ = x·x'/2
ONE_ERF = [("dense", 1, 1.0, None), ERF]  # Θ(x, x) = q·(4/π)/√(1 + 4q), q = |x|²/2


def _one_relu_closed_form(x, y):
    q1, q2, c = x @ x / 2, y @ y / 2, x @ y / 2
    th = np.arccos(c / np.sqrt(q1 * q2))
    return np.sqrt(q1 * q2) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th)), c * (np.pi - th) / (2 * np.pi)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_relu_tiny_scale_minimal():
    x, y = np.array([1.0, 0.0]), np.array([0.6, 0.8])
    k, t = _one_relu_closed_form(x, y)  # at scale 1; the kernel is 2-homogeneous
    s = 1e-150
    got = compiled(ONE_RELU, 2).kernels(s * x[None], s * y[None])
    # s² = 1e-300 is a normal float64: the only error is rounding, a few ulps
    np.testing.assert_allclose(got.nngp[0, 0], s * s * k, rtol=1e-13)
    np.testing.assert_allclose(got.ntk[0, 0], s * s * t, rtol=1e-13)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_relu_huge_scale_minimal():
    x, y = np.array([1.0, 0.0]), np.array([0.6, 0.8])
    k, t = _one_relu_closed_form(x, y)
    s = 1e150
    got = compiled(ONE_RELU, 2).kernels(s * x[None], s * y[None])
    np.testing.assert_allclose(got.nngp[0, 0], s * s * k, rtol=1e-13)  # s² = 1e300 is finite: rounding only
    np.testing.assert_allclose(got.ntk[0, 0], s * s * t, rtol=1e-13)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("scale", [1e6, 1e8])
def test_erf_ntk_diagonal_large_variance_minimal(scale):
    x = scale * np.array([[0.6, 0.8]])
    q = scale * scale / 2
    expected = q * (4 / np.pi) / np.sqrt(1 + 4 * q)  # Θ = Σ¹·K̇_erf(q, q, q), K̇ = (4/π)/√(1 + 4q)
    got = compiled(ONE_ERF, 2).ntk(x)[0, 0]
    # closed form with one sqrt and a few products: a few ulps
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_relu_homogeneity_at_moderate_scales():
    """A bias-free ReLU network is positively 2-homogeneous in its input: K(s·x) = s²·K(x)."""
    layers = EXTREME_NETS["relu"]
    net = compiled(layers, 2)
    base = net.kernels(EXTREME_X)
    for s in (2.0**-200, 2.0**200):  # powers of two: s·x and s²·K are exact, q stays in range
        got = net.kernels(s * EXTREME_X)
        # exact scaling of every intermediate except the final multiply: a few ulps
        np.testing.assert_allclose(got.nngp, s * s * base.nngp, rtol=1e-14, atol=1e-14 * s * s * np.max(base.nngp))
        np.testing.assert_allclose(got.ntk, s * s * base.ntk, rtol=1e-14, atol=1e-14 * s * s * np.max(base.ntk))
