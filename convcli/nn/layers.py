"""Layers: one class per PyTorch layer, owning its shape, parameter and cost arithmetic.

Each layer takes PyTorch's own argument names and defaults. Shapes are per sample (no batch
axis): ``(C, L)`` for 1-D layers, ``(C, H, W)`` for 2-D, ``(C, D, H, W)`` for 3-D, ``(F,)``
or ``(..., F)`` for Linear. The life of a layer:

    layer = Conv2d(1, 8, 5)
    out = layer.build((1, 28, 28))     # validates, resolves Lazy* sizes -> (8, 24, 24)
    layer.param_shapes()               # {"weight": (8, 1, 5, 5), "bias": (8,)}
    layer.num_params, layer.params_formula(), layer.macs()

``build`` records ``in_shape``/``out_shape``; ``output_shape(shape)`` computes without
recording. The ``kind`` of a class gives the layer names a network hands out (``conv1``,
``bn2``, ``relu3``...), which are also the prefixes of the arrays in a model file
(``conv1.weight``).

Every size goes through :func:`convcli.sizes.output_size`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from convcli.sizes import effective_kernel, output_size

Shape = tuple[int, ...]
# one receptive-field step per spatial axis: (effective kernel, stride, padding before)
Step = tuple[int, int, int]

GLOBAL = "global"  # receptive-field marker: every output sees the whole input


def _ints(value, n: int, name: str, minimum: int = 0) -> tuple[int, ...]:
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


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _prod(values) -> int:
    return math.prod(values)


def _functional():
    """convcli.nn.functional (numpy), imported on first training use so shapes/params never load it."""
    from convcli.nn import functional

    return functional


def _fan_in_init(name: str, shape: Shape, rng, scheme: str, fan_in: int):
    """PyTorch's defaults for conv/linear: weight kaiming_uniform(a=√5), i.e. U(±1/√fan_in), and
    bias U(±1/√fan_in); ``he``: weight N(0, 2/fan_in) (kaiming_normal, ReLU gain), bias 0."""
    if scheme == "he":
        if name == "weight":
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        return rng.uniform(0.0, 0.0, shape)
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)


def _batch(x, ndim: int):
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
        return sum(_prod(s) for s in self.param_shapes().values())

    @property
    def num_buffers(self) -> int:
        return sum(_prod(s) for s in self.buffer_shapes().values())

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

    # --- training: forward/backward on a batch (the math is in convcli.nn.functional) ------
    trainable = False  # True on the layers `convcli train` can run

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


# ------------------------------------------------------------------------------------------
# convolutions
# ------------------------------------------------------------------------------------------

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Layer):
    kind = "conv"
    ndim = 2
    transposed = False

    def __init__(
        self,
        in_channels: int | None,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        output_padding=0,
    ) -> None:
        super().__init__()
        n = self.ndim
        self.in_channels = None if in_channels is None else _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.kernel_size = _ints(kernel_size, n, "kernel_size", 1)
        self.stride = _ints(stride, n, "stride", 1)
        self.dilation = _ints(dilation, n, "dilation", 1)
        self.groups = _positive_int(groups, "groups")
        self.bias = _bool(bias, "bias")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if self.transposed or padding not in ("same", "valid"):
                allowed = "an int or a tuple" if self.transposed else "an int, a tuple, 'same' or 'valid'"
                raise ValueError(f"padding must be {allowed}, got {padding!r}")
            if padding == "same" and self.stride != (1,) * n:
                raise ValueError(
                    "padding='same' needs stride=1 (as in PyTorch); TensorFlow's SAME with stride s "
                    "gives ceil(n/s): write the padding explicitly"
                )
            self.padding = padding
        else:
            self.padding = _ints(padding, n, "padding", 0)
        self.output_padding = _ints(output_padding, n, "output_padding", 0)
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels={self.out_channels} is not divisible by groups={self.groups}")
        if self.in_channels is not None:
            self._check_in_channels(self.in_channels)

    def _check_in_channels(self, channels: int) -> None:
        if channels % self.groups:
            raise ValueError(f"in_channels={channels} is not divisible by groups={self.groups}")

    def pads(self) -> list[tuple[int, int]]:
        """(before, after) per axis; 'same' splits d·(k−1) as PyTorch does (extra on the right)."""
        if self.padding == "valid":
            return [(0, 0)] * self.ndim
        if self.padding == "same":
            pairs = []
            for k, d in zip(self.kernel_size, self.dilation, strict=True):
                total = d * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return pairs
        return [(p, p) for p in self.padding]

    def resolve(self, input_shape: Shape) -> None:
        kind = type(self).__name__
        if len(input_shape) != self.ndim + 1:
            want = (
                ("C", "L") if self.ndim == 1 else ("C", "H", "W") if self.ndim == 2 else ("C", "D", "H", "W")
            )
            raise ValueError(f"{kind} needs a ({', '.join(want)}) input, got shape {shape_text(input_shape)}")
        channels = input_shape[0]
        if self.in_channels is None:
            self._check_in_channels(channels)
            self.in_channels = channels
        elif channels != self.in_channels:
            raise ValueError(
                f"{kind} expects in_channels={self.in_channels} but its input has "
                f"{channels} channel{'s' * (channels != 1)} "
                f"(shape {shape_text(input_shape)})"
            )

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        spatial = []
        for n, k, s, d, pad, a in zip(
            input_shape[1:],
            self.kernel_size,
            self.stride,
            self.dilation,
            self.pads(),
            self.output_padding,
            strict=True,
        ):
            if self.transposed:
                spatial.append(
                    output_size(n, k, stride=s, padding=pad, dilation=d, transposed=True, output_padding=a)
                )
            else:
                spatial.append(output_size(n, k, stride=s, padding=pad, dilation=d))
        return (self.out_channels, *spatial)

    def weight_shape(self) -> Shape:
        if self.in_channels is None:
            raise ValueError(f"{type(self).__name__}: in_channels is not known until the layer is built")
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def param_shapes(self) -> dict[str, Shape]:
        shapes = {"weight": self.weight_shape()}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def params_formula(self) -> str:
        ks = self.kernel_size
        square = all(k == ks[0] for k in ks)
        k_sym = (
            f"k{'²³'[self.ndim - 2]}"
            if square and self.ndim > 1
            else "k"
            if square
            else "·".join(f"k{i + 1}" for i in range(self.ndim))
        )
        k_num = "·".join(str(k) for k in ks)
        groups = "/groups" if self.groups > 1 else ""
        groups_num = f"/{self.groups}" if self.groups > 1 else ""
        symbolic = f"{k_sym}·C_in·C_out{groups}"
        numeric = f"{k_num}·{self.in_channels}·{self.out_channels}{groups_num}"
        if self.bias:
            symbolic += " + C_out"
            numeric += f" + {self.out_channels}"
        return f"{symbolic} = {numeric} = {self.num_params:,}"

    def macs(self, input_shape: Sequence[int] | None = None) -> int:
        shape = self._input(input_shape)
        taps = _prod(self.kernel_size)
        if self.transposed:  # each input element scatters into k·C_out/groups outputs
            return _prod(shape) * taps * (self.out_channels // self.groups)
        out = self.output_shape(shape)
        return _prod(out) * taps * (self.in_channels // self.groups)

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        steps = []
        for k, s, d, (before, _after) in zip(
            self.kernel_size, self.stride, self.dilation, self.pads(), strict=True
        ):
            span = effective_kernel(k, d)
            if self.transposed:
                # an output sees the ceil(span/s) inputs whose scattered windows cover it, and
                # neighbouring outputs are 1/s input steps apart
                steps.append((-(-span // s), Fraction(1, s), 0))
            else:
                steps.append((span, s, before))
        return steps

    # --- training -------------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self.ndim < 3 and self.padding_mode == "zeros"

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        weight = self.weight_shape()
        return _fan_in_init(name, shape, rng, scheme, weight[1] * _prod(weight[2:]))

    def _geometry(self) -> dict:
        """stride/padding/dilation as the 2-D pairs of functional (a 1-D layer is 1×L)."""
        lift = (lambda v, one: (one, *v)) if self.ndim == 1 else (lambda v, one: tuple(v))
        return {"stride": lift(self.stride, 1), "padding": lift(self.pads(), (0, 0)),
                "dilation": lift(self.dilation, 1), "groups": self.groups}

    def forward(self, x, training: bool = False):
        if not self.trainable:
            return super().forward(x, training)
        fn = _functional()
        weight = self.params["weight"]
        weight = weight[:, :, None, :] if self.ndim == 1 else weight
        x2 = x[:, :, None, :] if self.ndim == 1 else x
        bias = self.params.get("bias")
        if self.transposed:
            geometry = self._geometry()
            output_padding = (0, *self.output_padding) if self.ndim == 1 else self.output_padding
            y, self._cache = fn.conv_transpose2d_forward(
                x2, weight, bias, geometry["stride"], geometry["padding"], output_padding,
                geometry["dilation"], geometry["groups"])
        else:
            y, self._cache = fn.conv2d_forward(x2, weight, bias, **self._geometry())
        return y[:, :, 0, :] if self.ndim == 1 else y

    def backward(self, dy, input_grad: bool = True):
        fn = _functional()
        dy2 = dy[:, :, None, :] if self.ndim == 1 else dy
        if self.transposed:
            dx, dweight, dbias = fn.conv_transpose2d_backward(dy2, self._cache)
        else:
            dx, dweight, dbias = fn.conv2d_backward(dy2, self._cache, input_grad)
        self.grads = {"weight": dweight.reshape(self.params["weight"].shape)}
        if dbias is not None:
            self.grads["bias"] = dbias
        if dx is None:
            return None
        return dx[:, :, 0, :] if self.ndim == 1 else dx


def _conv_class(name: str, ndim: int, lazy: bool, transposed: bool) -> type:
    """Build ConvNd / LazyConvNd / ConvTransposeNd with PyTorch's exact signatures."""
    base = _ConvNd
    if transposed:

        def __init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=0,
            output_padding=0,
            groups=1,
            bias=True,
            dilation=1,
            padding_mode="zeros",
        ):
            if padding_mode != "zeros":
                raise ValueError(f"only padding_mode='zeros' is supported for {name}, got {padding_mode!r}")
            base.__init__(
                self,
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
                padding_mode,
                output_padding,
            )

        def __init_lazy__(
            self,
            out_channels,
            kernel_size,
            stride=1,
            padding=0,
            output_padding=0,
            groups=1,
            bias=True,
            dilation=1,
            padding_mode="zeros",
        ):
            __init__(
                self,
                None,
                out_channels,
                kernel_size,
                stride,
                padding,
                output_padding,
                groups,
                bias,
                dilation,
                padding_mode,
            )
    else:

        def __init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            bias=True,
            padding_mode="zeros",
        ):
            base.__init__(
                self,
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation,
                groups,
                bias,
                padding_mode,
            )

        def __init_lazy__(
            self,
            out_channels,
            kernel_size,
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            bias=True,
            padding_mode="zeros",
        ):
            __init__(
                self, None, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
            )

    attrs = {
        "ndim": ndim,
        "transposed": transposed,
        "kind": "convt" if transposed else "conv",
        "__init__": __init_lazy__ if lazy else __init__,
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"PyTorch's nn.{name}: same arguments and defaults.",
    }
    return type(name, (base,), attrs)


