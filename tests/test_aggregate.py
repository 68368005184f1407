"""``aggregate`` (graph aggregation, neural-tangents' Aggregate): against neural-tangents 0.6.5
(tests/data/nt_new_layers.json, adjacencies stored with each case), a NumPy GNTK written here from the
formula, edge lists against dense adjacencies built here by hand, tiles (in memory, streamed, dask)
against one piece, diagonal=True, Monte Carlo over finite networks, the CLI and the errors."""

import json
from pathlib import Path

import numpy as np
import pytest

import ntkdsl

from shared import NT_RTOL, assert_agrees_with_neural_tangents, close_to_scale
from ntkdsl.cli.main import main
from ntkdsl.codegen.dispatch import BackendFallbackWarning

DATA = json.loads((Path(__file__).resolve().parent / "data" / "nt_new_layers.json").read_text())["architectures"]
CASES = ["gnn-sum-pool", "gnn-avg-pool-normalised", "gnn-sum-pool-standard", "gnn-edge-list", "gnn-aggregate-input",
         "gnn-residual-layer-norm"]
# neural-tangents computes in float64 with the same formulas in another order: 1e-12 of the kernel's scale
# (the bound) leaves room for a few hundred roundings through a network


def case(name):
    ref = DATA[name]
    return (ntkdsl.loads(ref["spec"]), np.asarray(ref["x1"]), np.asarray(ref["x2"]), np.asarray(ref["graph1"]),
            np.asarray(ref["graph2"]), ref)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", CASES)
def test_agrees_with_neural_tangents(name, backend):
    net, x1, x2, g1, g2, ref = case(name)
    if backend == "numba":  # the fused kernels lack per-point graphs: NumPy runs, with a warning saying so
        pytest.importorskip("numba")
        with pytest.warns(BackendFallbackWarning, match="per-point graphs"):
            k = net.kernels(x1, x2, backend=backend, graph1=g1, graph2=g2)
    else:
        k = net.kernels(x1, x2, backend=backend, graph1=g1, graph2=g2)
    assert_agrees_with_neural_tangents(k, net.kernels(x1, graph1=g1) if "nngp_11" in ref else None, ref)


def relu_dual(s, q1, q2):
    """E[relu(u)relu(v)] and E[relu'(u)relu'(v)] of a centred Gaussian (Cho & Saul 2009; kernel-math.md §3)."""
    norm = np.sqrt(np.multiply.outer(q1, q2))
    theta = np.arccos(np.clip(s / norm, -1, 1))
    return norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)), (np.pi - theta) / (2 * np.pi)


def test_matches_a_hand_written_gntk():
    """conv(kernel = 1) → aggregate → relu → global_avg_pool → dense(1), NTK parameterization, from
    kernel-math.md §2–3 and Du et al. 2019 per pair: Σ¹ = σ_w²·x·x′ᵀ/C + σ_b² (V × V), Σ² = A1ᵀΣ¹A2
    (Θ² likewise, Θ¹ = Σ¹), the variances q = diag(AᵀΣ¹(x, x)A), then relu (Σ³ = E[relu·relu], Θ³ = Σ̇·Θ²),
    the mean over all node pairs and Θ = σ_w²(Σ + Θ) of the readout."""
    w, b, w_out = 1.3, 0.2, 1.1
    net = ntkdsl.loads(f"network g(input = [5, 3]) {{ conv(8, kernel = 1, w_std = {w}, b_std = {b}); aggregate; "
                       f"relu; global_avg_pool; dense(1, w_std = {w_out}) }}")
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((3, 5, 3)), rng.standard_normal((2, 5, 3))
    g1, g2 = rng.random((3, 5, 5)), rng.random((2, 5, 5))
    nngp, ntk = np.zeros((3, 2)), np.zeros((3, 2))
    for a in range(3):
        for c in range(2):
            s1 = lambda u, v: w**2 * u @ v.T / 3 + b**2  # noqa: E731
            s2 = g1[a].T @ s1(x1[a], x2[c]) @ g2[c]
            qa = np.diag(g1[a].T @ s1(x1[a], x1[a]) @ g1[a])
            qc = np.diag(g2[c].T @ s1(x2[c], x2[c]) @ g2[c])
            s3, dot = relu_dual(s2, qa, qc)
            nngp[a, c] = w_out**2 * s3.mean()
            ntk[a, c] = w_out**2 * (s3.mean() + (s2 * dot).mean())  # relu: Θ³ = Σ̇·Θ², Θ² = Σ²
    k = net.kernels(x1, x2, graph1=g1, graph2=g2)
    close_to_scale(k.nngp, nngp, 1e-13)  # the same few products, summed in another order
    close_to_scale(k.ntk, ntk, 1e-13)


