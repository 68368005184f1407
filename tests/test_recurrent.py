"""``recurrent``: the recurrent NTK (Alemohammad et al. 2021, arXiv:2006.10246) against a hand recursion
written here in NumPy from the paper's formulas (the arc-cosine duals of ReLU, Cho & Saul 2009; a
quadrature dual for tanh), Monte Carlo over finite RNNs, and finite differences of the finite-width
rules; located errors for bad specs."""

import numpy as np
import pytest
from oracles import fd_jacobian, gauss_expectation
from shared import close_to_scale

import ntkdsl
from ntkdsl.errors import SpecError
from ntkdsl.sampler.montecarlo import monte_carlo

SW, SU, SB, SV = 1.2, 0.9, 0.3, 1.1


def spec(t, c, readout, activation="relu", width=64, b_std=SB, before=""):
    b = "none" if b_std is None else b_std
    return (f"network rnn(input = [{t}, {c}]) {{\n  {before}recurrent({width}, w_std = {SW}, u_std = {SU}, b_std = {b}, "
            f"activation = {activation}, readout = {readout})\n  dense(1, w_std = {SV})\n}}")


def relu_duals(q1, q2, c):
    """K_φ, K̇_φ of ReLU (Cho & Saul 2009): √(q1q2)/(2π)(sin θ + (π − θ)cos θ), (π − θ)/(2π)."""
    p = q1 * q2
    r = np.clip(c / np.sqrt(np.where(p > 0, p, 1.0)), -1, 1)  # a zero variance: K = 0, and Θ = 0 makes K̇ moot
    t = np.arccos(r)
    return np.sqrt(q1 * q2) / (2 * np.pi) * (np.sin(t) + (np.pi - t) * np.cos(t)), (np.pi - t) / (2 * np.pi)


def tanh_duals(q1, q2, c):
    """E[tanh(u)tanh(v)], E[tanh′(u)tanh′(v)] by nested quadrature (tests/oracles.py), entry by entry."""
    q1, q2, c = np.broadcast_arrays(q1, q2, c)
    k, kd = np.empty(c.shape), np.empty(c.shape)
    d = lambda z: 1 - np.tanh(z) ** 2  # noqa: E731
    for i in np.ndindex(c.shape):
        rho = np.clip(c[i] / np.sqrt(q1[i] * q2[i]), -1, 1)
        k[i] = gauss_expectation(np.tanh, np.tanh, q1[i], q2[i], rho)
        kd[i] = gauss_expectation(d, d, q1[i], q2[i], rho)
    return k, kd


def hand_rntk(x1, x2, readout, duals, b_std=SB):
    """The paper's recursion (§3) over every time pair, in order of max(t, t′) so that the self variances
    Σ_{t−1,t−1}(x, x) are set before they are read; then σ_v² times the readout of K_φ and K̇_φ·Θ."""
    xs = np.concatenate([x1, x2])
    n, steps, c = xs.shape
    b2 = 0.0 if b_std is None else b_std**2
    s0 = np.einsum("atc,bsc->abts", xs, xs) / c
    sig, th = np.zeros((n, n, steps, steps)), np.zeros((n, n, steps, steps))
    for t, s in sorted(((t, s) for t in range(steps) for s in range(steps)), key=max):
        base = SU**2 * s0[:, :, t, s] + b2
        if t > 0 and s > 0:
            q1 = np.diagonal(sig[:, :, t - 1, t - 1])[:, None]
            q2 = np.diagonal(sig[:, :, s - 1, s - 1])[None, :]
            k, kd = duals(q1, q2, sig[:, :, t - 1, s - 1])
            sig[:, :, t, s] = SW**2 * k + base
            th[:, :, t, s] = sig[:, :, t, s] + SW**2 * kd * th[:, :, t - 1, s - 1]
        else:
            sig[:, :, t, s] = th[:, :, t, s] = base
    q = np.einsum("aatt->at", sig)
    pairs = (slice(None), slice(None)) if readout == "mean" else (slice(-1, None), slice(-1, None))
    k, kd = duals(q[:, None, :, None][..., pairs[0], :], q[None, :, None, :][..., pairs[1]],
                  sig[:, :, pairs[0], pairs[1]])
    nngp = SV**2 * k.mean((2, 3))
    ntk = nngp + SV**2 * (kd * th[:, :, pairs[0], pairs[1]]).mean((2, 3))
    m = len(x1)
    return nngp[:m, m:], ntk[:m, m:]


