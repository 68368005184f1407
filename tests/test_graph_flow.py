"""Graph networks (``aggregate``) in the kernel-flow solver and the scikit-learn estimators: predictions
at time t and t = ∞, ensemble means and variances, each against the closed form of kernel-math.md §4
(Lee et al. 2019, eq. 16) computed here in NumPy/SciPy from ``net.kernels(..., graph1=, graph2=)``, with
its own solves (numpy.linalg.solve, scipy.linalg.expm) instead of the flow's eigendecomposition; and the
errors for graphs missing or not wanted."""

import numpy as np
import pytest

import ntkdsl
from ntkdsl.flow import KernelFlow

from oracles import flow_ensemble_cov, flow_map
from shared import close_to_scale

SPEC = """network gnn(input = [5, 3]) {
    conv(16, kernel = 1, w_std = 1.2, b_std = 0.1)
    aggregate
    relu
    conv(16, kernel = 1, w_std = 1.2, b_std = 0.1)
    aggregate
    relu
    global_avg_pool
    dense(2, w_std = 1.1)
}"""
# The solver diagonalises K once (numpy.linalg.eigh) where the oracle solves K x = b (LU) or takes expm:
# two factorisations of a matrix of condition number κ agree to about κ·1e-16 relative; the data
# below has κ < 1e4 (asserted), so 1e-10 of the largest entry leaves a factor 100 for the products.
RTOL = 1e-10


@pytest.fixture(scope="module")
def net():
    return ntkdsl.loads(SPEC)


def data(n, seed):
    """n points of 5 nodes and 3 channels, random weighted adjacencies with self loops, 2 targets each."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5, 3))
    g = (rng.random((n, 5, 5)) < 0.4) * rng.uniform(0.5, 1.0, (n, 5, 5)) + np.eye(5)
    return x, g, rng.standard_normal((n, 2))


@pytest.fixture(scope="module")
def problem(net):
    x, g, y = data(8, 0)
    xt, gt, _ = data(4, 1)
    k = net.kernels(x, graph1=g)
    assert np.linalg.cond(k.ntk) < 1e4 and np.linalg.cond(k.nngp) < 1e4  # what RTOL assumes
    return x, g, y, xt, gt, k, net.kernels(xt, x, graph1=gt, graph2=g), net.kernels(xt, graph1=gt)


def test_predictions_equal_the_closed_form(net, problem):
    """f_t(x*) = Θ(x*, X) Θ⁻¹ (I − e^{−ηΘt/N}) y, f_∞(x*) = Θ(x*, X) Θ⁻¹ y (kernel-math.md §4)."""
    x, g, y, xt, gt, k, kx, _ = problem
    flow = KernelFlow(net, x, y, learning_rate=0.5, graph_train=g)
    for t in (3.0, 40.0, np.inf):
        close_to_scale(flow.predict(xt, t, graph_test=gt), flow_map(k.ntk, kx.ntk, t, 0.5) @ y, RTOL)
    close_to_scale(flow.predict_train(np.inf), y, RTOL)  # no ridge: the training targets are reached


def test_edge_lists_and_dense_graphs_train_the_same_flow(net, problem):
    """An unweighted graph as (N, E, 2) [sender, receiver] rows gives the flow of its 0/1 adjacency."""
    x, _, y, xt, _, _, _, _ = problem
    rng = np.random.default_rng(5)
    dense = (rng.random((8, 5, 5)) < 0.5).astype(float) + np.eye(5)
    test_dense = (rng.random((4, 5, 5)) < 0.5).astype(float) + np.eye(5)

    def edges(a):
        """Each point's nonzero entries as rows [i, j], repeated by weight; padded by [-1, -1] rows."""
        rows = [[[i, j] for i, j in zip(*np.nonzero(m)) for _ in range(int(m[i, j]))] for m in a]
        width = max(len(r) for r in rows)
        return np.array([r + [[-1, -1]] * (width - len(r)) for r in rows], dtype=np.int64)

    by_dense = KernelFlow(net, x, y, graph_train=dense).predict(xt, np.inf, graph_test=test_dense)
    by_edges = KernelFlow(net, x, y, graph_train=edges(dense)).predict(xt, np.inf, graph_test=edges(test_dense))
    np.testing.assert_array_equal(by_edges, by_dense)  # the same dense arrays reach the same arithmetic


