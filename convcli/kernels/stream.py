"""Block-wise convolution of long audio by overlap-add, so memory stays bounded.

Each block of ``block`` frames is convolved in full with the kernel (through the engine); the
last K−1 samples of each block's result overlap the next block and are added to it. The
stitched stream equals the full convolution of the whole signal; 'same' keeps the window
[(K−1)//2, (K−1)//2 + N) of it, exactly as the in-memory 'same' does.
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

    method = _block_method(geometry)
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


# below this many samples (frames × channels) a file is simply convolved in memory
STREAM_MIN_SAMPLES = 1 << 23
DEFAULT_BLOCK = 1 << 18


def stream_file(
    source: str,
    target,
    specs: tuple[str, ...],
    geometry: Geometry,
    *,
    policy: str,
    force: bool,
    block: int | None = None,
    min_samples: int = STREAM_MIN_SAMPLES,
):
    """Convolve an audio file into an audio file block by block, or return None when the request
    needs the whole signal (several kernels, other boundaries, strides...) or the file is short.

    Returns (input shape, output shape, kernels, plans, clipped count, non-finite input count).
    ``normalize`` makes two passes: the first finds the peak, the second writes with that gain.
    """
    from pathlib import Path

    from convcli.engine.convolve import plan
    from convcli.io.audio import AudioWriter, audio_info, read_audio_blocks
    from convcli.io.files import atomic_output, check_input_file
    from convcli.io.ranges import count_non_finite, peak_normalize_gain
    from convcli.kernels import resolve_kernel

    path = Path(source)
    check_input_file(path)
    info = audio_info(path, name=source)
    if info.frames * info.channels < min_samples:
        return None
    kernels = [resolve_kernel(spec, sample_rate=info.sample_rate) for spec in specs]
    if not can_stream(kernels, geometry):
        return None
    kernel = kernels[0]
    block = block or max(DEFAULT_BLOCK, 4 * kernel.array.shape[-1])
    pairs, taps = stream_taps(kernel, info.channels, geometry.correlate)
    how = plan((min(block, info.frames),), taps[0], mode="full", method=_block_method(geometry))
    reason = f"block-wise overlap-add, {block} frames per block; per block: {how.reason}"

    non_finite = [0]

    def counted(blocks):
        for data in blocks:
            non_finite[0] += count_non_finite(data)
            yield data

    def pieces():
        non_finite[0] = 0  # normalize reads the file twice
        return overlap_add(
            counted(read_audio_blocks(path, block, name=source)), info.frames, kernel, geometry, info.channels
        )

    gain = None
    if policy == "normalize" and not info.is_float:
        gain = peak_normalize_gain(np.array([np.max(np.abs(p)) for p in pieces()] or [0.0]), 1.0)
    frames_out = 0
    with atomic_output(target, force=force) as temp:
        with AudioWriter(
            temp, sample_rate=info.sample_rate, channels=len(pairs), info=info, policy=policy, gain=gain
        ) as writer:
            for piece in pieces():
                writer.write(piece)
                frames_out += piece.shape[1]
            clipped = writer.clipped
    return (
        (info.channels, info.frames),
        (len(pairs), frames_out),
        kernels,
        [{"method": how.method, "reason": reason}],
        clipped,
        non_finite[0],
    )


def _block_method(geometry: Geometry) -> str:
    return geometry.method if geometry.method != "separable" else "auto"
