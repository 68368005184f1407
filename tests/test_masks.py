"""Per-input position masks (``net.kernels(x1, x2, mask1=, mask2=)``, neural-tangents' masking, True =
masked): against neural-tangents 0.6.5 (tests/data/nt_new_layers.json, masks stored with each case), a
NumPy kernel written here from the rules, inputs truncated to their unmasked positions (a network of
per-position layers must not see masked positions at all), tiles (in memory, streamed, dask) against
one piece, diagonal=True, the unmasked program left alone, the CLI and the errors."""

import json
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.cli.main import main
from ntkdsl.codegen.dispatch import BackendFallbackWarning
from ntkdsl.errors import StructureSpecError
from ntkdsl.masks import masked_network

from shared import assert_agrees_with_neural_tangents, close_to_scale

DATA = json.loads((Path(__file__).resolve().parent / "data" / "nt_new_layers.json").read_text())["architectures"]
CASES = ["masked-layer-norm-gap", "masked-residual-dropout-2d", "masked-sin-flatten-standard",
         "masked-parallel-sin-flatten", "attention-softmax-masked", "attention-relu-masked",
         "transformer-block-masked-pos-emb"]
# 1e-13 where two evaluations of the same program differ only in how the pairs are grouped (tiles) or in
# dropped masked rows: the same per-pair products, a few ulps apart (the tiling contract)
SAME_PRODUCTS = 1e-13


def case(name):
    ref = DATA[name]
    return (ntkdsl.loads(ref["spec"]), np.asarray(ref["x1"]), np.asarray(ref["x2"]), np.asarray(ref["mask1"]),
            np.asarray(ref["mask2"]), ref)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", CASES)
def test_agrees_with_neural_tangents(name, backend):
    net, x1, x2, m1, m2, ref = case(name)
    if backend == "numba":  # the fused kernels lack masks: NumPy runs, with a warning saying so
        pytest.importorskip("numba")
        with pytest.warns(BackendFallbackWarning, match="position masks"):
            k = net.kernels(x1, x2, backend=backend, mask1=m1, mask2=m2)
    else:
        k = net.kernels(x1, x2, backend=backend, mask1=m1, mask2=m2)
    assert_agrees_with_neural_tangents(k, net.kernels(x1, mask1=m1) if "nngp_11" in ref else None, ref)


def _relu(s, q1, q2):
    """E[relu(u)relu(v)] and E[relu'(u)relu'(v)], (u, v) centred Gaussian (Cho & Saul 2009); 0 where a
    variance is 0 (a masked position)."""
    norm = np.sqrt(q1 * q2)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.arccos(np.clip(np.where(norm > 0, s / norm, 0), -1, 1))
    return norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


def _hand_layer_norm_network(x1, m1, x2, m2, eps, b, nt_eps):
    """conv(C, kernel = 1, b_std = b) → layer_norm(spatial_and_channels, eps) → relu → global_avg_pool →
    dense(1), NTK parameterization, masks as kernel-math.md §2 states them: x zeroed at masked positions,
    Σ¹ = x(p)·x′(p′)/C + b² remasked (k(p)k′(p′)Σ¹, Θ¹ = Σ¹), layer norm by eps + the mean pixel variance
    over the unmasked positions (``nt_eps``: neural-tangents' kernel, eps added to every pixel variance before
    its masked mean, so (P·eps + Σ_p q(p))/n), relu per pixel pair, the mean over the unmasked pairs."""
    k1, k2 = ~m1, ~m2
    x1, x2 = x1 * k1[..., None], x2 * k2[..., None]

    def affine(a, c, ka, kc):  # (Na, Nc, P, P′)
        s = np.einsum("ipc,jqc->ijpq", a, c) / a.shape[-1] + b ** 2
        return s * ka[:, None, :, None] * kc[None, :, None, :]

    s12 = affine(x1, x2, k1, k2)
    q1, q2 = (np.einsum("iipp->ip", affine(x, x, k, k)) for x, k in ((x1, k1), (x2, k2)))
    n1, n2 = k1.sum(1), k2.sum(1)
    mean1, mean2 = ((q.sum(1) + q.shape[1] * eps) / n if nt_eps else eps + q.sum(1) / n for q, n in ((q1, n1), (q2, n2)))
    s = s12 / np.sqrt(np.multiply.outer(mean1, mean2))[:, :, None, None]
    v1, v2 = q1 / mean1[:, None], q2 / mean2[:, None]
    nngp, dot = _relu(s, v1[:, None, :, None], v2[None, :, None, :])
    ntk = s * dot  # Θ² = Σ² (one affine layer, then the normalisation), times Σ̇
    pairs = k1[:, None, :, None] * k2[None, :, None, :]
    gap = lambda a: (a * pairs).sum((2, 3)) / np.multiply.outer(n1, n2)  # noqa: E731
    return gap(nngp), gap(nngp) + gap(ntk)  # the readout dense(1): Θ = Σ + Θ


