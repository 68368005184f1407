"""The squared-loss kernel flow in closed form, from one factorisation of the training kernel.

With the regularised training kernel K = V diag(λ) Vᵀ (ridge σ included), c = η/n and
g_t(λ) = (1 − e^{−cλt})/λ (kernel-math.md §4):

    f_t(x*) − f_0(x*) = K(x*, X) V diag(g_t) Vᵀ (y − f_0(X))
    f_t(X) − y        = V diag(h_t) Vᵀ (f_0(X) − y),   h_t = σ·g_t + e^{−cλt}

One eigendecomposition (:class:`.spectral.Spectrum`) serves every time; when only t = ∞ is asked
and no eigendecomposition exists yet, a Cholesky factorisation (:class:`.spectral.CholeskySolver`)
is enough. Each is computed on first use and kept.
"""

from __future__ import annotations

from functools import cached_property
from typing import Optional

import numpy as np

from .arrays import NumpyArrays
from .spectral import CholeskySolver, Spectrum, try_cholesky


def per_time(basis: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """basis @ coefficients[t] for every time t, as one matrix product.

    Args:
        basis: (M, N), e.g. K(x*, X)·V.
        coefficients: (T, N, m).

    Returns:
        (T, M, m).
    """
    t, n, m = coefficients.shape
    out = basis @ coefficients.transpose(1, 0, 2).reshape(n, t * m)
    return out.reshape(basis.shape[0], t, m).transpose(1, 0, 2)


class ClosedForm:
    """The factorisations of one training kernel and the closed-form solution built on them.

    Args:
        kernel: the (N, N) training kernel, without the ridge.
        ridge: σ ≥ 0, added to the diagonal.
        rate: c = η/n, the rate in df/dt = −c·K·(f − y).
        arrays: the array namespace of ``kernel`` (:mod:`.arrays`).
    """

    def __init__(self, kernel: np.ndarray, ridge: float, rate: float, arrays: NumpyArrays):
        self._k, self._ridge, self._rate, self._arrays = kernel, ridge, rate, arrays

    @cached_property
    def spectrum(self) -> Spectrum:
        """The eigendecomposition of K + σI (computed once)."""
        return Spectrum.of(self._k, self._ridge, self._arrays)

    @cached_property
    def cholesky(self) -> Optional[CholeskySolver]:
        """A Cholesky solver of K + σI, or None when it is numerically singular (computed once)."""
        return try_cholesky(self._k, self._ridge, self._arrays)

    def solver_for(self, t: np.ndarray) -> Optional[CholeskySolver]:
        """The Cholesky solver when only t = ∞ is asked and no eigendecomposition exists yet."""
        if np.all(np.isinf(t)) and "spectrum" not in self.__dict__:
            return self.cholesky
        return None

    def apply_inverse(self, kx: np.ndarray, t: np.ndarray, r: np.ndarray) -> np.ndarray:
        """K(x*, X) g_t(K) r for every time: (T, N_test, m) for r of shape (N, m)."""
        chol = self.solver_for(t)
        if chol is not None:
            return self._arrays.xp.broadcast_to(kx @ chol.solve(r), (t.size, kx.shape[0], r.shape[1])).copy()
        sp = self.spectrum
        coefficients = sp.inverse_factor(t, self._rate)[:, :, None] * (sp.vectors.T @ r)[None]
        return per_time(kx @ sp.vectors, coefficients)

    def residual_coordinates(self, t: np.ndarray, d0: np.ndarray) -> np.ndarray:
        """Vᵀ(f_t(X) − y) = h_t ⊙ Vᵀ(f_0(X) − y), (T, N, m), for d0 = f_0(X) − y of shape (N, m)."""
        sp = self.spectrum
        return sp.residual_factor(t, self._rate, self._ridge)[:, :, None] * (sp.vectors.T @ d0)[None]

    def train_residual(self, t: np.ndarray, d0: np.ndarray) -> np.ndarray:
        """f_t(X) − y, (T, N, m), for d0 = f_0(X) − y of shape (N, m)."""
        chol = self.solver_for(t)
        if chol is not None:   # f_∞(X) − y = σ K_reg⁻¹ (f_0(X) − y)  (as K K_reg⁻¹ = I − σ K_reg⁻¹)
            return self._arrays.xp.broadcast_to(self._ridge * chol.solve(d0), (t.size,) + d0.shape).copy()
        return per_time(self.spectrum.vectors, self.residual_coordinates(t, d0))
