"""The Gaussian distribution of kernel-flow predictions over random initialisations.

With f_0 ~ GP(0, Σ) (the NNGP prior), the prediction at time t is linear in f_0, hence Gaussian
(Lee et al. 2019, "Wide neural networks of any depth evolve as linear models under gradient
descent", eq. 16; kernel-math.md §4):

    mean = A y,   cov = Σ(x*, x*) + A Σ(X, X) Aᵀ − (A Σ(X, x*) + Σ(x*, X) Aᵀ),
    A = K(x*, X) K⁻¹ (I − e^{−cKt})

where K is the training kernel (Θ when all layers train, Σ when only the last one does).
"""

from __future__ import annotations

import numpy as np


def _quadratic(m: np.ndarray, s: np.ndarray, q: np.ndarray, prior: np.ndarray, xp=np) -> np.ndarray:
    """prior + m s mᵀ − m qᵀ − q mᵀ, or its diagonal when ``prior`` is 1-D.

    With A = m Bᵀ, S = B s Bᵀ and Σ(x*, X) = q Bᵀ for an orthogonal B (or B = I) this is the
    covariance of Lee et al. (2019), eq. 16.
    """
    ms = m @ s
    if prior.ndim == 1:
        # diag(m s mᵀ) = rowsum((m s) ∘ m), diag(m qᵀ) = rowsum(m ∘ q): O(N_test·N) after m s.
        var = prior + xp.einsum("an,an->a", ms, m) - 2.0 * xp.einsum("an,an->a", m, q)
        # The exact variance is ≥ 0; round-off can leave −ε·‖Σ‖ where it vanishes (x* ∈ X, t = ∞).
        return xp.maximum(var, 0.0)
    cross = m @ q.T
    cov = prior + ms @ m.T - cross - cross.T
    return 0.5 * (cov + cov.T)


def spectral_covariance(p: np.ndarray, q: np.ndarray, s: np.ndarray, g: np.ndarray,
                        prior: np.ndarray, xp=np) -> np.ndarray:
    """Covariances at several times from one eigendecomposition K = V diag(λ) Vᵀ.

    In the eigenbasis A = P diag(g_t) Vᵀ with P = K(x*, X) V, so with Q = Σ(x*, X) V and
    S = Vᵀ Σ(X, X) V (computed once) the covariance of eq. 16 is
    Σ(x*, x*) + M S Mᵀ − M Qᵀ − Q Mᵀ, M = P diag(g_t).

    Args:
        p: P, (N_test, N).
        q: Q, (N_test, N).
        s: S, (N, N).
        g: g_t(λ) per time, (T, N) (see :meth:`Spectrum.inverse_factor`).
        prior: Σ(x*, x*), (N_test, N_test), or its diagonal (N_test,) for variances only.
        xp: the array module of the arrays (numpy or cupy).

    Returns:
        (T, N_test, N_test) covariances, or (T, N_test) variances.
    """
    return xp.stack([_quadratic(p * gt, s, q, prior, xp) for gt in g])


def direct_covariance(a: np.ndarray, sigma_train: np.ndarray, sigma_test_train: np.ndarray,
                      prior: np.ndarray, xp=np) -> np.ndarray:
    """The covariance of eq. 16 for a given A (t = ∞: A = K(x*, X) K⁻¹ from a Cholesky solve).

    Args:
        a: A, (N_test, N).
        sigma_train: Σ(X, X), (N, N).
        sigma_test_train: Σ(x*, X), (N_test, N).
        prior: Σ(x*, x*) (N_test, N_test), or its diagonal (N_test,).
        xp: the array module of the arrays (numpy or cupy).

    Returns:
        (N_test, N_test) covariance or (N_test,) variances.
    """
    return _quadratic(a, sigma_train, sigma_test_train, prior, xp)