def test_layer_norm_over_space_matches_the_hand_rule_and_names_neural_tangents_eps():
    """The hand kernel of the masked rules is ntkdsl's; the same hand kernel with neural-tangents' eps
    (added to masked pixel variances too) is the stored neural-tangents one, so the two differ only there
    (by eps·(P/n − 1) in the normaliser; with the default eps 1e-12 below 1e-12 of scale)."""
    net, x1, x2, m1, m2, ref = case("masked-layer-norm-eps-quirk")
    k = net.kernels(x1, x2, mask1=m1, mask2=m2)
    ours = _hand_layer_norm_network(x1, m1, x2, m2, 0.5, 0.4, nt_eps=False)
    theirs = _hand_layer_norm_network(x1, m1, x2, m2, 0.5, 0.4, nt_eps=True)
    # the hand formulas take the same products in another order: 1e-13 of scale
    close_to_scale(k.nngp, ours[0], 1e-13)
    close_to_scale(k.ntk, ours[1], 1e-13)
    close_to_scale(np.asarray(ref["nngp"]), theirs[0], 1e-13)
    close_to_scale(np.asarray(ref["ntk"]), theirs[1], 1e-13)
    assert np.abs(ours[0] - theirs[0]).max() > 1e-3  # the case shows the difference


TRUNCATION_SPEC = """network t(input = [{L}, 3]) {{
    conv(8, kernel = 1, w_std = 1.2, b_std = 0.3); layer_norm(axes = spatial_and_channels, eps = 0.2); erf
    conv(8, kernel = 1, b_std = 0.1); residual {{ relu; dropout(0.7); conv(8, kernel = 1) }}; layer_norm
    residual {{ attention(8, heads = 2, pos_emb = sum, pos_emb_decay = exp(0.3), b_std = 0.1) }}; layer_norm
    sin(c = 0.4); conv(4, kernel = 1, b_std = 0.2); relu; {pool}; dense(1, b_std = 0.1) }}"""


@pytest.mark.parametrize("pool", ["global_avg_pool", "global_sum_pool", "flatten"])
def test_masked_tails_are_the_kernels_of_the_truncated_inputs(pool):
    """Per-position layers never mix positions and attention gives masked keys no weight, so points whose
    last positions are masked have the kernels of the same points cut to their unmasked length (a network
    with a shorter input; the positional covariance R(p, p′) depends on p − p′ only), whatever their
    masked entries hold (flatten divides by the pixel count: P′/P of the truncated kernel)."""
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((3, 7, 3)), rng.standard_normal((2, 7, 3))
    m1, m2 = np.zeros((3, 7), bool), np.zeros((2, 7), bool)
    m1[:, 5:], m2[:, 5:] = True, True
    x1[:, 5:] *= 100.0  # anything at masked positions
    masked = ntkdsl.loads(TRUNCATION_SPEC.format(L=7, pool=pool))
    short = ntkdsl.loads(TRUNCATION_SPEC.format(L=5, pool=pool))
    scale = 5 / 7 if pool == "flatten" else 1.0
    b2 = 0.1 ** 2  # the readout's bias variance, which the flattened kernel's P′/P does not scale
    for got, want in ((masked.kernels(x1, x2, mask1=m1, mask2=m2), short.kernels(x1[:, :5], x2[:, :5])),
                      (masked.kernels(x1, mask1=m1), short.kernels(x1[:, :5]))):
        close_to_scale(got.nngp, scale * (want.nngp - b2) + b2, SAME_PRODUCTS)
        close_to_scale(got.ntk, scale * (want.ntk - b2) + b2, SAME_PRODUCTS)


