"""Accuracy and cost of ntkdsl's numerical duals (Mehler series, quadrature fallback) against mpmath
and neural-tangents' ``ElementwiseNumerical(fn, deg=25)``.

    python benchmarks/numerical_duals.py reference   # the mpmath table of tests/data/numerical_duals_mpmath.json (~1 h)
    python benchmarks/numerical_duals.py accuracy    # single entries against that table
    python benchmarks/numerical_duals.py fallback    # share of entries integrated by quadrature, depth 1-3
    python benchmarks/numerical_duals.py speed       # depth-3 FCNs: ntkdsl (NumPy, numba) and neural-tangents, one run
    python benchmarks/numerical_duals.py speed --no-nt   # the same without neural-tangents (NumPy against numba only)

The reference is nested composite Gauss–Legendre in mpmath at 25 digits (panels every 2 units of z
and at the preimages of σ-arguments 0, ±1, ±3, ±10, ±30), accepted where 12 and 16 nodes a panel
agree (the table records that difference); it shares no code with ntkdsl. Errors are
|K − K_ref| / √(E[σ(u)²]·E[σ(v)²]): relative to the Cauchy–Schwarz scale of the entry (relative error
alone means nothing where K ≈ 0). ``speed`` writes benchmarks/numerical_duals.json; neural-tangents
runs in its own environment, ``.bench-nt`` at the repository root (a virtualenv with jax and
neural-tangents 0.6.5: ``python -m venv .bench-nt && .bench-nt/bin/pip install neural-tangents``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time

import mpmath
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "..", "tests", "data", "numerical_duals_mpmath.json")
MARKS = (0, 1, -1, 3, -3, 10, -10, 30, -30)


def _sig(x):
    return 1 / (1 + mpmath.exp(-x))


MP = {  # σ and σ' in mpmath
    "tanh": mpmath.tanh, "dtanh": lambda x: 1 - mpmath.tanh(x) ** 2,
    "silu": lambda x: x * _sig(x), "dsilu": lambda x: _sig(x) * (1 + x * (1 - _sig(x))),
    "softplus": lambda x: mpmath.log(1 + mpmath.exp(x)), "dsoftplus": _sig,
}
_GL = {}


def _gauss_legendre(n):
    """Gauss–Legendre nodes and weights on [−1, 1] in mpmath (Newton on the three-term recurrence)."""
    if n not in _GL:
        xs, ws = [], []
        for k in range(1, n + 1):
            t = mpmath.cos(mpmath.pi * (k - mpmath.mpf(1) / 4) / (n + mpmath.mpf(1) / 2))
            for _ in range(100):
                p0, p1 = mpmath.mpf(1), t
                for j in range(2, n + 1):
                    p0, p1 = p1, ((2 * j - 1) * t * p1 - (j - 1) * p0) / j
                dp = n * (t * p1 - p0) / (t * t - 1)
                step = p1 / dp
                t -= step
                if abs(step) < mpmath.mpf(10) ** (-mpmath.mp.dps - 2):
                    break
            xs.append(t)
            ws.append(2 / ((1 - t * t) * dp * dp))
        _GL[n] = (xs, ws)
    return _GL[n]


def _panels(cuts, n, tail=9):
    edges = sorted({mpmath.mpf(e) for e in range(-tail, tail + 1, 2)} | {t for t in cuts if -tail < t < tail})
    xs, ws = _gauss_legendre(n)
    return [(a + (b - a) / 2 * (x + 1), (b - a) / 2 * w) for a, b in itertools.pairwise(edges) for x, w in zip(xs, ws)]


def mp_expectation(f, g, q1, q2, c, n=16):
    """E[f(u)·g(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]) in mpmath (25 digits): u = √q1·z1,
    v = √q2·(ρ·z1 + √(1 − ρ²)·z2), nested composite Gauss–Legendre in z1 and z2 on [−9, 9]."""
    with mpmath.workdps(25):
        q1, q2, c = mpmath.mpf(q1), mpmath.mpf(q2), mpmath.mpf(c)
        r1, r2 = mpmath.sqrt(q1), mpmath.sqrt(q2)
        rho = max(-1, min(1, c / (r1 * r2))) if q1 * q2 > 0 else mpmath.mpf(0)
        s = r2 * mpmath.sqrt(1 - rho * rho)
        marks = [mpmath.mpf(m) for m in MARKS]
        cuts = ([m / r1 for m in marks] if r1 > 0 else []) + ([m / (r2 * rho) for m in marks] if r2 * rho != 0 else [])
        total = mpmath.mpf(0)
        for z1, w1 in _panels(cuts, n):
            mu = r2 * rho * z1
            inner = g(mu) if s == 0 else mpmath.fsum(
                w2 * mpmath.exp(-z2 * z2 / 2) * g(mu + s * z2) for z2, w2 in _panels([(m - mu) / s for m in marks], n)
            ) / mpmath.sqrt(2 * mpmath.pi)
            total += w1 * mpmath.exp(-z1 * z1 / 2) * f(r1 * z1) * inner
        return float(total / mpmath.sqrt(2 * mpmath.pi))


def mp_network(act, x1, x2, depth=3, w_var=2.0, b_var=0.01):
    """NNGP and NTK of the depth-`depth` FCN (dense + act, then dense; NTK parameterization) at one
    pair of inputs, every layer's expectation by :func:`mp_expectation` (n = 12: agrees with n = 16
    to ~1e-14 on the table's entries)."""
    f, df = MP[act], MP["d" + act]
    q1, q2, c = (float(np.dot(a, b)) / len(x1) for a, b in ((x1, x1), (x2, x2), (x1, x2)))
    ntk = 0.0
    for _ in range(depth):
        q1, q2, c = w_var * q1 + b_var, w_var * q2 + b_var, w_var * c + b_var
        ntk = w_var * ntk + c
        kdot = mp_expectation(df, df, q1, q2, c, n=12)
        c = mp_expectation(f, f, q1, q2, c, n=12)
        q1, q2 = mp_expectation(f, f, q1, q1, q1, n=12), mp_expectation(f, f, q2, q2, q2, n=12)
        ntk *= kdot
    c = w_var * c + b_var
    return c, w_var * ntk + c


