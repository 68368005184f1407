"""A CPU stand-in for CuPy that runs the CUDA source of ntkdsl's CuPy modules without a GPU.

``install(monkeypatch)`` binds ``cupy`` to NumPy (plus ``asnumpy`` and :class:`ElementwiseKernel`)
and ``cupyx.scipy.special`` to SciPy. :class:`ElementwiseKernel` takes the kernel exactly as a CuPy
module declares it (parameter lists, operation, preamble) and compiles that very text with a C++
compiler, wrapped the way CuPy wraps it: one loop over the broadcast elements, each input a const
reference to its element, each output a reference, ``i`` the flat index. So the tests execute the
printed CUDA expressions themselves (not a re-derivation of them) and compare them with the NumPy
backend. ``cuda_translation_unit`` gives the same text as a CUDA ``__global__`` kernel for nvcc.

Differences from the GPU that these tests cannot see: the device math library (CUDA's atan2, erf,
... are within 1-2 ulp of glibc's), NVRTC itself, and CuPy's own array functions.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types

import numpy as np
import scipy.linalg
import scipy.special

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
NVCC = shutil.which("nvcc")
_CTYPES = {"float64": ("double", ctypes.c_double), "float32": ("float", ctypes.c_float),
           "int64": ("long long", ctypes.c_longlong), "int32": ("int", ctypes.c_int), "bool": ("bool", ctypes.c_bool)}
_CACHE = os.path.join(tempfile.gettempdir(), f"ntkdsl-cupy-standin-{os.getuid() if hasattr(os, 'getuid') else 0}")


def _params(text):
    return [tuple(p.split()) for p in text.split(",") if p.strip()]


def translation_unit(in_params, out_params, operation, preamble, types_, device: bool) -> str:
    """The kernel as C++ (``device`` False: a host function over arrays) or CUDA (True: __global__).

    ``types_`` maps each type placeholder (G, R, ...) to a dtype name.
    """
    def ctype(t):
        return _CTYPES[types_.get(t, t)][0]

    ins, outs = _params(in_params), _params(out_params)
    args, refs = [], []
    for t, name in ins:
        if (types_.get(t, t)) in ("int64", "int32", "bool") and t not in types_:
            args.append(f"{ctype(t)} {name}")  # a scalar parameter
        else:
            args.append(f"const {ctype(t)}* __restrict__ _p_{name}")
            refs.append(f"const {ctype(t)} &{name} = _p_{name}[i];")
    for t, name in outs:
        args.append(f"{ctype(t)}* __restrict__ _p_{name}")
        refs.append(f"{ctype(t)} &{name} = _p_{name}[i];")
    args.append("long long _size")
    refs = "\n        ".join(refs)
    if device:
        head = "#include <cstddef>\n"
        signature = f'extern "C" __global__ void kernel({", ".join(args)})'
        loop = ("for (ptrdiff_t i = blockIdx.x * (ptrdiff_t) blockDim.x + threadIdx.x; i < _size; "
                "i += (ptrdiff_t) blockDim.x * gridDim.x)")
    else:
        head = "#include <math.h>\n#include <stddef.h>\n#define __device__\n"
        signature = f'extern "C" void kernel({", ".join(args)})'
        loop = "for (ptrdiff_t i = 0; i < _size; ++i)"
    return f"{head}{preamble}\n{signature} {{\n    {loop} {{\n        {refs}\n{operation}\n    }}\n}}\n"


def _compile(source: str) -> ctypes.CDLL:
    os.makedirs(_CACHE, exist_ok=True)
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    lib = os.path.join(_CACHE, f"k{digest}.so")
    if not os.path.exists(lib):
        src = os.path.join(_CACHE, f"k{digest}.cpp")
        with open(src, "w") as f:
            f.write(source)
        tmp = lib + f".{os.getpid()}.tmp"
        # no FMA contraction and no fast-math: the CUDA kernels are built with --fmad=false
        subprocess.run([CXX, "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-Wall", "-Werror",
                        "-o", tmp, src], check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    return ctypes.CDLL(lib)


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` on the CPU: the same declaration, compiled by a C++ compiler."""

    instances = []  # every kernel the stand-in was asked to build (tests inspect them)

    def __init__(self, in_params, out_params, operation, name="kernel", preamble="", options=(), **kwargs):
        self.in_params, self.out_params, self.operation = in_params, out_params, operation
        self.name, self.preamble, self.options = name, preamble, options
        self.calls = 0
        ElementwiseKernel.instances.append(self)

    def __call__(self, *args):
        ins, outs = _params(self.in_params), _params(self.out_params)
        if len(args) != len(ins) + len(outs):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(ins)} inputs and {len(outs)} outputs")
        types_ = {}
        for (t, _), a in zip(ins + outs, args):
            if t not in _CTYPES:
                dtype = np.asarray(a).dtype.name
                if types_.setdefault(t, dtype) != dtype:
                    raise TypeError(f"{self.name}: placeholder {t} bound to {types_[t]} and {dtype}")
        arrays = [a for (t, _), a in zip(ins, args) if t in types_ or types_.get(t, t) not in ("int64", "int32", "bool")]
        out_arrays = list(args[len(ins):])
        shape = np.broadcast_shapes(*[np.shape(a) for a in arrays + out_arrays])
        for o in out_arrays:
            if o.shape != shape or not o.flags.c_contiguous:
                raise ValueError(f"{self.name}: output of shape {o.shape}, expected {shape}")
        lib = _compile(translation_unit(self.in_params, self.out_params, self.operation, self.preamble, types_, False))
        c_args = []
        for (t, _), a in zip(ins, args):
            dtype = types_.get(t, t)
            if t not in types_ and dtype in ("int64", "int32", "bool"):
                c_args.append(_CTYPES[dtype][1](a))
            else:
                buf = np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=dtype), shape))
                c_args.append(buf)
        for o in out_arrays:
            c_args.append(o)
        size = int(np.prod(shape, dtype=np.int64))
        pointers = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else a for a in c_args]
        lib.kernel(*pointers, ctypes.c_longlong(size))
        self.calls += 1


