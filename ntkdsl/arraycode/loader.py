"""Generated source -> a live module, registered in ``linecache`` so tracebacks show its lines."""

from __future__ import annotations

import hashlib
import linecache
import types


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute generated source in a fresh module.

    Only ntkdsl-generated source comes here: it is built from validated names and numbers, never
    from user text (a .ntk file is data).

    Args:
        source: the module text from :func:`ntkdsl.codegen.emit.emit_module`.
        name: a readable name for tracebacks.
    """
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
    filename = f"<ntkdsl-generated {name} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"ntkdsl_generated_{digest}")
    module.__file__ = filename
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - generated code (see docstring)
    return module
