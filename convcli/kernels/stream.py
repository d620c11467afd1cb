"""Block-wise convolution of long audio by overlap-add, so memory stays bounded.

Each block of ``block`` frames is convolved in full with the kernel (through the engine); the
last K−1 samples of each block's result overlap the next block and are added to it. The
stitched stream equals the full convolution of the whole signal; the output is the window of it
that the kernel's geometry names (:func:`full_window`: 'same' of a designed kernel keeps
[(K−1)//2, (K−1)//2 + N), an impulse response [0, N + K − 1) or, with --mode same, [0, N)),
exactly as the in-memory result. Pure: blocks in, pieces out; reading and writing the files is
the caller's (``convcli convolve``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from convcli.errors import UsageError
from convcli.kernels import Kernel
from convcli.kernels.apply import Geometry, ir_channel_pairs
from convcli.sizes import mode_padding, padding_pair

STREAM_MODES = ("same", "full")


def can_stream(kernels: list[Kernel], geometry: Geometry) -> bool:
    """Overlap-add holds for one 1-D kernel, zero boundary, stride and dilation 1, and an output
    that is a window of the full convolution (same/full, or the causal padding of an impulse response)."""
    if len(kernels) != 1 or kernels[0].role not in ("filter", "ir") or kernels[0].spatial_ndim != 1:
        return False
    resolved = geometry.for_kernel(kernels[0])
    return (
        (resolved.mode in STREAM_MODES or resolved.padding is not None)
        and _within_full(resolved, kernels[0].shape[-1])
        and geometry.boundary == "constant"
        and geometry.cval == 0
        and geometry.stride in (1, (1,))
        and geometry.dilation in (1, (1,))
    )


def _pads(geometry: Geometry, k: int) -> tuple[int, int] | None:
    """(before, after) zero padding of a resolved geometry for a 1-D kernel of ``k`` taps (None: not 1-D)."""
    if geometry.padding is None:
        return mode_padding(geometry.mode, k)
    padding = geometry.padding
    if isinstance(padding, tuple) and len(padding) == 1:
        padding = padding[0]
    try:
        return padding_pair(padding)
    except (TypeError, ValueError):
        return None


def _within_full(geometry: Geometry, k: int) -> bool:
    pads = _pads(geometry, k)
    return pads is not None and all(p <= k - 1 for p in pads)


def full_window(frames: int, kernel: Kernel, geometry: Geometry) -> tuple[int, int]:
    """[start, stop) of the output in the full convolution (length N + K − 1) of ``frames`` samples,
    for a stride-1 geometry whose padding lies within K − 1 on each side. In the frame of correlation
    (the engine's), output i reads padded inputs i .. i + K − 1, that is full-result index
    i + K − 1 − before."""
    k = kernel.shape[-1]
    before, after = _pads(geometry.for_kernel(kernel), k)
    start = k - 1 - before
    return start, start + frames + before + after - k + 1


def stream_taps(kernel: Kernel, channels: int, correlate: bool) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(channel pairs, taps (C_k, K)) with correlation turned into convolution by a flip."""
    taps = np.atleast_2d(kernel.array).astype(np.float32)
    pairs = (
        ir_channel_pairs(channels, taps.shape[0], kernel.spec)
        if kernel.role == "ir"
        else [(c, 0) for c in range(channels)]
    )
    return pairs, (taps[:, ::-1].copy() if correlate else taps)


def overlap_add(
    blocks: Iterable[np.ndarray], frames: int, kernel: Kernel, geometry: Geometry, channels: int
) -> Iterator[np.ndarray]:
    """Yield the output (C_out, n) piece by piece for input ``blocks`` of a ``frames``-long signal."""
    from convcli.engine.convolve import convolve

    if not can_stream([kernel], geometry):
        raise UsageError(
            "block-wise processing needs one 1-D kernel, mode same/full, constant 0 boundary, "
            "stride and dilation 1"
        )
    pairs, taps = stream_taps(kernel, channels, geometry.correlate)
    k = taps.shape[-1]
    start, stop = full_window(frames, kernel, geometry)
    tail = np.zeros((len(pairs), k - 1), dtype=np.float32)
    position = 0  # index in the full result of the first sample of the next piece

    def crop(piece: np.ndarray) -> np.ndarray | None:
        nonlocal position
        first, last = max(start, position), min(stop, position + piece.shape[1])
        position += piece.shape[1]
        return (
            piece[:, first - (position - piece.shape[1]) : last - (position - piece.shape[1])]
            if last > first
            else None
        )

    method = block_method(geometry)
    for block in blocks:
        n = block.shape[1]
        full = np.stack([convolve(block[c], taps[i], mode="full", method=method) for c, i in pairs])
        full[:, : k - 1] += tail
        tail = full[:, n:].copy()
        piece = crop(full[:, :n])
        if piece is not None and piece.size:
            yield piece
    piece = crop(tail)
    if piece is not None and piece.size:
        yield piece


DEFAULT_BLOCK = 1 << 18  # frames per block (at least four kernel lengths)


def block_method(geometry: Geometry) -> str:
    """The engine method for each block's full convolution (a 1-D kernel has no separable form)."""
    return geometry.method if geometry.method != "separable" else "auto"
