"""`convcli params`: counts, formulas, buffers, float32 size, --compare-dense, run for real."""

import json

from commands import run


def test_formulas_and_totals_for_the_seeds_cnn():
    result = run("params", "--model", "small_cnn")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "k²·C_in·C_out + C_out = 5·5·1·8 + 8 = 208" in out
    assert "k²·C_in·C_out + C_out = 3·3·8·16 + 16 = 1,168" in out
    assert "in·out + out = 400·10 + 10 = 4,010" in out
    assert "total 5,386 parameters" in out and f"{5386 * 4:,} bytes" in out


def test_batchnorm_buffers_are_listed_apart():
    result = run("params", "Input(3, 8, 8); Conv2d(3, 4, 3, bias=False); BatchNorm2d(4)")
    out = result.stdout
    assert "2·C (γ, β) = 2·4 = 8" in out
    assert "total 116 parameters: 116 trainable" in out  # 3·3·3·4 + 8
    assert "plus 9 non-trainable buffer values" in out  # running mean/var (4 + 4) + num_batches_tracked


def test_compare_dense_shows_the_cost_of_no_weight_sharing():
    result = run("params", "Input(1, 28, 28); Conv2d(1, 8, 5)", "--compare-dense")
    # a dense layer from 28·28 inputs to 8·24·24 outputs: 784·4608 + 4608
    assert f"{784 * 4608 + 4608:,}" in result.stdout
    assert f"{(784 * 4608 + 4608) / 208:,.0f}x" in result.stdout


def test_json_is_the_shapes_contract():
    document = json.loads(run("params", "--model", "vgg16", "--json").stdout)
    assert document["total_params"] == 138_357_544
    assert [layer["params"] for layer in document["layers"]][0] == 3 * 64 * 9 + 64


def test_list_models_and_errors():
    listing = run("params", "--list-models")
    for name in ("lenet5", "mlp", "small_cnn", "alexnet", "vgg19_bn", "resnet50", "mobilenet_v2"):
        assert name in listing.stdout
    result = run("params", "--model", "mobilenet")
    assert result.exit_code == 2 and "did you mean 'mobilenet_v2'" in result.stderr
    both = run("params", "Conv2d(1,2,3)", "--model", "lenet5")
    assert both.exit_code == 2 and "not both" in both.stderr
    channel = run("params", "Input(3, 32, 32); Conv2d(1, 6, 5)")
    assert channel.exit_code == 2
    assert "line 1, column 19" in channel.stderr and "in_channels=1" in channel.stderr