def _inputs(n, t, c, seed):
    return np.random.default_rng(seed).standard_normal((n, t, c))


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("b_std", [SB, None])
@pytest.mark.parametrize("layout", ["auto", "full"])
def test_relu_matches_the_papers_recursion(readout, b_std, layout):
    x1, x2 = _inputs(4, 5, 3, 0), _inputs(3, 5, 3, 1)
    x1[1] = 0.0  # a zero sequence: Σ⁰ = 0, the drive is σ_b² only (or 0 without bias)
    net = ntkdsl.loads(spec(5, 3, readout, b_std=b_std), layout=layout)
    k = net.kernels(x1, x2, backend="numpy")
    nngp, ntk = hand_rntk(x1, x2, readout, relu_duals, b_std)
    # the same formulas in another order of operations: a few hundred roundings of O(1) numbers
    close_to_scale(k.nngp, nngp, 1e-12)
    close_to_scale(k.ntk, ntk, 1e-12)
    assert np.all(np.isfinite(net.kernels(x1).ntk))


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # the oracle's inner quad near ρ = ±1
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_tanh_matches_the_recursion_with_quadrature_duals(readout):
    x1, x2 = _inputs(1, 2, 2, 2), _inputs(1, 2, 2, 3)  # few entries: each costs two nested quadratures
    k = ntkdsl.loads(spec(2, 2, readout, activation="tanh")).kernels(x1, x2, backend="numpy")
    nngp, ntk = hand_rntk(x1, x2, readout, tanh_duals)
    # ntkdsl's tanh dual is numerical (its stated bound 1e-9 of the scale), the oracle's quadrature ~1e-12
    close_to_scale(k.nngp, nngp, 1e-8)
    close_to_scale(k.ntk, ntk, 1e-8)


