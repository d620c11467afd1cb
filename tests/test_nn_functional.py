"""Every op of convcli.nn.functional: forward against an independent reference, backward
against central finite differences in float64, over randomized shapes/strides/paddings/
dilations/groups."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from gradients import numeric_grad
from hypothesis import assume, given
from hypothesis import strategies as st

from convcli.nn import functional as F


def check_grads(forward, backward, inputs: list[np.ndarray], rng: np.random.Generator) -> None:
    """Compare backward's gradients of sum(out·R) with finite differences, input by input."""
    out, cache = forward(*inputs)
    weights = rng.standard_normal(out.shape)
    grads = backward(weights, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def loss() -> float:
        return float((forward(*inputs)[0] * weights).sum())

    for value, grad in zip(inputs, grads, strict=False):
        if grad is None:
            continue
        np.testing.assert_allclose(grad, numeric_grad(loss, value), rtol=1e-5, atol=1e-6)


def reference_conv2d(x, w, b, stride, padding, dilation, groups):
    """Tap-by-tap sum over shifted slices: an implementation independent of im2col."""
    (pt, pb), (pl, pr) = padding
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, c_in, hp, wp = xp.shape
    c_out, c_g, kh, kw = w.shape
    ho = (hp - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wp - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, c_out, ho, wo))
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for c in range(c_g):
            for i in range(kh):
                for j in range(kw):
                    r0, c0 = i * dilation[0], j * dilation[1]
                    patch = xp[:, g * c_g + c, r0:r0 + stride[0] * (ho - 1) + 1:stride[0],
                               c0:c0 + stride[1] * (wo - 1) + 1:stride[1]]
                    y[:, o] += w[o, c, i, j] * patch
    return y + (0 if b is None else b.reshape(1, -1, 1, 1))


conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "groups": st.sampled_from([1, 2]), "cg": st.integers(1, 2),
    "og": st.integers(1, 2), "h": st.integers(1, 7), "w": st.integers(3, 7),
    "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "dilation": st.tuples(st.integers(1, 2), st.integers(1, 2)),
    "padding": st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                         st.tuples(st.integers(0, 2), st.integers(0, 2))),
    "bias": st.booleans(), "seed": st.integers(0, 2**31),
})


def _fits(case) -> bool:
    h_span = case["dilation"][0] * (case["kh"] - 1) + 1
    w_span = case["dilation"][1] * (case["kw"] - 1) + 1
    return (case["h"] + sum(case["padding"][0]) >= h_span) and (case["w"] + sum(case["padding"][1]) >= w_span)


def _conv_inputs(case):
    rng = np.random.default_rng(case["seed"])
    c_in, c_out = case["cg"] * case["groups"], case["og"] * case["groups"]
    x = rng.standard_normal((case["n"], c_in, case["h"], case["w"]))
    w = rng.standard_normal((c_out, case["cg"], case["kh"], case["kw"]))
    b = rng.standard_normal(c_out) if case["bias"] else None
    return rng, x, w, b


@given(conv_cases)
def test_conv2d_forward_matches_tap_by_tap_reference(case):
    assume(_fits(case))
    _, x, w, b = _conv_inputs(case)
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    y, _ = F.conv2d_forward(x, w, b, *args)
    np.testing.assert_allclose(y, reference_conv2d(x, w, b, *args), rtol=1e-10, atol=1e-10)


@given(conv_cases)
def test_conv2d_backward_matches_finite_differences(case):
    assume(_fits(case))
    rng, x, w, b = _conv_inputs(case)
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    inputs = [x, w] + ([b] if b is not None else [])

    def forward(x, w, b=None):
        return F.conv2d_forward(x, w, b, *args)

    check_grads(forward, F.conv2d_backward, inputs, rng)


def test_conv2d_matches_scipy_correlate():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 9, 11))
    w = rng.standard_normal((1, 1, 3, 4))
    y, _ = F.conv2d_forward(x, w, None)
    np.testing.assert_allclose(y[0, 0], scipy.signal.correlate2d(x[0, 0], w[0, 0], mode="valid"), rtol=1e-12)


