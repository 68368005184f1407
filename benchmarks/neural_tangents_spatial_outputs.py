"""Reference kernels of neural-tangents 0.6.5 for networks that end in an image (spec ``readout = none``).

Writes ``tests/data/nt_spatial_outputs.json``: for each architecture its .ntk text, input shape, inputs
x1 (3 points) and x2 (4 points) and neural-tangents' float64 NNGP and NTK between them, from
``kernel_fn(x1, x2, ("nngp", "ntk"), diagonal_spatial=True)``: shape (N1, N2, *S), the kernel at each
output pixel. Cases marked ``full`` are computed without ``diagonal_spatial``: every pixel pair, in
neural-tangents' axis order (N1, N2, H, H', W, W'), or reversed (W, W', H, H') where its Kernel is
``is_reversed`` (``axes_reversed``: after pooling); ``self`` cases also store K(x1, x1) (``nngp_11``).
The stax side is written here independently of the spec text; the kernels are evaluated by
``_evaluate`` of benchmarks/neural_tangents_new_layers.py (the same call the other references use).
Each case draws its inputs from its own seed, so cases can be added without changing the others.

Run (needs jax and neural-tangents, e.g. the virtual environment .bench-nt):

    .bench-nt/bin/python benchmarks/neural_tangents_spatial_outputs.py [--out tests/data/nt_spatial_outputs.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from neural_tangents_new_layers import _evaluate, _version  # noqa: E402


def _cnn(param, stride=(2, 1)):
    """conv (strided, same) -> relu -> conv (valid): a 2-D image out."""
    return lambda s: [s.Conv(6, (3, 3), strides=stride, padding="SAME", W_std=1.3, b_std=0.2, parameterization=param),
                      s.Relu(), s.Conv(4, (2, 2), padding="VALID", W_std=1.1, b_std=0.1, parameterization=param)]


CNN = """network c(input = [6, 5, 2], parameterization = {param}, readout = none) {{
    conv(6, kernel = 3, stride = (2, 1), padding = same, w_std = 1.3, b_std = 0.2); relu
    conv(4, kernel = 2, w_std = 1.1, b_std = 0.1) }}"""

ARCHITECTURES = {
    **{f"cnn-2d-strided-{par}": dict(spec=CNN.format(param=par), shape=(6, 5, 2), seed=11 + i, self=True,
                                      layers=_cnn(par)) for i, par in enumerate(("ntk", "standard"))},
    "cnn-2d-pool-erf": dict(  # an average pool inside: neural-tangents refuses diagonal_spatial, so every pixel pair
        spec="""network c(input = [5, 6, 3], readout = none) {
            conv(8, kernel = 2, padding = same, b_std = 0.1); erf; avg_pool(2, stride = 1)
            conv(5, kernel = (1, 3), padding = circular, w_std = 1.4); relu; conv(3, kernel = 1, b_std = 0.3) }""",
        shape=(5, 6, 3), seed=21, full=True, reversed=True,  # its Kernel.is_reversed after the pool: (W, W', H, H')
        layers=lambda s: [s.Conv(8, (2, 2), padding="SAME", b_std=0.1), s.Erf(), s.AvgPool((2, 2), strides=(1, 1)),
                          s.Conv(5, (1, 3), padding="CIRCULAR", W_std=1.4), s.Relu(), s.Conv(3, (1, 1), b_std=0.3)]),
    "cnn-1d-residual": dict(
        spec="""network r(input = [7, 2], readout = none) {
            conv(6, kernel = 3, padding = same, b_std = 0.1)
            residual { relu; conv(6, kernel = 3, padding = same, w_std = 1.2) }
            relu; conv(2, kernel = 2, stride = 2) }""",
        shape=(7, 2), seed=31, self=True,
        layers=lambda s: [s.Conv(6, (3,), padding="SAME", b_std=0.1), s.FanOut(2),
                          s.parallel(s.Identity(), s.serial(s.Relu(), s.Conv(6, (3,), padding="SAME", W_std=1.2))),
                          s.FanInSum(), s.Relu(), s.Conv(2, (2,), strides=(2,))]),
    **{f"cnn-2d-strided-{par}-full": dict(spec=CNN.format(param=par), shape=(6, 5, 2), seed=41 + i, full=True,
                                          self=True, layers=_cnn(par)) for i, par in enumerate(("ntk", "standard"))},
}


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/nt_spatial_outputs.json"))
    args = parser.parse_args()
    out = {}
    for name, arch in ARCHITECTURES.items():
        rng = np.random.default_rng(arch["seed"])
        shape, diagonal = arch["shape"], not arch.get("full", False)
        x1, x2 = rng.standard_normal((3,) + shape), rng.standard_normal((4,) + shape)
        nngp, ntk = _evaluate(stax, arch["layers"], x1, x2, {}, diagonal)
        entry = {"spec": arch["spec"], "input_shape": list(shape), "x1": x1.tolist(), "x2": x2.tolist(),
                 "nngp": nngp.tolist(), "ntk": ntk.tolist(), "spatial_output": True, "full": not diagonal}
        if arch.get("reversed"):
            entry["axes_reversed"] = True  # neural-tangents' spatial axes in reverse order (Kernel.is_reversed)
        if arch.get("self"):
            nngp11, ntk11 = _evaluate(stax, arch["layers"], x1, None, {}, diagonal)
            entry["nngp_11"], entry["ntk_11"] = nngp11.tolist(), ntk11.tolist()
        assert np.all(np.isfinite(nngp)) and np.all(np.isfinite(ntk)), name
        out[name] = entry
        print(f"{name}: nngp {nngp.shape} {nngp.ravel()[:2]} ntk {ntk.ravel()[:2]}")
    text = json.dumps({"generator": "benchmarks/neural_tangents_spatial_outputs.py", "neural_tangents": _version(),
                       "architectures": out}, indent=None, separators=(",", ":"))
    Path(args.out).write_text(text + "\n")
    print(f"wrote {args.out} ({len(text) / 1e6:.2f} MB, {len(out)} architectures)")


if __name__ == "__main__":
    main()
