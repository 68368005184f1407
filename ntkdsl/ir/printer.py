"""IR -> canonical .ntk text, which parses and lowers back to an equal IR.

Blocks and repeats are expanded, every argument is written out by keyword (widths positionally),
and values are exact expressions in the language's own syntax (``3/2``, ``sqrt(2)``, ``pi``).
"""

from __future__ import annotations

import sympy as sp

from . import nodes

_FUNCS = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.tanh: "tanh", sp.erf: "erf",
          sp.Abs: "abs", sp.sign: "sign"}


def format_value(v: sp.Expr) -> str:
    """An exact sympy expression (a number, or an activation body) in .ntk expression syntax."""
    if v is sp.pi:
        return "pi"
    if v is sp.E:
        return "exp(1)"
    if v.is_Symbol:
        return v.name
    if v.is_Integer:
        return str(int(v))
    if v.is_Rational:
        return f"{v.p}/{v.q}"
    if v.is_Add:
        return " + ".join(_operand(a) for a in v.args)
    if v.is_Mul:
        return "*".join(_operand(a) for a in v.args)
    if v.is_Pow:
        base, exp = v.args
        if exp == sp.S.Half:
            return f"sqrt({format_value(base)})"
        return f"{_operand(base)}**{_operand(exp)}"
    if isinstance(v, (sp.Max, sp.Min)):  # n-ary in sympy, binary in the language
        name = "max" if isinstance(v, sp.Max) else "min"
        first, *rest = v.args
        return f"{name}({format_value(first)}, {format_value(type(v)(*rest)) if len(rest) > 1 else format_value(rest[0])})"
    if isinstance(v, sp.Heaviside):
        return f"step({format_value(v.args[0])})"
    for func, name in _FUNCS.items():
        if isinstance(v, func):
            return f"{name}({format_value(v.args[0])})"
    raise ValueError(f"cannot print {v!r} in .ntk syntax")


def _operand(v: sp.Expr) -> str:
    text = format_value(v)
    atomic = (v.is_Integer and v >= 0) or v.is_Symbol or v is sp.pi or isinstance(v, sp.Function) or text.startswith("sqrt(")
    return text if atomic else f"({text})"


def _ints(values) -> str:
    """A per-dimension tuple in sequence syntax: ``(3, 3)``, ``(3,)`` for one dimension."""
    return "(" + ", ".join(str(int(v)) for v in values) + ("," if len(values) == 1 else "") + ")"


def format_header(layer) -> str:
    """One line naming ``layer``: its full text, or for a branching layer the part before its bodies."""
    from .branches import Parallel, Residual

    if isinstance(layer, Residual):
        return f"residual(scale = {format_value(layer.scale)})"
    if isinstance(layer, Parallel):
        return f"parallel(merge = {layer.merge})"
    return format_layer(layer)


def format_layer(layer: nodes.Layer, indent: str = "") -> str:
    """The canonical text of one layer; a branching layer spans several lines (bodies at ``indent`` + 4)."""
    from .branches import Parallel, Residual
    from .spatial import Conv, Flatten, GlobalPool, LayerNorm, Pool

    if isinstance(layer, (Residual, Parallel)):
        inner = indent + "    "
        bodies = [layer.body] if isinstance(layer, Residual) else layer.branches
        text = format_header(layer)
        for body in bodies:
            lines = [f"{inner}{format_layer(b, inner)}" for b in body]
            text += " {\n" + "".join(line + "\n" for line in lines) + indent + "}"
        return text
    if isinstance(layer, Conv):
        args = [str(layer.channels), f"kernel = {_ints(layer.kernel_size)}", f"stride = {_ints(layer.stride)}",
                f"padding = {layer.padding}", f"w_std = {format_value(layer.w_std)}",
                "b_std = none" if layer.b_std is None else f"b_std = {format_value(layer.b_std)}",
                f"parameterization = {layer.parameterization}"]
        return f"conv({', '.join(args)})"
    if isinstance(layer, Pool):
        return (f"{layer.mode}_pool({_ints(layer.window)}, stride = {_ints(layer.stride)}, "
                f"padding = {layer.padding})")
    if isinstance(layer, GlobalPool):
        return f"global_{layer.mode}_pool"
    if isinstance(layer, Flatten):
        return "flatten"
    if isinstance(layer, LayerNorm):
        return f"layer_norm(eps = {format_value(layer.eps)})"
    if isinstance(layer, nodes.Dense):
        args = [str(layer.width), f"w_std = {format_value(layer.w_std)}"]
        args.append("b_std = none" if layer.b_std is None else f"b_std = {format_value(layer.b_std)}")
        args.append(f"parameterization = {layer.parameterization}")
        return f"dense({', '.join(args)})"
    if isinstance(layer, nodes.Identity):
        return "identity"
    if isinstance(layer, nodes.Activation):
        if not layer.args:
            return layer.name
        args = []
        for k, v in layer.args:
            if isinstance(v, tuple):  # a variadic parameter: positional values
                args += [format_value(x) for x in v]
            else:
                args.append(f"{k} = {format_value(v)}")
        return f"{layer.name}({', '.join(args)})"
    if isinstance(layer, nodes.CustomActivation):
        if not layer.args:
            return layer.name
        return f"{layer.name}({', '.join(f'{k} = {format_value(v)}' for k, v in layer.args)})"
    raise TypeError(f"unknown layer {layer!r}")


def format_activation_definition(layer: nodes.CustomActivation) -> str:
    """``activation NAME(x, p, ...) = BODY``: parameters without defaults (every call names them)."""
    params = ", ".join([layer.variable] + [k for k, _ in layer.args])
    return f"activation {layer.name}({params}) = {format_value(layer.body)}"


def format_network(net: nodes.Network) -> str:
    """The canonical text of ``net``."""
    shape = str(net.input_shape[0]) if len(net.input_shape) == 1 else "[" + ", ".join(map(str, net.input_shape)) + "]"
    definitions = {format_activation_definition(layer) for layer in _all_layers(net.layers)
                   if isinstance(layer, nodes.CustomActivation)}
    lines = sorted(definitions) + [f"network {net.name}(input = {shape}, parameterization = {net.parameterization}) {{"]
    lines += [f"    {format_layer(layer, '    ')}" for layer in net.layers]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _all_layers(layers):
    """Every layer, those inside branches included (pre-order)."""
    for layer in layers:
        yield layer
        for branch in getattr(layer, "branch_sequences", lambda: ())():
            yield from _all_layers(branch)
