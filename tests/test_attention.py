"""``attention`` (global self-attention, neural-tangents' GlobalSelfAttention): against neural-tangents 0.6.5
(tests/data/nt_new_layers.json; also in test_new_layers_nt.py), NumPy transcriptions written here of the
kernel formulas (Hron et al. 2020, "Infinite attention", and kernel-math.md §2), the position covariance R
written out by hand, finite differences and Monte Carlo over finite networks from the sampler, text round
trips, located errors and extreme inputs."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen.dispatch import BackendFallbackWarning
from ntkdsl.codegen.overflow import KernelOverflowError
from ntkdsl.errors import SpecError

from shared import NT_RTOL, assert_agrees_with_neural_tangents, close_to_scale

DATA = json.loads((Path(__file__).resolve().parent / "data" / "nt_new_layers.json").read_text())["architectures"]
CASES = [f"attention-{m}" for m in ("softmax-linear", "identity-linear", "abs-linear", "relu-linear",
                                     "identity-sqrt-scaling", "softmax-pos-emb-sum", "identity-sqrt-pos-emb-sum-values",
                                     "softmax-pos-emb-concat-decay", "image-softmax")] + ["transformer-block"]


@pytest.mark.parametrize("name", CASES)
def test_agrees_with_neural_tangents(name):
    ref = DATA[name]
    net = ntkdsl.loads(ref["spec"])
    x1, x2 = np.asarray(ref["x1"]), np.asarray(ref["x2"])
    assert_agrees_with_neural_tangents(net.kernels(x1, x2), net.kernels(x1) if "nngp_11" in ref else None, ref)
    diagonal = net.kernels(x1, diagonal=True)  # the same statements on the pairs (x_i, x_i)
    np.testing.assert_array_equal(diagonal.ntk, net.kernels(x1).ntk.diagonal())


def test_numba_falls_back_to_numpy_with_a_warning():
    ref = DATA["attention-softmax-linear"]
    pytest.importorskip("numba")
    net = ntkdsl.loads(ref["spec"])
    x1, x2 = np.asarray(ref["x1"]), np.asarray(ref["x2"])
    with pytest.warns(BackendFallbackWarning, match="computes attention weights"):
        k = net.kernels(x1, x2, backend="numba")
    close_to_scale(k.ntk, np.asarray(ref["ntk"]), NT_RTOL)


def test_position_covariance_is_the_decay_of_the_distance():
    """R(p, p′) = exp(−s·d) with d = |p − p′|² (1-D) written out here; neural-tangents' own R in the JSON."""
    from ntkdsl.arraycode.attention_support import position_covariance

    ref = DATA["attention-softmax-pos-emb-concat-decay"]
    i = np.arange(5.0)
    d = (i[:, None] - i[None, :]) ** 2
    np.testing.assert_allclose(position_covariance((5,), 2.0, "exp", 0.5)[..., 0, 0], np.exp(-0.5 * d), rtol=1e-15)
    np.testing.assert_allclose(np.asarray(ref["pos_emb_cov"]), np.exp(-0.5 * d), rtol=1e-15)
    h, w = np.meshgrid(np.arange(2.0), np.arange(3.0), indexing="ij")
    pos = np.stack([h.ravel(), w.ravel()], 1)
    d1 = np.abs(pos[:, None] - pos[None]).sum(-1)  # p_norm 1: Σ_axes |Δ|
    got = position_covariance((2, 3), 1.0, "linear", 0.25)[..., 0, 0].reshape(6, 6)
    np.testing.assert_allclose(got, np.maximum(0, 1 - 0.25 * d1), rtol=1e-15)
    np.testing.assert_array_equal(position_covariance((2, 3), 2.0, "none", 0.0)[..., 0, 0].reshape(6, 6), np.eye(6))


W, B, WO, C = 1.3, 0.2, 1.1, 3  # the first layer conv(8, kernel = 1, w_std = W, b_std = B) on 3 channels


def first_layer(xa, xb):
    """Σ¹(x, x′)(p, p′) = W²·x_p·x′_p′/C + B² (kernel-math.md §2), (Na, Nb, P, P); Θ¹ = Σ¹."""
    return W**2 * np.einsum("apc,bqc->abpq", xa, xb) / C + B**2


