"""Random image and signal architectures: ntkdsl against neural-tangents (float64), many at once.

Draws random networks (1-D, 2-D, 3-D inputs; conv with random filters, strides and all paddings in
either parameterization; avg/sum pooling with every padding; layer norm; residual blocks with
scales; parallel sum, concat and prod of 2–3 branches; flatten or global pooling), writes each as
.ntk text and as neural-tangents ``stax`` layers, and compares the kernels between 3 and 2 random
inputs. Also checks, on ntkdsl's side alone: auto vs full layout, exact symmetry and PSD of the
self-kernel, tiled vs untiled (1e-13). Residual scales are ``DotGeneral(rhs=s)`` in stax.

``sign`` is left out by default: neural-tangents 0.6.5's Sign sets its whole cov1 to 1, so it
differs from ntkdsl (and from the Gaussian expectation) wherever pooling follows sign
(``--with-sign`` shows it).

Measured (seeds 0–200 with --with-sign, 133 of them without sign, and 200–450 without: 383
networks): all agree to ≤ 2.9e-15 relative (median 4e-16) but one at 2e-10, a one-channel input
whose pixels reach ρ = ±1 exactly, where θ (and the kinked abs's K̇) amplifies round-off to √eps
in both tools (auto vs full layout differ there as much).

Run (neural-tangents in its own environment, .bench-nt):

    python benchmarks/neural_tangents_random_architectures.py make 0 200 /tmp/cases.json
    .bench-nt/bin/python benchmarks/neural_tangents_random_architectures.py nt /tmp/cases.json /tmp/nt.json
    python benchmarks/neural_tangents_random_architectures.py compare /tmp/cases.json /tmp/nt.json
"""

import json
import random
import sys

ACTS = [("relu", "s.Relu()"), ("erf", "s.Erf()"), ("gelu", "s.Gelu()"), ("abs", "s.Abs()")]
SIGN = ("sign", "s.Sign()")


