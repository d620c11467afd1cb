"""Direct (sliding-window) correlation in Numba, with the boundary applied row by row.

Everything is a valid cross-correlation of a padded input: ``x`` is ``(N, C_in, H, W)``, the
kernel ``(C_out, C_in, kh, kw)`` (a 1-D signal is a single row). The padded image is never
materialized and nothing is copied: each task (one image, a band of output rows) maps every
kernel row to its input row through ``source_index`` (boundary.py's mapping, compiled; a shared
row of ``cval`` above/below the input in constant mode) and reads the input in place. The
interior columns (every tap inside the input) run as contiguous, SIMD-friendly loops, eight
taps per pass over an output block (the accumulator is loaded and stored once per eight
multiply-adds; the first pass assigns, so there is no zeroing pass), and zero taps are
skipped; only the few border columns map each tap's column (a table computed once per call).
Strided outputs are computed directly (only the kept positions).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from convcli.engine import boundary

# the one definition of the boundary index mapping, compiled for the kernels
source_index = njit(cache=True, nogil=True)(boundary.source_index)

# output columns per inner block: the accumulator block (8 KiB in float32) stays in L1
COLUMN_BLOCK = 2048
# output rows per parallel task (3 channels of a 4K image: ~200 tasks for 2 cores)
ROW_BAND = 32


@njit(cache=True, fastmath=True, nogil=True)
def accumulate_taps(acc, j0, j1, rows, weights, offsets, stride, assign):
    """``acc[j] (+)= Σ_t weights[t] · rows[t][j·stride + offsets[t]]`` for ``j`` in ``[j0, j1)``.

    With ``assign`` the first pass overwrites ``acc`` (no zeroing pass). Taps go eight (then
    four, then one) per pass: one load/store of ``acc`` per eight multiply-adds. The loops run
    over views from index 0 so that Numba drops negative-index handling and vectorizes them.
    """
    n_taps = weights.shape[0]
    m = j1 - j0
    block = acc[j0:j1]
    start = j0 * stride
    if n_taps == 0 and assign:
        block[:] = 0.0
    t = 0
    while t < n_taps:
        first = assign and t == 0
        if stride == 1 and t + 8 <= n_taps:
            _eight_taps(block, m, rows, weights, offsets, start, t, first)
            t += 8
        elif t + 4 <= n_taps:
            r0 = rows[t][offsets[t] + start :]
            r1 = rows[t + 1][offsets[t + 1] + start :]
            r2 = rows[t + 2][offsets[t + 2] + start :]
            r3 = rows[t + 3][offsets[t + 3] + start :]
            w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
            if first and stride == 1:
                for j in range(m):
                    block[j] = w0 * r0[j] + w1 * r1[j] + w2 * r2[j] + w3 * r3[j]
            elif first:
                for j in range(m):
                    k = j * stride
                    block[j] = w0 * r0[k] + w1 * r1[k] + w2 * r2[k] + w3 * r3[k]
            elif stride == 1:
                for j in range(m):
                    block[j] += w0 * r0[j] + w1 * r1[j] + w2 * r2[j] + w3 * r3[j]
            else:
                for j in range(m):
                    k = j * stride
                    block[j] += w0 * r0[k] + w1 * r1[k] + w2 * r2[k] + w3 * r3[k]
            t += 4
        else:
            r0 = rows[t][offsets[t] + start :]
            w0 = weights[t]
            if first and stride == 1:
                for j in range(m):
                    block[j] = w0 * r0[j]
            elif first:
                for j in range(m):
                    block[j] = w0 * r0[j * stride]
            elif stride == 1:
                for j in range(m):
                    block[j] += w0 * r0[j]
            else:
                for j in range(m):
                    block[j] += w0 * r0[j * stride]
            t += 1


@njit(cache=True, fastmath=True, nogil=True, inline="always")
def _eight_taps(block, m, rows, weights, offsets, start, t, first):
    r0 = rows[t][offsets[t] + start :]
    r1 = rows[t + 1][offsets[t + 1] + start :]
    r2 = rows[t + 2][offsets[t + 2] + start :]
    r3 = rows[t + 3][offsets[t + 3] + start :]
    r4 = rows[t + 4][offsets[t + 4] + start :]
    r5 = rows[t + 5][offsets[t + 5] + start :]
    r6 = rows[t + 6][offsets[t + 6] + start :]
    r7 = rows[t + 7][offsets[t + 7] + start :]
    w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
    w4, w5, w6, w7 = weights[t + 4], weights[t + 5], weights[t + 6], weights[t + 7]
    if first:
        for j in range(m):
            block[j] = (w0 * r0[j] + w1 * r1[j] + w2 * r2[j] + w3 * r3[j]) + (
                w4 * r4[j] + w5 * r5[j] + w6 * r6[j] + w7 * r7[j]
            )
    else:
        for j in range(m):
            block[j] += (w0 * r0[j] + w1 * r1[j] + w2 * r2[j] + w3 * r3[j]) + (
                w4 * r4[j] + w5 * r5[j] + w6 * r6[j] + w7 * r7[j]
            )


@njit(cache=True, nogil=True)
def _border_value(rows, weights, offsets, position, column_map, cval):
    """One output whose taps reach past the input's left or right edge: each tap is mapped."""
    total = 0.0
    for t in range(weights.shape[0]):
        c = column_map[position + offsets[t]]
        total += weights[t] * (cval if c < 0 else rows[t][c])
    return total


