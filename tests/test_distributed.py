"""Kernels on a dask cluster into a zarr store (ntkdsl.distributed, ``ntkdsl eval --zarr``), and the
kernel flow on a kernel held as a dask array (ntkdsl.flow.krylov / tiled).

On a 2-worker LocalCluster of processes: equal to ``net.kernels`` for a vector and an image network,
from NumPy, zarr and dask inputs; complete and equal after a worker is killed mid-run; a rerun after
an interruption computes exactly the tiles whose done flag is not set; a store of another request is
refused naming what differs. The Krylov flow agrees with the dense eigendecomposition solver and with
scipy's independent exponential action (expm_multiply).
"""

import os
import signal
import time

import numpy as np
import pytest

pytest.importorskip("dask.array")
pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import scipy.sparse.linalg  # noqa: E402

import ntkdsl  # noqa: E402
from ntkdsl import distributed  # noqa: E402
from ntkdsl.cli import main  # noqa: E402
from ntkdsl.flow import KernelFlow, KrylovOptions, NotConvergedError  # noqa: E402
from ntkdsl.flow.krylov import KernelOperator, cg, lanczos  # noqa: E402
from ntkdsl.streaming import ResumeMismatchError  # noqa: E402

MLP = "network mlp(input = 6) { dense(16, b_std = 0.1); relu; dense(16); erf; dense(1) }"
CNN = """network cnn(input = [4, 4, 2]) {
    conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
    conv(8, kernel = 3, padding = same); relu; global_avg_pool; dense(1) }"""
# Tiles change only the shapes of the input Gram GEMMs, whose BLAS blocking sums in another order:
# a few ulps, bounded by 1e-13 relative (the tiling contract of tests/test_architectures_tiling.py).
RTOL = 1e-13


class Stop(Exception):
    """The simulated interruption."""


@pytest.fixture(scope="module")
def client():
    c = distributed.local_client(2, dashboard_address=":0")  # two worker processes, one thread each
    yield c
    c.close()


def points(net, n, seed):
    return np.random.default_rng(seed).standard_normal((n,) + net.ir.input_shape)


def assert_equal_kernels(k, reference):
    for got, want in zip(k, reference):
        got = np.asarray(got)
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= RTOL * np.max(np.abs(want))


def flags(store):
    """The done flag of every tile the request computes (a self-kernel: the upper triangle)."""
    root = zarr.open_group(str(store), mode="r")
    done = root["done"][...]
    return done[np.triu_indices_from(done)] if root.attrs["x2"] is None else done.ravel()


