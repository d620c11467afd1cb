"""convcli.convolve against independent references: scipy.signal, numpy.pad + a plain loop, einsum."""

import numpy as np
import pytest
import scipy.signal
from hypothesis import assume, example, given
from hypothesis import strategies as st

from convcli.engine.boundary import ALIASES, BOUNDARIES, normalize_boundary, pad, window
from convcli.engine.convolve import convolve, plan

METHODS = ("direct", "fft")
NUMPY_MODE = {name: name for name in BOUNDARIES}  # convcli's canonical names are numpy.pad's


def loop_correlate(padded, kernel, stride, dilation):
    """Valid correlation of an already padded 2-D array, one output value at a time."""
    (ph, pw), (kh, kw), (sh, sw), (dh, dw) = padded.shape, kernel.shape, stride, dilation
    rows = [i for i in range(ph) if i + dh * (kh - 1) < ph][::sh]
    cols = [j for j in range(pw) if j + dw * (kw - 1) < pw][::sw]
    out = np.zeros((len(rows), len(cols)))
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            out[a, b] = sum(
                kernel[u, v] * padded[i + u * dh, j + v * dw] for u in range(kh) for v in range(kw)
            )
    return out


def numpy_reference(x, kernel, *, stride, dilation, padding, boundary, cval, correlate):
    """numpy.pad + loop_correlate; x is (H, W) and kernel (kh, kw)."""
    k = kernel if correlate else kernel[::-1, ::-1]
    extra = {"constant_values": cval} if boundary == "constant" else {}
    padded = np.pad(x.astype(np.float64), padding, mode=NUMPY_MODE[boundary], **extra)
    return loop_correlate(padded, k.astype(np.float64), stride, dilation)


# ---- modes against scipy.signal -------------------------------------------------------------

@given(
    n=st.integers(1, 40), k=st.integers(1, 9), mode=st.sampled_from(["same", "valid", "full"]),
    correlate=st.booleans(), method=st.sampled_from(METHODS), seed=st.integers(0, 2**16),
)
def test_1d_modes_match_scipy_signal(n, k, mode, correlate, method, seed):
    rng = np.random.default_rng(seed)
    x, h = rng.standard_normal(n), rng.standard_normal(k)
    assume(mode != "valid" or k <= n)
    reference = (scipy.signal.correlate if correlate else scipy.signal.convolve)(x, h, mode, method="direct")
    got = convolve(x, h, mode=mode, correlate=correlate, method=method)
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-10)


@given(
    h=st.integers(1, 10), w=st.integers(1, 10), kh=st.integers(1, 5), kw=st.integers(1, 5),
    mode=st.sampled_from(["same", "valid", "full"]), correlate=st.booleans(),
    method=st.sampled_from(METHODS), seed=st.integers(0, 2**16),
)
def test_2d_modes_match_scipy_signal(h, w, kh, kw, mode, correlate, method, seed):
    rng = np.random.default_rng(seed)
    x, kernel = rng.standard_normal((2, h, w)), rng.standard_normal((kh, kw))
    assume(mode != "valid" or (kh <= h and kw <= w))
    op = scipy.signal.correlate if correlate else scipy.signal.convolve
    reference = np.stack([op(plane, kernel, mode, method="direct") for plane in x])
    got = convolve(x, kernel, mode=mode, correlate=correlate, method=method)
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-10)


# ---- boundaries, stride, dilation, padding against numpy.pad + loop -----------------------

@st.composite
def geometry(draw, max_size=9, max_kernel=4):
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # padding up to twice the input: wider than the input in every mode
    padding = tuple((draw(st.integers(0, 2 * n)), draw(st.integers(0, 2 * n))) for n in (h, w))
    return (h, w), (kh, kw), stride, dilation, padding


@given(
    geo=geometry(), boundary=st.sampled_from(BOUNDARIES), cval=st.sampled_from([0.0, 1.5]),
    correlate=st.booleans(), method=st.sampled_from(METHODS), seed=st.integers(0, 2**16),
)
def test_boundary_stride_dilation_padding_match_numpy_loop(geo, boundary, cval, correlate, method, seed):
    (h, w), (kh, kw), stride, dilation, padding = geo
    spans = [d * (k - 1) + 1 for k, d in zip((kh, kw), dilation, strict=True)]
    assume(all(s <= n + sum(p) for s, n, p in zip(spans, (h, w), padding, strict=True)))
    rng = np.random.default_rng(seed)
    x, kernel = rng.standard_normal((h, w)), rng.standard_normal((kh, kw))
    got = convolve(
        x, kernel, boundary=boundary, cval=cval, stride=stride, dilation=dilation, padding=padding,
        correlate=correlate, method=method,
    )
    reference = numpy_reference(
        x, kernel, stride=stride, dilation=dilation, padding=padding, boundary=boundary, cval=cval,
        correlate=correlate,
    )
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-10)


