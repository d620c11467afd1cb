"""Images via Pillow and imagecodecs, as channels-first float32 arrays scaled to [0, 1].

Gray, RGB and their alpha variants are read as (C, H, W); the alpha channel is returned
apart so it can pass through unfiltered. 16-bit images stay 16-bit when the output format can
hold it (PNG, TIFF). Pillow has no 16-bit colour modes (it would decode 48/64-bit RGB(A) to 8
bits), so 16-bit colour TIFF goes through imagecodecs, imported only then. PNG (the common case,
and the slow one) is read by imagecodecs' libpng (1.2× faster than Pillow on a 4K RGB PNG, and
every bit depth) and written by :func:`convcli.io.png.encode_png` (rows filtered in parallel, libdeflate:
0.37 s where libpng takes 0.86 s and Pillow 1.2 s); palette and below-8-bit PNGs
are read by Pillow.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.io.files import IMAGE_EXTENSIONS
from convcli.io.ranges import fit_range
from convcli.text import shape_text

SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}
FLOAT_BITS = 32  # ImageInfo.bits of a float image (float TIFF): values kept as they are
_TIFF_RGB, _TIFF_UNASSOCIATED_ALPHA, _TIFF_SEPARATE_PLANES = 2, 2, 2


@dataclass(frozen=True)
class ImageInfo:
    mode: str  # Pillow mode of the colour part: "L" or "RGB"
    bits: int  # 8, 16, or FLOAT_BITS for a float image


def read_image(
    source: Path | IO[bytes], *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """Return ``(colour (C, H, W) float32 in [0, 1], alpha (H, W) or None, info)``."""
    label = name or str(source)
    try:
        encoded = source.read_bytes() if isinstance(source, Path) else source.read()
    except OSError as error:
        raise InputError(f"{label}: cannot read ({error.strerror or error})") from error
    with _decoder_warnings_held(label):
        return _decode_encoded(encoded, label)


_held = threading.local()  # .messages: the decoder's warnings about the file this thread reads


@contextlib.contextmanager
def _decoder_warnings_held(label: str):
    """Pillow's warnings about a file (corrupt EXIF data, a tag past the end of the file) are held
    while it is read (:func:`held_decoder_warning`): told once, naming the file, when it is read,
    and dropped when it is refused (its one error line says what is wrong)."""
    _held.messages = []
    try:
        yield
    except BaseException:
        _held.messages = None
        raise
    messages, _held.messages = _held.messages, None
    for message in dict.fromkeys(messages):
        warnings.warn(f"{label}: {message}", UserWarning, stacklevel=3)


def held_decoder_warning(message, filename: str) -> bool:
    """True when ``message``, a warning raised in Pillow's code, is held for the image this thread
    is reading (the command line's warning printer asks before it prints)."""
    messages = getattr(_held, "messages", None)
    if messages is None or f"{os.sep}PIL{os.sep}" not in str(filename):
        return False
    messages.append(" ".join(str(message).split()).rstrip("."))
    return True


def _decode_encoded(encoded: bytes, label: str) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    from PIL import Image, UnidentifiedImageError

    from convcli.io.png import png_depth

    _check_stream(encoded, None, label)  # PNG's chunks and WebP's sizes: a damaged header is damage
    depth = png_depth(encoded)
    if depth is not None:
        check_pixels(*struct.unpack(">II", encoded[16:24]), label)
        animation = _png_chunk_before_pixels(encoded, b"acTL")  # APNG: its first field is the frame count
        if animation is not None:
            check_single_frame(int.from_bytes(animation[:4], "big"), "APNG", label)
        decoded = _decode_png(encoded, depth, label)
        if b"eXIf" not in encoded:
            return decoded
        with Image.open(io.BytesIO(encoded)) as image:  # reads the chunks, decodes no pixels
            return _upright(decoded, _orientation(image))
    # convcli's own limit (check_pixels, from the header) stands for Pillow's, so that one limit,
    # configured in one place, holds for every decoder (Pillow's would refuse at 2x its value)
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            check_pixels(*image.size, label)
            check_single_frame(getattr(image, "n_frames", 1), image.format, label)
            _check_stream(encoded, image.format, label, getattr(image, "tag_v2", None))
            if _is_sixteen_bit_colour(image):
                return _upright(_decode_sixteen_bit(image), _orientation(image))
            image.load()
            return _upright(_decode(image, label), _orientation(image))
    except UsageError:
        raise  # over the pixel budget: refused, not unreadable
    except UnidentifiedImageError as error:
        if encoded[:4] in (b"II*\x00", b"MM\x00*"):  # float or 32-bit colour TIFF: Pillow has no mode
            return _decode_tiff(encoded, label)
        raise InputError(f"{label}: not a readable image (no image format Pillow reads)") from error
    except _DECODER_ERRORS as error:
        raise InputError(f"{label}: not a readable image ({' '.join(str(error).split())})") from error


# what Pillow's plugins raise on a damaged file (a damaged TIFF directory: IndexError "directory out
# of range", TypeError "Missing dimensions"; others: struct.error, EOFError, KeyError...)
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, LookupError, TypeError, EOFError, ArithmeticError,
                   struct.error)


