"""Audio as audio people expect it (issue 21): causal impulse responses, centred FIR designs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import run
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.signal import fftconvolve, firwin

import convcli
from convcli.kernels import fir

RNG = np.random.default_rng(21)


def _write(path: Path, frames: np.ndarray, rate: int = 8000) -> Path:
    soundfile.write(path, frames, rate, subtype="FLOAT")  # float: no quantization in the comparison
    return path


def _convolved(*args) -> tuple[np.ndarray, dict]:
    """Run ``convcli convolve ARGS --json``; the output ((frames, channels) for audio) and its record."""
    result = run("convolve", *args, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["files"][0]
    if record["output"].endswith(".npy"):
        return np.load(record["output"]), record
    return soundfile.read(record["output"], always_2d=True)[0], record


@given(
    n=st.integers(1, 300),
    k=st.integers(1, 90),
    channels=st.sampled_from([(1, 1), (2, 1), (2, 2), (1, 2)]),
    mode=st.sampled_from([None, "same", "full"]),
    block=st.one_of(st.none(), st.integers(1, 120)),
)
def test_an_impulse_response_is_causal_and_keeps_its_tail(n, k, channels, mode, block):
    c_in, c_ir = channels
    x = RNG.uniform(-0.3, 0.3, (n, c_in))
    h = RNG.standard_normal((k, c_ir)) * 0.1
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        args = [_write(folder / "x.wav", x), "-k", _write(folder / "room.wav", h), "-o", folder / "y.wav"]
        args += [] if mode is None else ["--mode", mode]
        args += [] if block is None else ["--block-size", block]
        got, record = _convolved(*args)
    kept = n if mode == "same" else n + k - 1
    pairs = [(c, 0 if c_ir == 1 else c) for c in range(c_in)] if c_in > 1 or c_ir == 1 else [(0, i) for i in
                                                                                           range(c_ir)]
    want = np.stack([fftconvolve(x[:, c], h[:, i])[:kept] for c, i in pairs], axis=1)
    assert got.shape == want.shape
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert record["alignment"] == ["causal"] and "n-1" in record["alignment_reason"][0]
    assert record["output_shape"] == [len(pairs), kept]


@pytest.mark.parametrize("block", [[], ["--block-size", "64"]])
def test_a_correlated_impulse_response_mirrors_the_causal_rule(tmp_path, block):
    x, h = RNG.uniform(-0.3, 0.3, (500, 1)), RNG.standard_normal((40, 1)) * 0.1
    got, _ = _convolved(_write(tmp_path / "x.wav", x), "-k", _write(tmp_path / "h.wav", h), "--correlate",
                        "--mode", "same", "-o", tmp_path / "y.wav", *block)
    # output n hears inputs n, n+1, ...: correlation is convolution with the reversed response
    want = fftconvolve(np.r_[x[:, 0], np.zeros(39)], h[::-1, 0], mode="valid")
    assert np.allclose(got[:, 0], want, atol=1e-6)


def test_fir_designs_stay_centred_and_say_so(tmp_path):
    x = RNG.uniform(-0.3, 0.3, (800, 1))
    got, record = _convolved(_write(tmp_path / "x.wav", x), "-k", "lowpass:cutoff=1000,taps=31",
                             "-o", tmp_path / "y.wav")
    taps = firwin(31, 1000, fs=8000)
    assert np.allclose(got[:, 0], np.convolve(x[:, 0], taps, mode="same"), atol=1e-6)
    assert record["alignment"] == ["centred"] and "zero phase" in record["alignment_reason"][0]


def test_explain_names_each_kernels_alignment(tmp_path):
    _write(tmp_path / "x.wav", RNG.uniform(-0.3, 0.3, (300, 1)))
    _write(tmp_path / "room.wav", RNG.standard_normal((20, 1)) * 0.1)
    result = run("convolve", tmp_path / "x.wav", "-k", "lowpass:cutoff=1000", "-k", tmp_path / "room.wav",
                 "-o", tmp_path / "y.wav", "--explain")
    assert result.exit_code == 0, result.output
    assert "alignment: centred: a designed kernel is centred" in result.stderr
    assert "alignment: causal: an impulse response (a recording) is causal" in result.stderr
    assert soundfile.info(tmp_path / "y.wav").frames == 319  # the chain: same, then the IR's tail


def test_the_alignment_belongs_to_the_kernel_source_not_the_input(tmp_path):
    """An impulse response is causal on an array too; the Python API keeps its documented 'same'."""
    x, h = RNG.uniform(-0.3, 0.3, 200), RNG.standard_normal((25, 1)) * 0.1
    np.save(tmp_path / "x.npy", x)
    _write(tmp_path / "room.wav", h)
    result = run("convolve", tmp_path / "x.npy", "-k", tmp_path / "room.wav", "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    assert np.allclose(np.load(tmp_path / "y.npy"), fftconvolve(x, h[:, 0]), atol=1e-6)
    ir = convcli.load_kernel(str(tmp_path / "room.wav"))
    assert np.allclose(convcli.convolve(x, ir[0]), np.convolve(x, h[:, 0], mode="same"), atol=1e-6)


def test_valid_and_explicit_padding_are_named_as_such(tmp_path):
    _write(tmp_path / "x.wav", RNG.uniform(-0.3, 0.3, (300, 1)))
    _write(tmp_path / "room.wav", RNG.standard_normal((20, 1)) * 0.1)
    for extra, name, frames in ((["--mode", "valid"], "valid", 281), (["--padding", "19,0"], "padding", 300)):
        _, record = _convolved(tmp_path / "x.wav", "-k", tmp_path / "room.wav", *extra, "-o",
                               tmp_path / f"{name}.wav")
        assert record["alignment"] == [name] and record["output_shape"] == [1, frames]


# ---------------------------------------------------------------- FIR design without scipy.signal
@given(n=st.integers(1, 200), name=st.sampled_from([*fir.WINDOWS, "hamm", "rect", "tri", "blk", "tukey"]))
def test_windows_equal_scipy_get_window(n, name):
    from scipy.signal import get_window

    assert np.allclose(fir.window(name, n), get_window(name, n, fftbins=False), rtol=1e-13, atol=1e-15)


@given(
    taps=st.integers(1, 301),
    edges=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4, unique=True),
    pass_zero=st.booleans(),
    name=st.sampled_from(fir.WINDOWS),
    fs=st.sampled_from([2.0, 8000.0, 44100.0]),
)
@example(taps=2, edges=[0.5], pass_zero=True, name="barthann", fs=2.0)  # zero gain: scipy's NaNs, our refusal
def test_firwin_equals_scipy_over_cutoffs_taps_and_windows(taps, edges, pass_zero, name, fs):
    edges = sorted(edges)
    if min(np.diff(edges), default=1) < 1e-3:
        return  # scipy refuses edges that are not strictly increasing; ours are checked by the caller
    hz = [e * fs / 2 for e in edges]
    if (len(edges) % 2 == 0) == pass_zero and taps % 2 == 0:
        with pytest.raises(ValueError):
            fir.firwin(taps, hz, window_name=name, pass_zero=pass_zero, fs=fs)
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        want = firwin(taps, hz, window=name, pass_zero=pass_zero, fs=fs)
    if not np.isfinite(want).all():  # a window zero wherever the taps are: no gain to scale by
        with pytest.raises(ValueError, match="no gain"):
            fir.firwin(taps, hz, window_name=name, pass_zero=pass_zero, fs=fs)
        return
    got = fir.firwin(taps, hz, window_name=name, pass_zero=pass_zero, fs=fs)
    assert np.allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_an_unknown_or_parametric_window_is_a_usage_error(tmp_path):
    _write(tmp_path / "x.wav", RNG.uniform(-0.3, 0.3, (300, 1)))
    for name in ("hamingg", "kaiser"):
        result = run("convolve", tmp_path / "x.wav", "-k", f"lowpass:window={name}", "-o", tmp_path / "y.wav")
        assert result.exit_code == 2 and f"unknown window {name!r}" in result.output


def test_a_cold_lowpass_imports_no_scipy_signal(tmp_path):
    import subprocess
    import sys

    _write(tmp_path / "x.wav", RNG.uniform(-0.3, 0.3, (3000, 1)))
    code = ("import sys; from convcli.cli import cli\n"
            "try:\n    cli(['convolve', 'x.wav', '-k', 'lowpass:cutoff=1000', '-o', 'y.wav'])\n"
            "except SystemExit:\n    pass\n"
            "print('scipy.signal' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout + done.stderr
    assert (tmp_path / "y.wav").is_file()


# ---------------------------------------------------------------- small truths
@pytest.mark.parametrize(("rate", "stride", "reported"), [(16000, 2, 8000), (22050, 4, 5512.5)])
def test_a_strided_array_output_reports_rate_over_stride(tmp_path, rate, stride, reported):
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.2, 0.2, 400), rate, subtype="FLOAT")
    _, record = _convolved(tmp_path / "a.wav", "-k", "moving-average:3", "--stride", stride, "-o",
                           tmp_path / "b.npy")
    assert record["sample_rate"] == reported


def test_fir_designs_on_arrays_take_the_sample_rate_option(tmp_path):
    x = RNG.standard_normal(500)
    np.save(tmp_path / "x.npy", x)
    result = run("convolve", tmp_path / "x.npy", "-k", "lowpass:cutoff=1000", "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and "--sample-rate HZ" in result.output
    result = run("convolve", tmp_path / "x.npy", "-k", "lowpass:cutoff=1000,taps=21", "--sample-rate", 8000,
                 "--dtype", "float64", "-o", tmp_path / "y.npy", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["sample_rate"] == 8000
    assert np.allclose(np.load(tmp_path / "y.npy"), np.convolve(x, firwin(21, 1000, fs=8000), mode="same"))
    result = run("convolve", tmp_path / "x.npy", "-k", "moving-average:1", "--sample-rate", 8000,
                 "--stride", 2, "-o", tmp_path / "y.wav")
    assert result.exit_code == 0, result.output
    assert soundfile.info(tmp_path / "y.wav").samplerate == 4000


def test_a_chains_stride_applies_once_after_its_last_kernel(tmp_path):
    x = RNG.uniform(-0.2, 0.2, 401)
    soundfile.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    got, record = _convolved(tmp_path / "a.wav", "-k", "1 2 1 /4", "-k", "1 0 -1", "--stride", 2, "-o",
                             tmp_path / "b.wav")
    want = np.convolve(np.convolve(x, [0.25, 0.5, 0.25], mode="same"), [1, 0, -1], mode="same")[::2]
    assert np.allclose(got[:, 0], want, atol=1e-6)
    assert record["sample_rate"] == 8000 and soundfile.info(tmp_path / "b.wav").samplerate == 8000
    assert "--stride applies once, after the" in run("convolve", "--help").output


# ---------------------------------------------------------------- level controls
def _pcm16(y: np.ndarray) -> np.ndarray:
    """What a 16-bit wav holds for floats y (libsndfile's rule, tests/test_io.py)."""
    return np.clip(np.floor(y * 32768.0), -32768, 32767)


@given(
    n=st.integers(1, 200),
    k=st.integers(1, 40),
    channels=st.sampled_from([(1, 1), (2, 1), (2, 2)]),
    ir_norm=st.sampled_from([None, "energy", "peak"]),
    mix=st.one_of(st.none(), st.floats(0, 1)),
    level=st.one_of(st.none(), st.tuples(st.just("--gain"), st.floats(-20, 6)),
                    st.tuples(st.just("--normalize"), st.floats(-12, 0))),
    block=st.one_of(st.none(), st.integers(1, 64)),
)
def test_level_controls_equal_a_numpy_reference_within_one_lsb(n, k, channels, ir_norm, mix, level, block):
    c_in, c_ir = channels
    x = np.round(RNG.uniform(-0.5, 0.5, (n, c_in)) * 32768) / 32768  # what a 16-bit input holds
    h = RNG.standard_normal((k, c_ir)) * 0.2
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        soundfile.write(folder / "x.wav", x, 8000, subtype="PCM_16")
        args = [folder / "x.wav", "-k", _write(folder / "room.wav", h), "-o", folder / "y.wav"]
        args += [] if ir_norm is None else ["--ir-norm", ir_norm]
        args += [] if mix is None else ["--mix", mix]
        args += [] if level is None else list(level)
        args += [] if block is None else ["--block-size", block]
        result = run("convolve", *args, "--json")
        assert result.exit_code == 0, result.output
        got, _ = soundfile.read(folder / "y.wav", dtype="int16", always_2d=True)
    h = soundfile_float32(h)
    if ir_norm == "energy":
        h = h / np.sqrt(np.max(np.sum(h * h, axis=0)))
    elif ir_norm == "peak":
        h = h / np.abs(h).max()
    if mix is not None:
        h = mix * h
        h[0] += 1 - mix
    y = np.stack([fftconvolve(x[:, c], h[:, 0 if c_ir == 1 else c]) for c in range(c_in)], axis=1)
    if level is not None and level[0] == "--gain":
        y = y * 10 ** (level[1] / 20)
    elif level is not None and np.abs(y).max() > 0:
        y = y * 10 ** (level[1] / 20) / np.abs(y).max()
    assert got.shape == y.shape
    assert np.abs(got.astype(np.float64) - _pcm16(y)).max() <= 1


def soundfile_float32(h: np.ndarray) -> np.ndarray:
    """The impulse response as the command reads it from a float wav."""
    return h.astype(np.float32).astype(np.float64)


def test_normalize_reaches_the_level_and_says_two_passes_when_streaming(tmp_path):
    x = RNG.uniform(-0.1, 0.1, (3000, 2))
    soundfile.write(tmp_path / "x.wav", x, 8000, subtype="FLOAT")
    _write(tmp_path / "room.wav", RNG.standard_normal((50, 1)) * 0.1)
    got, record = _convolved(tmp_path / "x.wav", "-k", tmp_path / "room.wav", "--normalize", -1, "-o",
                             tmp_path / "y.wav", "--block-size", 500)
    assert np.abs(got).max() == pytest.approx(10 ** (-1 / 20), rel=1e-6)
    assert "two passes" in record["reason"][0]
    whole, _ = _convolved(tmp_path / "x.wav", "-k", tmp_path / "room.wav", "--normalize", -1, "-o",
                          tmp_path / "z.wav")
    assert np.allclose(got, whole, atol=1e-6)


@pytest.mark.parametrize(("args", "message"), [
    (["--gain", "3", "--normalize", "-1"], "give one"),
    (["--normalize", "-1", "--range", "normalize"], "give one"),
    (["--mix", "1.5"], "between 0 (dry) and 1 (wet)"),
    (["--mix", "0.5", "--correlate"], "leave out --correlate"),
    (["--mix", "0.5", "-k", "box:3"], "give one audio file as the only -k"),
])
def test_level_options_that_cannot_hold_are_usage_errors(tmp_path, args, message):
    _write(tmp_path / "x.wav", RNG.uniform(-0.1, 0.1, (300, 1)))
    _write(tmp_path / "room.wav", RNG.standard_normal((20, 1)) * 0.1)
    result = run("convolve", tmp_path / "x.wav", "-k", tmp_path / "room.wav", *args, "-o", tmp_path / "y.wav")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "y.wav").exists()


