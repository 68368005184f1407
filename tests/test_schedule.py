"""The program scheduled for printing (ntkdsl/codegen/schedule.py), which every code generator reads:
its facts checked against their definitions on the raw program, CSE against the symbolic identity
(substituting the temporaries back gives the formulas exactly), liveness on a small listing.
"""

from __future__ import annotations

import pytest

import ntkdsl
from ntkdsl.algebra.functions import GaussianExpectation, to_atan2
from ntkdsl.codegen.schedule import cse, free_after_last_use, schedule

NETWORKS = [
    "network mlp(input = 3) { dense(8, w_std = 1.5, b_std = 0.1); relu; dense(8); erf; dense(1) }",
    "network numerical(input = 2) { dense(4, w_std = 1.2, b_std = 0.1); tanh; dense(1, w_std = 1.2) }",
    """network cnn(input = [4, 4, 2]) {
        conv(3, kernel = 2, padding = same, b_std = 0.1)
        residual(scale = 0.7) { relu; conv(3, kernel = 3, padding = same) }
        avg_pool(window = 2); flatten; dense(1)
    }""",
]


def _program(spec):
    return ntkdsl.loads(spec).program


@pytest.mark.parametrize("spec", NETWORKS)
def test_the_facts_of_each_layer_match_their_definitions_on_the_program(spec):
    program = _program(spec)
    plan = schedule(program)
    variances = {s.state.cov1 for s in program.steps} | {s.state.cov2 for s in program.steps}
    assert [layer.step for layer in plan.layers] == list(program.steps[1:])
    for n, layer in enumerate(plan.layers):
        step = program.steps[n + 1]
        assert [s for s, _ in layer.assignments] == [s for s, _ in step.assignments]
        for (_, raw), (_, printed) in zip(step.assignments, layer.assignments):  # fixed parameters exact, angles as atan2
            assert printed == to_atan2(raw.xreplace(program.fixed_parameters))
        points, pairs = {s for s, _ in layer.points}, {s for s, _ in layer.pairs}
        assert points | pairs == {s for s, _ in step.assignments} and not points & pairs
        assert points <= variances and not pairs & variances
        later = [e for s in program.steps[n + 2:] for _, e in s.assignments] + [program.output.nngp, program.output.ntk]
        assert layer.read_later == {s for s, _ in step.assignments if any(e.has(s) for e in later)}
        assigned = dict(step.assignments)
        assert layer.exact_diagonal == (step.state.nngp in assigned and step.state.cov1 in assigned)
        assert layer.both_variances == (step.state.cov1 in assigned and step.state.cov2 in assigned)
    assert plan.kept == {s for layer in plan.layers for s, _ in layer.pairs if s in layer.read_later}


@pytest.mark.parametrize("spec", NETWORKS)
def test_cse_is_the_formulas_with_shared_temporaries(spec):
    # the symbolic identity: the temporaries substituted back (in reverse order) give every formula exactly
    for layer in schedule(_program(spec)).layers:
        shared, reduced = cse(layer.assignments, f"t{layer.index}_")
        assert [s for s, _ in reduced] == [s for s, _ in layer.assignments]
        for (_, formula), (_, expr) in zip(layer.assignments, reduced):
            for temporary, value in reversed(shared):
                expr = expr.xreplace({temporary: value})
            assert expr == formula
        # a numerical dual stays whole: each one printed is one of the formulas' own
        duals = {ge for _, e in layer.assignments for ge in e.atoms(GaussianExpectation)}
        printed = {ge for _, e in shared + reduced for ge in e.atoms(GaussianExpectation)}
        assert printed <= duals


def test_the_numerical_network_has_a_dual_to_keep_whole():
    program = _program(NETWORKS[1])
    assert any(e.has(GaussianExpectation) for layer in schedule(program).layers for _, e in layer.assignments)


def test_arrays_are_freed_after_the_statement_that_reads_them_last():
    statements = [["    nngp_1 = nngp_0 * 2"], ["    # nngp_0 in a comment is no use"],
                  ["    t2_0 = nngp_1 + 1", "    if same:", "        t2_0 += nngp_1"], ["    ntk_2 = t2_0"]]
    assert free_after_last_use(statements) == [
        "    nngp_1 = nngp_0 * 2", "    del nngp_0", "    # nngp_0 in a comment is no use",
        "    t2_0 = nngp_1 + 1", "    if same:", "        t2_0 += nngp_1", "    del nngp_1",
        "    ntk_2 = t2_0"]  # nothing freed after the last statement: the function returns


def test_zero_layers_of_work_still_schedule():
    program = _program("network ident(input = 2) { identity; dense(1) }")
    layers = schedule(program).layers
    assert len(layers) == 2 and not layers[0].assignments and not layers[0].read_later
    assert "nngp_0" in {s.name for _, e in layers[1].assignments for s in e.free_symbols}  # identity passes Σ⁰ on
