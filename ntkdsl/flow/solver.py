"""KernelFlow: the training dynamics of an infinitely wide network, solved in function space."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import numpy as np

from . import inputs
from .arrays import arrays as array_namespace
from .closed_form import ClosedForm
from .ensemble import direct_covariance, spectral_covariance
from .krylov import KrylovOptions, is_lazy
from .losses import Loss, ODEOptions, integrate, resolve
from .network_kernels import NetworkBlocks, accurate_enough, evaluate, point_side, side_options
from .spectral import relative_ridge


@dataclass(frozen=True)
class FlowEigen:
    """The kernel principal components of a flow (the seed's "convergence along principal
    components", Jacot et al. 2018 §5).

    Attributes:
        values: λᵢ, eigenvalues of the training kernel (ridge included), descending, (N,).
        rates: c·λᵢ, the rate at which the training residual decays along ``vectors[:, i]``
            (c = η/N or η/(N·k)); divide by η for the eigenvalues of K/N.
        vectors: orthonormal eigenvectors as columns, (N, N).
    """

    values: np.ndarray
    rates: np.ndarray
    vectors: np.ndarray
    _flow: "KernelFlow" = field(repr=False, compare=False)

    def components(self, t, f0=None) -> np.ndarray:
        """The training residual's coordinates Vᵀ(f_t(X) − y) along the principal components.

        For the squared loss without ridge, component i is e^{−rateᵢ·t}·[Vᵀ(f_0(X) − y)]ᵢ
        (kernel-math.md §4).

        Args:
            t: a time ≥ 0 (or inf), or a 1-D array of them.
            f0: initial training outputs (N,) + output shape, or None for zero.

        Returns:
            (N,) + output shape, with a leading time axis for an array of times.
        """
        return self._flow._components(t, f0)


class KernelFlow:
    """Gradient-flow training of an infinitely wide network, in closed form (kernel-math.md §4).

    Conventions: by default the loss is the seed's L = (1/2N)·Σᵢ‖f(xᵢ) − yᵢ‖² (Jacot et al. 2018),
    so the training outputs follow df/dt = −(η/N)·K·(f − y) with K = Θ(X, X), and time t counts
    gradient steps at learning rate η. ``loss_normalization="entries"`` divides by N·k instead
    (k = outputs per point; neural-tangents' convention). Solutions (eigendecomposition
    K = V diag(λ) Vᵀ, g_t(λ) = (1 − e^{−cλt})/λ, c = η/N):

        f_t(X)  = y + V e^{−cλt} Vᵀ (f_0(X) − y)
        f_t(x*) = f_0(x*) + K(x*, X) V diag(g_t) Vᵀ (y − f_0(X))

    ``kernel="nngp"`` replaces Θ by Σ (training the last layer only). ``diag_reg`` adds the ridge
    σ = diag_reg·trace(K)/N to K in V, λ and g_t; on training and test points alike this is the
    linearised network trained with weight decay (σ/2n)·‖θ − θ₀‖² (n = N, or N·k for "entries"),
    so that f_t(X) is the second formula at x* = X and t = ∞ is kernel ridge regression
    everywhere (neural-tangents instead keeps f_∞(X) = y on the training set). The
    eigendecomposition (or, for t = ∞ alone, a Cholesky factorisation) is computed once and reused
    for every time and test set. ``loss="cross_entropy"`` or a :class:`Loss` integrates
    df/dt = −η·K·∇_f L numerically instead (:mod:`ntkdsl.flow.losses`).

    Args:
        net: a :class:`ntkdsl.CompiledNetwork` (anything with ``kernels(x1, x2=None)``).
        x_train: training inputs, (N, d).
        y_train: targets, (N,) or (N, k) (any trailing shape; the outputs share the kernel).
        learning_rate: η > 0.
        diag_reg: relative ridge ≥ 0.
        kernel: "ntk" (train all layers) or "nngp" (train the last layer only).
        loss_normalization: "points" (1/2N) or "entries" (1/(2N·k)).
        loss: "mse" (closed form), "cross_entropy" (softmax over the last axis of y), or a
            :class:`Loss` (its own normalisation).
        ode: solver and tolerances for losses without a closed form.
        backend: "numpy" (default) or "cupy": where the kernels, the eigendecomposition, the
            solves and the predictions live (:mod:`ntkdsl.flow.arrays`). With "cupy" the network's
            kernels are evaluated with ``net.kernels(..., backend="cupy")``, inputs may be NumPy or
            CuPy arrays, and results are CuPy arrays; losses without a closed form are still
            integrated on the host (scipy), their results copied to the GPU.
        graph_train: for a network with ``aggregate`` layers (a GNN), each training point's adjacency, dense
            (N, V, V) floats or (N, E, 2) integer edge lists (as ``net.kernels``' graph1); ``predict`` and
            ``ensemble`` then take the test points' as ``graph_test``.
        mask_train: position masks of the training points, booleans (N, *S), True = masked (as
            ``net.kernels``' mask1; :mod:`ntkdsl.masks`), for a network of per-position layers; ``predict``
            and ``ensemble`` take the test points' as ``mask_test`` (either left out: nothing masked there); a
            network with a layer that cannot take masks refuses them (StructureSpecError at the layer).

    Attributes:
        kernel, learning_rate, diag_reg, loss_normalization: as given.
        ridge: σ, the absolute diagonal shift.
        normaliser: n, the loss's divisor (N or N·k).
        n_train: N.

    Raises:
        ValueError: inconsistent shapes, non-finite values, an unknown option, graphs missing for a network
            that aggregates over graphs (or given to one that does not), masks not of shape (N, *S), or a training kernel
            with an eigenvalue below −:data:`.network_kernels.NETWORK_KERNEL_RTOL`·tr K (the flow would otherwise clip it
            and train another kernel).
    """

    def __init__(self, net, x_train, y_train, learning_rate: float = 1.0, diag_reg: float = 0.0,
                 kernel: str = "ntk", loss_normalization: str = "points", loss="mse",
                 ode: ODEOptions = ODEOptions(), backend: str = "numpy", graph_train=None, mask_train=None):
        self._arrays = array_namespace(backend)
        x = inputs.as_float_array(self._arrays.to_numpy(x_train), "x_train")
        side = point_side(net, x, "x_train", "_train", graph_train, mask_train)
        k = evaluate(net, x, None, self._arrays, **side_options(x, side))
        self._setup(k.ntk, k.nngp, y_train, learning_rate, diag_reg, kernel, loss_normalization,
                    loss, ode)
        self._network: Optional[NetworkBlocks] = NetworkBlocks(net, x, self.kernel, self._arrays, side)
        accurate_enough(self._k, self.kernel, self._arrays)

    @classmethod
    def from_kernels(cls, ntk_train, y_train, nngp_train=None, *, learning_rate: float = 1.0,
                     diag_reg: float = 0.0, kernel: str = "ntk", loss_normalization: str = "points",
                     loss="mse", ode: ODEOptions = ODEOptions(), backend: str = "numpy",
                     krylov: Optional[KrylovOptions] = None) -> "KernelFlow":
        """A flow from precomputed training kernels; its methods then take test kernel blocks.

        ``predict`` takes the (N_test, N) test-train block of the training kernel (or a
        :class:`TestKernels`); ``ensemble`` a :class:`TestKernels` with Σ(x*, X), Σ(x*, x*) and,
        for ``kernel="ntk"``, Θ(x*, X). Other arguments as for :class:`KernelFlow`.

        A training kernel held as a dask array (e.g. from :func:`ntkdsl.distributed.kernels`) gives a
        :class:`ntkdsl.flow.tiled.KrylovFlow` instead (squared loss; ``predict``, ``predict_train``,
        ``loss``): iterative solvers over its tiles with the tolerances of ``krylov``
        (:class:`ntkdsl.flow.krylov.KrylovOptions`), never the whole kernel in one process.

        Args:
            ntk_train: Θ(X, X), (N, N); may be None when ``kernel="nngp"``.
            y_train: targets, (N,) + output shape.
            nngp_train: Σ(X, X), (N, N); needed by ``kernel="nngp"`` and by ``ensemble``.

        Raises:
            ValueError: as for :class:`KernelFlow`, or a training kernel with an eigenvalue below
                the round-off tolerance of :func:`ntkdsl.flow.inputs.semidefinite` (not PSD).
        """
        if is_lazy(ntk_train) or is_lazy(nngp_train):
            if loss != "mse" or backend != "numpy":
                raise ValueError("a training kernel held as a dask array takes the squared loss (loss='mse') "
                                 "and backend='numpy'")
            from .tiled import KrylovFlow

            return KrylovFlow(ntk_train, y_train, nngp_train, learning_rate=learning_rate, diag_reg=diag_reg,
                              kernel=kernel, loss_normalization=loss_normalization, options=krylov)
        self = cls.__new__(cls)
        self._arrays = array_namespace(backend)
        self._network = None
        self._setup(ntk_train, nngp_train, y_train, learning_rate, diag_reg, kernel,
                    loss_normalization, loss, ode)
        for given, k, name in ((ntk_train, self._ntk, "ntk_train"), (nngp_train, self._nngp, "nngp_train")):
            if k is not None:  # a matrix from elsewhere: refuse an indefinite one (it would be clipped)
                inputs.semidefinite(k, name, getattr(given, "dtype", np.float64), self._arrays)
        return self

    def _setup(self, ntk, nngp, y, learning_rate, diag_reg, kernel, loss_normalization, loss, ode):
        if kernel not in ("ntk", "nngp"):
            raise ValueError(f"kernel must be 'ntk' or 'nngp', not {kernel!r}")
        if loss_normalization not in ("points", "entries"):
            raise ValueError(f"loss_normalization must be 'points' or 'entries', not {loss_normalization!r}")
        learning_rate = inputs.number(learning_rate, "learning_rate", "> 0", lambda v: v > 0)
        diag_reg = inputs.number(diag_reg, "diag_reg", "≥ 0", lambda v: v >= 0)
        trained = ntk if kernel == "ntk" else nngp
        if trained is None:
            raise ValueError(f"kernel={kernel!r} needs the {kernel} training kernel")
        shape = np.shape(trained)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"the {kernel} training kernel must be a square (N, N) array, not shape {shape}")
        n = shape[0]
        self._y = inputs.targets(y, n, self._arrays)
        self._ntk = None if ntk is None else inputs.train_kernel(ntk, n, "ntk_train", self._arrays)
        self._nngp = None if nngp is None else inputs.train_kernel(nngp, n, "nngp_train", self._arrays)
        self._k = self._ntk if kernel == "ntk" else self._nngp
        self.kernel, self.learning_rate, self.diag_reg = kernel, float(learning_rate), float(diag_reg)
        self.ridge = relative_ridge(self._k, diag_reg)
        self.normaliser = n * (int(np.prod(self._y.shape[1:], dtype=int)) if loss_normalization == "entries" else 1)
        self.loss_normalization = loss_normalization
        self._rate = self.learning_rate / self.normaliser
        self._loss: Optional[Loss] = resolve(loss, self._y, self.normaliser)
        self._ode = ode
        self._closed = ClosedForm(self._k, self.ridge, self._rate, self._arrays)

    def __repr__(self) -> str:
        return (f"<KernelFlow {self.kernel}: {self.n_train} training points, outputs "
                f"{self._y.shape[1:]}, learning_rate {self.learning_rate:g}, ridge {self.ridge:.3g}>")

    @property
    def n_train(self) -> int:
        return self._y.shape[0]

    @property
    def _tail(self) -> tuple:
        return self._y.shape[1:]

    @property
    def backend(self) -> str:
        """"numpy" or "cupy": the array module of the flow's arrays and results."""
        return self._arrays.name

    # ---------------------------------------------------------------- building blocks

    @cached_property
    def _prior_in_eigenbasis(self) -> np.ndarray:
        v = self._closed.spectrum.vectors
        return v.T @ self._nngp @ v

    def _blocks(self, test, need_nngp: bool = False, prior: Optional[bool] = None, graph_test=None, mask_test=None):
        """(K(x*, X), Σ(x*, X) or None, Σ(x*, x*) or None); ``prior``: None, False (diagonal), True."""
        if self._network is not None:
            return self._network(test, prior, graph_test, mask_test)
        for name, value in (("graph_test", graph_test), ("mask_test", mask_test)):
            if value is not None:
                raise ValueError(f"{name} goes with test inputs; this flow was built from kernels (from_kernels): its "
                                 f"test kernel blocks already hold the {name[:-5]}s")
        return inputs.given_blocks(test, self.n_train, self.kernel, need_nngp, prior, self._arrays)

    def _initial_residual(self, f0x: Optional[np.ndarray]) -> np.ndarray:
        """f_0(X) − y as (N, m)."""
        return self._flat(-self._y if f0x is None else f0x - self._y)

    def _flat(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], -1)

    def _shape(self, a: np.ndarray, scalar: bool) -> np.ndarray:
        """(T, M, m) → (T, M) + output shape, without the time axis for a scalar time."""
        a = a.reshape(a.shape[:2] + self._tail)
        return a[0] if scalar else a

    def _ode_outputs(self, t, f0x, kx, f0s):
        """The integrated flow (f_train, f_test), (T, N) and (T, N_test) + output shape; scipy's
        solvers run on the host, so CuPy arrays go there and the results come back."""
        n, tail, host = self.n_train, self._tail, self._arrays.to_numpy
        f0x = np.zeros((n,) + tail) if f0x is None else host(f0x)
        f0s = np.zeros((kx.shape[0],) + tail) if f0s is None else host(f0s)
        f_train, f_test = integrate(self._loss, host(self._k), host(kx), host(self._y), f0x, f0s, t,
                                    self.learning_rate, self.ridge / self.normaliser, self._ode)
        return self._arrays.asarray(f_train), self._arrays.asarray(f_test)

    # ---------------------------------------------------------------- public API

    def predict(self, test, t, f0=None, graph_test=None, mask_test=None) -> np.ndarray:
        """Outputs on test points at time t.

        Args:
            test: test inputs (N_test, d); for a flow made by :meth:`from_kernels`, the
                (N_test, N) test-train block of the training kernel or a :class:`TestKernels`.
            t: a time ≥ 0 (gradient steps at learning rate η; ``inf`` allowed for the squared
                loss), or a 1-D array of times.
            f0: None (start from zero outputs) or a pair (f0_train, f0_test) of initial outputs,
                shapes (N,) + output shape and (N_test,) + output shape; a None part is zero.
            graph_test: the test points' adjacencies, for a network with aggregate layers (as ``graph_train``).
            mask_test: the test points' position masks (as ``mask_train``).

        Returns:
            (N_test,) + output shape, with a leading time axis for an array of times.

        Raises:
            ValueError: bad shapes or times (an infinite time with a loss without closed form), or test graphs
                missing for a network that aggregates over graphs.
        """
        times, scalar = inputs.times(t)
        kx, _, _ = self._blocks(test, graph_test=graph_test, mask_test=mask_test)
        part_train, part_test = inputs.split_pair(f0)
        f0x = inputs.initial(part_train, self.n_train, self._tail, "f0_train", self._arrays)
        f0s = inputs.initial(part_test, kx.shape[0], self._tail, "f0_test", self._arrays)
        if self._loss is not None:
            return self._shape(self._flat_time(self._ode_outputs(times, f0x, kx, f0s)[1]), scalar)
        r = self._flat(self._y if f0x is None else self._y - f0x)
        out = self._closed.apply_inverse(kx, times, r)
        if f0s is not None:
            out += self._flat(f0s)[None]
        return self._shape(out, scalar)

    def _flat_time(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[:2] + (-1,))

    def predict_train(self, t, f0=None) -> np.ndarray:
        """Outputs on the training points at time t (see :meth:`predict`).

        Args:
            t: a time ≥ 0 or inf, or a 1-D array of them.
            f0: None, the initial training outputs (N,) + output shape, or a pair
                (f0_train, f0_test) whose first part is used.

        Returns:
            (N,) + output shape, with a leading time axis for an array of times.
        """
        times, scalar = inputs.times(t)
        f0x = self._train_initial(f0)
        if self._loss is not None:
            f = self._ode_outputs(times, f0x, np.zeros((0, self.n_train)), None)[0]
            return self._shape(self._flat_time(f), scalar)
        residual = self._closed.train_residual(times, self._initial_residual(f0x))
        return self._shape(residual + self._flat(self._y)[None], scalar)

    def _train_initial(self, f0) -> Optional[np.ndarray]:
        if isinstance(f0, tuple) and len(f0) == 2 and np.ndim(f0[0]) >= 1:
            f0 = f0[0]
        return inputs.initial(f0, self.n_train, self._tail, "f0_train", self._arrays)

    def _components(self, t, f0) -> np.ndarray:
        times, scalar = inputs.times(t)
        f0x = self._train_initial(f0)
        if self._loss is None:
            c = self._closed.residual_coordinates(times, self._initial_residual(f0x))
        else:
            f = self._flat_time(self._ode_outputs(times, f0x, np.zeros((0, self.n_train)), None)[0])
            c = self._arrays.xp.einsum("nk,tnm->tkm", self._closed.spectrum.vectors, f - self._flat(self._y)[None])
        return self._shape(c, scalar)

    def loss(self, t, f0=None):
        """The training loss at time t: a float for a scalar t, else an array (T,).

        Args:
            t: a time ≥ 0 or inf, or a 1-D array of them.
            f0: initial training outputs, as for :meth:`predict_train`.
        """
        times, scalar = inputs.times(t)
        f0x = self._train_initial(f0)
        xp, host = self._arrays.xp, self._arrays.to_numpy
        if self._loss is not None:
            f = self._ode_outputs(times, f0x, np.zeros((0, self.n_train)), None)[0]
            values = xp.asarray(np.array([self._loss.value(fi, host(self._y)) for fi in host(f)]))
        else:   # ‖f_t − y‖² is the same in the eigenbasis when that exists
            closed, d0 = self._closed, self._initial_residual(f0x)
            res = closed.train_residual(times, d0) if closed.solver_for(times) else closed.residual_coordinates(times, d0)
            values = xp.sum(res ** 2, axis=(1, 2)) / (2.0 * self.normaliser)
        return float(values[0]) if scalar else values

    def eigen(self) -> FlowEigen:
        """The kernel principal components and their decay rates (computed once, then cached)."""
        sp = self._closed.spectrum
        return FlowEigen(sp.values, self._rate * sp.values, sp.vectors, self)

    def max_learning_rate(self) -> float:
        """η_max = 2n/λ_max: the largest stable step of discrete gradient descent on the
        squared loss (kernel-math.md §4; n = N or N·k, λ_max of the training kernel + ridge)."""
        top = self._closed.spectrum.values[0] if self.n_train else 0.0
        return float("inf") if top <= 0 else 2.0 * self.normaliser / float(top)

    def ensemble(self, test, t, compute_cov: bool = True, graph_test=None, mask_test=None):
        """Mean and covariance of the outputs at time t over random initialisations f_0 ~ GP(0, Σ).

        Lee et al. (2019), eq. 16 (kernel-math.md §4): see :mod:`ntkdsl.flow.ensemble`. The
        covariance is shared by all outputs (the kernel is K ⊗ I_k).

        Args:
            test: test inputs (N_test, d), or a :class:`TestKernels` for a ``from_kernels`` flow.
            t: a time ≥ 0 or inf, or a 1-D array of them.
            compute_cov: the full (N_test, N_test) covariance, or only its diagonal.
            graph_test: the test points' adjacencies, for a network with aggregate layers (as ``graph_train``).
            mask_test: the test points' position masks (as ``mask_train``).

        Returns:
            (mean, cov): mean (N_test,) + output shape; cov (N_test, N_test), or var (N_test,);
            each with a leading time axis for an array of times.

        Raises:
            ValueError: a loss without closed form, a flow without the NNGP training kernel, or
                missing test kernel blocks.
        """
        if self._loss is not None:
            raise ValueError(f"ensemble needs the squared loss; this flow uses {self._loss.name!r}")
        if self._nngp is None:
            raise ValueError("ensemble needs the NNGP training kernel (from_kernels(..., nngp_train=...))")
        times, scalar = inputs.times(t)
        kx, sx, prior = self._blocks(test, need_nngp=True, prior=bool(compute_cov), graph_test=graph_test,
                                     mask_test=mask_test)
        mean = self._closed.apply_inverse(kx, times, self._flat(self._y))
        chol = self._closed.solver_for(times)
        xp = self._arrays.xp
        if chol is not None:
            one = direct_covariance(chol.solve(kx.T).T, self._nngp, sx, prior, xp)
            cov = xp.broadcast_to(one, (times.size,) + one.shape).copy()
        else:
            v = self._closed.spectrum.vectors
            g = self._closed.spectrum.inverse_factor(times, self._rate)
            cov = spectral_covariance(kx @ v, sx @ v, self._prior_in_eigenbasis, g, prior, xp)
        mean = self._shape(mean, scalar)
        return mean, (cov[0] if scalar else cov)
