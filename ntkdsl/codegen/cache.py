"""Generated modules that numba compiles, kept as files so that its on-disk cache can find them.

numba caches compiled functions beside their source file (``__pycache__``) and refuses ``cache=True``
for source that has no file. :func:`load_cached_module` writes the text once, named by its
structure (:func:`structure_digest`), into a cache folder (atomically), and imports it from there:
the second process that evaluates the same network loads the machine code instead of compiling it
again, and so does every network of the same structure, whatever the values of its run-time
parameters (σ_w, σ_b, ...: arguments of ``kernels(..., params=)``). The file keeps the text of the
first network of its structure: its comments and PARAMETERS show that network's numbers, and
ntkdsl passes each network's own parameters at every call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import re
import sys
import tempfile
import tokenize
import types
from pathlib import Path
from typing import Optional

import numpy as np

from ..progress import note


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ntkdsl`` (``~/.cache/ntkdsl``), or a folder under the temp dir if that is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ntkdsl"


_C_COMMENT = re.compile(r"//[^\n]*")  # inside the CUDA source strings of the CuPy backend
_LINE_START = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.NL)


def structure_digest(source: str) -> str:
    """The sha256 (16 hex digits) of a generated module's code: its tokens without comments,
    docstrings (which name the network, its file and its numbers), C comments in CUDA strings and
    the ``PARAMETERS`` table (the run-time parameters' default values). Two networks that differ
    only in run-time parameters have the same digest, so they share one compiled module."""
    kept, skip, previous = [], False, tokenize.NEWLINE
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for k, tok in enumerate(tokens):
        following = tokens[k + 1] if k + 1 < len(tokens) else tok
        if skip:  # the rest of a dropped statement, up to and with its NEWLINE
            skip = tok.type != tokenize.NEWLINE
            continue
        if previous in _LINE_START and (
                (tok.type == tokenize.NAME and tok.string == "PARAMETERS" and following.string == "=")
                or (tok.type == tokenize.STRING and following.type == tokenize.NEWLINE)):  # the table; a docstring
            skip = True
            continue
        if tok.type in (tokenize.COMMENT, tokenize.NL):
            continue
        text = _C_COMMENT.sub("", tok.string) if tok.type == tokenize.STRING else tok.string
        kept.append(f"{tok.type}:{text}")
        previous = tok.type
    return hashlib.sha256("\n".join(kept).encode("utf-8")).hexdigest()[:16]


def _stem(source: str, name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)[:40] + f"_{structure_digest(source)}"


def _folders(cache_dir: Optional[os.PathLike]):
    return (Path(cache_dir) if cache_dir else default_cache_dir(), Path(tempfile.gettempdir()) / "ntkdsl-cache")


def compiled_on_disk(source: str, name: str, cache_dir: Optional[os.PathLike] = None, dtype=None) -> bool:
    """Whether numba's disk cache holds compiled code of this module's structure (its index files,
    ``__pycache__/<stem>.*.nbi``): loading it takes a fraction of a second, compiling it seconds.
    With ``dtype`` (float64 or float32): compiled for it (:func:`specialised`; the fused vector
    loops take their number type as an argument, and numba compiles one specialisation per type)."""
    stem = _stem(source, name)
    return any(_compiled_in(folder / "kernels", stem, dtype) for folder in _folders(cache_dir))


def _compiled_in(kernels: Path, stem: str, dtype=None) -> bool:
    indexes = list((kernels / "__pycache__").glob(f"{stem}.*.nbi"))
    if not indexes or dtype is None:
        return bool(indexes)
    signatures = [_indexed(path) for path in indexes]
    return all(sigs is not None and specialised(sigs, dtype) for sigs in signatures)


def specialised(signatures, dtype) -> bool:
    """Whether a numba function's compiled ``signatures`` (tuples of numba types) cover ``dtype``:
    a function that takes a number type (``F`` of the fused vector loops, numba's ``class(float32)``)
    needs a signature with dtype's; one that takes none serves every dtype once compiled at all."""
    typed = [str(sig) for sig in signatures if "class(float" in str(sig)]
    wanted = f"class({np.dtype(dtype).name})"
    return not typed or any(wanted in sig for sig in typed)


def compiled_for(module, dtype) -> bool:
    """Whether every numba function of a loaded module has been compiled in this process, for dtype."""
    compiled = [f.signatures for f in vars(module).values() if getattr(f, "signatures", None)]
    return bool(compiled) and all(specialised(sigs, dtype) for sigs in compiled)


def _indexed(path: Path) -> Optional[list]:
    """The signatures in a numba cache index (numba's own format: a pickled version string, then a
    pickled (source stamp, {(signature, target, ...): data file})); None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            pickle.load(f)
            _, overloads = pickle.loads(f.read())
        return [key[0] for key in overloads]
    except Exception:  # noqa: BLE001 - another numba version's or a half-written index: not usable
        return None


def load_cached_module(source: str, name: str, cache_dir: Optional[os.PathLike] = None) -> types.ModuleType:
    """Import generated source from ``cache_dir/kernels/<name>_<digest>.py`` (written if missing;
    digest: :func:`structure_digest`, so a module of the same structure already there is used as it is).

    Only ntkdsl-generated source comes here (built from validated names and numbers).

    Args:
        source: the module text.
        name: a readable name (the network's); becomes part of the file name.
        cache_dir: where to keep it; default :func:`default_cache_dir`.
    """
    stem = _stem(source, name)
    for folder in _folders(cache_dir):
        path = folder / "kernels" / f"{stem}.py"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(source)
                os.replace(tmp, path)
            break
        except OSError:
            continue
    else:
        raise OSError("no writable folder for compiled kernels (tried the cache dir and the temp dir)")
    module_name = f"ntkdsl_generated_{stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if not _compiled_in(path.parent, stem):
        note(f"compiling the numba kernels of network {name} once (seconds; cached in {path.parent})")
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # numba's cache finds the module's globals by this name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
