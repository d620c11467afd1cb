"""Separable filtering: a rank-1 2-D kernel ``outer(a, b)`` as a vertical and a horizontal pass.

Cost per output pixel is kh + kw multiply-adds instead of kh·kw. The two passes are fused
per output row (the vertical pass fills one row buffer, the horizontal pass reads it), so
no intermediate image is written.
"""

from __future__ import annotations

import numpy as np

from convcli.engine.direct import COLUMN_BLOCK, ROW_BAND, accumulate_taps, row_sources, source_index
from convcli.jit import FMA_ONLY, njit, prange

# a kernel is rank 1 when its second singular value is below this many float epsilons
# (scaled by the kernel size) relative to the first
RANK_TOLERANCE_EPS = 10.0
# above this many entries (64×64) the rank-1 test is one pass over the kernel, not an SVD
SVD_MAX_SIZE = 4096


def rank1_factors(kernel: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a, b)`` with ``kernel ≈ outer(a, b)`` if the 2-D kernel is numerically rank 1, else None."""
    if kernel.ndim != 2 or min(kernel.shape) < 2:
        return None
    if kernel.size > SVD_MAX_SIZE:
        return _pivot_factors(kernel, dtype)
    u, s, vt = np.linalg.svd(kernel.astype(np.float64))
    if s[0] == 0.0:
        return None
    tolerance = RANK_TOLERANCE_EPS * max(kernel.shape) * np.finfo(dtype).eps
    if s[1] > tolerance * s[0]:
        return None
    scale = np.sqrt(s[0])
    return (u[:, 0] * scale).astype(dtype), (vt[0] * scale).astype(dtype)


def _pivot_factors(kernel: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | None:
    """Rank-1 test of a large kernel in one pass (an SVD costs kh·kw·min(kh, kw)): a rank-1 matrix
    is the outer product of the column and the row through its largest entry, divided by it."""
    matrix = kernel.astype(np.float64)
    i, j = np.unravel_index(np.argmax(np.abs(matrix)), matrix.shape)
    pivot = matrix[i, j]
    if pivot == 0.0:
        return None
    column, row = matrix[:, j], matrix[i] / pivot
    tolerance = RANK_TOLERANCE_EPS * max(kernel.shape) * np.finfo(dtype).eps * abs(pivot)
    if np.max(np.abs(matrix - np.outer(column, row))) > tolerance:
        return None
    # balance the two factors' scales, as the SVD's sqrt(s0) split does
    scale = np.sqrt(np.linalg.norm(column) / max(np.linalg.norm(row), np.finfo(np.float64).tiny))
    return (column / scale).astype(dtype), (row * scale).astype(dtype)


def _zero_padded(taps: np.ndarray) -> np.ndarray:
    """Zero taps up to a multiple of 4: a lone leftover tap would cost a whole pass."""
    out = np.zeros(-(-taps.shape[0] // 4) * 4, dtype=taps.dtype)
    out[: taps.shape[0]] = taps
    return out


@njit(cache=True, nogil=True)
def _vertical_at(position, src, row_base, column, w, mode, row_cval):
    """The vertical pass at one padded column outside the input (mapped by the boundary)."""
    source = source_index(position, w, mode)
    if source < 0:
        return row_cval
    total = 0.0
    for u in range(column.shape[0]):
        total += column[u] * src[row_base[u] + source]
    return total


@njit(cache=True, parallel=True, fastmath=FMA_ONLY)
def correlate_separable(
    x, column, row, kh, kw, out, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, mode, cval
):
    """``out`` (N, C, Ho, Wo) = valid correlation of padded ``x`` with ``outer(column, row)``;
    the factors have ``kh`` and ``kw`` taps, zero-padded to multiples of 4 (see _zero_padded)."""
    n_images, channels, h, w = x.shape
    ho, wo = out.shape[2], out.shape[3]
    padded_w = (wo - 1) * stride_w + dil_w * (kw - 1) + 1
    # a padding value cval, filtered by the vertical pass, becomes cval·sum(column)
    column_sum = 0.0
    for u in range(kh):
        column_sum += column[u]
    row_cval = cval * column_sum
    row_offsets = np.zeros(row.shape[0], dtype=np.int64)
    for v in range(kw):
        row_offsets[v] = v * dil_w
    interior = max(min(w, padded_w - pad_left), 0)  # input columns that land inside the padded row
    flat = x.reshape(-1)
    n_bands = (ho + ROW_BAND - 1) // ROW_BAND
    for task in prange(n_images * channels * n_bands):
        band = task % n_bands
        plane = task // n_bands  # = img·channels + c
        img, c = plane // channels, plane % channels
        halo = np.empty(kh * w, dtype=x.dtype)
        # zero-weight taps past kh read the first row (any valid row would do)
        row_base = np.zeros(column.shape[0], dtype=np.int64)
        padded = np.empty(padded_w, dtype=x.dtype)
        for i in range(band * ROW_BAND, min(ho, (band + 1) * ROW_BAND)):
            first_row = i * stride_h - pad_top
            src = row_sources(flat, plane, 1, h, w, first_row, dil_h, kh, mode, cval, halo, row_base)
            for u in range(kh, column.shape[0]):
                row_base[u] = row_base[0]
            # vertical pass straight into the padded row: contiguous interior, mapped edges
            middle = padded[pad_left : pad_left + interior]
            accumulate_taps(middle, 0, interior, src, row_base, column, 1, True)
            for t in range(min(pad_left, padded_w)):
                padded[t] = _vertical_at(t - pad_left, src, row_base, column, w, mode, row_cval)
            for t in range(pad_left + interior, padded_w):
                padded[t] = _vertical_at(t - pad_left, src, row_base, column, w, mode, row_cval)
            orow = out[img, c, i]
            for j0 in range(0, wo, COLUMN_BLOCK):
                j1 = min(wo, j0 + COLUMN_BLOCK)
                accumulate_taps(orow, j0, j1, padded, row_offsets, row, stride_w, True)


def correlate(
    x: np.ndarray,
    factors: tuple[np.ndarray, np.ndarray],
    out_shape: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pad_before: tuple[int, int],
    mode: int,
    cval: float,
) -> np.ndarray:
    """Valid correlation of ``x`` (N, C, H, W), padded virtually, with ``outer(*factors)``."""
    column, row = (np.ascontiguousarray(f, dtype=x.dtype) for f in factors)
    out = np.empty((*x.shape[:2], *out_shape), dtype=x.dtype)
    correlate_separable(
        np.ascontiguousarray(x), _zero_padded(column), _zero_padded(row), len(column), len(row), out,
        *stride, *dilation, *pad_before, mode, x.dtype.type(cval),
    )
    return out
