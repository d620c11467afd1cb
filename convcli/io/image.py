"""Images via Pillow, as channels-first float32 arrays scaled to [0, 1].

Gray, RGB and their alpha variants are read as (C, H, W); the alpha channel is returned
apart so it can pass through unfiltered. 16-bit images stay 16-bit when the output format can
hold it (PNG, TIFF). Pillow has no 16-bit colour modes (it would decode 48/64-bit RGB(A) to 8
bits), so 16-bit colour and 16-bit gray+alpha go through imagecodecs, imported only then.
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
# Pillow's raw modes of the 16-bit PNGs it would reduce to 8 bits
_PNG_SIXTEEN_BIT_COLOUR = {"LA;16B", "RGB;16B", "RGBA;16B"}
_TIFF_RGB, _TIFF_UNASSOCIATED_ALPHA, _TIFF_SEPARATE_PLANES = 2, 2, 2


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
            if _is_sixteen_bit_colour(image):
                return _decode_sixteen_bit(image)
            image.load()
            return _decode(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{label}: not a readable image ({' '.join(str(error).split())})") from error


def _decode(image) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    mode, fmt = image.mode, image.format  # a converted image has no format
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
    pixels = np.asarray(image)
    if fmt == "WEBP" and _is_gray_as_rgb(pixels):
        pixels = pixels[:, :, [0, 3]] if pixels.shape[2] == 4 else pixels[:, :, 0]
    return _split_alpha(pixels, bits=8)


def _is_gray_as_rgb(pixels: np.ndarray) -> bool:
    """WebP has no gray mode: a gray WebP decodes to RGB with three identical channels.

    Exact only: a lossy gray WebP's channels can differ by 1 (libwebp's YUV->RGB rounding).
    """
    return (
        pixels.ndim == 3
        and np.array_equal(pixels[:, :, 0], pixels[:, :, 1])
        and np.array_equal(pixels[:, :, 0], pixels[:, :, 2])
    )


def _split_alpha(pixels: np.ndarray, *, bits: int) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """(H, W[, C]) integer pixels -> colour (C, H, W) and alpha (H, W) scaled to [0, 1].

    The last channel is alpha when there are 2 (gray+alpha) or 4 (RGBA) channels.
    """
    data = pixels.astype(np.float32)
    data /= np.float32(65535 if bits == 16 else 255)
    if data.ndim == 2:
        data = data[:, :, None]
    has_alpha = data.shape[2] in (2, 4)
    colour = np.ascontiguousarray(np.moveaxis(data[:, :, :-1] if has_alpha else data, -1, 0))
    alpha = np.ascontiguousarray(data[:, :, -1]) if has_alpha else None
    return colour, alpha, ImageInfo("L" if colour.shape[0] == 1 else "RGB", bits)


def _is_sixteen_bit_colour(image) -> bool:
    """A 16-bit RGB or RGBA PNG/TIFF or gray+alpha PNG, told from its header before Pillow decodes it."""
    if image.format == "PNG":
        args = image.tile[0].args if image.tile else None
        rawmode = args[0] if isinstance(args, tuple) else args
        return rawmode in _PNG_SIXTEEN_BIT_COLOUR
    if image.format == "TIFF":
        bits, extra = _tiff_tag(image, 258), _tiff_tag(image, 338)  # BitsPerSample, ExtraSamples
        unsigned = set(_tiff_tag(image, 339)) <= {1}  # SampleFormat: 1 = unsigned integer
        rgb = _tiff_tag(image, 262) == (_TIFF_RGB,) and (
            len(bits) == 3 or (len(bits) == 4 and extra == (_TIFF_UNASSOCIATED_ALPHA,))
        )
        return rgb and unsigned and set(bits) == {16}
    return False


def _tiff_tag(image, number: int) -> tuple:
    value = image.tag_v2.get(number, ())
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _decode_sixteen_bit(image) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    import imagecodecs

    image.fp.seek(0)
    encoded = image.fp.read()
    try:
        if image.format == "PNG":
            pixels = imagecodecs.png_decode(encoded)
        else:
            pixels = imagecodecs.tiff_decode(encoded)
            if _tiff_tag(image, 284) == (_TIFF_SEPARATE_PLANES,):  # PlanarConfiguration
                pixels = np.moveaxis(pixels, 0, -1)
    except RuntimeError as error:  # imagecodecs.PngError / TiffError
        raise ValueError(f"16-bit {image.format} data: {error}") from error
    width, height = image.size
    if pixels.dtype != np.uint16 or pixels.shape[:2] != (height, width):
        raise ValueError(f"16-bit {image.format} decoded as {pixels.dtype} {pixels.shape}")
    return _split_alpha(pixels, bits=16)


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
    if bits == 16 and fmt not in SIXTEEN_BIT_FORMATS:
        warnings.warn(
            f"{fmt} holds 8 bits per channel: the 16-bit input was written with 8 (.png and .tif keep 16)",
            UserWarning,
            stacklevel=2,
        )
        bits = 8
    if fmt == "JPEG" and alpha is not None:
        warnings.warn("JPEG has no alpha channel: the input's alpha was dropped", UserWarning, stacklevel=2)
        alpha = None
    fitted, clipped = fit_range(colour, policy, 0.0, 1.0)
    planes = [fitted] if alpha is None else [fitted, np.clip(alpha, 0, 1)[None]]
    if bits == 16:
        pixels = np.rint(np.concatenate(planes, axis=0) * 65535).astype(np.uint16)
        if pixels.shape[0] > 1:  # colour or alpha: no Pillow mode holds them at 16 bits
            _write_sixteen_bit(path, fmt, pixels)
            return clipped
        image = Image.fromarray(pixels[0])
    else:
        pixels = np.rint(np.concatenate(planes, axis=0) * 255).astype(np.uint8)
        image = Image.fromarray(np.moveaxis(pixels, 0, -1) if pixels.shape[0] > 1 else pixels[0])
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP" and alpha is None:
        options["lossless"] = False
    if image.mode == "LA" and fmt in ("BMP", "WEBP"):
        image = image.convert("RGBA")  # these encoders have no gray+alpha mode
    image.save(path, format=fmt, **options)
    return clipped


def _write_sixteen_bit(path: Path, fmt: str, pixels: np.ndarray) -> None:
    """(C, H, W) uint16 with C = 2 (gray+alpha), 3 (RGB) or 4 (RGBA) as a 16-bit PNG or TIFF."""
    import imagecodecs

    channels = pixels.shape[0]
    interleaved = np.ascontiguousarray(np.moveaxis(pixels, 0, -1))
    if fmt == "PNG":
        encoded = imagecodecs.png_encode(interleaved)
    else:
        encoded = imagecodecs.tiff_encode(
            interleaved,
            photometric="rgb" if channels >= 3 else "minisblack",
            extrasample="unassalpha" if channels in (2, 4) else None,
        )
    Path(path).write_bytes(encoded)
