"""Every error of the architecture layers: its class, its message and its span.

Shape mismatches are ShapeSpecError, sums and products of correlated branches BranchSpecError
(both StructureSpecErrors), bad arguments ArgumentSpecError; never a silently wrong kernel.
"""

import pytest

import ntkdsl
from ntkdsl.errors import ArgumentSpecError, BranchSpecError, ShapeSpecError, StructureSpecError


def error(text):
    with pytest.raises(ntkdsl.SpecError) as info:
        ntkdsl.loads(text, filename="t.ntk")
    return info.value


def net(*lines):
    return "\n".join(lines) + "\n"


CASES = [
    # ------------------------------------------------------------------ shapes
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)", "    dense(4)", "}"), ShapeSpecError,
                 "t.ntk:3:5: error: dense needs a vector input, but its input has shape [6, 6, 4] (an image or signal "
                 "with channels last); add flatten or global_avg_pool before it", id="dense-on-an-image"),
    pytest.param(net("network n(input = [4, 4, 3]) {", "    conv(4, kernel = 5)", "    flatten; dense(1)", "}"),
                 ShapeSpecError, "t.ntk:2:5: error: conv: the window (5 along spatial axis 1) is larger than its input "
                 "(4 pixels) with padding = valid, which leaves no output; use a smaller window or padding = same",
                 id="conv-window-larger-than-input"),
    pytest.param(net("network n(input = [4, 6, 3]) {", "    conv(4, kernel = 3)", "    avg_pool((3, 2))",
                     "    flatten; dense(1)", "}"), ShapeSpecError,
                 "t.ntk:3:5: error: avg_pool: the window (3 along spatial axis 1) is larger than its input (2 pixels) "
                 "with padding = valid, which leaves no output; use a smaller window or padding = same",
                 id="pool-window-larger-than-input"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)",
                     "    parallel(merge = sum) { conv(4, kernel = 1) } { conv(8, kernel = 1) }", "    flatten; dense(1)", "}"),
                 ShapeSpecError, "t.ntk:3:51: error: parallel(merge = sum) needs branches of the same shape, but branch 1 "
                 "gives features of shape [6, 6, 4] and branch 2 [6, 6, 8]", id="sum-of-branches-of-different-shapes"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)", "    parallel(merge = concat) {",
                     "        conv(4, kernel = 1)", "    } {", "        conv(4, kernel = 3)", "    }", "    flatten; dense(1)", "}"),
                 ShapeSpecError, "t.ntk:5:7: error: parallel(merge = concat) needs branches of the same spatial shape, "
                 "but branch 1 gives features of shape [6, 6, 4] and branch 2 [4, 4, 4]", id="concat-of-different-images"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)", "    residual { relu; conv(4, kernel = 3) }",
                     "    flatten; dense(1)", "}"), ShapeSpecError,
                 "t.ntk:3:5: error: residual adds x and f(x), but its body maps features of shape [6, 6, 4] to [4, 4, 4]; "
                 "the body must keep the shape (same channels, padding = same, stride 1)", id="residual-changes-the-shape"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)", "    relu", "}"), ShapeSpecError,
                 "t.ntk:3:5: error: network 'n' ends with features of shape [6, 6, 4], not a vector of outputs; end it "
                 "with flatten or global_avg_pool (usually followed by dense), or declare `readout = none` in its header "
                 "for kernels per output pixel", id="network-not-ending-in-a-vector"),
    pytest.param(net("network n(input = 5) {", "    dense(4)", "    conv(4, kernel = 3)", "}"), ShapeSpecError,
                 "t.ntk:3:5: error: conv needs an image or signal input (channels last, such as input = [32, 32, 3]), "
                 "but its input is a vector of 4 features", id="conv-on-a-vector"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    flatten", "    global_avg_pool", "    dense(1)", "}"),
                 ShapeSpecError, "t.ntk:3:5: error: global_avg_pool needs an image or signal input (channels last, such "
                 "as input = [32, 32, 3]), but its input is a vector of 192 features", id="pool-after-flatten"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = (3, 3, 3))", "    flatten; dense(1)", "}"),
                 ArgumentSpecError, "t.ntk:2:22: error: kernel has 3 entries, but the network's input has 2 spatial "
                 "dimensions; give one entry per dimension or a single integer", id="kernel-of-another-rank"),
    # ------------------------------------------------------------------ correlated branches (kernel-math.md §2)
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    residual { relu }", "    dense(1)", "}"), BranchSpecError,
                 "t.ntk:3:16: error: residual adds x and f(x), but its body ends in 'relu': x and f(x) are then correlated "
                 "and the kernel of x + f(x) is not the sum of their kernels (kernel-math.md §2); end the body with a "
                 "dense or conv layer (optionally followed by pooling)", id="residual-of-an-activation"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    residual { identity }", "    dense(1)", "}"),
                 BranchSpecError, "t.ntk:3:5: error: residual adds x and f(x), but its body has no dense or conv layer "
                 "(it passes its input on): x and f(x) are then correlated and the kernel of x + f(x) is not the sum of "
                 "their kernels (kernel-math.md §2); end the body with a dense or conv layer (optionally followed by "
                 "pooling)", id="residual-of-the-identity"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    parallel(merge = sum) { identity } { relu; dense(4); relu }",
                     "    dense(1)", "}"), BranchSpecError,
                 "t.ntk:3:40: error: parallel(merge = sum): branch 1 has no dense or conv layer (it passes its input on) "
                 "and branch 2 ends in 'relu', so their outputs are correlated and the kernel of their sum is not the sum "
                 "of their kernels (kernel-math.md §2); end every branch but one with a dense or conv layer\n"
                 "        parallel(merge = sum) { identity } { relu; dense(4); relu }\n"
                 "                                           ^^^^^^^^^^^^^^^^^^^^^^^^\n"
                 "note: branch 1 is the other one", id="sum-of-two-correlated-branches"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    parallel(merge = prod) { } { erf }", "    dense(1)", "}"),
                 BranchSpecError, "t.ntk:3:32: error: parallel(merge = prod): branch 1 has no dense or conv layer (it "
                 "passes its input on) and branch 2 ends in 'erf(a = 1, b = 1, c = 0)', so their outputs are correlated "
                 "and the kernel of their product is not the product of their kernels (kernel-math.md §2); end every "
                 "branch but one with a dense or conv layer", id="product-of-two-correlated-branches"),
    # ------------------------------------------------------------------ structure
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    residual { dense(4) } { dense(4) }", "    dense(1)", "}"),
                 StructureSpecError, "t.ntk:3:27: error: residual takes exactly one { body } (x + scale·f(x)), got 2",
                 id="residual-with-two-bodies"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    parallel(merge = sum) { dense(4) }", "    dense(1)", "}"),
                 StructureSpecError, "t.ntk:3:5: error: parallel needs at least two branches, each in braces: "
                 "parallel(merge = sum) { ... } { ... }; got 1", id="parallel-with-one-branch"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3) { relu }", "    flatten; dense(1)", "}"),
                 StructureSpecError, "t.ntk:2:25: error: 'conv' takes no { } body", id="body-given-to-conv"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)", "    flatten", "    relu", "    dense(1)", "}"),
                 StructureSpecError, "t.ntk:4:5: error: activation 'relu' needs a Gaussian input (an affine layer such as "
                 "dense before it), but its input is the output of flatten, whose features each have their own pixel's "
                 "kernel (not one Gaussian process; elementwise layers commute with flatten: put the activation before "
                 "it)", id="activation-after-flatten"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3)",
                     "    parallel(merge = concat) { conv(4, kernel = 1) } { conv(4, kernel = 1) }", "    relu",
                     "    flatten; dense(1)", "}"), StructureSpecError,
                 "t.ntk:4:5: error: activation 'relu' needs a Gaussian input (an affine layer such as dense before it), "
                 "but its input is a concatenation of branches (channels with different kernels, not one Gaussian "
                 "process; add dense or conv after it)", id="activation-after-concat"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    relu", "    residual { relu; dense(4) }", "    dense(1)", "}"),
                 StructureSpecError, "t.ntk:4:16: error: activation 'relu' needs a Gaussian input (an affine layer such "
                 "as dense before it), but its input is the output of activation 'relu'", id="activation-at-a-branch-start"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    relu", "    layer_norm", "    dense(1)", "}"),
                 StructureSpecError, "t.ntk:4:5: error: layer_norm needs a Gaussian input (kernel-math.md §1: put it "
                 "right after dense or conv), but its input is the output of activation 'relu'", id="layer-norm-after-relu"),
    # ------------------------------------------------------------------ arguments
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    parallel { dense(4) } { dense(4) }", "    dense(1)", "}"),
                 ArgumentSpecError, "t.ntk:3:5: error: parallel needs the argument 'merge'", id="merge-missing"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    parallel(merge = add) { dense(4) } { dense(4) }",
                     "    dense(1)", "}"), ArgumentSpecError,
                 "t.ntk:3:22: error: merge must be one of sum, concat, prod; got 'add'", id="unknown-merge"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4, kernel = 3, padding = full)", "    flatten; dense(1)", "}"),
                 ArgumentSpecError, "t.ntk:2:35: error: padding must be one of valid, same, circular; got 'full'",
                 id="unknown-padding"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    conv(4)", "    flatten; dense(1)", "}"), ArgumentSpecError,
                 "t.ntk:2:5: error: conv needs the argument 'kernel'", id="kernel-missing"),
    pytest.param(net("network n(input = [8, 8, 3]) {", "    avg_pool(0)", "    flatten; dense(1)", "}"), ArgumentSpecError,
                 "t.ntk:2:14: error: window must be a positive integer, got 0", id="window-zero"),
    pytest.param(net("network n(input = 3) {", "    dense(4)", "    layer_norm(eps = 0)", "    dense(1)", "}"),
                 ArgumentSpecError, "t.ntk:3:22: error: eps must be positive, got 0", id="eps-not-positive"),
]


