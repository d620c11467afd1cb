"""Output-size arithmetic of convolution and pooling: the one place it lives.

The engine, pooling, the ``shapes``/``params`` calculator and the ``nn`` layers all call
:func:`output_size`; nothing else computes a size.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

# one axis' padding: the same on both sides, or (before, after)
Padding = int | tuple[int, int]
# an int for every axis, or one int per axis
PerAxis = int | Sequence[int]
# one Padding for every axis, or one per axis
PerAxisPadding = int | Sequence[Padding]

# bytes of one float32 value: parameter and activation memory are counted in it
FLOAT32_BYTES = 4

# the largest size, stride, dilation or padding accepted: far beyond any array that fits in memory,
# and small enough that every sum and product of them the engine forms stays inside int64
MAX_SIZE = 1 << 48


def check_range(name: str, value: int, low: int = 1) -> int:
    """``value`` as an int in [low, MAX_SIZE], else ValueError naming ``name``."""
    value = int(value)
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if value > MAX_SIZE:
        digits = len(str(value)) if value < 10**4000 else "4000+"  # str() refuses longer ints
        shown = value if value < 10**30 else f"a {digits}-digit number"
        raise ValueError(f"{name} must be at most 2**48 = {MAX_SIZE}, got {shown}")
    return value


def per_axis(value: PerAxis, ndim: int, name: str, low: int = 1) -> tuple[int, ...]:
    """``value`` (an int, or ``ndim`` ints) as ``ndim`` ints, each checked by :func:`check_range`."""
    if isinstance(value, Integral):
        values = (value,) * ndim
    else:
        values = tuple(value)
        if len(values) != ndim or not all(isinstance(v, Integral) for v in values):
            raise ValueError(f"{name} must be an int or {ndim} ints (one per axis), got {value!r}")
    return tuple(check_range(name, v, low) for v in values)


def padding_pair(padding: Padding) -> tuple[int, int]:
    """``p`` or ``(before, after)`` -> ``(before, after)``, validated."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int or (before, after), got {tuple(padding)!r}")
        before, after = (int(p) for p in padding)
    else:
        before = after = int(padding)
    if before < 0 or after < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    check_range("padding", max(before, after), 0)
    return before, after


def mode_padding(mode: str, span: int) -> tuple[int, int]:
    """(before, after) zero padding that gives ``mode``'s output for a kernel spanning ``span`` samples,
    in the frame of correlation (a convolution's kernel already flipped)."""
    if mode == "valid":
        return 0, 0
    if mode == "full":
        return span - 1, span - 1
    # scipy.signal's 'same': centred on the full output, the extra sample of an even span before
    return span // 2, (span - 1) // 2


def effective_kernel(k: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: d·(k−1)+1."""
    return dilation * (k - 1) + 1


def input_reach(out: int, span: int, stride: int = 1) -> int:
    """Padded input positions that ``out`` outputs of a ``span``-wide (dilated) kernel read."""
    return (out - 1) * stride + span


def _check(n: int, k: int, stride: int, dilation: int) -> None:
    for name, value in (("input size", n), ("kernel size", k), ("stride", stride), ("dilation", dilation)):
        check_range(name, value)


def output_size(
    n: int,
    k: int,
    *,
    stride: int = 1,
    padding: Padding = 0,
    dilation: int = 1,
    transposed: bool = False,
    output_padding: int = 0,
    ceil_mode: bool = False,
) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's arithmetic).

    forward:    floor((n + p_before + p_after − d·(k−1) − 1) / s) + 1
                (ceil instead of floor with ``ceil_mode``; a last window that would start
                in the right padding is dropped, as PyTorch does)
    transposed: (n − 1)·s − p_before − p_after + d·(k−1) + output_padding + 1

    Raises ValueError, naming the numbers, when the result would be smaller than 1.
    """
    _check(n, k, stride, dilation)
    before, after = padding_pair(padding)
    span = effective_kernel(k, dilation)
    if transposed:
        if not 0 <= output_padding < max(stride, dilation):
            raise ValueError(
                f"output_padding must be >= 0 and smaller than stride or dilation, got {output_padding}"
            )
        out = (n - 1) * stride - before - after + span + output_padding
        if out < 1:
            raise ValueError(
                f"transposed output size would be {out}: (n−1)·s − padding + d·(k−1) + output_padding + 1 "
                f"= ({n}−1)·{stride} − {before + after} + {span - 1} + {output_padding} + 1"
            )
        return out
    if output_padding:
        raise ValueError("output_padding applies only to transposed convolutions")
    padded = n + before + after
    if span > padded:
        raise ValueError(
            f"kernel span {span} (size {k}, dilation {dilation}) is larger than the padded input {padded} "
            f"(size {n} + padding {before + after})"
        )
    if ceil_mode:
        out = -(-(padded - span) // stride) + 1
        # PyTorch: the last window must start inside the input or the left padding
        if (out - 1) * stride >= n + before:
            out -= 1
    else:
        out = (padded - span) // stride + 1
    return out


def stride_remainder(n: int, k: int, *, stride: int = 1, padding: Padding = 0, dilation: int = 1) -> int:
    """Positions of the padded input past the last window: 0 when the stride tiles exactly,
    i.e. when the size formula needs no flooring."""
    _check(n, k, stride, dilation)
    before, after = padding_pair(padding)
    reach = n + before + after - effective_kernel(k, dilation)
    return reach % stride if reach >= 0 else 0


def left_over(
    n: int, k: int, *, stride: int = 1, padding: Padding = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """How many trailing *input* rows/samples no window reaches (data the layer drops).

    Padded positions past the last window are not counted: they hold no data. With ``ceil_mode``
    an extra window that hangs over the end reaches every remaining row.
    """
    if ceil_mode and output_size(
        n, k, stride=stride, padding=padding, dilation=dilation, ceil_mode=True
    ) > output_size(n, k, stride=stride, padding=padding, dilation=dilation):
        return 0
    remainder = stride_remainder(n, k, stride=stride, padding=padding, dilation=dilation)
    return min(n, max(0, remainder - padding_pair(padding)[1]))
