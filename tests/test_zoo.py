"""Every zoo model against torchvision's published parameter counts and GFLOPS (which are MACs)."""

import pytest

from convcli.errors import UsageError
from convcli.nn import zoo

# torchvision model pages (num_params, GFLOPS) for ImageNet weights at 224x224
PUBLISHED = {
    "alexnet": (61_100_840, 0.71),
    "vgg11": (132_863_336, 7.61),
    "vgg11_bn": (132_868_840, 7.61),
    "vgg13": (133_047_848, 11.31),
    "vgg13_bn": (133_053_736, 11.31),
    "vgg16": (138_357_544, 15.47),
    "vgg16_bn": (138_365_992, 15.47),
    "vgg19": (143_667_240, 19.63),
    "vgg19_bn": (143_678_248, 19.63),
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "mobilenet_v2": (3_504_872, 0.30),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts_and_macs(name):
    params, gflops = PUBLISHED[name]
    net = zoo.load(name)
    assert net.num_params == params
    assert abs(net.total_macs / 1e9 - gflops) <= 0.01 * gflops, net.total_macs
    assert net.output_shape == (1000,)


def test_small_models_by_hand():
    # LeNet-5: 6·(25+1) + 16·(6·25+1) + 120·401 + 84·121 + 10·85
    assert zoo.load("lenet5").num_params == 156 + 2416 + 48120 + 10164 + 850 == 61706
    # the seeds' MLP: (784·200+200) + (200·100+100) + (100·10+10)
    assert zoo.load("mlp").num_params == 157000 + 20100 + 1010 == 178110
    cnn = zoo.load("small_cnn")
    assert [layer.num_params for layer in cnn.layers if layer.num_params] == [208, 1168, 4010]
    assert cnn.num_params == 5386


def test_alexnet_conv1_is_torchvisions_64_channel_one():
    conv1 = zoo.load("alexnet").layers[0]
    assert conv1.num_params == 11 * 11 * 3 * 64 + 64 and conv1.out_shape == (64, 55, 55)


def test_resnet_block_parameter_names_follow_torchvision():
    net = zoo.load("resnet18")
    shapes = net.param_shapes()
    assert shapes["basicblock3.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["basicblock3.conv1.weight"] == (128, 64, 3, 3)
    assert "basicblock1.downsample.0.weight" not in shapes
    assert net.buffer_shapes()["bn1.running_var"] == (64,)
    assert net.layers[-1].name == "linear1" and shapes["linear1.weight"] == (1000, 512)


def test_resnet_receptive_field_by_hand():
    # conv7/2: 7 (jump 2); maxpool3/2: 7+2·2 = 11 (jump 4); a stride-1 BasicBlock adds two 3x3: +2·2·4 = 16
    rows = zoo.load("resnet18").summary()
    assert [r["receptive_field"][0] for r in rows[:5]] == [7, 7, 7, 11, 27]
    assert [r["jump"][0] for r in rows[:5]] == [2, 2, 2, 4, 4]


def test_mobilenet_residual_only_where_shapes_match():
    blocks = [
        layer for layer in zoo.load("mobilenet_v2").layers if type(layer).__name__ == "InvertedResidual"
    ]
    assert len(blocks) == 17
    assert sum(block.residual for block in blocks) == 10  # the repeats after each stage's first block


def test_unknown_model_lists_close_names():
    with pytest.raises(UsageError, match="did you mean 'resnet18'"):
        zoo.model_spec("resnet19")
    assert zoo.model_spec("ResNet-18") == zoo.model_spec("resnet18")


def test_a_model_on_another_input_size():
    net = zoo.load("resnet18", "3x128x128")
    assert net.input_shape == (3, 128, 128) and net.num_params == 11_689_512
    assert net.layers[-4].out_shape == (512, 4, 4)
