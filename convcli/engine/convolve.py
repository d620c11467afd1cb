"""``convcli.convolve``: 1-D/2-D convolution or correlation with modes, boundaries, stride, dilation.

One code path: :func:`plan` validates the request, works out padding and output shape
(through :func:`convcli.sizes.output_size`) and picks a method from a measured cost model;
:func:`convolve` pads nothing itself and hands the plan to one of three engines:

- ``direct``    (Numba) cost = N·C_out·C_in·prod(out)·prod(k) multiply-adds; a 1-D kernel that
  filters each signal alone runs as rows (:mod:`convcli.engine.lines`: numpy, or its Numba twin,
  the same bytes), so a cold FIR call needs no Numba
- ``separable`` (Numba, rank-1 2-D kernels) cost = N·C·Ho·(W·kh + Wo·kw) multiply-adds
- ``fft``       (scipy.fft) cost = FFT_COST·(#transforms)·L·log2 L + N·C_out·C_in·L/2 complex
  products, with L the padded transform size (whole axis, or overlap-add blocks for 1-D);
  strided outputs cost the same as unstrided ones here, since FFT computes all positions.
  The fft estimate is scaled by ``FFT_SCALE`` (per dimensionality), and a long 1-D transform
  costs more per point once it leaves the cache (:func:`convcli.engine.fft.line_transform_cost`):
  both measured.

The costs are in one unit (a vectorized multiply-add of the direct loop); ``FFT_COST`` is
the measured price of one ``n·log2 n`` step of a real FFT relative to it. ``method="auto"``
takes the cheapest whose buffers fit the memory budget; the plan's ``reason`` states the counts.
The chosen method's operations and bytes are checked against :mod:`convcli.budget` in
:func:`plan`, before anything is allocated or compiled.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from convcli import budget
from convcli.errors import UsageError, did_you_mean
from convcli.sizes import (
    PerAxis,
    PerAxisPadding,
    effective_kernel,
    input_reach,
    left_over,
    mode_padding,
    output_size,
    padding_pair,
    per_axis,
)
from convcli.text import shape_text

MODES = ("same", "valid", "full")
METHODS = ("auto", "direct", "separable", "fft")
# relative price of one n·log2(n) FFT step and of one complex product, vs one direct multiply-add
FFT_COST = 2.0
PRODUCT_COST = 4.0
# What an FFT plan's modelled units really cost against the direct loop's multiply-adds (which
# run as fast in 1-D as in 2-D), per dimensionality: measured by benchmarks/bench_convolve.py
# --only crossover. 1-D: the crossover lies near 400 taps (at 441,000 and 2×2,880,000 samples),
# where the bare model put it near 50; 2-D: between 9×9 and 15×15 on 512², near 15×15 on 2048².
FFT_SCALE = {1: 6.5, 2: 1.7}
# The direct engine's price of a tap in a border column (an output whose taps reach past the row's
# ends: each tap mapped alone, no SIMD) against an interior tap: measured 30-100x (a 31x31 kernel
# on 64x48 under padding 600, against 400x400 valid). FFT_SCALE was measured on 'same' outputs of
# kernels small against the image, so it holds their span−1 border columns: up to an eighth of the
# row's outputs are not priced again.
BORDER_TAP_COST = 30
# the direct engine's tap tables, per kernel entry: the (c_in, kh, kw) index grids, each tap's
# row and column offsets and weight, the nonzero index (measured: a 6,311,879-tap kernel peaked
# at 530 MB, ~84 bytes a tap with the kernel's own copies)
DIRECT_TAP_BYTES = 80


@dataclass(frozen=True)
class ConvPlan:
    """How a convolution will run: method and why, padding, output shape, rank-1 detection."""

    method: str
    reason: str
    output_shape: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    channel_mixing: bool
    rank1: bool | None  # None: not a 2-D single-channel kernel, separability not considered
    costs: dict[str, float]
    fft_block: int | None = None  # overlap-add FFT length, when fft runs in blocks
    left_over: tuple[int, ...] = ()  # trailing input rows/samples per axis no window reads (stride)
    factors: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # what the engines run when the boundary folds the kernel onto the input (engine/folding.py):
    # the folded kernel (None: the kernel as given, or factors), its dilation and padding per axis
    folded: np.ndarray | None = field(default=None, repr=False, compare=False)
    engine_dilation: tuple[int, ...] = ()
    engine_padding: tuple[tuple[int, int], ...] = ()
    lines: bool = False  # direct, run as 1-D rows by convcli.engine.lines


def _explicit_padding(padding: PerAxisPadding, nd: int) -> tuple[tuple[int, int], ...]:
    if np.isscalar(padding):
        return (padding_pair(int(padding)),) * nd
    items = tuple(padding)
    if nd == 1 and len(items) == 2 and all(np.isscalar(p) for p in items):
        return (padding_pair(items),)
    if len(items) != nd:
        raise UsageError(
            f"padding needs 1 or {nd} entries (int or (before, after)) per axis, got {padding!r}"
        )
    return tuple(padding_pair(p) for p in items)


def _unknown(kind: str, name: object, choices: Sequence[str]) -> str:
    return f"unknown {kind} {name!r}{did_you_mean(str(name), choices)}; choose from {', '.join(choices)}"


def axis_padding(
    spans: Sequence[int], mode: str, padding: PerAxisPadding | None
) -> tuple[tuple[int, int], ...]:
    """(before, after) per axis: explicit ``padding``, else what ``mode`` gives kernels of these spans."""
    if padding is None:
        return tuple(mode_padding(mode, s) for s in spans)
    return _explicit_padding(padding, len(spans))


def _check_kernel(kernel: np.ndarray) -> None:
    if kernel.size == 0:
        raise UsageError(f"empty kernel (shape {shape_text(kernel.shape)})")
    if kernel.ndim not in (1, 2, 3, 4):
        raise UsageError(
            f"kernel has {kernel.ndim} dimensions (shape {shape_text(kernel.shape)}); expected 1-D or 2-D, "
            "or (C_out, C_in, k) / (C_out, C_in, kh, kw)"
        )
    if not np.issubdtype(kernel.dtype, np.number) or np.iscomplexobj(kernel):
        raise UsageError(f"kernel must be real numbers, got dtype {kernel.dtype}")
    bad = ~np.isfinite(kernel)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UsageError(f"kernel has a non-finite value {kernel[where]} at index {where}")


def _check_factors(factors) -> tuple[np.ndarray, np.ndarray]:
    """A separable kernel outer(column, row) given as its two 1-D factors."""
    if len(factors) != 2:
        raise UsageError(f"factors must be two 1-D arrays (column, row), got {len(factors)}")
    column, row = (np.asarray(f) for f in factors)
    for name, factor in (("column", column), ("row", row)):
        if factor.ndim != 1:
            raise UsageError(f"the {name} factor must be 1-D, got shape {shape_text(factor.shape)}")
        _check_kernel(factor)
    return column, row


def _layout(x_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(nd, N, C_in, C_out) of the request; N·C_in is the number of independent signals."""
    if len(shape) <= 2:
        nd = len(shape)
        if len(x_shape) < nd:
            raise UsageError(
                f"kernel has {nd} dimensions {shape} but the signal only {len(x_shape)} {x_shape}"
            )
        return nd, math.prod(x_shape[:-nd]), 1, 1
    nd = len(shape) - 2
    c_out, c_in = shape[:2]
    if len(x_shape) not in (nd + 1, nd + 2):
        raise UsageError(
            f"a channel-mixing kernel {shape} needs input (C_in, ...) or (N, C_in, ...) with {nd} "
            f"spatial axes, got shape {shape_text(x_shape)}"
        )
    if x_shape[-nd - 1] != c_in:
        raise UsageError(
            f"kernel {shape} expects {c_in} input channels, the input has {x_shape[-nd - 1]}"
        )
    n = x_shape[0] if len(x_shape) == nd + 2 else 1
    return nd, n, c_in, c_out


