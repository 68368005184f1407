"""Random networks of the newer layers: ntkdsl against neural-tangents 0.6.5 (float64), many at once.

Draws random signal ``[L, C]``, image ``[H, W, C]`` and graph ``[V, C]`` networks that mix attention
(every mechanism with linear scaling, identity without; heads, every std, bias, pos_emb none/sum/concat
with p_norm 1 or 2, decay none or exp(s), val_pos_emb), layer_norm(axes = channels |
spatial_and_channels), conv_transpose (every padding, strides), conv_local, resize (linear/nearest,
antialias, up and down), index slicing (crop, stride, reverse, an integer on images), dropout (train
mode; neural-tangents' rate = the keep probability), exp_normalized, gelu, aggregate with random
dense weighted adjacencies per input, residual and parallel blocks around them, conv and pooling,
both parameterizations, and ``readout = none`` spatial outputs (``diagonal_spatial=True``). Each is
written as .ntk text and as neural-tangents ``stax`` layers (independently: the stax text is built
here beside the spec text), and the kernels between 3 and 2 random inputs and the self kernel
K(x1, x1) are compared. ntkdsl alone is also checked for auto vs full layout.

What is left out on purpose (neural-tangents refuses it, or is known to be wrong; see
docs/neural-tangents-layers.md §10–12): gelu(approximate = tanh) (neural-tangents' kernel is the exact
GELU one), softmax/abs/relu attention without linear scaling, dropout on the input or followed by an
activation/layer norm/branch end, layer norm after a non-Gaussian layer, and resize unless every
layer after it needs all pixel pairs up to a global pooling (neural-tangents resizes only the pixel
diagonal when a flatten or a spatial output follows: tests/test_new_layers_nt.py), pooling inside a
``readout = none`` network (neural-tangents refuses ``diagonal_spatial`` there).

Run (neural-tangents in its own environment, .bench-nt; run ``nt`` in batches on a shared machine):

    python benchmarks/neural_tangents_random_new_layers.py make 0 300 /tmp/new_cases.json
    .bench-nt/bin/python benchmarks/neural_tangents_random_new_layers.py nt /tmp/new_cases.json /tmp/new_nt.json 0 50
    python benchmarks/neural_tangents_random_new_layers.py compare /tmp/new_cases.json /tmp/new_nt.json
    python benchmarks/neural_tangents_random_new_layers.py store /tmp/new_cases.json /tmp/new_nt.json 40 \
        tests/data/nt_random_new_layers.json

(``nt`` takes an optional [first, last) range of case indices and merges into an existing output file.)

Measured (2026-12-03, seeds 1000–1199 of this generator before conv_local was kept to 1-D signals;
seeds 0–199 of a first version that also put exp_normalized in branches, conv_local at the end of
residual/parallel branches, one-channel inputs and resizes to one pixel): 400 networks compared (one
refused by neural-tangents: an aggregate after a pool, whose graph no longer fits); the agreeing ones
within 3.7e-15 of scale (median 3e-16; self-kernel diagonals within 2e-9, the arccos rounding of
tests/shared.py). Every disagreement was minimised and decided by a hand NumPy derivation and/or
``nt.monte_carlo_kernel_fn`` over neural-tangents' own finite network; all were neural-tangents bugs or
round-off (ntkdsl agreed with the oracle each time):

- conv_local after a layer whose neural-tangents Kernel is ``is_reversed`` (a pool, a conv in the full
  layout) on 2-D inputs: neural-tangents applies ConvLocal's filter and strides to the spatial axes in
  reversed order. Minimal: ``[3, 4, 2]: conv(3, kernel = 1); relu; avg_pool((2, 1), stride = 1);
  conv_local(3, kernel = (1, 3), stride = (1, 2), padding = circular); flatten; dense(2)`` — 1e-1 off;
  neural-tangents equals the hand kernel with the axes swapped, ntkdsl the hand kernel (seeds 1016,
  1040, 1089, 1130, 80 look like this; 1089 checked by hand).
- conv_local inside ``residual`` (beside the identity branch) followed by a global pool: neural-tangents
  drops every off-diagonal covariance of the sum (GAP = Σ_p K(p, p)/P²). Minimal: ``[3, 2]: conv(4,
  kernel = 1); residual { relu; conv_local(4, kernel = 1) }; global_avg_pool; dense(2)`` — NNGP 0.081
  (NT) vs 0.358 (ntkdsl = hand); NT's own finite network (width 128, 100 samples) gives 0.31.
- exp_normalized inside a ``parallel(merge = concat)`` branch: neural-tangents weights the branches
  equally instead of by channel count (ExpNormalized has no apply_fn, so its shape inference is lost).
  Minimal: ``[3, 3]: conv(6, kernel = 1); parallel(merge = concat) { exp_normalized; conv(2, kernel = 1) }
  { conv(5, kernel = 1) }; global_sum_pool; dense(2)``: NT = (E + K)/2 exactly, ntkdsl = (2E + 5K)/7.
- resize of a 2-D image with an axis resized to 1 pixel: ``[2, 3, 2]: conv(3, kernel = 1); resize((1, -1),
  method = nearest); global_avg_pool; dense(2)`` — NT off by 0.6 of scale; NT's finite network (width
  256, 200 samples) agrees with ntkdsl (jax's nearest picks row 1).
- one-channel inputs: the raw input's pixels have ρ = ±1 exactly, where arccos duals amplify round-off to
  ~1e-9..1e-8 in both tools (seeds 40, 118); inputs now have 2–3 channels.
"""