Conv1d = _conv_class("Conv1d", 1, lazy=False, transposed=False)
Conv2d = _conv_class("Conv2d", 2, lazy=False, transposed=False)
Conv3d = _conv_class("Conv3d", 3, lazy=False, transposed=False)
LazyConv1d = _conv_class("LazyConv1d", 1, lazy=True, transposed=False)
LazyConv2d = _conv_class("LazyConv2d", 2, lazy=True, transposed=False)
LazyConv3d = _conv_class("LazyConv3d", 3, lazy=True, transposed=False)
ConvTranspose1d = _conv_class("ConvTranspose1d", 1, lazy=False, transposed=True)
ConvTranspose2d = _conv_class("ConvTranspose2d", 2, lazy=False, transposed=True)
LazyConvTranspose1d = _conv_class("LazyConvTranspose1d", 1, lazy=True, transposed=True)
LazyConvTranspose2d = _conv_class("LazyConvTranspose2d", 2, lazy=True, transposed=True)


# ------------------------------------------------------------------------------------------
# linear
# ------------------------------------------------------------------------------------------


class Linear(Layer):
    """PyTorch's nn.Linear: applies to the last axis of its input."""

    kind = "linear"

    def __init__(self, in_features: int | None, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = None if in_features is None else _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self.bias = _bool(bias, "bias")

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
        return _prod(shape) * self.out_features

    def rf_steps(self, input_shape: Sequence[int]) -> str:
        return GLOBAL

    # --- training -------------------------------------------------------------------------
    trainable = True

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        return _fan_in_init(name, shape, rng, scheme, self.in_features)

    def forward(self, x, training: bool = False):
        y, self._cache = _functional().linear_forward(x.reshape(-1, x.shape[-1]), self.params["weight"],
                                                      self.params.get("bias"))
        self._x_shape = x.shape
        return y.reshape(*x.shape[:-1], self.out_features)

    def backward(self, dy, input_grad: bool = True):
        dx, dweight, dbias = _functional().linear_backward(dy.reshape(-1, self.out_features), self._cache)
        self.grads = {"weight": dweight}
        if dbias is not None:
            self.grads["bias"] = dbias
        return dx.reshape(self._x_shape)


class LazyLinear(Linear):
    """PyTorch's nn.LazyLinear: in_features taken from the input."""

    def __init__(self, out_features: int, bias: bool = True) -> None:
        super().__init__(None, out_features, bias)


# ------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------


class _PoolNd(Layer):
    ndim = 2
    op = "max"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> None:
        super().__init__()
        n = self.ndim
        self.kernel_size = _ints(kernel_size, n, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _ints(stride, n, "stride", 1)
        self.padding = _ints(padding, n, "padding", 0)
        self.dilation = _ints(dilation, n, "dilation", 1)
        self.ceil_mode = _bool(ceil_mode, "ceil_mode")
        for k, p, d in zip(self.kernel_size, self.padding, self.dilation, strict=True):
            if p > effective_kernel(k, d) // 2:
                raise ValueError(
                    f"padding {p} should be at most half the kernel size {effective_kernel(k, d)} "
                    "(as in PyTorch)"
                )

    def resolve(self, input_shape: Shape) -> None:
        if len(input_shape) not in (self.ndim, self.ndim + 1):
            want = "(C, L) or (L)" if self.ndim == 1 else "(C, H, W) or (H, W)"
            raise ValueError(
                f"{type(self).__name__} needs a {want} input, got shape {shape_text(input_shape)}"
            )

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        lead = tuple(input_shape)[: len(input_shape) - self.ndim]
        spatial = tuple(input_shape)[len(input_shape) - self.ndim :]
        out = [
            output_size(n, k, stride=s, padding=p, dilation=d, ceil_mode=self.ceil_mode)
            for n, k, s, p, d in zip(
                spatial, self.kernel_size, self.stride, self.padding, self.dilation, strict=True
            )
        ]
        return (*lead, *out)

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        return [
            (effective_kernel(k, d), s, p)
            for k, s, p, d in zip(self.kernel_size, self.stride, self.padding, self.dilation, strict=True)
        ]

    # --- training: every channel pools on its own, so (N, C, ...) runs as (N·C, 1, H, W) ------
    @property
    def trainable(self) -> bool:
        return self.op in ("max", "avg") and getattr(self, "divisor_override", None) is None

    def forward(self, x, training: bool = False):
        if not self.trainable:
            return super().forward(x, training)
        fn = _functional()
        one = (1,) * (2 - self.ndim)
        kernel, stride = (*one, *self.kernel_size), (*one, *self.stride)
        padding = (*((0, 0),) * (2 - self.ndim), *((p, p) for p in self.padding))
        if self.op == "max":
            dilation = (*one, *self.dilation)
            y, self._cache = fn.max_pool2d_forward(_batch(x, self.ndim), kernel, stride, padding, dilation,
                                                   self.ceil_mode)
        else:
            y, self._cache = fn.avg_pool2d_forward(_batch(x, self.ndim), kernel, stride, padding,
                                                   self.ceil_mode, self.count_include_pad)
        self._x_shape = x.shape
        return y.reshape(*x.shape[: x.ndim - self.ndim], *y.shape[4 - self.ndim:])

    def backward(self, dy, input_grad: bool = True):
        fn = _functional()
        step = fn.max_pool2d_backward if self.op == "max" else fn.avg_pool2d_backward
        return step(_batch(dy, self.ndim), self._cache).reshape(self._x_shape)


class MaxPool1d(_PoolNd):
    """PyTorch's nn.MaxPool1d."""

    kind = "maxpool"
    ndim = 1

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = _bool(return_indices, "return_indices")
        if return_indices:
            raise ValueError("return_indices=True makes a tuple output, which a layer stack cannot pass on")


class MaxPool2d(MaxPool1d):
    """PyTorch's nn.MaxPool2d."""

    ndim = 2


class AvgPool1d(_PoolNd):
    """PyTorch's nn.AvgPool1d."""

    kind = "avgpool"
    ndim = 1
    op = "avg"

    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True
    ) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = _bool(count_include_pad, "count_include_pad")
        self.divisor_override = None


class AvgPool2d(AvgPool1d):
    """PyTorch's nn.AvgPool2d."""

    ndim = 2

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override=None,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        if divisor_override is not None:
            self.divisor_override = _positive_int(divisor_override, "divisor_override")


class LPPool1d(_PoolNd):
    """PyTorch's nn.LPPool1d: (sum of x^p over the window)^(1/p)."""

    kind = "lppool"
    ndim = 1
    op = "lp"

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, 0, 1, ceil_mode)
        self.norm_type = _number(norm_type, "norm_type")
        if self.norm_type <= 0:
            raise ValueError(f"norm_type must be > 0, got {norm_type!r}")


