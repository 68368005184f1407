"""neural-tangents' side of benchmarks/empirical_ntk.py, run in its own environment (.bench-nt).

Reads the MLP's parameters and inputs from an .npz (written by empirical_ntk.py), times
``nt.empirical_ntk_fn`` with structured derivatives (jitted, warmed up, best of --repeat) and, unless
--no-jacobian, Jacobian contraction, and writes the times and the structured result to an .npz.
The parameters are ntkdsl's finite network, NTK parameterization (N(0, 1) weights, scaled in the
forward pass), so the two tools compute the same Θ of the same network.
"""

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("inputs")
    p.add_argument("output")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-jacobian", action="store_true")
    args = p.parse_args()

    from jax import config
    config.update("jax_enable_x64", True)
    import jax
    import neural_tangents as nt
    from neural_tangents import stax

    data = np.load(args.inputs)
    x, depth, b_std = data["x"], int(data["depth"]), float(data["b_std"])
    params, layers = [], []
    for i in range(depth + 1):
        w, b = data[f"w{i}"], data[f"b{i}"]
        layers.append(stax.Dense(w.shape[1], W_std=1.0, b_std=b_std, parameterization="ntk"))
        params.append((w, b))
        if i < depth:
            layers.append(stax.Relu())
            params.append(())
    _, apply_fn, _ = stax.serial(*layers)

    def timed(implementation):
        fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=implementation))
        out = fn(x, None, params).block_until_ready()  # compile and warm up
        best = float("inf")
        for _ in range(args.repeat if implementation != nt.NtkImplementation.JACOBIAN_CONTRACTION else 1):
            t0 = time.perf_counter()
            out = fn(x, None, params).block_until_ready()
            best = min(best, time.perf_counter() - t0)
        return best, np.asarray(out)

    t_s, k_s = timed(nt.NtkImplementation.STRUCTURED_DERIVATIVES)
    t_j = timed(nt.NtkImplementation.JACOBIAN_CONTRACTION)[0] if not args.no_jacobian else float("nan")
    np.savez(args.output, structured=t_s, jacobian=t_j, ntk=k_s.reshape(k_s.shape[0], k_s.shape[1]))


if __name__ == "__main__":
    main()
