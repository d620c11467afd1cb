"""Issue #11: what a user sees is what was computed (audio stride rate, image borders, channel-mixing
kernel files, learned feature maps, the small wrong outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from PIL import Image

from convcli.cli import cli

RNG = np.random.default_rng(11)


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


# ---------------------------------------------------------------- audio stride
@pytest.mark.parametrize("stride", [2, 4])
def test_audio_stride_divides_the_sample_rate(tmp_path, stride):
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.2, 0.2, 800), 8000, subtype="FLOAT")
    result = run("convolve", tmp_path / "a.wav", "-k", "moving-average:3", "--stride", stride,
                 "-o", tmp_path / "b.wav", "--json")
    assert result.exit_code == 0, result.output
    info = soundfile.info(tmp_path / "b.wav")
    assert info.samplerate == 8000 // stride and info.frames == 800 // stride
    assert info.duration == pytest.approx(0.1)
    assert json.loads(result.stdout)["files"][0]["sample_rate"] == 8000 // stride


def test_audio_stride_that_leaves_a_fractional_rate_is_refused(tmp_path):
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.2, 0.2, 300), 22050, subtype="FLOAT")
    result = run("convolve", tmp_path / "a.wav", "-k", "moving-average:3", "--stride", 4,
                 "-o", tmp_path / "b.wav")
    assert result.exit_code == 2 and "5512.5 Hz" in result.output
    assert not (tmp_path / "b.wav").exists()
    result = run("convolve", tmp_path / "a.wav", "-k", "moving-average:3", "--stride", 4,
                 "-o", tmp_path / "b.npy")
    assert result.exit_code == 0 and np.load(tmp_path / "b.npy").shape == (1, 75)


# ---------------------------------------------------------------- image borders
def test_image_default_boundary_invents_no_frame(tmp_path):
    flat = np.full((24, 30, 3), 180, np.uint8)
    Image.fromarray(flat).save(tmp_path / "flat.png")
    for spec in ("sharpen", "gaussian:sigma=3", "box:5"):
        result = run("convolve", tmp_path / "flat.png", "-k", spec, "-o", tmp_path / f"{spec[:4]}.png")
        assert result.exit_code == 0, result.output
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{spec[:4]}.png")), flat), spec


def test_default_boundary_is_named_by_explain_and_json(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (12, 14), dtype=np.uint8)).save(tmp_path / "g.png")
    np.save(tmp_path / "x.npy", RNG.standard_normal(50))
    cases = [("g.png", [], "reflect"), ("x.npy", [], "constant"), ("g.png", ["--boundary", "edge"], "edge"),
             ("g.png", ["--cval", "0.5"], "constant")]
    for index, (name, options, boundary) in enumerate(cases):
        out = tmp_path / f"out{index}{Path(name).suffix}"
        result = run("convolve", tmp_path / name, "-k", "box:3" if name.endswith("png") else "1 2 1",
                     *options, "-o", out, "--json", "--explain")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["files"][0]["boundary"] == boundary
        assert f"boundary {boundary}" in result.stderr


def test_audio_keeps_silence_before_and_after(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.full(50, 0.5), 8000, subtype="FLOAT")
    assert run("convolve", tmp_path / "a.wav", "-k", "moving-average:5", "-o", tmp_path / "b.wav").exit_code == 0
    out, _ = soundfile.read(tmp_path / "b.wav")
    assert out[0] == pytest.approx(0.3) and out[25] == pytest.approx(0.5)
