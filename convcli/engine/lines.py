"""Direct correlation of 1-D rows with one kernel, tap after tap in a fixed order: in numpy, or in
Numba (:func:`convcli.engine.direct.correlate_lines`), with the same bytes.

A 1-D kernel that filters each signal alone (an audio FIR, a short impulse response, a 1-D array
filter) runs here when the plan picks ``direct`` and the padding is at most about the input's
length (:func:`fits`). Each output is ``((w0·x0 + w1·x1) + w2·x2) + …`` over the kernel's nonzero
taps of the padded row, every product and sum rounded to the compute dtype in that order, with no
fused multiply-add. numpy pads the rows (:func:`convcli.engine.boundary.pad`) and runs one tap at a
time over whole rows; the Numba twin reads the rows in place, and a padded copy of their ends only
for the outputs that reach into the padding, eight taps per pass over blocks of a row. The values
and the operations are the same, so a cold process, which has no Numba loaded and does not load it
for a small call (:func:`convcli.twins.numba_pays`), writes the bytes a warm worker writes. Against
the general direct engine (fused multiply-adds) results agree to float rounding.
"""

from __future__ import annotations

import numpy as np

from convcli.engine.boundary import BOUNDARIES, pad, window

# extra samples of padding per row that the explicit padded copy may hold beyond the row's own
# length (more padding than that goes to the general direct engine, which pads virtually)
PAD_ALLOWANCE = 1 << 16


def fits(length: int, padding: tuple[int, int]) -> bool:
    """Whether a row of ``length`` samples padded by ``padding`` (before, after) runs here: the
    padded copy at most doubles the row (or adds up to :data:`PAD_ALLOWANCE` samples)."""
    return sum(padding) <= max(length, PAD_ALLOWANCE)


def tap_table(kernel: np.ndarray, dilation: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights, offsets) of the kernel's nonzero taps in order, as the direct engine skips zero
    taps (an all-zero kernel keeps its first tap, so that 0·inf still gives NaN there too)."""
    keep = np.flatnonzero(kernel)
    keep = keep if keep.size else np.zeros(1, dtype=np.int64)
    return np.ascontiguousarray(kernel[keep]), keep.astype(np.int64) * dilation


def correlate(
    signals: np.ndarray,
    kernel: np.ndarray,
    length: int,
    stride: int,
    dilation: int,
    padding: tuple[int, int],
    boundary_code: int,
    cval: float,
) -> np.ndarray:
    """Valid correlation of ``signals`` (N, 1, L) padded by ``padding`` under the boundary, with a
    (1, 1, k) ``kernel``: (N, 1, ``length``)."""
    from convcli.twins import numba_pays

    rows = np.ascontiguousarray(signals.reshape(-1, signals.shape[-1]))
    weights, offsets = tap_table(kernel.reshape(-1).astype(rows.dtype), dilation)
    work = rows.shape[0] * length * weights.size
    if not numba_pays(2 * work):
        padded = pad(rows, (padding,), BOUNDARIES[boundary_code], cval)
        return correlate_numpy(padded, weights, offsets, length, stride).reshape(signals.shape[0], 1, length)
    out = np.empty((rows.shape[0], length), dtype=rows.dtype)
    _numba_rows(rows, weights, offsets, out, stride, padding[0], boundary_code, cval, work)
    return out.reshape(signals.shape[0], 1, length)


def _numba_rows(rows, weights, offsets, out, stride, before, boundary_code, cval, work) -> None:
    """Fill ``out`` with the Numba twin: the outputs whose taps all lie on the input read ``rows``
    in place; those reaching into the padding read a padded copy of the few samples they need (the
    same values as the whole padded row, so the same bytes as numpy's)."""
    from convcli.engine.direct import correlate_lines

    n, length = rows.shape[1], out.shape[1]
    span = int(offsets[-1]) + 1
    kernel = correlate_lines.pick(work if rows.shape[0] > 1 else 0)
    lo = min(length, -(-before // stride))  # first output whose window starts on the input
    hi = max(lo, min(length, (n - span + before) // stride + 1 if n - span + before >= 0 else 0))
    kernel(rows, -before, weights, offsets, out, stride, lo, hi)
    for first, last in ((0, lo), (hi, length)):
        if last > first:
            start = first * stride  # padded position of the first window's first sample
            piece = (start - before, (last - 1 - first) * stride + span)
            edge = window(rows, [piece], BOUNDARIES[boundary_code], cval)
            kernel(edge, -start, weights, offsets, out, stride, first, last)


def correlate_numpy(
    padded: np.ndarray, weights: np.ndarray, offsets: np.ndarray, length: int, stride: int
) -> np.ndarray:
    """The numpy twin: ``out = w0·x[o0 :: s]``, then ``out += w_t·x[o_t :: s]`` tap after tap."""
    reach = (length - 1) * stride + 1 if length else 0
    out = np.multiply(padded[:, offsets[0] : offsets[0] + reach : stride], weights[0])
    product = np.empty_like(out)
    for weight, offset in zip(weights[1:], offsets[1:], strict=True):
        np.multiply(padded[:, offset : offset + reach : stride], weight, out=product)
        out += product
    return out