def geom(n, k, st, pad):
    if pad == "valid":
        return (n - k) // st + 1
    return -(-n // st)


class G:
    def __init__(self, rng, dims, param):
        self.r, self.dims, self.param = rng, dims, param

    def tup(self, vals):
        return str(vals[0]) if len(set(vals)) == 1 and self.r.random() < 0.5 else "(" + ", ".join(map(str, vals)) + ")"

    def conv(self, shape, c=None, same=False):
        r = self.r
        c = c or r.choice([3, 4, 6])
        sp = shape[:-1]
        k = [r.choice([1, 2, 3]) for _ in sp]
        st = [1] * len(sp) if same else [r.choice([1, 1, 2]) for _ in sp]
        pad = "same" if same and r.random() < 0.6 else ("circular" if same else r.choice(["valid", "same", "circular"]))
        k = [min(kk, n) for kk, n in zip(k, sp)]
        out = [geom(n, kk, s_, pad) for n, kk, s_ in zip(sp, k, st)]
        if min(out) < 1:
            return None
        w = r.choice([1, 1.3, 0.8])
        b = r.choice([None, 0.1, 0.3])
        par = self.param if r.random() < 0.8 else ("standard" if self.param == "ntk" else "ntk")
        args = f"conv({c}, kernel = {self.tup(k)}, stride = {self.tup(st)}, padding = {pad}, w_std = {w}"
        args += (f", b_std = {b}" if b is not None else "") + (f", parameterization = {par}" if par != self.param else "") + ")"
        stax = (
            f"s.Conv({c}, {tuple(k)}, strides={tuple(st)}, padding='{pad.upper()}', W_std={w}, b_std={b}, "
            f"parameterization='{par}')"
        )
        return args, stax, tuple(out) + (c,)

    def pool(self, shape):
        r = self.r
        sp = shape[:-1]
        win = [r.choice([1, 2, 3]) for _ in sp]
        win = [min(w, n) for w, n in zip(win, sp)]
        st = [r.choice([1, w]) for w in win]
        pad = r.choice(["valid", "same", "circular"])
        out = [geom(n, w, s_, pad) for n, w, s_ in zip(sp, win, st)]
        if min(out) < 1:
            return None
        mode = r.choice(["avg", "sum"])
        text = f"{mode}_pool({self.tup(win)}, stride = {self.tup(st)}, padding = {pad})"
        stax = f"s.{'Avg' if mode == 'avg' else 'Sum'}Pool({tuple(win)}, {tuple(st)}, padding='{pad.upper()}')"
        return text, stax, tuple(out) + (shape[-1],)

    def act(self):
        return self.r.choice(self.acts)

    def body(self, shape, depth=0, n=None):
        """A sequence starting from a Gaussian state; returns (texts, staxes, shape, gaussian)."""
        r = self.r
        texts, staxes, gauss = [], [], True
        for _ in range(n or r.randint(2, 5)):
            choice = r.random()
            if gauss and choice < 0.3:
                a = self.act()
                texts.append(a[0])
                staxes.append(a[1])
                gauss = False
            elif choice < 0.5:
                c = self.conv(shape)
                if c:
                    texts.append(c[0])
                    staxes.append(c[1])
                    shape = c[2]
                    gauss = True
            elif choice < 0.62:
                p = self.pool(shape)
                if p:
                    texts.append(p[0])
                    staxes.append(p[1])
                    shape = p[2]
            elif choice < 0.7 and gauss:
                eps = r.choice([None, 0.01])
                texts.append("layer_norm" if eps is None else f"layer_norm(eps = {eps})")
                staxes.append("s.LayerNorm()" if eps is None else f"s.LayerNorm(eps={eps})")
            elif choice < 0.8 and depth < 2 and gauss:
                # residual { act; conv(same shape) } with a scale
                a = self.act()
                c = self.conv(shape, c=shape[-1], same=True)
                if c and c[2] == shape:
                    sc = r.choice([1, 0.5])
                    texts.append(f"residual(scale = {sc}) {{ {a[0]}; {c[0]} }}")
                    staxes.append(
                        f"s.FanOut(2), s.parallel(s.Identity(), s.serial({a[1]}, {c[1]}, s.DotGeneral(rhs={sc}))), s.FanInSum()"
                    )
            elif depth < 2:
                merge = r.choice(["sum", "concat", "prod"])
                brs = []
                for i in range(r.choice([2, 2, 3])):
                    cc = shape[-1] if merge != "concat" else r.choice([2, 5])
                    lead = [] if (r.random() < 0.5 or not gauss) else [self.act()]
                    c = self.conv(shape, c=cc, same=True)
                    if not c:
                        break
                    brs.append(([x[0] for x in lead] + [c[0]], [x[1] for x in lead] + [c[1]], c[2]))
                if len(brs) < 2 or len({b[2][:-1] for b in brs}) > 1 or (merge != "concat" and len({b[2] for b in brs}) > 1):
                    continue
                texts.append(f"parallel(merge = {merge}) " + " ".join("{ " + "; ".join(b[0]) + " }" for b in brs))
                staxes.append(
                    f"s.FanOut({len(brs)}), s.parallel("
                    + ", ".join("s.serial(" + ", ".join(b[1]) + ")" for b in brs)
                    + f"), s.FanIn{ {'sum': 'Sum', 'concat': 'Concat', 'prod': 'Prod'}[merge] }()"
                )
                shape = brs[0][2][:-1] + (sum(b[2][-1] for b in brs) if merge == "concat" else brs[0][2][-1],)
                gauss = merge == "sum"
        return texts, staxes, shape, gauss


def make(seed, with_sign=False):
    r = random.Random(seed)
    dims = r.choice([1, 2, 2, 3])
    sizes = {
        1: lambda: [r.randint(3, 9)],
        2: lambda: [r.randint(2, 6), r.randint(2, 6)],
        3: lambda: [r.randint(2, 4) for _ in range(3)],
    }[dims]()
    shape = tuple(sizes) + (r.randint(1, 3),)
    param = r.choice(["ntk", "ntk", "standard"])
    g = G(r, dims, param)
    g.acts = ACTS + ([SIGN] if with_sign else [])
    c = g.conv(shape)
    while c is None:
        c = g.conv(shape)
    texts, staxes, shp, gauss = g.body(c[2])
    texts, staxes = [c[0]] + texts, [c[1]] + staxes
    if not gauss and r.random() < 0.5:
        cc = g.conv(shp, same=True)
        if cc:
            texts.append(cc[0])
            staxes.append(cc[1])
            gauss = True
    if gauss and r.random() < 0.6:
        a = g.act()
        texts.append(a[0])
        staxes.append(a[1])
    ro = r.choice(["flatten", "global_avg_pool", "global_sum_pool"])
    texts.append(ro)
    staxes.append({"flatten": "s.Flatten()", "global_avg_pool": "s.GlobalAvgPool()", "global_sum_pool": "s.GlobalSumPool()"}[ro])
    texts.append("dense(2, b_std = 0.1)")
    staxes.append(f"s.Dense(2, b_std=0.1, parameterization='{param}')")
    spec = f"network f{seed}(input = {list(shape)}, parameterization = {param}) {{\n    " + "\n    ".join(texts) + "\n}"
    return {"seed": seed, "spec": spec, "stax": "[" + ", ".join(staxes) + "]", "shape": shape}


def inputs(case):
    import numpy as np

    rng = np.random.default_rng(case["seed"])
    return rng.standard_normal((3,) + tuple(case["shape"])), rng.standard_normal((2,) + tuple(case["shape"]))


def run_nt(cases_path, out_path):
    """neural-tangents' kernels of every case (run with the .bench-nt interpreter)."""
    import warnings

    warnings.filterwarnings("ignore")
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from neural_tangents import stax as s  # noqa: F401 - the layer sources name it

    out = {}
    for case in json.load(open(cases_path)):
        x1, x2 = inputs(case)
        try:
            k = s.serial(*eval(case["stax"]))[2](x1, x2, ("nngp", "ntk"))  # noqa: S307 - our own generated text
            out[case["seed"]] = {"nngp": np.asarray(k.nngp).tolist(), "ntk": np.asarray(k.ntk).tolist()}
        except Exception as exc:  # noqa: BLE001 - reported per case
            out[case["seed"]] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    json.dump(out, open(out_path, "w"))


def compare(cases_path, nt_path):
    import numpy as np

    import ntkdsl

    ref = json.load(open(nt_path))
    worst = []
    for case in json.load(open(cases_path)):
        seed, r = case["seed"], ref.get(str(case["seed"]))
        net = ntkdsl.loads(case["spec"])
        x1, x2 = inputs(case)
        k = net.kernels(x1, x2)
        rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
        if r is None or "error" in r:
            print(seed, "neural-tangents:", None if r is None else r["error"])
        else:
            e = max(rel(k.nngp, np.array(r["nngp"])), rel(k.ntk, np.array(r["ntk"])))
            worst.append((e, seed))
            if e > 1e-12:
                print(seed, f"differs from neural-tangents by {e:.2e}:\n{case['spec']}")
        full = ntkdsl.loads(case["spec"], layout="full").kernels(x1, x2)
        if max(rel(full.nngp, k.nngp), rel(full.ntk, k.ntk)) > 1e-12:
            print(seed, "full and auto layouts differ", max(rel(full.nngp, k.nngp), rel(full.ntk, k.ntk)))
        x = np.concatenate([x1, x2, x1[:1], np.zeros_like(x1[:1])])
        whole, tiled = net.kernels(x), net.kernels(x, batch_size=2)
        for m, t in zip(whole, tiled):
            ev = np.linalg.eigvalsh(m)
            if not np.array_equal(m, m.T) or ev[0] < -1e-12 * abs(ev[-1]):
                print(seed, "self-kernel not exactly symmetric or not PSD")
            if rel(t, m) > 1e-13:
                print(seed, "tiled and untiled differ", rel(t, m))
    worst.sort()
    if worst:
        print(f"{len(worst)} networks compared; median {worst[len(worst) // 2][0]:.1e}, largest", worst[-3:])


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "make":
        first, last, path = int(args[0]), int(args[1]), args[2]
        json.dump([make(s, "--with-sign" in args) for s in range(first, last)], open(path, "w"))
    elif mode == "nt":
        run_nt(*args[:2])
    else:
        compare(*args[:2])