def test_numba_fuses_the_recurrence():
    import warnings

    x = _inputs(3, 4, 2, 4)
    net = ntkdsl.loads(spec(4, 2, "mean"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to NumPy: the time shift runs in the fused loops
        k = net.kernels(x, backend="numba")
    nngp, ntk = hand_rntk(x, x, "mean", relu_duals, SB)
    # the fused kernels' result is the recursion's (same bound as test_relu_matches_the_papers_recursion)
    close_to_scale(k.nngp, nngp, 1e-12)
    close_to_scale(k.ntk, ntk, 1e-12)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_monte_carlo_over_finite_rnns(readout, activation):
    x = _inputs(3, 4, 3, 0)
    net = ntkdsl.loads(spec(4, 3, readout, activation=activation))
    k = net.kernels(x, backend="numpy")
    mc = monte_carlo(net, x, width=256, n_samples=600, seed=1)
    # 4 standard errors: a false alarm per entry ~6e-5. The mean of a finite network's empirical kernel
    # differs from the limit by O(1/width) (Dyer & Gur-Ari 2020); 4/width of the kernel's scale allows it
    # (measured at width 256, ReLU: NTK 0.7 % (last), 1.1 % (mean) of the scale, NNGP within 2 errors;
    # tanh, seeds 1-3: NTK within 1.6 errors, NNGP within 2.3).
    bias = 4 / 256
    for mean, stderr, exact in ((mc.nngp, mc.nngp_stderr, k.nngp), (mc.ntk, mc.ntk_stderr, k.ntk)):
        assert np.all(np.abs(mean - exact) <= 4 * stderr + bias * np.abs(exact).max())


FD = {  # smooth activations only: a kink within h of a pre-activation would break the expansion
    "tanh-last": spec(4, 2, "last", activation="tanh", width=5),
    "erf-mean-conv-before": spec(3, 2, "mean", activation="erf", width=4, before="conv(3, kernel = 2, b_std = 0.2)\n  "),
    "gelu-mean-no-bias": spec(3, 2, "mean", activation="gelu", width=4, b_std=None),
}


@pytest.mark.parametrize("name", sorted(FD))
def test_finite_width_rules_match_finite_differences(name):
    net = ntkdsl.loads(FD[name].replace("dense(1,", "dense(2,"))
    fnet = net.finite(seed=3)
    shape = net.ir.input_shape
    x1, x2 = _inputs(3, *shape, seed=5), _inputs(2, *shape, seed=6)
    h = 1e-5
    j1, j2 = fd_jacobian(fnet, x1, h), fd_jacobian(fnet, x2, h)
    full = np.einsum("aip,bjp->abij", j1, j2)
    # central differences, h = 1e-5: truncation and round-off ≈ 2e-11 for O(1) derivatives (oracles.py)
    close = lambda a, b: close_to_scale(a, b, 1e-7)  # noqa: E731
    close(fnet.jacobian(x1), j1)
    close(fnet.ntk(x1, x2, trace=False), full)
    close(fnet.ntk(x1, x2), np.einsum("abii->ab", full) / 2)
    close(fnet.ntk(x1, x2, method="jacobian"), np.einsum("abii->ab", full) / 2)
    close(fnet.ntk(x1), np.einsum("aip,bip->ab", j1, j1) / 2)


def test_forward_is_the_rnn_definition():
    net = ntkdsl.loads(spec(3, 2, "mean", activation="tanh", width=4))
    fnet = net.finite(seed=0)
    p, v = fnet.params[0], fnet.params[1]
    x = _inputs(2, 3, 2, 7)
    h, hs = np.zeros((2, 4)), []
    for t in range(3):  # g_t = (σ_w/√n)·W·h_{t−1} + (σ_u/√C)·U·x_t + σ_b·b
        h = np.tanh(SW / 2 * h @ p["w"] + SU / np.sqrt(2) * x[:, t] @ p["u"] + SB * p["b"])
        hs.append(h)
    expected = SV / 2 * (sum(hs) / 3) @ v["w"]
    np.testing.assert_allclose(fnet.apply(x), expected, rtol=1e-13, atol=1e-15)  # the same arithmetic


@pytest.mark.parametrize("text, message, column", [
    ("network r(input = 4) {\n  recurrent(8)\n  dense(1)\n}", "needs an image or signal input", 3),
    ("network r(input = [300, 2]) {\n  recurrent(8)\n  dense(1)\n}", "300 time steps, more than 256", 3),
    ("network r(input = [3, 2]) {\n  recurrent(8, activation = relux)\n  dense(1)\n}", "did you mean 'relu'", 29),
    ("network r(input = [3, 2]) {\n  recurrent(8, activation = monomial)\n  dense(1)\n}", "needs parameter values", 29),
    ("network r(input = [3, 2], parameterization = standard) {\n  recurrent(8)\n  dense(1)\n}",
     "only parameterization = ntk", 3),
    ("network r(input = [3, 2]) {\n  recurrent(8, readout = first)\n  dense(1)\n}", "readout must be one of", 26),
])
def test_located_errors(text, message, column):
    with pytest.raises(SpecError) as info:
        ntkdsl.loads(text)
    assert message in str(info.value)
    assert f"<string>:2:{column}: error" in str(info.value)


def test_canonical_text_parses_back():
    net = ntkdsl.loads(spec(3, 2, "mean", activation="gelu", b_std=None))
    assert ntkdsl.loads(net.to_ntk()).ir == net.ir