@given(
    n=st.integers(1, 30), k=st.integers(1, 6), stride=st.integers(1, 4), dilation=st.integers(1, 3),
    before=st.integers(0, 40), after=st.integers(0, 40), boundary=st.sampled_from(BOUNDARIES),
    method=st.sampled_from(METHODS), seed=st.integers(0, 2**16),
)
def test_1d_padding_before_after_matches_numpy_loop(
    n, k, stride, dilation, before, after, boundary, method, seed
):
    assume(dilation * (k - 1) + 1 <= n + before + after)
    rng = np.random.default_rng(seed)
    x, h = rng.standard_normal((3, n)), rng.standard_normal(k)
    got = convolve(x, h, padding=(before, after), stride=stride, dilation=dilation, boundary=boundary,
                   cval=-0.5, method=method)
    reference = np.stack([
        numpy_reference(row[None], h[None], stride=(1, stride), dilation=(1, dilation),
                        padding=((0, 0), (before, after)), boundary=boundary, cval=-0.5, correlate=False)[0]
        for row in x
    ])
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-10)


@given(n=st.integers(1, 40), k=st.integers(1, 7), stride=st.integers(1, 5), dilation=st.integers(1, 3))
def test_same_with_stride_gives_ceil_n_over_s(n, k, stride, dilation):
    got = convolve(np.ones(n), np.ones(k), stride=stride, dilation=dilation)
    assert got.shape == (-(-n // stride),)
    full_same = convolve(np.arange(n, dtype=float), np.arange(1.0, k + 1), dilation=dilation)
    np.testing.assert_allclose(
        convolve(np.arange(n, dtype=float), np.arange(1.0, k + 1), dilation=dilation, stride=stride),
        full_same[::stride],
    )


# ---- all methods agree -----------------------------------------------------------------------

@given(
    geo=geometry(max_size=12, max_kernel=5), boundary=st.sampled_from(BOUNDARIES), seed=st.integers(0, 2**16)
)
# reflect folded a 2x2 kernel's dilated side onto one tap, and separable, asked for by name, refused it
@example(geo=((2, 2), (2, 2), (1, 1), (2, 1), ((0, 1), (0, 0))), boundary="reflect", seed=0)
# a 1-wide input padded (2, 0) with stride 2: auto's plan folds the kernel's width onto one tap
@example(geo=((2, 1), (2, 2), (1, 2), (1, 1), ((0, 0), (2, 0))), boundary="constant", seed=0)
def test_direct_separable_fft_agree_on_rank1_kernels(geo, boundary, seed):
    (h, w), (kh, kw), stride, dilation, padding = geo
    spans = [d * (k - 1) + 1 for k, d in zip((kh, kw), dilation, strict=True)]
    assume(kh > 1 and kw > 1)
    assume(all(s <= n + sum(p) for s, n, p in zip(spans, (h, w), padding, strict=True)))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, h, w)).astype(np.float32)
    kernel = np.outer(rng.standard_normal(kh), rng.standard_normal(kw))
    results = {
        method: convolve(x, kernel, boundary=boundary, cval=0.25, stride=stride, dilation=dilation,
                         padding=padding, method=method)
        for method in ("direct", "separable", "fft")
    }
    # asked for by name (auto may fold a side that reads only the constant onto one tap: no longer 2-D)
    assert plan(x.shape, kernel, padding=padding, stride=stride, dilation=dilation, method="separable").rank1
    scale = np.abs(x).max() * np.abs(kernel).sum()
    for method in ("separable", "fft"):
        assert results[method].dtype == np.float32
        np.testing.assert_allclose(results[method], results["direct"], atol=1e-5 * scale)


def test_methods_agree_on_long_signal_with_overlap_add():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 20000)).astype(np.float32)
    h = rng.standard_normal(301).astype(np.float32)
    fft_plan = plan(x.shape, h, method="fft")
    assert fft_plan.fft_block is not None  # blocks, not one transform of the whole signal
    direct, fft = (convolve(x, h, method=m, boundary="symmetric") for m in ("direct", "fft"))
    reference = np.stack([scipy.signal.convolve(np.pad(r, (150, 150), mode="symmetric"), h, "valid") for r in
                          x.astype(np.float64)])
    np.testing.assert_allclose(direct, reference, atol=2e-3)
    np.testing.assert_allclose(fft, reference, atol=2e-3)



