"""Validation of what users hand the kernel-flow solver: kernels, test kernel blocks, targets, times, initial outputs."""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

from ..validate import finite_array, number  # noqa: F401  (number: part of this module's interface)
from .arrays import NUMPY

# Codegen evaluates Θ(x, x') and Θ(x', x) by the same float64 operations in a different order;
# the two agree to a few ulps. An asymmetry above 1e-8 relative is a mistake, not round-off.
SYMMETRY_RTOL = 1e-8


class TestKernels(NamedTuple):
    """Kernel blocks between test points x* and the training points X, for ``from_kernels`` flows.

    Attributes:
        ntk: Θ(x*, X), shape (N_test, N); needed when the flow trains with ``kernel="ntk"``.
        nngp: Σ(x*, X), shape (N_test, N); needed by ``ensemble`` and by ``kernel="nngp"``.
        nngp_test: Σ(x*, x*), shape (N_test, N_test), or its diagonal (N_test,) when only
            variances are asked for; needed by ``ensemble``.
    """

    __test__ = False  # not a pytest test class, despite its name

    ntk: Optional[np.ndarray] = None
    nngp: Optional[np.ndarray] = None
    nngp_test: Optional[np.ndarray] = None


def as_float_array(a, name: str, arrays=NUMPY) -> np.ndarray:
    """``a`` as a float64 array of finite numbers, in the array namespace ``arrays`` (:mod:`.arrays`).

    Raises:
        ValueError: as :func:`ntkdsl.validate.finite_array` (the rules of every entry point).
    """
    return arrays.asarray(finite_array(a, name, keep_float32=False))


def train_kernel(k, n: int, name: str, arrays=NUMPY) -> np.ndarray:
    """A symmetric (n, n) training kernel, symmetrised exactly.

    Raises:
        ValueError: wrong shape, non-finite entries, or asymmetric beyond round-off.
    """
    k = as_float_array(k, name, arrays)
    if k.shape != (n, n):
        raise ValueError(f"{name} has shape {k.shape}; expected ({n}, {n}) for {n} training points")
    scale = float(abs(k).max()) if k.size else 0.0
    asymmetry = float(abs(k - k.T).max()) if k.size else 0.0
    if asymmetry > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} is not symmetric (max |K - K^T| = {asymmetry:.3g})")
    return 0.5 * (k + k.T)


# A kernel from ntkdsl is PSD up to the error of its own evaluation, far below 1e-8 of its largest
# diagonal entry (the PSD tests); a matrix rounded to a coarser dtype moves its eigenvalues by at
# most ‖E‖₂ ≤ N·ε·max|K| (Weyl's inequality; max|K| is the largest diagonal entry of a PSD K).
INDEFINITE_RTOL = 1e-8


def semidefinite(k, name: str, n_ulps_dtype=np.float64, arrays=NUMPY) -> None:
    """Refuse a symmetric training kernel with an eigenvalue below −τ·max diag(K), where
    τ = :data:`INDEFINITE_RTOL` + N·ε (ε of ``n_ulps_dtype``, the dtype the kernel came in).

    One Cholesky factorisation of K + τ·max diag(K)·I, N³/3 flops: it succeeds iff every eigenvalue
    of K is above −τ·max diag(K) (to round-off of order N·ε64·max diag, far below τ). Without this
    check an indefinite matrix would be clipped to a PSD one and the flow would train another kernel.

    Raises:
        ValueError: naming ``name``, with the most negative eigenvalue.
    """
    n = k.shape[0]
    if n == 0:
        return
    xp = arrays.xp
    scale = float(xp.max(xp.diagonal(k)))
    eps = np.finfo(n_ulps_dtype).eps if np.issubdtype(np.dtype(n_ulps_dtype), np.floating) else 0.0
    tol = (INDEFINITE_RTOL + n * eps) * max(scale, 0.0)
    lowest = eigenvalue_below(k, tol, arrays) if scale >= 0 else float(arrays.to_numpy(xp.linalg.eigvalsh(k))[0])
    if lowest is not None:
        raise ValueError(f"{name} is not positive semi-definite: its smallest eigenvalue is {lowest:.3g}, below the "
                         f"round-off tolerance −{tol:.3g} (= −(1e-8 + N·ε)·max diagonal); a kernel matrix must be PSD")


def eigenvalue_below(k, tol: float, arrays=NUMPY) -> Optional[float]:
    """None when every eigenvalue of the symmetric K is above −tol (one Cholesky factorisation of
    K + tol·I, N³/3 flops), else its smallest eigenvalue (eigvalsh, for the message)."""
    xp = arrays.xp
    try:
        arrays.cho_factor(k + tol * xp.eye(k.shape[0]))
        return None
    except np.linalg.LinAlgError:
        return float(arrays.to_numpy(xp.linalg.eigvalsh(k))[0])


