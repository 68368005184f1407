"""Every shipped example compiles, and every example script runs and asserts what it claims."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen.prologue import uses_graphs
from ntkdsl.frontend import parse
from ntkdsl.lowering import lower_all

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*.ntk")), ids=lambda p: p.name)
def test_example_spec_compiles(spec):
    module = parse(spec.read_text(), str(spec))
    for ir in lower_all(module):
        net = ntkdsl.CompiledNetwork(ir, spec.read_text(), str(spec))
        x = np.stack([np.full(ir.input_shape, 1.0), np.full(ir.input_shape, 0.5)])  # vectors or images
        graphs = {"graph1": np.stack([np.eye(ir.input_shape[0])] * 2)} if uses_graphs(net.program) else {}  # GNNs
        assert net.kernels(x, **graphs).ntk.shape == (2, 2)


@pytest.mark.parametrize("script", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_script_runs(script):
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