@given(conv_cases, st.integers(0, 2))
def test_conv_transpose2d_is_the_adjoint_of_conv2d(case, output_padding):
    """<convT(y), x> == <y, conv(x)> for the same weight: the definition of a transposed convolution."""
    assume(_fits(case))
    rng, x, w, _ = _conv_inputs(case)
    stride, padding, dilation, groups = case["stride"], case["padding"], case["dilation"], case["groups"]
    op = tuple(min(output_padding, max(s, d) - 1) for s, d in zip(stride, dilation, strict=True))
    y, _ = F.conv2d_forward(x, w, None, stride, padding, dilation, groups)
    dy = rng.standard_normal(y.shape)
    spans = (case["kh"], case["kw"])
    transposed = [(n - 1) * s - sum(p) + d * (k - 1) + o + 1
                  for n, s, p, d, k, o in zip(y.shape[2:], stride, padding, dilation, spans, op, strict=True)]
    if min(transposed) < 1:  # the padding eats the whole transposed output: refused, nothing to check
        with pytest.raises(ValueError, match="transposed output size"):
            F.conv_transpose2d_forward(dy, w, None, stride, padding, op, dilation, groups)
        return
    xt, _ = F.conv_transpose2d_forward(dy, w, None, stride, padding, op, dilation, groups)
    assert list(xt.shape[2:]) == transposed
    x2 = rng.standard_normal(xt.shape)
    y2, _ = F.conv2d_forward(x2, w, None, stride, padding, dilation, groups)
    assume(y2.shape == dy.shape)  # output_padding beyond the stride changes the size of the round trip
    assert np.isclose((xt * x2).sum(), (dy * y2).sum())


@given(conv_cases, st.integers(0, 2))
def test_conv_transpose2d_backward_matches_finite_differences(case, output_padding):
    assume(_fits(case))
    rng, x, w, b = _conv_inputs(case)
    stride, padding, dilation, groups = case["stride"], case["padding"], case["dilation"], case["groups"]
    # up to max(stride, dilation) − 1, as PyTorch allows: >= stride when dilation > stride
    op = tuple(min(output_padding, max(s, d) - 1) for s, d in zip(stride, dilation, strict=True))
    y, _ = F.conv2d_forward(x, w, None, stride, padding, dilation, groups)
    # transposed weight layout: (C_in of the transposed layer, C_out/g, kh, kw) = conv weight
    bias = rng.standard_normal(w.shape[1] * groups) if b is not None else None
    inputs = [rng.standard_normal(y.shape), w] + ([bias] if bias is not None else [])

    def forward(x, w, b=None):
        return F.conv_transpose2d_forward(x, w, b, stride, padding, op, dilation, groups)

    try:
        forward(*inputs)
    except ValueError as error:  # padding larger than the transposed output: refused, nothing to check
        assert "transposed output size" in str(error)
        return
    check_grads(forward, F.conv_transpose2d_backward, inputs, rng)


def test_linear_forward_and_backward():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    y, _ = F.linear_forward(x, w, b)
    np.testing.assert_allclose(y, np.einsum("ni,oi->no", x, w) + b)
    check_grads(F.linear_forward, F.linear_backward, [x, w, b], rng)


pool_cases = st.fixed_dictionaries({
    "h": st.integers(2, 7), "w": st.integers(2, 7), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)), "pad": st.tuples(st.integers(0, 1),
                                                                                st.integers(0, 1)),
    "ceil": st.booleans(), "include_pad": st.booleans(), "seed": st.integers(0, 2**31),
})


def _pool_ok(case) -> bool:
    # PyTorch: padding at most half the kernel
    return case["pad"][0] * 2 <= case["kh"] and case["pad"][1] * 2 <= case["kw"] and \
        case["h"] + 2 * case["pad"][0] >= case["kh"] and case["w"] + 2 * case["pad"][1] >= case["kw"]