def plan(
    x_shape: Sequence[int],
    kernel: np.ndarray,
    *,
    mode: str = "same",
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    method: str = "auto",
    dtype: np.dtype | type = np.float32,
    factors: tuple[np.ndarray, np.ndarray] | None = None,
    boundary: str = "constant",
) -> ConvPlan:
    """Validate a convolution request and decide how to run it (see the module doc for the model).

    ``factors``: the kernel is ``outer(*factors)`` (``kernel`` is then None), known separable
    without being built. Taps that the ``boundary`` sends to the same input sample at every
    output are folded into one (:mod:`convcli.engine.folding`), so the engines' work is bounded by
    the input's size, not the kernel's; the estimated cost of that work is checked against
    :mod:`convcli.budget` here, before anything is allocated.
    """
    x_shape = tuple(int(n) for n in x_shape)
    if factors is not None:
        factors = _check_factors(factors)
        shape = (len(factors[0]), len(factors[1]))
    else:
        kernel = np.asarray(kernel)
        _check_kernel(kernel)
        shape = kernel.shape
    if method not in METHODS:
        raise UsageError(_unknown("method", method, METHODS))
    if padding is None and mode not in MODES:
        raise UsageError(_unknown("mode", mode, MODES))
    nd, n, c_in, c_out = _layout(x_shape, shape)
    spatial_in = x_shape[-nd:]
    ksize = shape[-nd:]
    try:
        stride, dilation = per_axis(stride, nd, "stride"), per_axis(dilation, nd, "dilation")
    except ValueError as error:
        raise UsageError(str(error)) from None
    spans = tuple(effective_kernel(k, d) for k, d in zip(ksize, dilation, strict=True))
    pads = axis_padding(spans, mode, padding)
    spatial_out = tuple(
        output_size(size, k, stride=s, padding=p, dilation=d)
        for size, k, s, p, d in zip(spatial_in, ksize, stride, pads, dilation, strict=True)
    )
    left = tuple(
        left_over(size, k, stride=s, padding=p, dilation=d)
        for size, k, s, p, d in zip(spatial_in, ksize, stride, pads, dilation, strict=True)
    )
    if len(shape) <= 2:
        output_shape = (*x_shape[:-nd], *spatial_out)
    else:
        output_shape = (*x_shape[: -nd - 1], c_out, *spatial_out)

    from convcli.engine import folding
    from convcli.engine.boundary import MODE_CODES, normalize_boundary

    folds = folding.fold_geometry(spatial_in, ksize, stride, dilation, pads, spatial_out,
                                  MODE_CODES[normalize_boundary(boundary)])
    if method == "separable" and folds is not None and any(f is not None and f.size == 1 for f in folds):
        folds = None  # a side folded to one tap is no longer separable, and separable was asked for
    run_ksize, run_dilation, run_pads, folded = ksize, dilation, pads, None
    if folds is not None:
        run_ksize = tuple(k if f is None else f.size for k, f in zip(ksize, folds, strict=True))
        run_dilation = tuple(d if f is None else f.dilation for d, f in zip(dilation, folds, strict=True))
        run_pads = tuple(p if f is None else f.padding for p, f in zip(pads, folds, strict=True))
        if factors is not None:
            factors = tuple(folding.fold_line(f, fold) for f, fold in zip(factors, folds, strict=True))
        else:
            kernel = folded = folding.fold_kernel(kernel, folds)
    run_spans = tuple(effective_kernel(k, d) for k, d in zip(run_ksize, run_dilation, strict=True))
    run_shape = (*shape[:-nd], *run_ksize)

    rank1 = None
    if factors is not None:
        rank1 = True
        factors = tuple(f.astype(dtype) for f in factors)
    elif kernel.ndim == 2 and min(run_ksize) > 1:
        from convcli.engine.separable import rank1_factors

        factors = rank1_factors(kernel, np.dtype(dtype))
        rank1 = factors is not None

    lines_width = _lines_width(shape, spatial_in, run_pads)
    taps = _direct_taps(kernel, factors, c_out) * _border_weight(spatial_in[-1], spatial_out[-1], stride[-1],
                                                                 run_spans[-1], run_pads[-1][0])
    costs, fft_block = _costs(n, c_in, c_out, spatial_in, spatial_out, run_ksize, stride, run_spans, factors,
                              taps, run_pads[-1][0], priced=method == "fft")
    memory = {
        name: _memory(name, x_shape, output_shape, run_shape, spatial_out, stride, run_spans, fft_block,
                      np.dtype(dtype).itemsize, n * (c_in + c_out), c_in * c_out, lines_width)
        for name in costs
    }
    chosen, reason = _choose(method, costs, rank1, memory)
    lines = bool(lines_width) and chosen == "direct"
    if lines:
        reason += "; 1-D rows, taps summed in order (numpy or Numba: the same bytes)"
    if chosen == "fft":
        reason += f"; overlap-add, FFT blocks of {fft_block}" if fft_block else "; one FFT of the whole input"
    if folds is not None:
        reason += "; " + folding.describe(ksize, folds)
    budget.check_cost(costs[chosen], memory[chosen], f"convolving an input of shape {shape_text(x_shape)} "
                      f"with a {shape_text(shape)} kernel ({chosen})")
    return ConvPlan(
        method=chosen,
        reason=reason,
        output_shape=output_shape,
        padding=pads,
        stride=stride,
        dilation=dilation,
        channel_mixing=len(shape) > 2,
        rank1=rank1,
        costs=costs,
        fft_block=fft_block if chosen == "fft" else None,
        left_over=left,
        factors=factors,
        folded=folded,
        engine_dilation=run_dilation,
        engine_padding=run_pads,
        lines=lines,
    )


