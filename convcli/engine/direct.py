"""Direct (sliding-window) correlation in Numba, with the boundary applied row by row.

Everything is a valid cross-correlation of a padded input: ``x`` is ``(N, C_in, H, W)``, the
kernel ``(C_out, C_in, kh, kw)`` (a 1-D signal is a single row). The padded image is never
materialized: each task (one image, a band of output rows) keeps a small ring of padded rows
(row ``q`` of the padded image lives in slot ``q mod span``), filled through
:func:`convcli.engine.boundary.source_index` once per band, so any padding width and every
boundary mode cost one row copy. The taps then run as contiguous, SIMD-friendly loops over the
padded rows, eight taps per pass over an L1-sized output block (the accumulator is loaded and
stored once per eight multiply-adds; the first pass assigns, so there is no zeroing pass), and
zero taps are skipped. Strided outputs are computed directly (only the kept positions).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from convcli.engine.boundary import source_index

# output columns per inner block: the accumulator block (8 KiB in float32) stays in L1
COLUMN_BLOCK = 2048
# output rows per parallel task: the padded-row ring is refilled once per band
ROW_BAND = 32


@njit(cache=True, fastmath=True, nogil=True)
def accumulate_taps(acc, j0, j1, src, row_index, weights, offsets, stride, assign):
    """``acc[j] (+)= Σ_t weights[t] · src[row_index[t], j·stride + offsets[t]]``, ``j`` in ``[j0, j1)``.

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
            _eight_taps(block, m, src, row_index, weights, offsets, start, t, first)
            t += 8
        elif t + 4 <= n_taps:
            r0 = src[row_index[t]][offsets[t] + start :]
            r1 = src[row_index[t + 1]][offsets[t + 1] + start :]
            r2 = src[row_index[t + 2]][offsets[t + 2] + start :]
            r3 = src[row_index[t + 3]][offsets[t + 3] + start :]
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
            r0 = src[row_index[t]][offsets[t] + start :]
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
def _eight_taps(block, m, src, row_index, weights, offsets, start, t, first):
    r0 = src[row_index[t]][offsets[t] + start :]
    r1 = src[row_index[t + 1]][offsets[t + 1] + start :]
    r2 = src[row_index[t + 2]][offsets[t + 2] + start :]
    r3 = src[row_index[t + 3]][offsets[t + 3] + start :]
    r4 = src[row_index[t + 4]][offsets[t + 4] + start :]
    r5 = src[row_index[t + 5]][offsets[t + 5] + start :]
    r6 = src[row_index[t + 6]][offsets[t + 6] + start :]
    r7 = src[row_index[t + 7]][offsets[t + 7] + start :]
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
def _border_value(src, row_index, weights, offsets, n_taps, position, w, mode, cval):
    """Σ over the first ``n_taps`` taps at a column past the input's left/right edge (mapped)."""
    total = 0.0
    for t in range(n_taps):
        c = source_index(position + offsets[t], w, mode)
        total += weights[t] * (cval if c < 0 else src[row_index[t], c])
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
    c_out, width = tap_weights.shape
    ho, wo = out.shape[2], out.shape[3]
    n_bands = (ho + ROW_BAND - 1) // ROW_BAND
    for task in prange(n_images * n_bands):
        img = task // n_bands
        band = task % n_bands
        src = x[img].reshape(c_in * h, w)
        # this output row's taps that land on input rows (constant-mode rows outside are cval)
        row_index = np.empty(width, dtype=np.int64)
        weights = np.empty(width, dtype=x.dtype)
        offsets = np.empty(width, dtype=np.int64)
        input_offsets = np.empty(width, dtype=np.int64)
        for i in range(band * ROW_BAND, min(ho, (band + 1) * ROW_BAND)):
            for co in range(c_out):
                n_taps = 0
                outside = 0.0  # the taps on constant rows, summed: cval · their weights
                for t in range(tap_counts[co]):
                    ci, u = divmod(tap_rows[co, t], kh)
                    r = source_index(i * stride_h + u * dil_h - pad_top, h, mode)
                    if r < 0:
                        outside += tap_weights[co, t] * cval
                        continue
                    row_index[n_taps] = ci * h + r
                    weights[n_taps] = tap_weights[co, t]
                    offsets[n_taps] = tap_offsets[co, t]
                    input_offsets[n_taps] = tap_offsets[co, t] - pad_left
                    n_taps += 1
                # interior columns [j_lo, j_hi): every tap inside the input, read in place
                j_lo = min(wo, max(0, -(-pad_left // stride_w)))
                j_hi = min(wo, (w - 1 - tap_offsets[co, : tap_counts[co]].max() + pad_left) // stride_w + 1)
                j_hi = max(j_hi, j_lo)
                orow = out[img, co, i]
                for j0 in range(j_lo, j_hi, COLUMN_BLOCK):
                    j1 = min(j_hi, j0 + COLUMN_BLOCK)
                    accumulate_taps(
                        orow, j0, j1, src, row_index[:n_taps], weights[:n_taps], input_offsets[:n_taps],
                        stride_w, True,
                    )
                if outside != 0.0:
                    orow[j_lo:j_hi] += outside
                for j in range(wo):
                    if j_lo <= j < j_hi:  # interior: done above
                        continue
                    position = j * stride_w - pad_left
                    orow[j] = outside + _border_value(src, row_index, weights, offsets, n_taps, position, w,
                                                      mode, cval)


def tap_tables(kernel: np.ndarray, dil_w: int) -> tuple[np.ndarray, ...]:
    """Per output channel, the nonzero taps of ``kernel`` (C_out, C_in, kh, kw) as flat tables.

    Zero taps are skipped (a 3×3 sharpen has 5 taps, not 9); each list is padded with zero
    taps to a multiple of 4, so that no pass over the output runs for a lone leftover tap.
    """
    c_out, c_in, kh, kw = kernel.shape
    ci, u, v = np.meshgrid(np.arange(c_in), np.arange(kh), np.arange(kw), indexing="ij")
    nonzero = kernel.reshape(c_out, -1) != 0
    counts = -(-nonzero.sum(axis=1) // 4) * 4
    width = max(int(counts.max()), 4)
    counts = np.maximum(counts, 4)
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