def fake_cupy() -> types.ModuleType:
    """A module named cupy: NumPy's namespace plus ElementwiseKernel and asnumpy."""
    module = types.ModuleType("cupy")
    module.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    module.__spec__ = importlib.machinery.ModuleSpec("cupy", None)  # so that find_spec("cupy") finds it
    del module.errstate  # CuPy has no floating-point error state; code must not rely on it
    module.ElementwiseKernel = ElementwiseKernel
    module.asnumpy = np.asarray
    return module


def install(monkeypatch) -> types.ModuleType:
    """Bind cupy, cupyx, cupyx.scipy.special and cupyx.scipy.linalg for the duration of a test;
    return the fake cupy."""
    cupy = fake_cupy()
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy, cupyx_scipy.special, cupyx_scipy.linalg = cupyx_scipy, scipy.special, scipy.linalg
    for name, module in (("cupy", cupy), ("cupyx", cupyx), ("cupyx.scipy", cupyx_scipy),
                         ("cupyx.scipy.special", scipy.special), ("cupyx.scipy.linalg", scipy.linalg)):
        monkeypatch.setitem(sys.modules, name, module)
    return cupy


def kernels_of(module_source: str):
    """The ElementwiseKernel declarations of a generated module, as (name, in, out, operation)."""
    pattern = re.compile(r'(\w+) = xp\.ElementwiseKernel\(\n    "([^"]*)",\n    "([^"]*)",\n    r"""\n(.*?)""",', re.S)
    return pattern.findall(module_source)


def nvcc_check(module_sources, workdir, arch: str = "sm_80") -> str:
    """Compile every kernel of generated CuPy modules with nvcc, as one translation unit (no GPU
    needed); return nvcc's log.

    Raises:
        subprocess.CalledProcessError: nvcc rejected the source (its message in ``stderr``).
    """
    helpers, units = [], []
    for m, source in enumerate(module_sources):
        found = re.search(r'_CUDA_HELPERS = r"""(.*?)"""', source, re.S)
        if found and found.group(1) not in helpers:  # the same device helpers in every module: once
            helpers.append(found.group(1))
        for name, ins, outs, operation in kernels_of(source):
            types_ = {t: "float64" for t, _ in _params(ins) + _params(outs) if t not in _CTYPES}
            unit = translation_unit(ins, outs, operation, "", types_, True)
            units.append(unit.replace("#include <cstddef>\n", "").replace("void kernel(", f"void m{m}{name}("))
    path = os.path.join(workdir, "kernels.cu")
    with open(path, "w") as f:
        f.write("#include <cstddef>\n" + "".join(helpers) + "\n".join(units))
    done = subprocess.run([NVCC, "-c", f"-arch={arch}", "--fmad=false", "-Werror", "all-warnings", "-o",
                           os.path.join(workdir, "kernels.o"), path], check=True, capture_output=True, text=True)
    return done.stdout + done.stderr