def reference_pool(x, kernel, stride, pad, ceil, op, include_pad=True):
    """Window by window, with PyTorch's window bounds."""
    from convcli.sizes import output_size
    n, c, h, w = x.shape
    ho = output_size(h, kernel[0], stride=stride[0], padding=pad[0], ceil_mode=ceil)
    wo = output_size(w, kernel[1], stride=stride[1], padding=pad[1], ceil_mode=ceil)
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
            r1, c1 = min(r0 + kernel[0], h + pad[0]), min(c0 + kernel[1], w + pad[1])
            block = x[:, :, max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)]
            if op == "max":
                y[:, :, i, j] = block.max(axis=(2, 3))
            else:
                count = (r1 - r0) * (c1 - c0) if include_pad else block.shape[2] * block.shape[3]
                y[:, :, i, j] = block.sum(axis=(2, 3)) / count
    return y


@given(pool_cases)
def test_max_pool2d_forward_and_backward(case):
    assume(_pool_ok(case))
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((2, 2, case["h"], case["w"]))
    kernel, pad = (case["kh"], case["kw"]), tuple((p, p) for p in case["pad"])

    def forward(x):
        return F.max_pool2d_forward(x, kernel, case["stride"], pad, (1, 1), case["ceil"])

    np.testing.assert_allclose(forward(x)[0], reference_pool(x, kernel, case["stride"], case["pad"],
                                                             case["ceil"], "max"))
    check_grads(forward, F.max_pool2d_backward, [x], rng)


@given(pool_cases)
def test_avg_pool2d_forward_and_backward(case):
    assume(_pool_ok(case))
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((1, 2, case["h"], case["w"]))
    kernel, pad = (case["kh"], case["kw"]), tuple((p, p) for p in case["pad"])

    def forward(x):
        return F.avg_pool2d_forward(x, kernel, case["stride"], pad, case["ceil"], case["include_pad"])

    expected = reference_pool(x, kernel, case["stride"], case["pad"], case["ceil"], "avg",
                              case["include_pad"])
    # atol: a window mean near 0 is a difference of O(1) sums, off by an ulp of those (5.6e-17)
    np.testing.assert_allclose(forward(x)[0], expected, rtol=1e-12, atol=1e-15)
    check_grads(forward, F.avg_pool2d_backward, [x], rng)


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from(["avg", "max"]), st.integers(0, 2**31))
def test_adaptive_pool2d_forward_and_backward(h, w, oh, ow, op, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, h, w))

    def forward(x):
        return F.adaptive_pool2d_forward(x, (oh, ow), op)

    y, _ = forward(x)
    for i in range(oh):
        for j in range(ow):
            r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
            c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            block = x[:, :, r0:r1, c0:c1]
            ref = block.max(axis=(2, 3)) if op == "max" else block.mean(axis=(2, 3))
            np.testing.assert_allclose(y[:, :, i, j], ref, rtol=1e-12)
    check_grads(forward, F.adaptive_pool2d_backward, [x], rng)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 2, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    mean0, var0 = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5

    def forward(x, gamma, beta):
        return F.batch_norm_forward(x, gamma, beta, mean0.copy(), var0.copy(), training)

    axes = tuple(a for a in range(x.ndim) if a != 1)
    view = [1] * x.ndim
    view[1] = -1
    mean, var = (x.mean(axis=axes), x.var(axis=axes)) if training else (mean0, var0)
    expected = (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + 1e-5) * gamma.reshape(view) \
        + beta.reshape(view)
    np.testing.assert_allclose(forward(x, gamma, beta)[0], expected, rtol=1e-10)
    check_grads(forward, F.batch_norm_backward, [x, gamma, beta], rng)
    if training:
        running_mean, running_var = mean0.copy(), var0.copy()
        F.batch_norm_forward(x, gamma, beta, running_mean, running_var, True)
        np.testing.assert_allclose(running_mean, 0.9 * mean0 + 0.1 * mean)
        np.testing.assert_allclose(running_var, 0.9 * var0 + 0.1 * x.var(axis=axes, ddof=1))


def test_relu():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4)) * 3
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    np.testing.assert_array_equal(F.relu_forward(x)[0], np.maximum(x, 0))
    check_grads(F.relu_forward, F.relu_backward, [x], rng)


def test_dropout_scales_kept_units_and_is_identity_in_evaluation():
    rng = np.random.default_rng(4)
    x = np.ones((1000, 10))
    y, cache = F.dropout_forward(x, 0.3, True, rng)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    np.testing.assert_array_equal(F.dropout_backward(np.ones_like(x), cache), y)
    assert F.dropout_forward(x, 0.3, False, rng)[0] is x


