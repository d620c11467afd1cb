"""One CLI plumbing: one --json vocabulary, one exit-status rule, one message style (README: "Scripts")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from commands import run

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
# names that the one vocabulary replaced: a fact has one key in every document
RETIRED_KEYS = {"shape_in", "shape", "kernel"}


def document(result, command: str) -> dict:
    """The one JSON document on stdout: an object, indented, whose first key names the command."""
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('{\n  "command": '), result.stdout[:80]
    parsed = json.loads(result.stdout)
    assert next(iter(parsed)) == "command" and parsed["command"] == command
    assert "params" not in parsed  # a network's count is total_params in every document
    assert not RETIRED_KEYS & set(_keys(parsed)), RETIRED_KEYS & set(_keys(parsed))
    for seconds in _values(parsed, "seconds"):
        assert seconds == round(seconds, 4)
    return parsed


def _keys(value):
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in ("probabilities", "parameters"):  # keyed by class and parameter names
                yield key
                yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def _values(value, name: str):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == name and isinstance(item, float):
                yield item
            yield from _values(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item, name)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.npz"
    result = run("train", SAMPLES / "shapes16.npz", "--epochs", "1", "-o", path, "--json")
    trained = document(result, "train")
    assert trained["model"] == str(path) and trained["total_params"] == 2019
    assert trained["epochs"] == 1
    assert set(trained["history"][0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    return path


def test_file_commands_share_their_record_keys(tmp_path):
    common = {"input", "output", "input_shape", "output_shape", "clipped", "non_finite", "error", "seconds",
              "worker", "worker_deaths"}
    convolved = document(run("convolve", SAMPLES / "photo.png", "-k", "box:3", "-o", tmp_path / "c.png",
                             "--json"), "convolve")
    pooled = document(run("pool", SAMPLES / "photo.png", "--size", "2", "-o", tmp_path / "p.png", "--json"),
                      "pool")
    for parsed in (convolved, pooled):
        assert {"files", "ok", "failed", "executor", "scheduler", "dashboard", "workers"} <= set(parsed)
        assert common <= set(parsed["files"][0])
    assert convolved["files"][0]["input_shape"] == [3, 256, 256] == pooled["files"][0]["input_shape"]
    assert pooled["files"][0]["output_shape"] == [3, 128, 128]
    assert convolved["kernels"] == ["box:3"] and convolved["files"][0]["method"] == ["separable"]


def test_network_commands(tmp_path):
    spec = "Input(1,28,28); Conv2d(1,8,5); Flatten(); LazyLinear(10)"
    for command in ("shapes", "params"):
        parsed = document(run(command, spec, "--json"), command)
        assert parsed["input_shape"] == [1, 28, 28] and parsed["output_shape"] == [10]
        assert parsed["total_params"] == 208 + 4608 * 10 + 10
        assert document(run(command, "--list-models", "--json"), command)["models"]
    assert document(run("shapes", "--size", "28", "--kernel", "5", "--json"), "shapes")["output_size"] == 24


def test_model_commands(model):
    predicted = document(run("predict", model, SAMPLES / "shapes" / "circle" / "circle00.png", "--json"),
                         "predict")
    assert predicted["model"] == str(model) and predicted["ok"] == 1 and predicted["failed"] == 0
    assert predicted["files"][0]["input"].endswith("circle00.png")
    assert predicted["predictions"][0]["label"] in ("circle", "square", "triangle")
    evaluated = document(run("evaluate", model, SAMPLES / "shapes16.npz", "--json"), "evaluate")
    assert evaluated["model"] == str(model) and evaluated["samples"] == 150


def test_kernel_and_server_commands(tmp_path):
    listed = document(run("kernels", "--json"), "kernels")
    assert {"name", "parameters", "kernel_shape", "description", "convention"} == set(listed["kernels"][0])
    shown = document(run("kernels", "show", "sobel-x", "--json"), "kernels show")
    assert shown["kernel_shape"] == [3, 3] and np.asarray(shown["matrix"]).shape == (3, 3)
    status = document(run("server", "status", "--json", env={"XDG_RUNTIME_DIR": str(tmp_path)}),
                      "server status")
    assert status["enabled"] is False and status["worker"] is None  # CONVCLI_SERVER=0 (conftest)
    assert status["native_client"] is None  # not run by an installed command


# ---------------------------------------------------------------- one exit-status rule
def test_an_output_folder_that_does_not_exist_is_a_usage_error(tmp_path):
    missing = tmp_path / "missing"
    for args in (("convolve", SAMPLES / "signal.npy", "-k", "box:3", "-o", missing / "x.npy"),
                 ("pool", SAMPLES / "signal.npy", "--size", "2", "-o", missing / "x.npy"),
                 ("train", SAMPLES / "waves.npz", "--epochs", "1", "-o", missing / "m.npz")):
        result = run(*args)
        assert result.exit_code == 2, (args[0], result.output)
        output = args[-1]
        assert result.output == f"convcli: error: {output}: output folder {missing} does not exist\n"
        assert not missing.exists()


def test_an_input_that_does_not_exist_is_a_processing_error(tmp_path, model):
    missing = tmp_path / "missing.npy"
    for args in (("convolve", missing, "-k", "box:3", "-o", tmp_path / "x.npy"),
                 ("pool", missing, "--size", "2", "-o", tmp_path / "x.npy"),
                 ("train", tmp_path / "missing.npz", "-o", tmp_path / "m.npz"),
                 ("evaluate", model, tmp_path / "missing.npz"),
                 ("predict", model, missing),
                 ("predict", tmp_path / "missing.npz", SAMPLES / "signal.npy")):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("convcli: error: ") and "no such" in result.output
        assert len(result.output.splitlines()) == 1, result.output


def test_what_the_command_line_names_wrongly_is_a_usage_error(tmp_path):
    """Kernels, specs and options that cannot be used: exit 2, whatever form they take (a file too)."""
    for args in (("kernels", "show", tmp_path / "missing.npy"),
                 ("convolve", SAMPLES / "signal.npy", "-k", tmp_path / "missing.npy"),
                 ("shapes", tmp_path / "missing.txt"),
                 ("params", tmp_path / "missing.txt"),
                 ("train", SAMPLES / "waves.npz", "--model", tmp_path / "no.npz", "-o", tmp_path / "m.npz"),
                 ("train", SAMPLES / "waves.npz", "--lr", "0", "-o", tmp_path / "m.npz"),
                 ("convolve", SAMPLES / "signal.npy", "-k", "box:3", "-j", "0")):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("convcli: error: ") and len(result.output.splitlines()) == 1


def test_library_parameters_are_shown_as_the_flags_that_set_them(tmp_path):
    assert run("train", SAMPLES / "waves.npz", "--lr", "0", "-o", tmp_path / "m.npz").output == \
        "convcli: error: --lr must be a finite number > 0, got 0.0\n"
    assert run("convolve", SAMPLES / "signal.npy", "-k", "box:3", "-j", "0").output == \
        "convcli: error: -j must be >= 1, got 0\n"
    assert run("shapes", "Conv2d(1, 8, 3)").output == \
        "convcli: error: no input shape: start the spec with Input(C, H, W) or give an --input\n"


@pytest.mark.parametrize("args, problem", [
    (("convolve", "x.png"), "missing option '-k' / '--kernel' (see 'convcli convolve --help')"),
    (("pool", "x.png", "--op", "median"), "invalid value for '--op': 'median' is not one of"),
    (("shapes", "--stide"), "no such option '--stide' (did you mean '--list-models', '--size', '--stride'?)"),
    (("predict",), "missing argument 'MODEL' (see 'convcli predict --help')"),
    (("kernels", "show"), "missing argument 'SPEC' (see 'convcli kernels show --help')"),
    (("convolv",), "no such command 'convolv' (did you mean 'convolve' or 'pool'?) (see 'convcli --help')"),
])
def test_click_usage_errors_are_one_line_in_the_house_style(args, problem):
    result = run(*args)
    assert result.exit_code == 2
    assert result.output.startswith("convcli: error: ") and problem in result.output
    assert len(result.output.splitlines()) == 1, result.output


def test_a_bare_command_group_shows_its_help_as_click_does():
    for args in ((), ("server",)):
        result = run(*args)
        assert result.exit_code == 2 and result.output.startswith(f"Usage: convcli {' '.join(args)}".rstrip())


def test_messages_have_one_prefix():
    result = run("shapes", "--size", "28", "--kernel", "5", "--stride", "2")
    assert result.stderr == \
        "convcli: warning: stride 2 does not tile the input exactly: 1 input row is left over (never read)\n"
    assert run("shapes", "--size", "224", "--kernel", "11", "--stride", "4", "--padding", "2").stderr \
        .startswith("convcli: note: ")
