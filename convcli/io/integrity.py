"""Damaged and truncated image files refused before decoding, by the checks each format offers.

Decoders are lenient by design: libjpeg fills what it cannot decode with gray and only warns,
libpng skips an ancillary chunk whose CRC is wrong, a WebP whose RIFF size says more than the
file holds is decoded as far as it goes. A filtered image written from such a file would look
like a result. What each format makes checkable is checked here, in one pass over the encoded
bytes, before any pixel is decoded: JPEG's Huffman-coded scans walked as libjpeg walks them
(:mod:`convcli.io.jpeg`), every PNG chunk's CRC-32, WebP's RIFF chunk sizes and VP8/VP8L frame
headers, and that a TIFF's strips or tiles lie inside the file. What a format does not protect
(the samples of an uncompressed BMP or TIFF, the tokens of a lossy WebP) cannot be told from
an intended image by anyone and is read as it is.
"""

from __future__ import annotations

import struct
import zlib


class DamagedStream(ValueError):
    """The encoded bytes are damaged or cut short; the message says where, in the format's words."""


def check_stream(encoded: bytes, fmt: str | None, tiff_tags=None) -> None:
    """Raise :class:`DamagedStream` when ``encoded`` is damaged.

    ``fmt`` None: the checks that need no image size, of the formats told by their signature (PNG,
    WebP), run before any header is trusted. Else ``fmt`` is Pillow's name for the format, once the
    header's size has passed the pixel budget (the JPEG walk holds a mask per 8x8 block), and
    ``tiff_tags`` a TIFF's tags as Pillow read them (its ``tag_v2``)."""
    if fmt is None:
        from convcli.io.png import PNG_SIGNATURE

        if encoded.startswith(PNG_SIGNATURE):
            check_png_chunks(encoded)
        elif encoded[:4] == b"RIFF" and encoded[8:12] == b"WEBP":
            check_webp(encoded)
    elif fmt in ("JPEG", "MPO"):
        from convcli.io.jpeg import check_jpeg

        try:
            check_jpeg(encoded)
        except ValueError as error:
            raise DamagedStream(f"JPEG: {error}") from error
    elif fmt == "TIFF" and tiff_tags is not None:
        check_tiff_strips(encoded, tiff_tags)


def check_png_chunks(encoded: bytes) -> None:
    """Every chunk whole and its CRC-32 right, up to IEND (libpng only warns about, and skips, an
    ancillary chunk with a wrong CRC; a damaged IDAT byte can leave its zlib stream decodable)."""
    position = 8  # after the signature
    while True:
        if position + 12 > len(encoded):
            raise DamagedStream("PNG data: the file ends before its IEND chunk (truncated)")
        length, kind = struct.unpack(">I4s", encoded[position : position + 8])
        end = position + 8 + length
        if length > 0x7FFFFFFF or end + 4 > len(encoded):
            raise DamagedStream(f"PNG data: chunk {_name(kind)} runs past the end of the file (truncated)")
        (stored,) = struct.unpack(">I", encoded[end : end + 4])
        if zlib.crc32(encoded[position + 4 : end]) != stored:
            raise DamagedStream(f"PNG data: CRC error in chunk {_name(kind)} at byte {position}")
        if kind == b"IEND":
            return
        position = end + 4


def _name(kind: bytes) -> str:
    return repr(kind.decode("latin-1"))


def check_webp(encoded: bytes) -> None:
    """The RIFF container whole (its size within the file, every chunk inside it) and the frame
    header of a VP8 (lossy) or VP8L (lossless) image well formed."""
    declared = struct.unpack("<I", encoded[4:8])[0] + 8
    if declared > len(encoded):
        raise DamagedStream(f"WebP data: the RIFF header declares {declared} bytes, the file has "
                            f"{len(encoded)} (truncated)")
    position = 12
    while position < declared:
        if position + 8 > declared:
            raise DamagedStream(f"WebP data: a chunk header cut short at byte {position}")
        kind, size = struct.unpack("<4sI", encoded[position : position + 8])
        body = encoded[position + 8 : position + 8 + size]
        if position + 8 + size > declared:
            raise DamagedStream(f"WebP data: chunk {_name(kind)} runs past the end of the RIFF data")
        if kind == b"VP8 ":
            _check_vp8(body)
        elif kind == b"VP8L":
            _check_vp8l(body)
        position += 8 + size + size % 2


def _check_vp8(body: bytes) -> None:
    if len(body) < 10:
        raise DamagedStream("WebP data: VP8 frame header cut short")
    tag = int.from_bytes(body[:3], "little")
    keyframe, version, first_partition = not tag & 1, (tag >> 1) & 7, tag >> 5
    if not keyframe or version > 3 or body[3:6] != b"\x9d\x01\x2a":
        raise DamagedStream("WebP data: VP8 frame header damaged")
    if first_partition > len(body) - 10:
        raise DamagedStream(f"WebP data: VP8 first partition of {first_partition} bytes in a frame of "
                            f"{len(body) - 10}")


def _check_vp8l(body: bytes) -> None:
    if len(body) < 5 or body[0] != 0x2F:
        raise DamagedStream("WebP data: VP8L header damaged")
    if body[4] >> 5:  # the 3-bit version after the sizes and the alpha hint must be 0
        raise DamagedStream("WebP data: VP8L header damaged (version)")


_STRIPS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)


def check_tiff_strips(encoded: bytes, tags) -> None:
    """Every strip (or tile) of a TIFF's first image lies inside the file: a truncated TIFF's last
    strips would otherwise be read as far as they go."""
    for offsets_tag, counts_tag in _STRIPS:
        offsets, counts = _values(tags, offsets_tag), _values(tags, counts_tag)
        for index, (offset, count) in enumerate(zip(offsets, counts, strict=False)):
            if offset + count > len(encoded):
                raise DamagedStream(f"TIFF data: strip {index} ends at byte {offset + count}, past the "
                                    f"end of the file ({len(encoded)} bytes; truncated)")


def _values(tags, number: int) -> tuple:
    value = tags.get(number, ())
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
