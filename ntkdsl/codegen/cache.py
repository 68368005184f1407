"""Generated modules that numba compiles, kept as files so that its on-disk cache can find them.

numba caches compiled functions beside their source file (``__pycache__``) and refuses ``cache=True``
for source that has no file. :func:`load_cached_module` writes the text once, named by its digest,
into a cache folder (atomically), and imports it from there: the second process that evaluates the
same network loads the machine code instead of compiling it again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Optional


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ntkdsl`` (``~/.cache/ntkdsl``), or a folder under the temp dir if that is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ntkdsl"


def load_cached_module(source: str, name: str, cache_dir: Optional[os.PathLike] = None) -> types.ModuleType:
    """Import generated source from ``cache_dir/kernels/<name>_<digest>.py`` (written if missing).

    Only ntkdsl-generated source comes here (built from validated names and numbers).

    Args:
        source: the module text.
        name: a readable name (the network's); becomes part of the file name.
        cache_dir: where to keep it; default :func:`default_cache_dir`.
    """
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    stem = "".join(ch if ch.isalnum() else "_" for ch in name)[:40] + f"_{digest}"
    for folder in (Path(cache_dir) if cache_dir else default_cache_dir(), Path(tempfile.gettempdir()) / "ntkdsl-cache"):
        path = folder / "kernels" / f"{stem}.py"
        try:
            if not path.exists() or path.read_text(encoding="utf-8") != source:
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
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # numba's cache finds the module's globals by this name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
