"""Fuzzing the language: generated and mutated specs give a located error or valid kernels.

A seeded, bounded generator writes specs from the grammar (lets, blocks, custom activations, vector
and image networks, branches, repeats; numbers from tiny to beyond float64), and a mutator edits
examples/*.ntk and generated specs (deletes, duplicates, swaps and inserts text, hostile tokens).
Every case must end in one of two ways, within a few seconds:

- a :class:`ntkdsl.SpecError` whose message is located: ``FILE:LINE:COL: error: ...`` (or
  ``FILE: error: ...`` for the file as a whole: no network, a file too large);
- a compiled network whose kernels on a few random points are finite and symmetric;
- a run-time refusal (:class:`~ntkdsl.codegen.overflow.KernelOverflowError`) naming the layer whose
  variance left float64 at those points.

Anything else (another exception, a hang) fails with the spec in the message. The CI variant runs
a small fixed sample; ``--runslow`` runs a larger one. ``python tests/test_fuzz.py SEED COUNT`` runs
any other sample by hand.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import random
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest

import ntkdsl
from ntkdsl.codegen.overflow import KernelOverflowError
from ntkdsl.codegen.prologue import uses_graphs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.ntk")))
CASE_SECONDS = 20.0  # per case: compile + 4-point kernels take ≲ 3 s; slack for a loaded 2-core CI machine
HARD_SECONDS = 60.0  # a case still running then is a hang: interrupted and reported
MAX_EVAL_SIZE = 4096  # numbers per input point up to which kernels are evaluated (larger: compile only)
LOCATED = re.compile(r"^fuzz\.ntk(:\d+:\d+)?: error: ")
OVERFLOW_LOCATED = re.compile(r"^(fuzz\.ntk:\d+:\d+: )?the (kernels|input variance)")  # the layer's location when it has a span

# ---------------------------------------------------------------- the generator
_NUMBERS = ["0", "1", "2", "0.5", "1.5", "0.1", "3", "1e-3", "2.5e1", "1e-12", "1e300", "1e308", "1e309", "1e-400",
            "123456789012345678901234567890", "10**100", "10**400", "2**1024", "exp(700)", "exp(800)", "-1", "0.0"]
_ACTS = ["relu", "tanh", "erf", "abs", "sign", "step", "gelu", "elu", "sigmoid_like", "sin", "cos", "gaussian",
         "monomial(2)", "monomial(n = 3)", "hermite(2)", "polynomial(0.1, 1, 0.5)", "rectified_monomial(1)"]
_FUNCS = ["tanh", "erf", "abs", "sin", "cos", "sigmoid", "softplus", "relu", "Phi", "exp", "sqrt", "log"]


class _Gen:
    """Random spec text; ``budget`` bounds the size, ``depth`` the nesting (both stay small)."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.lets: list = []
        self.acts: list = []
        self.blocks: list = []

    def number(self) -> str:
        r = self.r
        return r.choice(_NUMBERS) if r.random() < 0.2 else f"{r.choice([0.1, 0.3, 0.5, 1, 1.2, 1.5, 2, 3])}"

    def expr(self, depth: int = 0, names=()) -> str:
        r = self.r
        pick = r.random()
        if depth > 2 or pick < 0.45:
            pool = list(names) + self.lets
            return r.choice(pool) if pool and r.random() < 0.4 else self.number()
        if pick < 0.75:
            op = r.choice(["+", "-", "*", "/", "**"])
            right = r.choice(["2", "3", "0.5"]) if op == "**" else self.expr(depth + 1, names)
            return f"({self.expr(depth + 1, names)} {op} {right})"
        if pick < 0.85:
            return f"-{self.expr(depth + 1, names)}"
        return f"{r.choice(['sqrt', 'exp', 'log', 'sin', 'cos'])}({self.expr(depth + 1, names)})"

    def act_body(self, depth: int = 0) -> str:
        r = self.r
        pick = r.random()
        if depth > 2 or pick < 0.3:
            return r.choice(["x", "x", "s * x", "x**2", "x**3", self.number()])
        if pick < 0.6:
            return f"{r.choice(_FUNCS)}({self.act_body(depth + 1)})"
        if pick < 0.9:
            return f"({self.act_body(depth + 1)} {r.choice(['+', '-', '*'])} {self.act_body(depth + 1)})"
        return f"max({self.act_body(depth + 1)}, {self.act_body(depth + 1)})"

    def std(self, names) -> str:
        return self.expr(0, names) if self.r.random() < 0.3 else self.r.choice(["1", "1.5", "2", "0.7"])

    def layer(self, image: bool, names, depth: int) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.3:
            b = f", b_std = {self.std(names)}" if r.random() < 0.5 else ""
            width = r.choice(["2", "3", "4", "1", "0", "2.5"]) if r.random() < 0.1 else r.choice(["2", "3", "4"])
            if image:
                k, pad = r.choice(["1", "2", "3", "(2, 1)", "40"]), r.choice(["same", "valid", "circular"])
                return f"conv({width}, kernel = {k}, padding = {pad}, w_std = {self.std(names)}{b})"
            return f"dense({width}, w_std = {self.std(names)}{b})"
        if pick < 0.55:
            return r.choice(_ACTS + self.acts + ["identity"])
        if pick < 0.65 and self.blocks:
            name, n = r.choice(self.blocks)
            return f"{name}({', '.join(self.std(names) for _ in range(n))})"
        if pick < 0.72 and depth < 2:
            return f"repeat {r.choice(['1', '2', '3'])} {{ {self.body(image, names, depth + 1)} }}"
        if pick < 0.8 and depth < 2:
            dense = "conv(3, kernel = 1)" if image else "dense(3)"
            return f"residual(scale = {self.std(names)}) {{ {self.body(image, names, depth + 1)}; {dense} }}"
        if pick < 0.88 and depth < 2:
            merge = r.choice(["sum", "concat", "prod"])
            dense = "conv(3, kernel = 1)" if image else "dense(3)"
            return f"parallel(merge = {merge}) {{ {dense} }} {{ {self.body(image, names, depth + 1)}; {dense} }}"
        if image and pick < 0.94:
            return r.choice(["avg_pool(2)", "sum_pool(2, stride = 1, padding = same)", "layer_norm", "avg_pool(3)"])
        return "layer_norm" if r.random() < 0.5 else "identity"

    def body(self, image: bool, names, depth: int) -> str:
        return "; ".join(self.layer(image, names, depth) for _ in range(self.r.randint(1, 3)))

    def spec(self) -> str:
        r = self.r
        items = []
        for i in range(r.randint(0, 2)):
            items.append(f"let c{i} = {self.expr()}")
            self.lets.append(f"c{i}")
        for i in range(r.randint(0, 2)):
            items.append(f"activation a{i}(x, s = {r.choice(['1', '0.5', '2'])}) = {self.act_body()}")
            self.acts.append(r.choice([f"a{i}", f"a{i}(s = {self.number()})"]))
        image = r.random() < 0.35
        for i in range(r.randint(0, 2)):
            params = ["p", "q"][: r.randint(0, 2)]
            items.append(f"block b{i}({', '.join(params)}) {{ {self.body(image, params, 1)} }}")
            self.blocks.append((f"b{i}", len(params)))
        shape = r.choice(["[4, 4, 2]", "[6, 3]", "[3, 3, 1]"]) if image else r.choice(["3", "5", "[2]", "1"])
        head = "dense(3); relu" if not image else "conv(3, kernel = 2, padding = same); relu"
        tail = r.choice(["flatten; dense(2)", "global_avg_pool; dense(2)"]) if image else "dense(2)"
        param = r.choice(["", ", parameterization = standard"])
        items.append(f"network n(input = {shape}{param}) {{\n    {head}; {self.body(image, [], 0)}\n    {tail}\n}}")
        return "\n".join(items) + "\n"