def test_no_masked_position_is_the_unmasked_kernel_and_its_module_stays():
    """All-False masks give the network's own kernels (the masked program's remasks multiply by 1), and
    evaluating with masks leaves the unmasked program and its generated module as they were."""
    net, x1, x2, _, _, _ = case("masked-residual-dropout-2d")
    source = net.to_python()
    plain = net.kernels(x1, x2)
    k = net.kernels(x1, x2, mask1=np.zeros(x1.shape[:-1], bool), mask2=np.zeros(x2.shape[:-1], bool))
    close_to_scale(k.nngp, plain.nngp, SAME_PRODUCTS)
    close_to_scale(k.ntk, plain.ntk, SAME_PRODUCTS)
    assert net.to_python() == source and "mask" not in source and not net.program.masked
    twin = masked_network(net)
    assert twin.program.masked and "mask1=None, mask2=None" in twin.to_python()


def test_tiles_and_disk_slice_the_masks_with_their_points(tmp_path):
    """Tiles in memory and streamed to disk equal one piece; equal rows with other masks are other points."""
    net, x1, x2, m1, m2, _ = case("masked-layer-norm-gap")
    x1, m1 = np.concatenate([x1, x1]), np.concatenate([m1, m1[::-1]])
    whole, whole11 = net.kernels(x1, x2, mask1=m1, mask2=m2), net.kernels(x1, mask1=m1)
    for k, ref in ((net.kernels(x1, x2, mask1=m1, mask2=m2, batch_size=2), whole),
                   (net.kernels(x1, mask1=m1, batch_size=2), whole11),
                   (net.kernels_to_disk(x1, x2, tmp_path / "a", batch_size=2, mask1=m1, mask2=m2, progress=False), whole),
                   (net.kernels_to_disk(x1, None, tmp_path / "b", batch_size=4, mask1=m1, progress=False), whole11)):
        close_to_scale(k.nngp, ref.nngp, SAME_PRODUCTS)
        close_to_scale(k.ntk, ref.ntk, SAME_PRODUCTS)
    assert not np.isclose(whole11.nngp[0, 0], whole11.nngp[3, 3])  # x equal, masks not
    other = m1.copy()
    other[0, 0] = not other[0, 0]
    with pytest.raises(ntkdsl.streaming.ResumeMismatchError, match="mask1"):
        net.kernels_to_disk(x1, None, tmp_path / "b", batch_size=4, mask1=other, progress=False)


@pytest.mark.slow
def test_dask_tiles_carry_their_masks(tmp_path):
    from ntkdsl import distributed

    net, x1, x2, m1, m2, _ = case("masked-sin-flatten-standard")
    client = distributed.local_client(2, dashboard_address=":0")
    try:
        k = distributed.kernels(net, x1, x2, tmp_path / "a.zarr", client, tile=2, mask1=m1, mask2=m2, progress=False)
        k11 = distributed.kernels(net, x1, None, tmp_path / "b.zarr", client, tile=2, mask1=m1, progress=False)
    finally:
        client.close()
    for got, want in ((k, net.kernels(x1, x2, mask1=m1, mask2=m2)), (k11, net.kernels(x1, mask1=m1))):
        close_to_scale(np.asarray(got.nngp), want.nngp, SAME_PRODUCTS)
        close_to_scale(np.asarray(got.ntk), want.ntk, SAME_PRODUCTS)


def test_diagonal_requests_use_each_points_mask():
    net, x1, _, m1, _, _ = case("masked-parallel-sin-flatten")
    d, full = net.kernels(x1, mask1=m1, diagonal=True), net.kernels(x1, mask1=m1)
    np.testing.assert_array_equal(d.nngp, np.diagonal(full.nngp))  # the same statements on the same numbers
    np.testing.assert_array_equal(d.ntk, np.diagonal(full.ntk))


