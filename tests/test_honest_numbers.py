"""Issue #20, class 7 (honest numbers): what the tool reports and writes says what happened.

A (near-)constant result normalizes flat, not into rounding stripes; a fill value the boundary
contradicts is refused; many refused existing outputs are one summary line, not one line each.
"""

import numpy as np
import pytest
from commands import run
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from convcli.io.ranges import fit_range


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("convcli: error")]


@given(level=st.floats(-1e6, 1e6), scale=st.sampled_from([0.0, 1e-12, 1e-9]), seed=st.integers(0, 99))
def test_normalize_of_a_near_constant_result_is_flat(level, scale, seed):
    """Rounding noise around a level (what a normalized kernel makes of a flat image) is flat."""
    noise = np.random.default_rng(seed).standard_normal((4, 5)) * scale * max(1.0, abs(level))
    out, clipped = fit_range(np.float32(level) + noise.astype(np.float32), "normalize", 0.0, 1.0)
    assert clipped == 0 and np.ptp(out) == 0.0


@given(low=st.floats(-100, 100), spread=st.floats(1e-3, 10), seed=st.integers(0, 99))
def test_normalize_of_a_real_signal_spans_the_range(low, spread, seed):
    x = low + spread * np.random.default_rng(seed).random(50)
    x[0], x[1] = low, low + spread
    out, _ = fit_range(x, "normalize", 0.0, 1.0)
    np.testing.assert_allclose([out.min(), out.max()], [0.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(out, (x - x.min()) / (x.max() - x.min()), atol=1e-9)


@pytest.mark.parametrize("kernel", ["box:5", "gaussian:sigma=3", "1 2 1; 2 4 2; 1 2 1 /16"])
@pytest.mark.parametrize("boundary", ["reflect", "edge", "wrap", "symmetric"])
def test_a_flat_image_stays_flat_under_normalize(tmp_path, kernel, boundary):
    Image.fromarray(np.full((23, 31), 173, np.uint8)).save(tmp_path / "flat.png")
    result = run("convolve", tmp_path / "flat.png", "-k", kernel, "--boundary", boundary, "--range",
                 "normalize", "-o", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    assert np.ptp(np.asarray(Image.open(tmp_path / "out.png"))) == 0


@pytest.mark.parametrize("args, words", [
    (["--boundary", "zero", "--cval", "0.7"], "zero contradicts --cval 0.7"),
    (["--boundary", "reflect", "--cval", "0.5"], "never reads it"),
    (["--boundary", "wrap", "--cval", "-1"], "never reads it"),
])
def test_a_fill_value_the_boundary_contradicts_is_refused(tmp_path, args, words):
    np.save(tmp_path / "x.npy", np.arange(6.0))
    result = run("convolve", tmp_path / "x.npy", "-k", "1 1 1", *args, "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and not (tmp_path / "y.npy").exists()
    assert len(error_lines(result.output)) == 1 and words in result.output, result.output


@pytest.mark.parametrize("args", [["--boundary", "constant", "--cval", "0.7"], ["--cval", "0.7"],
                                  ["--boundary", "zero"], ["--boundary", "zero", "--cval", "0"]])
def test_consistent_fill_values_are_used(tmp_path, args):
    np.save(tmp_path / "x.npy", np.arange(6.0))
    result = run("convolve", tmp_path / "x.npy", "-k", "1 1 1", *args, "-o", tmp_path / "y.npy")
    assert result.exit_code == 0, result.output
    cval = 0.7 if "0.7" in args else 0.0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.convolve(np.r_[cval, np.arange(6.0), cval],
                                                                        np.ones(3), "valid"), rtol=1e-6)


@pytest.mark.parametrize("count", [2, 3, 7])
def test_many_existing_outputs_are_one_summary_line(tmp_path, count):
    for index in range(count):
        np.save(tmp_path / f"s{index}.npy", np.arange(8.0) + index)
    (tmp_path / "o").mkdir()
    first = run("convolve", str(tmp_path / "s*.npy"), "-k", "1 1", "-o", tmp_path / "o")
    assert first.exit_code == 0, first.output
    again = run("convolve", str(tmp_path / "s*.npy"), "-k", "1 1", "-o", tmp_path / "o")
    assert again.exit_code == 1
    lines = error_lines(again.output)
    assert len(lines) == 1, again.output
    assert f"{count} files not written" in lines[0] and "--force" in lines[0]
    named = [f"s{index}.npy" for index in range(count)]
    assert sum(name in lines[0] for name in named) == min(count, 3)
    assert ("and 4 more" in lines[0]) == (count == 7)


def test_one_existing_output_keeps_its_own_line(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(8.0))
    np.save(tmp_path / "y.npy", np.zeros(3))
    result = run("convolve", tmp_path / "s.npy", "-k", "1 1", "-o", tmp_path / "y.npy")
    assert result.exit_code == 1 and "y.npy: output exists" in result.output, result.output


def _data(path, labels, scale=1.0):
    rng = np.random.default_rng(0)
    np.savez(path, x=(rng.random((len(labels), 1, 6, 6)) * scale).astype(np.float32), y=np.asarray(labels))


@pytest.mark.parametrize("labels", [[0] * 12, [2] * 12])
def test_training_data_of_a_single_class_is_refused(tmp_path, labels):
    _data(tmp_path / "d.npz", labels)
    result = run("train", tmp_path / "d.npz", "--epochs", "1", "-o", tmp_path / "m.npz")
    assert result.exit_code == 1 and not (tmp_path / "m.npz").exists()
    lines = error_lines(result.output)
    assert len(lines) == 1 and "at least two classes" in lines[0], result.output


def test_a_single_class_folder_is_refused(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    for index in range(4):
        picture = Image.fromarray(np.full((8, 8), 40 * index, np.uint8))
        picture.save(tmp_path / "data" / "cat" / f"{index}.png")
    result = run("train", tmp_path / "data", "--epochs", "1", "-o", tmp_path / "m.npz")
    assert result.exit_code != 0 and "at least two classes" in result.output, result.output


def test_a_diverging_run_says_so_in_its_own_words(tmp_path):
    """A learning rate so large that float32 overflows: no numpy 'overflow encountered in ...'."""
    _data(tmp_path / "d.npz", [0, 1] * 20, scale=1000.0)
    result = run("train", tmp_path / "d.npz", "--epochs", "3", "--lr", "1e6", "--optimizer", "sgd",
                 "-o", tmp_path / "m.npz")
    assert "encountered" not in result.output, result.output
    if result.exit_code == 0:
        assert "diverging; lower --lr (now 1e+06)" in result.output, result.output
    else:
        assert "lower --lr" in result.output and len(error_lines(result.output)) == 1, result.output


@pytest.mark.parametrize("lr", ["1e30", "1000"])
def test_a_run_whose_loss_explodes_without_overflow_says_so(tmp_path, lr):
    """Losses of 1e29 (or 1e3) are finite, so nothing overflows: the loss itself, far above chance
    level's ln 2, is what tells a diverged run."""
    _data(tmp_path / "d.npz", [0, 1] * 20)
    result = run("train", tmp_path / "d.npz", "--model", "Flatten(); LazyLinear(2)", "--epochs", "3",
                 "--lr", lr, "--optimizer", "sgd", "-o", tmp_path / "m.npz", "--quiet")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("convcli: warning")]
    assert len(warned) == 1 and "over 100 times chance level's 0.693" in warned[0], result.output
    assert f"diverging; lower --lr (now {float(lr):g})" in warned[0]


def test_a_sane_run_has_no_divergence_warning(tmp_path):
    _data(tmp_path / "d.npz", [0, 1] * 20)
    result = run("train", tmp_path / "d.npz", "--epochs", "2", "-o", tmp_path / "m.npz")
    assert result.exit_code == 0 and "convcli: warning" not in result.output, result.output


def pytorch_lp_pool(x, k, s, p):
    """PyTorch's LPPool2d(p, k, s, ceil_mode=True) written out from its definition (torch/nn/
    functional.py: avg_pool2d(x^p, k, s, 0, ceil_mode) · kh·kw, then ^(1/p)), for x ≥ 0: avg_pool's
    divisor is the window clipped to the input (no padding), and a last window must start inside."""
    def windows(n, kk, ss):
        count = -(-(n - kk) // ss) + 1
        if (count - 1) * ss >= n:
            count -= 1
        return [(o * ss, min(o * ss + kk, n)) for o in range(count)]

    out = np.empty((len(windows(x.shape[0], k[0], s[0])), len(windows(x.shape[1], k[1], s[1]))))
    for a, (r0, r1) in enumerate(windows(x.shape[0], k[0], s[0])):
        for b, (c0, c1) in enumerate(windows(x.shape[1], k[1], s[1])):
            average = (x[r0:r1, c0:c1] ** p).sum() / ((r1 - r0) * (c1 - c0))
            out[a, b] = (average * k[0] * k[1]) ** (1 / p)
    return out


@given(h=st.integers(2, 9), w=st.integers(2, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       sh=st.integers(1, 4), sw=st.integers(1, 4), p=st.sampled_from([1.0, 2.0, 3.0, 0.5]),
       ceil_mode=st.booleans(), seed=st.integers(0, 999))
def test_lp_pooling_equals_pytorch_on_partial_ceil_mode_windows(h, w, kh, kw, sh, sw, p, ceil_mode, seed):
    from convcli import pool

    assume(kh <= h and kw <= w)
    x = np.random.default_rng(seed).random((h, w))
    got = pool(x, (kh, kw), stride=(sh, sw), op="lp", p=p, ceil_mode=ceil_mode)
    reference = pytorch_lp_pool(x, (kh, kw), (sh, sw), p)
    if not ceil_mode:  # the whole windows only
        reference = reference[: (h - kh) // sh + 1, : (w - kw) // sw + 1]
    np.testing.assert_allclose(got, reference, rtol=1e-9)


# ---------------------------------------------------------------- one centring rule for even kernels
@given(h=st.integers(1, 8), w=st.integers(1, 8), kh=st.sampled_from([2, 4, 3]), kw=st.sampled_from([2, 4, 1]),
       dh=st.integers(1, 3), dw=st.integers(1, 3), boundary=st.sampled_from(["constant", "reflect", "wrap"]),
       seed=st.integers(0, 999))
def test_even_kernels_centre_by_the_stated_rule(h, w, kh, kw, dh, dw, boundary, seed):
    """--correlate: out[i, j] = sum x[i + u·dh − span_h//2, j + v·dw − span_w//2]·k[u, v] (the padded x),
    and convolve is the same rule on the flipped kernel, whatever the method."""
    from convcli import convolve

    rng = np.random.default_rng(seed)
    x, k = rng.standard_normal((h, w)), rng.standard_normal((kh, kw))
    spans = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    pads = [(s // 2, s - 1 - s // 2) for s in spans]
    padded = np.pad(x, pads, mode=boundary)
    reference = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            reference[i, j] = sum(padded[i + u * dh, j + v * dw] * k[u, v]
                                  for u in range(kh) for v in range(kw))
    for method in ("direct", "fft"):
        got = convolve(x, k, correlate=True, dilation=(dh, dw), boundary=boundary, method=method)
        np.testing.assert_allclose(got, reference, atol=1e-9)
        flipped = convolve(x, k[::-1, ::-1], dilation=(dh, dw), boundary=boundary, method=method)
        np.testing.assert_allclose(flipped, reference, atol=1e-9)


@pytest.mark.parametrize("taps", ["1 2", "1 2 3 4", "4 -1 0 2 5 3"])
def test_even_kernels_on_the_command_line_match_numpy(tmp_path, taps):
    x = np.random.default_rng(1).standard_normal(11)
    np.save(tmp_path / "x.npy", x)
    k = np.array(taps.split(), dtype=float)
    for flag, reference in (([], np.convolve(x, k, "same")), (["--correlate"], np.correlate(x, k, "same"))):
        result = run("convolve", tmp_path / "x.npy", "-k", taps, *flag, "-o", tmp_path / "y.npy", "--force",
                     "--dtype", "float64")
        assert result.exit_code == 0, result.output
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference, atol=1e-12)


# ---------------------------------------------------------------- overflow told in the tool's words
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_a_convolution_that_overflows_says_so(tmp_path, method):
    np.save(tmp_path / "x.npy", np.full(40, 3e38, np.float32))
    np.save(tmp_path / "k.npy", np.full(9, 1e10))
    result = run("convolve", tmp_path / "x.npy", "-k", tmp_path / "k.npy", "--method", method,
                 "-o", tmp_path / "y.npy")
    assert result.exit_code == 0 and "encountered" not in result.output, result.output
    assert "40 output values are ±inf or NaN although the input is finite" in result.output
    assert "--dtype float64" in result.output
    assert not np.isfinite(np.load(tmp_path / "y.npy")).any()


def test_lp_pooling_that_overflows_says_so(tmp_path):
    np.save(tmp_path / "x.npy", np.full(40, 3e38, np.float32))
    result = run("pool", tmp_path / "x.npy", "--op", "lp", "--p", "3", "--size", "2",
                 "-o", tmp_path / "y.npy")
    assert result.exit_code == 0 and "encountered" not in result.output, result.output
    assert "20 output values are ±inf or NaN" in result.output and "|x|^3" in result.output


def test_no_overflow_no_warning(tmp_path):
    np.save(tmp_path / "x.npy", np.full(40, 3e3, np.float32))
    result = run("convolve", tmp_path / "x.npy", "-k", "1 1", "--method", "fft", "-o", tmp_path / "y.npy")
    assert result.exit_code == 0 and "convcli: warning" not in result.output, result.output