def test_gain_clips_and_counts_as_the_range_policy_says(tmp_path):
    soundfile.write(tmp_path / "x.wav", np.full(100, 0.5), 8000, subtype="PCM_16")
    result = run("convolve", tmp_path / "x.wav", "-k", "1", "--gain", 12, "-o", tmp_path / "y.wav", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["clipped"] == 100
    assert (soundfile.read(tmp_path / "y.wav", dtype="int16")[0] == 32767).all()


# ---------------------------------------------------------------- every audio path streams
@given(
    n=st.integers(1, 400),
    chain=st.lists(st.sampled_from(["ir", "lowpass:cutoff=1500,taps=21", "1 2 -1", "moving-average:4"]),
                   min_size=1, max_size=3),
    stride=st.sampled_from([1, 2, 4]),  # strides that divide 8000 Hz
    dilation=st.integers(1, 3),
    mode=st.sampled_from([None, "same", "full"]),
    correlate=st.booleans(),
    block=st.integers(1, 70),
)
def test_block_wise_chains_equal_the_in_memory_result(n, chain, stride, dilation, mode, correlate, block):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        soundfile.write(folder / "x.wav", RNG.uniform(-0.3, 0.3, (n, 2)), 8000, subtype="FLOAT")
        _write(folder / "ir.wav", RNG.standard_normal((int(RNG.integers(1, 30)), 1)) * 0.2)
        args = [folder / "x.wav"]
        for spec in chain:
            args += ["-k", folder / "ir.wav" if spec == "ir" else spec]
        args += ["--stride", stride, "--dilation", dilation]
        args += ([] if mode is None else ["--mode", mode]) + (["--correlate"] if correlate else [])
        whole = run("convolve", *args, "-o", folder / "whole.wav", "--json")
        blocks = run("convolve", *args, "-o", folder / "blocks.wav", "--json", "--block-size", block)
        assert whole.exit_code == blocks.exit_code, whole.output + blocks.output
        if whole.exit_code:
            return  # e.g. a chain whose length runs out: refused alike
        streamed = json.loads(blocks.stdout)["files"][0]
        assert streamed["reason"][0].startswith("block-wise overlap-add")
        assert streamed["output_shape"] == json.loads(whole.stdout)["files"][0]["output_shape"]
        a, rate_a = soundfile.read(folder / "whole.wav", always_2d=True)
        b, rate_b = soundfile.read(folder / "blocks.wav", always_2d=True)
    assert rate_a == rate_b and a.shape == b.shape
    assert np.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("extra", [[], ["--normalize", "-3"], ["--mode", "same", "--stride", "2"]])
def test_pipes_stream_and_equal_the_file_path(tmp_path, monkeypatch, extra):
    import io

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    soundfile.write(tmp_path / "x.wav", RNG.uniform(-0.3, 0.3, (1500, 2)), 8000, subtype="PCM_16")
    _write(tmp_path / "room.wav", RNG.standard_normal((60, 2)) * 0.1)
    args = ["-k", tmp_path / "room.wav", "-k", "lowpass:cutoff=2000,taps=31", *extra, "--block-size", 128]
    by_file = run("convolve", tmp_path / "x.wav", *args, "-o", tmp_path / "y.wav", "--json")
    assert by_file.exit_code == 0, by_file.output
    piped = run("convolve", "-", *args, "-o", "-", "--json", input=(tmp_path / "x.wav").read_bytes())
    assert piped.exit_code == 0, piped.stderr
    assert "block-wise" in json.loads(by_file.stdout)["files"][0]["reason"][0]
    assert '"block-wise overlap-add' in piped.stderr  # the --json document: stdout holds the audio
    assert piped.stdout_bytes == (tmp_path / "y.wav").read_bytes()
    got, _ = soundfile.read(io.BytesIO(piped.stdout_bytes), always_2d=True)
    assert got.shape[0] == (1559 if "--stride" not in extra else 750)
    assert not list((tmp_path / "spool").iterdir())  # the copy of stdin is gone