def test_edge_lists_equal_their_dense_adjacencies():
    """[sender, receiver] rows of weight 1, repeats adding, negative rows padding: built here by loops."""
    net, x1, x2, _, _, _ = case("gnn-edge-list")
    rng = np.random.default_rng(0)
    e1, e2 = rng.integers(0, 6, (3, 11, 2)), rng.integers(0, 6, (4, 11, 2))
    e1[0, 3] = e1[0, 4]  # a repeated edge: weight 2
    e1[1, 5:] = -1  # padding
    e2[2, 0] = [-1, 3]
    dense = []
    for edges in (e1, e2):
        a = np.zeros((len(edges), 6, 6))
        for p, rows in enumerate(edges):
            for i, j in rows:
                if i >= 0 and j >= 0:
                    a[p, i, j] += 1
        dense.append(a)
    for k_edges, k_dense in ((net.kernels(x1, x2, graph1=e1, graph2=e2), net.kernels(x1, x2, graph1=dense[0], graph2=dense[1])),
                             (net.kernels(x1, graph1=e1), net.kernels(x1, graph1=dense[0]))):
        np.testing.assert_array_equal(k_edges.nngp, k_dense.nngp)  # the same dense arrays: the same numbers
        np.testing.assert_array_equal(k_edges.ntk, k_dense.ntk)


def test_tiles_slice_the_graphs_with_their_points(tmp_path):
    """Tiles in memory and streamed to disk equal one piece: a tile's points bring their own graphs."""
    net, x1, x2, g1, g2, _ = case("gnn-sum-pool")
    x1, g1 = np.concatenate([x1, x1[::-1]]), np.concatenate([g1, g1[::-1]])  # duplicates of x with other graphs too
    g1[3] = g1[3] * 0.5
    whole, whole11 = net.kernels(x1, x2, graph1=g1, graph2=g2), net.kernels(x1, graph1=g1)
    # tiles change only the grouping of the same per-pair products: equal to a few ulps (tiling contract 1e-13)
    for k, ref in ((net.kernels(x1, x2, graph1=g1, graph2=g2, batch_size=2), whole),
                   (net.kernels(x1, graph1=g1, batch_size=2), whole11),
                   (net.kernels_to_disk(x1, x2, tmp_path / "a", batch_size=2, graph1=g1, graph2=g2, progress=False), whole),
                   (net.kernels_to_disk(x1, None, tmp_path / "b", batch_size=4, graph1=g1, progress=False), whole11)):
        close_to_scale(k.nngp, ref.nngp, 1e-13)
        close_to_scale(k.ntk, ref.ntk, 1e-13)
    assert not np.isclose(whole11.nngp[3, 3], whole11.nngp[2, 2])  # x equal, graphs not: other points
    with pytest.raises(ntkdsl.streaming.ResumeMismatchError, match="graph1"):
        net.kernels_to_disk(x1, None, tmp_path / "b", batch_size=4, graph1=g1[::-1], progress=False)


