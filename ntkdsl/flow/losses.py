"""Losses without a closed-form flow, integrated with scipy's ODE solvers.

For a loss L(f(X), y) of the training outputs the linearised network follows the kernel gradient
flow df(x)/dt = −η·[Θ(x, X)·∇_f L + (σ/n)·(f(x) − f_0(x))] at every point x, training or test
(Jacot et al. 2018, §4; kernel-math.md §4), where σ/n is the weight-decay term that a ridge σ on
the training kernel stands for (see :class:`ntkdsl.flow.KernelFlow`). For the squared loss this
has the closed form of kernel-math.md §4; for others the train and test outputs are integrated
together as one ODE system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np
import scipy.integrate
from scipy.special import log_softmax, softmax

from ..progress import time_progress


@dataclass(frozen=True)
class Loss:
    """A training loss L(f, y) and its gradient ∇_f L, both over all training outputs.

    Both callables receive ``f`` and ``y`` of the shape of the training targets, (N,) + output
    shape; ``value`` returns a float, ``grad`` an array of that same shape. The normalisation
    (1/N, 1/(N·k), ...) is part of the loss: the flow then follows df/dt = −η·Θ·∇_f L.

    Attributes:
        value: L(f, y) → float.
        grad: ∇_f L(f, y) → array shaped like f.
        name: shown in messages.
    """

    value: Callable[[np.ndarray, np.ndarray], float]
    grad: Callable[[np.ndarray, np.ndarray], np.ndarray]
    name: str = "custom"


def squared(normaliser: float) -> Loss:
    """The squared loss ‖f − y‖² / (2n) (kernel-math.md §4), as a :class:`Loss`.

    Args:
        normaliser: n, the number of points N or of entries N·k.
    """
    return Loss(lambda f, y: float(np.sum((f - y) ** 2)) / (2.0 * normaliser),
                lambda f, y: (f - y) / normaliser, "mse")


def cross_entropy(normaliser: float) -> Loss:
    """Softmax cross-entropy −(1/n)·Σᵢ Σⱼ yᵢⱼ log softmax(fᵢ)ⱼ over the last axis.

    The gradient is (softmax(f) − y)/n when every row of y sums to 1 (one-hot labels or class
    probabilities; Bishop, Pattern Recognition and Machine Learning, eq. 4.109); in general it is
    (softmax(f)·Σⱼyᵢⱼ − y)/n, which is what is computed. log_softmax is evaluated stably.

    Args:
        normaliser: n, the number of points N or of entries N·k.
    """
    def value(f, y):
        return float(-np.sum(y * log_softmax(f, axis=-1))) / normaliser

    def grad(f, y):
        return (softmax(f, axis=-1) * y.sum(axis=-1, keepdims=True) - y) / normaliser

    return Loss(value, grad, "cross_entropy")


def resolve(loss, y: np.ndarray, normaliser: float) -> Loss | None:
    """The :class:`Loss` for a ``loss=`` argument; None for the closed-form squared loss.

    Args:
        loss: "mse", "cross_entropy", a :class:`Loss`, or a pair (value, grad) of callables.
        y: the training targets (cross-entropy needs an output axis of at least 2 classes).
        normaliser: n for the built-in losses.

    Raises:
        ValueError: an unknown name, or targets that do not fit cross-entropy.
    """
    if isinstance(loss, str):
        if loss == "mse":
            return None
        if loss == "cross_entropy":
            if y.ndim != 2 or y.shape[1] < 2:
                raise ValueError(f"cross_entropy needs targets of shape (N, classes ≥ 2), not {y.shape}")
            return cross_entropy(normaliser)
        raise ValueError(f"unknown loss {loss!r}; expected 'mse', 'cross_entropy' or a Loss")
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, tuple) and len(loss) == 2 and all(callable(c) for c in loss):
        return Loss(loss[0], loss[1])
    raise ValueError("loss must be 'mse', 'cross_entropy', a Loss or a pair (value, grad) of callables")


@dataclass(frozen=True)
class ODEOptions:
    """How to integrate a flow without a closed form (passed to scipy.integrate.solve_ivp).

    Attributes:
        method: an explicit Runge-Kutta method ("DOP853", "RK45", "RK23") suits the flow: its
            Jacobian −c·Θ is fixed and its stiffness bounded by the largest rate, which a stable
            learning rate keeps small per unit time; "LSODA" switches to an implicit method.
        rtol: relative tolerance per step.
        atol: absolute tolerance per step (output units).
    """

    method: str = "DOP853"
    rtol: float = 1e-9
    atol: float = 1e-11


def integrate(loss: Loss, k_train: np.ndarray, k_test: np.ndarray, y: np.ndarray,
              f0_train: np.ndarray, f0_test: np.ndarray, t: np.ndarray, learning_rate: float,
              decay: float, options: ODEOptions) -> Tuple[np.ndarray, np.ndarray]:
    """Integrate the kernel gradient flow of ``loss`` on training and test outputs together.

    Args:
        loss: the training loss.
        k_train: the raw training kernel K(X, X), (N, N).
        k_test: the test-train block K(x*, X), (N_test, N).
        y: targets, (N,) + output shape.
        f0_train, f0_test: initial outputs, (N,) + output shape and (N_test,) + output shape.
        t: finite times ≥ 0, shape (T,), any order.
        learning_rate: η.
        decay: σ/n, the weight decay that the ridge σ stands for (0 without ridge).
        options: solver and tolerances.

    Returns:
        (f_train, f_test) of shapes (T, N) + output shape and (T, N_test) + output shape.

    Raises:
        ValueError: an infinite time, a gradient of the wrong shape, or a failed integration.
    """
    if np.any(np.isinf(t)):
        raise ValueError(f"loss {loss.name!r} has no closed form: times must be finite")
    n, tail = y.shape[0], y.shape[1:]
    size = int(np.prod(tail, dtype=int))
    kk = np.concatenate([k_train, k_test], axis=0)            # (N + N_test, N)
    s0 = np.concatenate([f0_train.reshape(n, size), f0_test.reshape(-1, size)], axis=0)

    def rhs(time, s):
        bar.at(time)
        s = s.reshape(-1, size)
        g = np.asarray(loss.grad(s[:n].reshape(y.shape), y), dtype=np.float64)
        if g.shape != y.shape:
            raise ValueError(f"the gradient of loss {loss.name!r} has shape {g.shape}, not {y.shape}")
        ds = kk @ g.reshape(n, size)
        if decay:
            ds += decay * (s - s0)
        return (-learning_rate * ds).ravel()

    order = np.argsort(t)
    t_sorted = t[order]
    states = np.empty((t.size,) + s0.shape)
    if t_sorted[-1] == 0.0:
        states[:] = s0
    else:
        with time_progress(float(t_sorted[-1]), f"{loss.name} flow ODE") as bar:
            sol = scipy.integrate.solve_ivp(rhs, (0.0, float(t_sorted[-1])), s0.ravel(),
                                            method=options.method, t_eval=t_sorted,
                                            rtol=options.rtol, atol=options.atol)
        if not sol.success:
            raise ValueError(f"the ODE integration of loss {loss.name!r} failed: {sol.message}")
        states[order] = sol.y.T.reshape((t.size,) + s0.shape)
    f_train = states[:, :n].reshape((t.size,) + y.shape)
    f_test = states[:, n:].reshape((t.size, -1) + tail)
    return f_train, f_test