class LPPool2d(LPPool1d):
    """PyTorch's nn.LPPool2d."""

    ndim = 2


class _AdaptivePoolNd(Layer):
    ndim = 2
    op = "avg"

    def __init__(self, output_size) -> None:
        super().__init__()
        n = self.ndim
        values = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * n
        if len(values) != n or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in values
        ):
            raise ValueError(
                f"output_size must be a positive int or a tuple of {n} (int or None), got {output_size!r}"
            )
        self.output_size = values

    def resolve(self, input_shape: Shape) -> None:
        if len(input_shape) not in (self.ndim, self.ndim + 1):
            want = "(C, L) or (L)" if self.ndim == 1 else "(C, H, W) or (H, W)"
            raise ValueError(
                f"{type(self).__name__} needs a {want} input, got shape {shape_text(input_shape)}"
            )

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        lead = tuple(input_shape)[: len(input_shape) - self.ndim]
        spatial = tuple(input_shape)[len(input_shape) - self.ndim :]
        return (*lead, *(n if o is None else o for n, o in zip(spatial, self.output_size, strict=True)))

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        steps = []
        for n, o in zip(tuple(input_shape)[len(input_shape) - self.ndim :], self.output_size, strict=True):
            o = n if o is None else o
            # bins [floor(i·n/o), ceil((i+1)·n/o)): the widest bin, the average start step. Bin i is
            # ceil(frac(i·n/o) + n/o) wide, and frac(i·n/o) reaches 1 − gcd(n, o)/o: in closed form, as
            # o may be a billion
            widest = -(-(n + o - math.gcd(n, o)) // o)
            steps.append((widest, max(1, n // o), 0))
        return steps

    # --- training -------------------------------------------------------------------------
    trainable = True

    def forward(self, x, training: bool = False):
        spatial = x.shape[x.ndim - self.ndim:]
        out = tuple(n if o is None else o for n, o in zip(spatial, self.output_size, strict=True))
        y, self._cache = _functional().adaptive_pool2d_forward(
            _batch(x, self.ndim), (*(1,) * (2 - self.ndim), *out), self.op)
        self._x_shape = x.shape
        return y.reshape(*x.shape[: x.ndim - self.ndim], *out)

    def backward(self, dy, input_grad: bool = True):
        dx = _functional().adaptive_pool2d_backward(_batch(dy, self.ndim), self._cache)
        return dx.reshape(self._x_shape)


class AdaptiveAvgPool1d(_AdaptivePoolNd):
    """PyTorch's nn.AdaptiveAvgPool1d."""

    kind = "adaptiveavgpool"
    ndim = 1


class AdaptiveAvgPool2d(AdaptiveAvgPool1d):
    """PyTorch's nn.AdaptiveAvgPool2d."""

    ndim = 2


class AdaptiveMaxPool1d(_AdaptivePoolNd):
    """PyTorch's nn.AdaptiveMaxPool1d."""

    kind = "adaptivemaxpool"
    ndim = 1
    op = "max"

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__(output_size)
        if _bool(return_indices, "return_indices"):
            raise ValueError("return_indices=True makes a tuple output, which a layer stack cannot pass on")
        self.return_indices = False


class AdaptiveMaxPool2d(AdaptiveMaxPool1d):
    """PyTorch's nn.AdaptiveMaxPool2d."""

    ndim = 2


# ------------------------------------------------------------------------------------------
# normalization
# ------------------------------------------------------------------------------------------


class _BatchNorm(Layer):
    kind = "bn"
    ndim = 2

    def __init__(
        self,
        num_features: int | None,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        self.num_features = None if num_features is None else _positive_int(num_features, "num_features")
        self.eps = _number(eps, "eps", low=0)
        self.momentum = None if momentum is None else _number(momentum, "momentum", 0, 1)
        self.affine = _bool(affine, "affine")
        self.track_running_stats = _bool(track_running_stats, "track_running_stats")

    def resolve(self, input_shape: Shape) -> None:
        kind = type(self).__name__
        allowed = (1, 2) if self.ndim == 1 else (3,)
        if len(input_shape) not in allowed:
            want = "(C) or (C, L)" if self.ndim == 1 else "(C, H, W)"
            raise ValueError(f"{kind} needs a {want} input, got shape {shape_text(input_shape)}")
        channels = input_shape[0]
        if self.num_features is None:
            self.num_features = channels
        elif channels != self.num_features:
            raise ValueError(
                f"{kind} expects num_features={self.num_features} but its input has "
                f"{channels} channel{'s' * (channels != 1)} "
                f"(shape {shape_text(input_shape)})"
            )

    def param_shapes(self) -> dict[str, Shape]:
        if not self.affine:
            return {}
        return {"weight": (self.num_features,), "bias": (self.num_features,)}

    def buffer_shapes(self) -> dict[str, Shape]:
        if not self.track_running_stats:
            return {}
        c = self.num_features
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def params_formula(self) -> str:
        if not self.affine:
            return ""
        return f"2·C (γ, β) = 2·{self.num_features} = {self.num_params:,}"

    # --- training: batch statistics while training, running statistics in evaluation -------
    trainable = True

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        import numpy as np

        return np.ones(shape) if name == "weight" else np.zeros(shape)

    def initial_buffer(self, name: str, shape: Shape, dtype: str):
        import numpy as np

        if name == "num_batches_tracked":
            return np.zeros(shape, dtype=np.int64)
        return np.ones(shape, dtype=dtype) if name == "running_var" else np.zeros(shape, dtype=dtype)

    def forward(self, x, training: bool = False):
        import numpy as np

        channels = self.num_features
        gamma = self.params.get("weight", np.ones(channels, dtype=x.dtype))
        beta = self.params.get("bias", np.zeros(channels, dtype=x.dtype))
        use_batch = training or not self.track_running_stats
        if self.track_running_stats:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            if training:
                self.buffers["num_batches_tracked"] += 1
            # momentum=None: cumulative average, as PyTorch
            momentum = self.momentum if self.momentum is not None else \
                1.0 / int(self.buffers["num_batches_tracked"])
        else:
            mean, var, momentum = np.zeros(channels, x.dtype), np.ones(channels, x.dtype), 0.0
        y, self._cache = _functional().batch_norm_forward(x, gamma, beta, mean, var, use_batch, momentum,
                                                          self.eps)
        return y

    def backward(self, dy, input_grad: bool = True):
        dx, dgamma, dbeta = _functional().batch_norm_backward(dy, self._cache)
        self.grads = {"weight": dgamma, "bias": dbeta} if self.affine else {}
        return dx


class BatchNorm1d(_BatchNorm):
    """PyTorch's nn.BatchNorm1d: weight/bias are parameters, running statistics are buffers."""

    ndim = 1


class BatchNorm2d(_BatchNorm):
    """PyTorch's nn.BatchNorm2d."""

    ndim = 2


class LazyBatchNorm1d(BatchNorm1d):
    """PyTorch's nn.LazyBatchNorm1d."""

    def __init__(
        self,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(None, eps, momentum, affine, track_running_stats)


class LazyBatchNorm2d(BatchNorm2d):
    """PyTorch's nn.LazyBatchNorm2d."""

    def __init__(
        self,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(None, eps, momentum, affine, track_running_stats)


# ------------------------------------------------------------------------------------------
# shape-only and elementwise layers
# ------------------------------------------------------------------------------------------


class Dropout(Layer):
    """PyTorch's nn.Dropout."""

    kind = "dropout"

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = _number(p, "p", 0, 1)
        self.inplace = _bool(inplace, "inplace")

    trainable = True

    def forward(self, x, training: bool = False):
        y, self._cache = _functional().dropout_forward(x, self.p, training, self.rng)
        return y

    def backward(self, dy, input_grad: bool = True):
        return _functional().dropout_backward(dy, self._cache)


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
        return (*shape[:start], _prod(shape[start : end + 1]), *shape[end + 1 :])

    trainable = True

    def forward(self, x, training: bool = False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], *self.output_shape(x.shape[1:]))

    def backward(self, dy, input_grad: bool = True):
        return dy.reshape(self._x_shape)


class _Elementwise(Layer):
    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = _bool(inplace, "inplace")


class ReLU(_Elementwise):
    """PyTorch's nn.ReLU."""

    kind = "relu"
    trainable = True

    def forward(self, x, training: bool = False):
        y, self._cache = _functional().relu_forward(x)
        return y

    def backward(self, dy, input_grad: bool = True):
        return _functional().relu_backward(dy, self._cache)


class ReLU6(_Elementwise):
    """PyTorch's nn.ReLU6: min(max(x, 0), 6)."""

    kind = "relu6"
    trainable = True

    def forward(self, x, training: bool = False):
        self._inside = (x > 0) & (x < 6)
        return x.clip(0, 6)

    def backward(self, dy, input_grad: bool = True):
        return dy * self._inside


class LeakyReLU(Layer):
    """PyTorch's nn.LeakyReLU."""

    kind = "leakyrelu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = _number(negative_slope, "negative_slope")
        self.inplace = _bool(inplace, "inplace")

    trainable = True

    def forward(self, x, training: bool = False):
        y, self._cache = _functional().leaky_relu_forward(x, self.negative_slope)
        return y

    def backward(self, dy, input_grad: bool = True):
        return _functional().leaky_relu_backward(dy, self._cache)


class Tanh(Layer):
    """PyTorch's nn.Tanh."""

    kind = "tanh"
    trainable = True

    def forward(self, x, training: bool = False):
        y, self._cache = _functional().tanh_forward(x)
        return y

    def backward(self, dy, input_grad: bool = True):
        return _functional().tanh_backward(dy, self._cache)


class Sigmoid(Layer):
    """PyTorch's nn.Sigmoid."""

    kind = "sigmoid"
    trainable = True

    def forward(self, x, training: bool = False):
        y, self._cache = _functional().sigmoid_forward(x)
        return y

    def backward(self, dy, input_grad: bool = True):
        return _functional().sigmoid_backward(dy, self._cache)


class Softmax(Layer):
    """PyTorch's nn.Softmax. ``dim`` counts the batch axis, as in PyTorch (None: PyTorch's legacy choice)."""

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

    # a trailing Softmax folds into the loss (convcli.nn.train); elsewhere it runs as a layer
    trainable = True

    def _axis(self, ndim: int) -> int:
        if self.dim is None:  # PyTorch's legacy implicit dim
            return 0 if ndim in (0, 1, 3) else 1
        return self.dim

    def forward(self, x, training: bool = False):
        import numpy as np

        axis = self._axis(x.ndim)
        self._y = np.moveaxis(_functional().softmax(np.moveaxis(x, axis, -1)), -1, axis)
        self._axis_used = axis
        return self._y

    def backward(self, dy, input_grad: bool = True):
        y = self._y
        return y * (dy - (dy * y).sum(axis=self._axis_used, keepdims=True))


class Identity(Layer):
    """PyTorch's nn.Identity."""

    kind = "identity"
    trainable = True

    def forward(self, x, training: bool = False):
        return x

    def backward(self, dy, input_grad: bool = True):
        return dy


# ------------------------------------------------------------------------------------------
# composite blocks (torchvision's names); sub-layers are named as in torchvision's state_dict
# ------------------------------------------------------------------------------------------


def compose_steps(steps_per_layer: list[list[Step]]) -> list[Step]:
    """Fold consecutive sliding-window steps into one (kernel, stride, padding) per axis."""
    if not steps_per_layer:
        return []
    result = []
    for axis_steps in zip(*steps_per_layer, strict=True):
        kernel, stride, padding = 1, 1, 0
        for k, s, p in axis_steps:
            kernel += (k - 1) * stride
            padding += p * stride
            stride *= s
        result.append((kernel, stride, padding))
    return result


class Block(Layer):
    """A residual block: ``main`` path (+ ``shortcut`` path, identity when empty), then ``post``."""

    expansion = 1

    def __init__(self) -> None:
        super().__init__()
        self.main: list[tuple[str, Layer]] = []
        self.shortcut: list[tuple[str, Layer]] = []
        self.post: list[tuple[str, Layer]] = []
        self.residual = True

    def children(self) -> list[tuple[str, Layer]]:
        return [*self.main, *self.shortcut, *self.post]

    @staticmethod
    def _run(path: list[tuple[str, Layer]], shape: Shape, build: bool) -> Shape:
        for _name, layer in path:
            shape = layer.build(shape) if build else layer.output_shape(shape)
        return shape

    def _shapes(self, input_shape: Shape, build: bool) -> Shape:
        out = self._run(self.main, input_shape, build)
        if self.residual:
            skip = self._run(self.shortcut, input_shape, build)
            if skip != out:
                raise ValueError(
                    f"{type(self).__name__}: the shortcut gives {shape_text(skip)} but the main path "
                    f"gives {shape_text(out)}"
                )
        return self._run(self.post, out, build)

    def resolve(self, input_shape: Shape) -> None:
        self._shapes(input_shape, build=True)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        return self._shapes(tuple(input_shape), build=False)

    def _collect(self, getter) -> dict[str, Shape]:
        shapes = {}
        for prefix, layer in self.children():
            for key, shape in getter(layer).items():
                shapes[f"{prefix}.{key}"] = shape
        return shapes

    def param_shapes(self) -> dict[str, Shape]:
        return self._collect(lambda layer: layer.param_shapes())

    def buffer_shapes(self) -> dict[str, Shape]:
        return self._collect(lambda layer: layer.buffer_shapes())

    def params_formula(self) -> str:
        parts = [f"{prefix} {layer.num_params:,}" for prefix, layer in self.children() if layer.num_params]
        return " + ".join(parts) + f" = {self.num_params:,}"

    def macs(self, input_shape: Sequence[int] | None = None) -> int:
        shape = self._input(input_shape)
        total = 0
        for path, start in ((self.main, shape), (self.shortcut, shape)):
            for _name, layer in path:
                total += layer.macs(start)
                start = layer.output_shape(start)
        return total

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        steps, shape = [], tuple(input_shape)
        for _name, layer in self.main:
            step = layer.rf_steps(shape)
            if step is not None:
                steps.append(step)
            shape = layer.output_shape(shape)
        return compose_steps(steps)


def _conv_bn(prefix_conv: str, prefix_bn: str, conv: Layer, planes: int) -> list[tuple[str, Layer]]:
    return [(prefix_conv, conv), (prefix_bn, BatchNorm2d(planes))]


class BasicBlock(Block):
    """torchvision's BasicBlock: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU.

    ``downsample=None`` adds the 1x1 conv-BN shortcut when the stride or width changes, as
    torchvision's ``_make_layer`` does; True/False force it on or off.
    """

    kind = "basicblock"
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: bool | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        inplanes, planes = _positive_int(inplanes, "inplanes"), _positive_int(planes, "planes")
        stride = _positive_int(stride, "stride")
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64 (as in torchvision)")
        if dilation != 1:
            raise ValueError("dilation > 1 is not supported in BasicBlock (as in torchvision)")
        self.inplanes, self.planes, self.stride = inplanes, planes, stride
        self.main = [
            *_conv_bn("conv1", "bn1", Conv2d(inplanes, planes, 3, stride, 1, bias=False), planes),
            ("relu", ReLU()),
            *_conv_bn("conv2", "bn2", Conv2d(planes, planes, 3, 1, 1, bias=False), planes),
        ]
        self.shortcut = _downsample(inplanes, planes * self.expansion, stride, downsample)
        self.post = [("relu", ReLU())]


class Bottleneck(Block):
    """torchvision's Bottleneck (ResNet v1.5: stride on the 3x3): 1x1, 3x3, 1x1 (x4), + shortcut."""

    kind = "bottleneck"
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: bool | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        inplanes, planes = _positive_int(inplanes, "inplanes"), _positive_int(planes, "planes")
        stride = _positive_int(stride, "stride")
        groups, dilation = _positive_int(groups, "groups"), _positive_int(dilation, "dilation")
        width = int(planes * (_positive_int(base_width, "base_width") / 64.0)) * groups
        out = planes * self.expansion
        self.inplanes, self.planes, self.stride = inplanes, planes, stride
        self.main = [
            *_conv_bn("conv1", "bn1", Conv2d(inplanes, width, 1, bias=False), width),
            ("relu", ReLU()),
            *_conv_bn(
                "conv2", "bn2", Conv2d(width, width, 3, stride, dilation, dilation, groups, False), width
            ),
            ("relu", ReLU()),
            *_conv_bn("conv3", "bn3", Conv2d(width, out, 1, bias=False), out),
        ]
        self.shortcut = _downsample(inplanes, out, stride, downsample)
        self.post = [("relu", ReLU())]


def _downsample(inplanes: int, out: int, stride: int, downsample: bool | None) -> list[tuple[str, Layer]]:
    if downsample is None:
        downsample = stride != 1 or inplanes != out
    if not _bool(downsample, "downsample"):
        return []
    return _conv_bn("downsample.0", "downsample.1", Conv2d(inplanes, out, 1, stride, bias=False), out)


class InvertedResidual(Block):
    """torchvision's MobileNetV2 InvertedResidual: 1x1 expand, 3x3 depthwise, 1x1 project.

    The residual connection is used when stride is 1 and inp == oup, as in torchvision.
    """

    kind = "invertedresidual"

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        inp, oup = _positive_int(inp, "inp"), _positive_int(oup, "oup")
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride!r} (as in torchvision)")
        expand_ratio = _number(expand_ratio, "expand_ratio", low=1)
        hidden = int(round(inp * expand_ratio))
        self.inp, self.oup, self.stride, self.expand_ratio = inp, oup, stride, expand_ratio
        layers: list[tuple[str, Layer]] = []
        index = 0
        if expand_ratio != 1:
            layers += [
                (f"conv.{index}.0", Conv2d(inp, hidden, 1, bias=False)),
                (f"conv.{index}.1", BatchNorm2d(hidden)),
                (f"conv.{index}.2", ReLU6()),
            ]
            index += 1
        layers += [
            (f"conv.{index}.0", Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)),
            (f"conv.{index}.1", BatchNorm2d(hidden)),
            (f"conv.{index}.2", ReLU6()),
            (f"conv.{index + 1}", Conv2d(hidden, oup, 1, bias=False)),
            (f"conv.{index + 2}", BatchNorm2d(oup)),
        ]
        self.main = layers
        self.residual = stride == 1 and inp == oup


# every class the spec language knows, by its PyTorch name
LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Conv1d,
        Conv2d,
        Conv3d,
        LazyConv1d,
        LazyConv2d,
        LazyConv3d,
        ConvTranspose1d,
        ConvTranspose2d,
        LazyConvTranspose1d,
        LazyConvTranspose2d,
        Linear,
        LazyLinear,
        MaxPool1d,
        MaxPool2d,
        AvgPool1d,
        AvgPool2d,
        LPPool1d,
        LPPool2d,
        AdaptiveAvgPool1d,
        AdaptiveAvgPool2d,
        AdaptiveMaxPool1d,
        AdaptiveMaxPool2d,
        BatchNorm1d,
        BatchNorm2d,
        LazyBatchNorm1d,
        LazyBatchNorm2d,
        Dropout,
        Flatten,
        ReLU,
        ReLU6,
        LeakyReLU,
        Tanh,
        Sigmoid,
        Softmax,
        Identity,
        BasicBlock,
        Bottleneck,
        InvertedResidual,
    )
}
