"""Folding a kernel onto the input: taps that always read the same source sample become one tap.

A kernel (or a dilation) far larger than the input makes the padded extent as large as the kernel:
a 512² image under a 20001-wide box would be filtered over a 20512² padded plane. But every tap
reads the sample :func:`convcli.engine.boundary.source_index` maps its padded position to, and
along one axis that map is

- periodic for ``reflect`` (period 2(n−1)), ``symmetric`` (2n) and ``wrap`` (n): taps whose
  offsets agree modulo the period read the same sample at every output position;
- clamped for ``edge`` and ``constant``: taps left of the input for every output position all read
  the first sample (or the constant), taps right of it for every output position the last one.

So along each axis every tap ``t`` (offset ``t·d`` from its window's start) can be moved to another
offset ``e[t]`` that reads the same sample at every output position, and taps moved onto the same
offset add their weights. The folded kernel is no longer than a few times the input (the period, or
the input plus the outputs' reach) whatever the kernel or the dilation; the result equals the
unfolded one up to float rounding (weights are summed before they multiply). A 2-D kernel folds
axis by axis (``K' = M_h · K · M_wᵀ``, so a rank-1 kernel stays rank 1 and its factors fold alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convcli import budget
from convcli.engine.boundary import CONSTANT, REFLECT, SYMMETRIC, WRAP
from convcli.text import shape_text


@dataclass(frozen=True)
class AxisFold:
    """One axis' folded kernel: original tap ``t`` becomes tap ``index[t]`` of ``size`` taps
    spaced ``dilation`` apart, read with ``padding`` (before, after) of the boundary."""

    index: np.ndarray  # int64, one entry per original tap
    size: int
    dilation: int
    padding: tuple[int, int]

    @property
    def span(self) -> int:
        return self.dilation * (self.size - 1) + 1


# int64 arrays as long as an axis's taps that a fold holds at its peak (measured: a 6.3M-tap
# moving average peaked at ~7.5 arrays of 8 bytes a tap)
FOLD_BYTES_PER_TAP = 64


def period(n: int, mode: int) -> int | None:
    """The period of ``source_index`` on an axis of ``n`` samples, None where it is clamped."""
    if n == 1 and mode != CONSTANT:
        return None  # every position reads the one sample: clamped, as edge
    return {REFLECT: 2 * (n - 1), SYMMETRIC: 2 * n, WRAP: n}.get(mode)


def _periodic_candidates(offsets: np.ndarray, k: int, d: int, p: int) -> list[np.ndarray]:
    """Offsets congruent to ``offsets`` modulo ``p``: the dilation reduced modulo p (forwards, or
    backwards from the other side), and every offset reduced modulo p (at most p apart)."""
    taps = np.arange(k, dtype=np.int64)
    forward = d % p
    candidates = [taps * forward, offsets % p]
    if forward:
        candidates.append(-taps * (p - forward))
    return candidates


def _clamped_candidates(offsets: np.ndarray, n: int, pad_before: int, last_start: int) -> list[np.ndarray]:
    """Offsets reading the same sample as ``offsets`` for windows starting at ``-pad_before`` up to
    ``last_start``: taps left of the input for every window onto the nearest such tap (keeps the
    dilation) or just left of the input (dense); the same on the right."""
    left = offsets < -last_start  # position last_start + offset < 0 for every window
    right = offsets > n - 1 + pad_before  # position -pad_before + offset > n - 1 for every window
    candidates = [np.clip(offsets, -last_start - 1, n + pad_before)]
    if left.any() or right.any():
        low = offsets[left].max() if left.any() else offsets.min()
        high = offsets[right].min() if right.any() else offsets.max()
        candidates.append(np.clip(offsets, low, high))
    return candidates


def fold_axis(n: int, k: int, dilation: int, padding: tuple[int, int], size_out: int, stride: int,
              mode: int) -> AxisFold | None:
    """The fold of one axis that most shortens the kernel's span, or None when none does.

    ``n`` input samples, ``k`` taps ``dilation`` apart, ``padding`` (before, after), ``size_out``
    outputs ``stride`` apart; ``mode`` a boundary code of :mod:`convcli.engine.boundary`.
    """
    pad_before = padding[0]
    if k == 1:
        return None
    span = dilation * (k - 1) + 1
    offsets = np.arange(k, dtype=np.int64) * dilation
    p = period(n, mode)
    if p is not None:
        candidates = _periodic_candidates(offsets, k, dilation, p)
    else:
        last_start = (size_out - 1) * stride - pad_before
        candidates = _clamped_candidates(offsets, n, pad_before, last_start)
    best = None
    for moved in candidates:
        fold = _normalized(moved, pad_before, p, n, size_out, stride)
        if fold.span < span and (best is None or fold.span < best.span):
            best = fold
    return best


def _normalized(moved: np.ndarray, pad_before: int, p: int | None, n: int, size_out: int,
                stride: int) -> AxisFold:
    """Moved offsets as a kernel: taps from the smallest offset, the spacing their common divisor,
    the padding before shifted to match (and reduced modulo the period, which changes no sample)."""
    first = int(moved.min())
    relative = moved - first
    step = _common_step(relative)
    index = relative // step
    before = pad_before - first
    if p is not None:
        before %= p
    size = int(index.max()) + 1
    reach = (size_out - 1) * stride + step * (size - 1) + 1
    return AxisFold(index=index, size=size, dilation=step, padding=(before, max(0, reach - n - before)))


GCD_CHUNK = 1 << 16  # offsets whose gcd is taken at a time: it is nearly always 1 after the first chunk


def _common_step(relative: np.ndarray) -> int:
    """The greatest common divisor of non-negative offsets (1 for none), a chunk at a time: once it
    is 1 the rest cannot change it (numpy's gcd.reduce took ~6 s on the 6e7 taps of a gaussian of
    sigma 1e7, whose fold spans a few hundred samples)."""
    step = 0
    for start in range(0, relative.size, GCD_CHUNK):
        step = int(np.gcd(step, np.gcd.reduce(relative[start : start + GCD_CHUNK])))
        if step == 1:
            break
    return step or 1


def fold_geometry(spatial_in, ksize, stride, dilation, pads, spatial_out, mode: int
                  ) -> tuple[AxisFold | None, ...] | None:
    """:func:`fold_axis` of every axis; None when no axis folds. The fold of an axis holds about
    FOLD_BYTES_PER_TAP bytes a tap of it at once (offsets, candidates, their indices): counted
    against the memory budget before any is made."""
    budget.check("memory", FOLD_BYTES_PER_TAP * max(ksize, default=0),
                 f"folding a {shape_text(tuple(ksize))} kernel onto its input")
    folds = tuple(
        fold_axis(n, k, d, p, o, s, mode)
        for n, k, s, d, p, o in zip(spatial_in, ksize, stride, dilation, pads, spatial_out, strict=True)
    )
    return folds if any(f is not None for f in folds) else None


def fold_line(line: np.ndarray, fold: AxisFold | None, axis: int = -1) -> np.ndarray:
    """``line`` with its taps along ``axis`` summed onto their folded positions."""
    if fold is None:
        return line
    axis = axis % line.ndim
    moved = np.moveaxis(line, axis, 0)
    out = np.zeros((fold.size, *moved.shape[1:]), dtype=np.result_type(line.dtype, np.float64))
    np.add.at(out, fold.index, moved)
    return np.moveaxis(out.astype(line.dtype), 0, axis)


def fold_kernel(kernel: np.ndarray, folds: tuple[AxisFold | None, ...]) -> np.ndarray:
    """``kernel`` (spatial axes last) folded along each of its ``len(folds)`` trailing axes."""
    nd = len(folds)
    for axis, fold in zip(range(-nd, 0), folds, strict=True):
        kernel = fold_line(kernel, fold, axis)
    return kernel


def describe(ksize, folds: tuple[AxisFold | None, ...]) -> str:
    """What a plan's reason says of a fold: 'the boundary folds 20001×20001 taps onto 1022×1022'."""
    sizes = [k if f is None else f.size for k, f in zip(ksize, folds, strict=True)]
    return f"the boundary folds {shape_text(tuple(ksize))} taps onto {shape_text(tuple(sizes))}"