def _check_stream(encoded: bytes, fmt: str | None, label: str, tiff_tags=None) -> None:
    """Refuse a damaged or truncated file before decoding it (:mod:`convcli.io.integrity`)."""
    from convcli.io.integrity import DamagedStream, check_stream

    try:
        check_stream(encoded, fmt, tiff_tags)
    except DamagedStream as error:
        raise InputError(f"{label}: not a readable image ({error})") from error


def check_single_frame(frames: int, kind: str | None, label: str) -> None:
    """Refuse a multi-page or animated image: reading its first frame alone would drop the others
    without a word."""
    if frames > 1:
        raise InputError(f"{label}: {frames} frames (pages) in one {kind or 'image'} file; convcli reads "
                         "single images: split it into one file per frame first")


def _png_chunk_before_pixels(encoded: bytes, kind: bytes) -> bytes | None:
    """The data of the first chunk of type ``kind`` before the PNG's first IDAT, or None."""
    position = 8  # after the signature
    while position + 8 <= len(encoded):
        length = int.from_bytes(encoded[position : position + 4], "big")
        chunk = encoded[position + 4 : position + 8]
        if chunk == kind:
            return encoded[position + 8 : position + 8 + length]
        if chunk in (b"IDAT", b"IEND"):
            return None
        position += 12 + length
    return None


# EXIF Orientation (tag 0x0112) -> the numpy transform that shows the pixels as a viewer does:
# (turns of 90 degrees counter-clockwise, then a left-right mirror)
_ORIENTATIONS = {2: (0, True), 3: (2, False), 4: (2, True), 5: (3, True), 6: (3, False), 7: (1, True),
                 8: (1, False)}


def _orientation(image) -> int:
    """The EXIF orientation of a Pillow image (1, upright, when it has none)."""
    try:
        return int(image.getexif().get(0x0112, 1))
    except (AttributeError, ValueError, TypeError, SyntaxError, OSError):
        return 1


def _upright(decoded: tuple, orientation: int) -> tuple:
    """``(colour, alpha, info)`` turned as the EXIF orientation says, so the output displays as the
    input does (the output carries no orientation tag)."""
    turn = _ORIENTATIONS.get(orientation)
    if turn is None:
        return decoded
    turns, mirror = turn
    colour, alpha, info = decoded

    def upright(planes: np.ndarray) -> np.ndarray:
        planes = np.rot90(planes, turns, axes=(-2, -1))
        return np.ascontiguousarray(planes[..., ::-1] if mirror else planes)

    return upright(colour), None if alpha is None else upright(alpha), info