def readout(nngp, ntk):
    """global_avg_pool then dense(1, w_std = WO): Σ = WO²·mean_{p,p′}, Θ = Σ + WO²·mean_{p,p′} Θ."""
    s = WO**2 * nngp.mean(axis=(2, 3))
    return s, s + WO**2 * ntk.mean(axis=(2, 3))


def test_matches_a_hand_written_linear_scaling_kernel():
    """Softmax, linear scaling, concat embeddings with exp decay into the values too (Hron et al. 2020 §3 with
    neural-tangents' interpolation): Σ̃ = κ·Σ + ω·R, κ = C/(C + C_pe), ω = σ_E²·C_pe/(C + C_pe);
    G(x) = softmax_p′(QK·Σ̃(x, x)), Σ² = OV²·G(x)·Σ̃(x, x′)·G(x′)ᵀ + b², Θ² = OV²·G·Θ̃·G′ᵀ + b² + 2(Σ² − b²)."""
    qk, ov, b, wpe, cpe, s = 0.9 * 1.2, 1.3 * 1.1, 0.3, 0.7, 5, 0.4
    net = ntkdsl.loads(f"network a(input = [6, 3]) {{ conv(8, kernel = 1, w_std = {W}, b_std = {B}); "
                       f"attention(8, heads = 2, w_key_std = 1.2, w_query_std = 0.9, w_out_std = 1.3, w_value_std = 1.1, "
                       f"b_std = {b}, pos_emb = concat, pos_emb_decay = exp({s}), pos_emb_channels = {cpe}, "
                       f"w_pos_emb_std = {wpe}, val_pos_emb = true); global_avg_pool; dense(1, w_std = {WO}) }}")
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((3, 6, 3)), 2 * rng.standard_normal((2, 6, 3))
    r = np.exp(-s * (np.arange(6.0)[:, None] - np.arange(6.0)[None]) ** 2)
    kappa, omega = 8 / (8 + cpe), wpe**2 * cpe / (8 + cpe)

    def weights(xa):
        own = np.einsum("aapq->apq", first_layer(xa, xa))
        logits = qk * (kappa * own + omega * r)
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        return e / e.sum(axis=2, keepdims=True)

    g1, g2 = weights(x1), weights(x2)
    tilde = kappa * first_layer(x1, x2) + omega * r  # Σ̃ and Θ̃ (Θ¹ = Σ¹)
    nngp = ov**2 * np.einsum("apq,abqr,bsr->abps", g1, tilde, g2) + b**2
    ntk = ov**2 * np.einsum("apq,abqr,bsr->abps", g1, tilde, g2) + b**2 + 2 * (nngp - b**2)
    want = readout(nngp, ntk)
    k = net.kernels(x1, x2)
    close_to_scale(k.nngp, want[0], 1e-13)  # the same sums in another order: a few roundings of 1e-16
    close_to_scale(k.ntk, want[1], 1e-13)


def test_matches_a_hand_written_identity_kernel_without_linear_scaling():
    """Identity mechanism, 1/√d_k scaling, sum embeddings into keys and queries only (our derivation, Q and K
    independent: E[A(q, p)·A′(q′, p′)] = QK²·Σ̃(q, q′)·Σ̃(p, p′)), ⟨A, B⟩ = Σ_{p,p′} A·B:
    Σ² = (QK·OV)²·⟨Σ̃, Σ⟩·Σ̃ + b², Θ² = (QK·OV)²·[(⟨Σ̃, Θ⟩ + ⟨Σ, Θ̃⟩)·Σ̃ + ⟨Σ̃, Σ⟩·(Θ̃ + 4Σ̃)] + b²."""
    qk, ov, b, wpe = 0.8, 1.2, 0.1, 0.6
    net = ntkdsl.loads(f"network a(input = [4, 3]) {{ conv(8, kernel = 1, w_std = {W}, b_std = {B}); "
                       f"attention(8, linear_scaling = false, mechanism = identity, w_key_std = {qk}, w_out_std = {ov}, "
                       f"b_std = {b}, pos_emb = sum, w_pos_emb_std = {wpe}); global_avg_pool; dense(1, w_std = {WO}) }}")
    rng = np.random.default_rng(6)
    x1, x2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((3, 4, 3))
    sigma = first_layer(x1, x2)
    tilde = sigma + wpe**2 * np.eye(4)  # one-hot embeddings: R = I
    dot = lambda a, c: np.einsum("abpq,abpq->ab", a, c)[:, :, None, None]  # noqa: E731
    std2 = (qk * ov) ** 2
    nngp = std2 * dot(tilde, sigma) * tilde + b**2
    ntk = std2 * ((dot(tilde, sigma) + dot(sigma, tilde)) * tilde + dot(tilde, sigma) * (tilde + 4 * tilde)) + b**2
    want = readout(nngp, ntk)
    k = net.kernels(x1, x2)
    close_to_scale(k.nngp, want[0], 1e-13)  # the same sums in another order
    close_to_scale(k.ntk, want[1], 1e-13)