@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("stride", [1, 3])
def test_rows_wider_than_a_column_block_match_numpy_pad(boundary, stride):
    """The direct engine reads interior columns in place (in blocks) and maps only border columns."""
    rng = np.random.default_rng(3)
    x, kernel = rng.standard_normal((2, 6, 4500)), rng.standard_normal((3, 5))
    padding = ((1, 2), (4, 3))
    got = convolve(x, kernel, boundary=boundary, cval=0.5, stride=stride, padding=padding, correlate=True,
                   method="direct")
    extra = {"constant_values": 0.5} if boundary == "constant" else {}
    padded = np.pad(x, ((0, 0), *padding), mode=NUMPY_MODE[boundary], **extra)
    reference = np.stack([scipy.signal.correlate(p, kernel, "valid")[::stride, ::stride] for p in padded])
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-10)

# ---- channel mixing (CNN layer) ---------------------------------------------------------------

@given(
    n=st.integers(1, 2), c_in=st.integers(1, 3), c_out=st.integers(1, 3), h=st.integers(3, 8),
    w=st.integers(3, 8), k=st.integers(1, 3), stride=st.integers(1, 2), dilation=st.integers(1, 2),
    pad=st.integers(0, 2), method=st.sampled_from(METHODS), seed=st.integers(0, 2**16),
)
def test_channel_mixing_matches_einsum(n, c_in, c_out, h, w, k, stride, dilation, pad, method, seed):
    assume(dilation * (k - 1) + 1 <= min(h, w) + 2 * pad)
    rng = np.random.default_rng(seed)
    x, kernel = rng.standard_normal((n, c_in, h, w)), rng.standard_normal((c_out, c_in, k, k))
    got = convolve(x, kernel, padding=pad, stride=stride, dilation=dilation, correlate=True, method=method)
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    span = dilation * (k - 1) + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, (span, span), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride, ::dilation, ::dilation]
    reference = np.einsum("ncijuv,ocuv->noij", windows, kernel)
    np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-10)
    # unbatched (C_in, H, W) -> (C_out, Ho, Wo)
    np.testing.assert_allclose(
        convolve(x[0], kernel, padding=pad, stride=stride, dilation=dilation, correlate=True, method=method),
        reference[0], rtol=1e-10, atol=1e-10,
    )


def test_1x1_channel_mix_rgb_to_gray():
    rgb = np.random.default_rng(3).random((3, 4, 5)).astype(np.float32)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gray = convolve(rgb, weights.reshape(1, 3, 1, 1))
    assert gray.shape == (1, 4, 5)
    np.testing.assert_allclose(gray[0], np.tensordot(weights, rgb, axes=1), rtol=1e-6)


def test_1d_channel_mixing_matches_einsum():
    rng = np.random.default_rng(5)
    x, kernel = rng.standard_normal((2, 3, 17)), rng.standard_normal((4, 3, 5))
    got = convolve(x, kernel, mode="valid", correlate=True)
    windows = np.lib.stride_tricks.sliding_window_view(x, 5, axis=2)
    np.testing.assert_allclose(got, np.einsum("ncit,oct->noi", windows, kernel), rtol=1e-10, atol=1e-10)


# ---- dtypes ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "expected"), [
    (np.float64, np.float64), (np.float32, np.float32), (np.int16, np.float32), (np.uint8, np.float32),
])
def test_dtype_policy(dtype, expected):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    assert convolve(x, np.ones((2, 2))).dtype == expected


# ---- worked examples of the seeds (values computed by hand, not copied from the slides) ------

def test_seed_moving_average_full_valid_and_stride2_padding1():
    x = np.array([1, 2, 3, 1, 2, 3, 1, 2, 3], dtype=np.float64)
    h = np.ones(3) / 3
    # full, P = 2: 11 values; y(1) = 1/3, y(2) = 1, then 2 ... 2, y(10) = 5/3, y(11) = 1
    np.testing.assert_allclose(convolve(x, h, mode="full"), [1 / 3, 1, 2, 2, 2, 2, 2, 2, 2, 5 / 3, 1])
    # valid, P = 0: (9 - 3)/1 + 1 = 7 values, all 2
    np.testing.assert_allclose(convolve(x, h, mode="valid"), [2] * 7)
    # S = 2, P = 1: (9 + 2 - 3)/2 + 1 = 5 values
    np.testing.assert_allclose(convolve(x, h, padding=1, stride=2), [1, 2, 2, 2, 5 / 3])


