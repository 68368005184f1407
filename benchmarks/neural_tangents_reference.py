"""Reference kernels of image, signal and residual networks from neural-tangents, for the test suite.

Writes ``tests/data/nt_architectures.json``: for each architecture its .ntk text, the inputs and
neural-tangents' (Novak et al. 2020) NNGP and NTK between them (float64, cross kernels x1 x x2, so
no self pair enters: there neural-tangents' arccos loses ~1e-10 to round-off, ntkdsl's diagonal is
exact). ``tests/test_architectures.py`` compares ntkdsl's kernels with them. The neural-tangents
side is written here with its ``stax`` layers, independently of ntkdsl's spec text.

Left out on purpose: ``sign`` followed by pooling. neural-tangents 0.6.5's Sign sets its whole
cov1 to 1, right only on the pixel diagonal (p = p'); the covariance of sign between two pixels of
one input is (2/π)·arcsin ρ(p, p') (test_hand_values_sign_then_pooling_uses_the_pixel_pair_covariance).
Every other combination agreed to ≤ 3e-15 on 383 random architectures
(benchmarks/neural_tangents_random_architectures.py).

Run (needs jax and neural-tangents, e.g. the virtual environment .bench-nt):

    .bench-nt/bin/python benchmarks/neural_tangents_reference.py [--out tests/data/nt_architectures.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ARCHITECTURES = {
    # name: (.ntk text, input shape, stax layers as a function of the stax module)
    "cnn-flatten": (
        """network n(input = [6, 6, 3]) {
            conv(16, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
            conv(16, kernel = 2, stride = 2, w_std = 1.3); erf
            flatten; dense(1, w_std = 1.2, b_std = 0.2) }""",
        (6, 6, 3),
        lambda s: [s.Conv(16, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), s.Relu(),
                   s.Conv(16, (2, 2), strides=(2, 2), padding="VALID", W_std=1.3), s.Erf(),
                   s.Flatten(), s.Dense(1, W_std=1.2, b_std=0.2)]),
    "cnn-gap-circular": (
        """network n(input = [6, 6, 3]) {
            conv(16, kernel = 3, padding = circular, w_std = 1.4, b_std = 0.1); relu
            conv(16, kernel = (3, 1), padding = same); relu; global_avg_pool; dense(1) }""",
        (6, 6, 3),
        lambda s: [s.Conv(16, (3, 3), padding="CIRCULAR", W_std=1.4, b_std=0.1), s.Relu(),
                   s.Conv(16, (3, 1), padding="SAME"), s.Relu(), s.GlobalAvgPool(), s.Dense(1)]),
    "resnet-concat": (
        """network n(input = [6, 6, 3]) {
            conv(16, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1)
            residual(scale = 0.5) { relu; conv(16, kernel = 3, padding = same, w_std = 1.3, b_std = 0.2) }
            avg_pool(2)
            parallel(merge = concat) { conv(24, kernel = 1); relu } { conv(8, kernel = 3, padding = same); erf }
            global_avg_pool; dense(1) }""",
        (6, 6, 3),
        lambda s: [s.Conv(16, (3, 3), padding="SAME", W_std=1.4, b_std=0.1),
                   s.FanOut(2), s.parallel(s.Identity(), s.serial(s.Relu(), s.Conv(16, (3, 3), padding="SAME",
                                                                                   W_std=0.5 * 1.3, b_std=0.5 * 0.2))),
                   s.FanInSum(), s.AvgPool((2, 2), (2, 2)),
                   s.FanOut(2), s.parallel(s.serial(s.Conv(24, (1, 1)), s.Relu()),
                                           s.serial(s.Conv(8, (3, 3), padding="SAME"), s.Erf())),
                   s.FanInConcat(), s.GlobalAvgPool(), s.Dense(1)]),
    "pooling-paddings": (
        """network n(input = [6, 6, 3]) {
            conv(8, kernel = 3, w_std = 1.5); relu; avg_pool(3, stride = 2, padding = same)
            conv(8, kernel = 2, padding = circular); relu; sum_pool(2, stride = 1); flatten; dense(1) }""",
        (6, 6, 3),
        lambda s: [s.Conv(8, (3, 3), padding="VALID", W_std=1.5), s.Relu(), s.AvgPool((3, 3), (2, 2), padding="SAME"),
                   s.Conv(8, (2, 2), padding="CIRCULAR"), s.Relu(), s.SumPool((2, 2), (1, 1), padding="VALID"),
                   s.Flatten(), s.Dense(1)]),
    "standard-parameterization": (
        """network n(input = [6, 6, 3], parameterization = standard) {
            conv(16, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1); relu
            conv(7, kernel = 3, padding = same, w_std = 1.1, b_std = 0.3); relu; flatten
            dense(5, w_std = 1.2, b_std = 0.1); relu; dense(1) }""",
        (6, 6, 3),
        lambda s: [s.Conv(16, (3, 3), padding="SAME", W_std=1.4, b_std=0.1, parameterization="standard"), s.Relu(),
                   s.Conv(7, (3, 3), padding="SAME", W_std=1.1, b_std=0.3, parameterization="standard"), s.Relu(),
                   s.Flatten(), s.Dense(5, W_std=1.2, b_std=0.1, parameterization="standard"), s.Relu(),
                   s.Dense(1, parameterization="standard")]),
    "layer-norm-product": (
        """network n(input = [6, 6, 3]) {
            conv(16, kernel = 3, padding = same); layer_norm
            parallel(merge = prod) { conv(8, kernel = 1) } { relu; conv(8, kernel = 3, padding = same) }
            global_avg_pool; dense(1) }""",
        (6, 6, 3),
        lambda s: [s.Conv(16, (3, 3), padding="SAME"), s.LayerNorm(),
                   s.FanOut(2), s.parallel(s.Conv(8, (1, 1)), s.serial(s.Relu(), s.Conv(8, (3, 3), padding="SAME"))),
                   s.FanInProd(), s.GlobalAvgPool(), s.Dense(1)]),
    "signal-1d": (
        """network n(input = [12, 3]) {
            conv(16, kernel = 3, padding = same, b_std = 0.1); relu; avg_pool(2)
            conv(16, kernel = 3, stride = 2); relu; global_sum_pool; dense(1) }""",
        (12, 3),
        lambda s: [s.Conv(16, (3,), padding="SAME", b_std=0.1), s.Relu(), s.AvgPool((2,), (2,)),
                   s.Conv(16, (3,), strides=(2,)), s.Relu(), s.GlobalSumPool(), s.Dense(1)]),
    "volume-3d": (
        """network n(input = [3, 4, 3, 2]) {
            conv(8, kernel = (2, 2, 2), padding = same, w_std = 1.3, b_std = 0.1); gelu
            conv(8, kernel = 2, padding = circular); relu; avg_pool((1, 2, 1)); flatten; dense(1) }""",
        (3, 4, 3, 2),
        lambda s: [s.Conv(8, (2, 2, 2), padding="SAME", W_std=1.3, b_std=0.1), s.Gelu(),
                   s.Conv(8, (2, 2, 2), padding="CIRCULAR"), s.Relu(), s.AvgPool((1, 2, 1), (1, 2, 1)),
                   s.Flatten(), s.Dense(1)]),
    # ---- rectangular filters and strides with every padding, in both
    # layouts; pools with circular and same padding; 1-D and 3-D with global pooling; the standard
    # parameterization through residual, concat, prod and pooling; layer norm in the diagonal
    # layout and on vectors; three-way products; residual scales as a constant scaling layer
    # (DotGeneral(rhs=s) is x -> s·x and keeps the output Gaussian), so neural-tangents builds
    # x + s·f(x) literally, in both parameterizations
    "strided-rect-flatten": (
        """network n(input = [7, 5, 2]) {
            conv(8, kernel = (3, 2), stride = (2, 1), padding = same, w_std = 1.2, b_std = 0.3); relu
            conv(8, kernel = (2, 3), stride = (1, 2), padding = circular, w_std = 1.1); erf
            conv(8, kernel = (2, 1), stride = (2, 1)); relu; flatten; dense(1, b_std = 0.1) }""",
        (7, 5, 2),
        lambda s: [s.Conv(8, (3, 2), strides=(2, 1), padding="SAME", W_std=1.2, b_std=0.3), s.Relu(),
                   s.Conv(8, (2, 3), strides=(1, 2), padding="CIRCULAR", W_std=1.1), s.Erf(),
                   s.Conv(8, (2, 1), strides=(2, 1), padding="VALID"), s.Relu(), s.Flatten(), s.Dense(1, b_std=0.1)]),
    "strided-rect-gap": (
        """network n(input = [7, 5, 2]) {
            conv(6, kernel = (3, 2), stride = (2, 1), padding = same, b_std = 0.2); relu
            conv(6, kernel = 3, stride = 2, padding = circular, w_std = 1.3); relu
            conv(6, kernel = (1, 2), stride = (1, 1)); gelu; global_avg_pool; dense(1) }""",
        (7, 5, 2),
        lambda s: [s.Conv(6, (3, 2), strides=(2, 1), padding="SAME", b_std=0.2), s.Relu(),
                   s.Conv(6, (3, 3), strides=(2, 2), padding="CIRCULAR", W_std=1.3), s.Relu(),
                   s.Conv(6, (1, 2), padding="VALID"), s.Gelu(), s.GlobalAvgPool(), s.Dense(1)]),
    "pool-circular-same": (
        """network n(input = [6, 7, 2]) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); relu; avg_pool(3, stride = 2, padding = circular)
            conv(8, kernel = 2); relu; sum_pool((2, 3), stride = (1, 2), padding = same); global_avg_pool; dense(1) }""",
        (6, 7, 2),
        lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.Relu(), s.AvgPool((3, 3), (2, 2), padding="CIRCULAR"),
                   s.Conv(8, (2, 2), padding="VALID"), s.Relu(), s.SumPool((2, 3), (1, 2), padding="SAME"),
                   s.GlobalAvgPool(), s.Dense(1)]),
    "signal-1d-circular": (
        """network n(input = [9, 2]) {
            conv(8, kernel = 4, stride = 2, padding = circular, b_std = 0.1); erf
            avg_pool(3, stride = 1, padding = same); conv(8, kernel = 2); relu; flatten; dense(1) }""",
        (9, 2),
        lambda s: [s.Conv(8, (4,), strides=(2,), padding="CIRCULAR", b_std=0.1), s.Erf(),
                   s.AvgPool((3,), (1,), padding="SAME"), s.Conv(8, (2,)), s.Relu(), s.Flatten(), s.Dense(1)]),
    "volume-3d-gap": (
        """network n(input = [3, 3, 4, 2]) {
            conv(6, kernel = (2, 3, 2), stride = (1, 1, 2), padding = same, b_std = 0.2); relu
            sum_pool(2, stride = 1, padding = circular); conv(6, kernel = 1, w_std = 1.2); relu
            global_avg_pool; dense(1) }""",
        (3, 3, 4, 2),
        lambda s: [s.Conv(6, (2, 3, 2), strides=(1, 1, 2), padding="SAME", b_std=0.2), s.Relu(),
                   s.SumPool((2, 2, 2), (1, 1, 1), padding="CIRCULAR"), s.Conv(6, (1, 1, 1), W_std=1.2), s.Relu(),
                   s.GlobalAvgPool(), s.Dense(1)]),
    "standard-resnet-concat": (
        """network n(input = [6, 6, 3], parameterization = standard) {
            conv(12, kernel = 3, padding = same, w_std = 1.3, b_std = 0.1)
            residual(scale = 0.5) { relu; conv(12, kernel = 3, padding = same, w_std = 1.2, b_std = 0.2) }
            avg_pool(2)
            parallel(merge = concat) { conv(8, kernel = 1); relu } { conv(4, kernel = 3, padding = same, b_std = 0.1); erf }
            global_avg_pool; dense(3, b_std = 0.1); relu; dense(1) }""",
        (6, 6, 3),
        lambda s: [s.Conv(12, (3, 3), padding="SAME", W_std=1.3, b_std=0.1, parameterization="standard"),
                   s.FanOut(2),
                   s.parallel(s.Identity(), s.serial(s.Relu(), s.Conv(12, (3, 3), padding="SAME", W_std=1.2, b_std=0.2,
                                                                       parameterization="standard"), s.DotGeneral(rhs=0.5))),
                   s.FanInSum(), s.AvgPool((2, 2), (2, 2)),
                   s.FanOut(2),
                   s.parallel(s.serial(s.Conv(8, (1, 1), parameterization="standard"), s.Relu()),
                              s.serial(s.Conv(4, (3, 3), padding="SAME", b_std=0.1, parameterization="standard"), s.Erf())),
                   s.FanInConcat(), s.GlobalAvgPool(), s.Dense(3, b_std=0.1, parameterization="standard"), s.Relu(),
                   s.Dense(1, parameterization="standard")]),
    "standard-layer-norm-prod-flatten": (
        """network n(input = [5, 4, 3], parameterization = standard) {
            conv(8, kernel = 3, padding = same, w_std = 1.5); layer_norm(eps = 0.1)
            parallel(merge = prod) { conv(6, kernel = 1, b_std = 0.2) } { relu; conv(6, kernel = 3, padding = same) }
            flatten; dense(1, b_std = 0) }""",
        (5, 4, 3),
        lambda s: [s.Conv(8, (3, 3), padding="SAME", W_std=1.5, parameterization="standard"), s.LayerNorm(eps=0.1),
                   s.FanOut(2), s.parallel(s.Conv(6, (1, 1), b_std=0.2, parameterization="standard"),
                                           s.serial(s.Relu(), s.Conv(6, (3, 3), padding="SAME", parameterization="standard"))),
                   s.FanInProd(), s.Flatten(), s.Dense(1, b_std=0., parameterization="standard")]),
    "layer-norm-diagonal-residual": (
        """network n(input = [6, 5, 2]) {
            conv(8, kernel = 3, w_std = 1.5, b_std = 0.5); layer_norm(eps = 0.01); relu
            conv(8, kernel = 2, padding = same)
            residual(scale = 0.7) { erf; conv(8, kernel = 3, padding = same, b_std = 0.1) }
            layer_norm; relu; flatten; dense(1) }""",
        (6, 5, 2),
        lambda s: [s.Conv(8, (3, 3), W_std=1.5, b_std=0.5), s.LayerNorm(eps=0.01), s.Relu(),
                   s.Conv(8, (2, 2), padding="SAME"),
                   s.FanOut(2), s.parallel(s.Identity(), s.serial(s.Erf(), s.Conv(8, (3, 3), padding="SAME", b_std=0.1),
                                                                  s.DotGeneral(rhs=0.7))),
                   s.FanInSum(), s.LayerNorm(), s.Relu(), s.Flatten(), s.Dense(1)]),
    "sum-then-prod-of-three": (
        """network n(input = [5, 5, 2]) {
            conv(6, kernel = 3, padding = same, b_std = 0.1)
            parallel(merge = sum) { identity } { erf; conv(6, kernel = 2, padding = same); avg_pool(3, stride = 1, padding = same) }
            parallel(merge = prod) { conv(6, kernel = 1) } { relu; conv(6, kernel = 1, w_std = 1.4) } {
                conv(6, kernel = 3, padding = same, b_std = 0.3) }
            global_sum_pool; dense(1) }""",
        (5, 5, 2),
        lambda s: [s.Conv(6, (3, 3), padding="SAME", b_std=0.1),
                   s.FanOut(2), s.parallel(s.Identity(), s.serial(s.Erf(), s.Conv(6, (2, 2), padding="SAME"),
                                                                  s.AvgPool((3, 3), (1, 1), padding="SAME"))),
                   s.FanInSum(),
                   s.FanOut(3), s.parallel(s.Conv(6, (1, 1)), s.serial(s.Relu(), s.Conv(6, (1, 1), W_std=1.4)),
                                           s.Conv(6, (3, 3), padding="SAME", b_std=0.3)),
                   s.FanInProd(), s.GlobalSumPool(), s.Dense(1)]),
    "mixed-parameterization-pools": (
        """network n(input = [6, 6, 2]) {
            conv(8, kernel = 3, padding = same, w_std = 1.4, b_std = 0.1, parameterization = standard); relu
            avg_pool(2, stride = 1, padding = same); conv(8, kernel = 2, stride = 2); relu
            global_sum_pool; dense(4, b_std = 0.2, parameterization = standard); erf; dense(1) }""",
        (6, 6, 2),
        lambda s: [s.Conv(8, (3, 3), padding="SAME", W_std=1.4, b_std=0.1, parameterization="standard"), s.Relu(),
                   s.AvgPool((2, 2), (1, 1), padding="SAME"), s.Conv(8, (2, 2), strides=(2, 2)), s.Relu(),
                   s.GlobalSumPool(), s.Dense(4, b_std=0.2, parameterization="standard"), s.Erf(), s.Dense(1)]),
    "vector-branches-layer-norm": (
        """network n(input = 5) {
            dense(8, b_std = 0.1); layer_norm
            parallel(merge = sum) { dense(8) } { relu; dense(8, w_std = 1.5) }; relu
            parallel(merge = concat) { dense(4); erf } { dense(12, b_std = 0.2) }; dense(1) }""",
        (5,),
        lambda s: [s.Dense(8, b_std=0.1), s.LayerNorm(),
                   s.FanOut(2), s.parallel(s.Dense(8), s.serial(s.Relu(), s.Dense(8, W_std=1.5))), s.FanInSum(), s.Relu(),
                   s.FanOut(2), s.parallel(s.serial(s.Dense(4), s.Erf()), s.Dense(12, b_std=0.2)), s.FanInConcat(),
                   s.Dense(1)]),
}


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/nt_architectures.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(20260101)
    out = {}
    for name, (text, shape, layers) in ARCHITECTURES.items():
        x1, x2 = rng.standard_normal((3,) + shape), rng.standard_normal((2,) + shape)
        _, _, kernel_fn = stax.serial(*layers(stax))
        k = kernel_fn(x1, x2, ("nngp", "ntk"))
        out[name] = {"spec": text, "x1": x1.tolist(), "x2": x2.tolist(),
                     "nngp": np.asarray(k.nngp).tolist(), "ntk": np.asarray(k.ntk).tolist()}
        print(f"{name}: nngp {np.asarray(k.nngp).ravel()[:2]} ...")
    Path(args.out).write_text(json.dumps({"generator": "benchmarks/neural_tangents_reference.py",
                                          "neural_tangents": _version(), "architectures": out}, indent=1) + "\n")
    print(f"wrote {args.out}")


def _version() -> str:
    from importlib.metadata import version

    return version("neural-tangents")


if __name__ == "__main__":
    main()
