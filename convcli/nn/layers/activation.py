"""Activations: elementwise layers with no parameters, each forward beside its backward.

The math is inline (micrograd / teenygrad's mlops style) except for ReLU, whose functional
op splits big batches across the cores, and Softmax, which shares the loss' log-sum-exp.
"""

from __future__ import annotations

from convcli.nn.layers.base import Layer, Shape, flag, functional, number, numpy, shape_text


class _Activation(Layer):
    supports_training = True


class _InplaceActivation(_Activation):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = flag(inplace, "inplace")


class ReLU(_InplaceActivation):
    """PyTorch's nn.ReLU: max(x, 0)."""

    kind = "relu"

    def forward(self, x, training: bool = False):
        y, self._cache = functional().relu_forward(x)
        return y

    def backward(self, dy, input_grad: bool = True):
        return functional().relu_backward(dy, self._cache)


class ReLU6(_InplaceActivation):
    """PyTorch's nn.ReLU6: min(max(x, 0), 6)."""

    kind = "relu6"

    def forward(self, x, training: bool = False):
        self._inside = (x > 0) & (x < 6)
        return x.clip(0, 6)

    def backward(self, dy, input_grad: bool = True):
        return dy * self._inside


class LeakyReLU(_Activation):
    """PyTorch's nn.LeakyReLU: x for x > 0, negative_slope·x otherwise."""

    kind = "leakyrelu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = number(negative_slope, "negative_slope")
        self.inplace = flag(inplace, "inplace")

    def forward(self, x, training: bool = False):
        self._slope = numpy().where(x > 0, x.dtype.type(1), x.dtype.type(self.negative_slope))
        return x * self._slope

    def backward(self, dy, input_grad: bool = True):
        return dy * self._slope


class Tanh(_Activation):
    """PyTorch's nn.Tanh."""

    kind = "tanh"

    def forward(self, x, training: bool = False):
        self._y = numpy().tanh(x)
        return self._y

    def backward(self, dy, input_grad: bool = True):
        return dy * (1 - self._y * self._y)


class Sigmoid(_Activation):
    """PyTorch's nn.Sigmoid: 1 / (1 + exp(−x))."""

    kind = "sigmoid"

    def forward(self, x, training: bool = False):
        e = numpy().exp(-abs(x))  # split by sign so exp never overflows
        self._y = numpy().where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self._y

    def backward(self, dy, input_grad: bool = True):
        return dy * self._y * (1 - self._y)


class Softmax(_Activation):
    """PyTorch's nn.Softmax. ``dim`` counts the batch axis, as in PyTorch (None: PyTorch's legacy
    choice). A trailing Softmax folds into the loss (convcli.nn.train); elsewhere it runs as a layer."""

    kind = "softmax"

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)):
            raise ValueError(f"dim must be an int or None, got {dim!r}")
        self.dim = dim

    def resolve(self, input_shape: Shape) -> None:
        ndim = len(input_shape) + 1
        if self.dim is not None and not -ndim <= self.dim < ndim:
            raise ValueError(
                f"Softmax dim={self.dim} is out of range for a batch of shape N x {shape_text(input_shape)}"
            )

    def _axis(self, ndim: int) -> int:
        if self.dim is None:  # PyTorch's legacy implicit dim
            return 0 if ndim in (0, 1, 3) else 1
        return self.dim

    def forward(self, x, training: bool = False):
        np = numpy()
        self._axis_used = self._axis(x.ndim)
        self._y = np.moveaxis(functional().softmax(np.moveaxis(x, self._axis_used, -1)), -1, self._axis_used)
        return self._y

    def backward(self, dy, input_grad: bool = True):
        y = self._y
        return y * (dy - (dy * y).sum(axis=self._axis_used, keepdims=True))


class Identity(_Activation):
    """PyTorch's nn.Identity."""

    kind = "identity"

    def forward(self, x, training: bool = False):
        return x

    def backward(self, dy, input_grad: bool = True):
        return dy