@pytest.mark.slow
def test_dask_tiles_carry_their_graphs(tmp_path):
    from ntkdsl import distributed

    net, x1, x2, g1, g2, _ = case("gnn-edge-list")
    client = distributed.local_client(2, dashboard_address=":0")
    try:
        k = distributed.kernels(net, x1, x2, tmp_path / "a.zarr", client, tile=2, graph1=g1, graph2=g2, progress=False)
        k11 = distributed.kernels(net, x1, None, tmp_path / "b.zarr", client, tile=2, graph1=g1, progress=False)
    finally:
        client.close()
    for got, want in ((k, net.kernels(x1, x2, graph1=g1, graph2=g2)), (k11, net.kernels(x1, graph1=g1))):
        close_to_scale(np.asarray(got.nngp), want.nngp, 1e-13)  # the tiling contract
        close_to_scale(np.asarray(got.ntk), want.ntk, 1e-13)


def test_diagonal_requests_use_each_points_graph():
    net, x1, _, g1, _, _ = case("gnn-avg-pool-normalised")
    d, full = net.kernels(x1, graph1=g1, diagonal=True), net.kernels(x1, graph1=g1)
    np.testing.assert_array_equal(d.nngp, full.nngp.diagonal())  # the same statements on one column of pairs
    np.testing.assert_array_equal(d.ntk, full.ntk.diagonal())


def test_monte_carlo_over_finite_networks():
    """A linear GNN (aggregate, conv(kernel = 1), aggregate, sum pool, dense): products of independent
    Gaussian weights, so the expected empirical kernels equal the analytic ones at any width; 5 standard
    errors (a 1-in-10⁶ two-sided miss for one entry under the normal approximation)."""
    net = ntkdsl.loads("network g(input = [4, 2]) { aggregate; conv(16, kernel = 1, w_std = 1.2, b_std = 0.3); "
                       "aggregate; global_sum_pool; dense(1) }")
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((2, 4, 2)), rng.standard_normal((3, 4, 2))
    g1, g2 = rng.random((2, 4, 4)), rng.integers(0, 4, (3, 6, 2))
    k = net.kernels(x1, x2, graph1=g1, graph2=g2)
    mc = ntkdsl.monte_carlo(net, x1, x2, width=16, n_samples=300, graph1=g1, graph2=g2)
    assert np.all(np.abs(mc.nngp - k.nngp) <= 5 * mc.nngp_stderr)
    assert np.all(np.abs(mc.ntk - k.ntk) <= 5 * mc.ntk_stderr)
    swapped = net.kernels(x1, x2, graph1=g1[::-1], graph2=g2)  # power: the graphs matter
    assert np.any(np.abs(mc.nngp - swapped.nngp) > 5 * mc.nngp_stderr)
    f = net.finite(width=8, seed=1)
    structured = f.ntk(x1, x2, graph1=g1, graph2=g2)
    # the same sums contracted in two orders (structured terms vs explicit Jacobian rows): a few ulps per product
    np.testing.assert_allclose(structured, f.ntk(x1, x2, graph1=g1, graph2=g2, method="jacobian"), rtol=1e-12)
    a = np.zeros((2, 4, 4))
    a[:, 0, 0] = 1  # only node 0 feeds node 0: the other nodes see nothing
    one = ntkdsl.loads("network g(input = [4, 2]) { aggregate; flatten; dense(1) }").finite(seed=2)
    y = one.apply(x1, graph=a)
    w = one.params[2]["w"][:, 0].reshape(4, 2)
    # NTK scale 1/√fan-in; one dot product of 2 terms each way, so agreement to a few ulps
    np.testing.assert_allclose(y[:, 0], (x1[:, 0] @ w[0]) / np.sqrt(8), rtol=1e-13)