@pytest.mark.parametrize("spec, message", [
    ("network n(input = [5, 2]) { conv(4, kernel = 3, padding = same); relu; global_avg_pool; dense(1) }",
     r"<string>:1:29: error: conv\(4, kernel = \(3,\).*cannot take position masks"),
    ("network n(input = [5, 2]) { conv(4, kernel = 1); residual { relu; conv(4, kernel = 2, padding = same) }; "
     "flatten; dense(1) }", r"<string>:1:67: error: conv\(4, kernel = \(2,\).*cannot take position masks"),
    ("network n(input = 5) { dense(4); relu; dense(1) }", "vector input"),
])
def test_networks_that_cannot_take_masks_say_where(spec, message):
    net = ntkdsl.loads(spec)
    x = np.ones((2,) + tuple(net.ir.input_shape))
    with pytest.raises(StructureSpecError, match=message):
        net.kernels(x, mask1=np.zeros(x.shape[:-1], bool))


@pytest.mark.parametrize("kwargs, message", [
    (dict(mask1=np.zeros((3, 5), bool)), r"mask1 has shape \(3, 5\).*\(N, 6\)"),
    (dict(mask1=np.zeros((2, 6), bool)), "mask1 holds 2 masks but x1 has 3 points"),
    (dict(mask1=np.full((3, 6), 0.5)), "dtype float64: a mask is boolean"),
    (dict(mask1=np.full((3, 6), 2)), "integers other than 0 and 1"),
    (dict(mask1=np.ones((3, 6), bool)), "every position of point 0 of x1 is masked"),
    (dict(mask2=np.zeros((3, 6), bool)), "mask1 is missing"),
    (dict(mask1=np.zeros((3, 6), bool), mask2=np.zeros((3, 6), bool)), "mask2 is given without x2"),
])
def test_bad_masks_are_refused_clearly(kwargs, message):
    x = np.zeros((3, 6, 4))
    net = ntkdsl.loads("network n(input = [6, 4]) { conv(4, kernel = 1); relu; global_avg_pool; dense(1) }")
    with pytest.raises(ValueError, match=message):
        net.kernels(x, **kwargs)


def test_nan_padding_at_masked_positions_is_refused_with_a_hint():
    net = ntkdsl.loads("network n(input = [6, 4]) { conv(4, kernel = 1); relu; global_avg_pool; dense(1) }")
    x, mask = np.zeros((3, 6, 4)), np.zeros((3, 6), bool)
    x[:, 4:], mask[:, 4:] = np.nan, True
    with pytest.raises(ValueError, match="masked positions too: pad them with 0"):
        net.kernels(x, mask1=mask)


def test_x2_needs_its_masks():
    net = ntkdsl.loads("network n(input = [6, 4]) { conv(4, kernel = 1); relu; global_avg_pool; dense(1) }")
    with pytest.raises(ValueError, match="pass its points' masks as mask2="):
        net.kernels(np.ones((2, 6, 4)), np.ones((1, 6, 4)), mask1=np.zeros((2, 6), bool))


def test_cli_reads_masks_and_refuses_bad_ones(tmp_path, capsys):
    net, x1, x2, m1, m2, ref = case("masked-layer-norm-gap")
    spec = tmp_path / "m.ntk"
    spec.write_text(ref["spec"])
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "x2.npy", x2)
    np.save(tmp_path / "m1.npy", m1)
    np.savez(tmp_path / "m2.npz", mask=m2)
    out = tmp_path / "k.npz"
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.npy"),
                 "--mask1", str(tmp_path / "m1.npy"), "--mask2", str(tmp_path / "m2.npz"), "--out", str(out)]) == 0
    with np.load(out) as k:
        assert_agrees_with_neural_tangents(type("K", (), {"nngp": k["nngp"], "ntk": k["ntk"]}), None, ref)
    capsys.readouterr()
    np.save(tmp_path / "bad.npy", m1[:, :3])
    for args, message in ((["--x1", "x1.npy", "--mask1", "bad.npy"], "has shape (3, 3)"),
                          (["--x1", "x1.npy", "--x2", "x2.npy", "--mask1", "m1.npy"], "--mask2"),
                          (["--x1", "x1.npy", "--mask2", "m1.npy"], "--mask2 goes with --x2")):
        assert main(["eval", str(spec)] + [a if a.startswith("--") else str(tmp_path / a) for a in args]) == 2
        assert message in capsys.readouterr().err


