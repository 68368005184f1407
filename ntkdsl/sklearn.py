"""scikit-learn interfaces: a spec's NNGP or NTK as a kernel, and kernel-flow estimators.

* :class:`NTKKernel` follows scikit-learn's :class:`~sklearn.gaussian_process.kernels.Kernel`
  API, so it works in ``GaussianProcessRegressor``, ``GaussianProcessClassifier`` and, called on
  arrays (``kernel=NTKKernel(...)`` as a callable, or precomputed), in ``SVC`` and ``KernelRidge``.
  Its hyperparameters are the spec's ``let``s whose values are numbers (``let beta = 0.1``): a
  positive non-integer let is tuned on a log scale between ``hyperparameter_bounds``; integer lets
  (widths, depths) and the others are fixed.
* :class:`NTKRegressor` and :class:`NTKClassifier` are the infinitely wide network trained by
  gradient flow on the squared loss for time ``t`` (``inf``: to convergence), solved in closed form
  by :class:`ntkdsl.KernelFlow` (Jacot et al. 2018; Lee et al. 2019; kernel-math.md §4).

``spec`` is a path to a ``.ntk`` file or the text of one. The estimators take ``spec=None`` for a
ReLU network of two hidden layers whose input size follows the data (as scikit-learn's checks need:
they fit data of any number of features).

Requires scikit-learn (``pip install 'ntkdsl[sklearn]'``).
"""

from __future__ import annotations

import math
import os
from typing import Dict, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .api import CompiledNetwork, load, loads
from .flow import KernelFlow
from .side import point_side, side_options
from .ir.network import refuse_spatial_readout

__all__ = ["NTKKernel", "NTKRegressor", "NTKClassifier", "DEFAULT_SPEC"]

DEFAULT_SPEC = """\
let w = 1.5
let b = 0.1

network relu_mlp(input = {d}) {{
    dense(512, w_std = w, b_std = b)
    relu
    dense(512, w_std = w, b_std = b)
    relu
    dense(1, w_std = w, b_std = b)
}}
"""

# Central differences in log θ: truncation error O(h²·|∂³K|) ≈ 1e-8 relative for h = 1e-4, round-off
# O(eps/h) ≈ 2e-12 relative: the gradient is good to about 1e-8 relative (tested against a finer step).
_LOG_STEP = 1e-4
_OWN = ("spec", "kind", "network", "hyperparameter_bounds")


def _compile(spec: str, network: Optional[str]) -> CompiledNetwork:
    """The network of ``spec`` (a path or the text of a .ntk file); one with ``readout = none`` is refused
    (its kernels are per output pixel, (N1, N2, *S): not a kernel matrix)."""
    text, filename = _source(spec)
    net = loads(text, network) if filename == "<string>" else load(spec, network)
    refuse_spatial_readout(net.ir, "a kernel estimator needs one kernel matrix")
    return net


def _source(spec: str):
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"spec must be a path to a .ntk file or the text of one, not {type(spec).__name__}")
    spec = os.fspath(spec)
    if "\n" in spec or "{" in spec:
        return spec, "<string>"
    with open(spec, encoding="utf-8") as f:
        return f.read(), spec


def numeric_lets(spec: str) -> Dict[str, float]:
    """The spec's lets whose value is a number literal (possibly negated), in file order."""
    from .frontend import ast, parse

    text, filename = _source(spec)
    out = {}
    for item in parse(text, filename).items:
        if isinstance(item, ast.LetDef):
            value, sign = item.value, 1
            if isinstance(value, ast.Neg):
                value, sign = value.operand, -1
            if isinstance(value, ast.Number):
                out[item.name] = sign * float(value.value)
    return out


