"""Window geometry of convolutions and pooling along one spatial axis, written once.

The IR uses it for output shapes (and their errors); the run-time support routines of generated
modules (:mod:`ntkdsl.arraycode.spatial_support`) carry a verbatim copy (``inspect.getsource``), so
shapes and padding agree between compile time and run time. Keep it free of other names.
"""


def window_geometry(size, window, stride, padding):
    """(pad_lo, pad_hi, out_size) of a window sliding over ``size`` pixels.

    Conventions of neural-tangents and ``jax.lax`` (kernel-math.md §2): 'valid' pads nothing and
    gives ⌊(size − window)/stride⌋ + 1 outputs; 'same' and 'circular' give ⌈size/stride⌉ outputs
    and pad (out − 1)·stride + window − size pixels (if positive), the smaller half before, with
    zeros ('same') or with the pixels of the opposite edge ('circular').

    Args:
        size: input pixels along the axis.
        window: filter taps or pooling window along the axis.
        stride: step between output positions.
        padding: 'valid', 'same' or 'circular'.

    Returns:
        (pad_lo, pad_hi, out_size); out_size < 1 means the window does not fit ('valid').
    """
    if padding == "valid":
        return 0, 0, (size - window) // stride + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2, out
