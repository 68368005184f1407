"""Text that CuPy modules (:mod:`.cuda`) carry: the CUDA device helpers of the fused kernels, the
Python helpers around them and the prologue of ``kernels()``.

The device helpers are plain C++ over ``double`` (CUDA's math library has every function they
call), so the same text also compiles for the CPU in the tests (a C++ compiler standing in for
NVRTC, ``tests/cupy_standin.py``).
"""

from __future__ import annotations

from .emit import POINTS_AND_DTYPE

# NVRTC options of every fused kernel: no fused multiply-add contraction, so that q1·q2 − c² is
# exactly 0 on the diagonal and the results agree with the NumPy backend to rounding (the kernels
# are memory-bound: the separate multiply and add cost nothing measurable).
CUDA_OPTIONS = ("--fmad=false",)

_PERP = r"""
// sqrt(max(q1*q2 - c*c, 0)) = sqrt(q1*q2)*sin(theta), the overflow-safe form of ntkdsl's perp:
// q1, q2 and c are rescaled by exact powers of two e = 2^-floor(log2(q)/2) (q*e*e in [1, 4)),
// which change no rounding, so the diagonal c = q1 = q2 still gives exactly 0, while q1*q2
// cannot overflow for q >~ 1e154 or underflow for q <~ 1e-154.
__device__ double perp(double c, double q1, double q2) {
    const double e1 = q1 > 0.0 ? ldexp(1.0, -(int) floor(0.5 * ilogb(q1))) : 1.0;
    const double e2 = q2 > 0.0 ? ldexp(1.0, -(int) floor(0.5 * ilogb(q2))) : 1.0;
    const double cs = (c * e1) * e2;
    return sqrt(fmax((q1 * e1 * e1) * (q2 * e2 * e2) - cs * cs, 0.0)) / e1 / e2;
}
"""

_SOURCES = {"perp": _PERP}


def device_helpers(names) -> str:
    """The CUDA source of the device helpers that the printed kernels call, in a fixed order."""
    return "".join(_SOURCES[name] for name in _SOURCES if name in set(names))


OWENS_T = '''def owens_t(h, a):
    """Owen's T(h, a) by SciPy on the host (CuPy has no Owen's T): one copy each way.

    Only the closed-form ELU/SELU duals call it; their other operations stay on the GPU.
    """
    import scipy.special

    return xp.asarray(scipy.special.owens_t(xp.asnumpy(h), xp.asnumpy(a)))
'''

PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64, params=None):
    """The NNGP and NTK kernels of the network between two sets of inputs, on the GPU.

    Args:
        x1: inputs, shape (N1, {d}): a NumPy array (copied to the GPU) or a CuPy array.
        x2: inputs, shape (N2, {d}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32: the Gram matrix (a cuBLAS GEMM) and the results;
            the fused kernels compute in float64 either way.
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.

    Returns:
        (nngp, ntk): CuPy arrays of shape (N1, N2) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
''' + POINTS_AND_DTYPE + '''    n1, n2 = x1.shape[0], x2.shape[0]
    # input: Σ⁰(x, x') = x·x'/d, Θ⁰ = 0 (kernel-math.md §1); cov1 is a column, cov2 a row
    cov1_0 = xp.sum(x1 * x1, axis=1, keepdims=True) / {d}
    cov2_0 = cov1_0.T if same else xp.sum(x2 * x2, axis=1, keepdims=True).T / {d}
    a1 = x1.astype(dtype, copy=False)
    a2 = a1 if same else x2.astype(dtype, copy=False)
    nngp_0 = (a1 @ a2.T) / {d}  # the GEMM (cuBLAS), in dtype
    del a1, a2
    if same:  # exact symmetry; the kernels read Σ(x, x) as cov1 itself (float64) on the diagonal
        nngp_0 = (nngp_0 + nngp_0.T) / 2
        _exact_diagonal(nngp_0, cov1_0)
'''

SPATIAL_PROLOGUE = '''

def kernels(x1, x2=None, dtype=xp.float64, params=None):
    """The NNGP and NTK kernels of the network between two sets of inputs, on the GPU.

    Args:
        x1: inputs, shape (N1, {shape}) (channels last): a NumPy array (copied to the GPU) or a CuPy array.
        x2: inputs, shape (N2, {shape}); None means x1 (the kernel is then exactly symmetric).
        dtype: float64 (default) or float32: the results (everything is computed in float64).
        params: run-time parameters by name (see PARAMETERS); None: the spec's values.

    Returns:
        (nngp, ntk): CuPy arrays of shape (N1, N2{result_shape}) and the given dtype: Σ(x1, x2) and Θ(x1, x2).
    """
''' + POINTS_AND_DTYPE + '''    n1, n2 = x1.shape[0], x2.shape[0]
    # input: Σ⁰(x, x')(p, p') = x(p)·x'(p')/{channels}, Θ⁰ = 0 (kernel-math.md §1), in the {layout} layout:
    # pixel axes first, points last: nngp_0 of shape {array}, cov1_0 (..., N1, 1), cov2_0 (..., 1, N2)
    cov1_0, cov2_0, nngp_0 = input_covariances(x1, x2, same, full={full})
'''