def _tiff_size(encoded: bytes) -> tuple[int, int]:
    """(width, height) of a TIFF's first image, from its first IFD (nothing decoded)."""
    order = "<" if encoded[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", encoded[4:8])
    (count,) = struct.unpack(order + "H", encoded[offset : offset + 2])
    size = {}
    for entry in range(count):
        start = offset + 2 + 12 * entry
        tag, kind = struct.unpack(order + "HH", encoded[start : start + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            form, width = ("H", 2) if kind == 3 else ("I", 4)
            size[tag] = struct.unpack(order + form, encoded[start + 8 : start + 8 + width])[0]
    if len(size) != 2:
        raise ValueError("TIFF without ImageWidth/ImageLength")
    return size[256], size[257]


def _decode_tiff(encoded: bytes, label: str) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """A TIFF Pillow cannot open (float or 32-bit integer colour), by imagecodecs' libtiff."""
    import imagecodecs

    try:
        width, height = _tiff_size(encoded)
    except (struct.error, ValueError) as error:
        raise InputError(f"{label}: not a readable image (TIFF: {' '.join(str(error).split())})") from error
    check_pixels(width, height, label)
    try:
        pixels = imagecodecs.tiff_decode(encoded)
    except (ValueError, RuntimeError, IndexError) as error:  # IndexError: no image directory left
        raise InputError(f"{label}: not a readable image (TIFF: {' '.join(str(error).split())})") from error
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] > 4:
        raise InputError(f"{label}: TIFF of shape {shape_text(pixels.shape)} is not a gray or RGB(A) image")
    if pixels.dtype.kind == "f":
        return _float_image(np.moveaxis(pixels, -1, 0))
    return _split_alpha(_sixteen_bits(pixels, label), bits=16)


def _float_image(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """Float samples are kept as they are (not scaled, not clipped): 32-bit float image."""
    planes = planes.astype(np.float32)
    colour, alpha = (planes[:-1], planes[-1]) if planes.shape[0] in (2, 4) else (planes, None)
    return colour, alpha, ImageInfo("L" if colour.shape[0] == 1 else "RGB", FLOAT_BITS)


def _sixteen_bits(pixels: np.ndarray, label: str) -> np.ndarray:
    """32-bit integer samples as 16-bit ones, when every value fits (else refused, never clipped)."""
    low, high = int(pixels.min(initial=0)), int(pixels.max(initial=0))
    if low < 0 or high > 65535:
        raise InputError(f"{label}: {pixels.dtype.itemsize * 8}-bit integer samples from {low} to {high} do "
                         "not fit the 0-65535 of a 16-bit image; convert it to a float TIFF or an .npy array")
    return pixels.astype(np.uint16)


def check_pixels(width: int, height: int, label: str) -> None:
    """Refuse, from the header and before any decoding, an image over the pixel budget (a
    decompression bomb: 30000x30000 pixels of one colour are under 1 MB as PNG, 2.7 GB decoded)."""
    from convcli import budget

    budget.check("pixels", width * height, f"{label}: decoding a {width}x{height} image")


def _decode(image, label: str) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    mode, fmt = image.mode, image.format  # a converted image has no format
    if mode == "F":
        return _float_image(np.asarray(image)[None])
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image)
        if mode == "I":
            data = _sixteen_bits(data, label)
        bits = 16 if mode.startswith("I;16") or data.max(initial=0) > 255 else 8
        scale = 65535.0 if bits == 16 else 255.0
        return (data.astype(np.float64) / scale)[None].astype(np.float32), None, ImageInfo("L", bits)
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
    from convcli.io.pixels import to_floats

    colour, alpha = to_floats(pixels, bits)
    return colour, alpha, ImageInfo("L" if colour.shape[0] == 1 else "RGB", bits)


def _decode_png(encoded: bytes, depth: int, label: str) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    import imagecodecs

    try:
        pixels = imagecodecs.png_decode(encoded)
    except RuntimeError as error:  # imagecodecs.PngError
        reason = " ".join(str(error).split())
        raise InputError(f"{label}: not a readable image (PNG data: {reason})") from error
    return _split_alpha(pixels, bits=depth)


def _is_sixteen_bit_colour(image) -> bool:
    """A 16-bit RGB or RGBA TIFF, told from its tags before Pillow decodes it."""
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
    try:
        pixels = imagecodecs.tiff_decode(image.fp.read())
        if _tiff_tag(image, 284) == (_TIFF_SEPARATE_PLANES,):  # PlanarConfiguration
            pixels = np.moveaxis(pixels, 0, -1)
    except RuntimeError as error:  # imagecodecs.TiffError
        raise ValueError(f"16-bit TIFF data: {error}") from error
    width, height = image.size
    if pixels.dtype != np.uint16 or pixels.shape[:2] != (height, width):
        raise ValueError(f"16-bit TIFF decoded as {pixels.dtype} {shape_text(pixels.shape)}")
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
            f"a result of shape {shape_text(colour.shape)} is not a gray or RGB image; "
            "write it as .npy instead"
        )
    if bits == FLOAT_BITS:
        if fmt == "TIFF":  # float in, float out: never clipped
            _write_float_tiff(path, colour, alpha)
            return 0
        bits = 16 if fmt in SIXTEEN_BIT_FORMATS else 8
        warnings.warn(
            f"{fmt} holds {bits}-bit integers: the float image was written as values in [0, 1] with {bits} "
            "bits (see --range; .tif keeps floats)",
            UserWarning,
            stacklevel=2,
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
    from convcli.io.pixels import to_integers

    # clip (the default) is counted and applied by the conversion's single pass
    fitted, clipped = (colour, None) if policy == "clip" else fit_range(colour, policy, 0.0, 1.0)
    planes = fitted if alpha is None else np.concatenate([fitted, alpha[None].astype(fitted.dtype)])
    pixels, counted = to_integers(planes, bits, counted=fitted.shape[0])
    clipped = counted if clipped is None else clipped
    if fmt == "PNG" or (bits == 16 and pixels.shape[2] > 1):  # no Pillow mode holds 16-bit colour
        _write_deep_or_png(path, fmt, pixels)
        return clipped
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if fmt == "WEBP" and alpha is None:
        options["lossless"] = False
    if image.mode == "LA" and fmt in ("BMP", "WEBP"):
        image = image.convert("RGBA")  # these encoders have no gray+alpha mode
    image.save(path, format=fmt, **options)
    return clipped


def _write_float_tiff(path: Path, colour: np.ndarray, alpha: np.ndarray | None) -> None:
    import imagecodecs

    planes = colour if alpha is None else np.concatenate([colour, alpha[None].astype(colour.dtype)])
    pixels = np.ascontiguousarray(np.moveaxis(planes, 0, -1).astype(np.float32))
    channels = pixels.shape[2]
    Path(path).write_bytes(imagecodecs.tiff_encode(
        pixels[:, :, 0] if channels == 1 else pixels,
        photometric="rgb" if channels >= 3 else "minisblack",
        extrasample="unassalpha" if channels in (2, 4) else None,
    ))


def _write_deep_or_png(path: Path, fmt: str, pixels: np.ndarray) -> None:
    """(H, W, C) uint8/uint16 pixels as PNG (any depth; our encoder) or 16-bit TIFF
    (C = 2, 3 or 4; imagecodecs)."""
    channels = pixels.shape[2]
    if fmt == "PNG":
        from convcli.io.png import encode_png

        encoded = encode_png(pixels)
    else:
        import imagecodecs

        encoded = imagecodecs.tiff_encode(
            pixels,
            photometric="rgb" if channels >= 3 else "minisblack",
            extrasample="unassalpha" if channels in (2, 4) else None,
        )
    Path(path).write_bytes(encoded)
