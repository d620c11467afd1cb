"""Pooling: Max/Avg/LP pooling and adaptive pooling, 1-D and 2-D.

PyTorch's window rules (padding at most half the window, the ``ceil_mode`` windows, the
adaptive bins) come from :mod:`convcli.pool_windows`, as they do for ``convcli pool``.
"""

from __future__ import annotations

from collections.abc import Sequence

from convcli.nn.layers.base import (
    Layer,
    Shape,
    Step,
    flag,
    functional,
    int_tuple,
    number,
    planes,
    positive_int,
    shape_text,
)
from convcli.pool_windows import adaptive_widest, check_padding
from convcli.sizes import effective_kernel, output_size


class _Pooling(Layer):
    """What window and adaptive pooling share: ``ndim`` pooled trailing axes, channels optional."""

    ndim = 2

    def resolve(self, input_shape: Shape) -> None:
        if len(input_shape) not in (self.ndim, self.ndim + 1):
            want = "(C, L) or (L)" if self.ndim == 1 else "(C, H, W) or (H, W)"
            raise ValueError(
                f"{type(self).__name__} needs a {want} input, got shape {shape_text(input_shape)}"
            )

    def _split(self, shape: Sequence[int]) -> tuple[Shape, Shape]:
        """(leading axes, pooled axes) of a shape."""
        shape = tuple(shape)
        return shape[: len(shape) - self.ndim], shape[len(shape) - self.ndim :]


class _PoolNd(_Pooling):
    """Sliding-window pooling. Training: every channel pools on its own, so (N, C, ...) runs as
    (N·C, 1, H, W) through functional's 2-D ops (a 1-D layer is 1×L)."""

    op = "max"
    divisor_override = None

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> None:
        super().__init__()
        n = self.ndim
        self.kernel_size = int_tuple(kernel_size, n, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else int_tuple(stride, n, "stride", 1)
        self.padding = int_tuple(padding, n, "padding", 0)
        self.dilation = int_tuple(dilation, n, "dilation", 1)
        self.ceil_mode = flag(ceil_mode, "ceil_mode")
        for k, p in zip(self.kernel_size, self.padding, strict=True):
            check_padding(k, p)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        lead, spatial = self._split(input_shape)
        out = (
            output_size(n, k, stride=s, padding=p, dilation=d, ceil_mode=self.ceil_mode)
            for n, k, s, p, d in zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation,
                                     strict=True)
        )
        return (*lead, *out)

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        return [
            (effective_kernel(k, d), s, p)
            for k, s, p, d in zip(self.kernel_size, self.stride, self.padding, self.dilation, strict=True)
        ]

    @property
    def supports_training(self) -> bool:
        return self.op in ("max", "avg") and self.divisor_override is None

    def forward(self, x, training: bool = False):
        if not self.supports_training:
            return super().forward(x, training)
        fn = functional()
        one = (1,) * (2 - self.ndim)
        kernel, stride = (*one, *self.kernel_size), (*one, *self.stride)
        padding = (*((0, 0),) * (2 - self.ndim), *((p, p) for p in self.padding))
        if self.op == "max":
            y, self._cache = fn.max_pool2d_forward(planes(x, self.ndim), kernel, stride, padding,
                                                   (*one, *self.dilation), self.ceil_mode)
        else:
            y, self._cache = fn.avg_pool2d_forward(planes(x, self.ndim), kernel, stride, padding,
                                                   self.ceil_mode, self.count_include_pad)
        self._x_shape = x.shape
        return y.reshape(*x.shape[: x.ndim - self.ndim], *y.shape[4 - self.ndim:])

    def backward(self, dy, input_grad: bool = True):
        fn = functional()
        step = fn.max_pool2d_backward if self.op == "max" else fn.avg_pool2d_backward
        return step(planes(dy, self.ndim), self._cache).reshape(self._x_shape)


class _MaxPoolNd(_PoolNd):
    kind = "maxpool"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = flag(return_indices, "return_indices")
        if return_indices:
            raise ValueError("return_indices=True makes a tuple output, which a layer stack cannot pass on")


class MaxPool1d(_MaxPoolNd):
    """PyTorch's nn.MaxPool1d."""

    ndim = 1


class MaxPool2d(_MaxPoolNd):
    """PyTorch's nn.MaxPool2d."""

    ndim = 2


class _AvgPoolNd(_PoolNd):
    kind = "avgpool"
    op = "avg"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = flag(count_include_pad, "count_include_pad")


class AvgPool1d(_AvgPoolNd):
    """PyTorch's nn.AvgPool1d."""

    ndim = 1


class AvgPool2d(_AvgPoolNd):
    """PyTorch's nn.AvgPool2d (``divisor_override``: shapes and params only)."""

    ndim = 2

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        if divisor_override is not None:
            self.divisor_override = positive_int(divisor_override, "divisor_override")


class _LPPoolNd(_PoolNd):
    kind = "lppool"
    op = "lp"

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, 0, 1, ceil_mode)
        self.norm_type = number(norm_type, "norm_type")
        if self.norm_type <= 0:
            raise ValueError(f"norm_type must be > 0, got {norm_type!r}")


class LPPool1d(_LPPoolNd):
    """PyTorch's nn.LPPool1d: (sum of x^p over the window)^(1/p) (shapes and params only)."""

    ndim = 1


class LPPool2d(_LPPoolNd):
    """PyTorch's nn.LPPool2d (shapes and params only)."""

    ndim = 2


class _AdaptivePoolNd(_Pooling):
    """Adaptive pooling: ``output_size`` bins per axis (None keeps the axis)."""

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

    def _targets(self, spatial: Sequence[int]) -> Shape:
        return tuple(n if o is None else o for n, o in zip(spatial, self.output_size, strict=True))

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        lead, spatial = self._split(input_shape)
        return (*lead, *self._targets(spatial))

    def rf_steps(self, input_shape: Sequence[int]) -> list[Step]:
        # the widest bin, and the average start step
        spatial = self._split(input_shape)[1]
        return [(adaptive_widest(n, o), max(1, n // o), 0)
                for n, o in zip(spatial, self._targets(spatial), strict=True)]

    supports_training = True

    def forward(self, x, training: bool = False):
        out = self._targets(x.shape[x.ndim - self.ndim:])
        y, self._cache = functional().adaptive_pool2d_forward(
            planes(x, self.ndim), (*(1,) * (2 - self.ndim), *out), self.op)
        self._x_shape = x.shape
        return y.reshape(*x.shape[: x.ndim - self.ndim], *out)

    def backward(self, dy, input_grad: bool = True):
        dx = functional().adaptive_pool2d_backward(planes(dy, self.ndim), self._cache)
        return dx.reshape(self._x_shape)


class AdaptiveAvgPool1d(_AdaptivePoolNd):
    """PyTorch's nn.AdaptiveAvgPool1d."""

    kind = "adaptiveavgpool"
    ndim = 1


class AdaptiveAvgPool2d(_AdaptivePoolNd):
    """PyTorch's nn.AdaptiveAvgPool2d."""

    kind = "adaptiveavgpool"
    ndim = 2


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    kind = "adaptivemaxpool"
    op = "max"

    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__(output_size)
        if flag(return_indices, "return_indices"):
            raise ValueError("return_indices=True makes a tuple output, which a layer stack cannot pass on")
        self.return_indices = False


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """PyTorch's nn.AdaptiveMaxPool1d."""

    ndim = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """PyTorch's nn.AdaptiveMaxPool2d."""

    ndim = 2