# ---------------------------------------------------------------- the mutator
_HOSTILE = ["(", ")", "{", "}", "[", "]", ",", ";", "\n", "=", "**", "-", "1e999", "10**1000", "0", "-1",
            "repeat 9999 {",
            "residual {", "x", "network", "let", "block", "activation", "dense", "relu", "# comment", "\t", "é", "\0",
            "sqrt(-1)", "1/0", "log(0)", "exp(1000)", "((((((((", "---------", "nan", "inf", "9" * 500, "input = 10**9",
            "kernel = 100", "merge = prod", "b_std = none", "parameterization = standard"]


def mutate(text: str, rng: random.Random) -> str:
    """One to three random edits of ``text``."""
    for _ in range(rng.randint(1, 3)):
        n = len(text)
        i, j = sorted(rng.randrange(n + 1) for _ in range(2))
        kind = rng.random()
        if kind < 0.25:
            text = text[:i] + text[j:j + rng.randint(0, 8)] + text[i:]  # a copy of nearby text
        elif kind < 0.45:
            text = text[:i] + text[min(j, i + rng.randint(1, 6)):]  # a short deletion
        elif kind < 0.75:
            text = text[:i] + rng.choice(_HOSTILE) + text[i:]
        elif kind < 0.9:  # a number replaced
            numbers = list(re.finditer(r"\d+(\.\d*)?(e-?\d+)?", text))
            if numbers:
                m = rng.choice(numbers)
                text = text[:m.start()] + rng.choice(_NUMBERS + ["999", "0.000001", "17", "33"]) + text[m.end():]
        else:  # two lines swapped
            lines = text.split("\n")
            a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


