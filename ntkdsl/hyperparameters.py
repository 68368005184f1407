"""Hyperparameter sweeps: a compiled network at other values of its real parameters.

``net.with_hyperparameters(name=value, ...)`` accepts two kinds of names:

* a ``let`` of the spec (``beta`` in examples/mlp.ntk): the spec is lowered again with that value,
  so every expression that reads the let changes, as if the file said so;
* a layer parameter's kind, as :attr:`ntkdsl.KernelProgram` names its symbols without the layer
  number: ``w_std``, ``b_std`` (layers that have a bias), ``scale`` (residual), and an activation's
  parameter prefixed by the activation (``erf_a``, ``leaky_relu_alpha``; custom activations
  likewise): the value is set on every layer that has it.

The numbers of a network reach its compiled modules at run time (``kernels(..., params=)``,
:attr:`ntkdsl.symbolic.program.KernelProgram.runtime_parameters`), so the new network shares the
modules of this one when the recursion has the same structure (nothing compiles again); a value
that changes the structure (a ``let`` used as a width, a window size or a monomial's degree) gives
a network that compiles its own.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from numbers import Real
from typing import Dict, Mapping, Tuple

import sympy as sp

from .errors import did_you_mean
from .frontend import ast, parse
from .ir.network import Network, all_layers
from .lowering import lower



def let_names(net) -> Dict[str, object]:
    """The spec's lets (name -> its expression's AST), those of the network's source text."""
    module = parse(net.source, net.filename) if net.source else None
    return {item.name: item for item in (module.items if module else ()) if isinstance(item, ast.LetDef)}


def kind_names(ir) -> Dict[str, int]:
    """Each layer-parameter kind of the network and how many layers have it."""
    out: Dict[str, int] = {}
    for layer in all_layers(ir.layers):
        for name in _kinds(layer):
            out[name] = out.get(name, 0) + 1
    return out


def with_values(net, values: Mapping[str, object]) -> Tuple[Network, str, Dict[str, Fraction]]:
    """The IR of ``net`` (a :class:`ntkdsl.CompiledNetwork`) with ``values`` (see the module docstring),
    a label naming them, and the let values the new network's spec now has.

    Raises:
        ValueError: an unknown name (with a suggestion), a name that is both a let and a layer
            parameter, or a value that is not a finite real number.
        SpecError: a let value the spec rejects (e.g. a width that is not a positive integer).
    """
    numbers = {name: _number(name, value) for name, value in values.items()}
    lets = let_names(net)
    kinds = kind_names(net.ir)
    for name in numbers:
        if name in lets and name in kinds:
            raise ValueError(f"{name!r} is both a let of the spec and a layer parameter; rename the let")
        if name not in lets and name not in kinds:
            known = sorted(set(lets) | set(kinds))
            raise ValueError(f"unknown hyperparameter {name!r}{did_you_mean(name, known)} "
                             f"(this network has: {', '.join(known) or 'none'})")
    overrides = dict(getattr(net, "_let_overrides", {}))
    overrides.update({k: v for k, v in numbers.items() if k in lets})
    ir = net.ir
    if any(k in lets for k in numbers):
        module = parse(net.source, net.filename)
        items = tuple(_with_value(item, overrides[item.name]) if isinstance(item, ast.LetDef) and item.name in overrides
                      else item for item in module.items)
        ir = lower(dataclasses.replace(module, items=items), ir.name)
    per_kind = {k: sp.Rational(v.numerator, v.denominator) for k, v in numbers.items() if k in kinds}
    if per_kind:
        ir = dataclasses.replace(ir, layers=_set(ir.layers, per_kind))
    return ir, ", ".join(f"{k} = {v}" for k, v in numbers.items()), overrides


def _with_value(let: ast.LetDef, value: Fraction) -> ast.LetDef:
    """The let with its expression replaced by the number ``value`` (at the expression's place)."""
    return dataclasses.replace(let, value=ast.Number(value, str(value), getattr(let.value, "span", None)))


def _number(name: str, value) -> Fraction:
    """``value`` as an exact fraction (a float by its decimal repr: 1.4 is 7/5, as in a spec)."""
    if isinstance(value, sp.Rational):
        return Fraction(int(value.p), int(value.q))
    if isinstance(value, (Fraction, int)) and not isinstance(value, bool):
        return Fraction(value)
    if isinstance(value, Real) and not isinstance(value, bool) and abs(float(value)) < float("inf"):
        return Fraction(repr(float(value)))
    raise ValueError(f"hyperparameter {name!r} must be a finite real number, not {value!r}")


def _kinds(layer) -> Dict[str, str]:
    """Kind name -> the layer's own parameter name, for its settable real parameters."""
    prefix = layer.parameter_prefix()  # erf_a for erf's a; variadic coefficients (c0, c1, ...) are not settable
    return {f"{prefix}{p}": p for p in layer.parameters() if not prefix or p in dict(layer.args)}


def _set(layers, per_kind: Mapping[str, sp.Expr]) -> tuple:
    """The layers with every parameter of a kind in ``per_kind`` set to its value."""
    out = []
    for layer in layers:
        if layer.branching:
            layer = layer.with_branches([_set(b, per_kind) for b in layer.finite_sequences()])
        own = {p: per_kind[k] for k, p in _kinds(layer).items() if k in per_kind}
        if own:
            layer = layer.with_parameters(own)
        out.append(layer)
    return tuple(out)