def small(extra, before=""):
    return (f"network a(input = [4, 3]) {{ {before}attention(5, key_channels = 3, value_channels = 2, heads = 2, "
            f"b_std = 0.3, {extra}); relu; flatten; dense(2) }}")


@pytest.mark.parametrize("extra", ["pos_emb = concat, pos_emb_decay = exp(1/2), pos_emb_channels = 2, val_pos_emb = true",
                                   "linear_scaling = false, mechanism = identity, pos_emb = sum, w_pos_emb_std = 0.7",
                                   "mechanism = abs, pos_emb = sum, pos_emb_decay = linear(0.3), pos_emb_p_norm = 1",
                                   "mechanism = relu"])
def test_finite_gradients_match_finite_differences(extra):
    net = ntkdsl.loads(small(extra, "conv(3, kernel = 1); "))
    fnet = net.finite(seed=1)
    x = np.random.default_rng(0).standard_normal((3, 4, 3))
    jac = fnet.jacobian(x)
    theta = fnet.flat_params().copy()
    num = np.zeros_like(jac)
    for i in range(theta.size):  # central differences, step 1e-6: error ~1e-12 truncation + 1e-10 rounding
        for sign in (1, -1):
            t = theta.copy()
            t[i] += sign * 1e-6
            fnet.set_flat_params(t)
            num[:, :, i] += sign * fnet.apply(x) / 2e-6
    fnet.set_flat_params(theta)
    close_to_scale(jac, num, 1e-8)  # the central-difference error above, with margin
    full = fnet.ntk(x, trace=False)  # the structured contraction against the explicit Jacobian
    close_to_scale(full, fnet.ntk(x, trace=False, method="jacobian"), 1e-13)


def monte_carlo_agrees(spec, n_samples, seed):
    """Monte Carlo over finite networks against the kernel: each entry within 4.5 standard errors (a normal
    tail of 7e-6 per entry) plus 2 % of the kernel's scale for the finite network's O(1/n) bias: the weights
    are a nonlinear function (softmax) of LLN averages over the 512 channels before the layer and the 1024 key
    channels, each off by O(1/512) in the mean, and the NTK of a finite network is biased by the same order
    (Hanin & Nica 2020). Without the 2 %, these cases stayed within 2.6 standard errors in our runs."""
    net = ntkdsl.loads(spec)
    x = np.random.default_rng(0).standard_normal((3, 4, 3))
    mc = ntkdsl.monte_carlo(net, x, n_samples=n_samples, seed=seed)
    k = net.kernels(x)
    # power, measured: the NTK's allowance is 11-25 % of its scale (identity without linear scaling the
    # widest; fast case 11 %, 24 draws), the NNGP's 50-76 % (one
    # draw's output products f(x)f(x')ᵀ vary like the kernel itself, so ~100 draws x outputs leave a standard
    # error of ~K/10): the NTK is the sharp check; the NNGP only catches gross errors (a factor 2, a sign)
    for got, se, want, power in ((mc.nngp, mc.nngp_stderr, k.nngp, 0.8), (mc.ntk, mc.ntk_stderr, k.ntk, 0.3)):
        scale = np.abs(want).max()
        allowance = 4.5 * se + 0.02 * scale
        assert np.all(np.abs(got - want) <= allowance), (got - want) / se
        assert allowance.max() < power * scale  # the largest error the test can miss


MC = ("network a(input = [4, 3]) {{ conv(512, kernel = 1); attention(128, key_channels = 1024, value_channels = 128, "
      "heads = 2, w_key_std = 1.5, w_value_std = 1.1, b_std = 0.3, {}); flatten; dense(4) }}")


