"""Audio via soundfile, as channels-first float32 arrays (C, L) in [-1, 1].

Sample rate and subtype are kept. Long files are read and written in blocks so memory stays
bounded; see :mod:`convcli.kernels.stream` for the block-wise convolution.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.io.files import AUDIO_EXTENSIONS
from convcli.io.ranges import PCM16_SCALE, fit_range, peak_normalize_gain

FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}
# 16-bit PCM is converted here, not by libsndfile: its float conversions of 16-bit frames cost
# 5x (read) and 4x (write) what numpy's take, with the transpose to channels-first on top.
# As libsndfile 1.2 does: a sample s reads as s / 32768 (the same floats), and a value x writes to
# WAV as floor(32768·x) clipped to the 16-bit range, NaN as -32768; libsndfile's own arithmetic
# lands one step higher for values within ~3e-5 of a step (tests/test_io.py pins both). FLAC's
# encoder rounds another way, so FLAC output stays with libsndfile.
PCM16 = "PCM_16"
PCM16_WRITTEN_HERE = {"WAV"}


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    subtype: str
    format: str

    @property
    def is_float(self) -> bool:
        """Float subtypes are never clipped; every other subtype has a fixed range."""
        return self.subtype in FLOAT_SUBTYPES


def _open(source: Path | IO[bytes], label: str):
    import soundfile

    try:
        return soundfile.SoundFile(source)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError) as error:
        raise InputError(f"{label}: not a readable audio file ({' '.join(str(error).split())})") from error


def audio_info(source: Path | IO[bytes], *, name: str | None = None) -> AudioInfo:
    with _open(source, name or str(source)) as handle:
        return _info(handle)


def _info(handle) -> AudioInfo:
    return AudioInfo(handle.samplerate, handle.channels, handle.frames, handle.subtype, handle.format)


def read_audio(source: Path | IO[bytes], *, name: str | None = None) -> tuple[np.ndarray, AudioInfo]:
    """The whole file as (C, L) float32, and its info."""
    label = name or str(source)
    with _open(source, label) as handle:
        info = _info(handle)
        # from the header, before decoding: an hour of silence is a few kB of FLAC
        from convcli import budget

        budget.check("memory", 4 * info.frames * info.channels,
                     f"{label}: decoding {info.frames} frames of {info.channels} channel(s)")
        data = _read_frames(handle, -1, label)
    if data.shape[1] == 0:
        raise InputError(f"{label}: audio file has no samples")
    return data, info


def _read_frames(handle, frames: int, label: str) -> np.ndarray:
    """Up to ``frames`` frames (-1: the rest) as channels-first float32."""
    pcm16 = handle.subtype == PCM16
    try:
        data = handle.read(frames, dtype="int16" if pcm16 else "float32", always_2d=True)
    except RuntimeError as error:
        raise InputError(f"{label}: corrupt audio data ({error})") from error
    if not pcm16:
        return np.ascontiguousarray(data.T)
    samples = np.empty(data.shape[::-1], dtype=np.float32)
    np.multiply(data.T, np.float32(1.0 / PCM16_SCALE), out=samples)
    return samples


def read_audio_blocks(
    source: Path | IO[bytes], block: int, *, name: str | None = None
) -> Iterator[np.ndarray]:
    """Consecutive (C, <=block) float32 blocks of the file."""
    label = name or str(source)
    with _open(source, label) as handle:
        while True:
            data = _read_frames(handle, block, label)
            if data.shape[1] == 0:
                return
            yield data


def audio_info_for(extension: str, *, channels: int, sample_rate: int = 44100) -> AudioInfo:
    """The info of audio made from data that had none (an array written as audio): the format's
    default subtype, as :func:`output_subtype` picks without an input's."""
    fmt, subtype = output_subtype(None, extension)
    return AudioInfo(sample_rate, channels, 0, subtype, fmt)


def output_subtype(info: AudioInfo | None, extension: str) -> tuple[str, str | None]:
    """(format, subtype) for writing: the input's subtype when the output format allows it."""
    import soundfile

    fmt = AUDIO_EXTENSIONS.get(extension.lower())
    if fmt is None:
        raise UsageError(f"not an audio extension {extension!r}")
    if info is not None and soundfile.check_format(fmt, info.subtype):
        return fmt, info.subtype
    return fmt, soundfile.default_subtype(fmt)


class AudioWriter:
    """Block-wise writer that applies the range policy to every block and counts clipped samples."""

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int,
        channels: int,
        info: AudioInfo | None,
        policy: str = "clip",
        gain: float | None = None,
    ):
        import soundfile

        self.format, self.subtype = output_subtype(info, Path(path).suffix)
        self.policy = policy
        self.gain = gain
        self.clipped = 0
        self._handle = _unsynced(soundfile.SoundFile)(
            path, "w", samplerate=sample_rate, channels=channels, subtype=self.subtype, format=self.format
        )

    @property
    def is_float(self) -> bool:
        return self.subtype in FLOAT_SUBTYPES

    def write(self, block: np.ndarray) -> None:
        """Write a (C, n) block."""
        if self.subtype == PCM16 and self.format in PCM16_WRITTEN_HERE:
            self._write_pcm16(block)
            return
        if not self.is_float:
            block, clipped = fit_range(block, self.policy, -1.0, 1.0, gain=self.gain)
            self.clipped += clipped
        self._handle.write(np.ascontiguousarray(block.T))

    def _write_pcm16(self, block: np.ndarray) -> None:
        """16-bit frames converted here: clipping is the conversion's own saturation, so the
        'clip' policy only needs the conversion's count of samples outside [-1, 1]."""
        from convcli.io.pcm16 import pcm16_frames

        if self.policy == "clip":
            frames, clipped = pcm16_frames(block)
        else:
            block, clipped = fit_range(block, self.policy, -1.0, 1.0, gain=self.gain)
            frames, _ = pcm16_frames(block)
        self.clipped += clipped
        self._handle.write(frames)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.cache
def _unsynced(sound_file: type) -> type:
    """``SoundFile`` closing without an fsync. Its close() flushes with ``sf_write_sync``, which
    fsyncs: 8 ms for a minute of stereo, on every file. convcli's writes are atomic against a
    failed or killed process (temp file, rename), not against a power cut, like every other
    format it writes and like SoX and ImageMagick."""

    class Unsynced(sound_file):
        def flush(self) -> None:
            pass  # libsndfile has nothing buffered to flush: sf_write_sync only fsyncs

    return Unsynced


def write_audio(
    path: Path, data: np.ndarray, *, sample_rate: int, info: AudioInfo | None, policy: str = "clip"
) -> int:
    """Write (C, L) or (L,) samples; return the clipped count (0 for float subtypes)."""
    data = np.atleast_2d(data)
    channels = data.shape[0]
    with AudioWriter(path, sample_rate=sample_rate, channels=channels, info=info, policy=policy) as writer:
        if policy == "normalize" and not writer.is_float:
            writer.gain = peak_normalize_gain(data, 1.0)
        writer.write(data)
        return writer.clipped
