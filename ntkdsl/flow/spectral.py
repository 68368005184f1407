"""Factorisations of a training kernel, computed once and reused for every time and test set.

A kernel-flow solution at time t needs the matrix function g_t(K) = K⁻¹(I − e^{−cKt}) of the
(regularised) training kernel K (kernel-math.md §4). With K = V diag(λ) Vᵀ this is
V diag(g_t(λ)) Vᵀ, g_t(λ) = (1 − e^{−cλt})/λ, so one symmetric eigendecomposition serves every t;
at t = ∞ alone a Cholesky factorisation is enough (N³/3 flops against ~4N³ with vectors: 0.35 s
against 6.2 s for N = 4000 on the 2-core development machine).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .arrays import NUMPY, NumpyArrays

# Above this condition number a linear solve in float64 keeps fewer than ~6 of its ~16 digits
# (relative error up to cond·ε with ε = 2.2e-16; Golub & Van Loan, Matrix Computations, §2.6).
ILL_CONDITIONED = 1e10


class IllConditionedWarning(RuntimeWarning):
    """The training kernel is too ill-conditioned for an accurate t = ∞ solve."""


def relative_ridge(kernel: np.ndarray, diag_reg: float) -> float:
    """The absolute diagonal shift of a relative regulariser: ``diag_reg · trace(K) / N``.

    The shift is scaled by the mean diagonal entry so that ``diag_reg`` does not depend on the
    kernel's scale (neural-tangents' ``diag_reg_absolute_scale=False``, Novak et al. 2020).

    Args:
        kernel: the (N, N) training kernel.
        diag_reg: the relative regulariser, ≥ 0.

    Returns:
        The shift σ added to the diagonal.
    """
    n = kernel.shape[0]
    return float(diag_reg) * float(kernel.trace()) / n if n else 0.0


def _warn_condition(cond: float, what: str, zeros: int = 0) -> None:
    if zeros:
        detail = (f"{zeros} eigenvalues below N·ε·λ_max are treated as 0, so {what} uses the "
                  f"pseudo-inverse (the limit of the flow)")
    elif cond > ILL_CONDITIONED:
        detail = f"{what} may lose up to {min(16, int(np.log10(cond)))} of its 16 digits"
    else:
        return
    warnings.warn(f"the training kernel is ill-conditioned (condition number {cond:.3g} > "
                  f"{ILL_CONDITIONED:.0e}): {detail}; pass diag_reg (e.g. 1e-8) to regularise",
                  IllConditionedWarning, stacklevel=_outside_level())


def _outside_level() -> int:
    """The ``stacklevel`` of the first caller outside ntkdsl (and functools' cached_property)."""
    skip = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), functools.__file__)
    frame, level = sys._getframe(2), 2     # frame 2 is the caller of _warn_condition: level 2
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


