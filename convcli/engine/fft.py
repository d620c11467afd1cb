"""FFT correlation (scipy.fft): one transform of the whole padded input, or overlap-add in blocks.

The input is padded explicitly (:func:`convcli.engine.boundary.pad`), then correlated in
'valid' mode. A circular convolution of length L >= padded length already gives the valid
outputs exactly (the wrap-around only touches the discarded ends), so L = next_fast_len(P).
Long 1-D signals with a short kernel use overlap-add: blocks of an FFT length F tuned to the
kernel, cost ~ (P/(F-k+1))·F·log2 F instead of P·log2 P. float32 input stays complex64.
Strided outputs are computed in full and subsampled: the planner picks FFT only when that
is still cheaper than direct.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft

from convcli.sizes import input_reach

WORKERS = -1  # scipy.fft: use every core
MIN_BLOCK = 4096  # smallest overlap-add FFT length (measured: smaller blocks are slower)
# Above this length a batch of 1-D transforms runs one row per call, on threads: pocketfft's
# batched call interleaves rows for SIMD, which for long rows thrashes the cache (measured on two
# rows of 2,985,984 points: 85 ms batched, with or without workers; 37 ms as two threaded calls).
# Below it the batched call wins: 36 rows of 262,144 points, 35 ms batched, 60 ms row by row.
ROW_BY_ROW = 1 << 20
CACHED_POINTS = 1 << 17  # the longest real float32 transform that runs at the cached price
CACHE_EXPONENT = 0.55


def dilate(kernel: np.ndarray, dilation: tuple[int, ...]) -> np.ndarray:
    """Kernel with (d−1) zeros between taps along each trailing spatial axis."""
    nd = len(dilation)
    spatial = kernel.shape[-nd:]
    span = tuple(d * (k - 1) + 1 for k, d in zip(spatial, dilation, strict=True))
    out = np.zeros((*kernel.shape[:-nd], *span), dtype=kernel.dtype)
    out[(Ellipsis, *(slice(None, None, d) for d in dilation))] = kernel
    return out


def transform_cost(n: int) -> float:
    """Relative cost of one real FFT of length n (in units of n·log2 n)."""
    return n * math.log2(max(n, 2))


def line_transform_cost(n: int) -> float:
    """:func:`transform_cost` of one long 1-D transform, whose price per n·log2 n step grows once
    it leaves a core's cache (measured per point, float32, 2 rows on 2 cores: 2**17 points 1×,
    2**18 1.3×, 2**19 2×, 2**20 2.9×, 2**21.5 6×; ~ (n / CACHED_POINTS)**0.55)."""
    return transform_cost(n) * max(1.0, n / CACHED_POINTS) ** CACHE_EXPONENT


def overlap_add_length(padded: int, span: int) -> int:
    """The FFT block length F (a power of two >= 2·span, >= MIN_BLOCK) minimizing the overlap-add
    transform work. Powers of two only: pocketfft's other fast lengths (factors 3 and 5) measured
    up to 1.4x slower per n·log2 n (192,000 points: 154 ms where 262,144 took 112 ms)."""
    best, best_cost = 0, math.inf
    # below ~4096 points the per-transform overhead of scipy.fft outweighs the n·log2 n savings
    f = 1 << (max(2 * span, MIN_BLOCK) - 1).bit_length()
    while True:
        step = f - span + 1
        cost = math.ceil(padded / step) * line_transform_cost(f)
        if cost < best_cost:
            best, best_cost = f, cost
        if f >= padded + span:
            return best
        f *= 2


def _row_by_row(transform, x: np.ndarray, n: int, out_length: int, out_dtype) -> np.ndarray:
    """``transform(row, n)`` of every row of ``x`` (last axis), rows spread over threads."""
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty((rows.shape[0], out_length), dtype=out_dtype)

    def one(i: int) -> None:
        out[i] = transform(rows[i], n, workers=1)

    with ThreadPoolExecutor(min(len(rows), os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(rows))))
    return out.reshape(*x.shape[:-1], out_length)


def rfft_last(x: np.ndarray, n: int) -> np.ndarray:
    """``scipy.fft.rfft(x, n, axis=-1)``, row by row on threads for long rows."""
    if n < ROW_BY_ROW or x.size <= x.shape[-1]:
        return sfft.rfft(x, n, axis=-1, workers=WORKERS)
    return _row_by_row(sfft.rfft, x, n, n // 2 + 1, np.result_type(x.dtype, np.complex64))


def irfft_last(x_hat: np.ndarray, n: int) -> np.ndarray:
    """``scipy.fft.irfft(x_hat, n, axis=-1)``, row by row on threads for long rows."""
    if n < ROW_BY_ROW or x_hat.size <= x_hat.shape[-1]:
        return sfft.irfft(x_hat, n, axis=-1, workers=WORKERS)
    return _row_by_row(sfft.irfft, x_hat, n, n, np.finfo(x_hat.dtype).dtype)


def _product(x_hat: np.ndarray, k_hat: np.ndarray) -> np.ndarray:
    """Sum over input channels of x̂·k̂: x̂ (N, C_in, ...), k̂ (C_out, C_in, ...) -> (N, C_out, ...)."""
    if k_hat.shape[0] == 1 and k_hat.shape[1] == 1:
        return x_hat * k_hat[0]
    return np.einsum("nc...,oc...->no...", x_hat, k_hat)


def correlate(
    padded: np.ndarray,
    kernel: np.ndarray,
    out_shape: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    block: int | None = None,
) -> np.ndarray:
    """Valid correlation of ``padded`` (N, C_in, *P) with ``kernel`` (C_out, C_in, *k).

    ``block``: overlap-add FFT length (1-D only), or None for one transform of the whole axis.
    """
    bad = ~np.isfinite(padded)
    if bad.any():
        return _correlate_non_finite(padded, bad, kernel, out_shape, stride, dilation, block)
    nd = len(out_shape)
    flipped = np.flip(dilate(kernel, dilation), axis=tuple(range(-nd, 0)))
    span = flipped.shape[-nd:]
    # only the part of the padded input that some output reaches
    reach = tuple(input_reach(o, k, s) for o, s, k in zip(out_shape, stride, span, strict=True))
    padded = padded[(Ellipsis, *(slice(0, r) for r in reach))]
    if block is not None:
        full = _overlap_add(padded, flipped, block)
    elif nd == 1:
        length = sfft.next_fast_len(reach[0], real=True)
        full = irfft_last(_product(rfft_last(padded, length), rfft_last(flipped, length)), length)
    else:
        axes = tuple(range(-nd, 0))
        lengths = [sfft.next_fast_len(r, real=True) for r in reach]
        x_hat = sfft.rfftn(padded, lengths, axes=axes, workers=WORKERS)
        k_hat = sfft.rfftn(flipped, lengths, axes=axes, workers=WORKERS)
        full = sfft.irfftn(_product(x_hat, k_hat), lengths, axes=axes, workers=WORKERS)
    keep = tuple(
        slice(k - 1, k - 1 + (o - 1) * s + 1, s) for k, o, s in zip(span, out_shape, stride, strict=True)
    )
    return np.ascontiguousarray(full[(Ellipsis, *keep)], dtype=padded.dtype)


def _correlate_non_finite(padded, bad, kernel, out_shape, stride, dilation, block) -> np.ndarray:
    """:func:`correlate` of an input holding NaN or ±inf, which a transform would spread over the
    whole block: the finite part is transformed with those samples set to 0, then the outputs
    whose window holds one under a nonzero tap get the value the direct sum gives (NaN for a NaN,
    or for +inf meeting −inf; else ±inf), found by correlating indicator masks with the taps."""
    def hits(mask: np.ndarray, taps: np.ndarray) -> np.ndarray:
        if not mask.any() or not taps.any():
            return np.zeros((padded.shape[0], kernel.shape[0], *out_shape), dtype=bool)
        counts = correlate(mask.astype(padded.dtype), taps.astype(padded.dtype), out_shape, stride, dilation,
                           block)
        return counts > 0.5  # whole counts, up to the transform's rounding

    out = correlate(np.where(bad, 0, padded), kernel, out_shape, stride, dilation, block)
    positive, negative = padded == np.inf, padded == -np.inf
    rising = hits(positive, kernel > 0) | hits(negative, kernel < 0)
    falling = hits(positive, kernel < 0) | hits(negative, kernel > 0)
    out[rising] = np.inf
    out[falling] = -np.inf
    out[(rising & falling) | hits(np.isnan(padded), kernel != 0)] = np.nan
    return out


def _overlap_add(padded: np.ndarray, flipped: np.ndarray, block: int) -> np.ndarray:
    """Linear convolution along the last axis by overlap-add with FFT length ``block``."""
    length, span = padded.shape[-1], flipped.shape[-1]
    step = block - span + 1
    n_blocks = -(-length // step)
    lead = padded.shape[:-1]
    # each row: `step` samples then zeros up to the FFT length (no per-transform padding copy)
    blocks = np.zeros((*lead, n_blocks, block), dtype=padded.dtype)
    whole, rest = divmod(length, step)
    blocks[..., :whole, :step] = padded[..., : whole * step].reshape(*lead, whole, step)
    if rest:
        blocks[..., whole, :rest] = padded[..., whole * step :]
    x_hat = rfft_last(blocks, block)
    k_hat = rfft_last(flipped, block)[..., None, :]
    if k_hat.shape[0] == 1 and k_hat.shape[1] == 1:
        x_hat *= k_hat[0]  # in place: no second spectrum-sized buffer
        product = x_hat
    else:
        product = _product(x_hat, k_hat)
    y = irfft_last(product, block)
    out_lead = y.shape[:-2]
    full = np.empty((*out_lead, (n_blocks + 1) * step), dtype=y.dtype)
    full[..., : n_blocks * step].reshape(*out_lead, n_blocks, step)[...] = y[..., :step]
    full[..., n_blocks * step :] = 0.0
    tails = full[..., step:].reshape(*out_lead, n_blocks, step)
    tails[..., : span - 1] += y[..., step : step + span - 1]
    return full
