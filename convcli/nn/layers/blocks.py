"""Composite blocks, named as torchvision names them (sub-layers named as in its state_dict):
BasicBlock and Bottleneck (ResNet), InvertedResidual (MobileNetV2). Shapes and params only."""

from __future__ import annotations

from collections.abc import Sequence

from convcli.nn.layers.activation import ReLU, ReLU6
from convcli.nn.layers.base import Layer, Shape, Step, flag, number, positive_int, shape_text
from convcli.nn.layers.conv import Conv2d
from convcli.nn.layers.norm import BatchNorm2d


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


class _ResNetBlock(Block):
    """What BasicBlock and Bottleneck share: torchvision's signature, the 1x1 conv-BN shortcut
    and the last ReLU. ``downsample=None`` adds the shortcut when the stride or width changes, as
    torchvision's ``_make_layer`` does; True/False force it on or off."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: bool | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1) -> None:
        super().__init__()
        self.inplanes, self.planes = positive_int(inplanes, "inplanes"), positive_int(planes, "planes")
        self.stride = positive_int(stride, "stride")
        out = self.planes * self.expansion
        self.main = self._main_path(positive_int(groups, "groups"), positive_int(base_width, "base_width"),
                                    positive_int(dilation, "dilation"), out)
        self.shortcut = _downsample(self.inplanes, out, self.stride, downsample)
        self.post = [("relu", ReLU())]

    def _main_path(self, groups: int, base_width: int, dilation: int, out: int) -> list[tuple[str, Layer]]:
        raise NotImplementedError


class BasicBlock(_ResNetBlock):
    """torchvision's BasicBlock: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU."""

    kind = "basicblock"
    expansion = 1

    def _main_path(self, groups: int, base_width: int, dilation: int, out: int) -> list[tuple[str, Layer]]:
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64 (as in torchvision)")
        if dilation != 1:
            raise ValueError("dilation > 1 is not supported in BasicBlock (as in torchvision)")
        return [
            *_conv_bn("conv1", "bn1", Conv2d(self.inplanes, out, 3, self.stride, 1, bias=False), out),
            ("relu", ReLU()),
            *_conv_bn("conv2", "bn2", Conv2d(out, out, 3, 1, 1, bias=False), out),
        ]


class Bottleneck(_ResNetBlock):
    """torchvision's Bottleneck (ResNet v1.5: stride on the 3x3): 1x1, 3x3, 1x1 (x4), + shortcut, ReLU."""

    kind = "bottleneck"
    expansion = 4

    def _main_path(self, groups: int, base_width: int, dilation: int, out: int) -> list[tuple[str, Layer]]:
        width = int(self.planes * (base_width / 64.0)) * groups
        return [
            *_conv_bn("conv1", "bn1", Conv2d(self.inplanes, width, 1, bias=False), width),
            ("relu", ReLU()),
            *_conv_bn("conv2", "bn2", Conv2d(width, width, 3, self.stride, dilation, dilation, groups, False),
                      width),
            ("relu", ReLU()),
            *_conv_bn("conv3", "bn3", Conv2d(width, out, 1, bias=False), out),
        ]


def _downsample(inplanes: int, out: int, stride: int, downsample: bool | None) -> list[tuple[str, Layer]]:
    if downsample is None:
        downsample = stride != 1 or inplanes != out
    if not flag(downsample, "downsample"):
        return []
    return _conv_bn("downsample.0", "downsample.1", Conv2d(inplanes, out, 1, stride, bias=False), out)


class InvertedResidual(Block):
    """torchvision's MobileNetV2 InvertedResidual: 1x1 expand, 3x3 depthwise, 1x1 project.

    The residual connection is used when stride is 1 and inp == oup, as in torchvision.
    """

    kind = "invertedresidual"

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        inp, oup = positive_int(inp, "inp"), positive_int(oup, "oup")
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride!r} (as in torchvision)")
        expand_ratio = number(expand_ratio, "expand_ratio", low=1)
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

