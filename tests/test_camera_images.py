"""Issue #20, class 4: images as cameras and scanners write them. The EXIF orientation is honoured
(the output displays as the input does), multi-page and animated files are refused rather than cut
to their first frame, and a truncated or damaged compressed stream is refused, never decoded into
gray, in-process and by the warm worker alike."""

import io
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from commands import run
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps
from test_server import CONVCLI
from test_worker_callers import served, warm  # noqa: F401 - warm: the fixture, used by name

from convcli import server_protocol as protocol
from convcli.errors import InputError, UsageError
from convcli.io.image import read_image

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("extension", [".tif", ".png", ".webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured_as_pillow_shows_it(tmp_path, extension, orientation):
    pixels = (RNG.random((5, 8, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"photo{extension}"
    kwargs = {"lossless": True} if extension == ".webp" else {}
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **kwargs)
    with Image.open(path) as image:
        shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # what a viewer displays
    colour, _alpha, _info = read_image(path)
    np.testing.assert_array_equal(np.round(np.moveaxis(colour, 0, -1) * 255).astype(np.uint8), shown)


def test_the_output_of_a_rotated_photo_displays_as_the_input(tmp_path):
    """A camera JPEG stored landscape with 'rotate 90' (orientation 6): the output is portrait."""
    pixels = (RNG.random((40, 64, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "camera.jpg", exif=exif.tobytes(), quality=95)
    result = run("convolve", tmp_path / "camera.jpg", "-k", "identity", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert "3x64x40" in result.output
    with Image.open(tmp_path / "camera.jpg") as image:
        shown = np.asarray(ImageOps.exif_transpose(image)).astype(int)
    written = np.asarray(Image.open(tmp_path / "out.png")).astype(int)
    assert written.shape == shown.shape == (64, 40, 3)
    assert np.abs(written - shown).max() <= 1


def _frames(count):
    return [Image.fromarray((RNG.random((6, 7, 3)) * 255).astype(np.uint8)) for _ in range(count)]


@pytest.mark.parametrize("extension", [".tif", ".webp", ".png"])
@pytest.mark.parametrize("count", [2, 4])
def test_multi_frame_files_are_refused_not_cut(tmp_path, extension, count):
    first, *rest = _frames(count)
    first.save(tmp_path / f"many{extension}", save_all=True, append_images=rest)
    result = run("convolve", tmp_path / f"many{extension}", "-k", "box:3", "-o", tmp_path / "out.png")
    assert result.exit_code == 1 and not (tmp_path / "out.png").exists()
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{count} frames" in lines[0], result.output


def test_a_single_frame_written_with_save_all_is_read(tmp_path):
    first, = _frames(1)
    first.save(tmp_path / "one.tif", save_all=True)
    colour, _alpha, _info = read_image(tmp_path / "one.tif")
    np.testing.assert_array_equal(np.round(np.moveaxis(colour, 0, -1) * 255).astype(np.uint8),
                                  np.asarray(first))


@given(extension=st.sampled_from([".jpg", ".png", ".webp", ".tif"]), fraction=st.floats(0.05, 0.98))
def test_a_truncated_image_is_refused_never_gray(tmp_path_factory, extension, fraction):
    folder = tmp_path_factory.mktemp("cut")
    pixels = (np.random.default_rng(9).random((48, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / f"full{extension}")
    data = (folder / f"full{extension}").read_bytes()
    (folder / f"cut{extension}").write_bytes(data[: max(16, int(len(data) * fraction))])
    result = run("convolve", folder / f"cut{extension}", "-k", "box:3", "-o", folder / "out.png")
    assert result.exit_code == 1, result.output
    assert "not a readable image" in result.output and not (folder / "out.png").exists()


# ---------------------------------------------------------------- damaged compressed streams
# A damaged stream that the decoders read without an error (libjpeg only warns, libpng skips an
# ancillary chunk with a wrong CRC) is refused before decoding: one line, exit 1, nothing written
# for it, the other inputs still processed. The damages below are the ones each format can tell
# by construction: a scan cut short, bytes left over after a scan's last block, restart markers
# out of order, any byte of a CRC-protected PNG chunk, RIFF/VP8 sizes past the data, TIFF strips
# past the end of the file.

JPEG_SETTINGS = [
    {"quality": 90},
    {"quality": 75, "progressive": True},
    {"quality": 95, "subsampling": 0},
    {"quality": 60, "subsampling": 2, "progressive": True},
    {"quality": 90, "restart_marker_blocks": 2},
    {"quality": 85, "optimize": True, "subsampling": 1},
    {"quality": 80, "progressive": True, "restart_marker_rows": 1},
]


def camera_pixels(seed: int, height: int, width: int, gray: bool = False) -> np.ndarray:
    """A gradient with sensor noise: every block has AC coefficients, as a photo's do."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 1 if gray else 3))
    pixels = np.clip(ramp + rng.normal(0, 30, ramp.shape), 0, 255).astype(np.uint8)
    return pixels[:, :, 0] if gray else pixels


def jpeg_bytes(settings: dict, height: int = 40, width: int = 56, gray: bool = False, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(camera_pixels(seed, height, width, gray)).save(buffer, "JPEG", **settings)
    return buffer.getvalue()


def scans(encoded: bytes) -> list[tuple[int, int]]:
    """(first byte, end) of each scan's entropy-coded data: from after its SOS header to the first
    marker other than a restart marker."""
    found, position = [], 2
    while position < len(encoded):
        code = encoded[position + 1]
        if code == 0xD9:
            return found
        length = int.from_bytes(encoded[position + 2 : position + 4], "big")
        position += 2 + length
        if code == 0xDA:
            end = position
            while not (encoded[end] == 0xFF and encoded[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
            found.append((position, end))
            position = end
    return found


def refusal(encoded: bytes, extension: str) -> str:
    """The InputError reading ``encoded`` raises (fails the test if it reads)."""
    with pytest.raises(InputError) as refused:
        read_image(io.BytesIO(encoded), name=f"damaged{extension}")
    message = str(refused.value)
    assert message.startswith(f"damaged{extension}: not a readable image (") and "\n" not in message
    return message


@given(settings=st.sampled_from(JPEG_SETTINGS), height=st.integers(1, 70), width=st.integers(1, 70),
       gray=st.booleans())
def test_whole_jpegs_of_every_encoder_setting_are_read_as_pillow_decodes_them(settings, height, width, gray):
    encoded = jpeg_bytes(settings, height, width, gray)
    colour, _alpha, _info = read_image(io.BytesIO(encoded), name="whole.jpg")
    expected = np.asarray(Image.open(io.BytesIO(encoded)))
    got = np.round(np.moveaxis(colour, 0, -1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


@given(settings=st.sampled_from(JPEG_SETTINGS), which=st.floats(0, 1, exclude_max=True),
       where=st.floats(0, 1, exclude_max=True))
def test_a_jpeg_scan_cut_short_and_closed_is_refused_not_gray(settings, which, where):
    """The file cut inside a scan and closed with EOI, as a broken transfer or a careless repair
    leaves it: libjpeg decodes it with a warning and fills the rest with gray."""
    encoded = jpeg_bytes(settings)
    found = scans(encoded)
    start, end = found[int(which * len(found))]
    cut = start + int(where * (end - start))
    assert "JPEG: Corrupt JPEG data" in refusal(encoded[:cut] + b"\xff\xd9", ".jpg")


@given(settings=st.sampled_from(JPEG_SETTINGS), which=st.floats(0, 1, exclude_max=True),
       extra=st.binary(min_size=1, max_size=6).filter(lambda b: b"\xff" not in b))
def test_bytes_left_over_after_a_scans_last_block_are_refused(settings, which, extra):
    encoded = jpeg_bytes(settings)
    found = scans(encoded)
    _start, end = found[int(which * len(found))]
    message = refusal(encoded[:end] + extra + encoded[end:], ".jpg")
    assert f"{len(extra)} extraneous bytes" in message


def test_restart_markers_out_of_order_are_refused():
    encoded = bytearray(jpeg_bytes({"quality": 90, "restart_marker_blocks": 1}))
    (start, end), = scans(bytes(encoded))
    markers = [i for i in range(start, end - 1) if encoded[i] == 0xFF and 0xD0 <= encoded[i + 1] <= 0xD7]
    assert len(markers) > 2
    first, second = markers[1], markers[2]
    encoded[first + 1], encoded[second + 1] = encoded[second + 1], encoded[first + 1]
    assert "restart markers out of order" in refusal(bytes(encoded), ".jpg")


@pytest.mark.parametrize("settings", JPEG_SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_most_damage_inside_the_scans_is_refused(settings):
    """JPEG holds no checksum: a changed byte that still decodes as valid codes cannot be told
    from an intended image by any reader. Damage that breaks the codes is refused: 50-91 of these
    100 (progressive scans' correction bits are raw, so fewer there), where Pillow alone refuses 0-1."""
    encoded = jpeg_bytes(settings, 64, 80)
    rng = np.random.default_rng(11)
    data = [i for start, end in scans(encoded) for i in range(start, end)]
    refused = 0
    for position in rng.choice(data, 100, replace=False):
        damaged = bytearray(encoded)
        damaged[position] ^= int(rng.integers(1, 256))
        try:
            read_image(io.BytesIO(bytes(damaged)), name="damaged.jpg")
        except InputError:
            refused += 1
    assert refused >= 40


def png_bytes(kind: str) -> bytes:
    rng = np.random.default_rng(3)
    pixels = (rng.random((9, 11, 4)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    if kind == "rgb":
        Image.fromarray(pixels[:, :, :3]).save(buffer, "PNG")
    elif kind == "gray-alpha":
        Image.fromarray(pixels[:, :, :2], mode="LA").save(buffer, "PNG")
    elif kind == "palette":
        Image.fromarray(pixels[:, :, :3]).convert("P").save(buffer, "PNG")
    else:  # 16-bit colour, with a text chunk (ancillary: libpng skips it when its CRC is wrong)
        import imagecodecs

        encoded = imagecodecs.png_encode(pixels[:, :, :3].astype(np.uint16) * 257)
        text = b"tEXt" + b"Comment\x00made by the test"
        chunk = len(text[4:]).to_bytes(4, "big") + text + zlib.crc32(text).to_bytes(4, "big")
        return encoded[:33] + chunk + encoded[33:]
    return buffer.getvalue()


@given(kind=st.sampled_from(["rgb", "gray-alpha", "palette", "deep"]),
       where=st.floats(0, 1, exclude_max=True), change=st.integers(1, 255))
def test_any_changed_byte_of_a_png_is_refused(kind, where, change):
    encoded = bytearray(png_bytes(kind))
    position = 8 + int(where * (len(encoded) - 8))  # any byte after the signature: all are in chunks
    encoded[position] ^= change
    refusal(bytes(encoded), ".png")


def webp_bytes(lossless: bool) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(camera_pixels(4, 20, 24)).save(buffer, "WEBP", lossless=lossless, quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("lossless", [False, True], ids=["lossy", "lossless"])
@pytest.mark.parametrize("field", ["riff", "chunk", "partition"])
def test_a_webp_whose_sizes_say_more_than_it_holds_is_refused(lossless, field):
    encoded = bytearray(webp_bytes(lossless))
    assert encoded[12:16] == (b"VP8L" if lossless else b"VP8 ")
    if field == "riff":
        encoded[4:8] = (len(encoded) + 100).to_bytes(4, "little")
    elif field == "chunk":
        encoded[16:20] = (int.from_bytes(encoded[16:20], "little") + 64).to_bytes(4, "little")
    elif lossless:  # a VP8L header's version bits, which must be 0
        encoded[24] |= 0xE0
    else:  # the first partition's size (19 bits of the frame tag) past the frame
        tag = int.from_bytes(encoded[20:23], "little") | (0x7FFFF << 5)
        encoded[20:23] = (tag & 0xFFFFFF).to_bytes(3, "little")
    assert "WebP data" in refusal(bytes(encoded), ".webp")


def test_a_tiff_whose_strips_run_past_its_end_is_refused():
    buffer = io.BytesIO()
    Image.fromarray(camera_pixels(5, 30, 20)).save(buffer, "TIFF", compression="tiff_lzw")
    encoded = bytearray(buffer.getvalue())
    (offset,) = struct.unpack("<I", encoded[4:8])
    (count,) = struct.unpack("<H", encoded[offset : offset + 2])
    for entry in range(count):  # StripByteCounts of one strip: its value is inline
        start = offset + 2 + 12 * entry
        tag, kind, values = struct.unpack("<HHI", encoded[start : start + 8])
        if tag == 279:
            assert values == 1
            form = "<H" if kind == 3 else "<I"
            encoded[start + 8 : start + 8 + struct.calcsize(form)] = struct.pack(form, 60000)
    assert "past the end of the file" in refusal(bytes(encoded), ".tif")


def damaged_batch(folder) -> list[str]:
    """Good and damaged inputs of each compressed format; the damaged ones' names."""
    good = jpeg_bytes({"quality": 90}, 48, 64)
    start, end = scans(good)[0]
    (folder / "whole.jpg").write_bytes(good)
    (folder / "cut.jpg").write_bytes(good[: (start + end) // 2] + b"\xff\xd9")
    (folder / "extra.jpg").write_bytes(good[:end] + b"\x01\x02" + good[end:])
    (folder / "whole.png").write_bytes(png_bytes("rgb"))
    png = bytearray(png_bytes("rgb"))
    png[60] ^= 0x10
    (folder / "flipped.png").write_bytes(bytes(png))
    webp = webp_bytes(False)
    (folder / "short.webp").write_bytes(webp[:4] + (len(webp) + 8).to_bytes(4, "little") + webp[8:])
    return ["cut.jpg", "extra.jpg", "flipped.png", "short.webp"]


def test_damaged_inputs_are_one_line_each_and_the_others_are_written(tmp_path):
    damaged = damaged_batch(tmp_path)
    inputs = sorted(tmp_path.iterdir())
    result = run("convolve", *inputs, "-k", "box:3", "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == len(damaged) and "Traceback" not in result.output
    for name in damaged:
        assert sum(name in line and "not a readable image" in line for line in errors) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["whole.jpg", "whole.png"]


@pytest.mark.skipif(not protocol.supported(), reason="the warm worker needs Linux")
def test_damaged_inputs_are_refused_alike_by_the_warm_worker(warm, tmp_path):  # noqa: F811 - the fixture
    damaged = damaged_batch(tmp_path)

    def call(server: str) -> tuple[int, str, list[str]]:
        out = tmp_path / f"out-{server}"
        result = subprocess.run([*CONVCLI, "convolve", *sorted(damaged), "whole.png", "-k", "box:3", "-o",
                                 f"{out.name}/"], env={**warm, "CONVCLI_SERVER": server}, cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        return result.returncode, result.stderr, sorted(p.name for p in out.iterdir())

    before = served(warm)
    warm_call, in_process = call("1"), call("0")
    assert served(warm) == before + 1  # the worker took the warm call
    assert warm_call == in_process
    status_code, stderr, written = warm_call
    assert status_code == 1 and written == ["whole.png"]
    assert len(stderr.strip().splitlines()) == len(damaged)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # its own words on damaged files
@pytest.mark.parametrize("head", [b"\xff\xd8\xff", b"", b"II*\x00"], ids=["jpeg", "none", "tiff"])
def test_bytes_no_decoder_recognises_are_one_stable_line(head):
    """The line names the input and says what is wrong, never an in-memory object's address (which
    differs from run to run, so the warm worker's bytes and in-process ones would differ)."""
    garbage = head + np.random.default_rng(2).bytes(200)
    first, second = refusal(garbage, ".png"), refusal(garbage, ".png")
    assert first == second and "object at 0x" not in first


def test_a_decoders_warnings_name_the_file_or_give_way_to_its_error(tmp_path):
    """Pillow warns about damaged metadata in its own words, naming no file: a file that is read
    gets the warning with its name, one that is refused gets its one error line alone."""
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    buffer = io.BytesIO()
    Image.fromarray(camera_pixels(6, 8, 8)).save(buffer, "JPEG", exif=exif.tobytes())
    photo = bytearray(buffer.getvalue())
    tags = photo.find(b"Exif\x00\x00") + 6 + 8  # the first IFD's entry count, past the TIFF header
    photo[tags : tags + 2] = b"\xff\x7f"  # far more entries than the segment holds
    (tmp_path / "exif.jpg").write_bytes(bytes(photo))
    (tmp_path / "tags.tif").write_bytes(b"II*\x00" + np.random.default_rng(2).bytes(200))

    def call(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CONVCLI, "convolve", name, "-k", "box:3", "-o", "out/"], cwd=tmp_path,
                              env={**os.environ, "CONVCLI_SERVER": "0"}, capture_output=True, text=True,
                              timeout=300)

    read, refused = call("exif.jpg"), call("tags.tif")
    assert read.returncode == 0 and read.stderr.strip() == (
        "convcli: warning: exif.jpg: Corrupt EXIF data. Expecting to read 12 bytes but only got 0")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "convcli: error: tags.tif: not a readable image (TIFF: unpack requires a buffer of 2 bytes)"]


def tiff_bytes(kind: str) -> bytes:
    pixels = camera_pixels(7, 6, 5)
    if kind in ("deep", "float"):
        import imagecodecs

        data = pixels.astype(np.uint16) * 257 if kind == "deep" else pixels.astype(np.float32) / 255
        return imagecodecs.tiff_encode(data, photometric="rgb")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "TIFF", **({"compression": kind} if kind != "raw" else {}))
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # its own words on damaged files
@pytest.mark.parametrize("kind, position, value", [("raw", 12, 0), ("raw", 8, 7)],
                         ids=["no directory (imagecodecs: IndexError)", "no width (Pillow: TypeError)"])
def test_a_damaged_tiff_directory_is_refused_not_an_internal_error(kind, position, value):
    damaged = bytearray(tiff_bytes(kind))
    damaged[position] = value
    refusal(bytes(damaged), ".tif")


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # its own words on damaged files
@given(kind=st.sampled_from(["raw", "tiff_lzw", "tiff_adobe_deflate", "deep", "float"]),
       changes=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1,
                        max_size=3))
def test_any_damaged_tiff_is_read_or_refused_in_one_line(kind, changes):
    """Whatever byte a TIFF loses (its directory above all), it is read or refused as an input
    error: never an exception of a decoder's own (an internal error, a traceback)."""
    damaged = bytearray(tiff_bytes(kind))
    for where, value in changes:
        damaged[int(where * len(damaged))] = value
    try:
        read_image(io.BytesIO(bytes(damaged)), name="damaged.tif")
    except (InputError, UsageError):
        pass