SAMPLE = ((0, 1), (2, 3), (5, 7), (0, 0))  # kernel entries compared with mp_network (as nt_numerical.SAMPLE)
ACTS = ("tanh", "silu", "softplus")


def network_source(act, depth=3):
    """The benchmark network as .ntk text (the same as nt_numerical.py builds with stax)."""
    body = f"    dense(512, w_std = sqrt(2), b_std = 0.1)\n    {act}\n" * depth
    return f"network fcn_{act}(input = 784) {{\n{body}    dense(1, w_std = sqrt(2), b_std = 0.1)\n}}\n"


def _errors(nngp, ntk, ref):
    return max(max(abs(a - b) / abs(b) for a, b in zip(got, ref[key][:len(SAMPLE)]))
               for got, key in ((nngp, "nngp"), (ntk, "ntk")))


def _timed(net, x, backend, reps):
    """The median of ``reps`` timed calls (after one on 8 points: module generation, numba's compile
    or disk-cache load), the last result, the load average before and after, and the first call's seconds."""
    t = time.perf_counter()
    net.kernels(x[:8], backend=backend)
    first = time.perf_counter() - t
    times, load = [], [os.getloadavg()[0]]
    for _ in range(reps):
        t = time.perf_counter()
        k = net.kernels(x, backend=backend)
        times.append(time.perf_counter() - t)
    load.append(os.getloadavg()[0])
    return float(np.median(times)), k, load, first


def _neural_tangents(act, n, reps, nt_rows):
    """neural-tangents' seconds for the N x N kernel (a strip of ``nt_rows`` rows scaled up when N > 500),
    its sample entries and load; None without its environment (.bench-nt)."""
    python = os.path.join(HERE, "..", ".bench-nt", "bin", "python")
    if not os.path.exists(python):
        return None
    strip = nt_rows if n > 500 else n
    cmd = [python, os.path.join(HERE, "nt_numerical.py"), act, str(n), str(reps), "250" if strip < n else "0", str(strip)]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    return float(np.median(out["times"])) * n / strip, strip, out


