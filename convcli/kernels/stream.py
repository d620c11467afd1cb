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
from dataclasses import replace

import numpy as np

from convcli.errors import UsageError
from convcli.kernels import Kernel
from convcli.kernels.apply import Geometry, ir_channel_pairs
from convcli.sizes import effective_kernel, mode_padding, padding_pair

STREAM_MODES = ("same", "full")


def can_stream(kernels: list[Kernel], geometry: Geometry) -> bool:
    """Overlap-add holds for a chain of 1-D kernels (filters, impulse responses) with a zero boundary
    whose outputs are windows of their full convolutions (same/full, an impulse response's causal
    padding, or padding within the kernel's reach); the chain's stride keeps every s-th sample."""
    if not kernels or geometry.boundary != "constant" or geometry.cval != 0:
        return False
    if geometry.transposed or geometry.groups != 1:
        return False
    if not all(k.role in ("filter", "ir") and len(k.shape) == (2 if k.role == "ir" else 1) for k in kernels):
        return False
    return all(_within_full(_stage(geometry, step, len(kernels), kernel), _span(kernel, geometry))
               for step, kernel in enumerate(kernels))


def _stage(geometry: Geometry, step: int, count: int, kernel: Kernel) -> Geometry:
    """The stride-1 geometry of kernel ``step`` of the chain, resolved for it (the stride is taken
    after the chain, :func:`decimate`)."""
    return replace(geometry.in_chain(step, count), stride=1).for_kernel(kernel)


def _dilation(geometry: Geometry) -> int:
    return geometry.dilation[0] if isinstance(geometry.dilation, tuple) else geometry.dilation


def _stride(geometry: Geometry) -> int:
    return geometry.stride[0] if isinstance(geometry.stride, tuple) else geometry.stride


def _span(kernel: Kernel, geometry: Geometry) -> int:
    return effective_kernel(kernel.shape[-1], _dilation(geometry))


def _pads(geometry: Geometry, span: int) -> tuple[int, int] | None:
    """(before, after) zero padding of a resolved geometry for a 1-D kernel spanning ``span``
    samples (None: not one 1-D pair)."""
    if geometry.padding is None:
        return mode_padding(geometry.mode, span)
    padding = geometry.padding
    if isinstance(padding, tuple) and len(padding) == 1:
        padding = padding[0]
    try:
        return padding_pair(padding)
    except (TypeError, ValueError):
        return None


def _within_full(geometry: Geometry, span: int) -> bool:
    pads = _pads(geometry, span)
    return pads is not None and all(p <= span - 1 for p in pads)


def full_window(frames: int, kernel: Kernel, geometry: Geometry) -> tuple[int, int]:
    """[start, stop) of the output in the full convolution (length N + K − 1, K the dilated span) of
    ``frames`` samples, for a stride-1 geometry whose padding lies within K − 1 on each side. In the
    frame of correlation (the engine's), output i reads padded inputs i .. i + K − 1, that is
    full-result index i + K − 1 − before."""
    span = _span(kernel, geometry)
    before, after = _pads(geometry.for_kernel(kernel), span)
    start = span - 1 - before
    return start, max(start, start + frames + before + after - span + 1)


def stream_taps(
    kernel: Kernel, channels: int, geometry: Geometry
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(channel pairs, taps (C_k, span)): correlation turned into convolution by a flip, dilation
    into zeros between the taps."""
    taps = np.atleast_2d(kernel.array).astype(np.float32)
    pairs = (
        ir_channel_pairs(channels, taps.shape[0], kernel.spec)
        if kernel.role == "ir"
        else [(c, 0) for c in range(channels)]
    )
    taps = taps[:, ::-1] if geometry.correlate else taps
    spaced = np.zeros((taps.shape[0], _span(kernel, geometry)), dtype=np.float32)
    spaced[:, :: _dilation(geometry)] = taps
    return pairs, spaced


def overlap_add(
    blocks: Iterable[np.ndarray], frames: int, kernel: Kernel, geometry: Geometry, channels: int
) -> Iterator[np.ndarray]:
    """Yield the output (C_out, n) piece by piece for input ``blocks`` of a ``frames``-long signal,
    one kernel at stride 1."""
    from convcli.engine.convolve import convolve

    if _stride(geometry) != 1 or not can_stream([kernel], geometry):
        raise UsageError(
            "block-wise processing needs a 1-D kernel, a constant 0 boundary, stride 1 and an output "
            "within the full convolution"
        )
    pairs, taps = stream_taps(kernel, channels, geometry)
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


def stream_chain(
    blocks: Iterable[np.ndarray], frames: int, kernels: list[Kernel], geometry: Geometry, channels: int
) -> tuple[Iterator[np.ndarray], int, int]:
    """(pieces, output channels, output frames) of the chain on input ``blocks`` of a ``frames``-long
    ``channels``-channel signal: each kernel's overlap-add feeds the next, then the stride
    (:meth:`Geometry.in_chain`: once, after the last kernel). Memory: a block and each kernel's tail."""
    for step, kernel in enumerate(kernels):
        stage = replace(geometry.in_chain(step, len(kernels)), stride=1)
        blocks = overlap_add(blocks, frames, kernel, stage, channels)
        start, stop = full_window(frames, kernel, stage)
        frames, channels = stop - start, len(stream_taps(kernel, channels, stage)[0])
    stride = _stride(geometry)
    if stride == 1:
        return iter(blocks), channels, frames
    return decimate(blocks, stride), channels, -(-frames // stride)


def decimate(pieces: Iterable[np.ndarray], stride: int) -> Iterator[np.ndarray]:
    """Every ``stride``-th sample of the stream the pieces make, counted from its first."""
    position = 0  # index in the stream of the first sample of the next piece
    for piece in pieces:
        kept = piece[:, (-position) % stride :: stride]
        position += piece.shape[1]
        if kept.shape[1]:
            yield kept


DEFAULT_BLOCK = 1 << 18  # frames per block (at least four kernel lengths)


def block_method(geometry: Geometry) -> str:
    """The engine method for each block's full convolution (a 1-D kernel has no separable form)."""
    return geometry.method if geometry.method != "separable" else "auto"
