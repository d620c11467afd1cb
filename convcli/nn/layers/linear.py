"""Linear (and LazyLinear), and Flatten, the reshape that usually feeds it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from convcli.nn.layers.base import (
    GLOBAL,
    Layer,
    Shape,
    fan_in_init,
    flag,
    functional,
    positive_int,
    shape_text,
)


class Linear(Layer):
    """PyTorch's nn.Linear: applies to the last axis of its input."""

    kind = "linear"

    def __init__(self, in_features: int | None, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = None if in_features is None else positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.bias = flag(bias, "bias")

    def resolve(self, input_shape: Shape) -> None:
        features = input_shape[-1] if input_shape else 0
        if self.in_features is None:
            self.in_features = features
        elif features != self.in_features:
            hint = " (add Flatten() before it)" if len(input_shape) > 1 else ""
            raise ValueError(
                f"{type(self).__name__} expects in_features={self.in_features} but its input has "
                f"{features} features (shape {shape_text(input_shape)}){hint}"
            )

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        return (*tuple(input_shape)[:-1], self.out_features)

    def param_shapes(self) -> dict[str, Shape]:
        if self.in_features is None:
            raise ValueError(f"{type(self).__name__}: in_features is not known until the layer is built")
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def params_formula(self) -> str:
        if self.bias:
            return (
                f"in·out + out = {self.in_features}·{self.out_features} + {self.out_features}"
                f" = {self.num_params:,}"
            )
        return f"in·out = {self.in_features}·{self.out_features} = {self.num_params:,}"

    def macs(self, input_shape: Sequence[int] | None = None) -> int:
        shape = self._input(input_shape)
        return math.prod(shape) * self.out_features

    def rf_steps(self, input_shape: Sequence[int]) -> str:
        return GLOBAL

    # --- training -------------------------------------------------------------------------
    supports_training = True

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        return fan_in_init(name, shape, rng, scheme, self.in_features)

    def forward(self, x, training: bool = False):
        y, self._cache = functional().linear_forward(x.reshape(-1, x.shape[-1]), self.params["weight"],
                                                     self.params.get("bias"))
        self._x_shape = x.shape
        return y.reshape(*x.shape[:-1], self.out_features)

    def backward(self, dy, input_grad: bool = True):
        dx, dweight, dbias = functional().linear_backward(dy.reshape(-1, self.out_features), self._cache)
        self.grads = {"weight": dweight}
        if dbias is not None:
            self.grads["bias"] = dbias
        return dx.reshape(self._x_shape)


class LazyLinear(Linear):
    """PyTorch's nn.LazyLinear: in_features taken from the input."""

    def __init__(self, out_features: int, bias: bool = True) -> None:
        super().__init__(None, out_features, bias)


class Flatten(Layer):
    """PyTorch's nn.Flatten. ``start_dim``/``end_dim`` count the batch axis, as in PyTorch."""

    kind = "flatten"

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def _range(self, input_shape: Sequence[int]) -> tuple[int, int]:
        ndim = len(input_shape) + 1  # with the batch axis
        start = self.start_dim % ndim if -ndim <= self.start_dim < ndim else None
        end = self.end_dim % ndim if -ndim <= self.end_dim < ndim else None
        if start is None or end is None:
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) is out of range for a batch of "
                f"shape N x {shape_text(input_shape)}"
            )
        if start == 0:
            raise ValueError("Flatten with start_dim=0 would merge the batch axis: use start_dim >= 1")
        if end < start:
            raise ValueError(f"Flatten: end_dim {self.end_dim} comes before start_dim {self.start_dim}")
        return start - 1, end - 1

    def resolve(self, input_shape: Shape) -> None:
        self._range(input_shape)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = tuple(input_shape)
        start, end = self._range(shape)
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])

    supports_training = True

    def forward(self, x, training: bool = False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], *self.output_shape(x.shape[1:]))

    def backward(self, dy, input_grad: bool = True):
        return dy.reshape(self._x_shape)
