"""Layers: one class per PyTorch layer, owning its shape, parameter and cost arithmetic.

Each layer takes PyTorch's own argument names, order and defaults. Shapes are per sample (no
batch axis): ``(C, L)`` for 1-D layers, ``(C, H, W)`` for 2-D, ``(C, D, H, W)`` for 3-D,
``(F,)`` or ``(..., F)`` for Linear. The life of a layer:

    layer = Conv2d(1, 8, 5)
    out = layer.build((1, 28, 28))     # validates, resolves Lazy* sizes -> (8, 24, 24)
    layer.param_shapes()               # {"weight": (8, 1, 5, 5), "bias": (8,)}
    layer.num_params, layer.params_formula(), layer.macs()

``build`` records ``in_shape``/``out_shape``; ``output_shape(shape)`` computes without
recording. The ``kind`` of a class gives the layer names a network hands out (``conv1``,
``bn2``, ``relu3``...), which are also the prefixes of the arrays in a model file
(``conv1.weight``). Layers with ``supports_training`` also run ``forward``/``backward`` on a
batch for ``convcli train``.

By kind: :mod:`.base` (the Layer class), :mod:`.conv`, :mod:`.linear` (and Flatten),
:mod:`.pool`, :mod:`.norm` (and Dropout), :mod:`.activation`, :mod:`.blocks`. Every size goes
through :func:`convcli.sizes.output_size`; pooling windows follow :mod:`convcli.pool_windows`.
Nothing here imports numpy until a layer trains, so ``shapes`` and ``params`` stay light.
"""

from __future__ import annotations

from convcli.nn.layers.activation import Identity, LeakyReLU, ReLU, ReLU6, Sigmoid, Softmax, Tanh
from convcli.nn.layers.base import GLOBAL, Layer, Shape, Step, shape_text
from convcli.nn.layers.blocks import BasicBlock, Block, Bottleneck, InvertedResidual, compose_steps
from convcli.nn.layers.conv import (
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    LazyConv1d,
    LazyConv2d,
    LazyConv3d,
    LazyConvTranspose1d,
    LazyConvTranspose2d,
    _ConvNd,
)
from convcli.nn.layers.linear import Flatten, LazyLinear, Linear
from convcli.nn.layers.norm import BatchNorm1d, BatchNorm2d, Dropout, LazyBatchNorm1d, LazyBatchNorm2d
from convcli.nn.layers.pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    LPPool1d,
    LPPool2d,
    MaxPool1d,
    MaxPool2d,
    _PoolNd,
)

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

__all__ = ["GLOBAL", "LAYERS", "Block", "Layer", "Shape", "Step", "_ConvNd", "_PoolNd", "compose_steps",
           "shape_text", *LAYERS]
