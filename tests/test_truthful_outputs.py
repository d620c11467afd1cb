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
