"""convcli.kernels: the library, spec parsing, files, impulse responses, learned layers."""

import json
import warnings

import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal

from convcli import load_kernel
from convcli.errors import UsageError
from convcli.kernels import entries, resolve_kernel

REQUIRED = [
    "identity",
    "box",
    "gaussian",
    "sharpen",
    "laplacian",
    "emboss",
    "sobel-x",
    "sobel-y",
    "prewitt-x",
    "prewitt-y",
    "scharr-x",
    "scharr-y",
    "edge",
    "moving-average",
    "lowpass",
    "highpass",
    "bandpass",
    "bandstop",
]


def test_library_has_every_required_kernel_with_description_and_convention():
    table = entries()
    for name in REQUIRED:
        assert table[name].description and table[name].convention, name


def test_fixed_kernels_values():
    assert np.array_equal(load_kernel("sobel-x"), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    assert np.array_equal(load_kernel("sobel-y"), load_kernel("sobel-x").T)
    assert np.array_equal(load_kernel("scharr-y"), load_kernel("scharr-x").T)
    assert np.array_equal(load_kernel("prewitt-y"), load_kernel("prewitt-x").T)
    assert np.array_equal(load_kernel("edge"), [[1, 0, -1], [0, 0, 0], [-1, 0, 1]])
    for zero_sum in ("laplacian", "edge", "sobel-x", "prewitt-y", "scharr-x"):
        assert load_kernel(zero_sum).sum() == 0
    for unit_sum in ("identity", "sharpen", "emboss", "box:5", "gaussian:sigma=2", "moving-average:9"):
        assert np.isclose(load_kernel(unit_sum).sum(), 1)


def test_sobel_x_correlation_is_the_positive_x_derivative():
    ramp = np.tile(np.arange(6.0), (5, 1))  # increases left to right
    correlated = signal.correlate2d(ramp, load_kernel("sobel-x"), mode="valid")
    assert np.all(correlated == 8)  # (1+2+1) * 2 per step of 1
    ramp_down = ramp.T
    assert np.all(signal.correlate2d(ramp_down, load_kernel("sobel-y"), mode="valid") == 8)


@given(st.floats(0.3, 4.0))
def test_gaussian_matches_the_sampled_formula(sigma):
    kernel = load_kernel(f"gaussian:sigma={sigma}")
    size = 2 * int(np.ceil(3 * sigma)) + 1
    t = np.arange(size) - size // 2
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    assert kernel.shape == (size, size)
    assert np.allclose(kernel, g / g.sum())


def test_positional_and_named_parameters():
    assert load_kernel("box:5").shape == (5, 5)
    assert load_kernel("gaussian:sigma=1,size=5").shape == (5, 5)
    assert load_kernel("moving-average:9").shape == (9,)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("lowpass:cutoff=2000", "low"),
        ("highpass:cutoff=2000", "high"),
        ("bandpass:low=1000,high=4000", "band"),
        ("bandstop:low=1000,high=4000", "stop"),
    ],
)
def test_fir_designs_respond_at_the_input_sample_rate(spec, kind):
    rate = 16000
    taps = load_kernel(spec, sample_rate=rate)
    freqs, response = signal.freqz(taps, worN=[200, 2500, 7000], fs=rate)
    gain = np.abs(response)
    expected = {"low": [1, 0, 0], "high": [0, 1, 1], "band": [0, 1, 0], "stop": [1, 0, 1]}[kind]
    assert np.allclose(gain, expected, atol=0.05), gain


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gausian", "did you mean 'gaussian'"),
        ("gaussian:sigma=0", "sigma=0 must be > 0"),
        ("gaussian:sigma=-1", "must be > 0"),
        ("box:4", "size=4 must be an odd number"),
        ("gaussian:sigma=1,size=6", "size=6 must be an odd"),
        ("lowpass:cutoff=9000", "Nyquist frequency 8000 Hz"),
        ("bandpass:low=3000,high=1000", "must be below"),
        ("lowpass:cutoff=1000,taps=100", "taps=100 must be an odd"),
        ("box:size=3,colour=2", "no parameter 'colour'"),
        ("sobel-x:3", "takes no parameters"),
        ("1 2 1; 2 4", "ragged matrix: row 2 has 2 values, row 1 has 3"),
        ("1 2 1 /0", "bad scale"),
        ("missing.npy", "no such kernel file"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(UsageError, match=message):
        load_kernel(spec, sample_rate=16000)


def test_fir_needs_a_sample_rate():
    with pytest.raises(UsageError, match="needs a sample rate"):
        load_kernel("lowpass:cutoff=1000")


def test_inline_matrix_with_scale():
    assert np.allclose(load_kernel("1 2 1; 2 4 2; 1 2 1 /16"), np.outer([1, 2, 1], [1, 2, 1]) / 16)
    assert np.array_equal(load_kernel("1, -1"), [1, -1])


def test_kernel_files(tmp_path):
    matrix = np.arange(6.0).reshape(2, 3)
    np.save(tmp_path / "k.npy", matrix)
    np.savetxt(tmp_path / "k.csv", matrix, delimiter=",")
    np.savetxt(tmp_path / "k.txt", matrix)
    (tmp_path / "k.kernel").write_text("# description: test\n# scale: 1/2\n0 2 4\n6 8 10\n")
    for name in ("k.npy", "k.csv", "k.txt", "k.kernel"):
        assert np.allclose(load_kernel(str(tmp_path / name)), matrix), name


def test_kernel_files_with_nan_or_too_many_dimensions_are_refused(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "cube.npy", np.ones((1, 1, 2, 2, 2)))  # 3-D and 4-D files mix channels; 5-D is none
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(UsageError, match="NaN or inf"):
        load_kernel(str(tmp_path / "nan.npy"))
    with pytest.raises(UsageError, match="5 dimensions"):
        load_kernel(str(tmp_path / "cube.npy"))
    with pytest.raises(UsageError, match="pickle"):
        load_kernel(str(tmp_path / "obj.npy"))


def test_impulse_response_is_channels_first_and_resampled_with_a_warning(tmp_path):
    ir = np.zeros((100, 2))
    ir[10, 0] = ir[20, 1] = 0.5
    soundfile.write(tmp_path / "ir.wav", ir, 8000, subtype="FLOAT")
    same_rate = resolve_kernel(str(tmp_path / "ir.wav"), sample_rate=8000)
    assert same_rate.role == "ir" and same_rate.array.shape == (2, 100) and not same_rate.notes
    with pytest.warns(UserWarning, match="resampled the impulse response to 16000 Hz"):
        doubled = load_kernel(str(tmp_path / "ir.wav"), sample_rate=16000)
    assert doubled.shape == (2, 200)
    assert np.allclose(doubled, signal.resample_poly(ir.T, 2, 1, axis=-1))


def make_model(path, weight, bias=None, pickled=False):
    arrays = {"conv1.weight": weight, "__meta__": np.array(json.dumps({"spec": "Conv2d(3, 2, 3)"}))}
    if bias is not None:
        arrays["conv1.bias"] = bias
    if pickled:
        arrays["conv1.weight"] = np.array([weight], dtype=object)
    np.savez(path, **arrays)


def test_model_arrays_by_name_are_raw_channel_mixing_kernels(tmp_path):
    weight = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
    make_model(tmp_path / "m.npz", weight, bias=np.arange(4.0))
    whole = resolve_kernel(f"{tmp_path / 'm.npz'}:conv1.weight")
    assert whole.role == "mix" and np.array_equal(whole.array, weight)
    one = resolve_kernel(f"{tmp_path / 'm.npz'}:conv1.weight[3]")
    assert np.array_equal(one.array, weight[3:4])
    with pytest.raises(UsageError, match="has 4 output channels"):
        resolve_kernel(f"{tmp_path / 'm.npz'}:conv1.weight[4]")
    with pytest.raises(UsageError, match="no array 'conv2.weight'"):
        resolve_kernel(f"{tmp_path / 'm.npz'}:conv2.weight")
    with pytest.raises(UsageError, match="not a channel-mixing kernel"):
        resolve_kernel(f"{tmp_path / 'm.npz'}:conv1.bias")
    with pytest.raises(UsageError, match="not a convcli model"):  # a feature map needs the whole model
        resolve_kernel(f"{tmp_path / 'm.npz'}:conv1")


def test_pickled_model_arrays_are_refused(tmp_path):
    make_model(tmp_path / "p.npz", np.ones((1, 1, 3, 3)), pickled=True)
    with pytest.raises(UsageError, match="pickle"):
        resolve_kernel(f"{tmp_path / 'p.npz'}:conv1")


def test_load_kernel_gives_no_warning_without_resampling():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_kernel("laplacian")


@given(
    frames=st.integers(1, 400),
    taps=st.integers(1, 60),
    block=st.integers(1, 128),
    channels=st.integers(1, 2),
    mode=st.sampled_from(["same", "full"]),
    correlate=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_overlap_add_blocks_equal_numpy_convolution(frames, taps, block, channels, mode, correlate, seed):
    from convcli.kernels import Kernel
    from convcli.kernels.apply import Geometry
    from convcli.kernels.stream import overlap_add

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, frames)).astype(np.float32)
    h = rng.standard_normal(taps)
    blocks = (x[:, i : i + block] for i in range(0, frames, block))
    kernel = Kernel("test", h)
    got = np.concatenate(
        list(overlap_add(blocks, frames, kernel, Geometry(mode=mode, correlate=correlate), channels)), axis=1
    )
    taps_used = h[::-1] if correlate else h
    full = np.stack([np.convolve(row.astype(np.float64), taps_used) for row in x])
    start = (taps - 1) // 2
    expected = full[:, start : start + frames] if mode == "same" else full
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("spec", ["1 nan 1", "1 2 inf", "-inf 1; 1 1", "1 NaN 2 /4"])
def test_inline_kernels_with_nan_or_inf_are_refused_as_such(spec):
    with pytest.raises(UsageError, match=r"inline kernel .*NaN or inf"):
        load_kernel(spec)