@njit(cache=True, parallel=True, fastmath=True)
def correlate_direct(
    x, tap_rows, tap_offsets, tap_weights, tap_counts, out, kh, stride_h, stride_w, dil_h, dil_w,
    pad_top, pad_left, mode, cval,
):
    """Fill ``out`` (N, C_out, Ho, Wo) with the valid correlation of padded ``x`` and a kernel.

    The kernel comes as tap tables (see :func:`tap_tables`): for output channel ``co``, tap ``t``
    reads padded row ``tap_rows[co, t]`` (= ci·kh + u) at column offset ``tap_offsets[co, t]``.
    """
    n_images, c_in, h, w = x.shape
    c_out = tap_weights.shape[0]
    ho, wo = out.shape[2], out.shape[3]
    # a row above/below the input in constant mode (a read-only row shared by all tasks)
    constant_row = np.full(w, cval, dtype=x.dtype)
    input_offsets = tap_offsets - pad_left  # tap offsets as input columns, for the interior
    # the input column under each padded column (-1: cval), for the few border outputs
    column_map = np.empty(max((wo - 1) * stride_w + tap_offsets.max() + 1, 0), dtype=np.int64)
    for p in range(column_map.shape[0]):
        column_map[p] = source_index(p - pad_left, w, mode)
    n_bands = (ho + ROW_BAND - 1) // ROW_BAND
    for task in prange(n_images * n_bands):
        img = task // n_bands
        band = task % n_bands
        for i in range(band * ROW_BAND, min(ho, (band + 1) * ROW_BAND)):
            kernel_rows = []  # the input row under kernel row u of channel ci, at ci·kh + u
            for ci in range(c_in):
                for u in range(kh):
                    r = source_index(i * stride_h + u * dil_h - pad_top, h, mode)
                    kernel_rows.append(constant_row if r < 0 else x[img, ci, r])
            for co in range(c_out):
                count = tap_counts[co]
                rows = [kernel_rows[tap_rows[co, t]] for t in range(count)]
                weights = tap_weights[co, :count]
                offsets = tap_offsets[co, :count]
                # interior columns [j_lo, j_hi): every tap inside the input, read in place
                j_lo = min(wo, max(0, -(-pad_left // stride_w)))
                j_hi = min(wo, (w - 1 - offsets.max() + pad_left) // stride_w + 1)
                j_hi = max(j_hi, j_lo)
                orow = out[img, co, i]
                for j0 in range(j_lo, j_hi, COLUMN_BLOCK):
                    j1 = min(j_hi, j0 + COLUMN_BLOCK)
                    accumulate_taps(orow, j0, j1, rows, weights, input_offsets[co, :count], stride_w, True)
                for j in range(j_lo):
                    orow[j] = _border_value(rows, weights, offsets, j * stride_w, column_map, cval)
                for j in range(j_hi, wo):
                    orow[j] = _border_value(rows, weights, offsets, j * stride_w, column_map, cval)


def tap_tables(kernel: np.ndarray, dil_w: int) -> tuple[np.ndarray, ...]:
    """Per output channel, the nonzero taps of ``kernel`` (C_out, C_in, kh, kw) as flat tables.

    Zero taps are skipped (a 3×3 sharpen has 5 taps, not 9). The lists are not padded to a
    multiple of 4 with zero taps: measured, a short last pass beats loading the zero taps' rows.
    """
    c_out, c_in, kh, kw = kernel.shape
    ci, u, v = np.meshgrid(np.arange(c_in), np.arange(kh), np.arange(kw), indexing="ij")
    nonzero = kernel.reshape(c_out, -1) != 0
    counts = np.maximum(nonzero.sum(axis=1), 1)  # an all-zero kernel keeps one zero tap
    width = int(counts.max())
    rows = np.zeros((c_out, width), dtype=np.int64)
    offsets = np.zeros((c_out, width), dtype=np.int64)
    weights = np.zeros((c_out, width), dtype=kernel.dtype)
    for co in range(c_out):
        keep = np.flatnonzero(nonzero[co])
        rows[co, : keep.size] = (ci * kh + u).ravel()[keep]
        offsets[co, : keep.size] = v.ravel()[keep] * dil_w
        weights[co, : keep.size] = kernel[co].ravel()[keep]
    return rows, offsets, weights, counts


def correlate(
    x: np.ndarray,
    kernel: np.ndarray,
    out_shape: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pad_before: tuple[int, int],
    mode: int,
    cval: float,
) -> np.ndarray:
    """Valid correlation of ``x`` (N, C_in, H, W) padded virtually, kernel (C_out, C_in, kh, kw)."""
    out = np.empty((x.shape[0], kernel.shape[0], *out_shape), dtype=x.dtype)
    tables = tap_tables(kernel, dilation[1])
    correlate_direct(
        np.ascontiguousarray(x), *tables, out, kernel.shape[2], *stride, *dilation, *pad_before,
        mode, x.dtype.type(cval),
    )
    return out