def cases(seed: int, count: int):
    """``count`` specs from ``seed``: generated, mutated generated, mutated examples, in turn."""
    rng = random.Random(seed)
    examples = [open(p, encoding="utf-8").read() for p in EXAMPLES]
    for k in range(count):
        kind = k % 3
        if kind == 2 and examples:
            yield mutate(rng.choice(examples), rng)
        else:
            text = _Gen(rng).spec()
            yield mutate(text, rng) if kind == 1 else text


# ---------------------------------------------------------------- the oracle
class _Hang(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    """Interrupts the block after ``seconds`` (POSIX main thread; elsewhere only the time check applies)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def alarm(signum, frame):
        raise _Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(text: str) -> str:
    """'error' or 'kernels' for an acceptable outcome; an AssertionError naming the spec otherwise."""
    start = time.perf_counter()
    try:
        with _deadline(HARD_SECONDS):
            outcome = _run(text)
    except _Hang as exc:
        raise AssertionError(f"hang: {exc}\n--- spec ---\n{text}") from None
    except Exception as exc:  # noqa: BLE001 - anything but a located SpecError is the finding
        raise AssertionError(f"{type(exc).__name__}: {exc}\n--- spec ---\n{text}") from exc
    elapsed = time.perf_counter() - start
    assert elapsed < CASE_SECONDS, f"{elapsed:.1f} s\n--- spec ---\n{text}"
    return outcome


def _run(text: str) -> str:
    try:
        net = ntkdsl.loads(text, filename="fuzz.ntk")
    except ntkdsl.SpecError as exc:
        assert LOCATED.match(str(exc)), f"not located: {exc}"
        assert "Traceback" not in str(exc)
        return "error"
    shape = tuple(net.ir.input_shape)
    if math.prod(shape) > MAX_EVAL_SIZE:
        return "compiled"
    x = np.random.default_rng(0).standard_normal((4,) + shape)
    side = {"graph1": np.broadcast_to(np.eye(shape[0]), (4, shape[0], shape[0]))} if uses_graphs(net.program) else {}
    try:
        k = net.kernels(x, backend="numpy", **side)  # a mutated GNN example gets identity graphs (self loops)
    except KernelOverflowError as exc:  # refused at run time: a layer's variance leaves float64 at these inputs
        assert OVERFLOW_LOCATED.match(str(exc)), f"not located: {exc}"
        return "refused"
    for name, m in (("nngp", k.nngp), ("ntk", k.ntk)):
        assert m.shape == (4, 4), (name, m.shape)
        assert np.all(np.isfinite(m)), f"{name} is not finite:\n{m}"
        assert np.array_equal(m, m.T), f"{name} is not symmetric:\n{m}"
    return "kernels"


# ---------------------------------------------------------------- tests
def _sample(seed: int, count: int):
    outcomes = [check(text) for text in cases(seed, count)]
    assert "error" in outcomes and "kernels" in outcomes, outcomes  # the sample exercises both ends


def test_fuzz_small_sample():
    """CI: 36 cases (generated, mutated, mutated examples) in well under a minute."""
    _sample(seed=12, count=36)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzz_large_sample(seed):
    _sample(seed=1000 + seed, count=200)


def test_generator_is_seeded_and_bounded():
    a, b = list(cases(5, 12)), list(cases(5, 12))
    assert a == b and len(set(a)) > 1
    assert max(len(t) for t in cases(7, 200)) < 20_000


if __name__ == "__main__":  # python tests/test_fuzz.py SEED COUNT: a larger run, findings printed
    seed, count = int(sys.argv[1]), int(sys.argv[2])
    found = 0
    tally: dict = {}
    for n, text in enumerate(cases(seed, count)):
        try:
            outcome = check(text)
            tally[outcome] = tally.get(outcome, 0) + 1
        except AssertionError as exc:
            found += 1
            print(f"=== case {n} (seed {seed})\n{exc}\n", flush=True)
    print(f"seed {seed}: {count} cases, {found} findings, {tally}")
