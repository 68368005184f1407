"""Every activation neural-tangents has, against its float64 kernels (an independent implementation).

The reference values come from neural-tangents 0.6.5 (benchmarks/neural_tangents_activations.py, run
in its own environment); each case stores its .ntk text and inputs. NaN entries of the reference
(neural-tangents' RectifiedMonomial on the diagonal) are not compared.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import ntkdsl

DATA = json.loads((Path(__file__).parent / "data" / "nt_activations.json").read_text())


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: f"{c['call']}-{c['parameterization']}")
def test_kernels_match_neural_tangents(case):
    net = ntkdsl.loads(case["spec"])
    x1, x2 = np.array(case["x1"]), np.array(case["x2"])
    cross, self_ = net.kernels(x1, x2), net.kernels(x1)
    for ours, key in [(cross.nngp, "nngp"), (cross.ntk, "ntk"), (self_.nngp, "nngp_self"), (self_.ntk, "ntk_self")]:
        ref = np.array(case[key], dtype=float)
        known = np.isfinite(ref)
        assert known.sum() >= ref.size - ref.shape[0]  # at most the diagonal is missing
        # Both tools evaluate the same closed forms in float64: measured agreement is <= 5e-15 of the
        # largest entry; 1e-12 leaves room for libm/BLAS differences between machines, nothing more.
        np.testing.assert_allclose(ours[known], ref[known], rtol=0, atol=1e-12 * np.abs(ref[known]).max(), err_msg=key)
