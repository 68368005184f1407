"""Kernel flow on kernels too large for a dense factorisation: Krylov solvers over a tiled kernel.

A training kernel held as a dask array (e.g. the store of :func:`ntkdsl.distributed.kernels`) is
touched only through products K·V, (N, N) x (N, m), computed tile by tile by dask, and its
diagonal blocks. :meth:`KernelFlow.from_kernels` returns a :class:`KrylovFlow` for it. With the
ridge σ and K_σ = K + σI (kernel-math.md §4; the dense solver's formulas in :mod:`.spectral`):

* t = ∞: K_σ⁻¹ r by preconditioned conjugate gradients (Hestenes & Stiefel 1952; Saad, Iterative
  Methods for Sparse Linear Systems, 2nd ed., Alg. 9.1), one independent recurrence per column of
  r, with a block-Jacobi preconditioner (the Cholesky factors of the kernel's diagonal blocks,
  Saad §10.2) or a randomized Nyström one (Frangella, Tropp & Udell 2023, SIAM J. Matrix Anal.
  Appl. 44(2), Alg. 2.1 and eq. 5.3). Stops when the true residual ‖K_σx − r‖ ≤ rtol·‖r‖ per column.
* finite t: g_t(K_σ)·r and h_t(K_σ)·r (:meth:`.spectral.Spectrum.inverse_factor`,
  :meth:`.spectral.Spectrum.residual_factor`) by the Lanczos approximation f(K)b ≈ ‖b‖·Q_k f(T_k) e₁
  (Saad 1992, SIAM J. Numer. Anal. 29(1); Hochbruck & Lubich 1997 for the exponential), with full
  reorthogonalisation; f(T_k) through the eigendecomposition of the small tridiagonal T_k, by the
  same :class:`.spectral.Spectrum` code as the dense solver. Stops when the approximation changes
  by at most rtol (relative, every time, every column) over ``check_every`` further steps.

Neither method stops silently short: :class:`NotConvergedError` when ``maxiter`` is reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.linalg

from .spectral import Spectrum


class NotConvergedError(RuntimeError):
    """An iterative solve did not reach its tolerance within ``maxiter`` iterations."""


@dataclass(frozen=True)
class KrylovOptions:
    """Tolerances of the iterative solvers.

    Attributes:
        rtol: CG: relative residual per column; Lanczos: relative change of the result between
            checks. The error of a t = ∞ prediction is at most about cond(K_σ)·rtol relative.
        maxiter: iterations at most (default: N for CG, min(N, 2000) for Lanczos).
        preconditioner: "nystrom" (default), "jacobi" (block-Jacobi over the kernel's row chunks) or
            "none". Measured on a 2000-point FCN NTK (cond 9e4, rtol 1e-10): 131 CG iterations with
            Nyström (rank 200), 635 with block-Jacobi (500-point blocks), 582 without: an NTK's large
            eigenvalues are spread over all its entries, which diagonal blocks do not see.
        rank: columns of the Nyström sketch.
        check_every: Lanczos steps between convergence checks.
        seed: of the Nyström sketch's random matrix.
    """

    rtol: float = 1e-10
    maxiter: Optional[int] = None
    preconditioner: str = "nystrom"
    rank: int = 200
    check_every: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.preconditioner not in ("jacobi", "nystrom", "none"):
            raise ValueError(f"preconditioner must be 'jacobi', 'nystrom' or 'none', not {self.preconditioner!r}")
        if not (np.isfinite(self.rtol) and 0 < self.rtol < 1):
            raise ValueError(f"rtol must be in (0, 1), not {self.rtol!r}")
        for name in ("rank", "check_every") + (("maxiter",) if self.maxiter is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


def is_lazy(a) -> bool:
    """Whether ``a`` is a dask array (a kernel to be touched only through products)."""
    return type(a).__module__.split(".")[0] == "dask" and hasattr(a, "chunks")


class KernelOperator:
    """V ↦ (K + σI)·V for a kernel held as a dask (or NumPy) array, and its diagonal blocks."""

    def __init__(self, kernel, shift: float = 0.0):
        self.kernel, self.shift = kernel, float(shift)
        self.n = kernel.shape[0]
        self.products = 0  # matrix products so far (each reads the whole kernel once)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        self.products += 1
        out = self.kernel @ v
        out = np.asarray(out.compute() if is_lazy(out) else out, dtype=np.float64)
        return out + self.shift * v

    def diagonal(self) -> np.ndarray:
        if is_lazy(self.kernel):
            import dask.array as da

            return np.asarray(da.diagonal(self.kernel).compute(), dtype=np.float64)
        return np.asarray(np.diagonal(self.kernel), dtype=np.float64)

    def diagonal_blocks(self):
        """(slice, dense K_σ block) along the kernel's row chunks (one block for a NumPy kernel)."""
        bounds = np.cumsum((0,) + tuple(self.kernel.chunks[0])) if is_lazy(self.kernel) else (0, self.n)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            block = self.kernel[lo:hi, lo:hi]
            block = np.array(block.compute() if is_lazy(block) else block, dtype=np.float64)
            block[np.diag_indices_from(block)] += self.shift
            yield slice(int(lo), int(hi)), block


def block_jacobi(op: KernelOperator):
    """M⁻¹ of the block-Jacobi preconditioner: Cholesky solves with K_σ's diagonal blocks."""
    factors = []
    for rows, block in op.diagonal_blocks():
        try:
            factors.append((rows, scipy.linalg.cho_factor(0.5 * (block + block.T), lower=True, check_finite=False)))
        except np.linalg.LinAlgError:
            raise np.linalg.LinAlgError("a diagonal block of the training kernel is not positive definite: "
                                        "pass diag_reg (e.g. 1e-8), or preconditioner='none'") from None

    def apply(r: np.ndarray) -> np.ndarray:
        out = np.empty_like(r)
        for rows, factor in factors:
            out[rows] = scipy.linalg.cho_solve(factor, r[rows], check_finite=False)
        return out
    return apply


def nystrom(op: KernelOperator, rank: int, seed: int):
    """M⁻¹ of the randomized Nyström preconditioner of K_σ (Frangella, Tropp & Udell 2023):
    K ≈ U Λ Uᵀ from a rank-``rank`` sketch, M⁻¹ = (λ_r + σ)·U (Λ + σI)⁻¹ Uᵀ + (I − U Uᵀ)."""
    n, sigma = op.n, op.shift
    rank = min(rank, n)
    omega, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, rank)))
    y = op(omega) - sigma * omega  # K·Ω without the ridge
    # Alg. 2.1, step 3: a stabilising shift √N·ε·‖Y‖, with the Frobenius norm (≥ the 2-norm: a
    # slightly larger shift, no SVD of Y)
    nu = np.sqrt(n) * np.finfo(np.float64).eps * np.linalg.norm(y)
    y_nu = y + nu * omega
    c = scipy.linalg.cholesky(0.5 * (omega.T @ y_nu + (omega.T @ y_nu).T), lower=False, check_finite=False)
    b = scipy.linalg.solve_triangular(c, y_nu.T, trans="T", lower=False, check_finite=False).T  # Y_ν C⁻¹
    u, s, _ = np.linalg.svd(b, full_matrices=False)
    lam = np.maximum(s**2 - nu, 0.0)
    floor = lam[-1] + sigma
    scale = np.where(lam + sigma > 0, floor / np.where(lam + sigma > 0, lam + sigma, 1.0), 1.0)

    def apply(r: np.ndarray) -> np.ndarray:
        ur = u.T @ r
        return r + u @ ((scale - 1.0)[:, None] * ur)
    return apply


