"""Direct (sliding-window) correlation in Numba, with the boundary applied row by row.

Everything is a valid cross-correlation of a padded input: ``x`` is ``(N, C_in, H, W)``, the
kernel ``(C_out, C_in, kh, kw)`` (a 1-D signal is a single row). The padded image is never
materialized: for each output row, :func:`row_sources` finds the input row under every kernel
row (boundary.py's ``source_index``, compiled) and gives its start in one flat source array:
the input itself when every row is inside it (read in place, nothing copied), else a small
per-task buffer holding the mapped rows (the first and last few output rows). Every tap is then
a flat start index, so the inner loops index one array with no per-tap views (whose reference
counting cost more than the arithmetic of a small kernel). The interior columns (every tap
inside the input) run as contiguous, SIMD-friendly loops, eight taps per pass over an output
block (the accumulator is loaded and stored once per eight multiply-adds; the first pass
assigns, so there is no zeroing pass), and zero taps are skipped; only the few border columns
map each tap's column (a table computed once per call). Strided outputs are computed directly
(only the kept positions).
"""

from __future__ import annotations

import numpy as np

from convcli.engine import boundary
from convcli.jit import FMA_ONLY, njit, parallel_kernel, prange, uint64

# the one definition of the boundary index mapping, compiled for the kernels
source_index = njit(cache=True, nogil=True)(boundary.source_index)

# output columns per inner block: the accumulator block (8 KiB in float32) stays in L1
COLUMN_BLOCK = 2048
# output rows per parallel task (3 channels of a 4K image: ~200 tasks for 2 cores)
ROW_BAND = 32


@njit(cache=True, nogil=True)
def row_sources(flat, plane0, n_planes, h, w, first_row, step, count, mode, cval, halo, row_base):
    """Point ``row_base[p·count + u]`` at the input row ``first_row + u·step`` of plane ``plane0 + p``.

    ``flat`` is the whole input, planes of ``h × w``. Returns the array the starts index: ``flat``
    itself when every row is inside the input, else ``halo`` filled with the mapped rows (a row of
    ``cval`` where constant padding lies).
    """
    if first_row >= 0 and first_row + (count - 1) * step < h:
        for p in range(n_planes):
            for u in range(count):
                row_base[p * count + u] = ((plane0 + p) * h + first_row + u * step) * w
        return flat
    for p in range(n_planes):
        for u in range(count):
            start = (p * count + u) * w
            row_base[p * count + u] = start
            r = source_index(first_row + u * step, h, mode)
            if r < 0:
                for j in range(w):
                    halo[start + j] = cval
            else:
                source = ((plane0 + p) * h + r) * w
                for j in range(w):
                    halo[start + j] = flat[source + j]
    return halo


@njit(cache=True, fastmath=FMA_ONLY, nogil=True)
def accumulate_taps(acc, j0, j1, src, starts, weights, stride, assign):
    """``acc[j] (+)= Σ_t weights[t] · src[starts[t] + j·stride]`` for ``j`` in ``[j0, j1)``.

    With ``assign`` the first pass overwrites ``acc`` (no zeroing pass). Taps go eight (then
    four, then one) per pass: one load/store of ``acc`` per eight multiply-adds. Callers
    guarantee ``starts[t] + j0·stride >= 0``; indices are unsigned so that Numba drops its
    negative-index handling and the loops vectorize.
    """
    n_taps = weights.shape[0]
    m = j1 - j0
    block = acc[j0:j1]
    start = j0 * stride
    if n_taps == 0 and assign:
        for j in range(m):
            block[j] = 0.0
    step = uint64(stride)
    t = 0
    while t < n_taps:
        first = assign and t == 0
        if stride == 1 and t + 8 <= n_taps:
            _eight_taps(block, m, src, starts, weights, start, t, first)
            t += 8
        elif t + 4 <= n_taps:
            b0, b1 = uint64(starts[t] + start), uint64(starts[t + 1] + start)
            b2, b3 = uint64(starts[t + 2] + start), uint64(starts[t + 3] + start)
            w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
            for j in range(m):
                k = uint64(j) * step
                value = w0 * src[b0 + k] + w1 * src[b1 + k] + w2 * src[b2 + k] + w3 * src[b3 + k]
                if first:
                    block[j] = value
                else:
                    block[j] += value
            t += 4
        else:
            b0 = uint64(starts[t] + start)
            w0 = weights[t]
            for j in range(m):
                value = w0 * src[b0 + uint64(j) * step]
                if first:
                    block[j] = value
                else:
                    block[j] += value
            t += 1


