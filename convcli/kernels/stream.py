"""Block-wise convolution of long audio by overlap-add, so memory stays bounded.

Each block of ``block`` frames is convolved in full with the kernel (through the engine); the
last K−1 samples of each block's result overlap the next block and are added to it. The
stitched stream equals the full convolution of the whole signal; 'same' keeps the window
[(K−1)//2, (K−1)//2 + N) of it, exactly as the in-memory 'same' does. Pure: blocks in, pieces
out; reading and writing the files is the caller's (``convcli convolve``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from convcli.errors import UsageError
from convcli.kernels import Kernel
from convcli.kernels.apply import Geometry, ir_channel_pairs

STREAM_MODES = ("same", "full")


def can_stream(kernels: list[Kernel], geometry: Geometry) -> bool:
    """Overlap-add holds for one 1-D kernel, zero boundary, stride and dilation 1, same/full."""
    if len(kernels) != 1 or kernels[0].role not in ("filter", "ir") or kernels[0].spatial_ndim != 1:
        return False
    return (
        geometry.mode in STREAM_MODES
        and geometry.padding is None
        and geometry.boundary == "constant"
        and geometry.cval == 0
        and geometry.stride in (1, (1,))
        and geometry.dilation in (1, (1,))
        and not geometry.transposed
    )


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
    start = (k - 1) // 2 if geometry.mode == "same" else 0
    stop = start + (frames if geometry.mode == "same" else frames + k - 1)
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
