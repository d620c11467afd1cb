"""`convcli pool` run for real on files in a temporary folder."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from commands import run
from PIL import Image


@pytest.fixture
def photo(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.fixture
def tone(tmp_path):
    t = np.arange(8000) / 8000
    signal = (0.5 * np.sin(2 * np.pi * 50 * t) * np.linspace(0, 1, t.size)).astype(np.float32)
    path = tmp_path / "tone.wav"
    soundfile.write(path, np.stack([signal, -signal], axis=1), 8000, subtype="FLOAT")
    return path, signal


def test_2x2_max_halves_a_photo_per_channel(photo, tmp_path):
    path, pixels = photo
    result = run("pool", path, "--size", 2, "-o", tmp_path / "half.png")
    assert result.exit_code == 0, result.output
    assert "half.png  3x512x512 -> 3x256x256  max 2  " in result.output
    got = np.asarray(Image.open(tmp_path / "half.png"))
    expected = pixels.reshape(256, 2, 256, 2, 3).max(axis=(1, 3))
    np.testing.assert_array_equal(got, expected)


def test_avg_with_padding_on_a_photo_matches_the_library(photo, tmp_path):
    from convcli.engine.pooling import pool

    path, pixels = photo
    out = tmp_path / "small.npy"
    result = run("pool", path, "--op", "avg", "--size", 3, "--stride", 2, "--padding", 1,
                 "--no-count-include-pad", "-o", out)
    assert result.exit_code == 0, result.output
    colour = np.moveaxis(pixels, -1, 0) / 255.0
    expected = pool(colour, 3, stride=2, padding=1, op="avg", count_include_pad=False)
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-6)
    assert np.load(out).shape == (3, 256, 256)


def test_audio_envelope_with_abs_pools_each_channel_along_time(tone, tmp_path):
    path, signal = tone
    out = tmp_path / "envelope.wav"
    result = run("pool", path, "--op", "max", "--abs", "--size", 80, "-o", out)
    assert result.exit_code == 0, result.output
    data, rate = soundfile.read(out, always_2d=True)
    assert rate == 100 and data.shape == (100, 2)  # same duration, fewer samples
    expected = np.abs(signal).reshape(100, 80).max(axis=1)
    np.testing.assert_allclose(data[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(data[:, 1], expected, rtol=1e-6)


def test_arrays_lp_and_uncovered_warning(tmp_path):
    values = np.arange(-24.0, 25.0).reshape(7, 7)
    np.save(tmp_path / "fm.npy", values)
    result = run("pool", tmp_path / "fm.npy", "--op", "lp", "--p", 1, "--size", 2, "-o", tmp_path / "l1.npy")
    assert result.exit_code == 0, result.output
    assert "the last 1 row and 1 column are not covered" in result.output
    expected = np.abs(values[:6, :6]).reshape(3, 2, 3, 2).sum(axis=(1, 3))
    np.testing.assert_array_equal(np.load(tmp_path / "l1.npy"), expected)
    ceil = run("pool", tmp_path / "fm.npy", "--size", 2, "--ceil-mode", "-o", tmp_path / "c.npy")
    assert ceil.exit_code == 0 and "not covered" not in ceil.output
    assert np.load(tmp_path / "c.npy").shape == (4, 4)


def test_adaptive_and_global_with_json(tmp_path):
    features = np.random.default_rng(3).random((4, 9, 10))
    np.save(tmp_path / "features.npy", features)
    result = run("pool", tmp_path / "features.npy", "--global", "--op", "avg", "--json", "-o",
                 tmp_path / "means.npy")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["ok"] == 1 and document["files"][0]["output_shape"] == [4, 1, 1]
    np.testing.assert_allclose(np.load(tmp_path / "means.npy")[:, 0, 0], features.mean(axis=(1, 2)))
    result = run("pool", tmp_path / "features.npy", "--output-size", "3x5", "--op", "max", "-o",
                 tmp_path / "a.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy")[:, 0, 0], features[:, :3, :2].max(axis=(1, 2)))


def test_batch_into_a_folder_with_workers(photo, tmp_path):
    # a fresh process, as a user runs it: worker processes are forked before any Numba thread starts
    # (this test process has already run parallel kernels, and GNU OpenMP is not fork-safe)
    path, _ = photo
    second = tmp_path / "second.png"
    Image.fromarray(np.zeros((6, 8), dtype=np.uint8)).save(second)
    folder = tmp_path / "out"
    folder.mkdir()
    command = [sys.executable, "-m", "convcli", "pool", str(path), str(second), "--op", "avg", "--size", "2",
               "-o", str(folder), "-j", "2", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert np.asarray(Image.open(folder / "second.png")).shape == (3, 4)
    assert np.asarray(Image.open(folder / "photo.png")).shape == (256, 256, 3)


def test_existing_output_needs_force(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 4)))
    (tmp_path / "y.npy").write_bytes(b"keep")
    result = run("pool", tmp_path / "x.npy", "--size", 2, "-o", tmp_path / "y.npy")
    assert result.exit_code == 1 and "--force" in result.output
    assert (tmp_path / "y.npy").read_bytes() == b"keep"
    result = run("pool", tmp_path / "x.npy", "--size", 2, "-o", tmp_path / "y.npy", "--force")
    assert result.exit_code == 0 and np.load(tmp_path / "y.npy").shape == (2, 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--size", "0"], "--size must be >= 1, got 0"),
        (["--size", "2", "--stride", "0"], "stride must be >= 1, got 0"),
        (["--size", "3", "--padding", "2"], "padding 2 is more than half the window size 3"),
        (["--size", "9"], "kernel span 9"),
        (["--size", "2", "--op", "lp", "--p", "0"], "--p must be > 0, got 0.0"),
        (["--output-size", "0"], "adaptive output size must be >= 1, got 0"),
        (["--op", "max"], "--size is required"),
        (["--size", "2x"], "--size '2x': write whole numbers as K or HxW"),
        (["--global", "--op", "lp"], "adaptive pooling takes --op"),
        (["--size", "3", "--padding", "1", "--boundary", "edge"], "--boundary edge applies to avg"),
        (["--op", "avg", "--size", "3", "--boundary", "mirror"], "'mirror' is ambiguous"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_no_output(tmp_path, options, message):
    np.save(tmp_path / "x.npy", np.ones((8, 8)))
    out = tmp_path / "out.npy"
    result = run("pool", tmp_path / "x.npy", *options, "-o", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_bad_window_is_refused_before_reading_any_file(tmp_path):
    for name in ("a.npy", "b.npy"):
        np.save(tmp_path / name, np.ones((8, 8)))
    folder = tmp_path / "out"
    folder.mkdir()
    inputs = [tmp_path / "a.npy", tmp_path / "b.npy"]
    result = run("pool", *inputs, "--size", "2x2", "--stride", "1x0", "-o", folder)
    assert result.exit_code == 2 and result.output.count("error") == 1
    assert "stride must be >= 1, got 0" in result.output and not list(folder.iterdir())
    result = run("pool", tmp_path / "a.npy", "--op", "avg", "--size", 2, "--dilation", 2, "-o", folder)
    assert result.exit_code == 2 and "--dilation applies to --op max and min only" in result.output


def test_one_bad_file_among_many_exits_1_and_the_others_are_written(tmp_path):
    np.save(tmp_path / "good.npy", np.ones((4, 4)))
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    folder = tmp_path / "out"
    folder.mkdir()
    result = run("pool", tmp_path / "good.npy", tmp_path / "bad.npy", "--size", 2, "-o", folder)
    assert result.exit_code == 1
    assert "bad.npy" in result.output
    assert (folder / "good.npy").exists() and not (folder / "bad.npy").exists()
