"""The kernels a flow takes from a compiled network: the training kernel, checked for the accuracy the
flow needs, and the test-train blocks, evaluated once per test set."""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

from ..side import point_side, side_options
from . import inputs

# The entrywise accuracy a network's training kernel must have for the flow: |K̂ − K|(x, x') ≤ δ·√(K(x, x)K(x', x'))
# bounds ‖K̂ − K‖₂ ≤ ‖K̂ − K‖_F ≤ δ·tr K, so an exactly PSD K gives λ_min(K̂) ≥ −δ·tr K̂ (to first order).
NETWORK_KERNEL_RTOL = 1e-8


def evaluate(net, x1, x2, arrays, **options):
    """``net.kernels(x1, x2, **options)``, evaluated with the backend of the array namespace ``arrays``; side data
    options (graphs, masks) that are None are left out (a network without aggregate layers takes no graphs).

    Raises:
        ValueError: a network with ``readout = none``, whose kernels are per output pixel (N1, N2, *S): the
            flow's regression needs one kernel matrix per pair of points.
    """
    from ..ir.network import refuse_spatial_readout

    if getattr(net, "ir", None) is not None:  # a wrapper without an IR checks its own outputs
        refuse_spatial_readout(net.ir, "the kernel flow needs one (N1, N2) kernel")
    options = {k: v for k, v in options.items() if not (k.startswith(("graph", "mask")) and v is None)}
    if arrays.name == "numpy":
        return net.kernels(x1, x2, **options)
    return net.kernels(x1, x2, backend=arrays.name, **options)


def accurate_enough(k, kernel: str, arrays) -> None:
    """Refuse a network's training kernel with λ_min < −:data:`NETWORK_KERNEL_RTOL`·tr K: its entries are
    not accurate to 1e-8 (README, Reliability: saturating activations at large variances); within the
    bound the flow clips its negative eigenvalues (:class:`.spectral.Spectrum`), a change below the
    kernel's own error. One Cholesky factorisation of K + δ·tr(K)·I (N³/3 flops)."""
    if k.shape[0] == 0:
        return
    tol = NETWORK_KERNEL_RTOL * max(float(arrays.xp.trace(k)), 0.0)
    lowest = inputs.eigenvalue_below(k, tol, arrays)
    if lowest is None:
        return
    raise ValueError(f"the network's {kernel} kernel on x_train is not positive semi-definite to its required "
                     f"accuracy: its smallest eigenvalue is {lowest:.3g}, below −{tol:.3g} (= −1e-8·trace); its "
                     "evaluation lost accuracy at these inputs (a saturating activation such as erf, gaussian, exp "
                     "or cos after a large variance amplifies float64 rounding: README, Reliability); scale x_train "
                     "or the weights towards unit variance")


class NetworkBlocks:
    """The test kernel blocks of a flow built on a network, for test inputs x*.

    The kernels of the last test set are kept (keyed by the inputs' SHA-1), so that ``predict`` and
    ``ensemble`` on the same points evaluate the network once. The prior's diagonal alone (variances,
    ``compute_cov=False``) comes from ``net.kernels(x*, diagonal=True)``: O(N_test), no (N_test, N_test) array.
    Per-point side data travels with the points (:func:`point_side`, :func:`side_options`): a network that
    aggregates over graphs gets their adjacencies, a masked request their position masks.

    Args:
        net: the network (anything with ``kernels(x1, x2=None, diagonal=False)``).
        x_train: the training inputs X, float64 (N, *input shape).
        kernel: "ntk" or "nngp", the flow's training kernel.
        arrays: the array namespace of the flow (:mod:`.arrays`).
        side_train: X's side data (:func:`point_side`), {} for none.
    """

    def __init__(self, net, x_train: np.ndarray, kernel: str, arrays, side_train: Optional[dict] = None):
        self._net, self._x_train, self._kernel, self._arrays = net, x_train, kernel, arrays
        self._side_train = side_train or {}
        self._cache: tuple = (None, None, None)

    def __call__(self, test, prior: Optional[bool] = None, graph_test=None, mask_test=None):
        """(K(x*, X), Σ(x*, X), Σ(x*, x*) or None); ``prior``: None, False (diagonal), True (full);
        ``graph_test``, ``mask_test``: x*'s adjacencies (a network that aggregates over graphs) and masks."""
        x = inputs.as_float_array(self._arrays.to_numpy(test), "x_test")
        side = point_side(self._net, x, "x_test", "_test", graph_test, mask_test)
        digest = hashlib.sha1(np.ascontiguousarray(x).tobytes())
        for name in sorted(side):
            digest.update(name.encode() + np.ascontiguousarray(side[name]).tobytes())
        key = (x.shape, tuple((name, np.shape(v)) for name, v in sorted(side.items())), digest.hexdigest())
        cached_key, k, k_test = self._cache
        if cached_key != key:
            k = evaluate(self._net, x, self._x_train, self._arrays, **side_options(x, side, self._x_train, self._side_train))
            k_test = None
        if prior is not None and (k_test is None or (prior and k_test.ndim == 1)):  # full, or its diagonal
            k_test = evaluate(self._net, x, None, self._arrays, **side_options(x, side),
                              **({} if prior else {"diagonal": True})).nngp
        self._cache = (key, k, k_test)
        as_array = self._arrays.asarray
        kx = as_array(k.ntk if self._kernel == "ntk" else k.nngp)
        p = None if prior is None else as_array(k_test if prior or k_test.ndim == 1 else k_test.diagonal().copy())
        return kx, as_array(k.nngp), p
