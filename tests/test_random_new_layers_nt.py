"""Randomly drawn networks of the newer layers against neural-tangents 0.6.5 (float64).

tests/data/nt_random_new_layers.json holds networks drawn by benchmarks/neural_tangents_random_new_layers.py
(attention, layer norm over space, conv_transpose, conv_local, resize, index, dropout, exp_normalized,
aggregate with per-input weighted graphs, residual and parallel blocks, spatial outputs) with
neural-tangents' kernels between 3 and 2 inputs and its self kernel K(x1, x1), computed from stax layers
written by the generator beside the spec text (the ``stax`` field), not from ntkdsl.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen import dispatch

from shared import NT_RTOL, close_to_scale

CASES = json.loads((Path(__file__).resolve().parent / "data" / "nt_random_new_layers.json").read_text())["cases"]
FAST = 20  # the first cases run in the default suite on NumPy (~0.3 s each); the rest with --runslow


def _kernels(case, backend):
    net = ntkdsl.loads(case["spec"])
    x1, x2 = np.asarray(case["x1"]), np.asarray(case["x2"])
    graphs = {"graph1": np.asarray(case["graph1"]), "graph2": np.asarray(case["graph2"])} if "graph1" in case else {}
    with warnings.catch_warnings():
        # numba falls back to NumPy (a BackendFallbackWarning) for ops it does not fuse: the stated behaviour
        warnings.simplefilter("ignore", dispatch.BackendFallbackWarning)
        cross = net.kernels(x1, x2, backend=backend, **graphs)
        own = net.kernels(x1, backend=backend, **({"graph1": graphs["graph1"]} if graphs else {}))
    return cross, own


def _check(case, backend):
    if backend == "numba" and not dispatch.module_available("numba"):
        pytest.skip("numba is not installed")
    cross, own = _kernels(case, backend)
    close_to_scale(cross.nngp, np.asarray(case["nngp"]), NT_RTOL)
    close_to_scale(cross.ntk, np.asarray(case["ntk"]), NT_RTOL)
    off = ~np.eye(len(own.nngp), dtype=bool)
    for got, want in ((own.nngp, np.asarray(case["nngp_11"])), (own.ntk, np.asarray(case["ntk_11"]))):
        close_to_scale(got[off], want[off], NT_RTOL)
        # neural-tangents evaluates (x, x) at a ρ rounded off 1, where arccos-type duals lose √ε ≈ 1e-8
        # of scale (tests/shared.py); ntkdsl's diagonal takes ρ = 1 exactly
        close_to_scale(got[~off], want[~off], 1e-8)


def _params(cases):
    return [pytest.param(c, id=f"seed{c['seed']}") for c in cases]


@pytest.mark.parametrize("case", _params(CASES[:FAST]))
def test_random_network_agrees_with_neural_tangents(case):
    _check(case, "numpy")


@pytest.mark.slow
@pytest.mark.parametrize("case", _params(CASES[FAST:]))
def test_more_random_networks_agree_with_neural_tangents(case):
    _check(case, "numpy")


@pytest.mark.parametrize("case", _params(CASES[:1]) + [pytest.param(c, marks=pytest.mark.slow, id=f"seed{c['seed']}")
                                                      for c in CASES[1:]])
def test_random_network_agrees_with_neural_tangents_numba(case):
    # numba compiles each network's fused loops (5–30 s each on a cold cache): one case by default, all with --runslow
    _check(case, "numba")
