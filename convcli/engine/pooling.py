"""Max / min / average / sum / Lp pooling and adaptive (global) pooling, PyTorch's semantics.

Every op here is separable: a rectangular window is the product of one interval per axis, and
max, min and sum reduce axis by axis; the average divisor PyTorch uses is also a product of one
count per axis. So 2-D pooling is two 1-D passes — first down the rows (contiguous, vectorised
over the width, and it shrinks the data), then along each row. All of PyTorch's edge rules
(padding, ``ceil_mode`` windows that hang over the right padding, ``count_include_pad``) come
from :mod:`convcli.pool_windows` as the per-axis :class:`AxisPlan` arrays; the Numba kernels
only gather and reduce.

Lp pooling: convcli's ``lp`` is the Lp norm of each window, ``(Σ |x|^p)^(1/p)`` (p=1: sum of
magnitudes, p=2: L2 norm, p=inf: largest magnitude), the seeds' ``‖·‖_n`` pooling. PyTorch's
``LPPool`` computes ``(Σ x^p)^(1/p)`` without the absolute value: the two agree for inputs ≥ 0
(e.g. after a ReLU) and for even integer ``p``; for negative inputs and odd or fractional ``p``
PyTorch gives signed sums or NaN where convcli gives the norm. PyTorch's ``LPPool`` is
``avg_pool(x^p)·(window area)`` then ``^(1/p)``, so a ``ceil_mode`` window hanging over the end is
scaled up by area/covered samples; convcli does the same. PyTorch's ``LPPool`` has no padding;
convcli treats padding as zeros (they add nothing to a norm, and count as covered).

NaN and ±inf, as PyTorch: a max or min window (adaptive too) holding a NaN gives NaN; avg, sum
and lp follow IEEE arithmetic (a NaN, or +inf with −inf, in the window gives NaN).

One deliberate difference for every op: a window larger than the padded input is refused with a
ValueError, even where PyTorch's ``ceil_mode`` arithmetic would still make one output of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convcli import budget
from convcli.jit import njit, prange
from convcli.pool_windows import ADAPTIVE_OPS, OPS, adaptive_bounds, check_window, window_taps
from convcli.sizes import PerAxis, check_range, left_over, output_size, per_axis
from convcli.text import shape_text

# reduction codes understood by the kernels
_MAX, _MIN, _SUM = 0, 1, 2


@dataclass(frozen=True)
class AxisPlan:
    """Where each output position's window lies along one axis.

    Output ``o`` reduces the input samples ``first[o] + j·step`` for ``j < count[o]`` (only the
    samples inside the input; padding is never read) and, for averages, divides by
    ``divisor[o]``.
    """

    size_in: int
    first: np.ndarray  # int64, first input index each window covers
    count: np.ndarray  # int64, how many input samples it covers
    step: int  # distance between taps (the dilation)
    divisor: np.ndarray  # float64, what an average divides by (PyTorch's rule)
    uncovered: int  # trailing input samples no window reaches

    @property
    def size_out(self) -> int:
        return len(self.first)


@dataclass(frozen=True)
class PoolPlan:
    """The per-axis plans of one pooling, and what a user should hear about them."""

    axes: tuple[AxisPlan, ...]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(axis.size_out for axis in self.axes)

    @property
    def uncovered(self) -> tuple[int, ...]:
        """Trailing input rows/columns (or samples) per axis that no window reaches."""
        return tuple(axis.uncovered for axis in self.axes)


def window_plan(
    n: int,
    k: int,
    *,
    stride: int,
    padding: int,
    dilation: int = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> AxisPlan:
    """One axis of a sliding-window pooling (PyTorch's MaxPool/AvgPool arithmetic)."""
    check_window(k, stride, padding, dilation)
    first, count, divisor = window_taps(n, k, stride=stride, padding=padding, dilation=dilation,
                                        ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    return AxisPlan(
        size_in=n,
        first=first,
        count=count,
        step=dilation,
        divisor=divisor.astype(np.float64),
        uncovered=left_over(n, k, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode),
    )


def adaptive_plan(n: int, size_out: int) -> AxisPlan:
    """One axis of adaptive pooling: bin i covers [floor(i·n/out), ceil((i+1)·n/out))."""
    if size_out < 1:
        raise ValueError(f"adaptive output size must be >= 1, got {size_out}")
    first, end = adaptive_bounds(np.arange(size_out, dtype=np.int64), n, size_out)
    count = end - first
    return AxisPlan(
        size_in=n, first=first, count=count, step=1, divisor=count.astype(np.float64), uncovered=0
    )


def _check_ndim(x: np.ndarray, ndim: int) -> None:
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 (signals) or 2 (images), got {ndim}")
    if x.ndim < ndim:
        raise ValueError(f"input of shape {x.shape} has fewer than ndim={ndim} axes to pool")
    if 0 in x.shape:
        raise ValueError(f"input of shape {x.shape} is empty")


def _as_float(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.float32 or x.dtype == np.float64:
        return x
    if np.iscomplexobj(x):
        raise ValueError(f"pooling needs real numbers, got dtype {x.dtype}")
    return x.astype(np.float32 if x.dtype == np.float16 else np.float64)


def pool_plan(
    shape: Sequence[int],
    size: PerAxis,
    *,
    stride: PerAxis | None = None,
    padding: PerAxis = 0,
    op: str = "max",
    ndim: int = 2,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    dilation: PerAxis = 1,
) -> PoolPlan:
    """The plan of :func:`pool` for an input of this shape: output shape, uncovered rows, divisors."""
    if ndim not in (1, 2):
        raise ValueError(f"ndim must be 1 (signals) or 2 (images), got {ndim}")
    if op not in OPS:
        raise ValueError(f"unknown pooling op {op!r}; choose one of {', '.join(OPS)}")
    sizes, strides, paddings, dilations = _window_axes(size, stride, padding, dilation, ndim)
    if op not in ("max", "min") and any(d != 1 for d in dilations):
        raise ValueError(f"dilation {dilation!r} applies only to max and min pooling (as in PyTorch), "
                         f"not {op}")
    spatial = tuple(shape)[-ndim:]
    axes = tuple(
        window_plan(
            n, k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode, count_include_pad=count_include_pad
        )
        for n, k, s, p, d in zip(spatial, sizes, strides, paddings, dilations, strict=True)
    )
    return PoolPlan(axes)


def pool(
    x: np.ndarray,
    size: PerAxis,
    *,
    stride: PerAxis | None = None,
    padding: PerAxis = 0,
    op: str = "max",
    p: float = 2.0,
    ndim: int = 2,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    boundary: str = "constant",
    dilation: PerAxis = 1,
) -> np.ndarray:
    """Pool the last ``ndim`` axes of ``x`` (leading axes are channels/batch), as PyTorch does.

    ``op``: ``max``/``min`` (padding is −inf/+inf, never zeros; ``dilation`` spaces the taps),
    ``avg`` (``count_include_pad`` as in AvgPool), ``sum``, ``lp`` (``(Σ|x|^p)^(1/p)``, see the
    module notes on how it differs from PyTorch's LPPool). ``size``, ``stride`` (default
    ``size``), ``padding`` and ``dilation`` are an int or one int per pooled axis; padding is at
    most half the window. ``ceil_mode`` keeps a last partial window unless it would start in the
    right padding. ``boundary`` (avg, sum, lp) fills the padding by another mode than zeros
    (``reflect``, ``edge``, ... as in :mod:`convcli.engine.boundary`); padded values then count
    as real samples.
    """
    x = _as_float(x)
    _check_ndim(x, ndim)
    if op == "lp" and not (p > 0):  # also refuses NaN
        raise ValueError(f"lp pooling needs p > 0, got p={p}")
    _check_window_cost(x, size, stride, padding, dilation, ceil_mode, ndim, boundary != "constant")
    if boundary != "constant":
        x, padding = _pad_by_boundary(x, boundary, padding, op, ndim)
    plan = pool_plan(
        x.shape, size, stride=stride, padding=padding, op=op, ndim=ndim, ceil_mode=ceil_mode,
        count_include_pad=count_include_pad or op == "lp", dilation=dilation,
    )
    if op == "lp":
        return _lp(x, plan, float(p), ndim, math.prod(per_axis(size, ndim, "pool size")))
    return _run(x, plan, op, ndim)


def adaptive_pool(x: np.ndarray, output_size: PerAxis | Sequence[int | None], *, op: str = "avg",
                  ndim: int = 2) -> np.ndarray:
    """Adaptive pooling of the last ``ndim`` axes to ``output_size`` (PyTorch's AdaptiveAvg/MaxPool).

    Bin ``i`` covers ``[floor(i·n/out), ceil((i+1)·n/out))``; ``None`` keeps an axis' size, and
    ``output_size=1`` is global pooling. An output larger than the input is allowed (bins then
    repeat samples); ``op`` is ``avg``, ``max``, ``min`` or ``sum``.
    """
    x = _as_float(x)
    _check_ndim(x, ndim)
    if op not in ADAPTIVE_OPS:
        raise ValueError(f"unknown adaptive pooling op {op!r}; choose one of {', '.join(ADAPTIVE_OPS)}")
    spatial = x.shape[-ndim:]
    if output_size is None or isinstance(output_size, (int, np.integer)):
        targets = (output_size,) * ndim
    else:
        targets = tuple(output_size)
        if len(targets) != ndim:
            raise ValueError(f"output size must be an int or {ndim} values, got {output_size!r}")
    sizes = []
    for n, target in zip(spatial, targets, strict=True):
        if target is not None and not isinstance(target, (int, np.integer)):
            raise ValueError(f"adaptive output size must be an int, got {target!r}")
        sizes.append(n if target is None else check_range("adaptive output size", target))
    # a bin spans at most ceil(n/out) + 1 samples
    _check_cost(x, sizes, [-(-n // out) + 1 for n, out in zip(spatial, sizes, strict=True)], copied=False)
    axes = [adaptive_plan(n, out) for n, out in zip(spatial, sizes, strict=True)]
    return _run(x, PoolPlan(tuple(axes)), op, ndim)


def _window_axes(size: PerAxis, stride: PerAxis | None, padding: PerAxis, dilation: PerAxis,
                 ndim: int) -> tuple[tuple[int, ...], ...]:
    """Size, stride (default: the size), padding and dilation, one int per pooled axis each."""
    sizes = per_axis(size, ndim, "pool size")
    strides = sizes if stride is None else per_axis(stride, ndim, "pool stride")
    paddings = per_axis(padding, ndim, "pool padding", 0)
    return sizes, strides, paddings, per_axis(dilation, ndim, "pool dilation")


def _check_window_cost(x, size, stride, padding, dilation, ceil_mode, ndim, padded) -> None:
    """The budget check of a window pooling, from sizes alone (before padding or planning)."""
    sizes, strides, paddings, dilations = _window_axes(size, stride, padding, dilation, ndim)
    for k, s, q, d in zip(sizes, strides, paddings, dilations, strict=True):
        check_window(k, s, q, d)
    out = [output_size(n, k, stride=s, padding=q, dilation=d, ceil_mode=ceil_mode)
           for n, k, s, q, d in zip(x.shape[-ndim:], sizes, strides, paddings, dilations, strict=True)]
    _check_cost(x, out, list(sizes), copied=padded, padding=paddings)


def _check_cost(x: np.ndarray, out: list[int], taps: list[int], *, copied: bool, padding=None) -> None:
    """Operations (rows pass, then columns pass) and bytes (output, per-axis plans, a padded copy)
    of pooling ``x`` to ``out`` with windows of ``taps`` samples per axis."""
    ndim = len(out)
    lead = math.prod(x.shape[:-ndim])
    width = x.shape[-1] + (2 * padding[-1] if padding else 0)
    if ndim == 1:
        operations = lead * out[0] * taps[0]
    else:
        operations = lead * out[0] * (width * taps[0] + out[1] * taps[1])
    memory = x.itemsize * lead * math.prod(out) + 40 * sum(out)
    if copied:
        padded = [n + 2 * q for n, q in zip(x.shape[-ndim:], padding, strict=True)]
        memory += x.itemsize * lead * math.prod(padded)
    budget.check_cost(operations, memory, f"pooling an input of shape {shape_text(x.shape)} to "
                      f"{shape_text(out)}")


def _pad_by_boundary(x: np.ndarray, boundary: str, padding: PerAxis, op: str, ndim: int):
    """Pad explicitly by a boundary mode; the pooling itself then needs no padding."""
    from convcli.engine.boundary import normalize_boundary
    from convcli.engine.boundary import pad as pad_boundary

    mode = normalize_boundary(boundary)
    paddings = per_axis(padding, ndim, "pool padding", 0)
    if mode == "constant" or not any(paddings):
        return x, padding
    if op in ("max", "min"):
        raise ValueError(f"boundary {boundary!r} applies to avg, sum and lp pooling; max/min pad with ∓inf")
    return np.ascontiguousarray(pad_boundary(x, [(q, q) for q in paddings], mode)), 0


def _run(x: np.ndarray, plan: PoolPlan, op: str, ndim: int) -> np.ndarray:
    """Reduce axis by axis: rows (vectorised over the width), then along each row."""
    reduction = {"max": _MAX, "min": _MIN, "avg": _SUM, "sum": _SUM}[op]
    average = op == "avg"
    lead = x.shape[:-ndim]
    if ndim == 1:  # a signal is an image of one row
        planes = np.ascontiguousarray(x).reshape(-1, 1, x.shape[-1])
        row_plan, col_plan = adaptive_plan(1, 1), plan.axes[0]
    else:
        planes = np.ascontiguousarray(x).reshape(-1, x.shape[-2], x.shape[-1])
        row_plan, col_plan = plan.axes
    out = np.empty((planes.shape[0], row_plan.size_out, col_plan.size_out), dtype=x.dtype)
    # sums accumulate in float64 so long float32 windows stay accurate
    accumulator = np.empty(0, dtype=np.float64 if reduction == _SUM else x.dtype)
    _pool_planes(
        planes, out, _kernel_args(row_plan, average), _kernel_args(col_plan, average), reduction, accumulator
    )
    return out.reshape(*lead, *plan.output_shape)


def _kernel_args(axis: AxisPlan, average: bool) -> tuple:
    """The plan as the kernels take it, with the run of whole, evenly spaced windows marked."""
    scale = 1.0 / axis.divisor if average else np.ones(axis.size_out)
    return axis.first, axis.count, axis.step, scale, _whole_windows(axis)


def _whole_windows(axis: AxisPlan) -> np.ndarray:
    """(lo, hi, k, stride): outputs lo..hi-1 have k taps each, starting stride apart."""
    k = int(axis.count.max())
    whole = np.flatnonzero(axis.count == k)
    lo, hi = int(whole[0]), int(whole[-1]) + 1
    stride = int(axis.first[lo + 1] - axis.first[lo]) if hi - lo > 1 else 1
    regular = np.array_equal(axis.first[lo:hi], axis.first[lo] + stride * np.arange(hi - lo)) and bool(
        np.all(axis.count[lo:hi] == k)
    )
    if k == 0 or not regular:
        return np.array([0, 0, 1, 1], dtype=np.int64)
    return np.array([lo, hi, k, stride], dtype=np.int64)


def _lp(x: np.ndarray, plan: PoolPlan, p: float, ndim: int, area: int) -> np.ndarray:
    """PyTorch's LPPool on |x|: the average of |x|^p over each window (divisors counting padding,
    so only a ceil_mode overhang divides by fewer than ``area``) times ``area``, then ^(1/p)."""
    from convcli.engine.convolve import warn_if_overflowed

    magnitude = np.abs(x)
    if math.isinf(p):
        return _run(magnitude, plan, "max", ndim)
    with np.errstate(over="ignore", invalid="ignore"):  # told below in the tool's words
        powered = magnitude if p == 1 else (magnitude * magnitude if p == 2 else magnitude**p)
        total = _run(powered, plan, "avg", ndim)
        total *= area
    warn_if_overflowed(x, total, f"Lp pooling (|x|^{p:g} of the input's values is too large)")
    if p == 1:
        return total
    return np.sqrt(total, out=total) if p == 2 else np.power(total, 1.0 / p, out=total)


@njit(cache=True, inline="always")
def _max(acc, value):
    # NaN propagates, as in PyTorch
    return value if (value > acc) | (value != value) else acc


@njit(cache=True, inline="always")
def _min(acc, value):
    return value if (value < acc) | (value != value) else acc


@njit(cache=True, inline="always")
def _pick(acc, value, reduction):
    if reduction == 0:
        return _max(acc, value)
    if reduction == 1:
        return _min(acc, value)
    return acc + value


@njit(cache=True, inline="always")
def _reduce_line(line, target, first, count, step, scale, inner, reduction):
    """target[o] = reduce of line[first[o] + j·step], j < count[o]; windows in ``inner`` are whole."""
    lo, hi, k, stride = inner[0], inner[1], inner[2], inner[3]
    for o in range(target.shape[0]):
        if lo <= o < hi:  # a whole window: fixed tap count, no table look-ups
            column = first[lo] + (o - lo) * stride
            acc = line[column]
            for j in range(1, k):
                acc = _pick(acc, line[column + j * step], reduction)
        else:
            column = first[o]
            # sums run in a float64 buffer, so 0.0 is its type (line[0] - line[0] was NaN for ±inf)
            acc = 0.0 if reduction == 2 else (-np.inf if reduction == 0 else np.inf)
            for _ in range(count[o]):
                acc = _pick(acc, line[column], reduction)
                column += step
        target[o] = acc * scale[o] if reduction == 2 else acc


@njit(cache=True, parallel=True)
def _pool_planes(x, out, rows, cols, reduction, accumulator):  # pragma: no cover - jitted
    """Pool every plane of x (planes, H, W) into out: per output row, reduce its input rows into
    a buffer (vectorised over the width), then reduce along that buffer while it is in cache.

    ``rows``/``cols``: (first, count, step, scale, inner) of each axis, see :class:`AxisPlan`.
    ``accumulator``: an empty array of the type the row buffer has (float64 for sums).
    """
    planes, rows_out, _ = out.shape
    width = x.shape[2]
    r_first, r_count, r_step, r_scale, _unused = rows
    c_first, c_count, c_step, c_scale, c_inner = cols
    for task in prange(planes * rows_out):
        b = task // rows_out
        o = task % rows_out
        buffer = np.empty(width, dtype=accumulator.dtype)
        buffer[:] = 0.0 if reduction == 2 else (-np.inf if reduction == 0 else np.inf)
        row = r_first[o]
        for _ in range(r_count[o]):
            source = x[b, row]
            if reduction == 0:
                for w in range(width):
                    buffer[w] = _max(buffer[w], source[w])
            elif reduction == 1:
                for w in range(width):
                    buffer[w] = _min(buffer[w], source[w])
            else:
                for w in range(width):
                    buffer[w] += source[w]
            row += r_step
        if reduction == 2:
            s = r_scale[o]
            for w in range(width):
                buffer[w] *= s
        _reduce_line(buffer, out[b, o], c_first, c_count, c_step, c_scale, c_inner, reduction)
