"""Where two parts of convcli compute the same thing, they agree, over random geometries.

- the engine's correlation (``convcli.convolve``, tap tables or FFT) plus a bias equals the
  training convolution (``nn.functional``, im2col + GEMM), to a rounding bound derived below;
- the engine's pooling (``convcli pool``) equals the training layers' pooling (max and avg with
  padding, ``ceil_mode``, ``count_include_pad``, dilation; adaptive), and both accept exactly the
  windows PyTorch accepts;
- every layer's ``output_shape`` is the shape its ``forward`` returns (and ``backward`` gives the
  input's shape back), for every class the spec language knows.

Tolerances. A sum of K products computed in any order (with or without fused multiply-adds)
is within γ_K·Σ|terms| of the exact sum, γ_K = K·u/(1 − K·u), u the unit roundoff of the dtype
(Higham, Accuracy and Stability of Numerical Algorithms, §3.1). Two such implementations of
one output are within 2·γ_{K+1}·(Σ|x·w| + |b|) of each other: the bound is computed per output
from the same convolution of |x| with |w|. An FFT convolution's error is bounded through norms
instead (Higham §24.1: a length-L FFT is accurate to about log2(L)·η relative to the 2-norm, η a
few u; through the transforms of x and w, their product and the inverse transform the error of
one output is within about 3·log2(L)·η·‖x‖₁·‖w‖₁): we allow 32·log2(L)·u·Σ_c‖x_c‖₁·‖w_c‖₁.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from convcli.engine.convolve import convolve
from convcli.engine.pooling import adaptive_pool, pool, pool_plan
from convcli.nn import functional as F
from convcli.nn.layers import LAYERS
from convcli.nn.spec import parse_spec


def gamma(terms: int, dtype) -> float:
    u = np.finfo(dtype).eps / 2
    return terms * u / (1 - terms * u)


# ---------------------------------------------------------------- convolution: engine vs training


@st.composite
def conv_cases(draw):
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    hw = tuple(max(1, span - sum(p) + draw(st.integers(0, 6)))
               for span, p in zip(spans, padding, strict=True))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c_in, *hw)).astype(dtype)
    w = rng.standard_normal((c_out, c_in, *kernel)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b, stride, padding, dilation


def fft_allowance(x, w, padding, dtype) -> np.ndarray:
    """32·log2(L)·u·Σ_c ‖x_{n,c}‖₁·‖w_{o,c}‖₁ per (image, output channel), as (N, C_out, 1, 1)."""
    padded = [n + sum(p) for n, p in zip(x.shape[2:], padding, strict=True)]
    log_length = sum(math.log2(2 * size) for size in padded)  # scipy's fast lengths are < 2·size
    norms = np.abs(x.astype(np.float64)).sum(axis=(2, 3)) @ np.abs(w.astype(np.float64)).sum(axis=(2, 3)).T
    return (32 * log_length * np.finfo(dtype).eps / 2 * norms)[:, :, None, None]


@given(conv_cases(), st.sampled_from(["direct", "fft"]))
def test_engine_correlation_plus_bias_equals_the_training_convolution(case, method):
    x, w, b, stride, padding, dilation = case
    trained, _ = F.conv2d_forward(x, w, b, stride, padding, dilation)
    engine = convolve(x, w, padding=padding, stride=stride, dilation=dilation, correlate=True,
                      method=method) + b[None, :, None, None]
    assert engine.dtype == trained.dtype and engine.shape == trained.shape
    # Σ|x·w| + |b| for every output, in float64, from the same (independent of the two) GEMM path
    magnitude, _ = F.conv2d_forward(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                    np.abs(b).astype(np.float64), stride, padding, dilation)
    taps = w[0].size
    bound = 2 * gamma(taps + 1, x.dtype) * magnitude
    if method == "fft":
        bound = bound + fft_allowance(x, w, padding, x.dtype)
    difference = np.abs(engine.astype(np.float64) - trained.astype(np.float64))
    assert np.all(difference <= bound), float((difference / bound).max())


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 3), st.integers(0, 2**32 - 1))
def test_engine_1d_channel_mixing_equals_a_conv1d_layer(c_in, c_out, k, stride, dilation, pad, seed):
    length = dilation * (k - 1) + 1 + seed % 7
    (layer,) = parse_spec(f"Conv1d({c_in}, {c_out}, {k}, stride={stride}, padding={pad}, "
                          f"dilation={dilation})", (c_in, length)).layers
    layer.init_params(np.random.default_rng(seed), dtype="float64")
    x = np.random.default_rng(seed + 1).standard_normal((2, c_in, length))
    engine = convolve(x, layer.params["weight"], padding=pad, stride=stride, dilation=dilation,
                      correlate=True, method="direct") + layer.params["bias"][None, :, None]
    layer_out = layer.forward(x)
    magnitude = parse_spec(f"Conv1d({c_in}, {c_out}, {k}, stride={stride}, padding={pad}, "
                           f"dilation={dilation})", (c_in, length)).layers[0]
    magnitude.params = {name: np.abs(value) for name, value in layer.params.items()}
    bound = 2 * gamma(c_in * k + 1, np.float64) * magnitude.forward(np.abs(x))
    assert np.all(np.abs(engine - layer_out) <= bound)


# ---------------------------------------------------------------- pooling: engine vs training


@st.composite
def pool_cases(draw):
    ndim = draw(st.sampled_from([1, 2]))
    op = draw(st.sampled_from(["max", "avg"]))
    k = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    s = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    d = tuple(draw(st.integers(1, 3)) if op == "max" else 1 for _ in range(ndim))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    spatial = tuple(max(1, dd * (kk - 1) + 1 - 2 * pp + draw(st.integers(0, 8)))
                    for kk, dd, pp in zip(k, d, p, strict=True))
    channels = draw(st.integers(1, 3))
    ceil_mode, count_include_pad = draw(st.booleans()), draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((2, channels, *spatial))
    return x.astype(dtype), op, k, s, p, d, ceil_mode, count_include_pad


def pool_statement(op, k, s, p, d, ceil_mode, count_include_pad) -> str:
    ndim = len(k)
    if op == "max":
        return f"MaxPool{ndim}d({k}, stride={s}, padding={p}, dilation={d}, ceil_mode={ceil_mode})"
    return f"AvgPool{ndim}d({k}, stride={s}, padding={p}, ceil_mode={ceil_mode}, " \
           f"count_include_pad={count_include_pad})"


@given(pool_cases())
def test_engine_pooling_equals_the_training_layers(case):
    x, op, k, s, p, d, ceil_mode, count_include_pad = case
    ndim = len(k)
    (layer,) = parse_spec(pool_statement(op, k, s, p, d, ceil_mode, count_include_pad), x.shape[1:]).layers
    layer.init_params(None)
    trained = layer.forward(x)
    engine = pool(x, k, stride=s, padding=p, dilation=d, op=op, ndim=ndim, ceil_mode=ceil_mode,
                  count_include_pad=count_include_pad)
    plan = pool_plan(x.shape, k, stride=s, padding=p, dilation=d, op=op, ndim=ndim, ceil_mode=ceil_mode)
    assert layer.output_shape(x.shape[1:])[-ndim:] == plan.output_shape == engine.shape[-ndim:]
    assert engine.shape == trained.shape and engine.dtype == trained.dtype
    if op == "max":  # a maximum picks one of the inputs: exactly equal
        np.testing.assert_array_equal(engine, trained)
        return
    # both sum the same window (in any order) and divide by the same count: within
    # γ_{K+4}·Σ|x|/count of the exact mean each (K taps; a division, or two reciprocals and two
    # products; the cast of a float64 accumulator back to float32)
    magnitude = layer.forward(np.abs(x).astype(np.float64))
    bound = 2 * gamma(math.prod(k) + 4, x.dtype) * magnitude
    assert np.all(np.abs(engine.astype(np.float64) - trained) <= bound)


@given(st.sampled_from([1, 2]), st.sampled_from(["max", "avg"]), st.data())
def test_engine_adaptive_pooling_equals_the_training_layers(ndim, op, data):
    spatial = tuple(data.draw(st.integers(1, 12)) for _ in range(ndim))
    target = tuple(data.draw(st.integers(1, 14)) for _ in range(ndim))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal((2, 3, *spatial))
    x = x.astype(dtype)
    name = f"Adaptive{'Max' if op == 'max' else 'Avg'}Pool{ndim}d"
    (layer,) = parse_spec(f"{name}({target})", x.shape[1:]).layers
    layer.init_params(None)
    trained = layer.forward(x)
    engine = adaptive_pool(x, target, op=op, ndim=ndim)
    assert engine.shape == trained.shape == (2, *layer.output_shape(x.shape[1:]))
    if op == "max":
        np.testing.assert_array_equal(engine, trained)
        return
    widest = math.prod(-(-n // t) + 1 for n, t in zip(spatial, target, strict=True))
    magnitude = layer.forward(np.abs(x).astype(np.float64))
    assert np.all(np.abs(engine.astype(np.float64) - trained) <= 2 * gamma(widest + 4, dtype) * magnitude)


@given(st.integers(1, 6), st.integers(0, 4), st.integers(1, 3), st.sampled_from(["max", "avg"]))
def test_engine_and_layers_accept_the_same_windows(k, padding, dilation, op):
    """PyTorch's rule, checked against torch 2.13: padding at most half the window size k (not of
    the dilated span: MaxPool2d(3, padding=2, dilation=2) is refused)."""
    dilation = dilation if op == "max" else 1
    pytorch_accepts = 2 * padding <= k
    statement = pool_statement(op, (k, k), (1, 1), (padding, padding), (dilation, dilation), False, True)
    x = np.zeros((1, 40, 40))
    try:
        parse_spec(statement, x.shape)
        layer_accepts = True
    except ValueError:
        layer_accepts = False
    try:
        pool(x, k, stride=1, padding=padding, dilation=dilation, op=op)
        engine_accepts = True
    except ValueError:
        engine_accepts = False
    assert layer_accepts == engine_accepts == pytorch_accepts


def test_the_case_that_disagreed_is_refused_by_every_command():
    message = "pool padding 2 is more than half the window size 3"
    with pytest.raises(ValueError, match=message):
        parse_spec("MaxPool2d(3, stride=1, padding=2, dilation=2)", (1, 10, 10))
    with pytest.raises(ValueError, match=message):
        pool(np.zeros((10, 10)), 3, stride=1, padding=2, dilation=2)


# ---------------------------------------------------------------- every layer: output_shape vs forward


def _ints(draw, ndim: int, low: int, high: int) -> tuple[int, ...]:
    return tuple(draw(st.integers(low, high)) for _ in range(ndim))


def _conv(draw, name: str):
    ndim = int(name[-2])
    lazy, transposed = name.startswith("Lazy"), "Transpose" in name
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    k, s, d = _ints(draw, ndim, 1, 3), _ints(draw, ndim, 1, 2), _ints(draw, ndim, 1, 2)
    shape = (c_in, *_ints(draw, ndim, 3, 8))
    channels = "" if lazy else f"{c_in}, "
    bias = draw(st.booleans())
    if transposed:
        p = _ints(draw, ndim, 0, 1)
        output_padding = tuple(draw(st.integers(0, max(ss, dd) - 1)) for ss, dd in zip(s, d, strict=True))
        return (f"{name}({channels}{c_out}, {k}, stride={s}, padding={p}, output_padding={output_padding}, "
                f"groups={groups}, bias={bias}, dilation={d})"), shape
    padding = draw(st.sampled_from(["valid", "same", *_ints(draw, 1, 0, 2)]))
    if padding == "same":
        s = (1,) * ndim
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "circular"]))
    return (f"{name}({channels}{c_out}, {k}, stride={s}, padding={padding!r}, dilation={d}, "
            f"groups={groups}, bias={bias}, padding_mode={mode!r})"), shape


def _pool(draw, name: str):
    ndim = int(name[-2])
    spatial = _ints(draw, ndim, 1, 9)
    shape = draw(st.sampled_from([spatial, (draw(st.integers(1, 3)), *spatial)]))
    if name.startswith("Adaptive"):
        target = tuple(draw(st.one_of(st.none(), st.integers(1, 10))) for _ in range(ndim))
        return f"{name}({target})", shape
    k = _ints(draw, ndim, 1, 3)
    s = draw(st.one_of(st.none(), st.tuples(*(st.integers(1, 3) for _ in range(ndim)))))
    ceil_mode = draw(st.booleans())
    if name.startswith("LP"):
        return f"{name}({draw(st.sampled_from([1, 2, 3.5]))}, {k}, stride={s}, ceil_mode={ceil_mode})", shape
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    if name.startswith("Max"):
        d = _ints(draw, ndim, 1, 2)
        return f"{name}({k}, stride={s}, padding={p}, dilation={d}, ceil_mode={ceil_mode})", shape
    extra = f", divisor_override={draw(st.sampled_from([None, 3]))}" if ndim == 2 else ""
    return (f"{name}({k}, stride={s}, padding={p}, ceil_mode={ceil_mode}, "
            f"count_include_pad={draw(st.booleans())}{extra})"), shape


def _norm(draw, name: str):
    channels = draw(st.integers(1, 3))
    shape = (channels, 5, 4) if name.endswith("2d") else draw(st.sampled_from([(channels,), (channels, 6)]))
    features = "" if name.startswith("Lazy") else f"{channels}, "
    return (f"{name}({features}affine={draw(st.booleans())}, "
            f"track_running_stats={draw(st.booleans())})"), shape


def _any_shape(draw):
    return _ints(draw, draw(st.integers(1, 3)), 1, 5)


def _elementwise(draw, name: str):
    shape = _any_shape(draw)
    if name == "Softmax":
        return f"Softmax(dim={draw(st.integers(-len(shape) - 1, len(shape)))})", shape
    if name == "LeakyReLU":
        return "LeakyReLU(0.1)", shape
    if name == "Dropout":
        return f"Dropout({draw(st.sampled_from([0.0, 0.3, 1.0]))})", shape
    return f"{name}()", shape


def _linear(draw, name: str):
    shape = _any_shape(draw)
    out = draw(st.integers(1, 4))
    return (f"LazyLinear({out})" if name == "LazyLinear" else f"Linear({shape[-1]}, {out})"), shape


def _flatten(draw, name: str):
    shape = _any_shape(draw)
    start = draw(st.integers(1, len(shape)))
    return f"Flatten({start}, {draw(st.integers(start, len(shape)))})", shape


def _block(draw, name: str):
    planes, stride = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2]))
    shape = (draw(st.integers(1, 4)), 6, 5)
    if name == "InvertedResidual":
        return f"InvertedResidual({shape[0]}, {planes}, {stride}, {draw(st.sampled_from([1, 2]))})", shape
    return f"{name}({shape[0]}, {planes}, {stride})", shape


ELEMENTWISE = ("ReLU", "ReLU6", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Identity", "Dropout")


def _maker(name: str):
    """The geometry drawer of a layer class; a class added without one fails the test below."""
    if "Conv" in name:
        return _conv
    if "Pool" in name:
        return _pool
    if "BatchNorm" in name:
        return _norm
    if name in ("Linear", "LazyLinear"):
        return _linear
    if name == "Flatten":
        return _flatten
    if name in ("BasicBlock", "Bottleneck", "InvertedResidual"):
        return _block
    if name in ELEMENTWISE:
        return _elementwise
    raise AssertionError(f"no geometry for the layer class {name}: add one to tests/test_equalities.py")


@pytest.mark.parametrize("name", sorted(LAYERS))
@given(data=st.data())
def test_each_layers_output_shape_is_what_its_forward_returns(name, data):
    statement, shape = _maker(name)(data.draw, name)
    try:
        (layer,) = parse_spec(statement, shape).layers
    except ValueError:
        reject()  # a geometry the layer refuses (a window wider than the input...): nothing to run
    assert type(layer).__name__ == name
    expected = layer.output_shape(shape)
    assert expected == layer.out_shape
    x = np.random.default_rng(1).standard_normal((2, *shape))
    if not layer.supports_training:
        with pytest.raises(ValueError, match="cannot be trained by convcli"):
            layer.forward(x)
        return
    layer.init_params(np.random.default_rng(0), dtype="float64")
    training = data.draw(st.booleans())
    y = layer.forward(x, training=training)
    assert y.shape == (2, *expected)
    assert layer.backward(np.ones_like(y)).shape == x.shape