def speed(sizes, nt_rows, repeat, reference, out, with_nt=True):
    """Depth-3 FCNs: ntkdsl's NumPy module, its fused numba module and neural-tangents'
    ElementwiseNumerical(deg = 25), one after the other in this run; relative errors at SAMPLE
    against the mpmath network kernels."""
    import ntkdsl

    with open(reference) as fh:
        ref = json.load(fh)
    rows = []
    for act in ACTS:
        net = ntkdsl.loads(network_source(act))
        for n in sizes:
            x = np.random.default_rng(0).standard_normal((n, 784))
            reps = repeat if n <= 500 else 1  # neural-tangents takes minutes a call at N = 2000
            row = {"act": act, "n": n}
            for backend in ("numpy", "numba"):
                seconds, k, load, first = _timed(net, x, backend, reps)
                row.update({f"ntkdsl_{backend}_s": seconds, f"load_{backend}": load, f"first_call_{backend}_s": first,
                            f"ntkdsl_{backend}_error": _errors([k.nngp[i, j] for i, j in SAMPLE],
                                                               [k.ntk[i, j] for i, j in SAMPLE], ref[act])})
            row["numpy_over_numba"] = row["ntkdsl_numpy_s"] / row["ntkdsl_numba_s"]
            nt = _neural_tangents(act, n, reps, nt_rows) if with_nt else None
            line = (f"{act:9s} N={n:5d}  ntkdsl NumPy {row['ntkdsl_numpy_s']:7.2f} s (error {row['ntkdsl_numpy_error']:.1e})"
                    f"  numba {row['ntkdsl_numba_s']:7.2f} s (error {row['ntkdsl_numba_error']:.1e}, {row['numpy_over_numba']:.1f}x)")
            if nt is not None:
                nt_time, strip, nt_out = nt
                row.update({"nt_s": nt_time, "nt_measured_rows": strip, "load_nt": nt_out["load"],
                            "nt_error": _errors(nt_out["sample"]["nngp"][:len(SAMPLE)], nt_out["sample"]["ntk"][:len(SAMPLE)], ref[act]),
                            "speedup_numpy": nt_time / row["ntkdsl_numpy_s"], "speedup_numba": nt_time / row["ntkdsl_numba_s"]})
                line += (f"   neural-tangents {nt_time:8.1f} s{'' if strip == n else f' (x{n // strip} of a {strip} x {n} strip)'}"
                         f" (error {row['nt_error']:.1e})   NT/NumPy {row['speedup_numpy']:5.1f}x   NT/numba {row['speedup_numba']:5.1f}x")
            rows.append(row)
            print(line + f"   load {row['load_numpy'][0]:.1f}/{row['load_numba'][0]:.1f}", flush=True)
            with open(out, "w") as fh:
                json.dump({"rows": rows, "command": " ".join(sys.argv)}, fh, indent=1)
    return rows


def sample_entries(rng, count):
    """Random (q1, q2, c): variances log-uniform in [1e-6, 1e6] (a quarter of them nearly equal), ρ
    uniform in [−1, 1], in [−0.5, 0.5], in [0.8, 1], within 1e-8…1e-1 of ±1, or exactly ±1; some
    exact diagonals q1 = q2 = c."""
    out = []
    for k in range(count):
        q1, q2 = 10 ** rng.uniform(-6, 6, 2)
        if k % 4 == 0:
            q2 = q1 * 10 ** rng.uniform(-0.3, 0.3)
        kind = k % 5
        rho = (rng.uniform(-1, 1) if kind == 0 else rng.choice([-1, 1]) * (1 - 10 ** rng.uniform(-8, -1)) if kind == 1
               else float(rng.choice([-1.0, 1.0])) if kind == 2 else rng.uniform(0.8, 1) if kind == 3 else rng.uniform(-0.5, 0.5))
        if k % 7 == 3:
            q1 = q2 = 10 ** rng.uniform(-6, 6)
            if k % 2:
                rho = 1.0
        out.append((float(q1), float(q2), float(rho * math.sqrt(q1) * math.sqrt(q2))))
    return out


def make_reference(path, count=14):
    """The mpmath table of the tests: for each σ and σ', ``count`` entries of :func:`sample_entries`
    (seed 1: tanh, dtanh, silu; seed 2: dsilu, softplus, dsoftplus), each with the difference between
    12 and 16 nodes a panel (``check``) and the Cauchy–Schwarz scale √(E[σ(u)²]·E[σ(v)²])."""
    rows = []
    for seed, names in ((1, ("tanh", "dtanh", "silu")), (2, ("dsilu", "softplus", "dsoftplus"))):
        rng = np.random.default_rng(seed)
        for name in names:
            f = MP[name]
            for q1, q2, c in sample_entries(rng, count):
                coarse, value = mp_expectation(f, f, q1, q2, c, n=12), mp_expectation(f, f, q1, q2, c, n=16)
                scale = math.sqrt(mp_expectation(f, f, q1, q1, q1) * mp_expectation(f, f, q2, q2, q2))
                rows.append({"sigma": name, "q1": q1, "q2": q2, "c": c, "value": value,
                             "check": abs(coarse - value) / scale, "scale": scale})
                print(json.dumps(rows[-1]), flush=True)
    with open(path, "w") as fh:
        json.dump({"about": "E[σ(u)σ(v)] by benchmarks/numerical_duals.py reference (mpmath, 25 digits)", "rows": rows}, fh, indent=1)


