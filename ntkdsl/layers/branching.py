"""What the branching layers (residual, parallel) share: the independence check of their branches
(kernel-math.md §2), their finite-width rules and the backward walk that descends into branches.

A branching node's parameters are one flat dict whose keys are ``"{branch}.{layer}.{name}"``
(nested nodes add their own prefixes), so a network's parameters stay one dict of arrays per
top-level layer: :meth:`FiniteNetwork.flat_params`, in-place training updates and the transfer
to a device need no knowledge of branches. :func:`unpack` rebuilds the per-layer dicts of each
branch as views of the same arrays.

:func:`walk` is the one backward pass: it pulls cotangents back through a sequence of layers,
descending into branches, and yields ``(layer, params, cache, g)`` for every layer with
parameters, so the empirical NTK and the training gradient of a ResNet take one backward pass per
input and never differentiate a branch twice.

Merges (kernel-math.md §2, neural-tangents' FanInSum / FanInConcat / FanInProd):
residual y = x + s·f(x) (cotangent into f: s·g; into x: g + f's pull-back); sum y = Σ_i f_i(x)
(g to every branch); concat along channels (g split by channel ranges); prod y = Π_i f_i(x)
elementwise (branch i gets g·Π_{j≠i} f_j(x), the product rule). The input cotangent is the sum of
the branches' pull-backs.
"""

from __future__ import annotations

from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

from ..ir.layer import Layer
from .arrays import namespace
from .finite import Caches, Params, current_keep, mask_positions


def fresh_end(layers: Sequence) -> Tuple[bool, Optional[object]]:
    """Whether a branch ends in a fresh zero-mean affine layer (dense or conv), possibly followed by
    parameter-free linear layers (identity, pooling, flatten) — kernel-math.md §2 — and the layer
    that decides it (None for an empty branch).

    A fresh affine output is independent of everything else in the limit, so it is uncorrelated
    with any other branch. A nested ``parallel`` sum or concat is fresh when all its branches are.
    """
    for layer in reversed(layers):
        fresh = layer.ends_fresh()
        if fresh is not None:
            return fresh, layer
    return False, None


def describe(layer) -> str:
    if layer is None:
        return "has no dense or conv layer (it passes its input on)"
    return f"ends in '{layer.header()}'"



class Branching(Layer):
    """A layer that runs branches of layers on its input and merges their outputs; subclasses define
    ``finite_sequences()`` (the branches with layers), ``finite_merge()`` (residual, sum, concat,
    prod), ``merge_outputs(x, outs)``, ``combine`` (the kernel rule) and ``check_branches``."""

    branching = True
    keeps_input_width: ClassVar[bool] = False  # whether the output has the input's channels whatever the branches do

    def check_branches(self) -> None:
        """Refuse merges of correlated branches (kernel-math.md §2) at a span."""

    def branch_names(self) -> Optional[Tuple[str, ...]]:
        """Names of the derivation's branches for step labels, or None for "branch 1", "branch 2", ..."""
        return None

    def init_params(self, rng, in_shape):
        return branches_init(self, rng, in_shape)

    def forward(self, params, x):
        return branches_forward(self, params, x)

    def backward(self, params, cache, g):
        return branches_backward(self, params, cache, g)

    def param_grads(self, params, cache, g, per_example=False):
        return branches_param_grads(self, params, cache, g, per_example)

    def ntk_terms(self, params, cache1, g1, cache2, g2, trace=True):
        return branches_ntk_terms(self, params, cache1, g1, cache2, g2, trace)

    def split_cotangent(self, params, cache, g):
        return split_cotangent(self, params, cache, g)

    def merge_cotangents(self, params, cache, g, parts):
        return merge_cotangents(self, params, cache, g, parts)

    def format(self, indent: str = "") -> str:
        inner = indent + "    "
        text = self.header()
        for body in self.finite_sequences():
            lines = [f"{inner}{layer.format(inner)}" for layer in body]
            text += " {\n" + "".join(line + "\n" for line in lines) + indent + "}"
        return text


def pack(per_branch: Sequence[Sequence[Params]]) -> Params:
    """One flat dict ``{"b.j.name": array}`` from each branch's list of per-layer dicts."""
    return {f"{b}.{j}.{name}": a for b, layers in enumerate(per_branch) for j, p in enumerate(layers)
            for name, a in p.items()}


def unpack(params: Params, sequences: Sequence[Sequence]) -> List[List[Params]]:
    """The per-layer dicts of every branch (views of the same arrays), the inverse of :func:`pack`."""
    out: List[List[Params]] = [[{} for _ in seq] for seq in sequences]
    for key, a in params.items():
        b, j, name = key.split(".", 2)
        out[int(b)][int(j)][name] = a
    return out


def sequence_init(layers: Sequence, rng, in_shape: Tuple[int, ...]):
    """(per-layer parameter dicts, output shape) of a sequence, drawn in order from ``rng``."""
    params, shape = [], tuple(in_shape)
    for layer in layers:
        p, shape = layer.init_params(rng, shape)
        params.append(p)
    return params, tuple(shape)