def test_monte_carlo_softmax_with_embeddings():
    monte_carlo_agrees(MC.format("mechanism = softmax, pos_emb = sum, w_pos_emb_std = 0.8, val_pos_emb = true, "
                                 "pos_emb_decay = exp(0.5)"), 24, 3)


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["mechanism = relu, pos_emb = concat, pos_emb_channels = 256, val_pos_emb = true",
                                   "linear_scaling = false, mechanism = identity, pos_emb = sum", "mechanism = softmax"])
def test_monte_carlo_other_mechanisms(extra):
    monte_carlo_agrees(MC.format(extra), 40, 4)


@pytest.mark.parametrize("extra", ["", "mechanism = abs, pos_emb = concat, pos_emb_decay = linear(1/4), "
                                       "pos_emb_p_norm = 3/2, pos_emb_channels = 2, w_pos_emb_std = 0.5",
                                   "linear_scaling = false, mechanism = identity, pos_emb = sum, val_pos_emb = true"])
def test_text_round_trips(extra):
    net = ntkdsl.loads(small(extra))
    again = ntkdsl.loads(net.to_ntk())
    assert again.ir == net.ir
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    np.testing.assert_array_equal(again.kernels(x).ntk, net.kernels(x).ntk)


@pytest.mark.parametrize("extra, message, column", [
    ("mechanism = softmax, linear_scaling = false", "no infinite-width kernel is known for mechanism = softmax", 2),
    ("mechanism = relu, linear_scaling = false", "no infinite-width kernel", 2),
    ("pos_emb = sum, pos_emb_channels = 4", "pos_emb_channels \\(4\\) must equal the input's channel count \\(3\\)", 2),
    ("pos_emb = sum, pos_emb_decay = exp(-1)", "the rate s must be a positive number", 46),
    ("pos_emb = sum, pos_emb_decay = sqrt(2)", "must be none, exp\\(s\\)", 46),
    ("pos_emb = sum, pos_emb_decay = linear(0)", "the rate s must be a positive number", 46),
    ("mechanism = softmin", "mechanism must be one of softmax, identity, abs, relu", 27),
    ("w_key_std = linear(2)", "expected 'w_key_std' \\(a number\\), got linear", 27),
])
def test_located_errors(extra, message, column):
    text = "network a(input = [4, 3]) {\n attention(5, " + extra + ")\n flatten; dense(1) }"
    with pytest.raises(SpecError, match=message) as err:
        ntkdsl.loads(text, filename="t.ntk")
    shown = err.value.format()
    assert shown.startswith(f"t.ntk:2:{column}: error:"), shown
    assert shown.splitlines()[-1].strip().startswith("^"), shown


def test_vector_input_is_refused():
    with pytest.raises(SpecError, match="attention needs an image or signal input"):
        ntkdsl.loads("network a(input = 4) { attention(5); dense(1) }")


def test_a_decay_that_is_not_positive_semidefinite_is_refused_by_finite_networks():
    """linear(0.3) with p_norm 2 on 5 positions: R is tridiagonal 1, 0.7 (d = 1 gives 0.7, d ≥ 4 gives 0), whose
    smallest eigenvalue is 1 − 1.4·cos(π/6) < 0; the kernel is defined, the embeddings' draw is not."""
    text = "network a(input = [5, 3]) {\n attention(4, pos_emb = sum, pos_emb_decay = linear(0.3))\n flatten; dense(1) }"
    net = ntkdsl.loads(text, filename="t.ntk")
    assert np.all(np.isfinite(net.kernels(np.ones((2, 5, 3))).ntk))
    with pytest.raises(SpecError, match="not positive semidefinite") as err:
        net.finite(seed=0)
    assert err.value.format().startswith("t.ntk:2:2")


