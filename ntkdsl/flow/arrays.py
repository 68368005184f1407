"""Array namespaces of the kernel-flow solver: NumPy (the default) or CuPy (``backend="cupy"``).

The solver's formulas are written once over ``ns.xp`` (the array module); what differs between
the modules is the dense linear algebra, which each namespace provides:

===================  ==========================================  ============================================
operation            NumPy (host, LAPACK)                        CuPy (GPU, cuSOLVER / cuBLAS)
===================  ==========================================  ============================================
eigendecomposition   ``scipy.linalg.eigh(driver="evd")`` ?syevd  ``cupy.linalg.eigh`` (cuSOLVER syevd)
Cholesky factor      ``scipy.linalg.cho_factor`` ?potrf          ``cupy.linalg.cholesky`` (potrf), checked finite
solve with it        ``scipy.linalg.cho_solve`` ?potrs           two ``cupyx.scipy.linalg.solve_triangular``
1-norm condition     LAPACK ?pocon                               Hager–Higham estimator (the method of
                                                                 ?pocon's ?lacn2), with the same solves
===================  ==========================================  ============================================

Losses without a closed form are integrated by scipy's ODE solvers on the host in either case
(their state is N x outputs, small); only the results move to the device.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.linalg


class NumpyArrays:
    """NumPy and SciPy's LAPACK: exactly the solver's original code path."""

    name = "numpy"

    def __init__(self):
        self.xp = np

    def __reduce__(self):  # a pickled flow refers to its namespace by name (modules do not pickle)
        return arrays, (self.name,)

    def asarray(self, a):
        """``a`` as a float64 array of this namespace (CuPy arrays are copied to the host)."""
        if _is_cupy(a):
            a = a.get()
        return np.asarray(a, dtype=np.float64)

    def to_numpy(self, a):
        return a.get() if _is_cupy(a) else np.asarray(a)

    def errstate(self, **kwargs):
        return np.errstate(**kwargs)

    def eigh(self, kernel):
        # Divide and conquer (LAPACK ?syevd, as numpy.linalg.eigh); measured for N = 4000 on the
        # 2-core development machine: 6.2 s, against 6.5 s for scipy's default ?syevr.
        return scipy.linalg.eigh(kernel, driver="evd", check_finite=False)

    def cho_factor(self, k):
        """The Cholesky factor of ``k`` (overwritten); numpy.linalg.LinAlgError if not positive definite."""
        return scipy.linalg.cho_factor(k, lower=True, check_finite=False)

    def cho_solve(self, factor, b):
        return scipy.linalg.cho_solve(factor, b, check_finite=False)

    def condition_number(self, factor, norm: float) -> float:
        """The 1-norm condition number, estimated by LAPACK ?pocon in O(N²)."""
        rcond, info = scipy.linalg.lapack.dpocon(factor[0], norm, uplo="L")
        return float("inf") if info != 0 or rcond == 0 else 1.0 / float(rcond)


class CupyArrays(NumpyArrays):
    """CuPy: the same formulas on the GPU, cuSOLVER for the factorisations."""

    name = "cupy"

    def __init__(self, cupy=None):
        if cupy is None:
            try:
                import cupy
            except ImportError:
                raise ImportError("backend 'cupy' needs CuPy and a CUDA GPU: pip install 'ntkdsl[gpu]'") from None
        import cupyx.scipy.linalg

        self.xp = cupy
        self._solve_triangular = cupyx.scipy.linalg.solve_triangular

    def asarray(self, a):
        return self.xp.asarray(a, dtype=self.xp.float64)

    def to_numpy(self, a):
        return self.xp.asnumpy(a)

    def errstate(self, **kwargs):
        return contextlib.nullcontext()  # CuPy does not report floating-point errors

    def eigh(self, kernel):
        return self.xp.linalg.eigh(kernel)

    def cho_factor(self, k):
        factor = self.xp.linalg.cholesky(k)
        # CuPy does not raise for a matrix that is not positive definite (cuSOLVER's info is not
        # checked unless cupyx.errstate(linalg="raise")): a breakdown leaves non-finite entries.
        if not bool(self.xp.all(self.xp.isfinite(factor))):
            raise np.linalg.LinAlgError("the matrix is not positive definite")
        return factor

    def cho_solve(self, factor, b):
        y = self._solve_triangular(factor, b, lower=True)
        return self._solve_triangular(factor, y, lower=True, trans="T")

    def condition_number(self, factor, norm: float) -> float:
        """‖K‖₁·‖K⁻¹‖₁ with ‖K⁻¹‖₁ estimated as LAPACK's ?lacn2 does (Hager 1984, Higham 1988:
        at most five pairs of solves, plus Higham's alternating test vector), O(N²) on the GPU."""
        xp = self.xp
        n = factor.shape[0]
        if n == 0:
            return 1.0
        x = xp.full(n, 1.0 / n)
        estimate, last = 0.0, -1
        for _ in range(5):
            y = self.cho_solve(factor, x)
            estimate = float(xp.abs(y).sum())
            z = self.cho_solve(factor, xp.where(y >= 0, 1.0, -1.0))  # K⁻ᵀ = K⁻¹ (symmetric)
            j = int(xp.argmax(xp.abs(z)))
            if j == last or float(xp.abs(z[j])) <= float(z @ x):
                break
            x, last = xp.zeros(n), j
            x[j] = 1.0
        alternating = xp.arange(n, dtype=xp.float64)
        alternating = (1.0 + alternating / max(n - 1, 1)) * xp.where(alternating % 2 == 0, 1.0, -1.0)
        estimate = max(estimate, 2.0 * float(xp.abs(self.cho_solve(factor, alternating)).sum()) / (3.0 * n))
        if not np.isfinite(estimate):
            return float("inf")
        return norm * estimate


NUMPY = NumpyArrays()


def arrays(backend: str):
    """The namespace of ``backend`` ("numpy" or "cupy").

    Raises:
        ValueError: another name.
        ImportError: "cupy" without CuPy installed.
    """
    if backend == "numpy":
        return NUMPY
    if backend == "cupy":
        return CupyArrays()
    raise ValueError(f"backend must be 'numpy' or 'cupy', not {backend!r}")


def to_numpy(a):
    """A NumPy array of ``a`` (a CuPy array is copied to the host)."""
    return NUMPY.to_numpy(a)


def _is_cupy(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"
