"""The package's import graph: no cycles between modules or folders, and the lower folders never
import the higher ones (README "Layout"). Every import counts, those inside functions too: a lazy
import that breaks a cycle at load time is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "ntkdsl"

# folder -> the folders it may import (besides the modules at the top of the package, checked for cycles only)
ALLOWED = {
    "algebra": set(),
    "arraycode": {"algebra"},
    "frontend": set(),
    "activations": {"algebra", "arraycode"},
    "ir": {"algebra", "frontend"},
    "layers": {"algebra", "activations", "arraycode", "ir"},
    "lowering": {"activations", "frontend", "ir", "layers"},
    "symbolic": {"activations", "algebra", "ir"},
    "codegen": {"algebra", "arraycode", "ir", "symbolic"},
    "sampler": {"ir", "layers"},
}


def _modules() -> Dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports() -> Dict[str, Set[str]]:
    """Module -> the ntkdsl modules it imports anywhere in its text."""
    modules = _modules()
    edges: Dict[str, Set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: List[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ntkdsl"):
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("ntkdsl")]
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def _cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else module


def test_no_module_imports_itself_through_others():
    assert _cycles(_imports()) == []


def test_no_folder_imports_itself_through_others():
    edges: Dict[str, Set[str]] = {}
    for module, targets in _imports().items():
        edges.setdefault(_folder(module), set()).update(_folder(t) for t in targets if _folder(t) != _folder(module))
    assert _cycles(edges) == []


def test_lower_folders_import_only_below_them():
    wrong = []
    for module, targets in _imports().items():
        folder = _folder(module)
        if folder not in ALLOWED:
            continue
        for target in targets:
            other = _folder(target)
            if other != folder and other in ALLOWED and other not in ALLOWED[folder]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