def test_test_graphs_matter(net, problem):
    """The same test signals on other graphs get other predictions (the graphs reach the test kernel)."""
    x, g, y, xt, gt, _, _, _ = problem
    flow = KernelFlow(net, x, y, graph_train=g)
    other = np.broadcast_to(np.eye(5), gt.shape)
    assert np.abs(flow.predict(xt, np.inf, graph_test=gt) - flow.predict(xt, np.inf, graph_test=other)).max() > 1e-3


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_ensemble_equals_the_gaussian_of_lee_et_al(net, problem, kernel):
    """mean = A y, cov = Σ(x*, x*) + A Σ Aᵀ − A Σ(X, x*) − Σ(x*, X) Aᵀ with A = K(x*, X) K⁻¹ at t = ∞
    (Lee et al. 2019, eq. 16); variances alone (compute_cov=False, the diagonal request) are its diagonal."""
    x, g, y, xt, gt, k, kx, kt = problem
    flow = KernelFlow(net, x, y, kernel=kernel, graph_train=g)
    train, cross = getattr(k, kernel), getattr(kx, kernel)
    a = flow_map(train, cross, np.inf)
    cov = flow_ensemble_cov(a, k.nngp, kx.nngp, kt.nngp)
    mean, got = flow.ensemble(xt, np.inf, graph_test=gt)
    close_to_scale(mean, a @ y, RTOL)
    close_to_scale(got, cov, RTOL)
    _, var = flow.ensemble(xt, np.inf, compute_cov=False, graph_test=gt)
    close_to_scale(var, np.diag(cov), RTOL)


def test_variances_at_finite_time(net, problem):
    """At t < ∞, A = Θ(x*, X) Θ⁻¹ (I − e^{−ηΘt/N}) in eq. 16 (expm here, the eigenbasis in the solver)."""
    x, g, y, xt, gt, k, kx, kt = problem
    flow = KernelFlow(net, x, y, graph_train=g)
    a = flow_map(k.ntk, kx.ntk, 20.0)
    cov = flow_ensemble_cov(a, k.nngp, kx.nngp, kt.nngp)
    _, var = flow.ensemble(xt, 20.0, compute_cov=False, graph_test=gt)
    close_to_scale(var, np.diag(cov), RTOL)


def test_diagonal_request_takes_the_test_graphs(net, problem, monkeypatch):
    """compute_cov=False asks net.kernels for the diagonal with the test graphs, never the full test kernel."""
    x, g, y, xt, gt, _, _, _ = problem
    flow = KernelFlow(net, x, y, graph_train=g)
    calls = []
    real = net.kernels

    def spy(x1, x2=None, **options):
        calls.append((x2 is None, options.get("diagonal", False), options.get("graph1") is not None))
        return real(x1, x2, **options)

    monkeypatch.setattr(net, "kernels", spy)
    flow.ensemble(xt, np.inf, compute_cov=False, graph_test=gt)
    assert (True, True, True) in calls and (True, False, True) not in calls


def test_sklearn_estimators_take_graphs(net, problem):
    """NTKRegressor at t = ∞ is kernel ridge regression: Θ(x*, X)(Θ + σI)⁻¹ y, σ = diag_reg·tr Θ/N; the
    classifier's argmax of the same solve on centred one-hot targets."""
    pytest.importorskip("sklearn")
    from ntkdsl.sklearn import NTKClassifier, NTKRegressor

    x, g, y, xt, gt, k, kx, _ = problem
    reg = NTKRegressor(spec=SPEC, diag_reg=1e-3).fit(x.reshape(8, -1), y, graph=g)
    ridge = 1e-3 * np.trace(k.ntk) / 8
    expected = kx.ntk @ np.linalg.solve(k.ntk + ridge * np.eye(8), y)
    close_to_scale(reg.predict(xt.reshape(4, -1), graph=gt), expected, RTOL)
    labels = np.arange(8) % 2
    clf = NTKClassifier(spec=SPEC, diag_reg=1e-3).fit(x.reshape(8, -1), labels, graph=g)
    f = kx.ntk @ np.linalg.solve(k.ntk + ridge * np.eye(8), np.eye(2)[labels] - 0.5)
    assert np.all(np.abs(f[:, 1] - f[:, 0]) > 1e-6)  # no tie for the argmax to break by round-off
    np.testing.assert_array_equal(clf.predict(xt.reshape(4, -1), graph=gt), np.argmax(f, axis=1))
    with pytest.raises(ValueError, match="aggregates over graphs: pass graph="):
        reg.predict(xt.reshape(4, -1))


