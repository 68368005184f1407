"""Monte Carlo oracle: random finite CNNs and ResNets, written here directly in NumPy, against the
analytic NNGP and NTK (kernel-math.md §2, §5).

Nothing of ntkdsl is used to build or differentiate the finite networks: convolutions are im2col
products, the backward pass is written out, and the empirical NTK is the sum over layers of
⟨∂f/∂θ(x), ∂f/∂θ(x')⟩, contracted per layer as s²·Σ_{p,p'} (patch(x, p)·patch(x', p'))·
(δ(x, p)·δ(x', p')) (no Jacobian). Each draw's NNGP estimate averages the readout analytically:
E_v[f(x) f(x')] = σ_w²·φ(x)·φ(x')/n + σ_b² for the readout's input features φ (exact; it only
removes the readout's sampling noise). Channel widths are ≥ 512.

Tolerance: the draws are independent, so the mean's standard error SE is measured from them; the
finite-width mean also differs from the infinite-width limit by O(1/n) (kernel-math.md §5). A
check passes when |mean − analytic| ≤ 4·SE + (4/n)·max|analytic| entrywise: a 4-sigma band plus
the O(1/n) bias with constant 4 (measured deviations stay below 2 SE + 1/n here).
"""

import functools

import numpy as np
import pytest

import ntkdsl

WIDTH = 512


# ---------------------------------------------------------------------- finite layers
def geometry(n, k, s, padding):
    """(pad_lo, pad_hi, out) as in lax/neural-tangents: VALID, SAME (zeros) or CIRCULAR (wrap)."""
    if padding == "valid":
        return 0, 0, (n - k) // s + 1
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2, out


def im2col(x, k, s, padding):
    """(N, H, W, C) -> patches (N, Ho, Wo, k·k·C) and what col2im needs."""
    n, h, w, c = x.shape
    (lo, hi, ho), (_, _, wo) = geometry(h, k, s, padding), geometry(w, k, s, padding)
    lw, hw = geometry(w, k, s, padding)[:2]
    xp = np.pad(x, ((0, 0), (lo, hi), (lw, hw), (0, 0)), mode="wrap" if padding == "circular" else "constant")
    cols = [xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :] for i in range(k) for j in range(k)]
    return np.stack(cols, axis=3).reshape(n, ho, wo, k * k * c), (x.shape, xp.shape, lo, lw)


def col2im(g, k, s, padding, info):
    """The adjoint of im2col: (N, Ho, Wo, k·k·C) -> (N, H, W, C)."""
    (n, h, w, c), padded, lo, lw = info
    ho, wo = g.shape[1:3]
    g = g.reshape(n, ho, wo, k * k, c)
    gp = np.zeros(padded)
    for t, (i, j) in enumerate((i, j) for i in range(k) for j in range(k)):
        gp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :] += g[:, :, :, t, :]
    if padding != "circular":
        return gp[:, lo:lo + h, lw:lw + w, :]
    out = np.zeros((n, h, padded[2], c))
    np.add.at(out, (slice(None), (np.arange(padded[1]) - lo) % h), gp)
    res = np.zeros((n, h, w, c))
    np.add.at(res, (slice(None), slice(None), (np.arange(padded[2]) - lw) % w), out)
    return res


def _matmul(a, b):
    """a (..., K) @ b (K, M) as one 2-D GEMM (a stacked matmul would loop over the leading axes)."""
    return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + (b.shape[1],))


ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
    "erf": (lambda z: _erf(z), lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z)),
}


def _erf(z):
    from scipy.special import erf

    return erf(z)