def test_cross_entropy_matches_direct_formula_and_finite_differences():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 2])
    loss, cache = F.cross_entropy_forward(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.isclose(loss, -np.log(p[np.arange(4), labels]).mean())
    numeric = numeric_grad(lambda: F.cross_entropy_forward(logits, labels)[0], logits)
    np.testing.assert_allclose(F.cross_entropy_backward(cache), numeric, rtol=1e-6, atol=1e-8)


def test_cross_entropy_is_stable_for_huge_logits():
    loss, _ = F.cross_entropy_forward(np.array([[1000.0, 0.0, -1000.0]]), np.array([0]))
    assert loss == 0.0
    loss, _ = F.cross_entropy_forward(np.array([[1000.0, 0.0]], dtype=np.float32), np.array([1]))
    assert np.isclose(loss, 1000.0)


@given(conv_cases, st.integers(2, 5))
def test_ops_split_over_threads_equal_the_serial_result(case, threads):
    """With every op forced to split its batch (threshold 0, 2–5 threads) each result is
    bit-for-bit the one-call result: chunks own their images, batch sums run afterwards."""
    assume(_fits(case))
    _, x, w, b = _conv_inputs(case)
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])

    def everything():
        y, cache = F.conv2d_forward(x, w, b, *args)
        dy = np.cos(y)
        r, relu_cache = F.relu_forward(y)
        no_padding = ((0, 0), (0, 0))  # so the transposed size is never 0
        t, t_cache = F.conv_transpose2d_forward(y, w, None, case["stride"], no_padding, (0, 0), *args[2:])
        tiled = np.tile(y, (1, 1, 2, 2))  # at least 2×2, so both windows fit
        pooled, pool_cache = F.max_pool2d_forward(tiled, (2, 2), (2, 2), ceil_mode=True)
        wide, wide_cache = F.max_pool2d_forward(tiled, (3, 2), (1, 2), ((1, 1), (0, 1)), (1, 2), True)
        return (y, *F.conv2d_backward(dy, cache)[:2], r, F.relu_backward(dy, relu_cache), t,
                *F.conv_transpose2d_backward(np.sin(t), t_cache)[:2],
                pooled, F.max_pool2d_backward(np.cos(pooled), pool_cache),
                wide, F.max_pool2d_backward(np.cos(wide), wide_cache))

    serial = everything()
    saved = F.PARALLEL_NS, F.THREADS
    F.PARALLEL_NS, F.THREADS = 0, threads
    try:
        split = everything()
    finally:
        F.PARALLEL_NS, F.THREADS = saved
    for one, many in zip(serial, split, strict=True):
        np.testing.assert_array_equal(one, many)


# ---------------------------------------------------------------- NaN in max pooling
def reference_max_pool_with_where(x, kernel, stride, pad, dilation, ceil):
    """Tap by tap: np.max of each window (NaN propagates) and the input position its gradient
    goes to — the last NaN of the window in row-major order if it has one (PyTorch's CPU
    kernel's index), else the first maximum. Padding taps are −inf and never chosen here."""
    from convcli.sizes import output_size
    n, c, h, w = x.shape
    ho, wo = (output_size(s, k, stride=st_, padding=p, dilation=d, ceil_mode=ceil)
              for s, k, st_, p, d in zip((h, w), kernel, stride, pad, dilation, strict=True))
    y = np.empty((n, c, ho, wo))
    where = np.empty((n, c, ho, wo, 2), dtype=np.int64)
    for b, ch, i, j in np.ndindex(n, c, ho, wo):
        taps = [(i * stride[0] - pad[0] + p * dilation[0], j * stride[1] - pad[1] + q * dilation[1])
                for p in range(kernel[0]) for q in range(kernel[1])]
        values = np.array([x[b, ch, r, s] if 0 <= r < h and 0 <= s < w else -np.inf for r, s in taps])
        y[b, ch, i, j] = np.max(values)
        nans = np.flatnonzero(np.isnan(values))
        where[b, ch, i, j] = taps[nans[-1] if len(nans) else int(np.argmax(values))]
    return y, where


