"""The support code a printed module carries: the definitions its expressions call, copied verbatim
from the support modules of this package (σ helpers, the quadrature and Mehler routines, the spatial
routines), so a generated module runs on its own."""

from __future__ import annotations

import inspect

from . import mehler, spatial_support, support


def support_sources(functions) -> str:
    """Module-level definitions the printed expressions call: σ functions and the quadrature routine."""
    parts = []
    if "perp" in functions:
        parts.append(inspect.getsource(support.perp))
    if "gaussian_expectation" in functions:
        parts += [support_source(), mehler.source()]  # the quadrature routines (_Quiet) and the Mehler series modules call
    spatial = [name for name in functions if name in spatial_support.ROUTINES]
    if spatial:
        parts.append(spatial_support.routine_sources(spatial))
    parts += [src for name, src in sorted(functions.items())
              if name not in ("gaussian_expectation", "perp") and name not in spatial_support.ROUTINES]
    return "".join("\n\n" + p.rstrip("\n") + "\n" for p in parts)


def support_source() -> str:
    """The quadrature routine of :mod:`.support`, verbatim, with its constants."""
    constants = [f"{name} = {getattr(support, name)!r}" for name in
                 ("GAUSS_PANEL_EDGES", "SIGMA_PANEL_EDGES", "GAUSS_TAIL", "GAUSS_NODES", "TAIL_RATIO")]
    functions = [inspect.getsource(getattr(support, name)).rstrip("\n") for name in
                 ("gaussian_expectation", "gaussian_expectations", "_panels", "_edges", "_expectation", "_decayed", "_Quiet",
                  "_leggauss")]
    return "\n".join(constants) + "\n\n\n" + "\n\n\n".join(functions) + "\n"

