"""KrylovFlow: the kernel flow of a training kernel held as a dask array (tiles, e.g. a zarr store).

``KernelFlow.from_kernels(ntk, y)`` with a dask array ``ntk`` (as returned by
:func:`ntkdsl.distributed.kernels`) gives a :class:`KrylovFlow`: the same conventions and results
as the dense :class:`ntkdsl.flow.KernelFlow` for the squared loss (kernel-math.md §4), computed by
the Krylov solvers of :mod:`.krylov` instead of an eigendecomposition, so that the kernel is never
held whole in one process:

    f_t(x*) = f_0(x*) + K(x*, X) g_t(K_σ) (y − f_0(X))          (g_t by Lanczos; t = ∞: CG)
    f_t(X)  − y = [σ g_t(K_σ) + e^{−cK_σt}] (f_0(X) − y)        (h_t by Lanczos; t = ∞: CG)

with c = η/n, K_σ = K + σI, σ = diag_reg·trace(K)/N (:func:`.spectral.relative_ridge`). The kernel
is taken as symmetric (the distributed kernels are exactly symmetric) and is not checked entry by
entry (that would read it all); a result with NaN or infinity is refused.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import inputs
from .krylov import KernelOperator, KrylovOptions, cg, is_lazy, lanczos, preconditioner


class KrylovFlow:
    """Squared-loss kernel flow on a tiled training kernel (see the module docstring).

    Args:
        ntk_train, y_train, nngp_train, learning_rate, diag_reg, kernel, loss_normalization: as for
            :meth:`ntkdsl.flow.KernelFlow.from_kernels`; the trained kernel is a dask array (N, N).
        options: tolerances and preconditioner (:class:`.krylov.KrylovOptions`).

    Attributes:
        kernel, learning_rate, diag_reg, ridge, normaliser, loss_normalization, options: as for
        KernelFlow; ``operator.products`` counts the passes over the kernel.
    """

    def __init__(self, ntk_train, y_train, nngp_train=None, *, learning_rate: float = 1.0, diag_reg: float = 0.0,
                 kernel: str = "ntk", loss_normalization: str = "points", options: Optional[KrylovOptions] = None):
        if kernel not in ("ntk", "nngp"):
            raise ValueError(f"kernel must be 'ntk' or 'nngp', not {kernel!r}")
        if loss_normalization not in ("points", "entries"):
            raise ValueError(f"loss_normalization must be 'points' or 'entries', not {loss_normalization!r}")
        trained = ntk_train if kernel == "ntk" else nngp_train
        if trained is None:
            raise ValueError(f"kernel={kernel!r} needs the {kernel} training kernel")
        shape = tuple(trained.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"the {kernel} training kernel must be a square (N, N) array, not shape {shape}")
        n = shape[0]
        self.options = KrylovOptions() if options is None else options
        self.learning_rate = inputs.number(learning_rate, "learning_rate", "> 0", lambda v: v > 0)
        self.diag_reg = inputs.number(diag_reg, "diag_reg", "≥ 0", lambda v: v >= 0)
        self.kernel, self.loss_normalization = kernel, loss_normalization
        self._y = inputs.targets(y_train, n)
        self.normaliser = n * (int(np.prod(self._y.shape[1:], dtype=int)) if loss_normalization == "entries" else 1)
        self._rate = self.learning_rate / self.normaliser
        self.operator = KernelOperator(trained)
        diagonal = self.operator.diagonal()
        if not np.all(np.isfinite(diagonal)):
            raise ValueError(f"the {kernel} training kernel has NaN or infinite diagonal entries")
        self.ridge = self.diag_reg * float(diagonal.sum()) / n if n else 0.0  # = spectral.relative_ridge
        self.operator.shift = self.ridge
        self._preconditioner = None

    def __repr__(self) -> str:
        return (f"<KrylovFlow {self.kernel}: {self.n_train} training points (tiled), outputs {self._y.shape[1:]}, "
                f"learning_rate {self.learning_rate:g}, ridge {self.ridge:.3g}>")

    @property
    def n_train(self) -> int:
        return self._y.shape[0]

    @property
    def backend(self) -> str:
        return "numpy"

    def _flat(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], -1)

    def _shape(self, a: np.ndarray, scalar: bool) -> np.ndarray:
        a = a.reshape(a.shape[:2] + self._y.shape[1:])
        return a[0] if scalar else a

    def _solve(self, r: np.ndarray) -> np.ndarray:
        """K_σ⁻¹ r by preconditioned CG (the preconditioner built once)."""
        if self._preconditioner is None:
            self._preconditioner = preconditioner(self.operator, self.options)
        return cg(self.operator, r, self.options, self._preconditioner)

    def _function(self, times: np.ndarray, r: np.ndarray, residual: bool) -> np.ndarray:
        """g_t(K_σ)·r (or h_t(K_σ)·r with ``residual``) for every time: (T, N, m); t = ∞ by CG."""
        out = np.empty((times.size,) + r.shape)
        finite = np.isfinite(times)
        if finite.any():
            t = times[finite]
            factors = (lambda s: s.residual_factor(t, self._rate, self.ridge)) if residual else \
                (lambda s: s.inverse_factor(t, self._rate))
            out[finite] = lanczos(self.operator, r, factors, self.options)
        if (~finite).any():
            solved = self._solve(r)
            out[~finite] = self.ridge * solved if residual else solved
        if not np.all(np.isfinite(out)):
            raise ValueError("the training kernel produced NaN or infinite values (is it finite and positive "
                             "semi-definite?)")
        return out

    def _test_block(self, test):
        if isinstance(test, inputs.TestKernels):
            test = test.ntk if self.kernel == "ntk" else test.nngp
            if test is None:
                raise ValueError(f"this flow needs TestKernels.{self.kernel}, the test-train {self.kernel} block")
        shape = tuple(np.shape(test)) if not is_lazy(test) else tuple(test.shape)
        if len(shape) != 2 or shape[1] != self.n_train:
            raise ValueError(f"the test-train kernel block has shape {shape}; expected (N_test, {self.n_train})")
        return test if is_lazy(test) else inputs.as_float_array(test, "the test-train kernel block")

    def predict(self, test, t, f0=None) -> np.ndarray:
        """Outputs on test points at time t, as :meth:`ntkdsl.flow.KernelFlow.predict` for a flow
        from kernels: ``test`` is the (N_test, N) test-train block (NumPy or dask) or a TestKernels."""
        times, scalar = inputs.times(t)
        kx = self._test_block(test)
        part_train, part_test = inputs.split_pair(f0)
        tail = self._y.shape[1:]
        f0x = inputs.initial(part_train, self.n_train, tail, "f0_train")
        f0s = inputs.initial(part_test, kx.shape[0], tail, "f0_test")
        r = self._flat(self._y if f0x is None else self._y - f0x)
        coefficients = self._function(times, r, residual=False)  # (T, N, m)
        n, m = r.shape
        stacked = coefficients.transpose(1, 0, 2).reshape(n, -1)
        product = kx @ stacked
        product = np.asarray(product.compute() if is_lazy(product) else product)
        out = product.reshape(kx.shape[0], times.size, m).transpose(1, 0, 2)
        if f0s is not None:
            out = out + self._flat(f0s)[None]
        return self._shape(out, scalar)

    def _residual(self, t, f0):
        times, scalar = inputs.times(t)
        if isinstance(f0, tuple) and len(f0) == 2 and np.ndim(f0[0]) >= 1:
            f0 = f0[0]
        f0x = inputs.initial(f0, self.n_train, self._y.shape[1:], "f0_train")
        d0 = self._flat(-self._y if f0x is None else f0x - self._y)
        return self._function(times, d0, residual=True), scalar

    def predict_train(self, t, f0=None) -> np.ndarray:
        """Outputs on the training points at time t (as :meth:`ntkdsl.flow.KernelFlow.predict_train`)."""
        res, scalar = self._residual(t, f0)
        return self._shape(res + self._flat(self._y)[None], scalar)

    def loss(self, t, f0=None):
        """The training loss ‖f_t(X) − y‖²/(2n) at time t: a float, or an array (T,)."""
        res, scalar = self._residual(t, f0)
        values = np.sum(res ** 2, axis=(1, 2)) / (2.0 * self.normaliser)
        return float(values[0]) if scalar else values

    def ensemble(self, *args, **kwargs):
        raise ValueError("ensemble needs the dense solver (Σ(x*, x*) and the prior in the eigenbasis); "
                         "pass NumPy kernels to KernelFlow.from_kernels")

    def eigen(self):
        raise ValueError("the full eigendecomposition is what a tiled flow avoids; pass NumPy kernels to "
                         "KernelFlow.from_kernels for it")

