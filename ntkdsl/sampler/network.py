"""Finite-width networks from the IR: forward pass, empirical NNGP and NTK (kernel-math.md §5).

    fnet = net.finite(width=1024, seed=0)
    f = fnet.apply(x)                  # (N, k)
    theta = fnet.ntk(x1, x2)           # (N1, N2): mean over the k outputs, like the analytic kernel
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import List, Optional, Tuple

import numpy as np

from ..ir.network import Network, refuse_spatial_readout
from ..layers.arrays import array_module, namespace, to_numpy
from ..layers.branching import sequence_forward, sequence_init, walk
from ..layers.finite import Params, mask_positions, point_graphs, point_masks, random_masks
from ..validate import points, seed as valid_seed

# fields that set a layer's feature count: overridden by ``width=`` except in the output layer
WIDTH_FIELDS = ("width", "channels")


def _width_field(layer) -> Optional[str]:
    names = {f.name for f in fields(layer)}
    return next((name for name in WIDTH_FIELDS if name in names), None)


def _has_sized(layers) -> bool:
    """Whether a sequence sets its own channel count (a dense/conv in it, or in a nested branch)."""
    for layer in layers:
        if _width_field(layer) or any(_has_sized(b) for b in _branches(layer)):
            return True
    return False


def _branches(layer):
    return layer.finite_sequences() if layer.branching else ()


def _resize(layers, width: int, keep: bool):
    """``layers`` with every width set to ``width`` except those that set the sequence's output
    channel count when ``keep`` (walking from the top: the last sized layer; through a residual,
    whose output has its input's channels, into its body and on below it; into every branch of a
    parallel)."""
    out = list(layers)
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        name = _width_field(layer)
        if name:
            if not keep:
                out[i] = replace(layer, **{name: width})
            keep = False
        elif layer.branching:
            branches = layer.finite_sequences()
            out[i] = layer.with_branches([_resize(b, width, keep) for b in branches])
            # x + f(x) keeps its input's channels: the layers below set them; parallel outputs are the branches'
            keep = keep and (layer.keeps_input_width or not all(_has_sized(b) for b in branches))
    return tuple(out)


def override_widths(ir: Network, width: Optional[int]) -> Network:
    """``ir`` with every hidden width and channel count set to ``width``; the output layer keeps its own.

    The output layers are those that set the number of outputs: the last layer with a width (or
    channel count), or, when that is inside branches, the last sized layer of each branch (and of a
    residual body, which must keep its input's channel count).

    Args:
        ir: the network.
        width: the new hidden width; None returns ``ir`` unchanged.

    Raises:
        ValueError: width is not a positive integer, or the resized network's shapes do not fit.
    """
    if width is None:
        return ir
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer, not {width!r}")
    out = replace(ir, layers=_resize(ir.layers, int(width), True))
    try:
        out.output_shape
    except Exception as exc:  # a ShapeSpecError: widths that cannot all be the same
        raise ValueError(f"network {ir.name!r} cannot take hidden width {width}: {exc}") from None
    return out


def as_inputs(x, ir: Network, name: str = "x") -> np.ndarray:
    """``x`` as a float64 array of shape (N, *input_shape).

    Raises:
        ValueError: as :func:`ntkdsl.validate.points` (the rules of every entry point).
    """
    return points(x, ir.input_shape, name).astype(np.float64, copy=False)


class FiniteNetwork:
    """One random draw of a finite network, in the parameterization of the analytic kernel.

    Attributes:
        ir: the IR it was built from (hidden widths already overridden).
        params: one dict of float64 arrays per layer (empty for parameter-free layers), updated in
            place by :meth:`train`.
        out_shape: the shape of one input's outputs, e.g. (k,).
        output_width: k, the number of outputs (all entries of ``out_shape``).
    """

    def __init__(self, ir: Network, params: List[Params], out_shape: Optional[Tuple[int, ...]] = None,
                 backend: str = "numpy", mask_rng: Optional[np.random.Generator] = None):
        if len(params) != len(ir.layers):
            raise ValueError(f"{len(params)} parameter dicts for {len(ir.layers)} layers")
        self.ir = ir
        self.params = params
        self.backend = backend
        self.xp = array_module(backend)
        self.out_shape = tuple(out_shape) if out_shape is not None else (ir.output_width,)
        self.output_width = int(np.prod(self.out_shape, dtype=int))
        self.mask_rng = mask_rng if mask_rng is not None else np.random.default_rng(0)  # dropout masks, fresh per pass

    @classmethod
    def initialise(cls, ir: Network, seed=0, backend: str = "numpy") -> "FiniteNetwork":
        """Draw every parameter i.i.d. from its prior (kernel-math.md §5).

        Args:
            ir: the network (widths as they should be).
            seed: anything :func:`numpy.random.default_rng` accepts.
            backend: "numpy" or "cupy": where parameters live and the arithmetic runs; the draw
                itself is made on the host, so a seed gives the same network on every backend.
                Methods return arrays of the backend.

        Raises:
            ImportError: backend "cupy" without CuPy.
        """
        xp = array_module(backend)
        rng = np.random.default_rng(valid_seed(seed))
        params, shape = sequence_init(ir.layers, rng, ir.input_shape)
        if xp is not np:
            params = [{name: xp.asarray(a) for name, a in p.items()} for p in params]
        return cls(ir, params, shape, backend, np.random.default_rng(rng.integers(2**63)))  # masks: the same seed's stream

    def _inputs(self, x, name: str = "x"):
        """``x`` checked (:func:`as_inputs`) and on this network's backend."""
        a = as_inputs(x if namespace(x) is np else to_numpy(x), self.ir, name)
        return a if self.xp is np else self.xp.asarray(a)

    def __repr__(self) -> str:
        return f"<FiniteNetwork {self.ir.name}: {self.num_params} parameters, {self.output_width} outputs>"

    @property
    def num_params(self) -> int:
        return sum(a.size for p in self.params for a in p.values())

    # --- forward -------------------------------------------------------------------------------

    def _forward(self, x: np.ndarray, graph=None, keep=None):
        """(outputs as the last layer shapes them, (N, *out_shape); the per-layer caches). ``graph``:
        the points' adjacencies (N, V, V) for aggregate layers (checked by :meth:`_graphs`); ``keep``: their
        position masks as 1 − mask floats (N, *S) (:meth:`_keep`)."""
        with random_masks(self.mask_rng), point_graphs(graph), point_masks(keep):  # dropout: fresh each pass
            return sequence_forward(self.ir.layers, self.params, x)

    def _keep(self, mask, x, name: str, points: str):
        """``mask`` (True = masked, :func:`ntkdsl.masks.as_masks`) as the keep floats (N, *S), or None;
        a network that cannot take masks is refused at its layer (located)."""
        from ..side import side_mask

        if mask is None:
            return None
        m = side_mask(self.ir, to_numpy(mask) if namespace(mask) is not np else mask, x.shape[0], name, points)
        return self.xp.asarray(1.0 - m.astype(np.float64))

    def _graphs(self, graph, x, name: str, points: str):
        """``graph`` checked and made dense for the points ``x`` (:func:`ntkdsl.side.side_graph`), or
        None for a network without aggregate layers (which must get none)."""
        from ..side import side_graph

        g = side_graph(self.ir, graph, x.shape[0], name, points)
        return None if g is None else self.xp.asarray(g)

    def apply(self, x, graph=None, mask=None) -> np.ndarray:
        """The outputs f(x), shape (N, k), for inputs of shape (N, *input_shape) ((N, *S, C) for a
        network with ``readout = none``); ``graph``: each point's adjacency for a network with
        aggregate layers."""
        x = self._inputs(x)
        f = self._forward(x, self._graphs(graph, x, "graph", "x"), self._keep(mask, x, "mask", "x"))[0]
        return f if self.ir.readout == "none" else f.reshape(f.shape[0], -1)

    def nngp(self, x1, x2=None, graph1=None, graph2=None, mask1=None, mask2=None) -> np.ndarray:
        """This draw's f(x)·f(x′)/k, (N1, N2): its average over draws is the NNGP kernel. With
        ``readout = none`` per output pixel p, f(x)(p)·f(x′)(p)/C of shape (N1, N2, *S)."""
        f1 = self.apply(x1, graph1, mask1)
        f2 = f1 if x2 is None else self.apply(self._inputs(x2, "x2"), graph2, mask2)
        if self.ir.readout == "none":
            return _per_pixel(self.xp.einsum("ipc,jpc->ijp", _pixels(f1), _pixels(f2)), f1, f2, self.out_shape)
        return f1 @ f2.T / self.output_width

    # --- empirical NTK ---------------------------------------------------------------------------

    def _output_cotangents(self, f):
        """The identity over the k outputs, (N, k, *out_shape): one cotangent per output (the m axis)."""
        xp = self.xp
        k = int(np.prod(f.shape[1:], dtype=int))
        return xp.broadcast_to(xp.eye(k).reshape((k,) + f.shape[1:]), (f.shape[0], k) + f.shape[1:]).copy()

    def _leaf_passes(self, x, graph=None, keep=None):
        """Yield (layer, params, cache, output cotangents) for every layer with parameters, from the
        top down and inside branches (:func:`ntkdsl.layers.branching.walk`: one backward pass)."""
        f, caches = self._forward(x, graph, keep)
        return walk(self.ir.layers, self.params, caches, self._output_cotangents(f), need_input=False)

    def _backward_passes(self, x, graph=None, keep=None):
        """Forward caches, then yield (top-level layer index, cache, output cotangents) from the top down."""
        f, caches = self._forward(x, graph, keep)
        g = self._output_cotangents(f)
        first = next((i for i, p in enumerate(self.params) if p), len(self.params))
        for i in range(len(self.ir.layers) - 1, first - 1, -1):
            g = mask_positions(g, keep, lead=2)  # a masked output's cotangent is 0
            yield i, caches[i], g
            if i > first:  # nothing below the first layer with parameters needs a cotangent
                g = self.ir.layers[i].backward(self.params[i], caches[i], g)

    def ntk(self, x1, x2=None, trace: bool = True, *, method: str = "structured", graph1=None,
            graph2=None, mask1=None, mask2=None) -> np.ndarray:
        """The empirical NTK ∇θf(x)·∇θf(x′) of this draw.

        Args:
            x1: inputs (N1, *input_shape).
            x2: inputs (N2, *input_shape), or None for ``x1``.
            trace: True: the mean over the k outputs, (N1, N2), comparable with the analytic
                kernel; False: all output pairs, (N1, N2, k, k).
            method: "structured" (default): per-layer contraction of activations and backpropagated
                signals, O(N1·N2·n) per dense layer, no Jacobian (kernel-math.md §5);
                "jacobian": materialise each layer's per-example Jacobian (N, k, P_l) and contract
                it, the reference method (memory N·k·P_l).
            graph1, graph2: the points' adjacencies for a network with aggregate layers (graph2:
                none when x2 is None).
            mask1, mask2: the points' position masks (N, *S), True = masked (:mod:`ntkdsl.masks`; mask2
                none when x2 is None).

        Returns:
            float64 array of shape (N1, N2) or (N1, N2, k, k); with ``readout = none`` and ``trace``,
            per output pixel p the mean over the C channels of ∇θf_c(x)(p)·∇θf_c(x′)(p), (N1, N2, *S),
            from the explicit Jacobians whatever ``method`` (memory (N1 + N2)·k·P).
        """
        if method not in ("structured", "jacobian"):
            raise ValueError(f"method must be 'structured' or 'jacobian', not {method!r}")
        if trace and self.ir.readout == "none":
            j1 = self.jacobian(x1, graph1, mask1)
            j2 = j1 if x2 is None else self.jacobian(x2, graph2, mask2)
            per = self.xp.einsum("imq,jmq->ijm", j1, j2)  # (N1, N2, P·C): each output with itself
            return _per_pixel(per.reshape(per.shape[:2] + (-1, self.out_shape[-1])).sum(-1), j1, j2, self.out_shape)
        a1 = self._inputs(x1, "x1")
        a2 = a1 if x2 is None else self._inputs(x2, "x2")
        g1 = self._graphs(graph1, a1, "graph1", "x1")
        g2 = g1 if x2 is None else self._graphs(graph2, a2, "graph2", "x2")
        k1 = self._keep(mask1, a1, "mask1", "x1")
        k2 = k1 if x2 is None else self._keep(mask2, a2, "mask2", "x2")
        n1, n2 = a1.shape[0], a2.shape[0]
        k = self.output_width
        total = self.xp.zeros((n1, n2) if trace else (n1, n2, k, k))
        if method == "structured":  # per leaf layer, inside branches too
            passes2 = None if x2 is None else self._leaf_passes(a2, g2, k2)
            for layer, p, c1, d1 in self._leaf_passes(a1, g1, k1):
                _, _, c2, d2 = (layer, p, c1, d1) if passes2 is None else next(passes2)
                term = layer.ntk_terms(p, c1, d1, c2, d2, trace)
                if term is not None:
                    total += term
            return total / k if trace else total
        passes2 = None if x2 is None else self._backward_passes(a2, g2, k2)
        for i, c1, d1 in self._backward_passes(a1, g1, k1):
            _, c2, d2 = (i, c1, d1) if passes2 is None else next(passes2)
            term = _jacobian_terms(self.ir.layers[i], self.params[i], c1, d1, c2, d2, trace, same=passes2 is None)
            if term is not None:
                total += term
        return total / k if trace else total

    def jacobian(self, x, graph=None, mask=None) -> np.ndarray:
        """The explicit Jacobian ∂f/∂θ, (N, k, P), parameters in the order of :meth:`flat_params`."""
        a = self._inputs(x)
        blocks = {}
        for i, cache, g in self._backward_passes(a, self._graphs(graph, a, "graph", "x"), self._keep(mask, a, "mask", "x")):
            grads = self.ir.layers[i].param_grads(self.params[i], cache, g, per_example=True)
            blocks[i] = [grads[name].reshape(g.shape[0], g.shape[1], -1) for name in self.params[i]]
        parts = [b for i in sorted(blocks) for b in blocks[i]]
        if not parts:
            return self.xp.zeros((a.shape[0], self.output_width, 0))
        return self.xp.concatenate(parts, axis=2)

    # --- parameters as one vector (for finite differences and optimisers) ---------------------

    def flat_params(self) -> np.ndarray:
        """All parameters as one vector: layer by layer, each dict in insertion order, C order."""
        parts = [a.ravel() for p in self.params for a in p.values()]
        return self.xp.concatenate(parts) if parts else self.xp.zeros(0)

    def set_flat_params(self, theta) -> None:
        """Overwrite every parameter (in place) from a vector laid out as :meth:`flat_params`."""
        theta = self.xp.asarray(theta, dtype=np.float64)
        if theta.shape != (self.num_params,):
            raise ValueError(f"expected {self.num_params} parameters, got shape {theta.shape}")
        at = 0
        for p in self.params:
            for a in p.values():
                a[...] = theta[at:at + a.size].reshape(a.shape)
                at += a.size

    def train(self, x, y, learning_rate: float = 1.0, steps: int = 100, probe=None,
              record_every: Optional[int] = None, loss_normalization: str = "points", mask=None, probe_mask=None):
        """Full-batch gradient descent in place; see :func:`ntkdsl.sampler.training.train`.

        Raises:
            ValueError: a network with ``readout = none`` (its outputs are images, the loss is on vectors)."""
        from .training import train

        refuse_spatial_readout(self.ir, "training fits vector outputs")
        return train(self, x, y, learning_rate=learning_rate, steps=steps, probe=probe,
                     record_every=record_every, loss_normalization=loss_normalization, mask=mask,
                     probe_mask=probe_mask)


def _jacobian_terms(layer, p, c1, g1, c2, g2, trace: bool, same: bool):
    """One layer's NTK share through its explicit per-example Jacobian (N, m, P_l)."""
    j1 = layer.param_grads(p, c1, g1, per_example=True)
    if not j1:
        return None
    j2 = j1 if same else layer.param_grads(p, c2, g2, per_example=True)
    total = 0.0
    for name in j1:
        a, b = j1[name], j2[name]
        a = a.reshape(a.shape[0], a.shape[1], -1)
        b = b.reshape(b.shape[0], b.shape[1], -1)
        if trace:
            total = total + a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1).T
        else:
            total = total + namespace(a).einsum("aip,bjp->abij", a, b, optimize=True)
    return total


def _pixels(f):
    """Outputs (N, *S, C) as (N, P, C)."""
    return f.reshape(f.shape[0], -1, f.shape[-1])


def _per_pixel(k, a1, a2, out_shape):
    """Per-pixel sums over the C channels (N1, N2, P) of the points of ``a1`` and ``a2`` as the per-pixel
    kernel (N1, N2, *S), ``out_shape`` = (*S, C): divided by C."""
    return k.reshape((a1.shape[0], a2.shape[0]) + tuple(out_shape[:-1])) / out_shape[-1]

