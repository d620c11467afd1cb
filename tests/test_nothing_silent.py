"""Issue #12, section 2: nothing silently wrong.

NaN/inf inputs are reported (count, --json) and no method spreads them past the kernel's reach;
float and 32-bit TIFFs are read as what they are; model files are checked when loaded; bad option
values are one clear line; literal names are taken literally; outputs never replace inputs; error
messages name the target, never the temporary file.
"""

import json
import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import soundfile
from commands import run
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import signal
from test_budget import model_file, rewrite

from convcli import convolve, pool
from convcli.engine.convolve import plan


# ---------------------------------------------------------------- NaN propagation, per method
def reach_of(bad: np.ndarray, kernel: np.ndarray, mode: str) -> np.ndarray:
    """Independent reference: outputs whose window holds a bad sample under a nonzero tap."""
    return signal.correlate(bad.astype(float), (kernel != 0).astype(float), mode=mode) > 0.5


@settings(max_examples=30, deadline=None)
@given(
    method=st.sampled_from(["direct", "separable", "fft"]),
    shape=st.tuples(st.integers(5, 30), st.integers(5, 30)),
    taps=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    mode=st.sampled_from(["same", "valid", "full"]),
    seed=st.integers(0, 1000),
)
def test_nan_stays_within_the_kernels_reach_2d(method, shape, taps, mode, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[tuple(rng.integers(0, n) for n in shape)] = np.nan
    column, row = rng.standard_normal(2 * taps[0] + 1), rng.standard_normal(2 * taps[1] + 1)
    column[rng.integers(0, len(column))] = 0.0  # zero taps read nothing
    kernel = np.outer(column, row)
    assume(mode != "valid" or all(k <= n for k, n in zip(kernel.shape, shape, strict=True)))
    out = convolve(x, kernel, mode=mode, correlate=True, method=method)
    # every output a nonzero tap of NaN reaches is NaN, and none past the kernel's span (direct and
    # fft skip zero taps; the separable passes multiply them, and 0·NaN is NaN)
    spread = reach_of(np.isnan(x), np.ones_like(kernel), mode)
    assert np.all(np.isnan(out) <= spread)
    if method != "separable":
        np.testing.assert_array_equal(np.isnan(out), reach_of(np.isnan(x), kernel, mode))
    else:
        assert np.all(reach_of(np.isnan(x), kernel, mode) <= np.isnan(out))


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_nan_and_inf_in_a_long_signal_1d(method):
    """One NaN and one +inf in 20000 samples through a 101-tap filter: 101 outputs each, whatever
    the method (the FFT one runs overlap-add blocks of 4096)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(20000)
    x[5000], x[12000] = np.nan, np.inf
    kernel = np.abs(rng.standard_normal(101)) + 0.1
    if method == "fft":
        assert plan(x.shape, kernel, method="fft").fft_block is not None
    out = convolve(x, kernel, method=method)
    assert np.isnan(out).sum() == 101 and np.isposinf(out).sum() == 101
    np.testing.assert_array_equal(np.isnan(out), reach_of(np.isnan(x), kernel, "same"))
    finite = np.isfinite(out)
    np.testing.assert_allclose(out[finite], convolve(np.nan_to_num(x, posinf=0), kernel)[finite], atol=1e-9)


def test_fft_of_a_whole_2d_input_with_inf_of_both_signs():
    x = np.ones((40, 40))
    x[10, 10], x[11, 11] = np.inf, -np.inf
    out = convolve(x, np.ones((5, 5)), method="fft")
    both = reach_of(np.isinf(x) & (x > 0), np.ones((5, 5)), "same") & reach_of(x == -np.inf, np.ones((5, 5)),
                                                                                "same")
    np.testing.assert_array_equal(np.isnan(out), both)
    assert np.all(np.isinf(out) == (reach_of(np.isinf(x), np.ones((5, 5)), "same") & ~both))


@pytest.mark.parametrize("op", ["max", "avg", "sum", "lp"])
def test_nan_in_pooling_stays_in_its_windows(op):
    x = np.random.default_rng(6).random((12, 12))
    x[5, 7] = np.nan
    out = pool(x, 3, stride=2, op=op)
    expected = np.zeros_like(out, dtype=bool)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            expected[i, j] = 2 * i <= 5 < 2 * i + 3 and 2 * j <= 7 < 2 * j + 3
    np.testing.assert_array_equal(np.isnan(out), expected)


@pytest.mark.parametrize("block", [None, "1000"])
def test_nan_in_a_float_wav_is_reported_and_contained(tmp_path, block):
    x = np.random.default_rng(7).standard_normal(48000).astype(np.float32) * 0.1
    x[20000] = np.nan
    soundfile.write(tmp_path / "nan.wav", x, 48000, subtype="FLOAT")
    args = ["convolve", tmp_path / "nan.wav", "-k", "lowpass:cutoff=3000,taps=101", "-o", tmp_path / "o.wav",
            "--json"] + (["--block-size", block] if block else [])
    result = run(*args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.output[result.output.index("{"):])
    assert document["files"][0]["non_finite"] == 1
    assert "1 input value is NaN or inf" in result.output
    assert np.isnan(soundfile.read(tmp_path / "o.wav")[0]).sum() == 101


def test_pool_reports_non_finite_inputs(tmp_path):
    x = np.zeros((8, 8))
    x[1, 1] = x[2, 2] = np.inf
    np.save(tmp_path / "x.npy", x)
    result = run("pool", tmp_path / "x.npy", "--size", 2, "-o", tmp_path / "p.npy", "--json")
    assert result.exit_code == 0 and "2 input values are NaN or inf" in result.output
    assert json.loads(result.output[result.output.index("{"):])["files"][0]["non_finite"] == 2


# ---------------------------------------------------------------- TIFF samples as they are
def test_float_tiff_is_read_and_written_as_floats(tmp_path):
    pixels = np.random.default_rng(8).random((20, 30, 3)).astype(np.float32) * 4 - 1  # outside [0, 1]
    (tmp_path / "f.tif").write_bytes(imagecodecs.tiff_encode(pixels, photometric="rgb"))
    (tmp_path / "g.tif").write_bytes(imagecodecs.tiff_encode(pixels[:, :, 0]))
    for name in ("f.tif", "g.tif"):
        assert run("convolve", tmp_path / name, "-k", "1", "-o", tmp_path / f"o{name}").exit_code == 0
        out = imagecodecs.tiff_decode((tmp_path / f"o{name}").read_bytes())
        source = imagecodecs.tiff_decode((tmp_path / name).read_bytes())
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, source, rtol=1e-6)


def test_int32_tiff_beyond_16_bits_is_refused_not_clipped(tmp_path):
    (tmp_path / "big.tif").write_bytes(imagecodecs.tiff_encode(np.full((8, 8), 70000, np.int32)))
    (tmp_path / "ok.tif").write_bytes(imagecodecs.tiff_encode(np.full((8, 8), 60000, np.int32)))
    result = run("convolve", tmp_path / "big.tif", "-k", "box", "-o", tmp_path / "o.tif")
    assert result.exit_code == 1 and "70000" in result.output and "16-bit" in result.output
    assert run("convolve", tmp_path / "ok.tif", "-k", "1", "-o", tmp_path / "ok2.tif").exit_code == 0
    assert imagecodecs.tiff_decode((tmp_path / "ok2.tif").read_bytes()).max() == 60000


# ---------------------------------------------------------------- model files and predict
@pytest.mark.parametrize("change, message", [
    ("nan_weight", "non-finite"),
    ("class_names", "class names for a network"),
    ("std_zero", "std must be > 0"),
])
def test_model_files_are_checked_when_loaded(tmp_path, change, message):
    path = model_file(tmp_path / "m.npz")
    if change == "nan_weight":
        with np.load(path) as archive:
            weight = archive["conv1.weight"].copy()
        weight.flat[0] = np.nan
        rewrite(path, **{"conv1.weight": weight})
    else:
        with np.load(path) as archive:
            meta = json.loads(str(archive["__meta__"]))
        if change == "class_names":
            meta["class_names"] = ["a", "b"]
        else:
            meta["normalization"]["std"] = [0.0]
        rewrite(path, __meta__=np.array(json.dumps(meta)))
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 6, 6), np.float32))
    for args in (("predict", path, tmp_path / "x.npy", "--json"), ("evaluate", path, tmp_path / "x.npy")):
        result = run(*args)
        assert result.exit_code == 1 and message in result.output, result.output


def test_predict_json_is_valid_and_bad_batches_are_refused(tmp_path):
    path = model_file(tmp_path / "m.npz")
    np.save(tmp_path / "ok.npy", np.random.default_rng(9).random((2, 1, 6, 6)).astype(np.float32))
    result = run("predict", path, tmp_path / "ok.npy", "--json")
    assert result.exit_code == 0 and len(json.loads(result.output)["predictions"]) == 2
    np.save(tmp_path / "empty.npy", np.zeros((0, 1, 6, 6), np.float32))
    result = run("predict", path, tmp_path / "empty.npy", "--json")
    assert result.exit_code == 2 and "empty.npy: no samples" in result.output
    nan = np.zeros((2, 1, 6, 6), np.float32)
    nan[1, 0, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    result = run("predict", path, tmp_path / "nan.npy", "--json")
    assert result.exit_code == 1 and "nan.npy" in result.output and "NaN" in result.output


def test_json_never_holds_nan():
    from convcli.cli.output import json_text

    text = json_text({"loss": float("nan"), "history": [{"val_loss": float("inf")}], "n": 3})
    assert json.loads(text) == {"loss": None, "history": [{"val_loss": None}], "n": 3}


@pytest.mark.parametrize("option, value", [
    ("--seed", "-1"), ("--weight-decay", "nan"), ("--weight-decay", "inf"), ("--lr", "inf"), ("--lr", "nan"),
])
def test_bad_training_numbers_name_the_option(tmp_path, option, value):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 4, 4), np.float32), y=np.array([0, 1, 0, 1]))
    result = run("train", tmp_path / "d.npz", option, value, "-o", tmp_path / "m.npz")
    assert result.exit_code == 2 and option in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "m.npz").exists()


def test_train_never_writes_over_its_data(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 4, 4), np.float32), y=np.array([0, 1, 0, 1]))
    before = (tmp_path / "d.npz").read_bytes()
    for args in (["-o", tmp_path / "d.npz"], ["--test", tmp_path / "d.npz", "-o", tmp_path / "d.npz"],
                 ["-o", tmp_path / "m.npz", "--plot", tmp_path / "d.npz"]):
        result = run("train", tmp_path / "d.npz", *args, "--force")
        assert result.exit_code == 2 and "overwrite the input" in result.output
    assert (tmp_path / "d.npz").read_bytes() == before


# ---------------------------------------------------------------- names and files
def test_an_existing_name_with_glob_characters_is_taken_literally(tmp_path):
    np.save(tmp_path / "a[1].npy", np.ones(5))
    np.save(tmp_path / "a1.npy", np.zeros(5))
    os.mkdir(tmp_path / "out")
    result = run("convolve", tmp_path / "a[1].npy", "-k", "1 1 1", "-o", tmp_path / "out/", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"][0]["input"] == str(tmp_path / "a[1].npy")
    assert np.load(tmp_path / "out" / "a[1].npy").sum() > 0
    pattern = run("convolve", tmp_path / "a?.npy", "-k", "1", "-o", tmp_path / "out/", "--json")
    assert [f["input"] for f in json.loads(pattern.output)["files"]] == [str(tmp_path / "a1.npy")]


def test_errors_name_the_target_not_the_temporary_file(tmp_path):
    from convcli.io.files import atomic_output

    target = tmp_path / "result.png"
    with pytest.raises(OSError) as caught:
        with atomic_output(target) as temp:
            raise OSError(28, f"No space left on device while writing {temp}", str(temp))
    assert caught.value.filename == str(target)
    assert ".part" not in str(caught.value) and str(target) in str(caught.value)
    assert not any(Path(tmp_path).iterdir())
