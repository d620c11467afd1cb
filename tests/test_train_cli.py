"""`convcli train / evaluate / predict` on real files, and the model file format."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
from commands import run
from PIL import Image

from convcli.errors import InputError
from convcli.nn.model import load_model


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convcli: error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def stripes(tmp_path_factory):
    """Horizontal vs vertical stripes (8×8), with a test split: learnable in a few epochs."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("data")

    def make(count):
        y = np.arange(count) % 2
        phase = rng.integers(0, 2, count)
        grid = (np.indices((8, 8)).sum(axis=0) * 0)[None] + np.arange(8)[None, :, None]
        x = np.where(y[:, None, None] == 0, (grid + phase[:, None, None]) % 2,
                     (grid.transpose(0, 2, 1) + phase[:, None, None]) % 2).astype(np.float32)
        return x + rng.normal(0, 0.1, x.shape).astype(np.float32), y

    x, y = make(64)
    x_test, y_test = make(32)
    path = folder / "stripes.npz"
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test, class_names=np.array(["horizontal", "vertical"]))
    return path


def train_args(data, out, *extra):
    return ("train", data, "-o", out, "--epochs", "4", "--batch-size", "16", "--lr", "0.01", "--quiet",
            *extra)


def test_train_json_document_and_model_file(stripes, tmp_path):
    out = tmp_path / "m.npz"
    result = run(*train_args(stripes, out, "--json", "--quiet"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert set(doc) == {"command", "model", "epochs", "train_accuracy", "val_accuracy", "test_accuracy",
                        "seconds", "samples_per_second", "total_params", "history"}
    assert doc["command"] == "train" and doc["seconds"] == round(doc["seconds"], 4)
    assert doc["epochs"] == 4 and len(doc["history"]) == 4
    assert set(doc["history"][0]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert doc["test_accuracy"] > 0.9
    with np.load(out, allow_pickle=False) as data:
        meta = json.loads(str(data["__meta__"]))
        assert data["conv1.weight"].shape == (8, 1, 3, 3)
        assert data["conv1.bias"].shape == (8,)
    assert meta["class_names"] == ["horizontal", "vertical"]
    assert meta["input_shape"] == [1, 8, 8]
    assert len(meta["history"]) == 4


def test_round_trip_gives_the_same_predictions(stripes, tmp_path):
    out = tmp_path / "m.npz"
    assert run(*train_args(stripes, out)).exit_code == 0
    model = load_model(out)
    x = np.load(stripes)["x_test"]
    first = model.predict(x)
    model.save(tmp_path / "copy.npz")
    np.testing.assert_array_equal(load_model(tmp_path / "copy.npz").predict(x), first)
    np.testing.assert_allclose(first.sum(axis=1), 1, rtol=1e-5)


def test_same_seed_gives_identical_model_files(stripes, tmp_path):
    for name in ("a.npz", "b.npz"):
        spec = "Conv2d(1,4,3); ReLU(); Dropout(0.2); Flatten(); LazyLinear(2)"
        assert run(*train_args(stripes, tmp_path / name, "--seed", "3", "--model", spec)).exit_code == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    for key in ("conv1.weight", "linear1.weight", "linear1.bias"):
        np.testing.assert_array_equal(a[key], b[key])


def test_the_python_api_trains_the_model_the_command_line_trains(stripes, tmp_path):
    """convcli.nn.train.train needs no CLI: the same data, recipe and seed give the same weights,
    history and file; bad settings are named as the Python caller wrote them."""
    from convcli.nn.train import TrainConfig, train

    spec = "Conv2d(1,4,3); ReLU(); Dropout(0.2); Flatten(); LazyLinear(2)"
    assert run(*train_args(stripes, tmp_path / "cli.npz", "--seed", "3", "--model", spec)).exit_code == 0
    epochs = []
    config = TrainConfig(epochs=4, batch_size=16, lr=0.01, seed=3)
    model = train(stripes, spec=spec, config=config, output=tmp_path / "api.npz", on_epoch=epochs.append)
    assert [record["epoch"] for record in epochs] == [1, 2, 3, 4]
    from_cli = load_model(tmp_path / "cli.npz")
    for saved in (from_cli, load_model(tmp_path / "api.npz")):
        for layer_cli, layer_api in zip(saved.network.layers, model.network.layers, strict=True):
            for name in layer_cli.params:
                np.testing.assert_array_equal(layer_cli.params[name], layer_api.params[name])
    assert [r["loss"] for r in from_cli.history] == [r["loss"] for r in model.history]
    with np.load(stripes) as data:
        accuracy = (model.predict(data["x_test"]).argmax(axis=1) == data["y_test"]).mean()
    assert accuracy > 0.9
    with pytest.raises(ValueError, match="^batch_size must be >= 1, got 0$"):
        train(stripes, config=TrainConfig(batch_size=0))


def test_resume_continues_to_the_same_model(stripes, tmp_path):
    straight, resumed = tmp_path / "straight.npz", tmp_path / "resumed.npz"
    assert run(*train_args(stripes, straight)).exit_code == 0
    args = list(train_args(stripes, resumed))
    args[args.index("--epochs") + 1] = "2"
    assert run(*args).exit_code == 0
    result = run(*train_args(stripes, resumed, "--resume", resumed))
    assert result.exit_code == 0, result.output
    a, b = load_model(straight), load_model(resumed)
    assert len(b.history) == 4
    for layer_a, layer_b in zip(a.network.layers, b.network.layers, strict=True):
        for name in layer_a.params:
            np.testing.assert_allclose(layer_a.params[name], layer_b.params[name], rtol=1e-6)


def test_evaluate_and_predict(stripes, tmp_path):
    out = tmp_path / "m.npz"
    assert run(*train_args(stripes, out)).exit_code == 0
    result = run("evaluate", out, stripes, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["split"] == "test" and report["samples"] == 32
    assert np.array(report["confusion_matrix"]).sum() == 32
    assert report["accuracy"] == pytest.approx(np.trace(report["confusion_matrix"]) / 32)
    sample = tmp_path / "one.npy"
    np.save(sample, np.load(stripes)["x_test"][:3])
    result = run("predict", out, sample, "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.output)["predictions"]
    assert len(predictions) == 3
    assert predictions[0]["label"] in ("horizontal", "vertical")
    assert sum(predictions[0]["probabilities"].values()) == pytest.approx(1, rel=1e-5)
    human = run("evaluate", out, stripes)
    assert "accuracy" in human.output and "vertical" in human.output


def test_folder_of_images_with_size_and_gray(tmp_path):
    rng = np.random.default_rng(1)
    for label, (name, colour) in enumerate((("dark", 40), ("bright", 200))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(colour + rng.normal(0, 10, (10 + label, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(tmp_path / "data" / name / f"{i}.png")
    mismatch = run("train", tmp_path / "data", "-o", tmp_path / "m.npz", "--epochs", "1")
    assert "differs" in one_error_line(mismatch) and "--size" in mismatch.output
    assert not (tmp_path / "m.npz").exists()
    out = tmp_path / "m.npz"
    result = run("train", tmp_path / "data", "-o", out, "--epochs", "2", "--size", "8x8", "--gray", "--quiet",
                 "--val-split", "0.25", "--plot", tmp_path / "curves.png",
                 "--filters-png", tmp_path / "f.png")
    assert result.exit_code == 0, result.output
    assert load_model(out).input_shape == (1, 8, 8)
    assert Image.open(tmp_path / "curves.png").size == (1200, 400)
    assert Image.open(tmp_path / "f.png").mode in ("RGB", "RGBA")  # a colour map
    result = run("predict", out, tmp_path / "data" / "dark" / "0.png", "--json")
    assert result.exit_code == 0, result.output


def test_bad_inputs_give_one_line_and_no_model_file(tmp_path, stripes):
    out = tmp_path / "m.npz"
    x = np.zeros((4, 8), np.float32)
    cases = {
        "float_labels": dict(x=x, y=np.array([0.5, 1, 0, 1])),
        "short_labels": dict(x=x, y=np.array([0, 1, 0])),
        "no_y": dict(x=x),
    }
    for name, arrays in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        result = run("train", path, "-o", out)
        assert result.exit_code != 0
        one_error_line(result)
        assert not out.exists()
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "empty" / "b" / "x.png")
    assert "empty class folder" in one_error_line(run("train", tmp_path / "empty", "-o", out))
    (tmp_path / "empty" / "a" / "notes.txt").write_text("hello")
    assert "not an image or audio" in one_error_line(run("train", tmp_path / "empty", "-o", out))
    spec = "Conv2d(1, 2, 3); Flatten(); LazyLinear(5)"
    assert "2 classes" in one_error_line(run("train", stripes, "-o", out, "--model", spec))
    assert "--batch-size" in one_error_line(run("train", stripes, "-o", out, "--batch-size", "0"))
    assert not out.exists()
    for path in (tmp_path / "missing.npz", tmp_path / "data.npz"):
        result = run("evaluate", path, stripes)
        assert result.exit_code != 0
        one_error_line(result)


def test_existing_output_needs_force(stripes, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"precious")
    assert "--force" in one_error_line(run(*train_args(stripes, out)))
    assert out.read_bytes() == b"precious"
    assert run(*train_args(stripes, out, "--force")).exit_code == 0


def test_pickled_and_malformed_model_files_are_refused(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="pickle"):
        load_model(pickled)
    raw_pickle = tmp_path / "raw.npz"
    raw_pickle.write_bytes(pickle.dumps({"conv1.weight": 1}))
    with pytest.raises(InputError, match="pickle"):
        load_model(raw_pickle)
    not_model = tmp_path / "arrays.npz"
    np.savez(not_model, x=np.zeros(3))
    with pytest.raises(InputError, match="not a convcli model"):
        load_model(not_model)
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("__meta__.npy", b"garbage")
    with pytest.raises(InputError):
        load_model(broken)
    meta = {"format": "convcli-model", "version": 1, "spec": "Linear(4, 2)", "input_shape": [4],
            "class_names": ["a", "b"], "normalization": {"mean": [0], "std": [1]}}
    wrong_shape = tmp_path / "wrong.npz"
    np.savez(wrong_shape, **{"__meta__": np.array(json.dumps(meta)), "linear1.weight": np.zeros((3, 4)),
                             "linear1.bias": np.zeros(2)})
    with pytest.raises(InputError, match="linear1.weight"):
        load_model(wrong_shape)
    result = run("predict", pickled, wrong_shape)
    assert "pickle" in one_error_line(result)


def test_nan_loss_stops_with_the_step_and_a_hint(stripes, tmp_path):
    out = tmp_path / "m.npz"
    result = run("train", stripes, "-o", out, "--lr", "1e30", "--optimizer", "sgd", "--epochs", "3",
                 "--quiet")
    line = one_error_line(result)
    assert "step" in line and "--lr" in line
    assert result.exit_code == 1


def test_separate_test_folder_and_class_check(tmp_path):
    rng = np.random.default_rng(2)
    for root, count in (("train", 6), ("test", 3)):
        for name, level in (("dark", 30), ("bright", 220)):
            (tmp_path / root / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(level + rng.normal(0, 8, (6, 6)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "L").save(tmp_path / root / name / f"{i}.png")
    out = tmp_path / "m.npz"
    result = run("train", tmp_path / "train", "--test", tmp_path / "test", "-o", out, "--epochs", "3",
                 "--lr", "0.05", "--json", "--model", "Flatten(); LazyLinear(2)")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["val_accuracy"] is None and doc["test_accuracy"] == 1.0
    (tmp_path / "test" / "grey").mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8), "L").save(tmp_path / "test" / "grey" / "0.png")
    assert "'grey'" in one_error_line(run("evaluate", out, tmp_path / "test"))


def test_ctrl_c_keeps_the_last_complete_epoch_and_exits_130(stripes, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "convcli", "train", str(stripes), "-o", str(out), "--epochs", "100000",
         "--quiet"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    kept = int(err.split("holds epoch ")[1].split()[0])
    assert len(load_model(out).history) == kept >= 1
    assert [name for name in os.listdir(tmp_path) if name.startswith(".")] == []


def test_predict_scales_integer_images_as_training_did(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8)
    path, out = tmp_path / "u8.npz", tmp_path / "m.npz"
    np.savez(path, x=x, y=np.arange(20) % 2)
    assert run("train", path, "-o", out, "--epochs", "1", "--quiet").exit_code == 0
    model = load_model(out)
    np.testing.assert_allclose(model.predict(x), model.predict(x / 255.0), rtol=1e-5, atol=1e-6)
