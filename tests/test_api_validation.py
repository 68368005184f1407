"""Input validation of the Python API: one set of rules (ntkdsl.validate) at every entry point.

Each bad input must give a ValueError that names the argument and the problem, never a traceback
from deep inside (IndexError, TypeError), a warning that drops data (complex parts) or NaN kernels.
Conversions that lose nothing (lists, integers, float16) must give the float64 kernels exactly.
"""

import contextlib
import warnings

import numpy as np
import pytest

import ntkdsl
from ntkdsl.flow import KernelFlow

SPEC = "network n(input = 3) { dense(8); relu; dense(1) }"


@pytest.fixture(scope="module")
def net():
    return ntkdsl.loads(SPEC)


X = np.random.default_rng(0).normal(size=(5, 3))
BAD = [  # (value, words the message must contain)
    (np.where(X > 1, np.nan, X), ["NaN or infinite"]),
    (X * np.inf, ["NaN or infinite"]),
    (np.array([[1, None, 2]], dtype=object), ["None or other objects"]),
    (None, ["is None"]),
    (X + 1j, ["complex"]),
    (3.0, ["single number", "(N, 3)"]),
    (X[:, :2], ["shape (5, 2)", "(N, 3)"]),
    (X[0], ["shape (3,)", "x[None]"]),
    ("abc", ["not numbers"]),
    ([[1.0, 2.0, 3.0], [1.0, 2.0]], ["rectangular"]),
]
IDS = ["nan", "inf", "object", "none", "complex", "scalar", "columns", "one-point", "string", "ragged"]


def _raises(fn, name, words):
    with _no_warning(), pytest.raises(ValueError) as info:
        fn()
    message = str(info.value)
    assert message.startswith(name + " "), message
    for word in words:
        assert word in message, message


@contextlib.contextmanager
def _no_warning():
    """Fail on any warning (a ComplexWarning would mean data dropped before the check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("value, words", BAD, ids=IDS)
def test_kernels_x1(net, value, words):
    _raises(lambda: net.kernels(value), "x1", words)


@pytest.mark.parametrize("value, words", BAD[:3] + BAD[4:], ids=IDS[:3] + IDS[4:])  # x2 = None means x1
def test_kernels_x2(net, value, words):
    _raises(lambda: net.kernels(X, value), "x2", words)


@pytest.mark.parametrize("value, words", BAD[:3] + BAD[4:6], ids=IDS[:3] + IDS[4:6])
def test_kernels_to_disk_and_finite_and_monte_carlo(net, tmp_path, value, words):
    _raises(lambda: net.kernels_to_disk(X, value, tmp_path / "k"), "x2", words)
    assert not (tmp_path / "k" / "progress.json").exists()  # refused before anything is written
    finite = net.finite(width=16)
    _raises(lambda: finite.apply(value), "x", words)
    _raises(lambda: finite.ntk(X, value), "x2", words)
    _raises(lambda: ntkdsl.monte_carlo(net, value, n_samples=2), "x1", words)


def test_lossless_conversions_give_the_same_kernels(net):
    """Lists, integers, float16 and bool convert exactly to float64: the same kernels bit for bit."""
    ints = np.arange(15).reshape(5, 3) - 7
    reference = net.kernels(ints.astype(np.float64))
    for converted in (ints.tolist(), ints.astype(np.int32), ints.astype(np.float16), tuple(map(tuple, ints))):
        k = net.kernels(converted)
        np.testing.assert_array_equal(k.nngp, reference.nngp)
        np.testing.assert_array_equal(k.ntk, reference.ntk)
    b = ints > 0
    np.testing.assert_array_equal(net.kernels(b).ntk, net.kernels(b.astype(np.float64)).ntk)


def test_no_points_give_empty_kernels(net):
    k = net.kernels(np.zeros((0, 3)))
    assert k.nngp.shape == (0, 0) and k.ntk.shape == (0, 0)


def test_kernel_flow_arguments(net):
    y = np.ones(5)
    _raises(lambda: KernelFlow(net, X, np.ones(4)), "y_train", ["(4,)", "5 training points"])
    _raises(lambda: KernelFlow(net, X, None), "y_train", ["is None"])
    _raises(lambda: KernelFlow(net, X, y + 1j), "y_train", ["complex"])
    _raises(lambda: KernelFlow(net, X, np.full(5, np.nan)), "y_train", ["NaN"])
    _raises(lambda: KernelFlow(net, X + 1j, y), "x_train", ["complex"])
    _raises(lambda: KernelFlow(net, X[:, :2], y), "x1", ["(N, 3)"])
    for rate in (0, -1.0, np.nan, np.inf, "fast", True):
        _raises(lambda rate=rate: KernelFlow(net, X, y, learning_rate=rate), "learning_rate", ["> 0"])
    flow = KernelFlow(net, X, y)
    for t in (-1.0, np.nan, [1.0, -2.0], [[1.0]]):
        _raises(lambda t=t: flow.predict(X, t), "times", [])
    _raises(lambda: flow.predict(X + 1j, 1.0), "x_test", ["complex"])


def test_finite_network_and_monte_carlo_arguments(net):
    for seed in (-1, 1.5, "a"):
        _raises(lambda seed=seed: net.finite(seed=seed), "seed", ["non-negative integer"])
        _raises(lambda seed=seed: ntkdsl.monte_carlo(net, X, n_samples=2, seed=seed), "seed", ["non-negative integer"])
    _raises(lambda: net.finite(width=0), "width", ["positive integer"])
    _raises(lambda: net.finite(backend="gpu"), "backend", [])
    _raises(lambda: ntkdsl.monte_carlo(net, X, n_samples=1), "n_samples", [])
    _raises(lambda: ntkdsl.monte_carlo(net, X, width=-3, n_samples=2), "width", [])


def test_from_kernels_refuses_an_indefinite_matrix():
    """[[1, 2], [2, 1]] has eigenvalues 3 and −1: not a kernel; the flow must not clip it and go on."""
    k = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match=r"ntk_train is not positive semi-definite: its smallest eigenvalue is -1"):
        KernelFlow.from_kernels(k, np.ones(2))
    with pytest.raises(ValueError, match="nngp_train is not positive semi-definite"):
        KernelFlow.from_kernels(np.eye(2), np.ones(2), k)


def test_from_kernels_accepts_round_off_below_the_stated_tolerance():
    """A PSD Gram matrix of rank 2 (N = 50) shifted by −1e-10·max diag (below the stated 1e-8)
    passes; shifted by −1e-6 it is refused. An exactly singular PSD matrix passes."""
    g = np.random.default_rng(1).normal(size=(50, 2))
    k = g @ g.T
    scale = k.diagonal().max()
    KernelFlow.from_kernels(k, np.ones(50))  # singular, PSD
    KernelFlow.from_kernels(k - 1e-10 * scale * np.eye(50), np.ones(50))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        KernelFlow.from_kernels(k - 1e-6 * scale * np.eye(50), np.ones(50))


def test_from_kernels_tolerance_grows_with_a_coarser_input_dtype():
    """Rounding a PSD matrix to float32 moves eigenvalues by up to N·ε32·max|K| (Weyl): a float32
    kernel with λ_min ≈ −1e-6·max diag (N = 50: N·ε32 = 6e-6) is accepted, as float64 it is not."""
    g = np.random.default_rng(2).normal(size=(50, 3))
    k = g @ g.T
    k -= 1e-6 * k.diagonal().max() * np.eye(50)
    KernelFlow.from_kernels(k.astype(np.float32), np.ones(50))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        KernelFlow.from_kernels(k, np.ones(50))