@pytest.mark.parametrize("spec, n, tile", [(MLP, 40, 16), (CNN, 11, 4)], ids=["mlp", "cnn"])
@pytest.mark.parametrize("same", [True, False], ids=["self", "cross"])
def test_equal_to_in_memory(client, spec, n, tile, same, tmp_path):
    net = ntkdsl.loads(spec)
    x1, x2 = points(net, n, 0), (None if same else points(net, n // 2 + 1, 1))
    k = distributed.kernels(net, x1, x2, tmp_path / "k.zarr", client, tile=tile, progress=False)
    assert isinstance(k.nngp, da.Array)
    assert_equal_kernels(k, net.kernels(x1, x2))
    assert flags(tmp_path / "k.zarr").all()
    if same:
        assert np.array_equal(np.asarray(k.ntk), np.asarray(k.ntk).T)  # mirrored tiles: exactly symmetric


def test_zarr_and_dask_inputs_and_duplicates(client, tmp_path):
    net = ntkdsl.loads(MLP)
    x1 = points(net, 30, 2)
    x1[7] = x1[3]  # identical points get the exact value at (x, x), as in net.kernels
    x2 = points(net, 9, 3)
    z = zarr.create_array(str(tmp_path / "x1.zarr"), shape=x1.shape, chunks=(8, 6), dtype=x1.dtype)
    z[...] = x1
    k = distributed.kernels(net, z, da.from_array(x2, chunks=4), tmp_path / "k.zarr", client, tile=8, progress=False)
    assert_equal_kernels(k, net.kernels(x1, x2))
    k = distributed.kernels(net, da.from_array(x1, chunks=5), None, tmp_path / "s.zarr", client, tile=8, progress=False)
    assert_equal_kernels(k, net.kernels(x1))
    assert np.asarray(k.ntk)[3, 7] == np.asarray(k.ntk)[3, 3]


def test_a_killed_worker_loses_nothing(client, tmp_path):
    net = ntkdsl.loads(MLP)
    x = points(net, 1200, 4)
    pids = client.run(os.getpid)  # worker address -> pid of the worker process this test started
    killed = {}

    def kill(done, total):
        if done == 2 and not killed:
            busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
            killed[busy[0]] = pids[busy[0]]
            os.kill(pids[busy[0]], signal.SIGKILL)

    k = distributed.kernels(net, x, None, tmp_path / "k.zarr", client, tile=200, progress=kill)
    assert killed, "no worker was busy to be killed"
    (pid,) = killed.values()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert flags(tmp_path / "k.zarr").all()
    assert_equal_kernels(k, net.kernels(x))


def wait_idle(client, timeout=30.0):
    """Until no task of the interrupted run is still running on a worker (it would still write its tile)."""
    end = time.monotonic() + timeout
    while any(client.processing().values()) and time.monotonic() < end:
        time.sleep(0.05)


def test_rerun_computes_only_the_missing_tiles(client, tmp_path):
    net = ntkdsl.loads(MLP)
    x = points(net, 100, 5)  # 55 tiles: many still to run when the driver stops after 3
    store = tmp_path / "k.zarr"

    def stop(done, total):
        if done == 3:
            raise Stop()

    with pytest.raises(Stop):
        distributed.kernels(net, x, None, store, client, tile=10, progress=stop)
    wait_idle(client)
    done = int(flags(store).sum())
    total = 10 * 11 // 2  # upper-triangle tiles of a 10 x 10 grid
    assert 3 <= done < total
    seen = []
    k = distributed.kernels(net, x, None, store, client, tile=10, progress=lambda d, n: seen.append((d, n)))
    assert len(seen) == total - done  # one call per computed tile: exactly the missing ones
    assert seen[-1] == (total, total)
    assert_equal_kernels(k, net.kernels(x))
    seen.clear()
    distributed.kernels(net, x, None, store, client, tile=10, progress=lambda d, n: seen.append(d))
    assert seen == []  # complete: nothing computed


@pytest.mark.parametrize("change, named", [("network", "the network"), ("x1", "--x1 / x1"), ("x2", "--x2 / x2"),
                                           ("dtype", "the dtype")])
def test_a_store_of_another_request_is_refused(client, change, named, tmp_path):
    net = ntkdsl.loads(MLP)
    request = dict(net=net, x1=points(net, 12, 6), x2=None, dtype=None)
    distributed.kernels(request["net"], request["x1"], None, tmp_path / "k.zarr", client, tile=6, progress=False)
    other = dict(request, **{"network": dict(net=ntkdsl.loads(MLP.replace("erf", "relu"))),
                             "x1": dict(x1=points(net, 12, 7)), "x2": dict(x2=points(net, 5, 8)),
                             "dtype": dict(dtype="float32")}[change])
    with pytest.raises(ResumeMismatchError, match=f"differs in {named}"):
        distributed.kernels(other["net"], other["x1"], other["x2"], tmp_path / "k.zarr", client, tile=6,
                            dtype=other["dtype"], progress=False)


def test_non_finite_inputs_are_refused(client, tmp_path):
    net = ntkdsl.loads(MLP)
    x = points(net, 12, 0)
    x[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):  # NumPy inputs: on the driver, before any task
        distributed.kernels(net, x, None, tmp_path / "a.zarr", client, tile=6, progress=False)
    with pytest.raises(ValueError, match="rows 0..5 hold NaN"):  # lazy inputs: by the worker reading them
        distributed.kernels(net, da.from_array(x, chunks=6), None, tmp_path / "b.zarr", client, tile=6,
                            progress=False, retries=0)


def test_a_foreign_store_is_refused(client, tmp_path):
    root = zarr.open_group(str(tmp_path / "k.zarr"), mode="w")
    root.create_array("data", shape=(3,), dtype="f8")
    net = ntkdsl.loads(MLP)
    with pytest.raises(ResumeMismatchError, match="no ntkdsl request"):
        distributed.kernels(net, points(net, 4, 0), None, tmp_path / "k.zarr", client, progress=False)


def test_cli_eval_zarr(client, tmp_path, capsys):
    spec, x = tmp_path / "mlp.ntk", points(ntkdsl.loads(MLP), 20, 9)
    spec.write_text(MLP)
    np.save(tmp_path / "x.npy", x)
    args = ["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--zarr", str(tmp_path / "k.zarr"),
            "--scheduler", client.scheduler.address, "--tile", "8", "--no-progress"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "dask dashboard: http" in err and "wrote" in out
    assert_equal_kernels(distributed.kernels(ntkdsl.loads(MLP), x, None, tmp_path / "k.zarr", client),
                         ntkdsl.loads(MLP).kernels(x))
    np.save(tmp_path / "y.npy", x[:5])
    assert main(args[:3] + [str(tmp_path / "y.npy")] + args[4:]) == 2  # another request: refused
    assert main(["eval", str(spec), "--x1", str(tmp_path / "x.npy"), "--tile", "8"]) == 2  # --tile needs --zarr
    err = capsys.readouterr().err
    assert "ntkdsl: error: cannot resume" in err and "--tile go with --zarr" in err and "Traceback" not in err


# ---------------------------------------------------------------- the flow on a tiled kernel

@pytest.fixture
def threads():
    """dask's threaded scheduler for the flow tests: their kernels are NumPy arrays wrapped by
    dask, which the cluster of the tests above would ship to its workers at every product."""
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture(scope="module")
def problem():
    net = ntkdsl.loads(MLP)
    x, xs = points(net, 240, 10), points(net, 15, 11)
    y = np.random.default_rng(12).standard_normal((240, 2))
    return net.kernels(x).ntk, net.kernels(xs, x).ntk, y


def test_krylov_flow_agrees_with_the_dense_solver(problem, threads):
    k, kx, y = problem
    times = [0.0, 3.0, 300.0, np.inf]
    options = KrylovOptions(rtol=1e-12, rank=60)
    lazy = KernelFlow.from_kernels(da.from_array(k, chunks=120), y, diag_reg=1e-3, learning_rate=0.7,
                                   krylov=options)
    dense = KernelFlow.from_kernels(k, y, diag_reg=1e-3, learning_rate=0.7)
    cond = np.linalg.cond(k + lazy.ridge * np.eye(len(k)))
    # CG's error is at most cond(K_σ)·rtol relative (here ~1e-9), Lanczos' change test at rtol:
    # the 1e-8 agreement with the dense solver holds with room.
    assert cond * options.rtol < 1e-8
    for got, want in ((lazy.predict(da.from_array(kx, chunks=80), times), dense.predict(kx, times)),
                      (lazy.predict_train(times), dense.predict_train(times)),
                      (lazy.loss(3.0), dense.loss(3.0))):
        assert np.max(np.abs(got - want)) <= 1e-8 * np.max(np.abs(want))


def test_lanczos_exponential_matches_expm_multiply(problem, threads):
    """Without ridge the training residual is e^{−cKt}(f_0 − y): scipy's expm_multiply (Al-Mohy &
    Higham 2011) is an independent oracle."""
    k, _, y = problem
    c, t = 0.7 / len(k), 40.0
    flow = KernelFlow.from_kernels(da.from_array(k, chunks=120), y, learning_rate=0.7, krylov=KrylovOptions(rtol=1e-12))
    want = scipy.sparse.linalg.expm_multiply(-c * t * k, -y)
    got = flow.predict_train(t) - y
    # expm_multiply works to double precision (its tol 2^-53); the Lanczos change test to 1e-12.
    assert np.max(np.abs(got - want)) <= 1e-10 * np.max(np.abs(want))


def test_cg_solves_and_refuses_to_stop_short(problem, threads):
    k, _, y = problem
    for lazy, preconditioner in ((False, "jacobi"), (True, "jacobi"), (False, "none")):
        op = KernelOperator(da.from_array(k, chunks=120) if lazy else k, shift=1e-2)
        x = cg(op, y, KrylovOptions(rtol=1e-12, preconditioner=preconditioner))
        # the stopping rule: ‖(K + σI)x − y‖ ≤ rtol·‖y‖ per column, on the true residual
        residual = np.linalg.norm((k + 1e-2 * np.eye(len(k))) @ x - y, axis=0)
        assert np.all(residual <= 1e-12 * np.linalg.norm(y, axis=0))
    with pytest.raises(NotConvergedError, match="relative residual"):
        cg(KernelOperator(k), y, KrylovOptions(rtol=1e-14, maxiter=3, preconditioner="none"))
    with pytest.raises(NotConvergedError, match="Lanczos"):
        lanczos(KernelOperator(k), y, lambda s: s.inverse_factor(np.array([1e6]), 1.0), KrylovOptions(maxiter=5))


def test_tiled_flow_refusals(problem, threads):
    k, _, y = problem
    lazy = da.from_array(k, chunks=120)
    with pytest.raises(ValueError, match="squared loss"):
        KernelFlow.from_kernels(lazy, y, loss="cross_entropy")
    flow = KernelFlow.from_kernels(lazy, y)
    with pytest.raises(ValueError, match="dense solver"):
        flow.ensemble(None, 1.0)
    with pytest.raises(ValueError, match=r"expected \(N_test, 240\)"):
        flow.predict(np.zeros((3, 7)), 1.0)
    with pytest.raises(ValueError, match="preconditioner"):
        KrylovOptions(preconditioner="ilu")