@dataclass(frozen=True)
class Spectrum:
    """The eigendecomposition K = V diag(λ) Vᵀ of a symmetric positive semi-definite kernel.

    Attributes:
        values: λ, descending, float64 (N,); negative round-off clipped to 0.
        vectors: V, orthonormal columns, (N, N); column i belongs to ``values[i]``.
        clipped: how many negative eigenvalues were clipped to zero.
        arrays: the array namespace (:mod:`.arrays`) of ``values`` and ``vectors``.
    """

    values: np.ndarray
    vectors: np.ndarray
    clipped: int
    arrays: NumpyArrays = field(default=NUMPY, repr=False, compare=False)

    @classmethod
    def of(cls, kernel: np.ndarray, shift: float = 0.0, arrays: NumpyArrays = NUMPY) -> "Spectrum":
        """Decompose ``kernel + shift·I``, clipping the kernel's negative eigenvalues first.

        Args:
            kernel: symmetric (N, N) float64 array (only its lower triangle is read).
            shift: the regulariser σ ≥ 0 added to every eigenvalue after clipping.
            arrays: the array namespace of ``kernel`` (NumPy: LAPACK ?syevd; CuPy: cuSOLVER).

        Returns:
            The :class:`Spectrum`, eigenvalues in descending order.
        """
        xp = arrays.xp
        values, vectors = arrays.eigh(kernel)
        values, vectors = values[::-1], vectors[:, ::-1]
        negative = values < 0
        # A PSD kernel has λ ≥ 0; anything below is round-off of order ε·‖K‖ (Wilkinson).
        values = xp.where(negative, 0.0, values) + shift
        return cls(xp.ascontiguousarray(values), xp.ascontiguousarray(vectors), int(negative.sum()), arrays)

    @property
    def condition_number(self) -> float:
        """λ_max / λ_min (inf for a singular kernel, 1 for an empty one)."""
        if self.values.size == 0:
            return 1.0
        lo, hi = self.values[-1], self.values[0]
        return float(hi / lo) if lo > 0 else float("inf")

    def _tiny(self) -> np.ndarray:
        """Eigenvalues below N·ε·λ_max: indistinguishable from zero (numpy.linalg.pinv's cut)."""
        lam = self.values
        top = lam[0] if lam.size else 0.0
        return lam <= lam.size * np.finfo(np.float64).eps * top

    def _check_infinite(self, infinite: np.ndarray) -> None:
        if infinite.any():
            _warn_condition(self.condition_number, "the t = inf prediction", int(self._tiny().sum()))

    def inverse_factor(self, t: np.ndarray, rate: float) -> np.ndarray:
        """g_t(λ) = (1 − e^{−rate·λ·t}) / λ for each time (rows) and eigenvalue (columns).

        kernel-math.md §4: f_t(x*) = f_0(x*) + Θ(x*, X) V diag(g_t(λ)) Vᵀ (y − f_0(X)). For λ → 0
        the factor tends to rate·t, its value at λ = 0. At t = ∞ it is 1/λ on the numerically
        non-zero eigenvalues and 0 on the rest (the pseudo-inverse: the flow's limit when the
        kernel is singular).

        Args:
            t: times ≥ 0, shape (T,); ``inf`` allowed.
            rate: c in df/dt = −c·K·(f − y), i.e. η/N or η/(N·k).

        Returns:
            (T, N) float64 array.
        """
        xp = self.arrays.xp
        lam = self.values
        infinite = np.isinf(np.asarray(t, dtype=np.float64))  # on the host: it decides what to compute
        t = xp.asarray(t, dtype=xp.float64)[:, None]
        self._check_infinite(infinite)
        with self.arrays.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # −expm1(−x)/λ keeps full precision for small x = cλt, where 1 − e^{−x} would cancel.
            g = xp.where(lam > 0, -xp.expm1(-rate * lam * t) / lam, rate * t)
        if infinite.any():
            tiny = self._tiny()
            g[xp.asarray(infinite)] = xp.where(tiny, 0.0, 1.0 / xp.where(tiny, 1.0, lam))
        return g

    def residual_factor(self, t: np.ndarray, rate: float, shift: float) -> np.ndarray:
        """h_t(λ): the training residual's factor along each eigenvector, (T, N).

        With K = V diag(λ − σ) Vᵀ the raw kernel and σ = ``shift`` the ridge, the training outputs
        follow f_t(X) − y = V diag(h_t) Vᵀ (f_0(X) − y) with h_t = 1 − (λ − σ)·g_t(λ)
        = σ·g_t(λ) + e^{−cλt} (kernel-math.md §4; = e^{−cλt} without ridge). Evaluated in this
        second form, h_t keeps full relative precision where e^{−cλt} is far below ε.

        Args:
            t: times ≥ 0, shape (T,).
            rate: c, as in :meth:`inverse_factor`.
            shift: the ridge σ included in ``values``.

        Returns:
            (T, N) float64 array.
        """
        xp = self.arrays.xp
        g = self.inverse_factor(t, rate)
        t = xp.asarray(t, dtype=xp.float64)[:, None]
        with self.arrays.errstate(invalid="ignore"):
            decay = xp.exp(-rate * self.values * t)
        # A component the flow cannot move (λ numerically 0) keeps its initial residual, at any t.
        decay = xp.where(xp.isnan(decay) | (xp.isinf(t) & self._tiny()), 1.0, decay)
        return shift * g + decay


class CholeskySolver:
    """K⁻¹ by a Cholesky factorisation, for t = ∞ (kernel ridge regression) alone.

    Args:
        kernel: the (N, N) training kernel, symmetric positive definite after ``shift``.
        shift: the regulariser σ added to the diagonal.
        arrays: the array namespace of ``kernel`` (:mod:`.arrays`).

    Raises:
        numpy.linalg.LinAlgError: ``kernel + shift·I`` is not numerically positive definite.
    """

    def __init__(self, kernel: np.ndarray, shift: float = 0.0, arrays: NumpyArrays = NUMPY):
        xp = arrays.xp
        k = xp.array(kernel, dtype=xp.float64)
        index = xp.arange(k.shape[0])
        k[index, index] += shift
        norm = float(xp.abs(k).sum(axis=0).max()) if k.size else 0.0
        self._arrays = arrays
        self._factor = arrays.cho_factor(k)
        self.condition_number = 1.0 if norm == 0.0 else arrays.condition_number(self._factor, norm)

    def solve(self, b: np.ndarray) -> np.ndarray:
        """K⁻¹·b for b of shape (N,) or (N, m)."""
        return self._arrays.cho_solve(self._factor, b)


def try_cholesky(kernel: np.ndarray, shift: float, arrays: NumpyArrays = NUMPY) -> Optional[CholeskySolver]:
    """A :class:`CholeskySolver`, or None when the kernel is numerically singular.

    Singular means Cholesky breaks down or the condition number reaches 1/(N·ε): then the
    eigendecomposition's pseudo-inverse (the t → ∞ limit of the flow) must be used instead.
    Warns (:class:`IllConditionedWarning`) when the solver is returned but ill-conditioned.
    """
    try:
        solver = CholeskySolver(kernel, shift, arrays)
    except np.linalg.LinAlgError:
        return None
    if solver.condition_number * kernel.shape[0] * np.finfo(np.float64).eps >= 1.0:
        return None
    _warn_condition(solver.condition_number, "the t = inf solve")
    return solver
