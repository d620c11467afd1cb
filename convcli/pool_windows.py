"""PyTorch's pooling-window rules, per axis: the one place they live.

:func:`convcli.sizes.output_size` counts the windows; this module says which padding a window
may have, which input samples each window covers, what an average divides by and which samples
an adaptive bin takes. The engine's pooling (``convcli pool``), the training ops
(:mod:`convcli.nn.functional`) and the layers behind ``shapes``/``params``/``train`` all call it,
so the three cannot disagree. No Numba here, and numpy only inside :func:`window_taps`, so
``shapes`` and ``params`` can import it.
"""

from __future__ import annotations

import math

from convcli.sizes import Padding, check_range, effective_kernel, output_size, padding_pair

OPS = ("max", "min", "avg", "sum", "lp")
ADAPTIVE_OPS = ("max", "min", "avg", "sum")


def check_padding(k: int, padding: int) -> None:
    """PyTorch's rule: padding at most half the window size ``k``.

    Half of ``k``, not of the dilated span: PyTorch 2.13 refuses ``MaxPool2d(3, padding=2,
    dilation=2)`` ("pad should be smaller than or equal to half of kernel size") although the
    span is 5.
    """
    if 2 * padding > k:
        raise ValueError(
            f"pool padding {padding} is more than half the window size {k} (PyTorch: padding <= size/2)"
        )


def check_window(k: int, stride: int, padding: int, dilation: int) -> None:
    """Refuse, naming the value, a window PyTorch would refuse (whatever the input's size)."""
    check_range("pool size", k)
    check_range("pool stride", stride)
    check_range("pool dilation", dilation)
    check_range("pool padding", padding, 0)
    check_padding(k, padding)


def ceil_overhang(n: int, k: int, *, stride: int, padding: Padding = 0, dilation: int = 1,
                  ceil_mode: bool = False) -> int:
    """Samples beyond the padded input that the last window reaches (only ``ceil_mode`` makes any);
    PyTorch leaves them out of every window."""
    before, after = padding_pair(padding)
    out = output_size(n, k, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    return max(0, (out - 1) * stride + effective_kernel(k, dilation) - (n + before + after))


def window_taps(n: int, k: int, *, stride: int, padding: Padding = 0, dilation: int = 1,
                ceil_mode: bool = False, count_include_pad: bool = True):
    """Where each window along one axis lies: ``(first, count, divisor)`` arrays, one entry a window.

    Window ``o`` covers the input samples ``first[o] + j·dilation`` for ``j < count[o]`` (padding
    is never read). ``divisor[o]`` is what PyTorch's AvgPool divides its sum by: with
    ``count_include_pad`` the window clipped to the padded input (padding counts, the ceil-mode
    overhang past the padding does not), else the samples it covers. A 2-D window's divisor is
    the product of its two axes' divisors.
    """
    import numpy as np

    before, after = padding_pair(padding)
    size_out = output_size(n, k, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    starts = np.arange(size_out, dtype=np.int64) * stride - before
    # taps start + j·d inside [0, n): j from ceil(-start/d) up to ceil((n-start)/d), within [0, k)
    j_first = np.clip(-(starts // dilation), 0, k)
    j_end = np.clip(-((starts - n) // dilation), 0, k)
    count = np.maximum(j_end - j_first, 0)
    first = starts + j_first * dilation
    divisor = np.minimum(starts + k, n + after) - starts if count_include_pad else count
    return first, count, divisor


def adaptive_bounds(index, n: int, size_out: int):
    """Adaptive bin ``index`` of ``n`` samples pooled to ``size_out``: ``(start, end)`` of
    [floor(i·n/out), ceil((i+1)·n/out)). ``index`` may be an int or an integer array."""
    return (index * n) // size_out, -((-(index + 1) * n) // size_out)


def adaptive_widest(n: int, size_out: int) -> int:
    """The widest adaptive bin: bin i is ceil(frac(i·n/out) + n/out) wide and frac(i·n/out)
    reaches 1 − gcd(n, out)/out. In closed form, as ``size_out`` may be a billion."""
    return -(-(n + size_out - math.gcd(n, size_out)) // size_out)
