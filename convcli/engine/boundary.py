"""Boundary modes: what lies outside the input, under numpy.pad's names.

| convcli                               | numpy.pad | scipy.ndimage | OpenCV             | PyTorch  |
|---------------------------------------|-----------|---------------|--------------------|----------|
| ``constant`` (alias ``zero``; cval)   | constant  | constant      | BORDER_CONSTANT    | zeros    |
| ``reflect``   (d c b | a b c d)       | reflect   | mirror        | BORDER_REFLECT_101 | reflect  |
| ``symmetric`` (c b a | a b c d)       | symmetric | reflect       | BORDER_REFLECT     | —        |
| ``edge`` (aliases replicate, nearest) | edge      | nearest       | BORDER_REPLICATE   | replicate|
| ``wrap`` (alias ``circular``)         | wrap      | wrap          | —                  | circular |

Every mode is defined by :func:`source_index`, a map from a position on the padded axis to
the input sample it copies (or -1 for the constant value). The map is periodic, so padding
wider than the input works in every mode (it equals numpy.pad's iterated reflection).
The Numba kernels call the same map, so padding and filtering can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convcli.errors import UsageError, did_you_mean

BOUNDARIES = ("constant", "reflect", "symmetric", "edge", "wrap")
ALIASES = {"zero": "constant", "replicate": "edge", "nearest": "edge", "circular": "wrap"}

# integer codes the Numba kernels take
CONSTANT, REFLECT, SYMMETRIC, EDGE, WRAP = range(5)
MODE_CODES = {name: code for code, name in enumerate(BOUNDARIES)}


def normalize_boundary(name: str) -> str:
    """Canonical boundary name for ``name`` or an alias; refuse ``mirror`` and unknown names."""
    key = str(name).strip().lower()
    if key in MODE_CODES:
        return key
    if key in ALIASES:
        return ALIASES[key]
    if key == "mirror":
        raise UsageError(
            "boundary 'mirror' is ambiguous: say 'reflect' (d c b | a b c d, numpy 'reflect', "
            "scipy.ndimage 'mirror') or 'symmetric' (c b a | a b c d, numpy 'symmetric', "
            "scipy.ndimage 'reflect')"
        )
    choices = [*BOUNDARIES, *ALIASES]
    hint = did_you_mean(key, choices)
    raise UsageError(f"unknown boundary {name!r}{hint}; choose from {', '.join(choices)}")


def check_cval(boundary: str | None, cval: float) -> None:
    """Refuse a fill value the boundary contradicts: ``zero`` with a nonzero ``cval``, or any
    mode but ``constant`` (which never reads it) with one."""
    if cval == 0 or boundary is None:
        return
    if str(boundary).strip().lower() == "zero":
        raise UsageError(f"--boundary zero contradicts --cval {cval:g}: say --boundary constant "
                         f"--cval {cval:g}")
    if normalize_boundary(boundary) != "constant":
        raise UsageError(f"--cval {cval:g} fills only the constant boundary; --boundary {boundary} never "
                         "reads it")


def source_index(i: int, n: int, mode: int) -> int:
    """Input index that padded position ``i`` copies (input is ``[0, n)``), -1 for the constant.

    Plain Python so that importing this module (every command validates --boundary) costs no
    Numba start-up; the engine's kernels use it compiled (``convcli.engine.direct.source_index``).
    """
    if 0 <= i < n:
        return i
    if mode == CONSTANT:
        return -1
    if mode == EDGE:
        return 0 if i < 0 else n - 1
    if mode == WRAP:
        return i % n
    if mode == REFLECT:
        if n == 1:
            return 0
        period = 2 * (n - 1)
        i = i % period
        return i if i < n else period - i
    # SYMMETRIC
    period = 2 * n
    i = i % period
    return i if i < n else period - 1 - i


def _source_indices(first: int, count: int, n: int, mode: int) -> np.ndarray:
    """``source_index`` of the padded positions ``first, first+1, ..., first+count-1``."""
    return np.fromiter((source_index(first + t, n, mode) for t in range(count)), np.int64, count)


def pad(
    x: np.ndarray,
    pad_widths: Sequence[int | tuple[int, int]],
    boundary: str = "constant",
    cval: float = 0.0,
) -> np.ndarray:
    """Pad the trailing ``len(pad_widths)`` axes of ``x``; each width is ``p`` or ``(before, after)``.

    Any width works in any mode, including widths larger than the axis itself.
    """
    from convcli.sizes import padding_pair

    x = np.asarray(x)
    if len(pad_widths) > x.ndim:
        raise ValueError(f"{len(pad_widths)} pad widths given for an array with {x.ndim} dimensions")
    first_axis = x.ndim - len(pad_widths)
    windows = []
    for n, width in zip(x.shape[first_axis:], pad_widths, strict=True):
        before, after = padding_pair(width)
        windows.append((-before, before + n + after))
    return window(x, windows, boundary, cval)


def window(
    x: np.ndarray,
    windows: Sequence[tuple[int, int]],
    boundary: str = "constant",
    cval: float = 0.0,
) -> np.ndarray:
    """The padded positions ``first, ..., first + count - 1`` of each trailing axis, one
    ``(first, count)`` per axis (``pad`` with widths ``(b, a)`` is the window ``(-b, b + n + a)``):
    only the part of a padded input that is read is made, however wide the padding."""
    mode = MODE_CODES[normalize_boundary(boundary)]
    x = np.asarray(x)
    out = x
    first_axis = x.ndim - len(windows)
    for axis, (first, count) in enumerate(windows, start=first_axis):
        if first == 0 and count == x.shape[axis]:
            continue
        out = _window_axis(out, axis, first, count, mode, cval)
    return out if out is not x else x.copy()


def _window_axis(x: np.ndarray, axis: int, first: int, count: int, mode: int, cval: float) -> np.ndarray:
    """Copy the interior once, then fill each side from its mapped indices (or cval)."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = count
    out = np.empty(shape, dtype=x.dtype)

    def along(part: slice) -> tuple:
        return (slice(None),) * axis + (part,)

    # output positions [lo, hi) copy the input in place; those before and after are mapped
    lo = min(count, max(0, -first))
    hi = max(lo, min(count, n - first))
    out[along(slice(lo, hi))] = x[along(slice(first + lo, first + hi))]
    for side, start, length in ((slice(0, lo), first, lo), (slice(hi, count), first + hi, count - hi)):
        if mode == CONSTANT:
            out[along(side)] = cval
        elif length:
            out[along(side)] = np.take(x, _source_indices(start, length, n, mode), axis=axis)
    return out