class Draw:
    """One random finite network: a list of layers, each a tuple (kind, settings)."""

    def __init__(self, layers, channels_in, rng, param):
        self.param, self.rng = param, rng
        self.layers = self._init(layers, channels_in)

    def _init(self, layers, c):
        """Copies of the settings, with the channel count after each layer; weights are drawn at the
        first forward pass, when the fan-in (C_in·k², or the flattened width) is known."""
        out = []
        for kind, cfg in layers:
            cfg = dict(cfg)
            if kind in ("conv", "dense"):
                c = cfg["c"]
            elif kind == "residual":
                cfg["body"] = self._init(cfg["body"], c)
            elif kind == "concat":
                cfg["branches"] = [self._init(b, c) for b in cfg["branches"]]
                cfg["widths"] = [next(l[1]["c"] for l in reversed(b) if l[0] in ("conv", "dense")) for b in cfg["branches"]]
                c = sum(cfg["widths"])
            elif kind == "prod":
                cfg["branches"] = [self._init(b, c) for b in cfg["branches"]]
                c = next(l[1]["c"] for l in reversed(cfg["branches"][0]) if l[0] in ("conv", "dense"))
            out.append((kind, cfg))
        return out

    def _draw(self, cfg, fan_in):
        """W (fan_in, c) and the bias, i.i.d. from the prior of the parameterization (kernel-math.md §5)."""
        if "W" in cfg:
            return
        cfg["fan_in"] = fan_in
        std = cfg.get("w", 1.0) / np.sqrt(fan_in) if self.param == "standard" else 1.0
        cfg["W"] = std * self.rng.standard_normal((fan_in, cfg["c"]))
        if cfg.get("b") is not None:
            cfg["bias"] = (cfg["b"] if self.param == "standard" else 1.0) * self.rng.standard_normal(cfg["c"])

    def scales(self, cfg):
        """(weight multiplier, bias multiplier) of the forward pass."""
        if self.param == "standard":
            return 1.0, 1.0
        return cfg.get("w", 1.0) / np.sqrt(cfg["fan_in"]), cfg.get("b") or 0.0

    # -- forward: returns the output and a tape of what backward needs
    def forward(self, layers, x):
        tape = []
        for kind, cfg in layers:
            if kind == "conv":
                patches, info = im2col(x, cfg["k"], cfg.get("s", 1), cfg.get("pad", "valid"))
                self._draw(cfg, patches.shape[-1])
                sw, sb = self.scales(cfg)
                tape.append((patches, info))
                x = sw * _matmul(patches, cfg["W"]) + (sb * cfg["bias"] if "bias" in cfg else 0.0)
            elif kind == "dense":
                self._draw(cfg, x.shape[-1])
                sw, sb = self.scales(cfg)
                tape.append(x)
                x = sw * x @ cfg["W"] + (sb * cfg["bias"] if "bias" in cfg else 0.0)
            elif kind in ACTIVATIONS:
                tape.append(x)
                x = ACTIVATIONS[kind][0](x)
            elif kind in ("avg_pool", "sum_pool"):
                k, s = cfg["k"], cfg.get("s", cfg["k"])
                patches, info = im2col(x, k, s, "valid")
                n, ho, wo, _ = patches.shape
                tape.append((info, x.shape[-1]))
                x = patches.reshape(n, ho, wo, k * k, x.shape[-1]).sum(axis=3) / (k * k if kind == "avg_pool" else 1)
            elif kind == "gap":
                tape.append(x.shape)
                x = x.mean(axis=(1, 2))
            elif kind == "flatten":
                tape.append(x.shape)
                x = x.reshape(x.shape[0], -1)
            elif kind == "residual":
                y, inner = self.forward(cfg["body"], x)
                tape.append(inner)
                x = x + cfg["scale"] * y
            elif kind == "concat":
                outs = [self.forward(b, x) for b in cfg["branches"]]
                tape.append([t for _, t in outs])
                x = np.concatenate([y for y, _ in outs], axis=-1)
            elif kind == "prod":
                outs = [self.forward(b, x) for b in cfg["branches"]]
                tape.append(outs)
                x = np.prod([y for y, _ in outs], axis=0)
        return x, tape

    # -- backward: pulls g back and adds each parameter layer's NTK share to ``ntk``
    def backward(self, layers, tape, g, ntk):
        for (kind, cfg), saved in zip(reversed(layers), reversed(tape)):
            if kind == "conv":
                patches, info = saved
                sw, sb = self.scales(cfg)
                n = g.shape[0]
                a = patches.reshape(n, -1, patches.shape[-1])
                d = g.reshape(n, -1, g.shape[-1])
                p = a.shape[1]
                pa = _matmul(a, a.reshape(n * p, -1).T).reshape(n, p, n, p)  # patch(x, p)·patch(x', p')
                dd = _matmul(d, d.reshape(n * p, -1).T).reshape(n, p, n, p)  # δ(x, p)·δ(x', p')
                ntk += sw**2 * (pa * dd).sum(axis=(1, 3))
                if "bias" in cfg:
                    ntk += sb**2 * dd.sum(axis=(1, 3))
                g = col2im(sw * _matmul(g, cfg["W"].T), cfg["k"], cfg.get("s", 1), cfg.get("pad", "valid"), info)
            elif kind == "dense":
                sw, sb = self.scales(cfg)
                ntk += sw**2 * (saved @ saved.T) * (g @ g.T) + (sb**2 * (g @ g.T) if "bias" in cfg else 0.0)
                g = sw * g @ cfg["W"].T
            elif kind in ACTIVATIONS:
                g = g * ACTIVATIONS[kind][1](saved)
            elif kind in ("avg_pool", "sum_pool"):
                info, c = saved
                k = cfg["k"]
                n, ho, wo, _ = g.shape
                scale = 1.0 / (k * k) if kind == "avg_pool" else 1.0
                spread = np.broadcast_to(g[:, :, :, None, :] * scale, (n, ho, wo, k * k, c)).reshape(n, ho, wo, -1)
                g = col2im(spread, k, cfg.get("s", k), "valid", info)
            elif kind == "gap":
                shape = saved
                g = np.broadcast_to(g[:, None, None, :] / (shape[1] * shape[2]), shape)
            elif kind == "flatten":
                g = g.reshape(saved)
            elif kind == "residual":
                g = g + self.backward(cfg["body"], saved, cfg["scale"] * g, ntk)
            elif kind == "concat":
                total, at = 0.0, 0
                for branch, inner, width in zip(cfg["branches"], saved, cfg["widths"]):
                    total = total + self.backward(branch, inner, g[..., at:at + width], ntk)
                    at += width
                g = total
            elif kind == "prod":  # ∂(Π y_j)/∂y_i = Π_{j≠i} y_j
                ys = [y for y, _ in saved]
                total = 0.0
                for i, (branch, (_, inner)) in enumerate(zip(cfg["branches"], saved)):
                    others = np.prod([y for j, y in enumerate(ys) if j != i], axis=0)
                    total = total + self.backward(branch, inner, g * others, ntk)
                g = total
        return g

    def kernels(self, x):
        """(NNGP estimate averaged over the readout, empirical NTK) on the rows of x (one output)."""
        *hidden, (kind, readout) = self.layers
        assert kind == "dense" and readout["c"] == 1
        phi, tape = self.forward(hidden, x)
        self._draw(readout, phi.shape[1])
        sw, sb = self.scales(readout)
        w2 = readout.get("w", 1.0) ** 2 / phi.shape[1]
        nngp = w2 * phi @ phi.T + (readout["b"] ** 2 if readout.get("b") is not None else 0.0)
        ntk = np.zeros((len(x), len(x)))
        ntk += sw**2 * phi @ phi.T + (sb**2 if "bias" in readout else 0.0)  # the readout's own share
        g = sw * readout["W"][:, 0][None, :].repeat(len(x), axis=0)  # ∂f/∂φ
        self.backward(hidden, tape, g, ntk)
        return nngp, ntk