def preconditioner(op: KernelOperator, options: KrylovOptions):
    if options.preconditioner == "jacobi":
        return block_jacobi(op)
    if options.preconditioner == "nystrom":
        return nystrom(op, options.rank, options.seed)
    return lambda r: r.copy()


def cg(op: KernelOperator, b: np.ndarray, options: KrylovOptions, apply_m=None) -> np.ndarray:
    """x with ‖K_σx − b‖ ≤ rtol·‖b‖ for each column of b (N, m), by preconditioned CG (Saad Alg. 9.1).

    Raises:
        NotConvergedError: not within ``maxiter`` iterations (the message gives the residual).
    """
    apply_m = preconditioner(op, options) if apply_m is None else apply_m
    maxiter = options.maxiter or max(op.n, 1)
    target = options.rtol * np.linalg.norm(b, axis=0)
    x = np.zeros_like(b)
    r = b.copy()
    for _ in range(3):  # restarts from the true residual, should the recursive one have drifted
        z = apply_m(r)
        p, rz = z.copy(), np.sum(r * z, axis=0)
        for _ in range(maxiter):
            if np.all(np.linalg.norm(r, axis=0) <= target):
                break
            q = op(p)
            pq = np.sum(p * q, axis=0)
            alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=pq > 0)  # a converged column stays put
            x += alpha * p
            r -= alpha * q
            z = apply_m(r)
            rz_next = np.sum(r * z, axis=0)
            beta = np.divide(rz_next, rz, out=np.zeros_like(rz), where=rz > 0)
            p, rz = z + beta * p, rz_next
        r = b - op(x)
        if np.all(np.linalg.norm(r, axis=0) <= target):
            return x
    worst = float(np.max(np.linalg.norm(r, axis=0) / np.maximum(np.linalg.norm(b, axis=0), 1e-300)))
    raise NotConvergedError(f"conjugate gradients reached a relative residual of {worst:.3g}, not rtol = "
                            f"{options.rtol:g}, in {maxiter} iterations: the kernel is ill-conditioned; pass diag_reg "
                            "(e.g. 1e-6), another preconditioner, a larger maxiter or rtol")