@pytest.mark.parametrize("text, cls, expected", CASES)
def test_architecture_error(text, cls, expected):
    exc = error(text)
    assert type(exc) is cls
    assert isinstance(exc, ntkdsl.SpecError)
    message = exc.format()
    if "\n" in expected:
        assert message == expected
    else:
        assert message.splitlines()[0] == expected
        assert "^" in message.splitlines()[2]  # a caret under the span


def test_shape_and_branch_errors_are_structure_errors():
    assert issubclass(ShapeSpecError, StructureSpecError) and issubclass(BranchSpecError, StructureSpecError)


def test_branch_errors_inside_blocks_and_repeats_point_at_the_layer():
    exc = error(net("block res(n) {", "    residual { relu; dense(n); relu }", "}",
                    "network m(input = 3) {", "    dense(4)", "    repeat 2 { res(4) }", "    dense(1)", "}"))
    assert isinstance(exc, BranchSpecError)
    assert exc.format().startswith("t.ntk:2:32: error: residual adds x and f(x), but its body ends in 'relu'")


def test_correlation_rule_accepts_fresh_endings():
    # a dense/conv followed by parameter-free linear layers is fresh; a nested sum of fresh branches too
    ntkdsl.loads(net("network n(input = [6, 6, 2]) {", "    conv(4, kernel = 3, padding = same)",
                     "    residual { relu; conv(4, kernel = 3, padding = same); avg_pool(3, stride = 1, padding = same); identity }",
                     "    parallel(merge = sum) { identity } "
                     "{ parallel(merge = sum) { conv(4, kernel = 1) } { relu; conv(4, kernel = 1) } }",
                     "    parallel(merge = prod) { relu } { conv(4, kernel = 1) }",
                     "    flatten; dense(1)", "}"))


def test_cli_reports_a_branch_error_without_traceback(tmp_path, capsys):
    from ntkdsl.cli import main

    spec = tmp_path / "bad.ntk"
    spec.write_text(net("network n(input = 3) {", "    dense(4)", "    residual { relu }", "    dense(1)", "}"))
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "error: residual adds x and f(x)" in err and "Traceback" not in err
