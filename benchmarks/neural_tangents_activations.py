"""Reference kernels of every activation neural-tangents has, for tests/test_nt_activations.py.

Runs in neural-tangents' own environment (see benchmarks/README.md):

    .bench-nt/bin/python benchmarks/neural_tangents_activations.py > tests/data/nt_activations.json

Each case is a two-hidden-layer MLP, dense(5) act dense(4) act dense(1), in both parameterizations,
with inputs of several norms (one of them zero), evaluated in float64 (jax_enable_x64). The .ntk
text of each case is stored beside the values, so the test needs no neural-tangents.
"""

import json
import sys

import numpy as np

# (ntkdsl call, neural-tangents stax layer name, its arguments)
CASES = [
    ("relu", "Relu", {}),
    ("leaky_relu(0.2)", "LeakyRelu", {"alpha": 0.2}),
    ("abrelu(-0.5, 1.5)", "ABRelu", {"a": -0.5, "b": 1.5}),
    ("abs", "Abs", {}),
    ("sign", "Sign", {}),
    ("erf", "Erf", {}),
    ("erf(1.5, 0.7, 0.3)", "Erf", {"a": 1.5, "b": 0.7, "c": 0.3}),
    ("sigmoid_like", "Sigmoid_like", {}),
    ("gelu", "Gelu", {}),
    ("sin", "Sin", {}),
    ("sin(1.2, 0.8, 0.5)", "Sin", {"a": 1.2, "b": 0.8, "c": 0.5}),
    ("cos(0.9, 1.3, 0.0)", "Cos", {"a": 0.9, "b": 1.3, "c": 0.0}),
    ("exp(0.5, 0.4)", "Exp", {"a": 0.5, "b": 0.4}),
    ("gaussian(1.2, -0.6)", "Gaussian", {"a": 1.2, "b": -0.6}),
    ("rbf(0.7)", "Rbf", {"gamma": 0.7}),
    ("gabor", "Gabor", {}),
    ("monomial(3)", "Monomial", {"degree": 3}),
    ("rectified_monomial(2)", "RectifiedMonomial", {"degree": 2}),
    ("rectified_monomial(0)", "RectifiedMonomial", {"degree": 0}),
    ("polynomial(0.5, -1, 0.25, 0.1)", "Polynomial", {"coef": [0.5, -1.0, 0.25, 0.1]}),
    ("hermite(3)", "Hermite", {"degree": 3}),
]
# neural-tangents' RectifiedMonomial is NaN on the diagonal (its arccos at rho = 1), which the next
# activation would spread everywhere: those cases have one activation layer and compare off-diagonal.
ONE_LAYER = {"RectifiedMonomial"}
# neural-tangents' Hermite assumes unit-variance pre-activations: those cases use unit-norm-per-feature
# inputs (|x|^2 = d) and weights that keep every variance at 1 (w_std = 1, no bias).
UNIT_VARIANCE = {"Hermite"}


def layers(name: str):
    """(width, w_std, b_std) of the dense layers; an activation follows all but the last."""
    if name in UNIT_VARIANCE:
        return [(5, 1.0, None), (4, 1.0, None), (1, 1.0, None)]
    if name in ONE_LAYER:
        return [(5, 1.3, 0.2), (1, 0.9, 0.3)]
    return [(5, 1.3, 0.2), (4, 1.1, 0.1), (1, 0.9, 0.3)]


def spec(call: str, name: str, parameterization: str) -> str:
    dense = [f"dense({n}, w_std = {w}, b_std = {'none' if b is None else b})" for n, w, b in layers(name)]
    body = "".join(f"    {d}; {call}\n" for d in dense[:-1]) + f"    {dense[-1]}\n"
    return f"network n(input = 3, parameterization = {parameterization}) {{\n{body}}}\n"


def inputs(name: str, x: np.ndarray) -> np.ndarray:
    if name in UNIT_VARIANCE:  # every row of norm sqrt(d), so that x.x/d = 1 on the diagonal
        x = np.where(np.linalg.norm(x, axis=1, keepdims=True) > 0, x, 1.0)
        return x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1])
    return x


def main() -> None:
    from jax import config
    config.update("jax_enable_x64", True)
    from neural_tangents import stax

    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(4, 3)) * np.array([[0.5], [1.0], [2.0], [0.0]])  # norms 0.5..2 and zero
    x2 = rng.normal(size=(3, 3))
    out = {"generator": "benchmarks/neural_tangents_activations.py", "cases": []}
    for call, name, kwargs in CASES:
        a, b = inputs(name, x1), inputs(name, x2)
        for parameterization in ("ntk", "standard"):
            stack = []
            for n, w, bias in layers(name):
                stack += [stax.Dense(n, w, bias, parameterization=parameterization), getattr(stax, name)(**kwargs)]
            _, _, kernel_fn = stax.serial(*stack[:-1])
            k = kernel_fn(a, b, ("nngp", "ntk"))
            kself = kernel_fn(a, None, ("nngp", "ntk"))
            out["cases"].append({"call": call, "parameterization": parameterization, "x1": a.tolist(), "x2": b.tolist(),
                                 "spec": spec(call, name, parameterization),
                                 "nngp": np.asarray(k.nngp).tolist(), "ntk": np.asarray(k.ntk).tolist(),
                                 "nngp_self": np.asarray(kself.nngp).tolist(), "ntk_self": np.asarray(kself.ntk).tolist()})
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
