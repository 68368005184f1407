"""The activation catalog as a table: for ``ntkdsl activations`` and docs/activations.md.

Run ``python -m ntkdsl.activations.catalog > docs/activations.md`` to regenerate the document;
a test checks that the committed file is current.
"""

from __future__ import annotations

import textwrap
from typing import Collection, List, Optional

import sympy as sp

from .dual import row_dual
from .registry import REGISTRY, ActivationRow


def _signature(row: ActivationRow) -> str:
    params = []
    if row.variadic:
        params.append(f"{row.variadic}...")
    for p in row.params:
        if p.kind == "word":  # the default first: approximate = none | tanh
            params.append(f"{p.name} = {' | '.join(sorted(p.words, key=lambda w: w != p.default))}")
        else:
            params.append(p.name if p.default is None else f"{p.name} = {p.default}")
    return f"{row.name}({', '.join(params)})" if params else row.name


def _formulas(row: ActivationRow):
    """(K, K̇) as plain text at symbolic q1, q2, c and parameters; the integral for numerical rows."""
    q1, q2 = sp.symbols("q1 q2", nonnegative=True)
    c = sp.Symbol("c", real=True)
    if row.variadic:
        args = {row.variadic: sp.symbols("a0:3", real=True)}
    else:
        args = {}
    for p in row.params:
        if p.kind == "natural":
            args[p.name] = int(p.default) if p.default is not None else 2
        elif p.kind == "word":  # the formulas shown are those of the default word
            args[p.name] = p.default
        else:  # a parameter named like the kernel's own variables is shown with a subscript 0
            args[p.name] = sp.Symbol(p.name + ("0" if p.name in ("c", "q1", "q2") else ""), real=True)
    if not row.exact:
        return "E[σ(u)σ(v)] (quadrature)", "E[σ'(u)σ'(v)] (quadrature)"
    dual = row_dual(row, args, q1, q2, c)
    return _text(dual.nngp), _text(dual.nngp_dot)


def _kind(row: ActivationRow) -> str:
    """How the dual is obtained; for a row exact only for some words, which words are numerical."""
    if not row.exact:
        return "numerical"
    if row.closed_form_when is None:
        return "closed form"
    numerical = [f"{p.name} = {w}" for p in row.params for w in p.words if not row.exact_for({p.name: w})]
    return f"closed form; numerical for {', '.join(numerical)}" if numerical else "closed form"


_SHORTHANDS = [  # structural functions of ntkdsl.algebra.functions, written as the math they stand for
    ("larger(q1, q2)*smaller(q1, q2)", "q1*q2"),
    ("cos_angle(c, q1*q2)", "cos θ"),
    ("sin_angle(c, q1*q2)", "sin θ"),
    ("perp(c, q1*q2)", "√(q1q2)·sin θ"),
    ("angle(c, q1*q2)", "θ"),
    ("larger(q1, q2)", "max(q1, q2)"),
    ("smaller(q1, q2)", "min(q1, q2)"),
    ("larger(", "max("),  # e.g. trig.py's max(q1 + q2 − 2c, 0): rounding near ρ = 1 kept from turning it negative
    ("**", "^"),
]


def _text(expr: sp.Expr) -> str:
    text = str(expr)
    for long, short in _SHORTHANDS:
        text = text.replace(long, short)
    return text


def rows(names: Optional[Collection[str]] = None) -> List[dict]:
    """One dict per activation (only those in ``names``, when given): name (with parameters),
    aliases, σ, K, K̇, exact?, reference."""
    aliases = {}
    for alias, name in REGISTRY.aliases.items():
        aliases.setdefault(name, []).append(alias)
    out = []
    for row in sorted(REGISTRY, key=lambda r: r.name):
        if names is not None and row.name not in names:
            continue
        k, kdot = _formulas(row)
        out.append({
            "name": _signature(row),
            "aliases": ", ".join(aliases.get(row.name, [])),
            "sigma": row.doc,
            "nngp": k,
            "nngp_dot": kdot,
            "kind": _kind(row),
            "reference": row.citation,
        })
    return out


def markdown() -> str:
    lines = [
        "# Activation catalog",
        "",
        "Generated from the registry by `python -m ntkdsl.activations.catalog > docs/activations.md`;",
        "do not edit by hand. K = E[σ(u)σ(v)], K̇ = E[σ'(u)σ'(v)] for (u, v) ~ N(0, [[q1, c], [c, q2]]),",
        "θ = arccos(c/√(q1q2)). Conventions: kernel-math.md §3. Custom activations",
        "(`activation NAME(x) = EXPR`) get exact duals when ntkdsl can derive them, numerical ones otherwise.",
        "`mills`, `mills_rem`, `wedge`, `wedge_rem` (ELU, SELU): Mills' ratio Φ(−x)/φ(x) and Owen's T scaled by its",
        "exponential, with their expansions past first order (ntkdsl/activations/elu.py, ntkdsl/arraycode/wedge_support.py).",
        "",
        "| activation | σ | K | K̇ | dual | reference |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows():
        name = f"`{r['name']}`" + (f" (alias {r['aliases']})" if r["aliases"] else "")
        cells = [name, r["sigma"], f"`{r['nngp']}`", f"`{r['nngp_dot']}`", r["kind"], r["reference"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def matching(text: str) -> List[str]:
    """Registry names for ``text``: the activation it names (or aliases), else every name containing it."""
    name = REGISTRY.aliases.get(text, text)
    if any(row.name == name for row in REGISTRY):
        return [name]
    return sorted(row.name for row in REGISTRY if text.lower() in row.name)


def text_table(names: Optional[Collection[str]] = None, width: Optional[int] = None) -> str:
    """A compact listing for the terminal (only ``names``, when given), lines wrapped at ``width``."""
    out = []
    for r in rows(names):
        alias = f" (alias {r['aliases']})" if r["aliases"] else ""
        entries = [(f"{r['name']}{alias}  [{r['kind']}]  σ = {r['sigma']}", "    "),
                   (f"    K  = {r['nngp']}", "         "), (f"    K̇  = {r['nngp_dot']}", "         "),
                   (f"    ref: {r['reference']}", "         ")]
        for text, indent in entries:
            out.append(textwrap.fill(text, width, subsequent_indent=indent, break_on_hyphens=False) if width else text)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown())
