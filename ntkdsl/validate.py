"""Validation of what users hand ntkdsl: one set of rules for the Python API and the command line.

Every entry point that takes inputs (``net.kernels``, ``net.kernels_to_disk``, ``net.finite(...)``'s
methods, ``ntkdsl.monte_carlo``, ``KernelFlow``, ``ntkdsl eval``, ``ntkdsl sample``, ``ntkdsl flow``)
passes them through :func:`finite_array` or :func:`points`, so the same mistake gets the same
``ValueError`` everywhere, naming the argument and the problem:

* a list or tuple of numbers is converted; so are integer, boolean, float16 and long-double arrays
  (to float64, exactly for every integer up to 2⁵³); float32 and float64 arrays are kept as they are;
* complex numbers are refused (no silent dropping of imaginary parts), as are strings, objects,
  None entries and ragged nested lists;
* NaN and infinite entries are refused: every kernel of them would be NaN;
* :func:`points` also checks the shape: (N, *input shape), N ≥ 0.
"""

from __future__ import annotations

from tokenize import TokenError
from typing import Callable, Optional, Sequence

import numpy as np

KEPT = (np.dtype(np.float64), np.dtype(np.float32))  # float dtypes passed through unconverted


def _on_device(a) -> bool:
    return hasattr(a, "__cuda_array_interface__")


def finite_array(a, name: str, *, keep_float32: bool = True, where: str = ""):
    """``a`` as an array of finite real numbers (float64, or float32 when it is float32 and
    ``keep_float32``); a CuPy array stays on its device.

    ``where`` follows the name in messages (e.g. " in 'x.npy'").

    Raises:
        ValueError: naming ``name``: None, strings or other objects, complex numbers, a ragged
            nested list, NaN or infinity.
    """
    if a is None:
        raise ValueError(f"{name}{where} is None; expected an array of numbers")
    if _on_device(a):
        import cupy as xp  # an array with the CUDA interface: CuPy is installed
    else:
        xp = np
    try:
        arr = xp.asarray(a)
    except (TypeError, ValueError):  # ragged lists: numpy ≥ 1.24 refuses to make object arrays of them
        raise ValueError(f"{name}{where} is not a rectangular array of numbers (rows of different lengths?)") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(f"{name}{where} holds complex numbers; ntkdsl takes real inputs (their .real, if that is meant)")
    if kind not in "fiub":
        what = "None or other objects" if kind == "O" else f"{arr.dtype} values"
        raise ValueError(f"{name}{where} holds {what}, not numbers")
    if arr.dtype not in KEPT or (arr.dtype == np.float32 and not keep_float32):
        arr = arr.astype(np.float64)
    if kind == "f" and arr.size and not bool(xp.isfinite(arr).all()):
        bad = int((~xp.isfinite(arr)).sum())
        raise ValueError(f"{name}{where} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}")
    return arr


def points(x, shape: Sequence[int], name: str, *, where: str = "", allow_empty: bool = True):
    """``x`` checked as N input points of the given per-point ``shape`` (:func:`finite_array`).

    Args:
        x: array-like of shape (N, *shape).
        shape: the network's input shape, e.g. (784,) or (32, 32, 3).
        name: the argument's name in messages ("x1", "--x2", ...).
        where: follows the name in messages (e.g. " in 'x.npy'").
        allow_empty: whether N = 0 is accepted (empty kernels).

    Raises:
        ValueError: as :func:`finite_array`, or the wrong shape, or no points when they are needed.
    """
    arr = finite_array(x, name, where=where)
    if arr.ndim == 0:
        raise ValueError(f"{name}{where} is a single number ({x!r}); this network needs an array of shape "
                         f"{_wanted(shape)}")
    _check_shape(tuple(arr.shape), shape, name, where, allow_empty)
    return arr


def _wanted(shape: Sequence[int]) -> str:
    return f"(N, {', '.join(str(int(n)) for n in shape)})"


def _check_shape(got: tuple, shape: Sequence[int], name: str, where: str, allow_empty: bool) -> None:
    shape = tuple(int(n) for n in shape)
    if len(got) != len(shape) + 1 or tuple(got[1:]) != shape:
        hint = " (one point? add an axis: x[None])" if got == shape and name.isidentifier() else ""
        raise ValueError(f"{name}{where} has shape {got}; this network needs {_wanted(shape)}{hint}")
    if not allow_empty and got[0] == 0:
        raise ValueError(f"{name}{where} holds no points")


def npy_header(f, size: int, name: str, *, where: str = "", shape: Optional[Sequence[int]] = None,
               allow_empty: bool = True) -> None:
    """Check a stored .npy array from its header alone, before any of its data is read.

    ``f`` is the open binary file (or .npz member) positioned at its start, ``size`` its length in
    bytes; it is rewound to its start afterwards. The header's shape and dtype are checked as
    :func:`points` would check the array (``shape``: the per-point shape, or None for any shape),
    and its data must fit in the file: a header that promises more than the file holds (a
    truncated or forged file) would otherwise make numpy allocate the promised size first.
    Header format: numpy.lib.format (NEP 1), versions 1.0 and 2.0.

    Raises:
        ValueError: naming ``name``: not a .npy header, objects or complex numbers, a shape the
            network cannot take, or fewer bytes than the header promises.
    """
    fmt = np.lib.format
    readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
    try:
        version = fmt.read_magic(f)
        got, _, dtype = readers[version](f)
    except (ValueError, KeyError, EOFError, SyntaxError, TokenError):  # numpy's header parser tokenizes it
        raise ValueError(f"{name}{where} is not a .npy array of numbers (write one with numpy.save)") from None
    if dtype.hasobject or dtype.kind not in "fiubc":
        raise ValueError(f"{name}{where} holds {'None or other objects' if dtype.hasobject else f'{dtype} values'}, "
                         "not numbers")
    if dtype.kind == "c":
        raise ValueError(f"{name}{where} holds complex numbers; ntkdsl takes real inputs (their .real, if that is meant)")
    if shape is not None:
        _check_shape(tuple(got), shape, name, where, allow_empty)
    need, left = int(np.prod(got, dtype=object)) * dtype.itemsize, size - f.tell()
    if need > left:
        raise ValueError(f"{name}{where} is shorter than its header says: shape {tuple(got)} of {dtype} needs "
                         f"{need} bytes of data, the file holds {max(left, 0)} (truncated?)")
    f.seek(0)


def number(value, name: str, condition: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a finite float satisfying ``ok``; a ValueError naming ``name`` and ``condition``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, (bool, np.bool_)) or not (np.isfinite(v) and ok(v)):
        raise ValueError(f"{name} must be a finite number {condition}, not {value!r}")
    return v


def seed(value, name: str = "seed", *, root: bool = False):
    """A seed numpy's random generators accept: None, a non-negative integer or a sequence of
    them, or (unless ``root``: a seed that must spawn a :class:`numpy.random.SeedSequence`) a
    SeedSequence, BitGenerator or Generator. A ValueError naming ``name`` otherwise."""
    try:
        np.random.SeedSequence(value) if root else np.random.default_rng(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-negative integer (or None), not {value!r}") from None
    return value


def npz_member_header(data, key: str, name: str, **checks) -> None:
    """:func:`npy_header` of the array ``key`` of an open .npz (``numpy.load``'s NpzFile), read from its
    member's header alone; ``checks`` as npy_header's keywords."""
    member = key + ".npy" if key + ".npy" in data.zip.namelist() else key
    with data.zip.open(member) as f:
        npy_header(f, data.zip.getinfo(member).file_size, name, **checks)