def accuracy(path):
    """Worst error per σ of the Mehler evaluator and of the 2-D quadrature against the table."""
    from ntkdsl.arraycode.mehler import mehler_expectations
    from ntkdsl.arraycode.support import gaussian_expectations

    def sig(x):
        return 0.5 * (1 + np.tanh(x / 2))

    funcs = {"tanh": np.tanh, "dtanh": lambda x: 1 - np.tanh(x) ** 2, "silu": lambda x: x * sig(x),
             "dsilu": lambda x: sig(x) * (1 + x * (1 - sig(x))), "softplus": lambda x: np.logaddexp(0, x), "dsoftplus": sig}
    with open(path) as fh:
        rows = json.load(fh)["rows"]
    result = {}
    for name, f in funcs.items():
        rs = [r for r in rows if r["sigma"] == name]
        args = [np.array([r[k] for r in rs]) for k in ("q1", "q2", "c")]
        scale, ref = np.array([r["scale"] for r in rs]), np.array([r["value"] for r in rs])
        result[name] = {"entries": len(rs),
                        "mehler": float(np.max(np.abs(mehler_expectations(((f, f),), *args)[0] - ref) / scale)),
                        "quadrature": float(np.max(np.abs(gaussian_expectations(((f, f),), *args)[0] - ref) / scale))}
        worst = result[name]
        print(f"{name:10s} {len(rs)} entries   worst error: Mehler {worst['mehler']:.1e}   2-D quadrature {worst['quadrature']:.1e}")
    return result


def _counting(fallback, counts):
    def counted(pairs, q1, *rest):
        counts[-1] += q1.size
        return fallback(pairs, q1, *rest)

    return counted


def _per_layer(evaluate, counts):
    def layer(pairs, q1, q2, c, kinks=()):
        if np.ndim(c) == 2 and min(np.shape(c)) > 1:  # a layer's kernel (not its variances): a new count
            counts.append(0)
        return evaluate(pairs, q1, q2, c, kinks)

    return layer


def fallback_share(n=1000):
    """Entries of each numerical layer that the Mehler evaluator integrates by quadrature, for random
    Gaussian inputs (d = 784) and the scikit-learn digits (8 x 8 images scaled to [0, 1])."""
    from sklearn.datasets import load_digits

    import ntkdsl
    from ntkdsl.arraycode.loader import load_module

    out = {}
    for act in ACTS:
        for data in ("gaussian", "digits"):
            x = np.random.default_rng(0).standard_normal((n, 784)) if data == "gaussian" else load_digits().data[:n] / 16
            module = load_module(ntkdsl.loads(network_source(act).replace("784", str(x.shape[1]))).to_python(), act)
            counts = []
            module._fallback = _counting(module._fallback, counts)
            module.mehler_expectations = _per_layer(module.mehler_expectations, counts)
            module.kernels(x)
            out[f"{act}/{data}"] = [c / (n * n) for c in counts]
            print(f"{act:9s} {data:9s} share of entries by quadrature, layers 1-3: " + ", ".join(f"{c / n / n:.1e}" for c in counts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    sp.add_argument("--nt-rows", type=int, default=250, help="N > 500: time neural-tangents on a strip of this many rows")
    sp.add_argument("--repeat", type=int, default=3, help="timed calls of each tool at N <= 500 (median); 1 above")
    sp.add_argument("--reference", default=os.path.join(HERE, "results", "numerical_duals_network_mpmath.json"))
    sp.add_argument("--out", default=os.path.join(HERE, "numerical_duals.json"))
    sp.add_argument("--no-nt", action="store_true", help="leave neural-tangents out (NumPy against numba only)")
    sub.add_parser("reference")
    sub.add_parser("accuracy")
    sub.add_parser("fallback")
    args = ap.parse_args()
    if args.what == "speed":
        speed(args.sizes, args.nt_rows, args.repeat, args.reference, args.out, with_nt=not args.no_nt)
    elif args.what == "reference":
        make_reference(TABLE)
    else:
        print(json.dumps(accuracy(TABLE) if args.what == "accuracy" else fallback_share(), indent=1))


if __name__ == "__main__":
    main()