import json
import random
import sys

ACTS = [("relu", "s.Relu()"), ("erf", "s.Erf()"), ("gelu", "s.Gelu()"), ("abs", "s.Abs()")]
MECHS = ["softmax", "identity", "abs", "relu"]


def geom(n, k, st, pad):
    if pad == "valid":
        return (n - k) // st + 1
    return -(-n // st)


def tgeom(n, k, st, pad):
    """conv_transpose's output length (jax's paddings)."""
    return n * st + (max(k - st, 0) if pad == "valid" else 0)


def tup(r, vals):
    return str(vals[0]) if len(set(vals)) == 1 and r.random() < 0.5 else "(" + ", ".join(map(str, vals)) + ")"


class Gen:
    def __init__(self, r, param, family, spatial_out):
        self.r, self.param, self.family, self.spatial_out = r, param, family, spatial_out
        self.full_needed = not spatial_out  # set per network: resize only where all pixel pairs are needed

    # ---- affine layers -------------------------------------------------------------------------
    def _std(self):
        r = self.r
        w = r.choice([1, 1.3, 0.8])
        b = r.choice([None, 0.1, 0.3])
        par = self.param if r.random() < 0.7 else ("standard" if self.param == "ntk" else "ntk")
        return w, b, par

    def _tail(self, w, b, par):
        return (f", w_std = {w}" + (f", b_std = {b}" if b is not None else "")
                + (f", parameterization = {par}" if par != self.param else "") + ")")

    def conv(self, shape, c=None, same=False, kind="conv"):
        """conv, conv_local or conv_transpose; same: keep the spatial shape (stride 1)."""
        r = self.r
        c = c or r.choice([3, 4, 6])
        sp = shape[:-1]
        if self.family == "graph" and kind == "conv":
            k = [1]
            st, pad = [1], "valid"
        else:
            k = [min(r.choice([1, 2, 3]), n) for n in sp]
            st = [1] * len(sp) if same else [r.choice([1, 1, 2]) for _ in sp]
            pad = r.choice(["same", "circular"]) if same else r.choice(["valid", "same", "circular"])
        if kind == "conv_transpose":
            out = [tgeom(n, kk, s_, pad) for n, kk, s_ in zip(sp, k, st)]
            if same and out != list(sp):
                return None
            if max(out) > 9 or _prod(out) > 30:
                return None
        else:
            out = [geom(n, kk, s_, pad) for n, kk, s_ in zip(sp, k, st)]
        if min(out) < 1:
            return None
        w, b, par = self._std()
        text = f"{kind}({c}, kernel = {tup(r, k)}, stride = {tup(r, st)}, padding = {pad}" + self._tail(w, b, par)
        name = {"conv": "Conv", "conv_local": "ConvLocal", "conv_transpose": "ConvTranspose"}[kind]
        stax = (f"s.{name}({c}, {tuple(k)}, strides={tuple(st)}, padding='{pad.upper()}', W_std={w}, b_std={b}, "
                f"parameterization='{par}')")
        return text, stax, tuple(out) + (c,)

    def attention(self, shape, c=None):
        r = self.r
        c = c or r.choice([4, 6])
        mech = r.choice(MECHS)
        ls = True if mech != "identity" else r.random() < 0.5
        heads = r.choice([1, 2, 3])
        stds = {n: r.choice([1, 0.8, 1.3]) for n in ("key", "value", "query", "out")}
        b = r.choice([None, 0.2])
        pe = r.choice(["none", "none", "sum", "concat"])
        text = (f"attention({c}, heads = {heads}, linear_scaling = {str(ls).lower()}, mechanism = {mech}, "
                + ", ".join(f"w_{n}_std = {v}" for n, v in stds.items()) + (f", b_std = {b}" if b is not None else ""))
        stax = (f"s.GlobalSelfAttention({c}, {c}, {c}, {heads}, linear_scaling={ls}, attention_mechanism='{mech.upper()}', "
                + ", ".join(f"W_{n}_std={v}" for n, v in stds.items()) + f", b_std={b}")
        if pe != "none":
            p = r.choice([1, 2])
            decay = r.choice([None, 0.5, 1.5])
            cpe = shape[-1] if pe == "sum" else r.choice([2, 3])
            wpe = r.choice([1, 0.7, 1.2])
            val = r.random() < 0.4
            text += (f", pos_emb = {pe}, pos_emb_p_norm = {p}, pos_emb_channels = {cpe}, w_pos_emb_std = {wpe}"
                     + (f", pos_emb_decay = exp({decay})" if decay else "") + (", val_pos_emb = true" if val else ""))
            stax += (f", pos_emb_type='{pe.upper()}', pos_emb_p_norm={p}, n_chan_pos_emb={cpe}, W_pos_emb_std={wpe}"
                     + (f", pos_emb_decay_fn=lambda d: jnp.exp(-{decay} * d)" if decay else "")
                     + f", val_pos_emb={val}")
        return text + ")", stax + ")", shape[:-1] + (c,)

    def affine(self, shape, same=False, c=None):
        r = self.r
        kinds = ["conv", "conv", "attention"] + ([] if self.family == "graph" else ["conv_transpose"])
        # conv_local on 1-D signals only: on images neural-tangents reverses its axes after a pool or conv
        kinds += ["conv_local"] if self.family == "signal" and not same else []
        if self.spatial_out:
            kinds = [k for k in kinds if k != "attention" or not same]
        kind = r.choice(kinds)
        if kind == "attention":
            return self.attention(shape, c=c)
        return self.conv(shape, c=c, same=same, kind=kind)

    # ---- parameter-free layers -----------------------------------------------------------------
    def resize(self, shape):
        r = self.r
        sp = shape[:-1]
        size = [r.choice([-1, max(2, n - 2), n + 2, 2 * n]) for n in sp]
        out = [n if s_ == -1 else s_ for n, s_ in zip(sp, size)]
        if max(out) > 9 or _prod(out) > 30 or out == list(sp):
            return None
        meth = r.choice(["linear", "nearest"])
        aa = r.random() < 0.6
        text = f"resize({tup(r, size)}, method = {meth}" + ("" if aa else ", antialias = false") + ")"
        stax = f"s.ImageResize((-1, {', '.join(map(str, size))}, -1), '{meth}', antialias={aa})"
        return text, stax, tuple(out) + (shape[-1],)

    def index(self, shape):
        r = self.r
        sp = shape[:-1]
        entries, out = [], []
        for i, n in enumerate(sp):
            kind = r.choice(["all", "crop", "stride", "reverse", "int"] if len(sp) > 1 and i == 0 else
                            ["all", "crop", "stride", "reverse"])
            if kind == "int":
                j = r.randrange(-n, n)
                entries.append(str(j))
                continue
            if kind == "all":
                sl = slice(None)
            elif kind == "crop":
                a = r.randrange(0, n)
                sl = slice(a, r.randrange(a + 1, n + 1))
            elif kind == "stride":
                sl = slice(r.choice([None, 1]), None, r.choice([2, 3]))
            else:
                sl = slice(None, None, r.choice([-1, -2]))
            entries.append(_slice_text(sl))
            out.append(len(range(n)[sl]))
        if min(out, default=0) < 1 or not out:
            return None
        text = f"index[{', '.join(entries)}]"
        stax = f"s.Index(s.Slice[:, {', '.join(entries)}, :])"
        return text, stax, tuple(out) + (shape[-1],)

    def pool(self, shape):
        r = self.r
        sp = shape[:-1]
        win = [min(r.choice([1, 2, 3]), n) for n in sp]
        st = [r.choice([1, w]) for w in win]
        pad = r.choice(["valid", "same", "circular"])
        out = [geom(n, w, s_, pad) for n, w, s_ in zip(sp, win, st)]
        if min(out) < 1:
            return None
        mode = r.choice(["avg", "sum"])
        text = f"{mode}_pool({tup(r, win)}, stride = {tup(r, st)}, padding = {pad})"
        stax = f"s.{'Avg' if mode == 'avg' else 'Sum'}Pool({tuple(win)}, {tuple(st)}, padding='{pad.upper()}')"
        return text, stax, tuple(out) + (shape[-1],)

    def act(self, branch=False):
        r = self.r
        if not branch and r.random() < 0.2:
            g, sh, clip = r.choice([0.5, 1, 2]), r.choice([-1, 0.3]), r.random() < 0.3
            return (f"exp_normalized(gamma = {g}, shift = {sh}" + (", do_clip = true" if clip else "") + ")",
                    f"s.ExpNormalized(gamma={g}, shift={sh}, do_clip={clip})")
        return r.choice(ACTS)

    def layer_norm(self, shape):
        r = self.r
        eps = r.choice([None, 0.01, 0.3])
        axes = r.choice(["channels", "spatial_and_channels"])
        nd = len(shape)
        text = f"layer_norm(axes = {axes}" + (f", eps = {eps}" if eps else "") + ")"
        axis = "-1" if axes == "channels" else str(tuple(range(1, nd + 1)))
        stax = f"s.LayerNorm(axis={axis}" + (f", eps={eps}" if eps else "") + ")"
        return text, stax

    # ---- a body of layers ----------------------------------------------------------------------
    def body(self, shape, depth=0, n=None):
        """A sequence after an affine layer; returns (texts, staxes, shape, gaussian)."""
        r = self.r
        texts, staxes, gauss = [], [], True

        def add(item, new_shape=None, new_gauss=None):
            nonlocal shape, gauss
            texts.append(item[0])
            staxes.append(item[1])
            shape = new_shape or shape
            gauss = gauss if new_gauss is None else new_gauss

        for _ in range(n or r.randint(2, 5)):
            u = r.random()
            if gauss and u < 0.25:
                add(self.act(), new_gauss=False)
                if r.random() < 0.3:  # dropout after an activation, then an affine layer
                    rate = r.choice([0.5, 0.8, 0.9])
                    add((f"dropout({rate})", f"s.Dropout({rate})"))
                    a = self.affine(shape)
                    if a:
                        add(a, a[2], True)
                    else:
                        texts.pop(), staxes.pop()
            elif u < 0.45:
                a = self.affine(shape)
                if a:
                    add(a, a[2], True)
            elif u < 0.52 and gauss:
                add(self.layer_norm(shape))
            elif u < 0.62 and self.family == "graph" and shape[:-1] == self.nodes:
                add(("aggregate", "s.Aggregate()"))
            elif u < 0.62 and self.family != "graph":
                i = self.index(shape)
                if i:
                    add(i, i[2])
            elif u < 0.7 and self.family != "graph" and self.full_needed:
                z = self.resize(shape)
                if z:
                    add(z, z[2])
            elif u < 0.74 and not self.spatial_out:
                p = self.pool(shape)
                if p:
                    add(p, p[2])
            elif u < 0.85 and depth < 2 and gauss:
                self._residual(shape, add)
            elif depth < 2:
                self._parallel(shape, gauss, add)
        return texts, staxes, shape, gauss

    def _residual(self, shape, add):
        r = self.r
        lead = []
        if self.family == "graph" and shape[:-1] == self.nodes and r.random() < 0.5:
            lead.append(("aggregate", "s.Aggregate()"))
        if r.random() < 0.7:
            lead.append(self.act(branch=True))
            if r.random() < 0.3:
                rate = r.choice([0.6, 0.9])
                lead.append((f"dropout({rate})", f"s.Dropout({rate})"))
        a = self.affine(shape, same=True, c=shape[-1])
        if not a or a[2] != shape:
            return
        sc = r.choice([1, 0.5])
        body = lead + [a]
        add((f"residual(scale = {sc}) {{ " + "; ".join(b[0] for b in body) + " }",
             f"s.FanOut(2), s.parallel(s.Identity(), s.serial({', '.join(b[1] for b in body)}, s.DotGeneral(rhs={sc}))), "
             "s.FanInSum()"))

    def _parallel(self, shape, gauss, add):
        r = self.r
        merge = r.choice(["sum", "concat", "prod"])
        brs = []
        for _ in range(r.choice([2, 2, 3])):
            cc = shape[-1] if merge != "concat" else r.choice([2, 5])
            lead = [self.act(branch=True)] if gauss and r.random() < 0.5 else []
            a = self.affine(shape, same=True, c=cc)
            if not a:
                return
            brs.append(([x[0] for x in lead] + [a[0]], [x[1] for x in lead] + [a[1]], a[2]))
        if len({b[2][:-1] for b in brs}) > 1 or (merge != "concat" and len({b[2] for b in brs}) > 1):
            return
        text = f"parallel(merge = {merge}) " + " ".join("{ " + "; ".join(b[0]) + " }" for b in brs)
        stax = (f"s.FanOut({len(brs)}), s.parallel(" + ", ".join("s.serial(" + ", ".join(b[1]) + ")" for b in brs)
                + f"), s.FanIn{ {'sum': 'Sum', 'concat': 'Concat', 'prod': 'Prod'}[merge] }()")
        add((text, stax), brs[0][2][:-1] + (sum(b[2][-1] for b in brs) if merge == "concat" else brs[0][2][-1],),
            merge == "sum")


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def _slice_text(sl):
    return ":".join("" if v is None else str(v) for v in (sl.start, sl.stop)) + (f":{sl.step}" if sl.step else "")


def make(seed):
    r = random.Random(seed)
    family = r.choice(["signal", "signal", "image", "graph"])
    if family == "image":
        sizes = [r.randint(2, 4), r.randint(2, 4)]
    else:
        sizes = [r.randint(3, 6)]
    shape = tuple(sizes) + (r.randint(2, 3),)
    param = r.choice(["ntk", "ntk", "standard"])
    spatial_out = family != "graph" and r.random() < 0.2
    readout = None if spatial_out else r.choice(["flatten", "global_avg_pool", "global_sum_pool"])
    g = Gen(r, param, family, spatial_out)
    g.nodes = shape[:-1]
    g.full_needed = readout in ("global_avg_pool", "global_sum_pool")
    first = None
    while first is None:
        first = g.affine(shape)
    texts, staxes, shp, gauss = g.body(first[2])
    texts, staxes = [first[0]] + texts, [first[1]] + staxes
    if not gauss and r.random() < 0.5:
        a = g.affine(shp)
        if a:
            texts.append(a[0])
            staxes.append(a[1])
            shp, gauss = a[2], True
    if gauss and r.random() < 0.6:
        a = g.act()
        texts.append(a[0])
        staxes.append(a[1])
    if texts[-1].startswith("dropout"):
        texts.append("conv(3, kernel = 1)")
        staxes.append(f"s.Conv(3, (1,) * {len(shp) - 1}, parameterization='{param}')")
    if readout is not None:
        texts.append(readout)
        staxes.append({"flatten": "s.Flatten()", "global_avg_pool": "s.GlobalAvgPool()",
                       "global_sum_pool": "s.GlobalSumPool()"}[readout])
        texts.append("dense(2, b_std = 0.1)")
        staxes.append(f"s.Dense(2, b_std=0.1, parameterization='{param}')")
    header = f"input = {list(shape)}, parameterization = {param}" + (", readout = none" if spatial_out else "")
    spec = f"network f{seed}({header}) {{\n    " + "\n    ".join(texts) + "\n}"
    return {"seed": seed, "spec": spec, "stax": "[" + ", ".join(staxes) + "]", "shape": list(shape),
            "family": family, "spatial_output": spatial_out}


def inputs(case):
    """x1 (3 points), x2 (2 points) and, for graph networks, a dense weighted adjacency per point."""
    import numpy as np

    rng = np.random.default_rng(case["seed"])
    shape = tuple(case["shape"])
    x1, x2 = rng.standard_normal((3,) + shape), rng.standard_normal((2,) + shape)
    if "aggregate" not in case["spec"]:
        return x1, x2, None, None

    def graphs(n):
        v = shape[0]
        a = (rng.random((n, v, v)) < 0.5) * rng.uniform(0.2, 1.2, (n, v, v))
        return a + np.eye(v) * (rng.random((n, 1, 1)) < 0.7)  # self loops on most points

    return x1, x2, graphs(3), graphs(2)


def run_nt(cases_path, out_path, first=0, last=None):
    """neural-tangents' kernels of cases[first:last] (run with the .bench-nt interpreter), merged into out_path."""
    import os
    import warnings

    warnings.filterwarnings("ignore")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp  # noqa: F401 - the layer sources name it
    import numpy as np
    from neural_tangents import stax as s  # noqa: F401 - the layer sources name it

    def spatial_diagonal(k):
        """(N1, N2, *S) from neural-tangents' every-pixel-pair output (N1, N2, H, H', W, W'), reversed
        (W, W', H, H') where its Kernel is_reversed: for layers that refuse ``diagonal_spatial`` (attention)."""
        out = []
        for a in (np.asarray(k.nngp), np.asarray(k.ntk)):
            for _ in range((a.ndim - 2) // 2):
                a = np.diagonal(a, axis1=2, axis2=3)  # the diagonal moves to the last axis
            if k.is_reversed:
                a = np.transpose(a, (0, 1) + tuple(range(a.ndim - 1, 1, -1)))
            out.append(a)
        return out

    def evaluate(kernel_fn, x1, x2, case, g1, g2):
        kw = {"pattern": (g1, g2)} if g1 is not None else {}
        if not case["spatial_output"]:
            k = kernel_fn(x1, x2, ("nngp", "ntk"), **kw)
            return np.asarray(k.nngp), np.asarray(k.ntk)
        try:
            k = kernel_fn(x1, x2, ("nngp", "ntk"), diagonal_spatial=True, **kw)
            return np.asarray(k.nngp), np.asarray(k.ntk)
        except ValueError as exc:
            if "diagonal_spatial" not in str(exc):
                raise
            return spatial_diagonal(kernel_fn(x1, x2, None, **kw))

    out = json.load(open(out_path)) if os.path.exists(out_path) else {}
    for case in json.load(open(cases_path))[first:last]:
        x1, x2, g1, g2 = inputs(case)
        try:
            kernel_fn = s.serial(*eval(case["stax"], {"s": s, "jnp": jnp}))[2]  # noqa: S307 - our own generated text
            nngp, ntk = evaluate(kernel_fn, x1, x2, case, g1, g2)
            nngp11, ntk11 = evaluate(kernel_fn, x1, None, case, g1, g1)
            out[str(case["seed"])] = {key: np.asarray(v).tolist() for key, v in
                                      (("nngp", nngp), ("ntk", ntk), ("nngp_11", nngp11), ("ntk_11", ntk11))}
        except Exception as exc:  # noqa: BLE001 - reported per case
            out[str(case["seed"])] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    json.dump(out, open(out_path, "w"))


def rel(a, b):
    import numpy as np

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def errors(case, r, backend="numpy"):
    """(cross error, self off-diagonal error, self diagonal error) relative to scale, or raises."""
    import numpy as np

    import ntkdsl

    net = ntkdsl.loads(case["spec"])
    x1, x2, g1, g2 = inputs(case)
    gk = {"graph1": g1, "graph2": g2} if g1 is not None else {}
    k = net.kernels(x1, x2, backend=backend, **gk)
    k11 = net.kernels(x1, backend=backend, **({"graph1": g1} if g1 is not None else {}))
    cross = max(rel(k.nngp, r["nngp"]), rel(k.ntk, r["ntk"]))
    off = ~np.eye(3, dtype=bool)
    e_off = e_diag = 0.0
    for got, want in ((k11.nngp, np.asarray(r["nngp_11"])), (k11.ntk, np.asarray(r["ntk_11"]))):
        scale = max(np.abs(want).max(), 1e-300)
        e_off = max(e_off, float(np.abs(got[off] - want[off]).max() / scale))
        e_diag = max(e_diag, float(np.abs(got[~off] - want[~off]).max() / scale))
    return cross, e_off, e_diag


def compare(cases_path, nt_path, check_layout=True):
    import numpy as np

    import ntkdsl

    ref = json.load(open(nt_path))
    worst, refused = [], []
    for case in json.load(open(cases_path)):
        seed, r = case["seed"], ref.get(str(case["seed"]))
        if r is None:
            continue
        if "error" in r:
            refused.append(seed)
            print(seed, "neural-tangents:", r["error"][:160])
            continue
        try:
            cross, e_off, e_diag = errors(case, r)
        except ntkdsl.SpecError as exc:
            print(seed, "ntkdsl refuses:", str(exc).splitlines()[0][:200])
            continue
        worst.append((max(cross, e_off), e_diag, seed))
        if max(cross, e_off) > 1e-12 or e_diag > 1e-8:
            print(seed, f"differs from neural-tangents: cross {cross:.2e} self off-diag {e_off:.2e} diag {e_diag:.2e}"
                  f"\n{case['spec']}\n{case['stax']}")
        if check_layout:
            x1, x2, g1, g2 = inputs(case)
            gk = {"graph1": g1, "graph2": g2} if g1 is not None else {}
            a = ntkdsl.loads(case["spec"]).kernels(x1, x2, **gk)
            f = ntkdsl.loads(case["spec"], layout="full").kernels(x1, x2, **gk)
            if not case["spatial_output"] and max(rel(f.nngp, a.nngp), rel(f.ntk, a.ntk)) > 1e-12:
                print(seed, "full and auto layouts differ", max(rel(f.nngp, a.nngp), rel(f.ntk, a.ntk)))
    worst.sort()
    if worst:
        e = np.array([w[0] for w in worst])
        print(f"{len(worst)} networks compared ({len(refused)} refused by neural-tangents); cross/self off-diagonal "
              f"median {np.median(e):.1e}, max {e.max():.1e}; self diagonal max {max(w[1] for w in worst):.1e}; "
              f"largest {worst[-3:]}")


def store(cases_path, nt_path, count, out_path):
    """The first ``count`` agreeing cases (with layer variety) and neural-tangents' kernels, for the tests."""
    ref = json.load(open(nt_path))
    chosen = []
    for case in json.load(open(cases_path)):
        r = ref.get(str(case["seed"]))
        if r is None or "error" in r or len(chosen) >= count:
            continue
        try:
            cross, e_off, e_diag = errors(case, r)
        except Exception:  # noqa: BLE001 - only agreeing, accepted cases are stored
            continue
        if max(cross, e_off) > 1e-12 or e_diag > 1e-8:
            continue
        x1, x2, g1, g2 = inputs(case)
        entry = dict(case, x1=x1.tolist(), x2=x2.tolist(), **r)
        entry.pop("stax")
        entry["stax"] = case["stax"]
        if g1 is not None:
            entry["graph1"], entry["graph2"] = g1.tolist(), g2.tolist()
        chosen.append(entry)
    from importlib.metadata import PackageNotFoundError, version

    try:
        nt_version = version("neural-tangents")
    except PackageNotFoundError:
        nt_version = "0.6.5"
    text = json.dumps({"generator": "benchmarks/neural_tangents_random_new_layers.py", "neural_tangents": nt_version,
                       "cases": chosen}, separators=(",", ":"))
    open(out_path, "w").write(text + "\n")
    print(f"wrote {out_path}: {len(chosen)} cases, {len(text) / 1e6:.2f} MB")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "make":
        first, last, path = int(args[0]), int(args[1]), args[2]
        json.dump([make(s) for s in range(first, last)], open(path, "w"))
    elif mode == "nt":
        run_nt(args[0], args[1], *(int(a) for a in args[2:4]))
    elif mode == "store":
        store(args[0], args[1], int(args[2]), args[3])
    else:
        compare(*args[:2])