@st.composite
def nan_pool_cases(draw):
    fast = draw(st.booleans())  # the dedicated 2×2/stride-2 kernel, or the general one
    kernel = (2, 2) if fast else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (2, 2) if fast else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if fast else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    h, w = (draw(st.integers(s, s + 6)) for s in span)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.standard_normal((2, 2, h, w))
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.1, 0.3, 1.0]))] = np.nan
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.1]))] = np.inf  # ties between +inf: first wins
    return x.astype(dtype), kernel, stride, pad, dilation, draw(st.booleans())


@given(nan_pool_cases())
def test_max_pool2d_propagates_nan_and_routes_its_gradient_there(case):
    x, kernel, stride, pad, dilation, ceil = case
    y, cache = F.max_pool2d_forward(x, kernel, stride, tuple((p, p) for p in pad), dilation, ceil)
    expected, where = reference_max_pool_with_where(x, kernel, stride, pad, dilation, ceil)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, expected.astype(x.dtype))  # NaN where the window has one
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(x.dtype)
    dx = F.max_pool2d_backward(dy, cache)
    expected_dx = np.zeros(x.shape)
    for b, ch, i, j in np.ndindex(*y.shape):
        expected_dx[b, ch, where[b, ch, i, j, 0], where[b, ch, i, j, 1]] += dy[b, ch, i, j]
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=1e-6)  # float32 sums of overlaps


def test_max_pool2d_nan_examples():
    nan = np.nan
    x = np.array([[[[1.0, nan], [nan, 0.0]]]], dtype=np.float32)  # the 2×2 fast path
    y, cache = F.max_pool2d_forward(x, (2, 2), (2, 2))
    assert np.isnan(y).all()
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones_like(y), cache), [[[[0, 0], [1, 0]]]])
    x = np.array([[[[1.0, nan, nan], [2, 3, nan], [0, 0, 0]]]])  # the general kernel
    y, cache = F.max_pool2d_forward(x, (3, 3), (1, 1))
    assert np.isnan(y).all()
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones_like(y), cache)[0, 0],
                                  [[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    y, _ = F.max_pool2d_forward(np.array([[[[nan, 5.0], [7.0, 6.0]]]]), (1, 2), (1, 2))
    np.testing.assert_array_equal(y[0, 0, :, 0], [nan, 7.0])  # a NaN first in its window stays


def test_max_pool1d_layer_propagates_nan():
    from convcli.nn.spec import parse_spec

    layer = parse_spec("MaxPool1d(4, stride=2, padding=1)", (1, 6)).layers[0]
    x = np.array([[[1.0, np.nan, np.nan, 2.0, 0.5, 3.0]]], dtype=np.float32)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, [[[np.nan, np.nan, 3.0]]])  # windows -1..2, 1..4, 3..6
    dx = layer.backward(np.array([[[1.0, 10.0, 100.0]]], dtype=np.float32))
    np.testing.assert_array_equal(dx, [[[0, 0, 11, 0, 0, 100]]])  # both NaN windows: their last NaN


def test_avg_and_adaptive_pools_propagate_nan():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    averages = F.avg_pool2d_forward(x, (2, 2), (2, 2))[0][0, 0]
    np.testing.assert_array_equal(averages, [[np.nan, 4.5], [10.5, 12.5]])
    for op in ("avg", "max"):
        y, cache = F.adaptive_pool2d_forward(x, (2, 2), op)
        assert np.isnan(y[0, 0]).tolist() == [[True, False], [False, False]], op
    assert F.adaptive_pool2d_backward(np.ones((1, 1, 2, 2)), cache)[0, 0, 0, 1] == 1  # max: to the NaN


def test_adaptive_max_pool_sends_a_nan_windows_gradient_to_its_last_nan():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = np.nan  # both in the top-left bin of a 2×2 output
    y, cache = F.adaptive_pool2d_forward(x, (2, 2), op="max")
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 1] == 15
    dx = F.adaptive_pool2d_backward(np.ones_like(y), cache)
    assert dx[0, 0, 1, 1] == 1 and dx[0, 0, 0, 0] == 0
