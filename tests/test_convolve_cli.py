"""`convcli convolve` and `convcli kernels` end to end on real files in a tmp dir."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import run
from PIL import Image
from scipy import ndimage, signal

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
RNG = np.random.default_rng(3)


@pytest.fixture
def photo(tmp_path):
    pixels = RNG.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_sharpen_matches_scipy_ndimage(photo, tmp_path):
    result = run("convolve", photo, "-k", "sharpen", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert "values clipped" in result.output  # sharpening overshoots; clip is counted on stderr
    source = np.asarray(Image.open(photo), dtype=np.float64) / 255
    kernel = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    # images default to reflect (d c b | a b c d), scipy.ndimage's 'mirror'
    expected = np.stack([ndimage.convolve(source[..., c], kernel, mode="mirror") for c in range(3)], -1)
    expected = np.rint(np.clip(expected, 0, 1) * 255)
    got = np.asarray(Image.open(tmp_path / "out.png"), dtype=np.float64)
    assert np.abs(got - expected).max() <= 1


def test_worked_example_convolution_flips_correlation_does_not(tmp_path):
    np.save(tmp_path / "x.npy", np.array([0, 0, 1, 0, 0], dtype=np.float32))
    assert run("convolve", tmp_path / "x.npy", "-k", "1 2 3", "-o", tmp_path / "c.npy").exit_code == 0
    assert (
        run("convolve", tmp_path / "x.npy", "-k", "1 2 3", "--correlate", "-o", tmp_path / "r.npy").exit_code
        == 0
    )
    assert np.array_equal(np.load(tmp_path / "c.npy"), [0, 1, 2, 3, 0])
    assert np.array_equal(np.load(tmp_path / "r.npy"), [0, 3, 2, 1, 0])


def test_options_reach_the_engine(tmp_path):
    x = RNG.standard_normal((15, 17)).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    kernel = RNG.standard_normal((3, 4))
    np.save(tmp_path / "k.npy", kernel)
    result = run(
        "convolve",
        tmp_path / "x.npy",
        "-k",
        tmp_path / "k.npy",
        "--mode",
        "valid",
        "--stride",
        "2,3",
        "--dtype",
        "float64",
        "--correlate",
        "-o",
        tmp_path / "y.npy",
    )
    assert result.exit_code == 0, result.output
    expected = signal.correlate2d(x, kernel, mode="valid")[::2, ::3]
    assert np.allclose(np.load(tmp_path / "y.npy"), expected)
    result = run(
        "convolve",
        tmp_path / "x.npy",
        "-k",
        tmp_path / "k.npy",
        "--boundary",
        "wrap",
        "--dtype",
        "float64",
        "-o",
        tmp_path / "w.npy",
    )
    assert result.exit_code == 0, result.output
    padded = np.pad(x, ((1, 1), (2, 1)), mode="wrap")  # scipy 'same' centring for a 3x4 kernel
    assert np.allclose(np.load(tmp_path / "w.npy"), signal.convolve2d(padded, kernel, mode="valid"))


@pytest.mark.parametrize(
    ("padding", "pads"), [("2", ((2, 2), (2, 2))), ("1,2", ((1, 2), (1, 2))), ("0,1;3,2", ((0, 1), (3, 2)))]
)
def test_explicit_padding_with_boundary(tmp_path, padding, pads):
    x = RNG.standard_normal((6, 7))
    np.save(tmp_path / "x.npy", x)
    kernel = RNG.standard_normal((3, 2))
    np.save(tmp_path / "k.npy", kernel)
    result = run(
        "convolve",
        tmp_path / "x.npy",
        "-k",
        tmp_path / "k.npy",
        "--padding",
        padding,
        "--boundary",
        "symmetric",
        "--dtype",
        "float64",
        "-o",
        tmp_path / "y.npy",
    )
    assert result.exit_code == 0, result.output
    expected = signal.convolve2d(np.pad(x, pads, mode="symmetric"), kernel, mode="valid")
    assert np.allclose(np.load(tmp_path / "y.npy"), expected)


def test_png_to_npy_gives_channels_first_floats(photo, tmp_path):
    assert run("convolve", photo, "-k", "identity", "-o", tmp_path / "id.npy").exit_code == 0
    out = np.load(tmp_path / "id.npy")
    assert out.shape == (3, 20, 24) and out.dtype == np.float32
    assert np.allclose(out, np.moveaxis(np.asarray(Image.open(photo)), -1, 0) / 255, atol=1e-6)


def test_alpha_passes_through_and_sixteen_bit_stays(tmp_path):
    rgba = RNG.integers(0, 256, size=(10, 12, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert run("convolve", tmp_path / "a.png", "-k", "box", "-o", tmp_path / "b.png").exit_code == 0
    out = np.asarray(Image.open(tmp_path / "b.png"))
    assert out.shape == (10, 12, 4) and np.array_equal(out[..., 3], rgba[..., 3])
    gray16 = RNG.integers(0, 65536, size=(8, 9), dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g.png")
    assert run("convolve", tmp_path / "g.png", "-k", "identity", "-o", tmp_path / "h.png").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "h.png")), gray16)


def test_sixteen_bit_colour_stays_sixteen_bit_end_to_end(tmp_path):
    import imagecodecs  # makes the 16-bit inputs and reads the outputs: Pillow cannot hold them

    from convcli import convolve, load_kernel

    rgba = RNG.integers(0, 65536, size=(10, 12, 4), dtype=np.uint16)
    (tmp_path / "in.png").write_bytes(imagecodecs.png_encode(rgba))
    (tmp_path / "in.tif").write_bytes(imagecodecs.tiff_encode(rgba[..., :3]))
    assert run("convolve", tmp_path / "in.tif", "-k", "identity", "-o", tmp_path / "id.tif").exit_code == 0
    assert np.array_equal(imagecodecs.tiff_decode((tmp_path / "id.tif").read_bytes()), rgba[..., :3])
    colour = np.moveaxis(rgba[..., :3], -1, 0) / 65535
    sharpened = convolve(colour, load_kernel("sharpen"), boundary="reflect")  # the CLI default for images
    result = run("convolve", tmp_path / "in.png", "-k", "sharpen", "-o", tmp_path / "sharp.png")
    assert result.exit_code == 0 and "values clipped" in result.stderr
    got = imagecodecs.png_decode((tmp_path / "sharp.png").read_bytes())
    assert got.dtype == np.uint16 and np.array_equal(got[..., 3], rgba[..., 3])  # alpha unfiltered
    assert np.abs(np.moveaxis(got[..., :3], -1, 0) - np.rint(np.clip(sharpened, 0, 1) * 65535)).max() <= 1
    again = run("convolve", tmp_path / "in.png", "-k", "sharpen", "-o", tmp_path / "sharp.png", "--range",
                "normalize")
    assert again.exit_code == 1 and "use --force" in again.output
    again = run("convolve", tmp_path / "in.png", "-k", "sharpen", "-o", tmp_path / "sharp.png", "--range",
                "normalize", "--force")
    assert again.exit_code == 0 and "clipped" not in again.stderr
    normalized = (sharpened - sharpened.min()) / np.ptp(sharpened)
    got = imagecodecs.png_decode((tmp_path / "sharp.png").read_bytes())
    assert np.abs(np.moveaxis(got[..., :3], -1, 0) - np.rint(normalized * 65535)).max() <= 1
    assert run("convolve", tmp_path / "in.png", "-k", "identity", "-o", tmp_path / "id.npy").exit_code == 0
    assert np.array_equal(np.rint(np.load(tmp_path / "id.npy") * 65535), np.moveaxis(rgba[..., :3], -1, 0))
    result = run("convolve", tmp_path / "in.png", "-k", "identity", "-o", tmp_path / "id.jpg")
    assert result.exit_code == 0 and "the 16-bit input was written with 8" in result.stderr
    assert Image.open(tmp_path / "id.jpg").mode == "RGB"


def test_audio_keeps_rate_subtype_and_lowpass_attenuates(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    tone = 0.4 * np.sin(2 * np.pi * 200 * t) + 0.4 * np.sin(2 * np.pi * 6000 * t)
    soundfile.write(tmp_path / "a.wav", tone, rate, subtype="PCM_24")
    result = run(
        "convolve", tmp_path / "a.wav", "-k", "lowpass:cutoff=1000,taps=201", "-o", tmp_path / "b.wav"
    )
    assert result.exit_code == 0, result.output
    info = soundfile.info(tmp_path / "b.wav")
    assert (info.samplerate, info.subtype) == (rate, "PCM_24")
    out, _ = soundfile.read(tmp_path / "b.wav")
    spectrum = np.abs(np.fft.rfft(out[1000:-1000]))
    freqs = np.fft.rfftfreq(out[1000:-1000].size, 1 / rate)
    assert spectrum[np.argmin(abs(freqs - 6000))] < 0.01 * spectrum[np.argmin(abs(freqs - 200))]


def test_impulse_response_channel_rules_and_resample_warning(tmp_path):
    x = RNG.uniform(-0.3, 0.3, size=(400,))
    soundfile.write(tmp_path / "mono.wav", x, 8000, subtype="FLOAT")
    ir = np.zeros((50, 2))
    ir[0, 0] = 1.0
    ir[5, 1] = 0.5
    soundfile.write(tmp_path / "ir.wav", ir, 8000, subtype="FLOAT")
    result = run(
        "convolve",
        tmp_path / "mono.wav",
        "-k",
        tmp_path / "ir.wav",
        "--mode",
        "full",
        "-o",
        tmp_path / "out.wav",
    )
    assert result.exit_code == 0, result.output
    out, _ = soundfile.read(tmp_path / "out.wav")
    assert out.shape == (449, 2)
    assert np.allclose(out[:, 0], np.convolve(x, ir[:, 0]), atol=1e-6)
    assert np.allclose(out[:, 1], np.convolve(x, ir[:, 1]), atol=1e-6)
    soundfile.write(tmp_path / "ir16k.wav", ir, 16000, subtype="FLOAT")
    result = run("convolve", tmp_path / "mono.wav", "-k", tmp_path / "ir16k.wav", "-o", tmp_path / "r.wav")
    assert result.exit_code == 0 and "resampled the impulse response to 8000 Hz" in result.output
    soundfile.write(tmp_path / "three.wav", RNG.uniform(-0.1, 0.1, (30, 3)), 8000, subtype="FLOAT")
    result = run("convolve", tmp_path / "ir16k.wav", "-k", tmp_path / "three.wav", "-o", tmp_path / "z.wav")
    assert result.exit_code == 2 and "has 3 channels but the input has 2" in result.output
    assert not (tmp_path / "z.wav").exists()


@pytest.mark.parametrize("extra", [[], ["--correlate"], ["--mode", "full"]])
def test_block_wise_audio_equals_the_in_memory_result(tmp_path, extra):
    x = RNG.uniform(-0.2, 0.2, size=(3001, 2))
    soundfile.write(tmp_path / "long.wav", x, 8000, subtype="FLOAT")
    soundfile.write(tmp_path / "ir.wav", RNG.standard_normal((257, 2)) * 0.05, 8000, subtype="FLOAT")
    for name, block in (("blocks.wav", ["--block-size", "500"]), ("whole.wav", [])):
        result = run(
            "convolve",
            tmp_path / "long.wav",
            "-k",
            tmp_path / "ir.wav",
            *extra,
            *block,
            "--json",
            "-o",
            tmp_path / name,
        )
        assert result.exit_code == 0, result.output
    blocks, _ = soundfile.read(tmp_path / "blocks.wav")
    whole, _ = soundfile.read(tmp_path / "whole.wav")
    assert blocks.shape == whole.shape
    assert np.allclose(blocks, whole, atol=1e-6)


def test_chained_kernels_apply_in_order(tmp_path):
    np.save(tmp_path / "x.npy", RNG.standard_normal(50))
    result = run(
        "convolve",
        tmp_path / "x.npy",
        "-k",
        "1 1",
        "-k",
        "1 -1",
        "--mode",
        "full",
        "--dtype",
        "float64",
        "-o",
        tmp_path / "y.npy",
    )
    assert result.exit_code == 0, result.output
    expected = np.convolve(np.convolve(np.load(tmp_path / "x.npy"), [1, 1]), [1, -1])
    assert np.allclose(np.load(tmp_path / "y.npy"), expected)


def test_batch_with_workers_one_failure_others_written_and_json(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(RNG.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"p{index}.png")
    (folder / "broken.png").write_bytes(b"garbage")
    (tmp_path / "out").mkdir()
    result = run("convolve", folder, "-k", "box", "-o", tmp_path / "out", "-j", "2", "--json")
    assert result.exit_code == 1
    assert "broken.png: not a readable image" in result.output
    document = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert document["ok"] == 4 and document["failed"] == 1 and len(document["files"]) == 5
    record = next(r for r in document["files"] if r["error"] is None)
    assert {"input", "output", "input_shape", "output_shape", "method", "clipped", "seconds"} <= set(record)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}.png" for i in range(4)]


def test_glob_inputs_and_existing_output_needs_force(tmp_path):
    for index in range(2):
        np.save(tmp_path / f"s{index}.npy", RNG.standard_normal(20))
    (tmp_path / "o").mkdir()
    assert (
        run("convolve", str(tmp_path / "s*.npy"), "-k", "moving-average:3", "-o", tmp_path / "o").exit_code
        == 0
    )
    again = run("convolve", str(tmp_path / "s*.npy"), "-k", "moving-average:3", "-o", tmp_path / "o")
    assert again.exit_code == 1 and "output exists" in again.output
    forced = run(
        "convolve", str(tmp_path / "s*.npy"), "-k", "moving-average:3", "-o", tmp_path / "o", "--force"
    )
    assert forced.exit_code == 0


def test_stdin_to_stdout(tmp_path):
    buffer = tmp_path / "x.npy"
    np.save(buffer, np.array([0, 1, 0], dtype=np.float32))
    result = run("convolve", "-", "-k", "1 2 1", "-o", "-", "-q", input=buffer.read_bytes())
    assert result.exit_code == 0
    (tmp_path / "y.npy").write_bytes(result.stdout_bytes)
    assert np.array_equal(np.load(tmp_path / "y.npy"), [1, 2, 1])


def test_explain_names_kernel_and_method(photo, tmp_path):
    result = run("convolve", photo, "-k", "gaussian:sigma=1", "--explain", "-o", tmp_path / "g.png")
    assert result.exit_code == 0
    assert "kernel 1: gaussian:sigma=1" in result.output and "method: " in result.output


def test_help_states_semantics_boundary_table_and_example():
    text = run("convolve", "--help").output
    for needle in (
        "true convolution",
        "cross-correlation",
        "BORDER_REFLECT_101",
        "symmetric",
        "Worked example",
    ):
        assert needle in text


def test_kernels_list_and_show():
    listed = json.loads(run("kernels", "--json").output)
    names = {row["name"] for row in listed["kernels"]}
    assert {"sobel-x", "gaussian", "lowpass", "edge"} <= names
    shown = run("kernels", "show", "sobel-x")
    assert shown.exit_code == 0 and "-2  0  2" in shown.output
    assert run("kernels", "show", "lowpass:cutoff=30000", "--rate", "48000").exit_code == 2


def bad_inputs(tmp_path: Path, photo: Path):
    """(arguments, exit status, message) of every bad-input case of the issue."""
    import imagecodecs

    def f(name):
        return str(tmp_path / name)

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    png16 = imagecodecs.png_encode(RNG.integers(0, 65536, size=(16, 16, 3), dtype=np.uint16))
    (tmp_path / "corrupt16.png").write_bytes(png16[:-40])  # IDAT cut short
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnonsense")
    np.save(tmp_path / "signal.npy", RNG.standard_normal(30))
    np.save(tmp_path / "tiny.npy", RNG.standard_normal(3))
    np.save(tmp_path / "nan.npy", np.array([1.0, np.inf]))
    np.save(tmp_path / "cube.npy", np.ones((1, 1, 2, 2, 2)))
    np.save(tmp_path / "pickled.npy", np.array([{}], dtype=object), allow_pickle=True)
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.1, 0.1, 800), 8000)
    return [
        ([f("missing.png"), "-k", "box"], 1, "no such file"),
        ([f("empty.png"), "-k", "box"], 1, "empty file"),
        ([f("corrupt.png"), "-k", "box"], 1, "not a readable image"),
        ([f("corrupt16.png"), "-k", "box"], 1, "not a readable image (PNG data"),
        ([f("corrupt.wav"), "-k", "moving-average:3"], 1, "not a readable audio file"),
        ([photo, "-k", "sharpn"], 2, "did you mean 'sharpen'"),
        ([photo, "-k", "gaussian:sigma=0"], 2, "sigma=0 must be > 0"),
        ([photo, "-k", "box:4"], 2, "size=4 must be an odd"),
        ([f("a.wav"), "-k", "lowpass:cutoff=5000"], 2, "Nyquist"),
        ([photo, "-k", "1 2 1; 2 4"], 2, "ragged matrix"),
        ([f("signal.npy"), "-k", f("nan.npy")], 2, "NaN or inf"),
        ([f("signal.npy"), "-k", f("cube.npy")], 2, "5 dimensions"),
        ([f("signal.npy"), "-k", "sobel-x"], 2, "is 2-D"),
        ([f("tiny.npy"), "-k", "moving-average:5", "--mode", "valid"], 2, "does not fit"),
        ([photo, "-k", "box", "--stride", "0"], 2, "--stride must be >= 1"),
        ([photo, "-k", "box", "--dilation", "0"], 2, "--dilation must be >= 1"),
        ([photo, "-k", "box", "--boundary", "mirror"], 2, "ambiguous"),
        ([f("pickled.npy"), "-k", "1 1"], 1, "pickle"),
    ]


def test_every_bad_input_gives_one_line_nonzero_exit_and_no_output(tmp_path, photo):
    results = tmp_path / "result"
    results.mkdir()
    for args, status, message in bad_inputs(tmp_path, photo):
        out = results / ("out" + Path(str(args[0])).suffix)
        result = run("convolve", *args, "-o", out)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == status, (args, result.output)
        assert len(lines) == 1 and message in lines[0], (args, result.output)
        assert list(results.iterdir()) == [], args


def test_unknown_output_extension_is_refused(photo, tmp_path):
    result = run("convolve", photo, "-k", "box", "-o", tmp_path / "out.xyz")
    assert result.exit_code == 2 and "unknown file extension '.xyz'" in result.output
    assert not (tmp_path / "out.xyz").exists()


def test_alpha_dropped_by_a_jpeg_output_is_said_not_silent(tmp_path):
    pixels = RNG.integers(0, 256, size=(12, 10, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "rgba.png")
    result = run("convolve", tmp_path / "rgba.png", "-k", "box:3", "-o", tmp_path / "out.jpg")
    assert result.exit_code == 0, result.output
    assert "convcli: warning: JPEG has no alpha channel" in result.stderr
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"


@pytest.mark.parametrize("length,stride,message", [
    # valid length 10 − 3 = 7 = 2·3 + 1
    (10, 3, "moving-average:3: the stride does not tile the input: the last 1 sample is never read"),
    (11, 3, "moving-average:3: the stride does not tile the input: the last 2 samples are never read"),
])
def test_a_stride_that_does_not_tile_says_how_much_is_never_read(tmp_path, length, stride, message):
    np.save(tmp_path / "x.npy", np.arange(length, dtype=np.float32))
    result = run("convolve", tmp_path / "x.npy", "-k", "moving-average:3", "--mode", "valid",
                 "--stride", stride, "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    assert message in result.stderr
    expected = np.convolve(np.arange(length), np.ones(3) / 3, mode="valid")[::stride]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-6)


def test_a_stride_that_tiles_says_nothing(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(9, dtype=np.float32))  # 9 − 3 = 6 = 2·3
    result = run("convolve", tmp_path / "x.npy", "-k", "moving-average:3", "--mode", "valid", "--stride", 3,
                 "-o", tmp_path / "y.npy")
    assert result.exit_code == 0 and "never read" not in result.stderr


def test_an_output_folder_named_with_a_trailing_slash_is_created(photo, tmp_path):
    result = run("convolve", photo, "-k", "box:3", "-o", f"{tmp_path / 'new' / 'deeper'}/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "deeper" / "photo.png").is_file()
    missing = run("convolve", photo, photo, "-k", "box:3", "-o", tmp_path / "absent")
    assert missing.exit_code == 2 and "end it with / to create it" in missing.output
    assert not (tmp_path / "absent").exists()