class NTKKernel(Kernel):
    """The NTK Θ or the NNGP Σ of a spec as a scikit-learn kernel.

    Args:
        spec: path to a .ntk file, or its text.
        kind: "ntk" or "nngp".
        network: which network, when the spec defines several.
        hyperparameter_bounds: (low, high) for the tunable lets, or "fixed" for none.
        **lets: values for the spec's number lets (default: the spec's own).

    Rows of X are the network's inputs, flattened for image networks (``X.reshape(N, -1)``).
    ``eval_gradient=True`` differentiates by central differences in log θ (about 1e-8 relative).
    """

    def __init__(self, spec, kind="ntk", network=None, hyperparameter_bounds=(1e-5, 1e5), **lets):
        clash = set(lets) & set(_OWN)
        if clash:
            raise ValueError(f"a let named {sorted(clash)[0]!r} clashes with an NTKKernel argument")
        self.spec, self.kind, self.network, self.hyperparameter_bounds = spec, kind, network, hyperparameter_bounds
        known = numeric_lets(spec)
        unknown = set(lets) - set(known)
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]!r} is not a number let of the spec (its number lets: "
                             f"{', '.join(known) or 'none'})")
        self._lets = {**known, **lets}   # the passed objects themselves (sklearn's clone checks identity)
        self._integer = {name for name, v in known.items() if float(v).is_integer()}
        self._nets: Dict[object, CompiledNetwork] = {}   # "spec": as written; a key of let values: with them

    def get_params(self, deep=True):
        return {**super().get_params(deep), **self._lets}

    def set_params(self, **params):
        for name in [p for p in params if p in self._lets]:
            self._lets[name] = params.pop(name)
        return super().set_params(**params) if params else self

    @property
    def hyperparameters(self):
        bounds = self.hyperparameter_bounds
        out = []
        for name, value in self._lets.items():
            tunable = bounds != "fixed" and name not in self._integer and float(value) > 0
            out.append(Hyperparameter(name, "numeric", bounds if tunable else "fixed", fixed=not tunable))
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_nets"] = {}   # compiled modules are not picklable; they compile again on use
        return state

    def _net(self) -> CompiledNetwork:
        """The network at the current lets: the spec's, with the changed lets as run-time values
        (``with_hyperparameters``: the compiled modules are shared, nothing compiles again)."""
        key = tuple(sorted((k, float(v)) for k, v in self._lets.items()))
        if key not in self._nets:
            base = self._nets.get("spec") or _compile(self.spec, self.network)
            defaults = numeric_lets(self.spec)
            changed = {k: float(v) for k, v in self._lets.items() if float(v) != defaults.get(k)}
            self._nets = {"spec": base, key: base.with_hyperparameters(**changed) if changed else base}
        return self._nets[key]

    def _points(self, net: CompiledNetwork, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        shape = tuple(net.ir.input_shape)
        if X.ndim != 2 or X.shape[1] != math.prod(shape):
            raise ValueError(f"X has shape {X.shape}; network {net.name} takes rows of {math.prod(shape)} numbers "
                             f"(inputs of shape {shape}, flattened)")
        return X.reshape((X.shape[0],) + shape)

    def _kernel(self, X, Y=None) -> np.ndarray:
        if self.kind not in ("ntk", "nngp"):
            raise ValueError(f"kind must be 'ntk' or 'nngp', not {self.kind!r}")
        net = self._net()
        k = net.kernels(self._points(net, X), None if Y is None else self._points(net, Y))
        return k.ntk if self.kind == "ntk" else k.nngp

    def __call__(self, X, Y=None, eval_gradient=False):
        if eval_gradient and Y is not None:
            raise ValueError("eval_gradient is only supported when Y is None")
        K = self._kernel(X, Y)
        if not eval_gradient:
            return K
        names = [h.name for h in self.hyperparameters if not h.fixed]
        grad = np.empty(K.shape + (len(names),))
        saved = dict(self._lets)
        try:
            for i, name in enumerate(names):
                value = float(saved[name])
                parts = []
                for sign in (1, -1):
                    self._lets[name] = value * math.exp(sign * _LOG_STEP)
                    parts.append(self._kernel(X))
                grad[..., i] = (parts[0] - parts[1]) / (2 * _LOG_STEP)
                self._lets[name] = saved[name]
        finally:
            self._lets = saved
        return K, grad

    def diag(self, X):
        net = self._net()
        x = self._points(net, X)
        out = np.empty(len(x))
        for lo in range(0, len(x), 256):   # blocks: N x 256 entries instead of N x N
            k = net.kernels(x[lo:lo + 256])
            out[lo:lo + 256] = np.diagonal(k.ntk if self.kind == "ntk" else k.nngp)
        return out

    def is_stationary(self):
        return False

    @property
    def requires_vector_input(self):
        return True

    def __repr__(self):
        lets = ", ".join(f"{k}={float(v):.4g}" for k, v in self._lets.items())
        return f"NTKKernel({self.kind}{', ' + lets if lets else ''})"


class _FlowEstimator(BaseEstimator):
    """Shared fit/predict of the kernel-flow estimators (targets f(X) after training time t)."""

    def __init__(self, spec=None, t=float("inf"), diag_reg=1e-6, kernel="ntk", learning_rate=1.0, network=None):
        self.spec, self.t, self.diag_reg, self.kernel = spec, t, diag_reg, kernel
        self.learning_rate, self.network = learning_rate, network

    def _network(self, n_features: int) -> CompiledNetwork:
        cached = getattr(self, "_net", None)
        key = (self.spec, self.network, n_features)
        if cached is None or cached[0] != key:
            spec = DEFAULT_SPEC.format(d=n_features) if self.spec is None else self.spec
            cached = (key, _compile(spec, self.network))
            self._net = cached
        return cached[1]

    def _inputs(self, net: CompiledNetwork, X) -> np.ndarray:
        shape = tuple(net.ir.input_shape)
        if X.shape[1] != math.prod(shape):
            raise ValueError(f"X has {X.shape[1]} features; network {net.name} takes {math.prod(shape)} "
                             f"(inputs of shape {shape}, flattened)")
        return X.reshape((X.shape[0],) + shape)

    def _fit_targets(self, X, targets, graph=None, mask=None):
        net = self._network(X.shape[1])
        x = self._inputs(net, X)
        side = point_side(net, x, "X", "", graph, mask)  # graphs (N, V, V) of a GNN, masks (N, *S) where given
        k = net.kernels(x, **side_options(x, side))
        self.flow_ = KernelFlow.from_kernels(k.ntk, targets, k.nngp, learning_rate=self.learning_rate,
                                             diag_reg=self.diag_reg, kernel=self.kernel)
        self.X_fit_, self.side_fit_ = X, side
        return self

    def _outputs(self, X, graph=None, mask=None) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        net = self._network(X.shape[1])
        x = self._inputs(net, X)
        side = point_side(net, x, "X", "", graph, mask)
        x_fit = self._inputs(net, self.X_fit_)
        k = net.kernels(x, x_fit, **side_options(x, side, x_fit, self.side_fit_))
        return self.flow_.predict(k.ntk if self.kernel == "ntk" else k.nngp, self.t)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_net", None)   # compiled modules are not picklable; they compile again on use
        return state


class NTKRegressor(RegressorMixin, _FlowEstimator):
    """The infinitely wide network of ``spec`` trained on (X, y) by gradient flow on the squared loss
    for time ``t`` (gradient steps at ``learning_rate``; ``inf``: to convergence, kernel ridge
    regression with ridge ``diag_reg``·mean diagonal); outputs start at 0 (:class:`ntkdsl.KernelFlow`).

    A spec with ``aggregate`` layers (a GNN) takes each row's graph as ``fit(X, y, graph=...)`` and
    ``predict(X, graph=...)``: dense (N, V, V) adjacencies or (N, E, 2) integer edge lists (as ``net.kernels``).
    A spec of per-position layers on [L, C] or [H, W, C] inputs takes position masks the same way,
    ``fit(X, y, mask=...)``, ``predict(X, mask=...)``: booleans (N, *S), True = masked (:mod:`ntkdsl.masks`;
    left out on either side: nothing masked there).

    Args:
        spec: path or text of a .ntk spec; None: a two-hidden-layer ReLU network sized to the data.
        t: training time, ≥ 0 or inf.
        diag_reg: relative ridge (≥ 0): keeps t = inf well defined on repeated points.
        kernel: "ntk" (train every layer) or "nngp" (the last layer only).
        learning_rate: η > 0.
        network: which network of the spec.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True   # y of shape (N, k): k outputs sharing the kernel
        tags.target_tags.single_output = True
        return tags

    def fit(self, X, y, graph=None, mask=None):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        return self._fit_targets(X, y.astype(np.float64), graph, mask)

    def predict(self, X, graph=None, mask=None):
        return self._outputs(X, graph, mask)


class NTKClassifier(ClassifierMixin, _FlowEstimator):
    """Classification by the kernel flow on one-hot targets centred to mean zero over the classes
    (y_onehot − 1/k); the predicted class is the largest output. Arguments (graphs, masks) as :class:`NTKRegressor`."""

    def fit(self, X, y, graph=None, mask=None):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        k = len(self.classes_)
        targets = np.eye(k)[index] - 1.0 / k
        return self._fit_targets(X, targets, graph, mask)

    def decision_function(self, X, graph=None, mask=None):
        f = self._outputs(X, graph, mask)
        return f[:, 1] - f[:, 0] if len(self.classes_) == 2 else f

    def predict(self, X, graph=None, mask=None):
        f = self._outputs(X, graph, mask)
        return self.classes_[np.argmax(f, axis=1)]