def sequence_forward(layers: Sequence, params: Sequence[Params], x):
    """(output, per-layer caches) of a sequence; with position masks (:func:`.finite.point_masks`) the input
    and every layer's output zeroed at masked positions, as neural-tangents' masked layers see them."""
    keep = current_keep()
    caches = Caches()
    caches.keep = keep
    x = mask_positions(x, keep)
    for layer, p in zip(layers, params):
        x, cache = layer.forward(p, x)
        x = mask_positions(x, keep)
        caches.append(cache)
    return x, caches


def walk(layers: Sequence, params: Sequence[Params], caches: Sequence, g, need_input: bool = True):
    """Pull ``g`` back through ``layers`` from the top, descending into branching nodes.

    Yields:
        (layer, params, cache, g) for every leaf layer with parameters, g its output cotangent
        (N, m, *out_shape), before that layer's own pull-back.

    Returns:
        (as the generator's value, for ``yield from``) the input cotangent, or None when
        ``need_input`` is False: then no layer below the sequence's first layer with parameters
        pulls anything back.
    """
    first = 0 if need_input else next((i for i, p in enumerate(params) if p), len(layers))
    keep = getattr(caches, "keep", None)  # position masks: a masked output's cotangent is 0
    for i in range(len(layers) - 1, first - 1, -1):
        layer, p, cache = layers[i], params[i], caches[i]
        g = mask_positions(g, keep, lead=2)
        need = i > first or need_input
        if hasattr(layer, "split_cotangent"):
            parts = []
            for sub in layer.split_cotangent(p, cache, g):
                parts.append((yield from walk(*sub, need_input=need)))
            g = layer.merge_cotangents(p, cache, g, parts) if need else None
        else:
            if p:
                yield layer, p, cache, g
            g = layer.backward(p, cache, g) if need else None
    return g if need_input else None


def _drain(gen):
    """Run a generator to its end, discarding what it yields; its return value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def branches_init(node, rng, in_shape):
    """Every branch's parameters, drawn branch by branch and layer by layer, as one flat dict."""
    per_branch = [sequence_init(seq, rng, in_shape)[0] for seq in node.finite_sequences()]
    return pack(per_branch), node.out_shape(tuple(in_shape))


def branches_forward(node, params: Params, x):
    """Each branch on the same input, then the merge. Cache: (branch caches, branch outputs)."""
    outs, caches = [], []
    for seq, p in zip(node.finite_sequences(), unpack(params, node.finite_sequences())):
        y, c = sequence_forward(seq, p, x)
        outs.append(y)
        caches.append(c)
    return node.merge_outputs(x, outs), (caches, outs)


def branches_backward(node, params: Params, cache, g):
    parts = [_drain(walk(*sub)) for sub in split_cotangent(node, params, cache, g)]
    return merge_cotangents(node, params, cache, g, parts)


def branches_param_grads(node, params: Params, cache, g, per_example: bool = False) -> Params:
    """∂/∂θ of every inner layer, under the keys of ``params`` (the reference path: one more walk)."""
    key_of = {id(a): k for k, a in params.items()}
    out: Dict[str, object] = {}
    for sub in split_cotangent(node, params, cache, g):
        for layer, p, c, gi in walk(*sub, need_input=False):
            for name, d in layer.param_grads(p, c, gi, per_example).items():
                out[key_of[id(p[name])]] = d
    return {k: out[k] for k in params}  # the order of params (flat_params' layout)


def branches_ntk_terms(node, params: Params, cache1, g1, cache2, g2, trace: bool = True):
    """Σ over the inner layers of their ntk_terms, walking both inputs' branches in step."""
    same = cache1 is cache2 and g1 is g2
    total = None
    subs1 = split_cotangent(node, params, cache1, g1)
    subs2 = subs1 if same else split_cotangent(node, params, cache2, g2)
    for sub1, sub2 in zip(subs1, subs2):
        it2 = None if same else walk(*sub2, need_input=False)
        for layer, p, c1, h1 in walk(*sub1, need_input=False):
            _, _, c2, h2 = (layer, p, c1, h1) if same else next(it2)
            term = layer.ntk_terms(p, c1, h1, c2, h2, trace)
            if term is not None:
                total = term if total is None else total + term
    return total


def split_cotangent(node, params: Params, cache, g):
    """[(layers, params, caches, g_branch)] for the branches of ``node`` (see the module docstring)."""
    caches, outs = cache
    seqs = node.finite_sequences()
    plist = unpack(params, seqs)
    kind = node.finite_merge()
    if kind == "residual":
        gs = [float(node.scale) * g]
    elif kind == "sum":
        gs = [g] * len(seqs)
    elif kind == "concat":
        edges = [0]
        for y in outs:
            edges.append(edges[-1] + y.shape[-1])
        gs = [g[..., lo:hi] for lo, hi in zip(edges[:-1], edges[1:])]
    else:  # prod: ∂(Π_j y_j)/∂y_i = Π_{j≠i} y_j
        xp = namespace(g)
        gs = []
        for i in range(len(outs)):
            others = None
            for j, y in enumerate(outs):
                if j != i:
                    others = y if others is None else others * y
            gs.append(g * xp.expand_dims(others, 1))
    return [(s, p, c, gi) for s, p, c, gi in zip(seqs, plist, caches, gs)]


def merge_cotangents(node, params: Params, cache, g, parts):
    """The input cotangent: the branches' pull-backs added (plus g itself through the skip)."""
    total = g if node.finite_merge() == "residual" else None
    for part in parts:
        total = part if total is None else total + part
    return total