def test_monte_carlo_over_finite_masked_networks():
    """A linear network (two conv(kernel = 1) with biases, average pool over the unmasked pixels, dense):
    products of independent Gaussian weights, so the expected empirical kernels equal the analytic ones at
    any width; 5 standard errors (a 1-in-10⁶ two-sided miss for one entry under the normal approximation)."""
    net = ntkdsl.loads("network m(input = [5, 2]) { conv(16, kernel = 1, w_std = 1.2, b_std = 0.3); "
                       "conv(16, kernel = 1, b_std = 0.2); global_avg_pool; dense(1) }")
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((2, 5, 2)), rng.standard_normal((3, 5, 2))
    m1, m2 = np.zeros((2, 5), bool), np.zeros((3, 5), bool)
    m1[0, 3:], m1[1, 0], m2[1, 1:] = True, True, True
    x1[m1] += 4.0  # large masked entries: the unmasked kernel differs much (the power check below)
    x2[m2] += 4.0
    k = net.kernels(x1, x2, mask1=m1, mask2=m2)
    mc = ntkdsl.monte_carlo(net, x1, x2, width=16, n_samples=300, mask1=m1, mask2=m2)
    assert np.all(np.abs(mc.nngp - k.nngp) <= 5 * mc.nngp_stderr)
    assert np.all(np.abs(mc.ntk - k.ntk) <= 5 * mc.ntk_stderr)
    plain = net.kernels(x1, x2)  # power: the masks matter
    assert np.any(np.abs(mc.ntk - plain.ntk) > 5 * mc.ntk_stderr)


class _Masked:
    """A finite network whose ``apply`` takes the masks ``mask`` (for tests/oracles.fd_jacobian)."""

    def __init__(self, fnet, mask):
        self.fnet, self.mask = fnet, mask

    def flat_params(self):
        return self.fnet.flat_params()

    def set_flat_params(self, theta):
        self.fnet.set_flat_params(theta)

    def apply(self, x):
        return self.fnet.apply(x, mask=self.mask)


def test_finite_masked_gradients_match_finite_differences():
    """Masked layer norm over space, attention with masked keys and embeddings, masked mean pooling: the
    Jacobian of the backward rules against central differences, and the structured NTK against it."""
    from oracles import fd_jacobian

    net = ntkdsl.loads("""network m(input = [5, 2]) {
        conv(6, kernel = 1, b_std = 0.4); layer_norm(axes = spatial_and_channels, eps = 0.1); relu
        conv(6, kernel = 1, b_std = 0.2)
        residual { attention(6, heads = 2, mechanism = identity, pos_emb = concat, pos_emb_channels = 3, b_std = 0.1) }
        layer_norm; erf; global_avg_pool; dense(2) }""")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 2))
    m = np.zeros((3, 5), bool)
    m[0, 3:], m[1, 1], m[2, 0] = True, True, True
    f = net.finite(seed=4)
    jac = f.jacobian(x, mask=m)
    # central differences, h = 1e-5: truncation and round-off both ≈ 2e-11 (tests/oracles.fd_jacobian)
    np.testing.assert_allclose(jac, fd_jacobian(_Masked(f, m), x), atol=1e-8)
    y = f.apply(x, mask=m)
    x_other = x.copy()
    x_other[m] = 50.0  # masked entries are not read
    np.testing.assert_array_equal(f.apply(x_other, mask=m), y)
    # the same sums contracted in two orders (structured terms vs explicit Jacobian rows): a few ulps per product
    np.testing.assert_allclose(f.ntk(x, mask1=m), f.ntk(x, mask1=m, method="jacobian"), rtol=1e-12)


