"""convcli.pool / adaptive_pool against a plain-NumPy reference that follows PyTorch's rules."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.signal import correlate2d

from convcli.engine.pooling import adaptive_pool, pool, pool_plan

# --- the independent reference: enumerate windows, pad explicitly, reduce with NumPy ---------------


def window_starts(n, k, s, p, d, ceil_mode):
    """Start (in input coordinates) of each window PyTorch keeps along one axis."""
    span = d * (k - 1) + 1
    starts = []
    i = 0
    while True:
        start = -p + i * s
        fits = start + span <= n + p
        # ceil_mode keeps a last partial window if it starts inside the input or the left padding
        partial = ceil_mode and start < n and start + span > n + p and start - s + span < n + p
        if not (fits or partial):
            break
        starts.append(start)
        i += 1
    return starts


def reference_pool(x, k, s, p, d, op, ceil_mode, count_include_pad, power=2.0):
    """x (..., *spatial); k, s, p, d: one value per pooled axis."""
    ndim = len(k)
    spatial = x.shape[-ndim:]
    axes_starts = [window_starts(n, *args, ceil_mode) for n, *args in zip(spatial, k, s, p, d, strict=True)]
    fill = {"max": -np.inf, "min": np.inf}.get(op, 0.0)
    margin = max(s) + max(dd * (kk - 1) + 1 for kk, dd in zip(k, d, strict=True))
    width = [(0, 0)] * (x.ndim - ndim) + [(margin, margin)] * ndim
    padded = np.pad(x.astype(np.float64), width, constant_values=fill)
    in_padded = np.pad(np.ones(x.shape[-ndim:]), [(pp, pp) for pp in p], constant_values=1)
    in_padded = np.pad(in_padded, [(margin - pp, margin - pp) for pp in p])
    in_input = np.pad(np.ones(x.shape[-ndim:]), [(margin, margin)] * ndim)
    out = np.empty(x.shape[:-ndim] + tuple(len(a) for a in axes_starts))
    for index in np.ndindex(*out.shape[-ndim:]):
        taps = np.ix_(*[
            margin + axes_starts[a][index[a]] + d[a] * np.arange(k[a]) for a in range(ndim)
        ])
        window = padded[(Ellipsis, *taps)].reshape(x.shape[:-ndim] + (-1,))
        if op == "max":
            value = window.max(axis=-1)
        elif op == "min":
            value = window.min(axis=-1)
        elif op == "sum":
            value = window.sum(axis=-1)
        elif op == "avg":
            mask = in_padded if count_include_pad else in_input
            value = window.sum(axis=-1) / mask[taps].sum()
        else:  # PyTorch's LPPool: avg_pool of |x|^p (its divisor counts the padding) times the area
            area, covered = np.prod(k), in_padded[taps].sum()
            value = ((np.abs(window) ** power).sum(axis=-1) / covered * area) ** (1 / power)
        out[(Ellipsis, *index)] = value
    return out


def reference_adaptive(x, sizes, op):
    ndim = len(sizes)
    bins = []
    for n, m in zip(x.shape[-ndim:], sizes, strict=True):
        bins.append([(i * n // m, math.ceil((i + 1) * n / m)) for i in range(m)])
    reduce = {"max": np.max, "min": np.min, "avg": np.mean, "sum": np.sum}[op]
    out = np.empty(x.shape[:-ndim] + tuple(sizes))
    for index in np.ndindex(*sizes):
        region = tuple(slice(*bins[a][index[a]]) for a in range(ndim))
        block = x[(Ellipsis, *region)].astype(np.float64).reshape(x.shape[:-ndim] + (-1,))
        out[(Ellipsis, *index)] = reduce(block, axis=-1)
    return out


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


# --- strategies ------------------------------------------------------------------------------------


@st.composite
def pooling_cases(draw):
    ndim = draw(st.sampled_from([1, 2]))
    op = draw(st.sampled_from(["max", "min", "avg", "sum", "lp"]))
    k = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    s = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    d = tuple(draw(st.integers(1, 3)) if op in ("max", "min") else 1 for _ in range(ndim))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)  # PyTorch: padding <= size/2, dilated or not
    spatial = tuple(draw(st.integers(1, 11)) for _ in range(ndim))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).normal(size=lead + spatial).astype(dtype)
    return x, k, s, p, d, op


@given(case=pooling_cases(), ceil_mode=st.booleans(), count_include_pad=st.booleans(),
       power=st.sampled_from([1.0, 2.0, 3.0, 0.5]))
def test_pool_matches_reference(case, ceil_mode, count_include_pad, power):
    x, k, s, p, d, op = case
    ndim = len(k)
    spatial = x.shape[-ndim:]
    spans_fit = all(dd * (kk - 1) + 1 <= n + 2 * pp for n, kk, pp, dd in zip(spatial, k, p, d, strict=True))
    kwargs = dict(stride=s, padding=p, dilation=d, op=op, ndim=ndim, ceil_mode=ceil_mode,
                  count_include_pad=count_include_pad, p=power)
    if not spans_fit:
        with pytest.raises(ValueError, match="larger than the padded input"):
            pool(x, k, **kwargs)
        return
    got = pool(x, k, **kwargs)
    expected = reference_pool(x, k, s, p, d, op, ceil_mode, count_include_pad, power)
    assert got.dtype == x.dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **tolerance(x.dtype))


@given(case=pooling_cases())
def test_plan_counts_the_uncovered_trailing_samples(case):
    x, k, s, p, d, op = case
    ndim = len(k)
    for n, kk, ss, pp, dd in zip(x.shape[-ndim:], k, s, p, d, strict=True):
        if dd * (kk - 1) + 1 > n + 2 * pp:
            continue
        for ceil_mode in (False, True):
            starts = window_starts(n, kk, ss, pp, dd, ceil_mode)
            reached = starts[-1] + dd * (kk - 1) + 1  # one past the last sample a window spans
            plan = pool_plan((n,), kk, stride=ss, padding=pp, dilation=dd, ndim=1, ceil_mode=ceil_mode, op=op)
            assert plan.output_shape == (len(starts),)
            assert plan.uncovered == (max(0, n - reached),)


def test_uncovered_examples():
    assert pool_plan((7, 8), 2).uncovered == (1, 0)
    assert pool_plan((5,), 2, padding=1, ndim=1).uncovered == (0,)
    assert pool_plan((10,), 3, stride=4, ndim=1).uncovered == (3,)  # windows 0-2, 4-6: 7, 8, 9 unreached...
    assert pool_plan((10,), 3, stride=4, ndim=1, ceil_mode=True).uncovered == (0,)  # ...ceil_mode adds 8-10


@st.composite
def adaptive_cases(draw):
    ndim = draw(st.sampled_from([1, 2]))
    spatial = tuple(draw(st.integers(1, 12)) for _ in range(ndim))
    sizes = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).normal(size=lead + spatial).astype(dtype), sizes


@given(case=adaptive_cases(), op=st.sampled_from(["avg", "max", "min", "sum"]))
def test_adaptive_matches_reference(case, op):
    x, sizes = case
    got = adaptive_pool(x, sizes, op=op, ndim=len(sizes))
    np.testing.assert_allclose(got, reference_adaptive(x, sizes, op), **tolerance(x.dtype))


def test_adaptive_examples():
    x = np.arange(10.0)
    # bins [0,4) [3,7) [6,10): they overlap when 10 does not divide by 3, as in PyTorch
    np.testing.assert_array_equal(adaptive_pool(x, 3, op="max", ndim=1), [3, 6, 9])
    np.testing.assert_allclose(adaptive_pool(x, 3, ndim=1), [1.5, 4.5, 7.5])
    np.testing.assert_array_equal(adaptive_pool(np.array([1.0, 5.0]), 4, op="max", ndim=1), [1, 1, 5, 5])
    image = np.random.default_rng(1).random((3, 7, 5))
    np.testing.assert_allclose(adaptive_pool(image, 1)[..., 0, 0], image.mean(axis=(1, 2)))  # global
    np.testing.assert_allclose(adaptive_pool(image, (None, 1), op="max")[..., 0], image.max(axis=2))


def test_seed_feature_map_and_its_2x2_max_pool():
    # lecture notes: a 6×6 input, an X-shaped 3×3 filter, zero 'same' padding, then 2×2 max pooling
    image = np.array([[3, 3, 2, 1, 0, 0], [3, 3, 2, 1, 0, 0], [3, 3, 2, 1, 0, 0],
                      [3, 3, 3, 2, 0, 0], [3, 3, 2, 1, 0, 0], [3, 2, 1, 1, 0, 0]], dtype=float)
    cross = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)
    feature_map = correlate2d(image, cross, mode="same")
    np.testing.assert_array_equal(feature_map, [
        [6, 8, 6, 3, 1, 0], [9, 13, 10, 5, 2, 0], [9, 14, 11, 6, 3, 0],
        [9, 13, 11, 6, 2, 0], [8, 13, 10, 5, 3, 0], [6, 7, 5, 3, 1, 0]])
    np.testing.assert_array_equal(pool(feature_map, 2), [[13, 10, 2], [14, 11, 3], [13, 10, 3]])
    np.testing.assert_array_equal(pool(feature_map.astype(np.float32), 2, op="sum"),
                                  [[36, 24, 3], [45, 34, 5], [34, 23, 4]])


def test_max_pads_with_minus_infinity_never_zero():
    x = -np.ones((4, 4)) - np.arange(16).reshape(4, 4)
    got = pool(x, 3, stride=2, padding=1)
    assert got.max() < 0
    np.testing.assert_array_equal(got, [[-1, -2], [-5, -6]])  # zeros would give 0 on the edges
    assert pool(-x, 3, stride=2, padding=1, op="min").min() > 0


def test_avg_divisor_rules_as_pytorch():
    x = np.ones((1, 5))
    # window starts -1, 1, 3; ceil_mode adds one at 5? no: it would start in the right padding
    assert pool(x, (1, 3), stride=(1, 2), padding=(0, 1), op="avg").tolist() == [[2 / 3, 1, 2 / 3]]
    assert pool(x, (1, 3), stride=(1, 2), padding=(0, 1), op="avg", count_include_pad=False).tolist() == [
        [1, 1, 1]
    ]
    # ceil_mode window hanging past the padding: PyTorch divides by the part inside input + padding
    y = np.ones(6)
    got = pool(y, 4, stride=3, padding=1, op="avg", ndim=1, ceil_mode=True)
    np.testing.assert_allclose(got, [3 / 4, 4 / 4, 1 / 2])  # last: min(5+4, 6+1) − 5 = 2


def test_lp_norms():
    x = np.array([[-3.0, 4.0], [1.0, -2.0]])
    assert pool(x, 2, op="lp", p=1).item() == 10  # sum of magnitudes (PyTorch's LPPool would give 0)
    assert pool(x, 2, op="lp", p=2).item() == pytest.approx(math.sqrt(30))
    assert pool(x, 2, op="lp", p=math.inf).item() == 4  # largest magnitude
    nonnegative = np.abs(x)  # where convcli and PyTorch's (Σ x^p)^(1/p) agree
    assert pool(nonnegative, 2, op="lp", p=3).item() == pytest.approx((27 + 64 + 1 + 8) ** (1 / 3))


def test_nan_propagates_through_max_and_min():
    x = np.array([1.0, np.nan, 3.0, 4.0])
    for op in ("max", "min"):
        got = pool(x, 2, op=op, ndim=1)
        assert np.isnan(got[0]) and not np.isnan(got[1])


def test_shapes_dtypes_and_channels():
    image = np.random.default_rng(0).random((3, 512, 512), dtype=np.float32)
    halved = pool(image, 2)
    assert halved.shape == (3, 256, 256) and halved.dtype == np.float32
    np.testing.assert_array_equal(halved[1], image[1].reshape(256, 2, 256, 2).max(axis=(1, 3)))
    assert pool(np.arange(12, dtype=np.int16).reshape(3, 4), 2, ndim=1).dtype == np.float64
    audio = np.random.default_rng(0).normal(size=(2, 1000))
    assert pool(audio, 10, ndim=1).shape == (2, 100)
    assert pool(audio, (2, 5), stride=(1, 5), ndim=2).shape == (1, 200)


@given(case=pooling_cases(), mode=st.sampled_from(["reflect", "symmetric", "edge", "wrap"]))
def test_boundary_modes_pad_avg_sum_lp_like_numpy_pad(case, mode):
    x, k, s, p, _, op = case
    ndim = len(k)
    if op in ("max", "min"):
        op = "avg"
    padded = np.pad(x, [(0, 0)] * (x.ndim - ndim) + [(q, q) for q in p], mode=mode)
    assume(all(kk <= n for kk, n in zip(k, padded.shape[-ndim:], strict=True)))
    got = pool(x, k, stride=s, padding=p, op=op, ndim=ndim, boundary=mode)
    expected = reference_pool(padded, k, s, (0,) * ndim, (1,) * ndim, op, False, True)
    np.testing.assert_allclose(got, expected, **tolerance(x.dtype))


def test_boundary_zero_is_constant_and_max_refuses_other_modes():
    x = np.random.default_rng(2).random((5, 6))
    np.testing.assert_array_equal(pool(x, 3, padding=1, op="avg", boundary="zero"),
                                  pool(x, 3, padding=1, op="avg"))
    with pytest.raises(ValueError, match="boundary 'edge' applies to avg, sum and lp"):
        pool(x, 3, padding=1, boundary="edge")
    with pytest.raises(ValueError, match="mirror"):
        pool(x, 3, padding=1, op="avg", boundary="mirror")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: pool(x, 0), "pool size must be >= 1, got 0"),
        (lambda x: pool(x, 2, stride=0), "stride must be >= 1, got 0"),
        (lambda x: pool(x, 3, padding=2), "padding 2 is more than half the window size 3"),
        (lambda x: pool(x, 9), "kernel span 9 .* larger than the padded input 8"),
        (lambda x: pool(x, 2, op="lp", p=0), "p > 0, got p=0"),
        (lambda x: pool(x, 2, op="lp", p=-1.5), "p > 0, got p=-1.5"),
        (lambda x: pool(x, 2, op="median"), "unknown pooling op 'median'"),
        (lambda x: pool(x, 2, op="avg", dilation=2), "dilation 2 applies only to max and min"),
        (lambda x: pool(x, (2, 2, 2)), r"size must be an int or 2 ints"),
        (lambda x: pool(x, 2, ndim=3), "ndim must be 1 .* got 3"),
        (lambda x: adaptive_pool(x, 0), "adaptive output size must be >= 1, got 0"),
        (lambda x: adaptive_pool(x, (4, 0), op="max"), "adaptive output size must be >= 1, got 0"),
        (lambda x: adaptive_pool(x, 2, op="lp"), "unknown adaptive pooling op 'lp'"),
        (lambda x: pool(x[0, :0], 2, ndim=1), "is empty"),
    ],
)
def test_bad_input_names_the_value(call, message):
    x = np.zeros((8, 8))
    with pytest.raises(ValueError, match=message):
        call(x)


# --- NaN and ±inf: max/min propagate NaN as PyTorch does, the others by arithmetic ----------------


def sprinkle_non_finite(x, seed, nan_share, inf_share):
    rng = np.random.default_rng(seed)
    x = x.copy()
    x[rng.random(x.shape) < inf_share] = np.inf
    x[rng.random(x.shape) < inf_share] = -np.inf
    x[rng.random(x.shape) < nan_share] = np.nan
    return x


@given(case=pooling_cases(), ceil_mode=st.booleans(), count_include_pad=st.booleans(),
       power=st.sampled_from([1.0, 2.0, 0.5, math.inf]), nan_share=st.sampled_from([0.05, 0.3, 1.0]),
       inf_share=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 2**32 - 1))
def test_pool_with_nan_and_inf_matches_numpy(case, ceil_mode, count_include_pad, power, nan_share,
                                             inf_share, seed):
    x, k, s, p, d, op = case
    ndim = len(k)
    spatial = x.shape[-ndim:]
    assume(all(dd * (kk - 1) + 1 <= n + 2 * pp for n, kk, pp, dd in zip(spatial, k, p, d, strict=True)))
    x = sprinkle_non_finite(x, seed, nan_share, inf_share)
    got = pool(x, k, stride=s, padding=p, dilation=d, op=op, ndim=ndim, ceil_mode=ceil_mode,
               count_include_pad=count_include_pad, p=power)
    with np.errstate(invalid="ignore"):  # inf − inf in the reference's sums
        if op == "lp" and math.isinf(power):
            expected = reference_pool(np.abs(x), k, s, p, d, "max", ceil_mode, count_include_pad)
        else:
            expected = reference_pool(x, k, s, p, d, op, ceil_mode, count_include_pad, power)
    # assert_allclose: NaN must meet NaN and inf the same inf
    np.testing.assert_allclose(got, expected, **tolerance(x.dtype))


@given(case=adaptive_cases(), op=st.sampled_from(["avg", "max", "min", "sum"]),
       nan_share=st.sampled_from([0.05, 0.3]), inf_share=st.sampled_from([0.0, 0.1]),
       seed=st.integers(0, 2**32 - 1))
def test_adaptive_pool_with_nan_and_inf_matches_numpy(case, op, nan_share, inf_share, seed):
    x, sizes = case
    x = sprinkle_non_finite(x, seed, nan_share, inf_share)
    got = adaptive_pool(x, sizes, op=op, ndim=len(sizes))
    with np.errstate(invalid="ignore"):  # inf − inf in the reference's sums
        expected = reference_adaptive(x, sizes, op)
    np.testing.assert_allclose(got, expected, **tolerance(x.dtype))


def test_nan_examples_every_op():
    nan = np.nan
    x = np.array([[5.0, nan], [1.0, 2.0]])
    for op in ("max", "min", "avg", "sum", "lp"):
        assert np.isnan(pool(x, 2, op=op)).all(), op
        np.testing.assert_array_equal(pool(x, (1, 2), op=op)[1], pool(x[1:], (1, 2), op=op)[0])
    np.testing.assert_array_equal(pool(x, (2, 1), op="max"), [[5.0, nan]])  # a NaN last in its column
    np.testing.assert_array_equal(adaptive_pool(x, 1, op="max"), [[nan]])
    np.testing.assert_array_equal(adaptive_pool(x, (2, 1), op="min"), [[nan], [1.0]])
    # the +inf padding of min pooling and −inf of max never hide a NaN at the edge
    np.testing.assert_array_equal(pool(np.array([nan, 1.0, 2.0]), 3, padding=1, ndim=1, op="min"), [nan])
    assert np.isnan(pool(np.array([np.inf, -np.inf]), 2, ndim=1, op="avg")).all()  # inf − inf
    # a window cut by padding starts its sum from 0, not from the line's first value (−inf − −inf)
    np.testing.assert_array_equal(pool(np.array([-np.inf, 1.0, 2.0]), 2, padding=1, ndim=1, op="sum"),
                                  [-np.inf, 3.0])
    np.testing.assert_array_equal(adaptive_pool(np.array([np.inf, 1.0, 2.0]), 2, ndim=1, op="sum"),
                                  [np.inf, 3.0])


def test_lp_reference_scales_a_ceil_mode_overhang_as_pytorch():
    """The fresh-machine run's failing kind: an lp window hanging over the end under ceil_mode."""
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    got = pool(x, (2,), stride=(2,), op="lp", p=2.0, ndim=1, ceil_mode=True)
    expected = reference_pool(x, (2,), (2,), (0,), (1,), "lp", True, True, 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[-1] == np.sqrt(25.0 * 2)  # avg_pool's 25/1, times the area 2
