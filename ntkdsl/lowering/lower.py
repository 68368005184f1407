"""AST -> IR: resolve names, evaluate constants exactly, bind arguments, expand blocks and repeats.

Values during lowering (:mod:`.expressions`) are exact sympy numbers, tuples (sequences) or :class:`Word` (a bare name
that is not a ``let`` or parameter: legal only where a parameter takes a fixed set of words, such as
``parameterization = standard`` or ``b_std = none``). Every mistake raises a SpecError with a span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import sympy as sp

from ..activations import REGISTRY
from ..errors import ArgumentSpecError, LimitSpecError, NameSpecError, Span, SpecError, StructureSpecError, did_you_mean
from ..frontend import ast
from ..frontend.limits import MAX_ACTIVATION_NESTING, MAX_DEGREE, MAX_LAYERS, MAX_NESTING
from ..ir.arguments import FROM_NETWORK, PARAMETERIZATIONS, REQUIRED, Spec, enum, input_shape, natural, positive_int, real
from ..ir.checks import check_degree
from ..ir.layer import Layer
from ..ir.network import READOUTS, Network
from ..layers import LAYERS, Activation, Call, CustomActivation
from .expressions import ACTIVATION_FUNCTIONS, FUNCTIONS, Expressions, Value

MAX_REPEAT = 10_000  # a repeat beyond this is a typo, not a network
@dataclass(frozen=True)
class _Bound:
    value: Value
    span: Optional[Span]


def lower(module: ast.Module, network: Optional[str] = None) -> Network:
    """Lower one network of a parsed module to IR.

    Args:
        module: the parsed file.
        network: the network's name; may be omitted when the file defines exactly one.

    Returns:
        The :class:`~ntkdsl.ir.network.Network` (not yet verified: see :func:`ntkdsl.ir.verify.verify`).

    Raises:
        SpecError: any naming, argument or structural mistake, with its span.
    """
    lowerer = _Lowerer(module)
    return lowerer.network(select_network(module, network))


def lower_all(module: ast.Module) -> List[Network]:
    """Lower every network of the module (``ntkdsl check``)."""
    lowerer = _Lowerer(module)
    return [lowerer.network(n) for n in module.items if isinstance(n, ast.NetworkDef)]


def select_network(module: ast.Module, name: Optional[str]) -> ast.NetworkDef:
    """The network called ``name``, or the only one; a SpecError otherwise."""
    nets = [i for i in module.items if isinstance(i, ast.NetworkDef)]
    names = [n.name for n in nets]
    if name is not None:
        for n in nets:
            if n.name == name:
                return n
        if not nets:
            raise NameSpecError(f"no network '{name}': {module.filename} defines no network", _file_span(module))
        raise NameSpecError(
            f"no network '{name}' in {module.filename}{did_you_mean(name, names)}",
            _file_span(module),
            notes=[f"note: the file defines {', '.join(names)}"],
        )
    if not nets:
        raise StructureSpecError(
            "the file defines no network (expected `network NAME(input = D) { ... }`)", _file_span(module)
        )
    if len(nets) > 1:
        raise StructureSpecError(
            f"the file defines {len(nets)} networks ({', '.join(names)}); choose one "
            "(--network NAME on the command line, network= in Python)",
            nets[1].span,
        )
    return nets[0]


class _SelfCall(StructureSpecError):
    """A block that calls itself, directly or through others (the message names the chain)."""


def _file_span(module: ast.Module) -> Span:
    """The file as a whole (line 0): for what it lacks, or a network name that came from outside it."""
    return Span(module.filename, 0, 0, 0, 0, module.text)


class _Lowerer(Expressions):
    def __init__(self, module: ast.Module):
        self.module = module
        self.lets: Dict[str, ast.LetDef] = {}
        self.blocks: Dict[str, ast.BlockDef] = {}
        self.activations: Dict[str, ast.ActivationDef] = {}
        self.functions = FUNCTIONS  # the calls expressions may make (more inside activation bodies)
        self.let_values: Dict[str, sp.Expr] = {}
        self.visiting: List[str] = []  # lets being evaluated: a cycle if one comes back
        self.block_stack: List[str] = []
        self.depth = 0  # nesting of the evaluation in progress: bodies, block calls, lets, expressions
        self.max_depth = MAX_NESTING
        self.layer_count = 0  # layers of the network being lowered so far, repeats expanded
        self.rank = 0  # spatial dimensions of the network being lowered (set by `network`)
        seen: Dict[str, Span] = {}
        builtin = set(LAYERS.names()) | set(REGISTRY.names())
        for item in module.items:
            key = ("network " if isinstance(item, ast.NetworkDef) else "") + item.name
            if key in seen:
                prev = seen[key]
                raise NameSpecError(
                    f"'{item.name}' is defined twice", item.span, notes=[f"note: first defined at {prev.file}:{prev.line}:{prev.col}"]
                )
            seen[key] = item.span
            if isinstance(item, ast.LetDef):
                self.lets[item.name] = item
            elif isinstance(item, (ast.BlockDef, ast.ActivationDef)):
                kind = "block" if isinstance(item, ast.BlockDef) else "activation"
                if item.name in builtin:
                    raise NameSpecError(f"{kind} '{item.name}' would shadow the built-in layer or activation '{item.name}'", item.span)
                (self.blocks if kind == "block" else self.activations)[item.name] = item
        for name in self.lets:  # every let is checked, used or not
            self.let_value(name)
        self.activation_bodies = {name: self.activation_body(d) for name, d in self.activations.items()}
        if "pi" in self.lets:
            raise NameSpecError("'pi' is a built-in constant and cannot be redefined", self.lets["pi"].span)

    # ------------------------------------------------------------ statements
    def network(self, net: ast.NetworkDef) -> Network:
        specs = [
            Spec("input", REQUIRED, input_shape),
            Spec("parameterization", "ntk", enum(PARAMETERIZATIONS)),
            Spec("readout", "vector", enum(READOUTS)),
        ]
        args = self.bind(f"network '{net.name}'", specs, net.args, {}, net.span)
        values = {s.name: s.convert(self, args[s.name].value, args[s.name].span, s.name) for s in specs}
        self.rank = len(values["input"]) - 1  # spatial dimensions: an int window broadcasts to them
        self.layer_count = 0
        layers = self.body(net.body, {}, values["parameterization"])
        return Network(net.name, values["input"], values["parameterization"], tuple(layers), net.span,
                       values["readout"])

    def body(self, body: ast.Body, env: Mapping[str, Value], param: str) -> List[Layer]:
        out: List[Layer] = []
        with self.deeper(body.span):
            for st in body.statements:
                if isinstance(st, ast.Repeat):
                    count = positive_int(self, self.evaluate(st.count, env), st.count.span, "the repeat count", env)
                    if count > MAX_REPEAT:
                        raise ArgumentSpecError(f"repeat count {count} is too large (at most {MAX_REPEAT})", st.count.span)
                    before = self.layer_count
                    once = self.body(st.body, env, param)
                    self.add_layers((self.layer_count - before) * (count - 1), st.count.span)
                    out.extend(once * count)
                else:
                    layers = self.call(st, env, param)
                    if st.name not in self.blocks:  # (a block's body counted its own layers)
                        for layer in layers:
                            self.rank = layer.spatial_rank_after(self.rank)
                    out.extend(layers)
        return out

    def add_layers(self, n: int, span: Optional[Span]) -> None:
        """Count ``n`` more layers of the network; a LimitSpecError past :data:`MAX_LAYERS`."""
        self.layer_count += n
        if self.layer_count > MAX_LAYERS:
            raise LimitSpecError(f"the network has more than {MAX_LAYERS} layers once repeats and blocks are "
                                 "expanded (layers inside residual and parallel bodies count)", span)

    def call(self, st: ast.LayerCall, env: Mapping[str, Value], param: str) -> List[Layer]:
        rule = LAYERS.get(st.name)
        if st.bodies and not (rule is not None and rule.bodies):
            raise StructureSpecError(f"'{st.name}' takes no {{ }} body", st.bodies[0].span)
        if st.subscript is not None and not (rule is not None and rule.subscript):
            raise StructureSpecError(f"'{st.name}' takes no [ ] subscript (only index does: index[1:5, ::-1])", st.span)
        if rule is not None and rule.subscript and st.subscript is None:
            raise StructureSpecError(f"{st.name} is written with a subscript of the spatial axes, as in Python: "
                                     f"{st.name}[1:5, ::-1], {st.name}[2]", st.name_span)
        if st.name in self.blocks:
            return self.block(self.blocks[st.name], st, env, param)
        row = REGISTRY.get(st.name)
        if rule is not None:
            layer = self.layer(rule, st, env, param)
        elif row is not None:
            layer = self.activation(row, st, env)
        elif st.name in self.activations:
            layer = self.custom_activation(self.activations[st.name], st, env)
        else:
            layer = None
        if layer is not None:
            self.add_layers(1, st.name_span)
            return [layer]
        known = LAYERS.names() + REGISTRY.names() + list(self.blocks) + list(self.activations)
        raise NameSpecError(f"unknown layer or activation '{st.name}'{did_you_mean(st.name, known)}", st.name_span)

    def layer(self, rule, st: ast.LayerCall, env: Mapping[str, Value], param: str) -> Layer:
        """A layer of the table: its arguments bound and converted by its specs, its bodies lowered."""
        specs = [Spec(s.name, param, s.convert) if s.default is FROM_NETWORK else s for s in rule.specs]
        args = self.bind(rule.name, specs, st.args, env, st.name_span)
        values = {s.name: s.convert(self, args[s.name].value, args[s.name].span, s.name, env) for s in specs}
        rank, bodies = self.rank, []
        for b in st.bodies:  # every branch starts from the call's input
            self.rank = rank
            bodies.append(tuple(self.body(b, env, param)))
        self.rank, bodies = rank, tuple(bodies)
        subscript = None if st.subscript is None else tuple(self.subscript_entry(e, env) for e in st.subscript)
        return rule.build(values, Call(st.span, st.name_span, bodies, tuple(b.span for b in st.bodies), subscript,
                                       tuple(getattr(e, "span", None) for e in st.subscript or ())))

    def subscript_entry(self, e, env: Mapping[str, Value]):
        """An integer, or (start, stop, step) with None for a missing part, as Python's subscripts."""
        def integer(part, what):
            n = self.number(part, env, what)
            if not n.is_integer:
                raise ArgumentSpecError(f"{what} must be an integer, got {n}", part.span)
            return int(n)

        if not isinstance(e, ast.Slice):
            return integer(e, "an index")
        parts = [None if x is None else integer(x, f"a slice {name}") for x, name in
                 ((e.start, "start"), (e.stop, "stop"), (e.step, "step"))]
        if parts[2] == 0:
            raise ArgumentSpecError("a slice step cannot be 0", e.step.span)
        return tuple(parts)

    def activation(self, row, st: ast.LayerCall, env: Mapping[str, Value]) -> Activation:
        what = f"activation '{st.name}'"
        convert = {"real": lambda p: real, "natural": lambda p: natural, "word": lambda p: enum(p.words)}
        specs = [Spec(p.name, REQUIRED if p.default is None else p.default, convert[p.kind](p)) for p in row.params]
        args = list(st.args)
        values = []
        if row.variadic is not None:  # polynomial(c0, c1, ...): every positional argument is a coefficient
            positional = [a for a in args if not isinstance(a, ast.Keyword)]
            if not positional:
                raise ArgumentSpecError(f"{what} needs at least one {row.variadic} value", st.name_span)
            if len(positional) > MAX_DEGREE + 1:
                raise LimitSpecError(f"{what} has {len(positional)} {row.variadic}: degree {len(positional) - 1} "
                                     f"(at most {MAX_DEGREE})", positional[MAX_DEGREE + 1].span)
            values.append((row.variadic, tuple(self.number(a, env, "a coefficient") for a in positional)))
            args = [a for a in args if isinstance(a, ast.Keyword)]
        bound = self.bind(what, specs, args, env, st.name_span)
        values += [(s.name, s.convert(self, bound[s.name].value, bound[s.name].span, s.name, env)) for s in specs]
        return Activation(row.name, tuple(values), st.span)

    def activation_body(self, d: ast.ActivationDef) -> sp.Expr:
        """The body of ``activation NAME(x, p = ...) = EXPR`` over real symbols x and p."""
        variable = d.params[0]
        if variable.default is not None:
            raise ArgumentSpecError(
                f"the first parameter of activation '{d.name}' is its variable and takes no default", variable.span)
        names = [p.name for p in d.params]
        for p in d.params:
            if names.count(p.name) > 1:
                raise NameSpecError(f"activation '{d.name}' has two parameters named '{p.name}'", p.span)
        env = {p.name: sp.Symbol(p.name, real=True) for p in d.params}
        self.functions, self.max_depth = ACTIVATION_FUNCTIONS, self.depth + MAX_ACTIVATION_NESTING
        try:
            body = self.number(d.body, env, "an expression")
        finally:
            self.functions, self.max_depth = FUNCTIONS, MAX_NESTING
        check_degree(body, env[variable.name], d.body.span, f"activation '{d.name}'")
        return body

    def custom_activation(self, d: ast.ActivationDef, st: ast.LayerCall, env: Mapping[str, Value]) -> CustomActivation:
        specs = [Spec(p.name, REQUIRED if p.default is None else p.default, None) for p in d.params[1:]]
        bound = self.bind(f"activation '{d.name}'", specs, st.args, env, st.name_span, lazy_defaults=True)
        values: Dict[str, Value] = {}
        for p in d.params[1:]:  # defaults may refer to lets and to earlier parameters
            b = bound[p.name]
            raw = self.evaluate(b.value.expr, values) if isinstance(b.value, _Default) else b.value
            values[p.name] = real(self, raw, b.span, p.name, env)
        return CustomActivation(d.name, d.params[0].name, self.activation_bodies[d.name],
                                      tuple(values.items()), st.span)

    def block(self, block: ast.BlockDef, st: ast.LayerCall, env: Mapping[str, Value], param: str) -> List[Layer]:
        if block.name in self.block_stack:
            chain = " -> ".join(self.block_stack[self.block_stack.index(block.name):] + [block.name])
            raise _SelfCall(f"block '{block.name}' calls itself ({chain})", st.name_span)
        specs = [Spec(p.name, p.default if p.default is not None else REQUIRED, None) for p in block.params]
        args = self.bind(f"block '{block.name}'", specs, st.args, env, st.name_span, lazy_defaults=True)
        inner: Dict[str, Value] = {}
        for p in block.params:  # defaults may refer to lets and to earlier parameters
            b = args[p.name]
            inner[p.name] = self.evaluate(b.value.expr, inner) if isinstance(b.value, _Default) else b.value
        self.block_stack.append(block.name)
        try:
            with self.deeper(st.name_span):
                return self.body(block.body, inner, param)
        except SpecError as exc:  # the mistake is in the body; say which call supplied its values
            where = st.name_span
            if where is not None and not isinstance(exc, _SelfCall):  # (a self-call names its chain)
                exc.notes += _call_note(exc.notes, f"note: in block '{block.name}' called at "
                                                   f"{where.file}:{where.line}:{where.col}")
            raise
        finally:
            self.block_stack.pop()

    def bind(
        self,
        what: str,
        specs: Sequence[Spec],
        args: Sequence[ast.Argument],
        env: Mapping[str, Value],
        call_span: Optional[Span],
        lazy_defaults: bool = False,
    ) -> Dict[str, _Bound]:
        """Match positional then keyword arguments to ``specs``; values are evaluated in ``env``."""
        names = [s.name for s in specs]
        bound: Dict[str, _Bound] = {}
        seen_keyword = False
        for i, a in enumerate(args):
            if isinstance(a, ast.Keyword):
                seen_keyword = True
                if a.name not in names:
                    raise ArgumentSpecError(
                        f"{what} has no parameter '{a.name}'{did_you_mean(a.name, names)}"
                        + (f" (parameters: {', '.join(names)})" if names else " (it takes no parameters)"),
                        a.span,
                    )
                if a.name in bound:
                    raise ArgumentSpecError(f"{what}: '{a.name}' is given twice", a.span)
                bound[a.name] = _Bound(self.evaluate(a.value, env), a.value.span)
            else:
                if seen_keyword:
                    raise ArgumentSpecError(f"{what}: a positional argument follows a keyword argument", a.span)
                if i >= len(specs):
                    raise ArgumentSpecError(
                        f"{what} takes {_count(len(specs))}"
                        + (f" ({', '.join(names)})" if names else "")
                        + f", got {sum(not isinstance(x, ast.Keyword) for x in args)}",
                        a.span,
                    )
                bound[specs[i].name] = _Bound(self.evaluate(a, env), a.span)
        for s in specs:
            if s.name not in bound:
                if s.default is REQUIRED:
                    raise ArgumentSpecError(f"{what} needs the argument '{s.name}'", call_span)
                value = _Default(s.default) if lazy_defaults else s.default
                bound[s.name] = _Bound(value, call_span)
        return bound


@dataclass(frozen=True)
class _Default:
    """A block parameter's default expression, evaluated once the earlier parameters are bound."""

    expr: ast.Expr


_MAX_NOTES = 8  # block-call notes under one error: the innermost calls, then "..."


def _call_note(notes: Tuple[str, ...], note: str) -> Tuple[str, ...]:
    """The note to add below ``notes``: itself, "..." once the list is long, or nothing after that."""
    if len(notes) < _MAX_NOTES:
        return (note,)
    return () if notes[-1] == "note: ..." else ("note: ...",)


def _count(n: int) -> str:
    return "no arguments" if n == 0 else ("at most 1 argument" if n == 1 else f"at most {n} arguments")


