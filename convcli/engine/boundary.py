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


def padded_piece(x: np.ndarray, first: int, count: int, mode: int, cval: float) -> np.ndarray:
    """Positions ``first .. first + count - 1`` of the last axis of ``x`` extended by boundary
    ``mode`` (a code) on both sides: a piece of what :func:`pad` gives, as a contiguous copy."""
    source = _source_indices(first, count, x.shape[-1], mode)
    piece = np.take(x, np.maximum(source, 0), axis=-1)
    piece[..., source < 0] = cval
    return np.ascontiguousarray(piece)


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

    mode = MODE_CODES[normalize_boundary(boundary)]
    x = np.asarray(x)
    if len(pad_widths) > x.ndim:
        raise ValueError(f"{len(pad_widths)} pad widths given for an array with {x.ndim} dimensions")
    out = x
    first_axis = x.ndim - len(pad_widths)
    for axis, width in enumerate(pad_widths, start=first_axis):
        before, after = padding_pair(width)
        if before == after == 0:
            continue
        out = _pad_axis(out, axis, before, after, mode, cval)
    return out if out is not x else x.copy()


def _pad_axis(x: np.ndarray, axis: int, before: int, after: int, mode: int, cval: float) -> np.ndarray:
    """Copy the interior once, then fill each side from its mapped indices (or cval)."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = before + n + after
    out = np.empty(shape, dtype=x.dtype)

    def along(part: slice) -> tuple:
        return (slice(None),) * axis + (part,)

    out[along(slice(before, before + n))] = x
    for side, first, count in ((slice(0, before), -before, before), (slice(before + n, None), n, after)):
        if mode == CONSTANT:
            out[along(side)] = cval
        elif count:
            out[along(side)] = np.take(x, _source_indices(first, count, n, mode), axis=axis)
    return out