def _lines_width(shape: tuple[int, ...], spatial_in: tuple[int, ...], pads) -> int:
    """Where direct would run as 1-D rows (:mod:`convcli.engine.lines`: a 1-D kernel filtering each
    signal alone, padding it fits), the width of the padded rows it copies; else 0."""
    from convcli.engine.lines import fits

    if len(shape) != 1 or not fits(spatial_in[0], pads[0]):
        return 0
    return spatial_in[0] + sum(pads[0])


def _border_weight(w: int, wo: int, stride: int, span: int, pad_left: int) -> float:
    """The direct engine's price of an output row in interior-column units (see BORDER_TAP_COST):
    interior columns are those ``direct.correlate_direct`` runs in place."""
    j_lo = min(wo, max(0, -(-pad_left // stride)))
    j_hi = max(j_lo, min(wo, (w - span + pad_left) // stride + 1))
    extra = max(0, wo - (j_hi - j_lo) - min(span - 1, wo // 8))
    return (wo + (BORDER_TAP_COST - 1) * extra) / wo


def _direct_taps(kernel: np.ndarray | None, factors, c_out: int) -> int:
    """Multiply-adds of the direct engine per output position, over all output channels: it skips
    zero taps (and keeps one tap of an all-zero kernel), see ``direct.tap_tables``."""
    if kernel is None:
        return max(1, int(np.count_nonzero(factors[0])) * int(np.count_nonzero(factors[1])))
    nonzero = np.count_nonzero(kernel.reshape(c_out, -1), axis=1)
    return int(np.maximum(nonzero, 1).sum())


def _memory(method, x_shape, output_shape, kernel_shape, spatial_out, stride, spans, fft_block, itemsize,
            signals: int, kernel_pairs: int, lines_width: int = 0) -> float:
    """Bytes the chosen method allocates: the input's float copy, the output, and the method's own
    buffers (the direct engine's column map, a factored kernel made dense, the FFT's padded input,
    spectra and full result; as rows, the padded rows of ``lines_width`` and numpy's product row).
    ``signals``: input plus output signals (N·C_in + N·C_out)."""
    reach = [input_reach(o, k, s) for o, s, k in zip(spatial_out, stride, spans, strict=True)]
    arrays = itemsize * (math.prod(x_shape) + math.prod(output_shape))
    # per thread, the Numba engines hold the input rows under the kernel (c_in·kh rows of width w)
    rows = (os.cpu_count() or 1) * itemsize * x_shape[-1] * math.prod(kernel_shape[:-1])
    if method == "separable":
        return float(arrays + rows + 4 * itemsize * reach[-1])
    extra = itemsize * math.prod(kernel_shape) + rows
    if method == "direct":
        extra += DIRECT_TAP_BYTES * math.prod(kernel_shape)
        if lines_width:
            extra += itemsize * (math.prod(x_shape[:-1]) * lines_width + math.prod(output_shape))
    if method == "fft":
        # overlap-add holds ~reach·block/step points per signal; one transform, about reach points
        points = math.prod(reach) if fft_block is None else 2 * (reach[0] + fft_block)
        extra += itemsize * points * (2 * signals + kernel_pairs)
    return float(arrays + extra)


def _costs(n, c_in, c_out, spatial_in, spatial_out, ksize, stride, spans, factors, taps: float,
           pad_left: int, *, priced: bool = False):
    """Estimated costs of each applicable method (see the module doc), and the overlap-add length.
    ``taps``: the direct engine's multiply-adds per output position (nonzero taps, all channels),
    border columns priced in.
    ``priced``: fft will run, so plan it (block length included) even where it cannot win."""
    costs = {"direct": float(n * math.prod(spatial_out) * taps)}
    reach = [input_reach(o, k, s) for o, s, k in zip(spatial_out, stride, spans, strict=True)]
    if factors is not None:
        # the vertical pass fills every column of the padded row the horizontal pass reads: the
        # input's columns in place, the padding's one by one (priced as the direct engine's border)
        (ho, wo), (kh, kw) = spatial_out, ksize
        interior = max(min(spatial_in[1], reach[1] - pad_left), 0)
        border = max(0, reach[1] - interior - min(spans[1] - 1, reach[1] // 8))
        columns = max(spatial_in[1], reach[1]) + (BORDER_TAP_COST - 1) * border
        costs["separable"] = float(n * c_in * ho * (columns * kh + wo * kw))
    floor = _fft_cost_floor(n * (c_in + c_out), reach, spans)
    if floor >= min(costs.values()) and not priced:
        # FFT cannot win; pricing it exactly would import scipy.fft (~0.2 s of every start-up)
        costs["fft"] = floor
        return costs, None

    import scipy.fft as sfft

    from convcli.engine.fft import line_transform_cost, overlap_add_length, transform_cost

    transforms = n * c_in + n * c_out + c_out * c_in
    lengths = [sfft.next_fast_len(r, real=True) for r in reach]
    size = math.prod(lengths)
    cost_of = line_transform_cost if len(reach) == 1 else transform_cost
    whole = FFT_COST * transforms * cost_of(size) + PRODUCT_COST * n * c_out * c_in * size / 2
    fft_block = None
    if len(reach) == 1:
        block = overlap_add_length(reach[0], spans[0])
        n_blocks = math.ceil(reach[0] / (block - spans[0] + 1))
        blocked = (
            FFT_COST * ((n * c_in + n * c_out) * n_blocks + c_out * c_in) * cost_of(block)
            + PRODUCT_COST * n * c_out * c_in * n_blocks * block / 2
        )
        if blocked < whole:
            whole, fft_block = blocked, block
    costs["fft"] = float(FFT_SCALE[len(reach)] * whole)
    return costs, fft_block


def _fft_cost_floor(signals: int, reach: list[int], spans: Sequence[int]) -> float:
    """A lower bound of the fft cost: every FFT plan transforms all ``signals`` over at least
    prod(reach) points, each at least log2 of its transform length, which is >= the whole
    padded size in 2-D and >= 2·span per overlap-add block in 1-D."""
    points = math.prod(reach)
    shortest = min(points, 2 * spans[0]) if len(reach) == 1 else points
    return float(FFT_SCALE[len(reach)] * FFT_COST * signals * points * math.log2(max(shortest, 2)))


def _choose(
    method: str, costs: dict[str, float], rank1: bool | None, memory: dict[str, float]
) -> tuple[str, str]:
    counts = ", ".join(f"{name} {cost:.3g}" for name, cost in costs.items())
    if method == "auto":
        # the cheapest method whose buffers fit the memory budget (a huge dilation makes the
        # separable and FFT buffers as long as the dilated kernel, the direct method not)
        fitting = [name for name in costs if memory[name] <= budget.limit("memory")] or list(costs)
        chosen = min(fitting, key=costs.get)
        if chosen != min(costs, key=costs.get):
            return chosen, f"auto: {chosen} has the lowest estimated cost within the memory budget " \
                f"({counts})"
        return chosen, f"auto: {chosen} has the lowest estimated cost ({counts})"
    if method == "separable" and "separable" not in costs:
        why = "is not rank 1" if rank1 is False else "is not a 2-D single-channel kernel with both sides > 1"
        raise UsageError(f"method 'separable' needs a rank-1 2-D kernel; this kernel {why}")
    return method, f"method {method!r} requested ({counts})"


def _compute_dtype(x: np.ndarray) -> np.dtype:
    if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise UsageError(f"input must be real numbers, got dtype {x.dtype}")
    return np.dtype(np.float64 if x.dtype == np.float64 else np.float32)


def convolve(
    x,
    kernel,
    *,
    mode: str = "same",
    boundary: str = "constant",
    cval: float = 0.0,
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    correlate: bool = False,
    method: str = "auto",
    groups: int = 1,
) -> np.ndarray:
    """Convolve (or with ``correlate=True`` cross-correlate) ``x`` with ``kernel``.

    ``x``: ``(..., L)`` with a 1-D kernel, ``(..., H, W)`` with a 2-D kernel (leading axes are
    channels/batch, the kernel applies to each); a ``(C_out, C_in, k)`` / ``(C_out, C_in, kh, kw)``
    kernel mixes channels like a CNN layer: ``(C_in, ...) -> (C_out, ...)`` or batched
    ``(N, C_in, ...) -> (N, C_out, ...)``.
    ``mode``: same (scipy.signal's centring) | valid | full; an explicit ``padding`` (int, per-axis,
    or (before, after) per axis) overrides it. ``boundary``: constant (``cval``) | reflect |
    symmetric | edge | wrap (and aliases). Stride subsamples the stride-1 result; dilation spaces
    the taps. float64 input stays float64, anything else is computed in float32.
    ``groups``: a ``(C_out, C_in/groups, *k)`` kernel; input channels and output channels split into
    ``groups`` groups, group g's outputs see only group g's inputs (``torch.nn.functional.conv2d``'s
    ``groups``; depthwise: ``(C, 1, *k)`` with ``groups=C``).
    """
    return convolve_planned(
        x, kernel, mode=mode, boundary=boundary, cval=cval, stride=stride, dilation=dilation,
        padding=padding, correlate=correlate, method=method, groups=groups,
    )[0]


def convolve_planned(
    x,
    kernel,
    *,
    mode: str = "same",
    boundary: str = "constant",
    cval: float = 0.0,
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    correlate: bool = False,
    method: str = "auto",
    factors: tuple[np.ndarray, np.ndarray] | None = None,
    groups: int = 1,
) -> tuple[np.ndarray, ConvPlan]:
    """:func:`convolve`, also returning the plan it ran (method, reason, left-over rows).

    ``factors=(column, row)`` (with ``kernel`` None) gives a separable 2-D kernel as its 1-D
    factors, so a large one is never built unless a method other than separable is asked for.
    """
    from convcli.engine.boundary import MODE_CODES, normalize_boundary

    boundary_code = MODE_CODES[normalize_boundary(boundary)]
    x = np.asarray(x)
    dtype = _compute_dtype(x)
    if not np.isfinite(cval):
        raise UsageError(f"cval must be finite, got {cval}")
    if factors is not None:
        if groups != 1:
            raise UsageError(f"`groups` {groups} needs a channel-mixing kernel, not a separable filter")
        factors = _check_factors(factors)
        if not correlate:
            factors = tuple(f[::-1] for f in factors)
        how = plan(x.shape, None, mode=mode, stride=stride, dilation=dilation, padding=padding,
                   method=method, dtype=dtype, factors=factors, boundary=boundary)
        # direct or fft (asked for by name): the dense kernel, counted in the plan's memory
        kernel = np.outer(*how.factors) if how.method != "separable" else np.ones((1, 1))
        return _execute(x, kernel, how, dtype, boundary_code, cval)
    kernel = np.asarray(kernel)
    _check_kernel(kernel)
    nd = kernel.ndim if kernel.ndim <= 2 else kernel.ndim - 2
    if not correlate:  # true convolution: flip the spatial axes
        kernel = np.flip(kernel, axis=tuple(range(-nd, 0)))
    if groups != 1:
        return _convolve_groups(x, kernel, groups, dtype, boundary_code, cval, mode=mode, stride=stride,
                                dilation=dilation, padding=padding, method=method, boundary=boundary)
    how = plan(
        x.shape, kernel, mode=mode, stride=stride, dilation=dilation, padding=padding, method=method,
        dtype=dtype, boundary=boundary,
    )
    return _execute(x, _planned_kernel(kernel, how), how, dtype, boundary_code, cval)


def _planned_kernel(kernel: np.ndarray, how: ConvPlan) -> np.ndarray:
    """The kernel the plan's engine geometry runs: folded by the boundary where the plan folded it."""
    return kernel if how.folded is None else how.folded


def _convolve_groups(
    x, kernel, groups: int, dtype, boundary_code, cval, **options
) -> tuple[np.ndarray, ConvPlan]:
    """Each group through the ungrouped engine (see :mod:`convcli.engine.groups`); the budget is
    checked for all groups before the first runs."""
    from convcli.engine.groups import channels, group_slices

    nd = kernel.ndim - 2
    parts = group_slices(x.shape, kernel.shape, groups)
    plans = [plan(channels(x, inputs, nd).shape, kernel[rows], dtype=dtype, **options)
             for inputs, rows in parts]
    how = plans[0]
    budget.check("operations", groups * how.costs[how.method],
                 f"convolving an input of shape {shape_text(x.shape)} with a {shape_text(kernel.shape)} "
                 f"kernel in {groups} groups")
    outs = [
        _execute(channels(x, inputs, nd), _planned_kernel(kernel[rows], group_plan), group_plan, dtype,
                 boundary_code, cval)[0]
        for (inputs, rows), group_plan in zip(parts, plans, strict=True)
    ]
    out = np.concatenate(outs, axis=-nd - 1)
    reason = f"{groups} groups, each: {how.reason}"
    return out, replace(how, output_shape=out.shape, reason=reason)


def _execute(x, kernel, how: ConvPlan, dtype, boundary_code, cval) -> tuple[np.ndarray, ConvPlan]:
    nd = len(how.stride)
    kernel = kernel.astype(dtype)
    x = x.astype(dtype, copy=False)
    # engines see (N, C_in, *spatial) and (C_out, C_in, *k)
    if kernel.ndim <= 2:
        signals = x.reshape(-1, 1, *x.shape[-nd:])
        kernel = kernel.reshape(1, 1, *kernel.shape)
    else:
        signals = x.reshape(-1, *x.shape[-nd - 1 :])
    spatial_out = how.output_shape[-nd:]
    with np.errstate(over="ignore", invalid="ignore"):  # told below in the tool's words
        out = _run(how, signals, kernel, spatial_out, boundary_code, cval)
    wider = "; --dtype float64 reaches 1e308" if out.dtype == np.float32 else ""
    warn_if_overflowed(x, out, f"convolution (the input's or the kernel's values are too large{wider})")
    return out.reshape(how.output_shape), how


def warn_if_overflowed(x: np.ndarray, out: np.ndarray, what: str) -> None:
    """Say, once, when a finite input gave values that are not finite (float overflow, or inf − inf
    after it): numpy's own 'overflow encountered in ...' names neither the cause nor a remedy.
    ``what``: the operation, and why it may overflow."""
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad and np.isfinite(x).all():
        warnings.warn(f"{bad} output values are ±inf or NaN although the input is finite: the {what} "
                      f"overflowed {out.dtype}", RuntimeWarning, stacklevel=3)


def _run(how: ConvPlan, signals, kernel, spatial_out, boundary_code, cval) -> np.ndarray:
    nd = len(spatial_out)
    before = tuple(p[0] for p in how.engine_padding)
    if how.lines:
        from convcli.engine import lines

        return lines.correlate(signals, kernel, spatial_out[0], how.stride[0], how.engine_dilation[0],
                               how.engine_padding[0], boundary_code, cval)
    if how.method == "fft":
        from convcli.engine import fft
        from convcli.engine.boundary import BOUNDARIES, window

        # only the padded positions some output reads: a wide --padding with a large stride reads a
        # few of them, and the plan's fft memory counts no more
        spans = [effective_kernel(k, d) for k, d in zip(kernel.shape[-nd:], how.engine_dilation, strict=True)]
        windows = [(-b, input_reach(o, k, s)) for b, o, k, s in zip(before, spatial_out, spans, how.stride,
                                                                      strict=True)]
        padded = window(signals, windows, BOUNDARIES[boundary_code], cval)
        return fft.correlate(padded, kernel, spatial_out, how.stride, how.engine_dilation, how.fft_block)
    # the Numba engines take 2-D images; a 1-D signal is one row
    lift = (lambda t, one: (one, *t)) if nd == 1 else (lambda t, one: tuple(t))
    images = signals.reshape(*signals.shape[:2], *([1] * (2 - nd)), *signals.shape[2:])
    geometry = (lift(spatial_out, 1), lift(how.stride, 1), lift(how.engine_dilation, 1), lift(before, 0))
    if how.method == "separable":
        from convcli.engine import separable

        return separable.correlate(images, how.factors, *geometry, boundary_code, cval)
    from convcli.engine import direct

    kernel4 = kernel.reshape(*kernel.shape[:2], *([1] * (2 - nd)), *kernel.shape[2:])
    return direct.correlate(images, kernel4, *geometry, boundary_code, cval)
