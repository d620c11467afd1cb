"""Decoding and encoding of files: images (Pillow), audio (soundfile), arrays. No math here.

:func:`read_media` and :func:`write_media` dispatch on the file extension, so commands handle
every format the same way: ``file ──io──▶ array ──engine──▶ array ──io──▶ file``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np

from convcli.io.arrays import read_array, write_array
from convcli.io.audio import AudioInfo, read_audio, write_audio
from convcli.io.files import kind_of
from convcli.io.image import ImageInfo, read_image, write_image
from convcli.text import shape_text

__all__ = ["Media", "read_media", "write_media", "kind_of"]


@dataclass(frozen=True)
class Media:
    """A decoded file: channels-first data plus what is needed to write it back alike."""

    kind: str  # "image" | "audio" | "array"
    data: np.ndarray  # image (C, H, W) in [0, 1]; audio (C, L) in [-1, 1]; array as stored
    alpha: np.ndarray | None = None  # image alpha (H, W), passed through unfiltered
    image: ImageInfo | None = None
    audio: AudioInfo | None = None

    @property
    def sample_rate(self) -> int | None:
        return self.audio.sample_rate if self.audio else None

    def with_data(self, data: np.ndarray, alpha: np.ndarray | None = None) -> Media:
        return replace(self, data=data, alpha=alpha if alpha is not None else self.alpha)


def read_media(source: Path | IO[bytes], extension: str, *, name: str | None = None) -> Media:
    """Decode a file (or buffer) whose format ``extension`` names."""
    kind = kind_of(extension)
    if kind == "image":
        colour, alpha, info = read_image(source, name=name)
        return Media("image", colour, alpha, image=info)
    if kind == "audio":
        data, info = read_audio(source, name=name)
        return Media("audio", data, audio=info)
    return Media("array", read_array(source, extension, name=name))


def write_media(path: Path, media: Media, *, extension: str | None = None, policy: str = "clip") -> int:
    """Encode ``media.data`` in the format of ``extension`` (default: ``path``'s); return clipped count.

    Arrays formats receive the float data channels-first as is (never clipped). Audio written from
    non-audio input gets 44.1 kHz float; images from non-image input are taken as values in [0, 1].
    """
    extension = (extension or Path(path).suffix).lower()
    kind = kind_of(extension)
    data = media.data
    if kind == "array":
        write_array(path, data, extension)
        return 0
    if kind == "audio":
        if data.ndim > 2:
            raise ValueError(f"a result of shape {shape_text(data.shape)} cannot be written as audio; "
                             "use .npy")
        rate = media.sample_rate or 44100
        return write_audio(path, data, sample_rate=rate, info=media.audio, policy=policy)
    if data.ndim == 2:
        data = data[None]
    bits = media.image.bits if media.image else 8
    return write_image(path, data, media.alpha, bits=bits, policy=policy, extension=extension)
