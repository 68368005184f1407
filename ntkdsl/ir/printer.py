"""IR -> canonical .ntk text, which parses and lowers back to an equal IR.

Blocks and repeats are expanded, every argument is written out by keyword (widths positionally),
and values are exact expressions in the language's own syntax (``3/2``, ``sqrt(2)``, ``pi``); each
layer writes its own text (:meth:`ntkdsl.ir.layer.Layer.format`) with :func:`format_value`.
"""

from __future__ import annotations

import sympy as sp

from .network import all_layers

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


def format_network(net) -> str:
    """The canonical text of ``net``."""
    shape = str(net.input_shape[0]) if len(net.input_shape) == 1 else "[" + ", ".join(map(str, net.input_shape)) + "]"
    definitions = {text for layer in all_layers(net.layers) for text in layer.definitions()}
    lines = sorted(definitions) + [f"network {net.name}(input = {shape}, parameterization = {net.parameterization}"
                                     f"{', readout = none' if net.readout == 'none' else ''}) {{"]
    lines += [f"    {layer.format('    ')}" for layer in net.layers]
    lines.append("}")
    return "\n".join(lines) + "\n"