def test_missing_or_unwanted_graphs_are_clear_errors(net, problem):
    x, g, y, xt, gt, k, _, _ = problem
    with pytest.raises(ValueError, match="aggregates over graphs: pass graph_train="):
        KernelFlow(net, x, y)
    flow = KernelFlow(net, x, y, graph_train=g)
    with pytest.raises(ValueError, match="aggregates over graphs: pass graph_test="):
        flow.predict(xt, np.inf)
    with pytest.raises(ValueError, match="aggregates over graphs: pass graph_test="):
        flow.ensemble(xt, np.inf, compute_cov=False)
    with pytest.raises(ValueError, match="graph_test holds 8 graphs but x_test has 4 points"):
        flow.predict(xt, np.inf, graph_test=g)
    mlp = ntkdsl.loads("network m(input = 3) { dense(8); relu; dense(1) }")
    with pytest.raises(ValueError, match="has no aggregate layer: graph_train is not used"):
        KernelFlow(mlp, np.ones((2, 3)), np.ones(2), graph_train=g[:2])
    given = KernelFlow.from_kernels(k.ntk, y)
    with pytest.raises(ValueError, match="built from kernels"):
        given.predict(np.zeros((4, 8)), np.inf, graph_test=gt)


def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of ``ntkdsl ARGV``."""
    from ntkdsl.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_flow_command_reads_graphs_from_its_files(net, problem, tmp_path, capsys):
    """``ntkdsl flow``: arrays x, y, graph in --train, x, graph in --test; the predictions at t = ∞ are the
    closed form Θ(x*, X) Θ⁻¹ y, the training loss at t = 0 is ‖y‖²/2N (outputs start at 0)."""
    x, g, y, xt, gt, k, kx, _ = problem
    spec = tmp_path / "gnn.ntk"
    spec.write_text(SPEC)
    np.savez(tmp_path / "train.npz", x=x, y=y, graph=g)
    np.savez(tmp_path / "test.npz", x=xt, graph=gt)
    out = tmp_path / "flow.npz"
    status, _, err = run_cli(["flow", spec, "--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz",
                              "--times", "0,inf", "-o", out], capsys)
    assert status == 0, err
    result = np.load(out)
    close_to_scale(result["test_pred"][1], kx.ntk @ np.linalg.solve(k.ntk, y), RTOL)
    np.testing.assert_allclose(result["train_loss"][0], np.sum(y**2) / 16, rtol=1e-14)  # one sum, reordered
    np.savez(tmp_path / "bare.npz", x=xt)
    mlp = tmp_path / "mlp.ntk"
    mlp.write_text("network m(input = [5, 3]) { flatten; dense(8); relu; dense(2) }")
    for argv, message in (([spec, "--train", tmp_path / "train.npz", "--test", tmp_path / "bare.npz"],
                           "'" + str(tmp_path / "bare.npz") + "' must hold an array graph"),
                          ([mlp, "--train", tmp_path / "train.npz"], "holds an array graph, but network m has no aggregate")):
        status, _, err = run_cli(["flow", *argv, "-o", tmp_path / "bad.npz"], capsys)
        assert status == 2 and err.startswith("ntkdsl: error: ") and message in err, err
        assert not (tmp_path / "bad.npz").exists()


def test_sample_command_takes_graphs(net, tmp_path, capsys):
    """``ntkdsl sample --graph1``: its errors are those of ntkdsl.monte_carlo with the same graphs and seed
    against net.kernels with them (the report's definition); without --x1/--graph1 a clear error."""
    x, g, _ = data(3, 7)
    spec = tmp_path / "gnn.ntk"
    spec.write_text(SPEC)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "g.npy", g)
    out = tmp_path / "sample.npz"
    status, text, err = run_cli(["sample", spec, "--x1", tmp_path / "x.npy", "--graph1", tmp_path / "g.npy",
                                 "--widths", "32", "--samples", "2", "-o", out], capsys)
    assert status == 0, err
    mc = ntkdsl.monte_carlo(net, x, width=32, n_samples=2, seed=0, graph1=g)
    exact = net.with_width(32).kernels(x, graph1=g)
    expected = np.linalg.norm(mc.ntk - exact.ntk) / np.linalg.norm(exact.ntk)
    np.testing.assert_allclose(np.load(out)["ntk_error"][0], expected, rtol=1e-12)  # the same draws, summed alike
    for argv, message in (([], "aggregates over graphs: pass --x1 FILE"),
                          (["--x1", tmp_path / "x.npy"], "pass --graph1 FILE"),
                          (["--x1", tmp_path / "x.npy", "--graph1", tmp_path / "x.npy"], "--graph1 in")):
        status, _, err = run_cli(["sample", spec, "--widths", "8", "--samples", "2", *argv], capsys)
        assert status == 2 and err.startswith("ntkdsl: error: ") and message in err, err
