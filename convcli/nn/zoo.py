"""Well-known networks written in the spec language (``convcli shapes --model NAME``).

Each model is spec text built the way torchvision builds the network, on its standard input
size, so the counts can be checked against the published ones (tests/test_zoo.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from convcli.errors import UsageError, closest
from convcli.nn.spec import Network, parse_spec


def lenet5() -> str:
    """LeNet-5 (LeCun et al. 1998) with tanh and average pooling, on 1x32x32."""
    return """Input(1, 32, 32)
Conv2d(1, 6, 5); Tanh(); AvgPool2d(2)
Conv2d(6, 16, 5); Tanh(); AvgPool2d(2)
Flatten()
Linear(400, 120); Tanh()
Linear(120, 84); Tanh()
Linear(84, 10)
"""


def mlp() -> str:
    """The seeds' fully connected MNIST model: 784-200-100-10 (178,110 parameters)."""
    return """Input(1, 28, 28)
Flatten()
Linear(784, 200); ReLU()
Linear(200, 100); Tanh()
Linear(100, 10); Softmax(dim=1)
"""


def small_cnn() -> str:
    """The seeds' small MNIST CNN: 5x5x8 and 3x3x16 convolutions, max pooling (5,386 parameters)."""
    return """Input(1, 28, 28)
Conv2d(1, 8, 5); ReLU(); MaxPool2d(2)
Conv2d(8, 16, 3); ReLU(); MaxPool2d(2)
Flatten()
Linear(400, 10); Softmax(dim=1)
"""


def alexnet() -> str:
    """torchvision's AlexNet (the one-GPU variant of Krizhevsky et al.), on 3x224x224."""
    return """Input(3, 224, 224)
Conv2d(3, 64, kernel_size=11, stride=4, padding=2); ReLU(); MaxPool2d(kernel_size=3, stride=2)
Conv2d(64, 192, kernel_size=5, padding=2); ReLU(); MaxPool2d(kernel_size=3, stride=2)
Conv2d(192, 384, kernel_size=3, padding=1); ReLU()
Conv2d(384, 256, kernel_size=3, padding=1); ReLU()
Conv2d(256, 256, kernel_size=3, padding=1); ReLU(); MaxPool2d(kernel_size=3, stride=2)
AdaptiveAvgPool2d((6, 6)); Flatten()
Dropout(0.5); Linear(9216, 4096); ReLU()
Dropout(0.5); Linear(4096, 4096); ReLU()
Linear(4096, 1000)
"""


VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


def vgg(depth: int, batch_norm: bool) -> str:
    """torchvision's VGG (Simonyan & Zisserman), configuration A/B/D/E, on 3x224x224."""
    lines, channels = ["Input(3, 224, 224)"], 3
    for item in VGG_CONFIGS[depth]:
        if item == "M":
            lines.append("MaxPool2d(kernel_size=2, stride=2)")
            continue
        norm = f"; BatchNorm2d({item})" if batch_norm else ""
        lines.append(f"Conv2d({channels}, {item}, kernel_size=3, padding=1){norm}; ReLU()")
        channels = item
    lines += [
        "AdaptiveAvgPool2d((7, 7)); Flatten()",
        "Linear(25088, 4096); ReLU(); Dropout(0.5)",
        "Linear(4096, 4096); ReLU(); Dropout(0.5)",
        "Linear(4096, 1000)",
    ]
    return "\n".join(lines) + "\n"


RESNET_CONFIGS = {
    18: ("BasicBlock", [2, 2, 2, 2]),
    34: ("BasicBlock", [3, 4, 6, 3]),
    50: ("Bottleneck", [3, 4, 6, 3]),
}


def resnet(depth: int) -> str:
    """torchvision's ResNet (He et al.; v1.5 Bottleneck with the stride on the 3x3), on 3x224x224."""
    block, counts = RESNET_CONFIGS[depth]
    expansion = 4 if block == "Bottleneck" else 1
    lines = [
        "Input(3, 224, 224)",
        "Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False); BatchNorm2d(64); ReLU()",
        "MaxPool2d(kernel_size=3, stride=2, padding=1)",
    ]
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            lines.append(f"{block}({inplanes}, {planes}, stride={stride})")
            inplanes = planes * expansion
    lines += ["AdaptiveAvgPool2d((1, 1)); Flatten()", f"Linear({inplanes}, 1000)"]
    return "\n".join(lines) + "\n"


# MobileNetV2's inverted residual settings: expansion t, channels c, repeats n, first stride s
MOBILENET_V2_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def mobilenet_v2() -> str:
    """torchvision's MobileNetV2 (Sandler et al., width 1.0), on 3x224x224."""
    lines = [
        "Input(3, 224, 224)",
        "Conv2d(3, 32, kernel_size=3, stride=2, padding=1, bias=False); BatchNorm2d(32); ReLU6()",
    ]
    channels = 32
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for i in range(n):
            lines.append(f"InvertedResidual({channels}, {c}, stride={s if i == 0 else 1}, expand_ratio={t})")
            channels = c
    lines += [
        "Conv2d(320, 1280, kernel_size=1, bias=False); BatchNorm2d(1280); ReLU6()",
        "AdaptiveAvgPool2d((1, 1)); Flatten()",
        "Dropout(0.2); Linear(1280, 1000)",
    ]
    return "\n".join(lines) + "\n"


MODELS: dict[str, tuple[Callable[[], str], str]] = {
    "lenet5": (lenet5, "LeNet-5, tanh + average pooling"),
    "mlp": (mlp, "the seeds' MLP 784-200-100-10"),
    "small_cnn": (small_cnn, "the seeds' small CNN (conv 5x5x8, conv 3x3x16, linear)"),
    "alexnet": (alexnet, "AlexNet (torchvision)"),
    **{
        f"vgg{depth}{'_bn' if bn else ''}": (
            (lambda depth=depth, bn=bn: vgg(depth, bn)),
            f"VGG-{depth}{' with batch norm' if bn else ''} (torchvision)",
        )
        for depth in VGG_CONFIGS
        for bn in (False, True)
    },
    **{
        f"resnet{depth}": ((lambda depth=depth: resnet(depth)), f"ResNet-{depth} (torchvision)")
        for depth in RESNET_CONFIGS
    },
    "mobilenet_v2": (mobilenet_v2, "MobileNetV2 (torchvision)"),
}


def _key(name: str) -> str:
    """'ResNet-18', 'resnet_18' and 'resnet18' name the same model."""
    return name.lower().replace("-", "").replace("_", "")


def model_spec(name: str) -> str:
    """The spec text of a zoo model; an unknown name lists the close ones."""
    by_key = {_key(model): entry for model, entry in MODELS.items()}
    entry = by_key.get(_key(name))
    if entry is None:
        hits = closest(name, MODELS)
        hint = f" (did you mean {' or '.join(repr(h) for h in hits)}?)" if hits else ""
        raise UsageError(f"unknown model {name!r}{hint}; models: {', '.join(MODELS)}")
    return entry[0]()


def load(name: str, input_shape: Sequence[int] | str | None = None) -> Network:
    """The built network of a zoo model, on its standard input or on ``input_shape``."""
    text = model_spec(name)
    if input_shape is not None:
        text = text.split("\n", 1)[1]  # every zoo spec starts with its Input(...) line
    return parse_spec(text, input_shape)
