"""Position masks (True = masked, neural-tangents' convention) in the kernel-flow solver, the scikit-learn
estimators and the CLI (``ntkdsl flow``, ``ntkdsl sample --mask1``): predictions at time t and t = ∞,
ensemble means and variances against the closed form of kernel-math.md §4 (Lee et al. 2019, eq. 16)
solved here in NumPy/SciPy from ``net.kernels(..., mask1=, mask2=)`` with its own solves
(numpy.linalg.solve, scipy.linalg.expm); the identity of masking (masked tails train the flow of the
sequences cut to their unmasked length; more masked padding changes nothing); the errors."""

import numpy as np
import pytest

import ntkdsl
from ntkdsl.errors import StructureSpecError
from ntkdsl.flow import KernelFlow

from oracles import flow_ensemble_cov, flow_map
from shared import close_to_scale


def spec(length):
    """Attention over [length, 3] sequences, read out by the (masked) mean over positions."""
    return f"""network att(input = [{length}, 3]) {{
    conv(8, kernel = 1, w_std = 1.2, b_std = 0.1)
    attention(8, heads = 2, b_std = 0.1)
    relu
    global_avg_pool
    dense(2, w_std = 1.1)
}}"""


SPEC = spec(6)
# The solver diagonalises K once (numpy.linalg.eigh) where the oracle solves K x = b (LU) or takes expm:
# two factorisations of a matrix of condition number κ agree to about κ·1e-16 relative; the data below has
# κ < 1e4 (asserted), so 1e-10 of the largest entry leaves a factor 100 for the products.
RTOL = 1e-10
# Two networks whose kernels agree to 1e-13 relative (the same per-pair products, masked terms dropped: the
# tiling contract of test_masks.SAME_PRODUCTS) give flows that agree to κ·1e-13 < 1e-9 (κ < 1e4, asserted).
CUT_RTOL = 1e-9


@pytest.fixture(scope="module")
def net():
    return ntkdsl.loads(SPEC)