def test_train_block(k, n_train: int, name: str, n_test: Optional[int] = None, arrays=NUMPY) -> np.ndarray:
    """A (N_test, n_train) test-train kernel block.

    Raises:
        ValueError: wrong shape or non-finite entries.
    """
    if k is None:
        raise ValueError(f"this computation needs {name}; pass it in TestKernels")
    k = as_float_array(k, name, arrays)
    if k.ndim != 2 or k.shape[1] != n_train or (n_test is not None and k.shape[0] != n_test):
        want = f"({n_test if n_test is not None else 'N_test'}, {n_train})"
        raise ValueError(f"{name} has shape {k.shape}; expected {want}")
    return k


def prior_block(k, n_test: int, need_full: bool, arrays=NUMPY) -> np.ndarray:
    """Σ(x*, x*) as (N_test, N_test), or its diagonal (N_test,) when ``need_full`` is false.

    Raises:
        ValueError: missing, wrong shape, or only a diagonal when the full matrix is needed.
    """
    if k is None:
        raise ValueError("ensemble needs TestKernels.nngp_test, the NNGP kernel Σ(x*, x*)")
    k = as_float_array(k, "nngp_test", arrays)
    if k.shape == (n_test, n_test):
        return k if need_full else k.diagonal().copy()
    if k.shape == (n_test,) and not need_full:
        return k
    want = f"({n_test}, {n_test})" + ("" if need_full else f" or ({n_test},)")
    raise ValueError(f"nngp_test has shape {k.shape}; expected {want}")


def given_blocks(test, n_train: int, kernel: str, need_nngp: bool, prior: Optional[bool], arrays=NUMPY):
    """The test kernel blocks of a flow made from kernels: (K(x*, X), Σ(x*, X) or None, Σ(x*, x*) or None).

    Args:
        test: the (N_test, N) test-train block of the training kernel, or a :class:`TestKernels`.
        n_train: N.
        kernel: "ntk" or "nngp", the flow's training kernel K.
        need_nngp: whether Σ(x*, X) is needed.
        prior: None (Σ(x*, x*) not needed), False (its diagonal) or True (the full matrix).

    Raises:
        ValueError: a bare block where TestKernels are needed, a missing block, or a wrong shape.
    """
    if not isinstance(test, TestKernels):
        if need_nngp or prior is not None:
            raise ValueError("this flow was built from kernels: pass TestKernels(ntk, nngp, nngp_test)")
        return test_train_block(test, n_train, "the test-train kernel block", arrays=arrays), None, None
    kx = test_train_block(test.ntk if kernel == "ntk" else test.nngp, n_train, f"TestKernels.{kernel}", arrays=arrays)
    sx = test_train_block(test.nngp, n_train, "TestKernels.nngp", kx.shape[0], arrays) if need_nngp else None
    p = None if prior is None else prior_block(test.nngp_test, kx.shape[0], prior, arrays)
    return kx, sx, p


def targets(y, n: int, arrays=NUMPY) -> np.ndarray:
    """Training targets as float64 of shape (N,) + output shape.

    Raises:
        ValueError: not numeric, non-finite, or not N rows.
    """
    y = as_float_array(y, "y_train", arrays)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"y_train has shape {y.shape}; expected ({n}, ...) for {n} training points")
    return y


def times(t) -> Tuple[np.ndarray, bool]:
    """Times as a 1-D float64 array, and whether ``t`` was a scalar.

    Raises:
        ValueError: NaN, a negative time, or more than one axis.
    """
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"times must be numbers ≥ 0 or inf, not {t!r}") from None
    if arr.ndim > 1:
        raise ValueError(f"times must be a number or a 1-D array, not shape {arr.shape}")
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError("times must be ≥ 0 (or inf)")
    return np.atleast_1d(arr), arr.ndim == 0


def initial(f0, n: int, tail: tuple, name: str, arrays=NUMPY) -> Optional[np.ndarray]:
    """Initial outputs of shape (n,) + ``tail``, or None for zero.

    Raises:
        ValueError: wrong shape or non-finite values.
    """
    if f0 is None:
        return None
    f0 = as_float_array(f0, name, arrays)
    if f0.shape != (n,) + tail:
        raise ValueError(f"{name} has shape {f0.shape}; expected {(n,) + tail}")
    return f0


def split_pair(f0) -> Tuple[object, object]:
    """``f0 = (f0_train, f0_test)`` or None, as two parts.

    Raises:
        ValueError: not a pair.
    """
    if f0 is None:
        return None, None
    if not isinstance(f0, (tuple, list)) or len(f0) != 2:
        raise ValueError("f0 must be a pair (f0_train, f0_test) of initial outputs, or None")
    return f0[0], f0[1]