@njit(cache=True, fastmath=FMA_ONLY, nogil=True, inline="always")
def _eight_taps(block, m, src, starts, weights, start, t, first):
    b0, b1 = uint64(starts[t] + start), uint64(starts[t + 1] + start)
    b2, b3 = uint64(starts[t + 2] + start), uint64(starts[t + 3] + start)
    b4, b5 = uint64(starts[t + 4] + start), uint64(starts[t + 5] + start)
    b6, b7 = uint64(starts[t + 6] + start), uint64(starts[t + 7] + start)
    w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
    w4, w5, w6, w7 = weights[t + 4], weights[t + 5], weights[t + 6], weights[t + 7]
    if first:
        for j in range(m):
            k = uint64(j)
            block[j] = (w0 * src[b0 + k] + w1 * src[b1 + k] + w2 * src[b2 + k] + w3 * src[b3 + k]) + (
                w4 * src[b4 + k] + w5 * src[b5 + k] + w6 * src[b6 + k] + w7 * src[b7 + k]
            )
    else:
        for j in range(m):
            k = uint64(j)
            block[j] += (w0 * src[b0 + k] + w1 * src[b1 + k] + w2 * src[b2 + k] + w3 * src[b3 + k]) + (
                w4 * src[b4 + k] + w5 * src[b5 + k] + w6 * src[b6 + k] + w7 * src[b7 + k]
            )


@njit(cache=True, nogil=True)
def _border_value(src, row_starts, weights, offsets, position, w, mode, cval):
    """One output whose taps reach past the input's left or right edge: each tap is mapped.

    Mapped here, tap by tap, rather than from a table of the padded row: that table grows with the
    dilation (10⁸ for a 3-tap kernel dilated 5·10⁷), while the taps to map are a few per output.
    """
    total = 0.0
    for t in range(weights.shape[0]):
        c = source_index(position + offsets[t], w, mode)
        total += weights[t] * (cval if c < 0 else src[row_starts[t] + c])
    return total


