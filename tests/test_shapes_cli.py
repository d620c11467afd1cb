"""`convcli shapes`: the network table, --json, the calculator and the solver, run for real."""

import json
import subprocess
import sys

import pytest
from commands import run
from hypothesis import given
from hypothesis import strategies as st

from convcli.nn.calculator import LayerSize, solve

SPEC = (
    "Input(1,28,28); Conv2d(1,8,5); ReLU(); MaxPool2d(2); LazyConv2d(16,3); ReLU(); MaxPool2d(2); "
    "Flatten(); LazyLinear(10)"
)


def test_table_shows_rows_and_totals():
    result = run("shapes", SPEC)
    assert result.exit_code == 0, result.output
    for text in ("conv1", "8x24x24", "16x5x5", "115,200", "5,386", "234,400", "12x12", "linear1"):
        assert text in result.stdout


def test_spec_file_and_input_option(tmp_path):
    path = tmp_path / "net.txt"
    path.write_text("# the seeds' CNN without its input line\nConv2d(1, 8, 5)\nReLU()\nMaxPool2d(2)\n")
    result = run("shapes", str(path), "--input", "1x28x28", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["output_shape"] == [8, 12, 12] and document["total_params"] == 208


def test_spec_from_stdin():
    result = run("shapes", "-", "--json", input="Input(2, 10)\nConv1d(2, 3, 4)\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output_shape"] == [3, 7]


def test_json_contract():
    document = json.loads(run("shapes", SPEC, "--json").stdout)
    assert set(document) == {
        "command",
        "input_shape",
        "output_shape",
        "layers",
        "total_params",
        "trainable_params",
        "total_macs",
    }
    assert document["input_shape"] == [1, 28, 28] and document["output_shape"] == [10]
    assert len(document["layers"]) == 8  # one per layer, none for the input
    first = document["layers"][0]
    assert set(first) == {
        "index",
        "name",
        "type",
        "output_shape",
        "params",
        "trainable",
        "macs",
        "receptive_field",
        "jump",
    }
    assert first == {
        "index": 1,
        "name": "conv1",
        "type": "Conv2d",
        "output_shape": [8, 24, 24],
        "params": 208,
        "trainable": 208,
        "macs": 115200,
        "receptive_field": [5, 5],
        "jump": [1, 1],
    }
    assert document["total_params"] == document["trainable_params"] == 5386
    assert document["total_macs"] == 234400


def test_model_option_and_list():
    result = run("shapes", "--model", "resnet18", "--json")
    assert json.loads(result.stdout)["total_params"] == 11_689_512
    listing = run("shapes", "--list-models")
    assert listing.exit_code == 0 and "mobilenet_v2" in listing.stdout and "3,504,872" in listing.stdout


def test_unknown_model_exits_2_with_close_names():
    result = run("shapes", "--model", "vgg17")
    assert result.exit_code == 2
    assert "unknown model 'vgg17'" in result.stderr and "did you mean" in result.stderr


def test_spec_error_is_one_line_with_position():
    result = run("shapes", "Input(1,28,28)\nConv2d(1,8,5)\nMaxPol2d(2)")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "line 3, column 1: unknown layer 'MaxPol2d'" in lines[0]
    assert "did you mean 'MaxPool2d'" in lines[0]


@pytest.mark.parametrize("value", ["1x0x28", "axb"])
def test_bad_input_option(value):
    result = run("shapes", "Conv2d(1,8,5)", "--input", value)
    assert result.exit_code == 2 and "bad input shape" in result.stderr


def test_missing_spec_file():
    result = run("shapes", "no-such-net.txt")
    assert result.exit_code == 2 and "no such file" in result.stderr


# ---------------------------------------------------------------- calculator


def test_calculator_fills_in_the_formula():
    result = run("shapes", "--size", "28", "--kernel", "5")
    assert result.exit_code == 0
    assert "floor((28 + 2·0 − 1·(5 − 1) − 1) / 1) + 1 = 24" in result.stdout
    assert result.stderr == ""


def test_calculator_warns_about_left_over_rows():
    result = run("shapes", "--size", "28", "--kernel", "5", "--stride", "2", "--json")
    expected = {"command": "shapes", "output_size": 12, "exact": False, "left_over": 1}
    assert json.loads(result.stdout) == expected
    assert "1 input row is left over" in result.stderr
    tiled = run("shapes", "--size", "29", "--kernel", "5", "--stride", "2", "--json")
    assert json.loads(tiled.stdout) == {"command": "shapes", "output_size": 13, "exact": True, "left_over": 0}


def test_calculator_transposed_ceil_and_asymmetric_padding():
    result = run(
        "shapes",
        "--size",
        "7",
        "--kernel",
        "3",
        "--stride",
        "2",
        "--padding",
        "1",
        "--transposed",
        "--output-padding",
        "1",
        "--json",
    )
    assert json.loads(result.stdout)["output_size"] == 14
    ceil = run("shapes", "--size", "6", "--kernel", "3", "--stride", "2", "--ceil-mode", "--json")
    assert json.loads(ceil.stdout)["output_size"] == 3
    asym = run("shapes", "--size", "10", "--kernel", "4", "--padding", "1,2", "--json")
    assert json.loads(asym.stdout)["output_size"] == 10


@pytest.mark.parametrize(
    "args",
    [
        ["--size", "-3", "--kernel", "3"],
        ["--size", "3", "--kernel", "0"],
        ["--size", "3", "--kernel", "5"],
        ["--size", "3", "--kernel", "2", "--padding", "-1"],
    ],
)
def test_calculator_bad_values_exit_2(args):
    result = run("shapes", *args)
    assert result.exit_code == 2 and result.stderr.strip()


def test_solver_lists_exact_then_flooring():
    result = run(
        "shapes",
        "--size",
        "32",
        "--kernel",
        "3",
        "--padding",
        "1",
        "--out",
        "16",
        "--solve",
        "stride",
        "--json",
    )
    assert json.loads(result.stdout) == {"command": "shapes", "solutions": [], "inexact": [2]}
    result = run("shapes", "--size", "28", "--out", "24", "--solve", "kernel", "--json")
    assert json.loads(result.stdout) == {"command": "shapes", "solutions": [5], "inexact": []}
    human = run(
        "shapes", "--size", "28", "--kernel", "3", "--stride", "2", "--out", "14", "--solve", "padding"
    )
    assert human.exit_code == 0 and "tile exactly" in human.stdout and "only by flooring" in human.stdout


def test_solver_without_solution_exits_1():
    result = run("shapes", "--size", "28", "--kernel", "3", "--out", "40", "--solve", "stride")
    assert result.exit_code == 1 and "no stride gives output size 40" in result.stderr


def brute(unknown, target, layer, limit=300):
    """Every value in a wide range, kept when output_size gives the target."""
    exact, inexact = [], []
    for value in range(0 if unknown == "padding" else 1, limit):
        trial = LayerSize(**{**layer.__dict__, unknown: value})
        try:
            out = trial.output()
        except ValueError:
            continue
        if out == target:
            # exact: the division in the size formula needs no flooring (written out independently)
            floored = not trial.transposed and (
                trial.size + 2 * trial.padding - trial.dilation * (trial.kernel - 1) - 1
            ) % trial.stride
            (inexact if floored else exact).append(value)
    return exact, inexact


@given(
    unknown=st.sampled_from(["kernel", "stride", "padding", "size"]),
    n=st.integers(1, 40),
    k=st.integers(1, 6),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 2),
    target=st.integers(1, 30),
    transposed=st.booleans(),
)
def test_solver_matches_brute_force(unknown, n, k, s, p, d, target, transposed):
    layer = LayerSize(size=n, kernel=k, stride=s, padding=p, dilation=d, transposed=transposed)
    expected = brute(unknown, target, layer)
    if unknown == "stride" and not transposed:
        # beyond the padded input every stride gives one window: the solver lists up to the first of them
        expected = tuple([v for v in values if v <= n + 2 * p] for values in expected)
    if unknown == "stride" and transposed and n == 1:
        # one input sample: the stride has no effect; the solver lists the strides up to the output size
        expected = tuple([v for v in values if v <= target + 2 * p + 1] for values in expected)
    if expected == ([], []):
        with pytest.raises(Exception, match="no .* gives output size"):
            solve(unknown, target, layer)
    else:
        assert solve(unknown, target, layer) == expected


# ---------------------------------------------------------------- speed and imports


PROBE = """
import sys, time
start = time.perf_counter()
from click.testing import CliRunner
from convcli.cli import cli
result = CliRunner().invoke(cli, ["shapes", "--model", "resnet50"])
assert result.exit_code == 0, result.output
heavy = sorted(m for m in ("numba", "scipy", "llvmlite") if m in sys.modules)
print(heavy, time.perf_counter() - start)
"""


def test_shapes_itself_imports_no_numba_or_scipy():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         timeout=120)
    heavy, seconds = out.stdout.rsplit(maxsplit=1)
    assert heavy == "[]"
    # ~0.4 s on a loaded 2-core machine: ten times that catches a heavy import; how fast shapes is
    # (against `python -c pass`) is measured in benchmarks/bench_warm.py
    assert float(seconds) < 5.0, seconds