def test_seed_6x6_image_with_x_shaped_filter():
    image = np.array([
        [3, 3, 2, 1, 0, 0], [3, 3, 2, 1, 0, 0], [3, 3, 2, 1, 0, 0],
        [3, 3, 3, 2, 0, 0], [3, 3, 2, 1, 0, 0], [3, 2, 1, 1, 0, 0],
    ], dtype=np.float64)
    x_filter = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float64)
    # zero padding 1, 'same' size; e.g. centre (1,1): 3 + 2 + 3 + 2 + 3 = 13
    feature_map = [
        [6, 8, 6, 3, 1, 0], [9, 13, 10, 5, 2, 0], [9, 14, 11, 6, 3, 0],
        [9, 13, 11, 6, 2, 0], [8, 13, 10, 5, 3, 0], [6, 7, 5, 3, 1, 0],
    ]
    for method in ("direct", "fft"):
        np.testing.assert_allclose(convolve(image, x_filter, method=method), feature_map, atol=1e-12)


def test_seed_1_to_5_with_filter_2_1():
    x = np.array([1, 2, 3, 4, 5], dtype=np.float64)
    g = np.array([2, 1], dtype=np.float64)
    # sliding [2 1] over x without flipping: 2·1+1·2 = 4, 2·2+1·3 = 7 (the slide shows 5), 10, 13
    np.testing.assert_allclose(convolve(x, g, mode="valid", correlate=True), [4, 7, 10, 13])
    # true convolution flips g: y[n] = 2·x[n] + 1·x[n−1]
    np.testing.assert_allclose(convolve(x, g, mode="full"), [2, 5, 8, 11, 14, 5])
    np.testing.assert_allclose(convolve(x, g, mode="valid"), [5, 8, 11, 14])


# ---- boundary names and padding ---------------------------------------------------------------

def test_boundary_names_and_aliases():
    for name in BOUNDARIES:
        assert normalize_boundary(name) == name
    assert {alias: normalize_boundary(alias.upper()) for alias in ALIASES} == ALIASES


def test_mirror_is_refused_naming_both_meanings():
    with pytest.raises(ValueError, match="ambiguous") as info:
        normalize_boundary("mirror")
    assert "reflect" in str(info.value) and "symmetric" in str(info.value)
    assert "d c b | a b c d" in str(info.value) and "c b a | a b c d" in str(info.value)


def test_unknown_boundary_suggests():
    with pytest.raises(ValueError, match="did you mean 'reflect'"):
        convolve(np.ones(5), np.ones(3), boundary="reflct")


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    widths=st.tuples(st.tuples(st.integers(0, 13), st.integers(0, 13)), st.tuples(st.integers(0, 13),
                                                                                   st.integers(0, 13))),
    boundary=st.sampled_from(BOUNDARIES),
)
def test_pad_matches_numpy_pad_even_wider_than_input(shape, widths, boundary):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + 1
    extra = {"constant_values": 7.0} if boundary == "constant" else {}
    expected = np.pad(x, widths, mode=NUMPY_MODE[boundary], **extra)
    np.testing.assert_array_equal(pad(x, widths, boundary, 7.0), expected)
    np.testing.assert_array_equal(pad(x[None], widths, boundary, 7.0)[0], expected)  # trailing axes only


@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    windows=st.tuples(*[st.tuples(st.integers(-20, 20), st.integers(0, 12))] * 2),
    boundary=st.sampled_from(BOUNDARIES),
)
def test_window_is_the_slice_of_a_padding_that_holds_it(shape, windows, boundary):
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) + 1
    extra = {"constant_values": 7.0} if boundary == "constant" else {}
    wide = np.pad(x, 40, mode=NUMPY_MODE[boundary], **extra)
    expected = wide[tuple(slice(40 + first, 40 + first + count) for first, count in windows)]
    np.testing.assert_array_equal(window(x, windows, boundary, 7.0), expected)


def test_fft_under_a_wide_padding_makes_only_the_window_it_reads():
    """--padding 1483 --stride 2990 on 24x20 reads one padded position per axis: padding it all
    once took 134 MB (over a 64 MiB budget) for a 1x1 output (a hypothesis example in test_budget)."""
    import tracemalloc

    x = np.random.default_rng(0).random((3, 24, 20)).astype(np.float32)
    for boundary in BOUNDARIES:
        tracemalloc.start()
        got = convolve(x, np.ones((1, 1)), padding=1483, stride=2990, method="fft", boundary=boundary)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        expected = convolve(x, np.ones((1, 1)), padding=1483, stride=2990, method="direct", boundary=boundary)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert peak < 1 << 20, (boundary, peak)