@pytest.mark.parametrize("call, message", [
    (lambda n, x1, x2, g1, g2: n.kernels(x1), "pass each input point's adjacency as graph1="),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, x2, graph1=g1), "pass its points' adjacencies as graph2="),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=g1, graph2=g2), "graph2 is given without x2"),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=g2), "holds 4 graphs but x1 has 3 points"),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=g1[:, :5, :5]), "has shape (3, 5, 5); the network's input has 6 nodes"),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=np.full((3, 2, 2), 6)), "edge 0 of point 0 is [6, 6]"),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=np.ones((3, 6, 6), int)), "integers are read as edge lists"),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=g1 * np.nan), "graph1 holds 108 NaN"),
    (lambda n, x1, x2, g1, g2: n.kernels(x1, graph1=g1, diagonal=True, graph2=g1), "graph2 is given without x2"),
    (lambda n, x1, x2, g1, g2: n.finite().apply(x1), "pass graph="),
    (lambda n, x1, x2, g1, g2: ntkdsl.loads("network m(input = [6, 3]) { conv(4, kernel = 1); global_avg_pool; dense(1) }")
     .kernels(x1, graph1=g1), "has no aggregate layer"),
])
def test_bad_graphs_are_clear_errors(call, message):
    net, x1, x2, g1, g2, _ = case("gnn-sum-pool")
    with pytest.raises(ValueError) as info:
        call(net, x1, x2, g1, g2)
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("text, where, message", [
    ("aggregate; dense(1)", "1:24", "aggregate needs an image or signal input"),
    ("dense(4); aggregate", "1:34", "aggregate needs an image or signal input"),
])
def test_layer_mistakes_are_located(text, where, message):
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(f"network n(input = 3) {{ {text} }}", filename="g.ntk")
    text = str(info.value)
    assert f"g.ntk:{where}: error:" in text and message in text and "^" in text, text


@pytest.mark.parametrize("body", ["conv(3, kernel = 1); sum_pool(2, stride = 2, padding = circular); aggregate",
                                  "parallel(merge = concat) { index[0:2]; aggregate } { index[0:1] }"])
def test_an_aggregate_after_a_change_of_the_node_count_is_refused_with_its_location(body):
    """The graphs are over the input's nodes: an aggregate on 2 of them has no adjacency (neural-tangents fails
    with an einsum error at evaluation)."""
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(f"network g(input = [3, 2]) {{ {body}; flatten; dense(1) }}", filename="g.ntk")
    text = str(info.value)
    assert text.startswith("g.ntk:1:") and "aggregate acts on 2 nodes" in text and "^" in text, text


def test_two_dimensional_input_is_refused_with_its_location():
    with pytest.raises(ntkdsl.SpecError, match="graph signal"):
        ntkdsl.loads("network n(input = [3, 3, 2]) { aggregate; flatten; dense(1) }")


def test_cli_reads_graphs_and_refuses_bad_ones(tmp_path, capsys):
    net, x1, x2, g1, g2, ref = case("gnn-edge-list")
    spec = tmp_path / "g.ntk"
    spec.write_text(ref["spec"])
    for name, a in (("x1", x1), ("x2", x2), ("g1", g1)):
        np.save(tmp_path / f"{name}.npy", a)
    np.savez(tmp_path / "g2.npz", graph=g2)
    bad = g1.copy()
    bad[1, 2] = [0, 6]
    np.save(tmp_path / "bad.npy", bad)
    out = tmp_path / "k.npz"
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.npy"),
                 "--graph1", str(tmp_path / "g1.npy"), "--graph2", str(tmp_path / "g2.npz"), "-o", str(out)]) == 0
    close_to_scale(np.load(out)["nngp"], np.asarray(ref["nngp"]), NT_RTOL)
    for args, message in ((["--x1", "x1.npy"], "pass --graph1 FILE"),
                          (["--x1", "x1.npy", "--x2", "x2.npy", "--graph1", "g1.npy"], "pass --graph2 FILE"),
                          (["--x1", "x1.npy", "--graph1", "bad.npy"], "edge 2 of point 1 is [0, 6]"),
                          (["--x1", "x1.npy", "--graph1", "g2.npz"], "holds 4 edge lists but --x1 has 3 points")):
        capsys.readouterr()
        assert main(["eval", str(spec)] + [a if a.startswith("--") else str(tmp_path / a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ntkdsl: error:") and message in err and "Traceback" not in err, err


def test_prints_parses_and_renders():
    net = case("gnn-sum-pool")[0]
    assert "aggregate" in net.to_ntk() and ntkdsl.loads(net.to_ntk()).ir == net.ir
    assert r"A^{\top}" in net.to_latex()
    source = net.to_python()
    assert "graph1=None, graph2=None" in source and "graph_aggregate(" in source
