"""The :class:`Layer` base class and the argument checks every layer shares."""

from __future__ import annotations

import math
from collections.abc import Sequence

from convcli.text import shape_text  # noqa: F401 - the layers' messages write shapes the one way

Shape = tuple[int, ...]
# one receptive-field step per spatial axis: (effective kernel, stride, padding before)
Step = tuple[int, int, int]

GLOBAL = "global"  # receptive-field marker: every output sees the whole input


def int_tuple(value, n: int, name: str, minimum: int = 0) -> tuple[int, ...]:
    """An int or an n-tuple of ints -> n-tuple, validated (PyTorch's _single/_pair/_triple)."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {tuple(value)!r}")
        values = tuple(value)
    else:
        values = (value,) * n
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
        if v < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return values


def flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def functional():
    """convcli.nn.functional (numpy), imported on first training use so shapes/params never load it."""
    from convcli.nn import functional

    return functional


def numpy():
    """numpy, imported on first training use (shapes/params never load it)."""
    import numpy

    return numpy


def planes(x, ndim: int):
    """(N, ..., *spatial) -> (N·..., 1, H, W) with H = 1 for 1-D: the layout functional works on."""
    spatial = x.shape[x.ndim - ndim:]
    return x.reshape(-1, 1, *((1,) * (2 - ndim)), *spatial)


class Layer:
    """Base class. Subclasses set ``kind`` and override what differs from an elementwise layer."""

    kind = "layer"  # prefix of the names a network gives (conv1, relu2...)

    def __init__(self) -> None:
        self.name: str = ""
        self.in_shape: Shape | None = None
        self.out_shape: Shape | None = None

    # --- shapes -----------------------------------------------------------------------------
    def build(self, input_shape: Sequence[int]) -> Shape:
        """Check the input, resolve lazy sizes, record and return the output shape."""
        input_shape = tuple(int(s) for s in input_shape)
        self.resolve(input_shape)
        out = self.output_shape(input_shape)
        self.in_shape, self.out_shape = input_shape, out
        return out

    def resolve(self, input_shape: Shape) -> None:
        """Infer lazy sizes from the input and check it fits (channels, dimensionality)."""

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        return tuple(input_shape)

    # --- parameters -------------------------------------------------------------------------
    def param_shapes(self) -> dict[str, Shape]:
        """Trainable parameters, by PyTorch's names (``weight``, ``bias``)."""
        return {}

    def buffer_shapes(self) -> dict[str, Shape]:
        """Non-trainable state (BatchNorm's running statistics), by PyTorch's names."""
        return {}

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    @property
    def num_buffers(self) -> int:
        return sum(math.prod(s) for s in self.buffer_shapes().values())

    def params_formula(self) -> str:
        """How ``num_params`` comes about, with the numbers filled in ('' for no parameters)."""
        return ""

    # --- cost and receptive field --------------------------------------------------------
    def macs(self, input_shape: Sequence[int] | None = None) -> int:
        """Multiply-accumulates per sample of the conv/linear arithmetic (bias not counted)."""
        return 0

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step] | str | None:
        """Receptive-field step per spatial axis: ``None`` (pointwise), steps, or ``GLOBAL``."""
        return None

    def _input(self, input_shape: Sequence[int] | None) -> Shape:
        if input_shape is not None:
            return tuple(input_shape)
        if self.in_shape is None:
            raise ValueError(f"{type(self).__name__} is not built yet: give an input shape")
        return self.in_shape

    # --- training: forward/backward on a batch --------------------------------------------
    # True on the layers `convcli train` can run (a layer's parameters are all trainable in
    # PyTorch's sense, see Network.trainable_params, whether convcli can train it or not)
    supports_training = False

    def init_params(self, rng, scheme: str = "pytorch", dtype: str = "float32") -> None:
        """Fresh parameters (PyTorch's default initialization, or ``scheme='he'``) and buffers.

        ``rng`` (a numpy Generator) also drives Dropout, so one seed gives one model.
        """
        self.params = {name: self.initial_param(name, shape, rng, scheme).astype(dtype)
                       for name, shape in self.param_shapes().items()}
        self.buffers = {name: self.initial_buffer(name, shape, dtype)
                        for name, shape in self.buffer_shapes().items()}
        self.grads: dict = {}
        self.rng = rng

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        raise ValueError(f"{type(self).__name__} has no initializer for {name!r}")

    def initial_buffer(self, name: str, shape: Shape, dtype: str):
        raise ValueError(f"{type(self).__name__} has no initializer for {name!r}")

    def forward(self, x, training: bool = False):
        """Output for a batch ``x`` (batch axis first); keeps what ``backward`` needs."""
        raise ValueError(f"{type(self).__name__} ({self.name}) cannot be trained by convcli: "
                         "it is supported by shapes and params only")

    def backward(self, dy, input_grad: bool = True):
        """Gradient with respect to the input of the last ``forward``; fills ``self.grads``.

        ``input_grad=False`` (the network's first layer) lets a layer skip that gradient."""
        raise ValueError(f"{type(self).__name__} ({self.name}) cannot be trained by convcli")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or ''})"


def fan_in_init(name: str, shape: Shape, rng, scheme: str, fan_in: int):
    """PyTorch's defaults for conv/linear: weight kaiming_uniform(a=√5), i.e. U(±1/√fan_in), and
    bias U(±1/√fan_in); ``he``: weight N(0, 2/fan_in) (kaiming_normal, ReLU gain), bias 0."""
    if scheme == "he":
        if name == "weight":
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        return rng.uniform(0.0, 0.0, shape)
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)