# ---- the planner ---------------------------------------------------------------------------

def test_plan_picks_methods_by_operation_count():
    gaussian = np.outer(scipy.signal.windows.gaussian(15, 3), scipy.signal.windows.gaussian(15, 3))
    image_plan = plan((3, 512, 512), gaussian)
    assert image_plan.rank1 and image_plan.method == "separable"
    assert "direct" in image_plan.reason and "separable" in image_plan.reason
    assert plan((3, 512, 512), np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]])).method == "direct"
    long_ir = plan((2, 480000), np.random.default_rng(0).standard_normal(20000))
    assert long_ir.method == "fft"
    assert plan((100,), np.ones(3), mode="full").output_shape == (102,)
    assert plan((4, 3, 10, 10), np.ones((8, 3, 3, 3)), mode="valid").output_shape == (4, 8, 8, 8)


def test_convolution_is_not_correlation_for_asymmetric_kernels():
    x = np.array([0, 0, 1, 0, 0], dtype=np.float64)
    np.testing.assert_allclose(convolve(x, [1, 2, 3]), [0, 1, 2, 3, 0])
    np.testing.assert_allclose(convolve(x, [1, 2, 3], correlate=True), [0, 3, 2, 1, 0])


# ---- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kernel": [1.0, np.nan]}, "non-finite value nan"),
    ({"kernel": [[1.0, np.inf]]}, "non-finite value inf"),
    ({"kernel": []}, "empty kernel"),
    ({"kernel": np.ones(9), "mode": "valid"}, "larger than the padded input"),
    ({"stride": 0}, "stride must be >= 1, got 0"),
    ({"dilation": (1, -2)}, "dilation must be >= 1"),
    ({"kernel": np.ones((2, 2, 2, 2, 2))}, "kernel has 5 dimensions"),
    ({"boundary": "mirror"}, "ambiguous"),
    ({"mode": "sme"}, "unknown mode 'sme' \\(did you mean 'same'"),
    ({"method": "fftt"}, "unknown method 'fftt' \\(did you mean 'fft'"),
    ({"kernel": np.array([[1.0, 2.0], [3.0, 5.0]]), "method": "separable"}, "not rank 1"),
    ({"kernel": np.ones((3, 2, 3, 3))}, "expects 2 input channels, the input has 4"),
])
def test_bad_input_raises_value_error_naming_the_value(kwargs, message):
    args = {"x": np.ones((4, 8, 8)), "kernel": np.ones((3, 3))}
    args.update(kwargs)
    if np.ndim(args["kernel"]) == 1 and len(np.shape(args["kernel"])) == 1 and "x" not in kwargs:
        args["x"] = np.ones(8)
    with pytest.raises(ValueError, match=message):
        convolve(args.pop("x"), args.pop("kernel"), **args)


def test_kernel_with_more_dimensions_than_signal():
    with pytest.raises(ValueError, match=r"kernel has 2 dimensions \(3, 3\) but the signal only 1"):
        convolve(np.ones(10), np.ones((3, 3)))


def test_plan_reports_the_input_rows_a_stride_never_reads():
    from convcli.engine.convolve import plan

    assert plan((1, 11, 10), np.ones((3, 3)), mode="valid", stride=(3, 2)).left_over == (2, 1)
    # 'same' pads 1 on each side: the position past the last window is padding, not data
    assert plan((1, 10, 10), np.ones((3, 3)), mode="same", stride=3).left_over == (0, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_transforms_row_by_row_equal_scipy_fft(dtype):
    """Rows longer than ROW_BY_ROW go one per threaded call; the result is scipy.fft's."""
    import scipy.fft

    from convcli.engine.fft import ROW_BY_ROW, irfft_last, rfft_last

    n = ROW_BY_ROW + 6
    x = np.random.default_rng(3).standard_normal((2, 3, n - 100)).astype(dtype)
    spectrum = rfft_last(x, n)
    expected = scipy.fft.rfft(x, n, axis=-1)
    assert spectrum.dtype == expected.dtype and spectrum.shape == expected.shape
    np.testing.assert_allclose(spectrum, expected, rtol=1e-5, atol=1e-3 if dtype == np.float32 else 1e-9)
    back = irfft_last(spectrum, n)
    assert back.dtype == dtype
    np.testing.assert_allclose(back[..., : n - 100], x, atol=1e-4 if dtype == np.float32 else 1e-12)
