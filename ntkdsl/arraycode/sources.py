"""The support code a printed module carries: the definitions its expressions call, copied verbatim
from the support modules of this package (σ helpers, the quadrature and Mehler routines, the spatial
routines), so a generated module runs on its own."""

from __future__ import annotations

import inspect

from . import attention_support, mask_maps, mehler, spatial_maps, spatial_support, support


def support_sources(functions) -> str:
    """Module-level definitions the printed expressions call: σ functions and the quadrature routine."""
    parts = []
    if "perp" in functions:
        parts.append(inspect.getsource(support.perp))
    if "gaussian_expectation" in functions:
        parts += [support_source(), mehler.source()]  # the quadrature routines (_Quiet) and the Mehler series modules call
    spatial = [name for name in functions if name in ROUTINES]
    if spatial:
        parts.append(routine_sources(spatial))
    parts += [src for name, src in sorted(functions.items())
              if name not in ("gaussian_expectation", "perp") and name not in ROUTINES]
    return "".join("\n\n" + p.rstrip("\n") + "\n" for p in parts)


def support_source() -> str:
    """The quadrature routine of :mod:`.support`, verbatim, with its constants."""
    constants = [f"{name} = {getattr(support, name)!r}" for name in
                 ("GAUSS_PANEL_EDGES", "SIGMA_PANEL_EDGES", "GAUSS_TAIL", "GAUSS_NODES", "TAIL_RATIO")]
    functions = [inspect.getsource(getattr(support, name)).rstrip("\n") for name in
                 ("gaussian_expectation", "gaussian_expectations", "_panels", "_edges", "_expectation", "_decayed", "_Quiet",
                  "_leggauss")]
    return "\n".join(constants) + "\n\n\n" + "\n\n\n".join(functions) + "\n"


ROUTINES = {  # printed name -> the functions its generated module needs, in definition order
    "conv_taps": ("window_geometry", "_pixels", "_spatial_array", "_window_sum", "conv_taps"),
    "conv_transpose_taps": ("_pixels", "_spatial_array", "transpose_geometry", "fold_matrix", "transpose_taps",
                            "conv_transpose_taps"),
    "resize_map": ("_pixels", "_spatial_array", "resize_matrix", "resize_map"),
    "spatial_index": ("_pixels", "_spatial_array", "spatial_index"),
    "pool_window": ("window_geometry", "_pixels", "_spatial_array", "_window_sum", "pool_window"),
    "flatten_mean": ("_pixels", "_spatial_array", "flatten_mean"),
    "global_pool": ("_pixels", "_spatial_array", "global_pool"),
    "pixel_variance": ("_pixels", "_diagonal", "pixel_variance"),
    "spatial_diagonal": ("_pixels", "_diagonal", "spatial_diagonal"),
    "diagonal_embed": ("_pixels", "diagonal_embed"),
    "time_shift": ("_spatial_array", "time_shift"),
    "graph_aggregate": ("_spatial_array", "graph_aggregate"),
    "attention_weights": ("_pixels", "_spatial_array", "attention_weights"),
    "attention_map": ("_pixels", "_spatial_array", "attention_map"),
    "position_covariance": ("position_covariance",),
    "remask": ("_pixels", "_spatial_array", "_keep_factors", "remask"),
    "masked_mean": ("_pixels", "_spatial_array", "_diagonal", "_keep_factors", "masked_mean"),
    "masked_pool": ("_pixels", "_spatial_array", "_keep_factors", "masked_pool"),
    "masked_keys": ("_spatial_array", "_keep_factors", "masked_keys"),
    "input_covariances": ("_pixels", "input_variances", "input_covariances"),
    "input_variances": ("_pixels", "input_variances"),
}


def routine_sources(names) -> str:
    """The source of every routine that ``names`` need, each once, in a fixed order."""
    wanted = []
    for name in sorted(names):
        for fn in ROUTINES[name]:
            if fn not in wanted:
                wanted.append(fn)
    order = ("window_geometry", "_pixels", "_spatial_array", "_window_sum", "_diagonal")
    wanted.sort(key=lambda fn: (order.index(fn) if fn in order else len(order), fn))
    return "\n\n".join(inspect.getsource(_routine(fn)).rstrip("\n") + "\n" for fn in wanted)


def _routine(name: str):
    """A spatial routine by name, from whichever of the routine modules defines it."""
    return (getattr(spatial_maps, name, None) or getattr(mask_maps, name, None)
            or getattr(attention_support, name, None) or getattr(spatial_support, name))