def data(n, seed, length=6):
    """n sequences of ``length`` positions and 3 channels, each with 2 to ``length`` unmasked positions
    (a masked tail), 2 targets each."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, length, 3))
    keep = rng.integers(2, length + 1, n)
    mask = np.arange(length)[None, :] >= keep[:, None]
    return x, mask, rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def problem(net):
    x, m, y = data(8, 0)
    xt, mt, _ = data(4, 1)
    k = net.kernels(x, mask1=m)
    assert np.linalg.cond(k.ntk) < 1e4 and np.linalg.cond(k.nngp) < 1e4  # what RTOL assumes
    return x, m, y, xt, mt, k, net.kernels(xt, x, mask1=mt, mask2=m), net.kernels(xt, mask1=mt)


def test_predictions_equal_the_closed_form(net, problem):
    """f_t(x*) = Θ(x*, X) Θ⁻¹ (I − e^{−ηΘt/N}) y, f_∞(x*) = Θ(x*, X) Θ⁻¹ y (kernel-math.md §4)."""
    x, m, y, xt, mt, k, kx, _ = problem
    flow = KernelFlow(net, x, y, learning_rate=0.5, mask_train=m)
    for t in (3.0, 40.0, np.inf):
        close_to_scale(flow.predict(xt, t, mask_test=mt), flow_map(k.ntk, kx.ntk, t, 0.5) @ y, RTOL)
    close_to_scale(flow.predict_train(np.inf), y, RTOL)  # no ridge: the training targets are reached


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_ensemble_equals_the_gaussian_of_lee_et_al(net, problem, kernel):
    """mean = A y, cov = Σ(x*, x*) + A Σ Aᵀ − A Σ(X, x*) − Σ(x*, X) Aᵀ with A = K(x*, X) K⁻¹ at t = ∞
    (Lee et al. 2019, eq. 16); variances alone (compute_cov=False, the diagonal request) are its diagonal;
    at t = 20, A = Θ(x*, X) Θ⁻¹ (I − e^{−ηΘt/N})."""
    x, m, y, xt, mt, k, kx, kt = problem
    flow = KernelFlow(net, x, y, kernel=kernel, mask_train=m)
    train, cross = getattr(k, kernel), getattr(kx, kernel)
    for t in (np.inf, 20.0):
        a = flow_map(train, cross, t)
        cov = flow_ensemble_cov(a, k.nngp, kx.nngp, kt.nngp)
        mean, got = flow.ensemble(xt, t, mask_test=mt)
        close_to_scale(mean, a @ y, RTOL)
        close_to_scale(got, cov, RTOL)
        _, var = flow.ensemble(xt, t, compute_cov=False, mask_test=mt)
        close_to_scale(var, np.diag(cov), RTOL)


def test_diagonal_request_takes_the_test_masks(net, problem, monkeypatch):
    """compute_cov=False asks net.kernels for the diagonal with the test masks, never the full test kernel."""
    x, m, y, xt, mt, _, _, _ = problem
    flow = KernelFlow(net, x, y, mask_train=m)
    calls = []
    real = net.kernels

    def spy(x1, x2=None, **options):
        calls.append((x2 is None, options.get("diagonal", False), options.get("mask1") is not None))
        return real(x1, x2, **options)

    monkeypatch.setattr(net, "kernels", spy)
    flow.ensemble(xt, np.inf, compute_cov=False, mask_test=mt)
    assert (True, True, True) in calls and (True, False, True) not in calls


def test_masked_tails_train_the_flow_of_the_cut_sequences(net):
    """Sequences of 4 positions padded to 6 with a masked tail: the flow (predictions, ensemble) is that of
    the network on [4, 3] inputs cut to the 4 positions, whatever the padding holds; with varied lengths,
    a seventh masked position everywhere changes nothing (masked positions are not there)."""
    rng = np.random.default_rng(3)
    x, xt, y = rng.standard_normal((8, 6, 3)), rng.standard_normal((3, 6, 3)), rng.standard_normal((8, 2))
    m, mt = np.zeros((8, 6), bool), np.zeros((3, 6), bool)
    m[:, 4:], mt[:, 4:] = True, True
    cut = ntkdsl.loads(spec(4))
    assert np.linalg.cond(cut.kernels(x[:, :4]).ntk) < 1e4  # what CUT_RTOL assumes
    short = KernelFlow(cut, x[:, :4], y)
    padded = KernelFlow(net, x + 50.0 * m[..., None], y, mask_train=m)  # the padding's values: never read
    for t in (5.0, np.inf):
        close_to_scale(padded.predict(xt, t, mask_test=mt), short.predict(xt[:, :4], t), CUT_RTOL)
        for got, want in zip(padded.ensemble(xt, t, mask_test=mt), short.ensemble(xt[:, :4], t)):
            close_to_scale(got, want, CUT_RTOL)
    x, m, y = data(8, 4)
    xt, mt, _ = data(3, 5)
    longer = ntkdsl.loads(spec(7))
    pad = lambda a: np.concatenate([a, np.ones(a.shape[:1] + (1,) + a.shape[2:], a.dtype)], axis=1)  # noqa: E731
    close_to_scale(KernelFlow(longer, pad(x), y, mask_train=pad(m)).predict(pad(xt), np.inf, mask_test=pad(mt)),
                   KernelFlow(net, x, y, mask_train=m).predict(xt, np.inf, mask_test=mt), CUT_RTOL)


def test_a_side_without_masks_is_refused_and_all_false_masks_are_unmasked(net, problem):
    """mask_test left out after a masked fit: refused (the test points' padding would be read as data); all-False
    test masks give the closed form with unmasked test points."""
    x, m, y, xt, _, k, _, _ = problem
    kx = net.kernels(xt, x, mask1=np.zeros((4, 6), bool), mask2=m)
    flow = KernelFlow(net, x, y, mask_train=m)
    close_to_scale(flow.predict(xt, np.inf, mask_test=np.zeros((4, 6), bool)), kx.ntk @ np.linalg.solve(k.ntk, y), RTOL)
    with pytest.raises(ValueError, match="one set of points only"):
        flow.predict(xt, np.inf)
    pytest.importorskip("sklearn")
    from ntkdsl.sklearn import NTKRegressor

    reg = NTKRegressor(spec=SPEC).fit(x.reshape(8, -1), y, mask=m)
    with pytest.raises(ValueError, match="one set of points only"):
        reg.predict(xt.reshape(4, -1))


def test_sklearn_estimators_take_masks(net, problem):
    """NTKRegressor at t = ∞ is kernel ridge regression: Θ(x*, X)(Θ + σI)⁻¹ y, σ = diag_reg·tr Θ/N; the
    classifier's argmax of the same solve on centred one-hot targets."""
    pytest.importorskip("sklearn")
    from ntkdsl.sklearn import NTKClassifier, NTKRegressor

    x, m, y, xt, mt, k, kx, _ = problem
    reg = NTKRegressor(spec=SPEC, diag_reg=1e-3).fit(x.reshape(8, -1), y, mask=m)
    ridge = 1e-3 * np.trace(k.ntk) / 8
    close_to_scale(reg.predict(xt.reshape(4, -1), mask=mt), kx.ntk @ np.linalg.solve(k.ntk + ridge * np.eye(8), y),
                   RTOL)
    labels = np.arange(8) % 2
    clf = NTKClassifier(spec=SPEC, diag_reg=1e-3).fit(x.reshape(8, -1), labels, mask=m)
    f = kx.ntk @ np.linalg.solve(k.ntk + ridge * np.eye(8), np.eye(2)[labels] - 0.5)
    assert np.all(np.abs(f[:, 1] - f[:, 0]) > 1e-6)  # no tie for the argmax to break by round-off
    np.testing.assert_array_equal(clf.predict(xt.reshape(4, -1), mask=mt), np.argmax(f, axis=1))
    close_to_scale(clf.decision_function(xt.reshape(4, -1), mask=mt), f[:, 1] - f[:, 0], RTOL)
    with pytest.raises(ValueError, match=r"mask has shape \(4, 5\)"):
        reg.predict(xt.reshape(4, -1), mask=mt[:, :5])


def test_mask_errors(net, problem):
    x, m, y, xt, mt, k, _, _ = problem
    with pytest.raises(ValueError, match=r"mask_train has shape \(8, 5\).*positions \(6,\)"):
        KernelFlow(net, x, y, mask_train=m[:, :5])
    flow = KernelFlow(net, x, y, mask_train=m)
    with pytest.raises(ValueError, match="mask_test holds 8 masks but x_test has 4 points"):
        flow.predict(xt, np.inf, mask_test=m)
    full = mt.copy()
    full[2] = True
    with pytest.raises(ValueError, match="every position of point 2 of x_test is masked"):
        flow.ensemble(xt, np.inf, mask_test=full)
    conv = ntkdsl.loads("network c(input = [6, 3]) { conv(4, kernel = 2); relu; flatten; dense(1) }")
    with pytest.raises(StructureSpecError, match="cannot take position masks"):
        KernelFlow(conv, x, y[:, 0], mask_train=m)
    given = KernelFlow.from_kernels(k.ntk, y)
    with pytest.raises(ValueError, match="mask_test goes with test inputs.*built from kernels"):
        given.predict(np.zeros((4, 8)), np.inf, mask_test=mt)


def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of ``ntkdsl ARGV``."""
    from ntkdsl.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_flow_command_reads_masks_from_its_files(net, problem, tmp_path, capsys):
    """``ntkdsl flow``: arrays x, y, mask in --train, x, mask in --test; the predictions at t = ∞ are the
    closed form Θ(x*, X) Θ⁻¹ y; a mask for a network that cannot take one, or of a wrong shape: exit 2."""
    x, m, y, xt, mt, k, kx, _ = problem
    path = tmp_path / "att.ntk"
    path.write_text(SPEC)
    np.savez(tmp_path / "train.npz", x=x, y=y, mask=m)
    np.savez(tmp_path / "test.npz", x=xt, mask=mt)
    out = tmp_path / "flow.npz"
    status, _, err = run_cli(["flow", path, "--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
                              "--times", "0,inf", "-o", out], capsys)
    assert status == 0, err
    close_to_scale(np.load(out)["test_pred"][1], kx.ntk @ np.linalg.solve(k.ntk, y), RTOL)
    np.savez(tmp_path / "short.npz", x=xt, mask=mt[:, :5])
    conv = tmp_path / "conv.ntk"
    conv.write_text("network c(input = [6, 3]) { conv(4, kernel = 2); relu; flatten; dense(2) }")
    for argv, message in (([path, "--train", tmp_path / "train.npz", "--test", tmp_path / "short.npz"],
                           "mask in '" + str(tmp_path / "short.npz") + "' has shape (4, 5)"),
                          ([conv, "--train", tmp_path / "train.npz"], "holds an array mask, but")):
        status, _, err = run_cli(["flow", *argv, "-o", tmp_path / "bad.npz"], capsys)
        assert status == 2 and err.startswith("ntkdsl: error: ") and message in err, err
        assert not (tmp_path / "bad.npz").exists()
    assert "cannot take position masks" in err and "conv(4, kernel = 2" in err  # the layer, located


def test_sample_command_takes_masks(net, tmp_path, capsys):
    """``ntkdsl sample --mask1``: its errors are those of ntkdsl.monte_carlo with the same masks and seed
    against net.kernels with them (the report's definition); --mask1 without --x1: a clear error."""
    x, m, _ = data(3, 7)
    path = tmp_path / "att.ntk"
    path.write_text(SPEC)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "m.npy", m)
    out = tmp_path / "sample.npz"
    status, _, err = run_cli(["sample", path, "--x1", tmp_path / "x.npy", "--mask1", tmp_path / "m.npy",
                              "--widths", "16", "--samples", "2", "-o", out], capsys)
    assert status == 0, err
    mc = ntkdsl.monte_carlo(net, x, width=16, n_samples=2, seed=0, mask1=m)
    exact = net.with_width(16).kernels(x, mask1=m)
    expected = np.linalg.norm(mc.ntk - exact.ntk) / np.linalg.norm(exact.ntk)
    np.testing.assert_allclose(np.load(out)["ntk_error"][0], expected, rtol=1e-12)  # the same draws, summed alike
    unmasked = ntkdsl.monte_carlo(net, x, width=16, n_samples=2, seed=0)
    assert np.abs(unmasked.ntk - mc.ntk).max() > 1e-3 * np.abs(mc.ntk).max()  # the masks reached the draws
    for argv, message in ((["--mask1", tmp_path / "m.npy"], "--mask1 goes with --x1"),
                          (["--x1", tmp_path / "x.npy", "--mask1", tmp_path / "x.npy"], "--mask1 in")):
        status, _, err = run_cli(["sample", path, "--widths", "8", "--samples", "2", *argv], capsys)
        assert status == 2 and err.startswith("ntkdsl: error: ") and message in err, err


def test_finite_training_on_masked_tails_is_training_on_the_cut_sequences(net):
    """fnet.train(x, y, mask=): gradient descent on sequences padded with a masked tail (garbage there) is
    gradient descent on the sequences cut to their unmasked length (the same draw: no parameter depends on
    the length), step by step: losses, outputs, probe outputs and the NTK drift."""
    rng = np.random.default_rng(6)
    x, probe, y = rng.standard_normal((5, 6, 3)), rng.standard_normal((2, 6, 3)), rng.standard_normal((5, 2))
    m, pm = np.zeros((5, 6), bool), np.zeros((2, 6), bool)
    m[:, 4:], pm[:, 4:] = True, True
    padded, cut = net.finite(width=16, seed=2), ntkdsl.loads(spec(4)).finite(width=16, seed=2)
    for a, b in zip(padded.params, cut.params):  # one draw for both lengths
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    got = padded.train(x + 50.0 * m[..., None], y, learning_rate=0.5, steps=6, record_every=2,
                       probe=probe, mask=m, probe_mask=pm)
    want = cut.train(x[:, :4], y, learning_rate=0.5, steps=6, record_every=2, probe=probe[:, :4])
    # the same products with the masked terms dropped (zeros added): a few ulps per step, 1e-12 after 6 steps
    for field in ("loss", "train_outputs", "probe_outputs", "ntk_drift"):
        close_to_scale(getattr(got, field), getattr(want, field), 1e-12)
    unmasked = net.finite(width=16, seed=2).train(x, y, learning_rate=0.5, steps=6)
    assert abs(unmasked.loss[-1] - want.loss[-1]) > 1e-3 * want.loss[0]  # the masks reach the training
    with pytest.raises(ValueError, match="probe_mask goes with probe"):
        padded.train(x, y, steps=1, mask=m, probe_mask=pm)
    conv = ntkdsl.loads("network c(input = [6, 3]) { conv(4, kernel = 2); relu; flatten; dense(2) }")
    with pytest.raises(StructureSpecError, match="cannot take position masks"):
        conv.finite(width=4).train(x, y, steps=1, mask=m)
