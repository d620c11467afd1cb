"""Images via Pillow, as channels-first float32 arrays scaled to [0, 1].

Gray, RGB and their alpha variants are read as (C, H, W); the alpha channel is returned
apart so it can pass through unfiltered. 16-bit gray images stay 16-bit when the output
format can hold it (PNG, TIFF).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.io.files import IMAGE_EXTENSIONS
from convcli.io.ranges import fit_range

SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}


@dataclass(frozen=True)
class ImageInfo:
    mode: str  # Pillow mode of the colour part: "L" or "RGB"
    bits: int  # 8 or 16


def read_image(
    source: Path | IO[bytes], *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """Return ``(colour (C, H, W) float32 in [0, 1], alpha (H, W) or None, info)``."""
    from PIL import Image, UnidentifiedImageError

    label = name or str(source)
    try:
        with Image.open(source) as image:
            image.load()
            return _decode(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{label}: not a readable image ({' '.join(str(error).split())})") from error


def _decode(image) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        bits = 16 if mode.startswith("I;16") or data.max(initial=0) > 255 else 8
        scale = 65535.0 if bits == 16 else 255.0
        return (np.clip(data / scale, 0, 1)[None]).astype(np.float32), None, ImageInfo("L", bits)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "F"):
        image = image.convert("L")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    data = np.asarray(image, dtype=np.float32) / np.float32(255)
    if data.ndim == 2:
        data = data[:, :, None]
    has_alpha = image.mode in ("LA", "RGBA")
    colour = np.ascontiguousarray(np.moveaxis(data[:, :, :-1] if has_alpha else data, -1, 0))
    alpha = np.ascontiguousarray(data[:, :, -1]) if has_alpha else None
    return colour, alpha, ImageInfo("L" if colour.shape[0] == 1 else "RGB", 8)


def write_image(
    path: Path,
    colour: np.ndarray,
    alpha: np.ndarray | None,
    *,
    bits: int = 8,
    policy: str = "clip",
    extension: str | None = None,
) -> int:
    """Encode (C, H, W) values in [0, 1] (C = 1 or 3) to ``path``; return the clipped count."""
    from PIL import Image

    extension = (extension or Path(path).suffix).lower()
    fmt = IMAGE_EXTENSIONS.get(extension)
    if fmt is None:
        raise UsageError(f"not an image extension {extension!r}")
    if colour.ndim != 3 or colour.shape[0] not in (1, 3):
        raise UsageError(
            f"a result of shape {colour.shape} is not a gray or RGB image; write it as .npy instead"
        )
    if fmt not in SIXTEEN_BIT_FORMATS:
        bits = 8
    if fmt == "JPEG" and alpha is not None:
        warnings.warn("JPEG has no alpha channel: the input's alpha was dropped", UserWarning, stacklevel=2)
        alpha = None
    fitted, clipped = fit_range(colour, policy, 0.0, 1.0)
    if bits == 16 and colour.shape[0] == 1 and alpha is None:
        pixels = np.rint(fitted[0] * 65535).astype(np.uint16)
        image = Image.fromarray(pixels)
    else:
        planes = [fitted] if alpha is None else [fitted, np.clip(alpha, 0, 1)[None]]
        pixels = np.rint(np.concatenate(planes, axis=0) * 255).astype(np.uint8)
        image = Image.fromarray(np.moveaxis(pixels, 0, -1) if pixels.shape[0] > 1 else pixels[0])
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP" and alpha is None:
        options["lossless"] = False
    if image.mode == "LA" and fmt in ("BMP", "WEBP"):
        image = image.convert("RGBA")  # these encoders have no gray+alpha mode
    image.save(path, format=fmt, **options)
    return clipped
