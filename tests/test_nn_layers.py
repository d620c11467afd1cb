"""Training through the layer classes: per-layer and whole-network gradients against finite
differences (float64), PyTorch's initialization bounds, overfitting a tiny batch, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import central_difference, numeric_grad
from hypothesis import given, reject
from hypothesis import strategies as st

from convcli.nn import functional as F
from convcli.nn import layers as L
from convcli.nn.model import Model, backward, forward, init_network, named_grads, named_params
from convcli.nn.spec import parse_spec
from convcli.nn.train import TrainConfig, build_network, fit


def network_loss_and_grads(network, x, y):
    logits = forward(network, x, training=True)
    loss, cache = F.cross_entropy_forward(logits, y)
    backward(network, F.cross_entropy_backward(cache))
    return loss


def check_network_gradients(spec: str, input_shape, classes: int, seed: int, eps: float = 1e-6,
                            check_input: bool = True) -> None:
    """Every parameter (and the input) of a float64 network against central differences."""
    network = parse_spec(spec, input_shape)
    init_network(network, seed, dtype="float64")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, *input_shape))
    y = rng.integers(0, classes, 3)
    network_loss_and_grads(network, x, y)
    analytic = {k: v.copy() for k, v in named_grads(network).items()}
    dx = _input_grad(network, x, y)
    params = named_params(network)
    assert set(analytic) == set(params)

    def loss() -> float:
        return F.cross_entropy_forward(forward(network, x, training=True), y)[0]

    targets = list(params.items()) + ([("input", x)] if check_input else [])
    for name, value in targets:
        flat = value.reshape(-1)
        picks = rng.choice(flat.size, size=min(flat.size, 12), replace=False)
        for i in picks:
            numeric = central_difference(loss, flat, i, eps)
            got = (dx if name == "input" else analytic[name]).reshape(-1)[i]
            assert abs(got - numeric) <= 1e-5 + 1e-4 * abs(numeric), (name, i, got, numeric)


def _input_grad(network, x, y):
    logits = forward(network, x, training=True)
    _, cache = F.cross_entropy_forward(logits, y)
    grad = F.cross_entropy_backward(cache)
    from convcli.nn.model import logit_layers

    for layer in reversed(logit_layers(network)):
        grad = layer.backward(grad)
    return grad


layer_1d = st.sampled_from([
    "Conv1d(2, 4, {k}, stride={s}, padding={p}, dilation={d}, groups=2)",
    "Conv1d(2, 3, {k}, stride={s}, padding={p}, dilation={d}, bias=False)",
    "ConvTranspose1d(2, 4, {k}, stride={s}, padding={p}, dilation={d}, groups=2)",
    "MaxPool1d({k}, stride={s}, padding={hp}, dilation={d})",
    "AvgPool1d({k}, stride={s}, padding={hp}, count_include_pad=False)",
    "AdaptiveMaxPool1d(3)",
    "BatchNorm1d(2)",
    "LeakyReLU(0.2)",
])
layer_2d = st.sampled_from([
    "Conv2d(2, 4, ({k}, 2), stride=({s}, 1), padding={p}, dilation=({d}, 1), groups=2)",
    "ConvTranspose2d(2, 3, {k}, stride={s}, padding={p}, output_padding={op})",
    "MaxPool2d({k}, stride={s}, padding={hp}, ceil_mode=True)",
    "AvgPool2d({k}, stride={s}, padding={hp})",
    "AdaptiveAvgPool2d((2, 3))",
    "BatchNorm2d(2)",
    "Tanh()",
    "Sigmoid()",
])


@given(st.data(), st.integers(1, 3), st.integers(1, 2), st.integers(0, 1), st.integers(1, 2),
       st.integers(0, 2**31))
def test_each_layer_backward_matches_finite_differences(data, k, s, p, d, seed):
    ndim = data.draw(st.sampled_from([1, 2]))
    template = data.draw(layer_1d if ndim == 1 else layer_2d)
    layer = template.format(k=k, s=s, p=p, d=d, hp=min(p, k // 2), op=min(p, s - 1))
    shape = (2, 9) if ndim == 1 else (2, 7, 6)
    spec = f"{layer}; Flatten(); LazyLinear(3)"
    try:
        parse_spec(spec, shape)
    except ValueError:  # geometry the layer refuses (e.g. kernel wider than the input): nothing to train
        reject()
    check_network_gradients(spec, shape, 3, seed)


ACTIVATIONS = {  # each layer against an independent formula
    "ReLU()": lambda x: np.maximum(x, 0),
    "ReLU6()": lambda x: np.minimum(np.maximum(x, 0), 6),
    "LeakyReLU(0.2)": lambda x: np.where(x > 0, x, 0.2 * x),
    "Tanh()": np.tanh,
    "Sigmoid()": lambda x: 1 / (1 + np.exp(-x)),
    "Softmax(dim=1)": lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True),
    "Identity()": lambda x: x,
}


@pytest.mark.parametrize("statement", ACTIVATIONS)
def test_each_activation_forward_and_backward(statement):
    (layer,) = parse_spec(statement, (4, 5)).layers
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5)) * 4
    x[np.abs(x) < 1e-3] += 0.5  # keep away from the kinks at 0 and 6
    x[np.abs(x - 6) < 1e-3] += 0.5
    np.testing.assert_allclose(layer.forward(x), ACTIVATIONS[statement](x), rtol=1e-12, atol=1e-15)
    weights = rng.standard_normal(x.shape)
    layer.forward(x)
    grad = layer.backward(weights)
    numeric = numeric_grad(lambda: float((layer.forward(x) * weights).sum()), x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_every_activation_is_tested():
    activation_classes = {name for name, cls in L.LAYERS.items()
                          if cls.__module__ == "convcli.nn.layers.activation"}
    assert activation_classes == {statement.split("(")[0] for statement in ACTIVATIONS}


def test_whole_network_gradient():
    spec = """Conv2d(1, 4, 3, padding=1); BatchNorm2d(4); ReLU(); MaxPool2d(2)
    Conv2d(4, 4, 3, stride=2, padding=1, groups=2); LeakyReLU(); Dropout(0.0)
    AdaptiveAvgPool2d(2); Flatten(); Linear(16, 8); Tanh(); Linear(8, 3); Softmax(dim=1)"""
    check_network_gradients(spec, (1, 8, 8), 3, seed=7)


def test_whole_1d_network_gradient():
    spec = "Conv1d(1, 5, 5, stride=2, padding=1); ReLU(); Conv1d(5, 5, 3, stride=2, padding=1); Sigmoid()\n" \
           "ConvTranspose1d(5, 2, 3, stride=2); AvgPool1d(2); Flatten(); LazyLinear(4)"
    check_network_gradients(spec, (1, 20), 4, seed=3)


def test_dropout_gradient_uses_the_same_mask():
    network = parse_spec("Flatten(); Dropout(0.5); Linear(6, 2)", (6,))
    init_network(network, 0, dtype="float64")
    x = np.ones((4, 6))
    for layer in network.layers:
        layer.rng = np.random.default_rng(1)
    out = forward(network, x, training=True)
    dropout = network.layers[1]
    kept = dropout._cache["mask"] != 0
    grad = dropout.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad != 0, kept)
    assert np.all(forward(network, x, training=False) == forward(network, x, training=False))
    assert out.shape == (4, 2)


def test_pytorch_default_initialization_bounds():
    network = parse_spec("Conv2d(3, 8, 5); Flatten(); LazyLinear(10)", (3, 12, 12))
    init_network(network, 0)
    conv, linear = network["conv1"], network["linear1"]
    for layer, fan_in in ((conv, 3 * 25), (linear, 8 * 8 * 8)):
        bound = 1 / np.sqrt(fan_in)
        for name in ("weight", "bias"):
            values = layer.params[name]
            assert values.dtype == np.float32
            assert np.abs(values).max() <= bound
        # many weights: uniform over the whole range, not a narrower one
        assert np.abs(layer.params["weight"]).max() > 0.95 * bound
    init_network(network, 0, scheme="he")
    assert np.all(conv.params["bias"] == 0)
    assert abs(conv.params["weight"].std() - np.sqrt(2 / 75)) < 0.02


def test_batchnorm_running_stats_and_eval_mode():
    network = parse_spec("BatchNorm1d(3)", (3,))
    init_network(network, 0, dtype="float64")
    bn = network["bn1"]
    x = np.random.default_rng(0).standard_normal((50, 3)) * 2 + 5
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * x.mean(axis=0))
    assert int(bn.buffers["num_batches_tracked"]) == 1
    evaluated = bn.forward(x, training=False)
    np.testing.assert_allclose(evaluated, (x - bn.buffers["running_mean"]) /
                               np.sqrt(bn.buffers["running_var"] + 1e-5))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_overfits_a_tiny_batch(optimizer):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = np.arange(8) % 4
    network = build_network("Conv2d(1, 8, 3); ReLU(); MaxPool2d(2); Flatten(); LazyLinear(4)", (1, 8, 8), 4)
    init_network(network, 0)
    model = Model(network, {"class_names": list("abcd"), "normalization": {"mean": [0.0], "std": [1.0]}})
    lr = {"adam": 0.01, "adamw": 0.01, "sgd": 0.1}[optimizer]
    config = TrainConfig(epochs=150, batch_size=8, optimizer=optimizer, lr=lr, momentum=0.9)
    history = fit(model, x, y, None, config)
    assert history[-1]["loss"] < 0.01
    assert history[-1]["accuracy"] == 1.0


def test_same_seed_same_model_different_seed_different_model():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 1, 16)).astype(np.float32)
    y = (x[:, 0, :8].sum(axis=1) > 0).astype(np.int64)

    def run(seed):
        network = build_network("Conv1d(1, 4, 3); ReLU(); Dropout(0.3); Flatten(); LazyLinear(2)", (1, 16), 2)
        init_network(network, seed)
        model = Model(network, {"class_names": ["a", "b"], "normalization": {"mean": [0.0], "std": [1.0]}})
        fit(model, x, y, None, TrainConfig(epochs=3, batch_size=8, seed=seed))
        return named_params(network)

    first, second, other = run(5), run(5), run(6)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert any(not np.array_equal(first[n], other[n]) for n in first)