def lanczos(op: KernelOperator, b: np.ndarray, factors, options: KrylovOptions) -> np.ndarray:
    """f(K_σ)·b for each column of b (N, m) and each time: (T, N, m).

    ``factors(spectrum)`` gives the (T, k) values of f at the Ritz values (a :class:`Spectrum` of
    T_k, eigenvalues descending), e.g. ``lambda s: s.inverse_factor(t, rate)``.

    Raises:
        NotConvergedError: no convergence within ``maxiter`` steps.
    """
    n, m = b.shape
    maxiter = min(options.maxiter or min(n, 2000), n)
    norms = np.linalg.norm(b, axis=0)
    q = [np.divide(b, norms, out=np.zeros_like(b), where=norms > 0)]
    alphas, betas = [], []
    active = norms > 0
    result = previous = None
    for k in range(1, maxiter + 1):
        w = op(q[-1])
        alphas.append(np.sum(q[-1] * w, axis=0))
        basis = np.stack(q)  # (k, N, m)
        for _ in range(2):  # full reorthogonalisation, twice (Parlett's "twice is enough")
            w -= np.einsum("knm,km->nm", basis, np.einsum("knm,nm->km", basis, w))
        beta = np.linalg.norm(w, axis=0)
        scale = np.max(np.abs(np.stack(alphas))) if alphas else 1.0
        broke = beta <= 1e-14 * max(scale, 1e-300) * np.sqrt(n)  # an invariant subspace: exact from here
        if k % options.check_every == 0 or np.all(broke | ~active) or k == maxiter:
            result = _evaluate(basis, np.stack(alphas), np.stack(betas) if betas else np.zeros((0, m)), norms, factors)
            if previous is not None or np.all(broke | ~active):
                change = 0.0 if previous is None else np.linalg.norm(result - previous, axis=1)
                if np.all(change <= options.rtol * np.linalg.norm(result, axis=1)) or np.all(broke | ~active):
                    return result
            previous = result
        active = active & ~broke
        betas.append(np.where(active, beta, 0.0))
        q.append(np.divide(w, beta, out=np.zeros_like(w), where=active))
    if k >= n:
        return result  # the whole space: exact up to round-off
    raise NotConvergedError(f"Lanczos did not reach rtol = {options.rtol:g} in {maxiter} steps; pass a larger "
                            "maxiter or rtol, or diag_reg")


def _evaluate(basis, alphas, betas, norms, factors) -> np.ndarray:
    """‖b‖·Q f(T) e₁ for every column (basis (k, N, m), alphas (k, m), betas (k − 1, m)): (T, N, m)."""
    k, n, m = basis.shape
    out = None
    for c in range(m):
        tri = np.diag(alphas[:, c]) + np.diag(betas[:k - 1, c], 1) + np.diag(betas[:k - 1, c], -1)
        spectrum = Spectrum.of(tri)
        weights = factors(spectrum) * spectrum.vectors[0][None, :]  # (T, k): f(θ_i)·s_{1i}
        coefficients = norms[c] * weights @ spectrum.vectors.T  # (T, k): f(T) e₁ in the Lanczos basis
        column = coefficients @ basis[:, :, c]  # (T, N)
        out = np.empty((column.shape[0], n, m)) if out is None else out
        out[:, :, c] = column
    return out