@parallel_kernel(fastmath=FMA_ONLY)
def correlate_direct(
    x, tap_rows, input_offsets, max_offsets, tap_weights, tap_counts, out, kh, stride_h, stride_w, dil_h,
    dil_w, pad_top, pad_left, mode, cval,
):
    """Fill ``out`` (N, C_out, Ho, Wo) with the valid correlation of padded ``x`` and a kernel.

    The kernel comes as tap tables (see :func:`tap_tables`): for output channel ``co``, tap ``t``
    reads padded row ``tap_rows[co, t]`` (= ci·kh + u) at column offset ``tap_offsets[co, t]``,
    given here as input columns, ``input_offsets = tap_offsets - pad_left``; ``max_offsets[co]``
    is the channel's largest tap offset.
    ``x`` must be C-contiguous.
    """
    n_images, c_in, h, w = x.shape
    c_out = tap_weights.shape[0]
    ho, wo = out.shape[2], out.shape[3]
    flat = x.reshape(-1)
    n_bands = (ho + ROW_BAND - 1) // ROW_BAND
    for task in prange(n_images * n_bands):
        img = task // n_bands
        band = task % n_bands
        halo = np.empty(c_in * kh * w, dtype=x.dtype)
        row_base = np.empty(c_in * kh, dtype=np.int64)
        row_starts = np.empty(tap_rows.shape[1], dtype=np.int64)
        starts = np.empty(tap_rows.shape[1], dtype=np.int64)
        for i in range(band * ROW_BAND, min(ho, (band + 1) * ROW_BAND)):
            src = row_sources(
                flat, img * c_in, c_in, h, w, i * stride_h - pad_top, dil_h, kh, mode, cval, halo, row_base
            )
            for co in range(c_out):
                count = tap_counts[co]
                for t in range(count):
                    row_starts[t] = row_base[tap_rows[co, t]]
                    starts[t] = row_starts[t] + input_offsets[co, t]
                weights = tap_weights[co, :count]
                shifted = input_offsets[co, :count]
                # interior columns [j_lo, j_hi): every tap inside the input, read in place
                j_lo = min(wo, max(0, -(-pad_left // stride_w)))
                j_hi = min(wo, (w - 1 - max_offsets[co] + pad_left) // stride_w + 1)
                j_hi = max(j_hi, j_lo)
                orow = out[img, co, i]
                for j0 in range(j_lo, j_hi, COLUMN_BLOCK):
                    j1 = min(j_hi, j0 + COLUMN_BLOCK)
                    accumulate_taps(orow, j0, j1, src, starts[:count], weights, stride_w, True)
                for j in range(j_lo):
                    orow[j] = _border_value(src, row_starts, weights, shifted, j * stride_w, w, mode, cval)
                for j in range(j_hi, wo):
                    orow[j] = _border_value(src, row_starts, weights, shifted, j * stride_w, w, mode, cval)


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
    rows, offsets, weights, counts = tap_tables(kernel, dilation[1])
    # tap offsets as input columns, and each output channel's widest: array arithmetic inside the
    # kernel would compile Numba's ufunc and reduction machinery (seconds on the first run)
    max_offsets = np.array([offsets[co, : counts[co]].max() for co in range(len(counts))], dtype=np.int64)
    correlate_direct.pick(out.size * int(counts.max()))(
        np.ascontiguousarray(x), rows, offsets - pad_before[1], max_offsets, weights, counts, out,
        kernel.shape[2], *stride, *dilation, *pad_before, mode, x.dtype.type(cval),
    )
    return out


@parallel_kernel()
def correlate_lines(source, shift, weights, offsets, out, stride, first, last):
    """Outputs ``[first, last)`` of each row of ``out``, the Numba twin of
    :func:`convcli.engine.lines.correlate_numpy` (its module doc says why): ``out[r, j] =
    ((w0·x[r, o0 + j·s] + w1·x[r, o1 + j·s]) + …)`` with ``x[r, p] = source[r, p + shift]``, the
    taps added one by one in order (:func:`line_taps`), over blocks of a row; one task per row, as
    ``correlate_direct`` runs 1-D signals."""
    rows = out.shape[0]
    width = source.shape[1]
    flat = source.reshape(-1)
    for row in prange(rows):
        for j0 in range(first, last, COLUMN_BLOCK):
            j1 = min(last, j0 + COLUMN_BLOCK)
            line_taps(out[row, j0:j1], flat, row * width + shift + j0 * stride, stride, weights, offsets)


@njit(cache=True, nogil=True)
def line_taps(block, flat, start, stride, weights, offsets):
    """``block[j] = ((w0·flat[start + o0 + j·s] + w1·flat[start + o1 + j·s]) + …)``, eight (then
    four, then one) taps per pass. No fastmath: a fused multiply-add would round otherwise than
    numpy's multiply then add. Indices are unsigned so that the loops vectorize (see
    :func:`accumulate_taps`); callers guarantee ``start + o0 >= 0``."""
    m = block.shape[0]
    n_taps = weights.shape[0]
    step = uint64(stride)
    b0, w0 = uint64(start + offsets[0]), weights[0]
    for j in range(m):
        block[j] = w0 * flat[b0 + uint64(j) * step]
    t = 1
    while t + 8 <= n_taps:
        _eight_line_taps(block, m, flat, start, step, weights, offsets, t)
        t += 8
    while t + 4 <= n_taps:
        b1, b2 = uint64(start + offsets[t]), uint64(start + offsets[t + 1])
        b3, b4 = uint64(start + offsets[t + 2]), uint64(start + offsets[t + 3])
        w1, w2, w3, w4 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
        for j in range(m):
            k = uint64(j) * step
            block[j] = (((block[j] + w1 * flat[b1 + k]) + w2 * flat[b2 + k]) + w3 * flat[b3 + k]) + (
                w4 * flat[b4 + k]
            )
        t += 4
    while t < n_taps:
        b1, w1 = uint64(start + offsets[t]), weights[t]
        for j in range(m):
            block[j] = block[j] + w1 * flat[b1 + uint64(j) * step]
        t += 1


@njit(cache=True, nogil=True, inline="always")
def _eight_line_taps(block, m, flat, start, step, weights, offsets, t):
    """Taps ``t .. t+7`` of :func:`line_taps` in one pass, added one by one in order."""
    b1, b2 = uint64(start + offsets[t]), uint64(start + offsets[t + 1])
    b3, b4 = uint64(start + offsets[t + 2]), uint64(start + offsets[t + 3])
    b5, b6 = uint64(start + offsets[t + 4]), uint64(start + offsets[t + 5])
    b7, b8 = uint64(start + offsets[t + 6]), uint64(start + offsets[t + 7])
    w1, w2, w3, w4 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
    w5, w6, w7, w8 = weights[t + 4], weights[t + 5], weights[t + 6], weights[t + 7]
    for j in range(m):
        k = uint64(j) * step
        total = (((block[j] + w1 * flat[b1 + k]) + w2 * flat[b2 + k]) + w3 * flat[b3 + k]) + w4 * flat[b4 + k]
        block[j] = (((total + w5 * flat[b5 + k]) + w6 * flat[b6 + k]) + w7 * flat[b7 + k]) + w8 * flat[b8 + k]
