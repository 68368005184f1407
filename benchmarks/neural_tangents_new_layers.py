"""Reference kernels of neural-tangents 0.6.5's remaining layers (attention, graphs, dropout, ...).

Writes ``tests/data/nt_new_layers.json``: for each architecture its .ntk text (the syntax of the
"new layers" issue; parameter names are neural-tangents' in snake_case), the input shape, the
inputs x1 (3 points) and x2 (4 points), per-input side data (graphs, attention masks) and
neural-tangents' (Novak et al. 2020) float64 NNGP and NTK between them (cross kernels x1 x x2).
Architectures whose self-kernel has a subtlety (dropout, aggregate, attention, exp_normalized,
layer norm over space) also store ``nngp_11``/``ntk_11`` = K(x1, x1) from ``kernel_fn(x1, None)``.
The neural-tangents side is written here with its ``stax`` layers, independently of the spec text.
Nothing of neural-tangents is copied into ntkdsl: this script only calls it.

Layer semantics in neural-tangents 0.6.5 (source: neural_tangents/_src/stax/linear.py,
elementwise.py, branching.py, requirements.py, utils/kernel.py of the installed wheel; line
numbers below are of that file). Derivations and finite-width rules: /work/notes/nt_layers.md.

- ``Dropout(rate, mode='train')`` (linear.py:2557). ``rate`` is the KEEP probability (as
  jax.example_libraries.stax.Dropout: kept units are divided by ``rate``); 0 < rate <= 1. The
  train-mode kernel multiplies cov1/cov2 by 1/rate on the spatial diagonal, and nngp/ntk by 1/rate
  on the batch-and-spatial diagonal only when ``x1_is_x2`` (x2 is None, or x2 has x1's shape and
  equals it elementwise to 1e-12, utils/utils.py:256): the cross kernel x1 x x2 of distinct inputs
  is unchanged, K(x1, x1) gets its diagonal scaled. Output ``is_gaussian = False``, so an
  activation may not follow dropout (NT refuses) and FanInSum refuses it as a branch end.
  Dropout right at the input fails with an IndexError (NT bug, its own check is dead code).
  Spec ``dropout(rate)`` uses the same (keep) rate here.
- ``LayerNorm(axis=-1, eps=1e-12)`` (linear.py:2448): the channel axis must be among ``axis``
  (ValueError otherwise: spatial-only normalisation is refused); nngp/ntk are divided by
  sqrt((eps + mean_axis cov1)(eps + mean_axis cov2)) where the mean runs over the normalised
  spatial axes of the per-pixel variances (requirements.py:1077 get_diagonal_outer_prods). Needs a
  Gaussian input. Spec ``layer_norm(axes = channels)`` = axis -1; ``axes = spatial_and_channels``
  = every non-batch axis.
- ``ConvTranspose(out_chan, filter_shape, strides, padding, W_std, b_std, parameterization)``
  (linear.py:996 -> _Conv linear.py:1116): lax.conv_transpose with the kernel NOT flipped; fan-in
  C_in * prod(filter) (not divided by the stride); output length L*s (SAME, CIRCULAR) and
  L*s + max(k - s, 0) (VALID, jax's padding, not PyTorch's (L-1)*s + k); CIRCULAR = the VALID
  output with its overhang wrapped around periodically (linear.py:2987).
- ``ConvLocal`` (linear.py:1056): unshared weights; same diagonal as Conv, zero covariance between
  different output pixels, bias variance only on the pixel diagonal.
- ``Aggregate(aggregate_axis=None, implementation='DENSE')`` (linear.py:260): no parameters;
  ``pattern[n, i, j]`` is the weight of the edge i -> j of input n, output_j = sum_i pattern[n, i, j]
  x_i (x @ A); kernel A1^T K A2 on the node axes (full spatial layout). kernel_fn takes
  ``pattern=(A1, A2)``; for the self-kernel pass ``(A1, A1)`` (``(A1, None)`` raises). Self loops
  and normalisation are the user's (put them in A). ``implementation='SPARSE'`` takes edge lists
  (N, E, 2) [sender, receiver], repeats add, an entry < 0 pads; same kernel.
- ``GlobalSelfAttention(n_chan_out, n_chan_key, n_chan_val, n_heads, linear_scaling=True,
  W_key_std=1, W_value_std=1, W_query_std=1, W_out_std=1, b_std=None,
  attention_mechanism='SOFTMAX', pos_emb_type='NONE', pos_emb_p_norm=2, pos_emb_decay_fn=None,
  n_chan_pos_emb=None, W_pos_emb_std=1, val_pos_emb=False)`` (linear.py:1932): NTK
  parameterization only. Kernel exists for linear_scaling=True (every mechanism) and for
  linear_scaling=False only with IDENTITY; SOFTMAX/ABS/RELU with linear_scaling=False raise
  NotImplementedError. Only W_query_std*W_key_std and W_out_std*W_value_std enter. The attention
  weights of input x are mechanism(QK_std * Sigma(x, x)(p, p')) (softmax over p'), i.e. each input's
  OWN full pixel covariance; masks: positions whose entries equal ``mask_constant`` are masked
  (softmax -> -inf, others -> 0; covariances of masked positions zeroed; GlobalAvgPool averages
  over unmasked pairs). ``pos_emb_decay_fn`` is a Python callable of the summed |Δ|^p distance;
  None means the identity (one-hot) embedding covariance. In the JSON, ``mask1``/``mask2`` are
  boolean (N, *spatial) arrays, True = masked (NT's convention), and x is stored with masked
  positions zeroed (what NT feeds the network), ``pos_emb_cov`` stores the (L, L) decay matrix.
- ``ImageResize(shape, method, antialias=True)`` (linear.py:2612): only LINEAR and NEAREST have a
  kernel; ``shape`` covers every axis with -1 = unchanged (batch and channel must be -1); the
  kernel is jax.image.resize applied to the kernel arrays on the doubled pixel axes.
  Spec ``resize((H', W'), method = ...)`` names the spatial shape only.
- ``Index(idx)`` (linear.py:2810): numpy indexing of the whole array; the channel axis must be
  ``:``; the batch axis must not be an integer. Spec ``index[a:b:c, ...]`` indexes spatial axes
  only (NT: ``Slice[:, a:b:c, ..., :]``); an integer index drops the axis.
- ``ExpNormalized(gamma=1, shift=-1, do_clip=False)`` (elementwise.py:652): kernel only (no
  apply_fn): nngp' = sqrt(q1 q2) exp(gamma (c / sqrt(q1 q2) + shift)), ntk' = gamma ntk exp(...).
- ``Gelu(approximate=False)`` (elementwise.py:197): ``approximate`` changes only apply_fn; the
  kernel is ALWAYS the exact GELU (x Phi(x)) kernel. The gelu-approximate cases below therefore
  hold the exact-GELU kernel and their spec says ``gelu`` (a ``note`` field says so); the kernel of
  the tanh approximation differs by up to ~2e-4 (q = 5) and needs its own oracle (quadrature).

Networks here may use ``conv(c, kernel = 1)`` for a per-position dense layer on [L, C] / [nodes, C]
inputs (neural-tangents' Dense on such inputs is exactly that; the stax side uses Dense).
``spatial_output`` cases end in an image (spec ``readout = none``) and store kernels of shape
(N1, N2, *S) (``kernel_fn(..., diagonal_spatial=True)``).

Self kernels: neural-tangents' arc-cosine duals lose ~1e-10 at (x, x) (see
neural_tangents_reference.py); compare the diagonal of ``nngp_11`` with that tolerance.

Run (needs jax and neural-tangents, e.g. the virtual environment .bench-nt: jax/jaxlib 0.4.23,
neural-tangents 0.6.5, numpy 1.26):

    .bench-nt/bin/python benchmarks/neural_tangents_new_layers.py [--out tests/data/nt_new_layers.json]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

MASK_SENTINEL = -777.25  # an input value that marks masked positions for neural-tangents
GELU_NOTE = ("stax side uses Gelu(approximate=True), whose kernel_fn is the exact-GELU kernel (approximate only "
             "changes apply_fn), so the spec says gelu; the kernel of the tanh approximation differs by up to ~2e-4")


def _res(s, *body):
    """x + f(x) in stax."""
    return [s.FanOut(2), s.parallel(s.Identity(), s.serial(*body)), s.FanInSum()]


def _mask_positions(rng, n, length):
    mask = np.zeros((n, length), dtype=bool)
    for i in range(n):
        if rng.random() < 0.7:  # most inputs have a padded tail, some also a hole
            tail = int(rng.integers(1, length // 2 + 1))
            mask[i, length - tail:] = True
            if rng.random() < 0.5:
                mask[i, int(rng.integers(0, length - tail))] = True
    mask[0, -1] = True
    return mask


def _graphs(rng, n, nodes, weighted):
    """Dense adjacencies with self loops; weighted: symmetric normalisation D^-1/2 (A + I) D^-1/2."""
    out = np.zeros((n, nodes, nodes))
    for i in range(n):
        a = np.triu((rng.random((nodes, nodes)) < 0.4).astype(float), 1)
        a = a + a.T + np.eye(nodes)
        if weighted:
            d = 1 / np.sqrt(a.sum(1))
            a = d[:, None] * a * d[None, :]
        out[i] = a
    out[0, 0, 1] += 0.5  # one directed edge, so A and A^T differ
    return out


def _edges(rng, n, nodes, max_edges):
    out = np.full((n, max_edges, 2), -1, dtype=np.int64)
    for i in range(n):
        m = int(rng.integers(max_edges // 2, max_edges + 1))
        out[i, :m] = rng.integers(0, nodes, (m, 2))
    return out


def _graph_side(kind):
    def side(rng, n1, n2, shape):
        if kind == "edges":
            g1, g2 = _edges(rng, n1, shape[0], 9), _edges(rng, n2, shape[0], 9)
        else:
            g1, g2 = _graphs(rng, n1, shape[0], kind == "weighted"), _graphs(rng, n2, shape[0], kind == "weighted")
        return {"graph_format": "edges" if kind == "edges" else "dense", "graph1": g1, "graph2": g2}
    return side


def _mask_side(rng, n1, n2, shape):
    length = int(np.prod(shape[:-1]))
    m1, m2 = _mask_positions(rng, n1, length), _mask_positions(rng, n2, length)
    return {"mask1": m1.reshape((n1,) + shape[:-1]), "mask2": m2.reshape((n2,) + shape[:-1])}


GNN_TEXT = """network g(input = [6, 3]{param}) {{
            conv(16, kernel = 1, b_std = 0.1); aggregate; relu
            conv(16, kernel = 1, w_std = 1.3); aggregate; relu
            conv(8, kernel = 1); {pool}; dense(1) }}"""


def _gnn(pool, param="ntk", sparse=False):
    impl = "SPARSE" if sparse else "DENSE"
    return lambda s: [s.Dense(16, b_std=0.1, parameterization=param), s.Aggregate(implementation=impl), s.Relu(),
                      s.Dense(16, W_std=1.3, parameterization=param), s.Aggregate(implementation=impl), s.Relu(),
                      s.Dense(8, parameterization=param), pool(s), s.Dense(1, parameterization=param)]


def _att(mech, ls, **kw):
    return lambda s: [s.Dense(12, b_std=0.1),
                      s.GlobalSelfAttention(12, 12, 12, 2, linear_scaling=ls, W_key_std=1.2, W_value_std=1.1,
                                            W_query_std=0.9, W_out_std=1.3, b_std=0.2, attention_mechanism=mech, **kw),
                      s.Relu(), s.Dense(6), s.GlobalAvgPool(), s.Dense(1)]


def _att_text(mech, ls, extra="", shape="[5, 4]"):
    return (f"""network a(input = {shape}) {{
            conv(12, kernel = 1, b_std = 0.1)
            attention(12, heads = 2, linear_scaling = {str(ls).lower()}, w_key_std = 1.2, w_value_std = 1.1,
                      w_query_std = 0.9, w_out_std = 1.3, b_std = 0.2, mechanism = {mech}{extra})
            relu; conv(6, kernel = 1); global_avg_pool; dense(1) }}""")


def _conv_t(padding, stride, param):
    return (f"""network t(input = [4, 3, 2], parameterization = {param}) {{
            conv_transpose(8, kernel = (3, 2), stride = {stride}, padding = {padding}, w_std = 1.3, b_std = 0.2); relu
            conv_transpose(6, kernel = 2, stride = (1, {stride}), padding = {padding}, w_std = 1.1); erf
            flatten; dense(1, b_std = 0.1) }}""",
            (4, 3, 2),
            lambda s: [s.ConvTranspose(8, (3, 2), strides=(stride, stride), padding=padding.upper(), W_std=1.3,
                                       b_std=0.2, parameterization=param), s.Relu(),
                       s.ConvTranspose(6, (2, 2), strides=(1, stride), padding=padding.upper(), W_std=1.1,
                                       parameterization=param), s.Erf(),
                       s.Flatten(), s.Dense(1, b_std=0.1, parameterization=param)])


ARCHITECTURES = {
    # name: dict(spec, shape, layers(stax) -> list, optional: self (also K(x1, x1)), side(rng, n1, n2, shape)
    #            -> dict of per-input arrays, spatial_output)
    # ---- dropout (train mode; rate = keep probability)
    "dropout-mlp": dict(
        spec="""network d(input = 5) {
            dense(16, b_std = 0.1); relu; dropout(0.7); dense(8, w_std = 1.2); erf; dropout(0.9); dense(1) }""",
        shape=(5,), self=True,
        layers=lambda s: [s.Dense(16, b_std=0.1), s.Relu(), s.Dropout(0.7), s.Dense(8, W_std=1.2), s.Erf(),
                          s.Dropout(0.9), s.Dense(1)]),
    "dropout-mlp-standard": dict(
        spec="""network d(input = 5, parameterization = standard) {
            dense(16, b_std = 0.1); relu; dropout(0.6); dense(8, w_std = 1.2, b_std = 0); erf; dense(1) }""",
        shape=(5,), self=True,
        layers=lambda s: [s.Dense(16, b_std=0.1, parameterization="standard"), s.Relu(), s.Dropout(0.6),
                          s.Dense(8, W_std=1.2, b_std=0., parameterization="standard"), s.Erf(),
                          s.Dense(1, parameterization="standard")]),
    "dropout-cnn-gap": dict(
        spec="""network d(input = [5, 4, 2]) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); relu; dropout(0.8)
            conv(8, kernel = 3, padding = same); relu; global_avg_pool; dense(1) }""",
        shape=(5, 4, 2), self=True,
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.Relu(), s.Dropout(0.8),
                          s.Conv(8, (3, 3), padding="SAME"), s.Relu(), s.GlobalAvgPool(), s.Dense(1)]),
    # ---- layer norm over channels / over space and channels
    "layer-norm-channels-2d": dict(
        spec="""network l(input = [4, 5, 3]) {
            conv(8, kernel = 2, padding = same, w_std = 1.4, b_std = 0.3); layer_norm(axes = channels); relu
            conv(8, kernel = 3); global_avg_pool; dense(1) }""",
        shape=(4, 5, 3),
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", W_std=1.4, b_std=0.3), s.LayerNorm(axis=-1), s.Relu(),
                          s.Conv(8, (3, 3)), s.GlobalAvgPool(), s.Dense(1)]),
    "layer-norm-spatial-2d": dict(
        spec="""network l(input = [4, 5, 3]) {
            conv(8, kernel = 2, padding = same, w_std = 1.4, b_std = 0.3)
            layer_norm(axes = spatial_and_channels, eps = 0.01); relu
            conv(8, kernel = 3); global_avg_pool; dense(1) }""",
        shape=(4, 5, 3), self=True,
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", W_std=1.4, b_std=0.3), s.LayerNorm(axis=(1, 2, 3), eps=0.01),
                          s.Relu(), s.Conv(8, (3, 3)), s.GlobalAvgPool(), s.Dense(1)]),
    "layer-norm-spatial-2d-flatten-standard": dict(
        spec="""network l(input = [4, 5, 3], parameterization = standard) {
            conv(8, kernel = 3, w_std = 1.4, b_std = 0.3); layer_norm(axes = spatial_and_channels); erf
            conv(6, kernel = 2, padding = circular); layer_norm(axes = channels); relu; flatten; dense(1) }""",
        shape=(4, 5, 3),
        layers=lambda s: [s.Conv(8, (3, 3), W_std=1.4, b_std=0.3, parameterization="standard"),
                          s.LayerNorm(axis=(1, 2, 3)), s.Erf(),
                          s.Conv(6, (2, 2), padding="CIRCULAR", parameterization="standard"), s.LayerNorm(), s.Relu(),
                          s.Flatten(), s.Dense(1, parameterization="standard")]),
    "layer-norm-1d": dict(
        spec="""network l(input = [7, 3]) {
            conv(8, kernel = 3, padding = same, b_std = 0.2); layer_norm(axes = spatial_and_channels); gelu
            conv(8, kernel = 2); layer_norm(axes = channels, eps = 0.1); relu; flatten; dense(1) }""",
        shape=(7, 3), self=True,
        layers=lambda s: [s.Conv(8, (3,), padding="SAME", b_std=0.2), s.LayerNorm(axis=(1, 2)), s.Gelu(),
                          s.Conv(8, (2,)), s.LayerNorm(axis=-1, eps=0.1), s.Relu(), s.Flatten(), s.Dense(1)]),
    # ---- transposed convolution
    **{f"conv-transpose-{pad}-s{st}-{par}": dict(zip(("spec", "shape", "layers"), _conv_t(pad, st, par)))
       for pad in ("valid", "same", "circular") for st in (1, 2) for par in ("ntk", "standard")},
    "conv-transpose-1d-gap": dict(
        spec="""network t(input = [5, 3]) {
            conv_transpose(8, kernel = 4, stride = 2, padding = circular, b_std = 0.1); relu
            conv_transpose(8, kernel = 3, stride = 3, padding = valid); relu; global_avg_pool; dense(1) }""",
        shape=(5, 3),
        layers=lambda s: [s.ConvTranspose(8, (4,), strides=(2,), padding="CIRCULAR", b_std=0.1), s.Relu(),
                          s.ConvTranspose(8, (3,), strides=(3,), padding="VALID"), s.Relu(), s.GlobalAvgPool(),
                          s.Dense(1)]),
    "conv-transpose-spatial-output": dict(
        spec="""network t(input = [5, 3], readout = none) {
            conv_transpose(8, kernel = 3, stride = 2, padding = same, b_std = 0.1); relu
            conv(4, kernel = 2, padding = same, w_std = 1.2) }""",
        shape=(5, 3), spatial_output=True,
        layers=lambda s: [s.ConvTranspose(8, (3,), strides=(2,), padding="SAME", b_std=0.1), s.Relu(),
                          s.Conv(4, (2,), padding="SAME", W_std=1.2)]),
    # ---- locally connected (unshared) convolution
    **{f"conv-local-{par}": dict(
        spec=f"""network c(input = [5, 4, 2], parameterization = {par}) {{
            conv_local(8, kernel = 3, padding = same, w_std = 1.3, b_std = 0.2); relu
            conv_local(8, kernel = (2, 1), stride = (2, 1), w_std = 1.1, b_std = 0.1); erf
            flatten; dense(1) }}""",
        shape=(5, 4, 2),
        layers=lambda s, par=par: [s.ConvLocal(8, (3, 3), padding="SAME", W_std=1.3, b_std=0.2, parameterization=par),
                                   s.Relu(), s.ConvLocal(8, (2, 1), strides=(2, 1), W_std=1.1, b_std=0.1,
                                                         parameterization=par), s.Erf(),
                                   s.Flatten(), s.Dense(1, parameterization=par)]) for par in ("ntk", "standard")},
    "conv-local-circular-gap": dict(
        spec="""network c(input = [6, 2]) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); relu
            conv_local(8, kernel = 3, stride = 2, padding = circular, b_std = 0.3); relu
            conv(8, kernel = 2, padding = same); global_avg_pool; dense(1) }""",
        shape=(6, 2),
        layers=lambda s: [s.Conv(8, (2,), padding="SAME", b_std=0.1), s.Relu(),
                          s.ConvLocal(8, (3,), strides=(2,), padding="CIRCULAR", b_std=0.3), s.Relu(),
                          s.Conv(8, (2,), padding="SAME"), s.GlobalAvgPool(), s.Dense(1)]),
    # ---- graph aggregation (GNTK)
    "gnn-sum-pool": dict(spec=GNN_TEXT.format(param="", pool="global_sum_pool"), shape=(6, 3), self=True,
                         side=_graph_side("binary"), layers=_gnn(lambda s: s.GlobalSumPool())),
    "gnn-avg-pool-normalised": dict(spec=GNN_TEXT.format(param="", pool="global_avg_pool"), shape=(6, 3), self=True,
                                    side=_graph_side("weighted"), layers=_gnn(lambda s: s.GlobalAvgPool())),
    "gnn-sum-pool-standard": dict(spec=GNN_TEXT.format(param=", parameterization = standard", pool="global_sum_pool"),
                                  shape=(6, 3), side=_graph_side("binary"),
                                  layers=_gnn(lambda s: s.GlobalSumPool(), "standard")),
    "gnn-edge-list": dict(spec=GNN_TEXT.format(param="", pool="global_avg_pool"), shape=(6, 3), self=True,
                          side=_graph_side("edges"), layers=_gnn(lambda s: s.GlobalAvgPool(), sparse=True)),
    "gnn-aggregate-input": dict(
        spec="""network g(input = [5, 2]) {
            aggregate; conv(8, kernel = 1, w_std = 1.5); relu; aggregate; flatten; dense(1) }""",
        shape=(5, 2), side=_graph_side("weighted"),
        layers=lambda s: [s.Aggregate(), s.Dense(8, W_std=1.5), s.Relu(), s.Aggregate(), s.Flatten(), s.Dense(1)]),
    # ---- attention: every mechanism that has a kernel
    **{f"attention-{m.lower()}-linear": dict(spec=_att_text(m.lower(), True), shape=(5, 4), self=m == "SOFTMAX",
                                             layers=_att(m, True))
       for m in ("SOFTMAX", "IDENTITY", "ABS", "RELU")},
    "attention-identity-sqrt-scaling": dict(spec=_att_text("identity", False), shape=(5, 4), self=True,
                                            layers=_att("IDENTITY", False)),
    "attention-softmax-pos-emb-sum": dict(
        spec=_att_text("softmax", True, ", pos_emb = sum, w_pos_emb_std = 0.8"), shape=(5, 4),
        layers=_att("SOFTMAX", True, pos_emb_type="SUM", W_pos_emb_std=0.8)),
    "attention-identity-sqrt-pos-emb-sum-values": dict(
        spec=_att_text("identity", False, ", pos_emb = sum, val_pos_emb = true"), shape=(5, 4),
        layers=_att("IDENTITY", False, pos_emb_type="SUM", val_pos_emb=True)),
    "attention-softmax-pos-emb-concat-decay": dict(
        # pos_emb_decay = exp(0.5): R(p, p') = exp(-0.5 * |p - p'|^2) (p_norm 2); R is stored as pos_emb_cov
        spec=_att_text("softmax", True, ", pos_emb = concat, pos_emb_decay = exp(0.5), pos_emb_channels = 6, "
                                        "w_pos_emb_std = 1.2"), shape=(5, 4),
        pos_emb_cov=lambda shape: np.exp(-0.5 * (np.arange(shape[0])[:, None] - np.arange(shape[0])[None, :]) ** 2),
        layers=_att("SOFTMAX", True, pos_emb_type="CONCAT", pos_emb_decay_fn=lambda d: np.exp(-0.5 * d),
                    n_chan_pos_emb=6, W_pos_emb_std=1.2)),
    "attention-softmax-masked": dict(spec=_att_text("softmax", True, shape="[6, 4]"), shape=(6, 4), self=True,
                                     side=_mask_side, layers=_att("SOFTMAX", True)),
    "attention-relu-masked": dict(spec=_att_text("relu", True, shape="[6, 4]"), shape=(6, 4), side=_mask_side,
                                  layers=_att("RELU", True)),
    "attention-image-softmax": dict(spec=_att_text("softmax", True, shape="[3, 3, 2]"), shape=(3, 3, 2),
                                    layers=_att("SOFTMAX", True)),
    # ---- resize, index
    **{f"resize-{meth}-{dirn}": dict(
        spec=f"""network r(input = [5, 4, 2]) {{
            conv(8, kernel = 2, padding = same, b_std = 0.1); relu
            conv(8, kernel = 2, padding = same); resize({tuple(size)}, method = {meth}); relu
            conv(8, kernel = 2); global_avg_pool; dense(1) }}""",
        shape=(5, 4, 2),
        layers=lambda s, meth=meth, size=size: [
            s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.Relu(), s.Conv(8, (2, 2), padding="SAME"),
            s.ImageResize((-1,) + tuple(size) + (-1,), meth), s.Relu(), s.Conv(8, (2, 2)), s.GlobalAvgPool(), s.Dense(1)])
       for meth in ("linear", "nearest") for dirn, size in (("up", (7, 6)), ("down", (3, 2)), ("mixed", (8, 3)))},
    "resize-linear-no-antialias-flatten": dict(
        spec="""network r(input = [6, 5, 2]) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); resize((3, 7), method = linear, antialias = false); relu
            flatten; dense(1) }""",
        shape=(6, 5, 2),
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.ImageResize((-1, 3, 7, -1), "linear",
                                                                                          antialias=False),
                          s.Relu(), s.Flatten(), s.Dense(1)]),
    "index-crop-stride-reverse": dict(
        spec="""network i(input = [6, 5, 2]) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); relu; conv(8, kernel = 2, padding = same)
            index[1:5, ::-1]; relu; conv(8, kernel = 2); index[::2, 1::2]; relu; flatten; dense(1) }""",
        shape=(6, 5, 2),
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.Relu(), s.Conv(8, (2, 2), padding="SAME"),
                          s.Index(s.Slice[:, 1:5, ::-1, :]), s.Relu(), s.Conv(8, (2, 2)),
                          s.Index(s.Slice[:, ::2, 1::2, :]), s.Relu(), s.Flatten(), s.Dense(1)]),
    "index-gap-and-integer": dict(
        spec="""network i(input = [6, 5, 2]) {
            conv(8, kernel = 3, padding = circular, b_std = 0.1); relu; conv(8, kernel = 2)
            index[::-2, :3]; relu; conv(8, kernel = 2, padding = same); index[1]; relu
            conv(8, kernel = 2); global_avg_pool; dense(1) }""",
        shape=(6, 5, 2),
        layers=lambda s: [s.Conv(8, (3, 3), padding="CIRCULAR", b_std=0.1), s.Relu(), s.Conv(8, (2, 2)),
                          s.Index(s.Slice[:, ::-2, :3, :]), s.Relu(), s.Conv(8, (2, 2), padding="SAME"),
                          s.Index(s.Slice[:, 1, :, :]), s.Relu(), s.Conv(8, (2,)), s.GlobalAvgPool(), s.Dense(1)]),
    # ---- exp_normalized, gelu(approximate)
    "exp-normalized-mlp": dict(
        spec="""network e(input = 5) {
            dense(8, w_std = 1.3, b_std = 0.2); exp_normalized(gamma = 2, shift = -1); dense(8, b_std = 0.1)
            exp_normalized(gamma = 0.5, shift = 0.3, do_clip = true); dense(1) }""",
        shape=(5,), self=True,
        layers=lambda s: [s.Dense(8, W_std=1.3, b_std=0.2), s.ExpNormalized(gamma=2., shift=-1.), s.Dense(8, b_std=0.1),
                          s.ExpNormalized(gamma=0.5, shift=0.3, do_clip=True), s.Dense(1)]),
    "exp-normalized-cnn-gap": dict(
        spec="""network e(input = [5, 4, 2]) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); exp_normalized
            conv(8, kernel = 2); global_avg_pool; dense(1) }""",
        shape=(5, 4, 2), self=True,
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.ExpNormalized(), s.Conv(8, (2, 2)),
                          s.GlobalAvgPool(), s.Dense(1)]),
    "gelu-approximate-mlp": dict(
        spec="""network g(input = 5) {
            dense(8, w_std = 1.4, b_std = 0.1); gelu; dense(8); gelu; dense(1) }""",
        shape=(5,), note=GELU_NOTE,
        layers=lambda s: [s.Dense(8, W_std=1.4, b_std=0.1), s.Gelu(approximate=True), s.Dense(8),
                          s.Gelu(approximate=True), s.Dense(1)]),
    "gelu-approximate-cnn-standard": dict(
        spec="""network g(input = [5, 4, 2], parameterization = standard) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); gelu; avg_pool(2)
            conv(8, kernel = 2); gelu; flatten; dense(1) }""",
        shape=(5, 4, 2), note=GELU_NOTE,
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1, parameterization="standard"),
                          s.Gelu(approximate=True), s.AvgPool((2, 2), (2, 2)),
                          s.Conv(8, (2, 2), parameterization="standard"), s.Gelu(approximate=True), s.Flatten(),
                          s.Dense(1, parameterization="standard")]),
    # ---- compositions
    "transformer-block": dict(
        spec="""network t(input = [6, 4]) {
            conv(16, kernel = 1, b_std = 0.1)
            residual { attention(16, heads = 4, mechanism = softmax, b_std = 0.1) }; layer_norm
            residual { conv(32, kernel = 1, b_std = 0.1); relu; conv(16, kernel = 1, w_std = 1.2) }; layer_norm
            global_avg_pool; dense(1) }""",
        shape=(6, 4), self=True,
        layers=lambda s: [s.Dense(16, b_std=0.1), *_res(s, s.GlobalSelfAttention(16, 16, 16, 4, b_std=0.1)),
                          s.LayerNorm(),
                          *_res(s, s.Dense(32, b_std=0.1), s.Relu(), s.Dense(16, W_std=1.2)), s.LayerNorm(),
                          s.GlobalAvgPool(), s.Dense(1)]),
    "transformer-block-masked-pos-emb": dict(
        spec="""network t(input = [6, 4]) {
            conv(16, kernel = 1, b_std = 0.1)
            residual { attention(16, heads = 4, mechanism = softmax, pos_emb = sum, b_std = 0.1) }; layer_norm
            residual { conv(32, kernel = 1, b_std = 0.1); gelu; dropout(0.9); conv(16, kernel = 1) }; layer_norm
            global_avg_pool; dense(1) }""",
        shape=(6, 4), self=True, side=_mask_side,
        layers=lambda s: [s.Dense(16, b_std=0.1), *_res(s, s.GlobalSelfAttention(16, 16, 16, 4, b_std=0.1,
                                                                               pos_emb_type="SUM")),
                          s.LayerNorm(), *_res(s, s.Dense(32, b_std=0.1), s.Gelu(), s.Dropout(0.9), s.Dense(16)),
                          s.LayerNorm(), s.GlobalAvgPool(), s.Dense(1)]),
    "gnn-residual-layer-norm": dict(
        spec="""network g(input = [6, 3]) {
            conv(16, kernel = 1, b_std = 0.1)
            residual { aggregate; relu; conv(16, kernel = 1, w_std = 1.2, b_std = 0.1) }; layer_norm
            residual(scale = 0.5) { aggregate; erf; conv(16, kernel = 1) }
            global_sum_pool; dense(4, b_std = 0.1); relu; dense(1) }""",
        shape=(6, 3), side=_graph_side("weighted"),
        layers=lambda s: [s.Dense(16, b_std=0.1), *_res(s, s.Aggregate(), s.Relu(), s.Dense(16, W_std=1.2, b_std=0.1)),
                          s.LayerNorm(), *_res(s, s.Aggregate(), s.Erf(), s.Dense(16), s.DotGeneral(rhs=0.5)),
                          s.GlobalSumPool(), s.Dense(4, b_std=0.1), s.Relu(), s.Dense(1)]),
    # ---- position masks without attention (appended last: the random draws of the cases above are unchanged)
    "masked-layer-norm-gap": dict(
        spec="""network m(input = [7, 3]) {
            conv(8, kernel = 1, w_std = 1.3, b_std = 0.3); layer_norm(axes = spatial_and_channels); relu
            conv(6, kernel = 1, b_std = 0.2); gelu; global_avg_pool; dense(1, b_std = 0.1) }""",
        shape=(7, 3), self=True, side=_mask_side,
        layers=lambda s: [s.Dense(8, W_std=1.3, b_std=0.3), s.LayerNorm(axis=(1, 2)), s.Relu(),
                          s.Dense(6, b_std=0.2), s.Gelu(), s.GlobalAvgPool(), s.Dense(1, b_std=0.1)]),
    "masked-residual-dropout-2d": dict(
        spec="""network m(input = [3, 4, 2]) {
            conv(8, kernel = 1, b_std = 0.1)
            residual { relu; dropout(0.8); conv(8, kernel = 1, w_std = 1.2, b_std = 0.2) }; layer_norm
            erf; conv(8, kernel = 1); global_sum_pool; dense(1) }""",
        shape=(3, 4, 2), self=True, side=_mask_side,
        layers=lambda s: [s.Conv(8, (1, 1), b_std=0.1),
                          *_res(s, s.Relu(), s.Dropout(0.8), s.Conv(8, (1, 1), W_std=1.2, b_std=0.2)), s.LayerNorm(),
                          s.Erf(), s.Conv(8, (1, 1)), s.GlobalSumPool(), s.Dense(1)]),
    "masked-sin-flatten-standard": dict(
        spec="""network m(input = [6, 2], parameterization = standard) {
            conv(8, kernel = 1, w_std = 1.1, b_std = 0.2); sin(a = 1.2, b = 0.9, c = 0.7)
            conv(6, kernel = 1, b_std = 0.1); relu; flatten; dense(1) }""",
        shape=(6, 2), side=_mask_side,
        layers=lambda s: [s.Dense(8, W_std=1.1, b_std=0.2, parameterization="standard"), s.Sin(a=1.2, b=0.9, c=0.7),
                          s.Dense(6, b_std=0.1, parameterization="standard"), s.Relu(), s.Flatten(),
                          s.Dense(1, parameterization="standard")]),
    "masked-parallel-sin-flatten": dict(
        spec="""network m(input = [5, 3]) {
            conv(8, kernel = 1, b_std = 0.2)
            parallel(merge = concat) { sin(c = 0.5) } { relu }
            flatten; dense(1) }""",
        shape=(5, 3), self=True, side=_mask_side,
        layers=lambda s: [s.Dense(8, b_std=0.2), s.FanOut(2), s.parallel(s.Sin(c=0.5), s.Relu()), s.FanInConcat(),
                          s.Flatten(), s.Dense(1)]),
    # LayerNorm over space with masks: neural-tangents adds eps to every pixel variance, masked ones included,
    # before its masked mean (requirements.py:1104 sums all entries, divides by the unmasked count), so its
    # kernel normalises by eps·P/n + mean_unmasked q where its own finite network (and ntkdsl) has
    # eps + mean_unmasked q; a large eps shows it (tests/test_masks.py checks both formulas by hand)
    "masked-layer-norm-eps-quirk": dict(
        spec="""network m(input = [6, 2]) {
            conv(8, kernel = 1, b_std = 0.4); layer_norm(axes = spatial_and_channels, eps = 0.5); relu
            global_avg_pool; dense(1) }""",
        shape=(6, 2), side=_mask_side,
        layers=lambda s: [s.Dense(8, b_std=0.4), s.LayerNorm(axis=(1, 2), eps=0.5), s.Relu(), s.GlobalAvgPool(),
                          s.Dense(1)]),
}

# Combinations neural-tangents 0.6.5 refuses (checked by ``--check-refusals``; ntkdsl should refuse them
# with a located error too).
REFUSED = {
    "attention softmax, linear_scaling = false": lambda s: [s.Dense(8), s.GlobalSelfAttention(8, 8, 8, 1,
                                                                                            linear_scaling=False),
                                                            s.GlobalAvgPool(), s.Dense(1)],
    "attention abs, linear_scaling = false": lambda s: [s.Dense(8), s.GlobalSelfAttention(
        8, 8, 8, 1, linear_scaling=False, attention_mechanism="ABS"), s.GlobalAvgPool(), s.Dense(1)],
    "attention relu, linear_scaling = false": lambda s: [s.Dense(8), s.GlobalSelfAttention(
        8, 8, 8, 1, linear_scaling=False, attention_mechanism="RELU"), s.GlobalAvgPool(), s.Dense(1)],
    "layer_norm over space only": lambda s: [s.Conv(8, (2,)), s.LayerNorm(axis=1), s.Flatten(), s.Dense(1)],
    "activation after dropout": lambda s: [s.Dense(8), s.Dropout(0.5), s.Relu(), s.Dense(1)],
    "dropout on the input": lambda s: [s.Dropout(0.5), s.Dense(1)],
    "layer_norm after an activation": lambda s: [s.Dense(8), s.Relu(), s.LayerNorm(), s.Dense(1)],
    "resize of the channel axis": lambda s: [s.Conv(8, (2,)), s.ImageResize((-1, -1, 4), "linear"), s.Flatten(),
                                             s.Dense(1)],
    "resize cubic": lambda s: [s.Conv(8, (2,)), s.ImageResize((-1, 3, -1), "cubic"), s.Flatten(), s.Dense(1)],
    "index of the channel axis": lambda s: [s.Conv(8, (2,)), s.Index(s.Slice[:, :, :2]), s.Flatten(), s.Dense(1)],
}


def _evaluate(stax, layers, x1, x2, extra, spatial_output):
    kwargs = {}
    if "graph1" in extra:
        kwargs["pattern"] = (extra["graph1"], extra["graph1"] if x2 is None else extra["graph2"])
    if "mask1" in extra:
        x1, kwargs["mask_constant"] = np.where(extra["mask1"][..., None], MASK_SENTINEL, x1), MASK_SENTINEL
        if x2 is not None:
            x2 = np.where(extra["mask2"][..., None], MASK_SENTINEL, x2)
    if spatial_output:
        kwargs["diagonal_spatial"] = True
    _, _, kernel_fn = stax.serial(*layers(stax))
    k = kernel_fn(x1, x2, ("nngp", "ntk"), **kwargs)
    return np.asarray(k.nngp), np.asarray(k.ntk)


def _check_refusals(stax) -> None:
    rng = np.random.default_rng(0)
    for name, layers in REFUSED.items():
        shape = (5,) if name.startswith(("activation after", "dropout on", "layer_norm after")) else (5, 3)
        x1, x2 = rng.standard_normal((2,) + shape), rng.standard_normal((3,) + shape)
        try:
            _, _, kernel_fn = stax.serial(*layers(stax))
            kernel_fn(x1, x2, ("nngp", "ntk"))
        except Exception as exc:  # noqa: BLE001 - reporting what neural-tangents raises
            print(f"refused: {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
        else:
            print(f"NOT refused: {name}")


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/nt_new_layers.json"))
    parser.add_argument("--check-refusals", action="store_true", help="print what neural-tangents refuses")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # attention's linear-scaling notice, Aggregate's SPARSE notice
    if args.check_refusals:
        _check_refusals(stax)
        return
    rng = np.random.default_rng(20261203)
    out = {}
    for name, arch in ARCHITECTURES.items():
        shape = arch["shape"]
        x1, x2 = rng.standard_normal((3,) + shape), rng.standard_normal((4,) + shape)
        extra = arch["side"](rng, 3, 4, shape) if "side" in arch else {}
        if "mask1" in extra:  # what neural-tangents feeds the network: masked entries zeroed
            x1, x2 = np.where(extra["mask1"][..., None], 0., x1), np.where(extra["mask2"][..., None], 0., x2)
        spatial = arch.get("spatial_output", False)
        nngp, ntk = _evaluate(stax, arch["layers"], x1, x2, extra, spatial)
        entry = {"spec": arch["spec"], "input_shape": list(shape), "x1": x1.tolist(), "x2": x2.tolist(),
                 "nngp": nngp.tolist(), "ntk": ntk.tolist()}
        entry.update({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in extra.items()})
        if "pos_emb_cov" in arch:
            entry["pos_emb_cov"] = arch["pos_emb_cov"](shape).tolist()
        if spatial:
            entry["spatial_output"] = True
        if "note" in arch:
            entry["note"] = arch["note"]
        if arch.get("self"):
            nngp11, ntk11 = _evaluate(stax, arch["layers"], x1, None, extra, spatial)
            entry["nngp_11"], entry["ntk_11"] = nngp11.tolist(), ntk11.tolist()
        assert np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk)), name
        out[name] = entry
        print(f"{name}: nngp {nngp.shape} {nngp.ravel()[:2]} ntk {ntk.ravel()[:2]}")
    text = json.dumps({"generator": "benchmarks/neural_tangents_new_layers.py", "neural_tangents": _version(),
                       "mask_convention": "True = position masked out (neural-tangents)",
                       "architectures": out}, indent=None, separators=(",", ":"))
    Path(args.out).write_text(text + "\n")
    print(f"wrote {args.out} ({len(text) / 1e6:.2f} MB, {len(out)} architectures)")


def _version() -> str:
    from importlib.metadata import version

    return version("neural-tangents")


if __name__ == "__main__":
    main()