def test_extreme_and_zero_inputs():
    """Softmax weights are bounded, so inputs scaled by 1e±150 and zero inputs give finite kernels (the softmax
    subtracts each row's largest logit); the identity-like mechanisms scale like Σ³, past float64 at 1e100:
    refused with the overflow error, never a NaN."""
    x = np.random.default_rng(2).standard_normal((2, 5, 4))
    softmax = ntkdsl.loads("network a(input = [5, 4]) { conv(8, kernel = 1, b_std = 0.1); attention(8, b_std = 0.1); "
                           "relu; global_avg_pool; dense(1) }")
    relu = ntkdsl.loads("network a(input = [5, 4]) { conv(8, kernel = 1); attention(8, mechanism = relu, pos_emb = sum); "
                        "relu; global_avg_pool; dense(1) }")
    for scale in (1e150, 1e-150, 0.0):
        for net in (softmax, relu) if scale != 1e150 else (softmax,):
            k = net.kernels(x * scale, x)
            assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    # x = 0 by hand: Σ¹ = Θ¹ = b² = 0.01 at every pixel pair, so the logits are constant and the weights
    # uniform (G = 1/P): Σ = G·Σ¹·Gᵀ + b² = 0.02, Θ = G·Θ¹·Gᵀ + b² + 2(Σ − b²) = 0.04; relu at ρ = 1:
    # Σ = 0.02/2, Θ = Θ/2; the mean pool keeps both; dense(1): Σ = 0.01, Θ = 0.01 + 0.02. Inputs of 1e-150
    # change Σ¹ by 1e-300 of it: the same numbers to rounding.
    for scale in (0.0, 1e-150):
        tiny = softmax.kernels(x * scale)
        close_to_scale(tiny.nngp, np.full((2, 2), 0.01), 1e-15)
        close_to_scale(tiny.ntk, np.full((2, 2), 0.03), 1e-15)
    big = softmax.kernels(x * 1e150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(KernelOverflowError, match="attention"):
            relu.kernels(x * 1e100, x)
    assert np.all(np.isfinite(big.ntk))


def test_one_parameterization_and_width_overrides():
    """neural-tangents' attention has one parameterization (NTK): the network's does not change its rule. The
    sampler's width override sets channels and, where they default to it, key and value channels."""
    from ntkdsl.sampler.network import override_widths

    body = "{ attention(6, heads = 2, b_std = 0.1); flatten; dense(1, parameterization = ntk) }"
    x = np.random.default_rng(3).standard_normal((3, 4, 3))
    ntk = ntkdsl.loads("network a(input = [4, 3]) " + body).kernels(x)
    standard = ntkdsl.loads("network a(input = [4, 3], parameterization = standard) " + body).kernels(x)
    np.testing.assert_array_equal(standard.ntk, ntk.ntk)
    net = ntkdsl.loads("network a(input = [4, 3]) { attention(6, value_channels = 5); attention(6); flatten; dense(1) }")
    first, second = override_widths(net.ir, 32).layers[:2]
    assert (first.channels, first.d_k, first.d_v, second.d_k) == (32, 32, 5, 32)


def test_cupy_module_on_the_cpu_standin(monkeypatch):
    """The CuPy module (the attention routines as CuPy array code) run on tests/cupy_standin.py, against
    NumPy: the same formulas, round-off apart (1e-12 of scale)."""
    import cupy_standin
    from ntkdsl.arraycode.loader import load_module

    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler for the CPU stand-in of CuPy")
    cupy_standin.install(monkeypatch)
    net = ntkdsl.loads(DATA["transformer-block"]["spec"].replace(
        "mechanism = softmax,", "mechanism = softmax, pos_emb = concat, pos_emb_decay = exp(1),"))
    assert "pos_emb = concat" in net.to_ntk()
    module = load_module(net.to_python(backend="cupy"), net.name + "-attention-standin")
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((4, 6, 4)), rng.standard_normal((3, 6, 4))
    for args in ((x,), (x, y)):
        for got, want in zip(module.kernels(*args), net.kernels(*args, backend="numpy")):
            close_to_scale(np.asarray(got), want, 1e-12)


def test_tiles_and_sweeps_agree_with_one_piece():
    """Tiles recompute each point's weights from its own variance, so a tiled request equals the one piece up to
    the order of the sums (the same per-pair statements); a hyperparameter sweep equals the spec written out."""
    text = ("network a(input = [5, 3]) {{ conv(6, kernel = 1); attention(6, w_key_std = {}, b_std = 0.1, pos_emb = sum, "
            "w_pos_emb_std = {}); relu; global_avg_pool; dense(1) }}")
    net = ntkdsl.loads(text.format(1, 1))
    x = np.random.default_rng(8).standard_normal((7, 5, 3))
    whole, tiled = net.kernels(x, backend="numpy"), net.kernels(x, backend="numpy", batch_size=3)
    close_to_scale(tiled.ntk, whole.ntk, 1e-14)  # the same statements on slices of the points
    swept = net.with_hyperparameters(w_key_std=2, w_pos_emb_std=0.5).kernels(x)
    np.testing.assert_array_equal(swept.ntk, ntkdsl.loads(text.format(2, 0.5)).kernels(x).ntk)