@pytest.mark.slow
def test_monte_carlo_over_finite_masked_attention():
    """NT's masked softmax-attention case at width 256: each entry within 4.5 standard errors (a normal tail
    of 7e-6 per entry) plus 2 % of the kernel's scale for the finite network's O(1/n) bias (softmax of LLN
    averages; tests/test_attention.py states the same allowance; this case stayed within 3.1 standard
    errors in our run); the unmasked NTK is rejected (power; one draw's NNGP is too noisy for that). ~25 s."""
    net, x1, x2, m1, m2, _ = case("attention-softmax-masked")
    mc = ntkdsl.monte_carlo(net, x1, x2, width=256, n_samples=60, mask1=m1, mask2=m2)
    k, plain = net.kernels(x1, x2, mask1=m1, mask2=m2), net.kernels(x1, x2)
    for got, se, want in ((mc.nngp, mc.nngp_stderr, k.nngp), (mc.ntk, mc.ntk_stderr, k.ntk)):
        allowance = 4.5 * se + 0.02 * np.abs(want).max()
        assert np.all(np.abs(got - want) <= allowance), (got - want) / se
    assert np.any(np.abs(mc.ntk - plain.ntk) > 4.5 * mc.ntk_stderr + 0.02 * np.abs(k.ntk).max())


def test_spatial_outputs_are_zero_at_masked_positions():
    """readout = none, ending in an activation with σ(0) ≠ 0: the output kernels at masked positions are 0
    (neural-tangents remasks sin; a finite network's masked outputs are 0), the others those of the inputs
    cut to their unmasked length (the truncation argument above)."""
    spec = ("network m(input = [{L}, 2], readout = none) {{ conv(4, kernel = 1, b_std = 0.3); sin(c = 0.5); "
            "conv(3, kernel = 1, b_std = 0.2); sin(c = 0.7) }}")
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 6, 2)), rng.standard_normal((3, 6, 2))
    m1, m2 = np.zeros((2, 6), bool), np.zeros((3, 6), bool)
    m1[:, 4:], m2[:, 4:] = True, True
    k = ntkdsl.loads(spec.format(L=6)).kernels(x1, x2, mask1=m1, mask2=m2)
    short = ntkdsl.loads(spec.format(L=4)).kernels(x1[:, :4], x2[:, :4])
    for got, want in ((k.nngp, short.nngp), (k.ntk, short.ntk)):
        np.testing.assert_array_equal(got[..., 4:], 0.0)
        close_to_scale(got[..., :4], want, SAME_PRODUCTS)
    f = ntkdsl.loads(spec.format(L=6)).finite(seed=0)
    np.testing.assert_array_equal(f.apply(x1, mask=m1)[:, 4:], 0.0)


def test_cupy_module_on_the_cpu_standin(monkeypatch):
    """The masked CuPy module (the mask routines and attention's masked keys as CuPy array code) on
    tests/cupy_standin.py, against NumPy: the same formulas, round-off apart (1e-12 of scale)."""
    import cupy_standin
    from ntkdsl.arraycode.loader import load_module

    if cupy_standin.CXX is None:
        pytest.skip("no C++ compiler for the CPU stand-in of CuPy")
    cupy_standin.install(monkeypatch)
    net, x1, x2, m1, m2, _ = case("transformer-block-masked-pos-emb")
    twin = masked_network(net)
    module = load_module(twin.to_python(backend="cupy"), net.name + "-masked-standin")
    for args, masks in (((x1,), dict(mask1=m1)), ((x1, x2), dict(mask1=m1, mask2=m2))):
        for got, want in zip(module.kernels(*args, **masks), net.kernels(*args, backend="numpy", **masks)):
            close_to_scale(np.asarray(got), want, 1e-12)


def test_an_overflow_names_the_masks():
    net = ntkdsl.loads("network e(input = [4, 2]) { conv(6, kernel = 1); exp; conv(4, kernel = 1); exp; "
                       "global_avg_pool; dense(1) }")
    m = np.zeros((2, 4), bool)
    m[0, 2:] = True
    with pytest.raises(ntkdsl.codegen.overflow.KernelOverflowError, match="at these inputs and masks"):
        net.kernels(np.full((2, 4, 2), 60.0), mask1=m)
