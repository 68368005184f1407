"""The finite-width interface of every layer (kernel-math.md §5): the methods each node implements.

Every layer node answers the same five questions (methods of :class:`ntkdsl.ir.layer.Layer`; a new
layer kind implements them in its own module and the sampler needs no other change):

``init_params(rng, in_shape) -> (params, out_shape)``
    a dict of float64 parameter arrays, all drawn i.i.d. from their prior; shapes exclude the batch.
``forward(params, x) -> (y, cache)``
    x of shape (N, *in_shape); the cache is whatever the backward rules need.
``backward(params, cache, g) -> g_in``
    cotangents g of shape (N, m, *out_shape) — m vectors per input (m = k, one per output, for the
    NTK; m = 1 for a loss gradient) — pulled back to (N, m, *in_shape).
``param_grads(params, cache, g, per_example=False) -> dict``
    ∂/∂θ of Σ ⟨g, y⟩: summed over inputs and the m axis, or (``per_example``) with leading (N, m)
    axes, i.e. the explicit Jacobian rows.
``ntk_terms(params, cache1, g1, cache2, g2, trace=True) -> array | None``
    this layer's share Σ_θ ⟨∂f/∂θ(x), ∂f/∂θ(x′)⟩ of the empirical NTK, contracted without the
    Jacobian: (N1, N2) summed over the m axis (``trace``) or (N1, N2, m, m); None without parameters.

Array math uses the namespace of its arguments (:mod:`.arrays`: NumPy, or CuPy for a network
built with ``backend = "cupy"``).

Conventions match the analytic rules: NTK parameterization z = (σ_w/√n_in)·W·x + σ_b·b with
W, b ~ N(0, 1); standard parameterization z = W·x + b with W ~ N(0, σ_w²/n_in), b ~ N(0, σ_b²),
the NTK taken with respect to W and b themselves (Sohl-Dickstein et al. 2020, "On the infinite
width limit of neural networks with a standard parameterization").
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Dict

import numpy as np

Params = Dict[str, np.ndarray]  # one layer's parameters by name (float64 arrays, shapes without the batch)

_MASKS: ContextVar = ContextVar("ntkdsl_mask_rng", default=None)
_GRAPHS: ContextVar = ContextVar("ntkdsl_graphs", default=None)
_KEEP: ContextVar = ContextVar("ntkdsl_position_keep", default=None)


@contextmanager
def _bound(var: ContextVar, value):
    """``var`` set to ``value`` for the block (the forward passes run inside it)."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def random_masks(rng):
    """Forward passes inside the block draw their random masks (dropout) from ``rng``, a NumPy Generator."""
    return _bound(_MASKS, rng)


def mask_rng():
    """The Generator of the running forward pass's masks (:func:`random_masks`; a finite network sets
    its own); outside one, a fresh unseeded Generator."""
    rng = _MASKS.get()
    return rng if rng is not None else np.random.default_rng()


def point_graphs(graph):
    """Forward passes inside the block aggregate over ``graph``, the (N, V, V) adjacencies of their N points."""
    return _bound(_GRAPHS, graph)


def current_graphs():
    """The adjacencies of the running forward pass's points (:func:`point_graphs`), or None."""
    return _GRAPHS.get()


def point_masks(keep):
    """Forward passes inside the block see position masks: ``keep`` (N, *S), 1 − mask as floats, of their N
    points (None: no masks). neural-tangents zeroes the masked positions of every layer's input
    (requirements.py:183–217); :class:`Caches` keeps the array for the backward pass."""
    return _bound(_KEEP, keep)


def current_keep():
    """The keep array (N, *S) of the running forward pass's points (:func:`point_masks`), or None."""
    return _KEEP.get()


class Caches(list):
    """A sequence's per-layer caches, with ``keep``: the position masks' keep array (N, *S) of the forward
    pass that filled them (None without masks), for the cotangents of the backward pass."""

    keep = None


def mask_positions(a, keep, lead: int = 1):
    """``a`` (``lead`` leading axes, then *S, C) with every masked position zeroed; an array whose axes are
    not the masks' positions (after pooling or flatten), or ``keep`` None, unchanged."""
    if keep is None:
        return a
    spatial = tuple(keep.shape[1:])
    if a.ndim != lead + len(spatial) + 1 or tuple(a.shape[lead:-1]) != spatial:
        return a
    return a * keep.reshape(keep.shape[:1] + (1,) * (lead - 1) + spatial + (1,))
