"""16-bit colour images (48-bit RGB, 64-bit RGBA, 32-bit gray+alpha) keep their 16 bits.

The input files are made here byte by byte with numpy/zlib/struct, and PNG outputs are decoded
by the small reader below, so neither side of a check goes through the code under test.
"""

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from convcli.errors import InputError
from convcli.io import Media, read_media, write_media
from convcli.io.image import ImageInfo

RNG = np.random.default_rng(16)
PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(pixels: np.ndarray) -> bytes:
    """(H, W, C) uint8 or uint16 as a PNG of that depth: rows with filter byte 0, big-endian samples."""
    height, width, channels = pixels.shape
    depth = 8 * pixels.dtype.itemsize
    header = struct.pack(">IIBBBBB", width, height, depth, PNG_COLOUR_TYPE[channels], 0, 0, 0)
    rows = pixels.astype(f">u{pixels.dtype.itemsize}").reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def png16_bytes(pixels: np.ndarray) -> bytes:
    return make_png(pixels.astype(np.uint16))


def read_png(data: bytes) -> np.ndarray:
    """A non-interlaced 8/16-bit PNG (any of the five filters) as (H, W, C)."""
    position, idat, header = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        header = struct.unpack(">IIBBBBB", body) if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert interlace == 0
    channels = {0: 1, 4: 2, 2: 3, 6: 4}[colour_type]
    step, stride = channels * depth // 8, width * channels * depth // 8
    raw, previous, rows = zlib.decompress(idat), bytearray(stride), []
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - step] if i >= step else 0
            b, c = previous[i], previous[i - step] if i >= step else 0
            p = a + b - c
            paeth = a if abs(p - a) <= min(abs(p - b), abs(p - c)) else b if abs(p - b) <= abs(p - c) else c
            row[i] = (row[i] + [0, a, b, (a + b) // 2, paeth][kind]) & 0xFF
        rows.append(bytes(row))
        previous = row
    return np.frombuffer(b"".join(rows), ">u2" if depth == 16 else np.uint8).reshape(height, width, channels)


def tiff16_bytes(pixels: np.ndarray, *, planar: bool = False) -> bytes:
    """(H, W, 3 or 4) uint16 as an uncompressed little-endian RGB(A) TIFF, chunky or planar."""
    height, width, channels = pixels.shape
    planes = [pixels[:, :, c] for c in range(channels)] if planar else [pixels]
    strips = [np.ascontiguousarray(plane).astype("<u2").tobytes() for plane in planes]
    count = 10 + (channels == 4)
    ifd_size = 2 + 12 * count + 4
    extra = 8 + ifd_size  # arrays that do not fit in an entry follow the IFD
    bits_at, offsets_at, counts_at = extra, extra + 2 * channels, extra + 2 * channels + 4 * len(strips)
    data_at = counts_at + 4 * len(strips)
    starts = list(np.cumsum([data_at] + [len(s) for s in strips])[:-1])

    def entry(tag, kind, values, offset=None):  # kind 3 = SHORT, 4 = LONG
        if offset is not None:
            return struct.pack("<HHII", tag, kind, len(values), offset)
        packed = struct.pack("<" + ("H" if kind == 3 else "I") * len(values), *values)
        return struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\0")

    many = len(strips) > 1
    entries = [
        entry(256, 4, [width]),
        entry(257, 4, [height]),
        entry(258, 3, [16] * channels, bits_at),
        entry(259, 3, [1]),
        entry(262, 3, [2]),
        entry(273, 4, starts, offsets_at if many else None),
        entry(277, 3, [channels]),
        entry(278, 4, [height]),
        entry(279, 4, [len(s) for s in strips], counts_at if many else None),
        entry(284, 3, [2 if planar else 1]),
    ] + ([entry(338, 3, [2])] if channels == 4 else [])
    arrays = struct.pack(f"<{channels}H", *[16] * channels)
    arrays += struct.pack(f"<{len(strips)}I", *starts) + struct.pack(f"<{len(strips)}I", *map(len, strips))
    ifd = struct.pack("<H", count) + b"".join(entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + arrays + b"".join(strips)


def encode(pixels: np.ndarray, extension: str) -> bytes:
    return png16_bytes(pixels) if extension == ".png" else tiff16_bytes(pixels)


def random16(channels: int, height: int = 7, width: int = 9) -> np.ndarray:
    pixels = RNG.integers(0, 65536, size=(height, width, channels), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535  # the ends of the range
    return pixels


def as_uint16(values: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(values, np.float64) * 65535).astype(np.int64)


@pytest.mark.parametrize("extension", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_is_read_at_full_precision(tmp_path, extension, channels):
    pixels = random16(channels)
    (tmp_path / f"in{extension}").write_bytes(encode(pixels, extension))
    media = read_media(tmp_path / f"in{extension}", extension)
    assert media.image == ImageInfo("RGB", 16) and media.data.dtype == np.float32
    assert np.array_equal(as_uint16(media.data), np.moveaxis(pixels[:, :, :3], -1, 0))
    if channels == 4:
        assert np.array_equal(as_uint16(media.alpha), pixels[:, :, 3])
    else:
        assert media.alpha is None


def test_sixteen_bit_gray_alpha_png_and_planar_tiff_are_read_at_full_precision(tmp_path):
    gray_alpha = random16(2)
    (tmp_path / "la.png").write_bytes(png16_bytes(gray_alpha))
    media = read_media(tmp_path / "la.png", ".png")
    assert media.image == ImageInfo("L", 16)
    assert np.array_equal(as_uint16(media.data[0]), gray_alpha[:, :, 0])
    assert np.array_equal(as_uint16(media.alpha), gray_alpha[:, :, 1])
    rgb = random16(3)
    (tmp_path / "planar.tif").write_bytes(tiff16_bytes(rgb, planar=True))
    media = read_media(tmp_path / "planar.tif", ".tif")
    assert np.array_equal(as_uint16(media.data), np.moveaxis(rgb, -1, 0))


def test_sixteen_bit_colour_from_stdin_bytes(tmp_path):
    pixels = random16(4)
    media = read_media(io.BytesIO(png16_bytes(pixels)), ".png", name="stdin")
    assert np.array_equal(as_uint16(media.alpha), pixels[:, :, 3])


@pytest.mark.parametrize("source", [".png", ".tif"])
@pytest.mark.parametrize("target", [".png", ".tif"])
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_sixteen_bit_colour_round_trip_is_exact(tmp_path, source, target, channels):
    import imagecodecs  # TIFF outputs only; PNG outputs are checked with the reader above

    if source == ".tif" and channels == 2:
        source = ".png"  # Pillow cannot open a 16-bit gray+alpha TIFF; the PNG one still tests the write
    pixels = random16(channels)
    (tmp_path / f"in{source}").write_bytes(encode(pixels, source))
    media = read_media(tmp_path / f"in{source}", source)
    assert write_media(tmp_path / f"out{target}", media) == 0
    written = (tmp_path / f"out{target}").read_bytes()
    back = read_png(written) if target == ".png" else imagecodecs.tiff_decode(written)
    assert back.dtype.itemsize == 2 and np.array_equal(back.reshape(pixels.shape), pixels)


@pytest.mark.parametrize("extension", [".jpg", ".bmp", ".webp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_sixteen_bit_to_an_eight_bit_format_says_so(tmp_path, extension, channels):
    pixels = random16(channels, 16, 16)
    pixels[:] = pixels.mean(axis=(0, 1), dtype=np.int64).astype(np.uint16)  # flat: lossy codecs are exact
    info = ImageInfo("RGB" if channels == 3 else "L", 16)
    media = Media("image", pixels.transpose(2, 0, 1) / 65535, image=info)
    with pytest.warns(UserWarning, match="holds 8 bits per channel: the 16-bit input was written with 8"):
        write_media(tmp_path / f"out{extension}", media)
    written = np.asarray(Image.open(tmp_path / f"out{extension}"))
    assert written.dtype == np.uint8
    expected = np.rint(pixels[0, 0].astype(np.float64) / 65535 * 255)
    assert np.abs(written.reshape(16, 16, -1)[:, :, :channels] - expected).max() <= 1


@pytest.mark.parametrize("policy", ["clip", "normalize", "abs", "offset"])
@pytest.mark.parametrize("extension", [".png", ".tif"])
def test_range_policies_and_clipped_counts_for_sixteen_bit_colour(tmp_path, policy, extension):
    import imagecodecs

    values = RNG.uniform(-0.6, 1.4, size=(3, 5, 6))
    alpha = RNG.uniform(0, 1, size=(5, 6))
    media = Media("image", values, alpha, image=ImageInfo("RGB", 16))
    clipped = write_media(tmp_path / f"out{extension}", media, policy=policy)
    expected = {
        "clip": values,
        "normalize": (values - values.min()) / (values.max() - values.min()),
        "abs": np.abs(values),
        "offset": values + 0.5,
    }[policy]
    outside = 0 if policy == "normalize" else int(((expected < 0) | (expected > 1)).sum())
    assert clipped == outside and (policy != "clip" or clipped > 0)
    written = (tmp_path / f"out{extension}").read_bytes()
    back = read_png(written) if extension == ".png" else imagecodecs.tiff_decode(written)
    reference = as_uint16(np.clip(expected, 0, 1).transpose(1, 2, 0))
    assert np.abs(back[:, :, :3].astype(np.int64) - reference).max() <= 1
    assert np.array_equal(back[:, :, 3], as_uint16(alpha))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_sixteen_bit_png_is_one_clear_error(tmp_path, damage):
    data = png16_bytes(random16(3, 32, 32))
    header_end = 8 + 25  # signature + IHDR: Pillow reads only this far before decoding
    if damage == "truncated":
        data = data[: header_end + 30]
    else:
        data = data[:header_end] + png_chunk(b"IDAT", b"not zlib data at all") + png_chunk(b"IEND", b"")
    (tmp_path / "bad16.png").write_bytes(data)
    with pytest.raises(InputError, match=r"bad16.png: not a readable image \(PNG data: .+\)$"):
        read_media(tmp_path / "bad16.png", ".png")


def test_lossless_gray_webp_stays_gray_and_colour_webp_stays_colour(tmp_path):
    gray = RNG.integers(0, 256, size=(12, 10), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.webp", lossless=True)
    media = read_media(tmp_path / "gray.webp", ".webp")
    assert media.image == ImageInfo("L", 8) and np.array_equal(np.rint(media.data[0] * 255), gray)
    colour = RNG.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.webp", lossless=True)
    assert read_media(tmp_path / "colour.webp", ".webp").data.shape == (3, 12, 10)


def test_eight_bit_images_other_than_png_do_not_import_imagecodecs(tmp_path):
    Image.fromarray(RNG.integers(0, 256, size=(4, 5, 4), dtype=np.uint8)).save(tmp_path / "a.tif")
    script = (
        "import sys; from pathlib import Path; from convcli.io import read_media, write_media\n"
        f"m = read_media(Path({str(tmp_path / 'a.tif')!r}), '.tif')\n"
        f"for ext in ('.tif', '.bmp', '.webp'): write_media(Path({str(tmp_path)!r}) / ('b' + ext), m)\n"
        "print('imagecodecs' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_of_every_plain_colour_type_reads_exactly_and_round_trips(tmp_path, channels, depth):
    """PNG goes through imagecodecs at every depth: gray, gray+alpha, RGB, RGBA, 8 and 16 bits,
    checked against the test's own PNG writer and reader (not the code under test)."""
    top = 255 if depth == 8 else 65535
    pixels = RNG.integers(0, top + 1, size=(7, 9, channels)).astype(np.uint8 if depth == 8 else np.uint16)
    (tmp_path / "in.png").write_bytes(make_png(pixels))
    media = read_media(tmp_path / "in.png", ".png")
    colour = channels - (channels in (2, 4))
    assert media.data.shape == (colour, 7, 9) and media.image.bits == depth
    np.testing.assert_array_equal(np.rint(media.data * top).transpose(1, 2, 0), pixels[:, :, :colour])
    write_media(tmp_path / "out.png", media)
    back = read_png((tmp_path / "out.png").read_bytes())
    np.testing.assert_array_equal(back.reshape(pixels.shape), pixels)
