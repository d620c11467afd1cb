"""Convolutions: Conv1d/2d/3d and ConvTranspose1d/2d, each with its Lazy* twin.

The argument lists are PyTorch's, in PyTorch's order (a transposed convolution puts
``output_padding`` before ``groups`` and ``dilation`` last, as torch.nn.ConvTranspose2d does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from convcli.nn.layers.base import (
    Layer,
    Shape,
    Step,
    fan_in_init,
    flag,
    functional,
    int_tuple,
    positive_int,
    shape_text,
)
from convcli.sizes import effective_kernel, output_size

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Layer):
    """What Conv1d/2d/3d share; the signature is theirs."""

    kind = "conv"
    ndim = 2
    transposed = False

    def __init__(self, in_channels: int | None, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros") -> None:
        super().__init__()
        n = self.ndim
        self.in_channels = None if in_channels is None else positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = int_tuple(kernel_size, n, "kernel_size", 1)
        self.stride = int_tuple(stride, n, "stride", 1)
        self.dilation = int_tuple(dilation, n, "dilation", 1)
        self.groups = positive_int(groups, "groups")
        self.bias = flag(bias, "bias")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.padding = self._padding(padding)
        self.output_padding = (0,) * n
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels={self.out_channels} is not divisible by groups={self.groups}")
        if self.in_channels is not None:
            self._check_in_channels(self.in_channels)

    def _padding(self, padding) -> tuple[int, ...] | str:
        if not isinstance(padding, str):
            return int_tuple(padding, self.ndim, "padding", 0)
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        if padding == "same" and self.stride != (1,) * self.ndim:
            raise ValueError(
                "padding='same' needs stride=1 (as in PyTorch); TensorFlow's SAME with stride s "
                "gives ceil(n/s): write the padding explicitly"
            )
        return padding

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
        spatial = (
            output_size(n, k, stride=s, padding=pad, dilation=d)
            for n, k, s, d, pad in zip(input_shape[1:], self.kernel_size, self.stride, self.dilation,
                                       self.pads(), strict=True)
        )
        return (self.out_channels, *spatial)

    def weight_shape(self) -> Shape:
        """(C_out, C_in/groups, *kernel_size), PyTorch's layout."""
        return (self.out_channels, self._known_in_channels() // self.groups, *self.kernel_size)

    def _known_in_channels(self) -> int:
        if self.in_channels is None:
            raise ValueError(f"{type(self).__name__}: in_channels is not known until the layer is built")
        return self.in_channels

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
        out = self.output_shape(self._input(input_shape))
        return math.prod(out) * math.prod(self.kernel_size) * (self.in_channels // self.groups)

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        return [
            (effective_kernel(k, d), s, before)
            for k, s, d, (before, _after) in zip(self.kernel_size, self.stride, self.dilation, self.pads(),
                                                 strict=True)
        ]

    # --- training: a 1-D layer runs as a 2-D one on a 1×L image ---------------------------
    @property
    def supports_training(self) -> bool:
        return self.ndim < 3 and self.padding_mode == "zeros"

    def initial_param(self, name: str, shape: Shape, rng, scheme: str):
        weight = self.weight_shape()
        return fan_in_init(name, shape, rng, scheme, weight[1] * math.prod(weight[2:]))

    def _pairs(self, values: Sequence, one) -> tuple:
        """Per-axis values as functional's 2-D pairs (a 1-D layer's height axis is ``one``)."""
        return (one, *values) if self.ndim == 1 else tuple(values)

    def _image(self, a):
        """(N, C, L) -> (N, C, 1, L) for a 1-D layer; 2-D arrays as they are."""
        return a[:, :, None, :] if self.ndim == 1 else a

    def _signal(self, a):
        """The inverse of :meth:`_image`."""
        return a[:, :, 0, :] if self.ndim == 1 and a is not None else a

    def forward(self, x, training: bool = False):
        if not self.supports_training:
            return super().forward(x, training)
        y, self._cache = functional().conv2d_forward(
            self._image(x), self._image(self.params["weight"]), self.params.get("bias"),
            self._pairs(self.stride, 1), self._pairs(self.pads(), (0, 0)), self._pairs(self.dilation, 1),
            self.groups)
        return self._signal(y)

    def backward(self, dy, input_grad: bool = True):
        dx, dweight, dbias = functional().conv2d_backward(self._image(dy), self._cache, input_grad)
        return self._keep_grads(dx, dweight, dbias)

    def _keep_grads(self, dx, dweight, dbias):
        self.grads = {"weight": dweight.reshape(self.params["weight"].shape)}
        if dbias is not None:
            self.grads["bias"] = dbias
        return self._signal(dx)


class _ConvTransposeNd(_ConvNd):
    """What ConvTranspose1d/2d share; the signature is theirs."""

    kind = "convt"
    transposed = True

    def __init__(self, in_channels: int | None, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros") -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"only padding_mode='zeros' is supported for {type(self).__name__}, got {padding_mode!r}"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode)
        self.output_padding = int_tuple(output_padding, self.ndim, "output_padding", 0)

    def _padding(self, padding) -> tuple[int, ...]:
        if isinstance(padding, str):
            raise ValueError(f"padding must be an int or a tuple, got {padding!r}")
        return int_tuple(padding, self.ndim, "padding", 0)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        spatial = (
            output_size(n, k, stride=s, padding=pad, dilation=d, transposed=True, output_padding=a)
            for n, k, s, d, pad, a in zip(input_shape[1:], self.kernel_size, self.stride, self.dilation,
                                          self.pads(), self.output_padding, strict=True)
        )
        return (self.out_channels, *spatial)

    def weight_shape(self) -> Shape:
        """(C_in, C_out/groups, *kernel_size), PyTorch's layout for a transposed convolution."""
        return (self._known_in_channels(), self.out_channels // self.groups, *self.kernel_size)

    def macs(self, input_shape: Sequence[int] | None = None) -> int:
        # each input element scatters into k·C_out/groups outputs
        shape = self._input(input_shape)
        return math.prod(shape) * math.prod(self.kernel_size) * (self.out_channels // self.groups)

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        # an output sees the ceil(span/s) inputs whose scattered windows cover it, and
        # neighbouring outputs are 1/s input steps apart
        return [(-(-effective_kernel(k, d) // s), Fraction(1, s), 0)
                for k, s, d in zip(self.kernel_size, self.stride, self.dilation, strict=True)]

    def forward(self, x, training: bool = False):
        y, self._cache = functional().conv_transpose2d_forward(
            self._image(x), self._image(self.params["weight"]), self.params.get("bias"),
            self._pairs(self.stride, 1), self._pairs(self.pads(), (0, 0)),
            self._pairs(self.output_padding, 0), self._pairs(self.dilation, 1), self.groups)
        return self._signal(y)

    def backward(self, dy, input_grad: bool = True):
        return self._keep_grads(*functional().conv_transpose2d_backward(self._image(dy), self._cache))


class Conv1d(_ConvNd):
    """PyTorch's nn.Conv1d: same arguments and defaults."""

    ndim = 1


class Conv2d(_ConvNd):
    """PyTorch's nn.Conv2d: same arguments and defaults."""

    ndim = 2


class Conv3d(_ConvNd):
    """PyTorch's nn.Conv3d: same arguments and defaults (shapes and params only)."""

    ndim = 3


class ConvTranspose1d(_ConvTransposeNd):
    """PyTorch's nn.ConvTranspose1d: same arguments and defaults."""

    ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    """PyTorch's nn.ConvTranspose2d: same arguments and defaults."""

    ndim = 2


class _LazyConv:
    """Lazy*: PyTorch's signature without ``in_channels``, taken from the input when built."""

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
                 bias: bool = True, padding_mode: str = "zeros") -> None:
        super().__init__(None, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode)


class _LazyConvTranspose:
    """LazyConvTranspose*: PyTorch's signature without ``in_channels``, taken from the input when built."""

    def __init__(self, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0, groups: int = 1,
                 bias: bool = True, dilation=1, padding_mode: str = "zeros") -> None:
        super().__init__(None, out_channels, kernel_size, stride, padding, output_padding, groups, bias,
                         dilation, padding_mode)


class LazyConv1d(_LazyConv, Conv1d):
    """PyTorch's nn.LazyConv1d."""


class LazyConv2d(_LazyConv, Conv2d):
    """PyTorch's nn.LazyConv2d."""


class LazyConv3d(_LazyConv, Conv3d):
    """PyTorch's nn.LazyConv3d."""


class LazyConvTranspose1d(_LazyConvTranspose, ConvTranspose1d):
    """PyTorch's nn.LazyConvTranspose1d."""


class LazyConvTranspose2d(_LazyConvTranspose, ConvTranspose2d):
    """PyTorch's nn.LazyConvTranspose2d."""