# ---------------------------------------------------------------------- architectures (finite | analytic)
W = WIDTH
ARCHITECTURES = {
    "cnn-flatten": (
        [("conv", dict(c=W, k=3, pad="same", w=1.4, b=0.1)), ("relu", {}),
         ("conv", dict(c=W, k=2, s=2, w=1.3)), ("erf", {}), ("flatten", {}), ("dense", dict(c=1, w=1.2, b=0.2))],
        f"""conv({W}, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
            conv({W}, kernel = 2, stride = 2, w_std = 1.3); erf; flatten; dense(1, w_std = 1.2, b_std = 0.2)"""),
    "cnn-pool-gap": (
        [("conv", dict(c=W, k=3, pad="circular", w=1.4, b=0.1)), ("relu", {}), ("avg_pool", dict(k=2, s=1)),
         ("conv", dict(c=W, k=3, pad="same")), ("relu", {}), ("gap", {}), ("dense", dict(c=1))],
        f"""conv({W}, kernel = 3, padding = circular, w_std = 1.4, b_std = 0.1); relu; avg_pool(2, stride = 1)
            conv({W}, kernel = 3, padding = same); relu; global_avg_pool; dense(1)"""),
    "resnet-concat": (
        [("conv", dict(c=W, k=3, pad="same", w=1.4, b=0.1)),
         ("residual", dict(scale=0.5, body=[("relu", {}), ("conv", dict(c=W, k=3, pad="same", w=1.3, b=0.2))])),
         ("concat", dict(branches=[[("conv", dict(c=3 * W // 2, k=1)), ("relu", {})],
                                   [("conv", dict(c=W, k=3, pad="same")), ("erf", {})]])),
         ("gap", {}), ("dense", dict(c=1, b=0.1))],
        f"""conv({W}, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
            residual(scale = 0.5) {{ relu; conv({W}, kernel = 3, padding = same, w_std = 1.3, b_std = 0.2) }}
            parallel(merge = concat) {{ conv({3 * W // 2}, kernel = 1); relu }} {{ conv({W}, kernel = 3, padding = same); erf }}
            global_avg_pool; dense(1, b_std = 0.1)"""),
    "prod-sum-pool": (
        [("conv", dict(c=W, k=3, pad="same", w=1.3, b=0.1)),
         ("prod", dict(branches=[[("conv", dict(c=W, k=1, b=0.2))], [("relu", {}), ("conv", dict(c=W, k=1, w=1.2))]])),
         ("sum_pool", dict(k=2, s=1)), ("conv", dict(c=W, k=2, s=2)), ("relu", {}), ("flatten", {}), ("dense", dict(c=1))],
        f"""conv({W}, kernel = 3, padding = same, w_std = 1.3, b_std = 0.1)
            parallel(merge = prod) {{ conv({W}, kernel = 1, b_std = 0.2) }} {{ relu; conv({W}, kernel = 1, w_std = 1.2) }}
            sum_pool(2, stride = 1); conv({W}, kernel = 2, stride = 2); relu; flatten; dense(1)"""),
    "standard-cnn": (
        [("conv", dict(c=W, k=3, pad="same", w=1.4, b=0.1)), ("relu", {}),
         ("conv", dict(c=W, k=3, pad="same", w=1.1, b=0.3)), ("relu", {}), ("flatten", {}), ("dense", dict(c=1, w=1.0))],
        f"""conv({W}, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
            conv({W}, kernel = 3, padding = same, w_std = 1.1, b_std = 0.3); relu; flatten; dense(1)"""),
}
PARAM = {"standard-cnn": "standard"}
SHAPE = (5, 5, 2)


@functools.lru_cache(maxsize=None)
def monte_carlo(name, draws, seed):
    layers, _ = ARCHITECTURES[name]
    x = np.random.default_rng(100).standard_normal((4,) + SHAPE)
    rng = np.random.default_rng(seed)
    samples = [Draw(layers, SHAPE[-1], rng, PARAM.get(name, "ntk")).kernels(x) for _ in range(draws)]
    nngp, ntk = (np.array([s[i] for s in samples]) for i in (0, 1))
    analytic = ntkdsl.loads(f"network {name.replace('-', '_')}(input = [5, 5, 2], parameterization = "
                            f"{PARAM.get(name, 'ntk')}) {{ {ARCHITECTURES[name][1]} }}").kernels(x)
    return (nngp, analytic.nngp), (ntk, analytic.ntk)


def check(samples, analytic):
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    bound = 4 * se + 4 / WIDTH * np.max(np.abs(analytic))
    assert np.all(np.abs(mean - analytic) <= bound), (np.max(np.abs(mean - analytic) / (se + 1e-300)), mean, analytic)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_finite_networks_converge_to_the_analytic_kernels(name):
    nngp, ntk = monte_carlo(name, draws=16, seed=1)
    check(*nngp)
    check(*ntk)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_finite_networks_converge_to_the_analytic_kernels_many_draws(name):
    nngp, ntk = monte_carlo(name, draws=100, seed=2)
    check(*nngp)
    check(*ntk)


def test_the_oracle_finds_a_wrong_convention():
    # power check: the same draws against the kernel of the network without the residual's
    # scale (x + f(x) instead of x + f(x)/2) must fail the same tolerance
    nngp, ntk = monte_carlo("resnet-concat", draws=16, seed=1)
    wrong = ntkdsl.loads(f"""network w(input = [5, 5, 2]) {{
        conv({W}, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
        residual(scale = 1) {{ relu; conv({W}, kernel = 3, padding = same, w_std = 1.3, b_std = 0.2) }}
        parallel(merge = concat) {{ conv({3 * W // 2}, kernel = 1); relu }} {{ conv({W}, kernel = 3, padding = same); erf }}
        global_avg_pool; dense(1, b_std = 0.1) }}""").kernels(np.random.default_rng(100).standard_normal((4,) + SHAPE))
    with pytest.raises(AssertionError):
        check(ntk[0], wrong.ntk)
