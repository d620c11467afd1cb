"""Issue #20, class 4: images as cameras and scanners write them. The EXIF orientation is honoured
(the output displays as the input does), multi-page and animated files are refused rather than cut
to their first frame, and a truncated compressed stream is refused, never decoded into gray."""

import numpy as np
import pytest
from commands import run
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

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
