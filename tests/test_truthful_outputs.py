"""Issue #11: what a user sees is what was computed (audio stride rate, image borders, channel-mixing
kernel files, learned feature maps, the small wrong outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from commands import run
from PIL import Image

RNG = np.random.default_rng(11)


# ---------------------------------------------------------------- audio stride
@pytest.mark.parametrize("stride", [2, 4])
def test_audio_stride_divides_the_sample_rate(tmp_path, stride):
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.2, 0.2, 800), 8000, subtype="FLOAT")
    result = run(
        "convolve",
        tmp_path / "a.wav",
        "-k",
        "moving-average:3",
        "--stride",
        stride,
        "-o",
        tmp_path / "b.wav",
        "--json",
    )
    assert result.exit_code == 0, result.output
    info = soundfile.info(tmp_path / "b.wav")
    assert info.samplerate == 8000 // stride and info.frames == 800 // stride
    assert info.duration == pytest.approx(0.1)
    assert json.loads(result.stdout)["files"][0]["sample_rate"] == 8000 // stride


def test_audio_stride_that_leaves_a_fractional_rate_is_refused(tmp_path):
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.2, 0.2, 300), 22050, subtype="FLOAT")
    result = run(
        "convolve", tmp_path / "a.wav", "-k", "moving-average:3", "--stride", 4, "-o", tmp_path / "b.wav"
    )
    assert result.exit_code == 2 and "5512.5 Hz" in result.output
    assert not (tmp_path / "b.wav").exists()
    result = run(
        "convolve", tmp_path / "a.wav", "-k", "moving-average:3", "--stride", 4, "-o", tmp_path / "b.npy"
    )
    assert result.exit_code == 0 and np.load(tmp_path / "b.npy").shape == (1, 75)


# ---------------------------------------------------------------- image borders
def test_image_default_boundary_invents_no_frame(tmp_path):
    flat = np.full((24, 30, 3), 180, np.uint8)
    Image.fromarray(flat).save(tmp_path / "flat.png")
    for spec in ("sharpen", "gaussian:sigma=3", "box:5"):
        result = run("convolve", tmp_path / "flat.png", "-k", spec, "-o", tmp_path / f"{spec[:4]}.png")
        assert result.exit_code == 0, result.output
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{spec[:4]}.png")), flat), spec


def test_default_boundary_is_named_by_explain_and_json(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (12, 14), dtype=np.uint8)).save(tmp_path / "g.png")
    np.save(tmp_path / "x.npy", RNG.standard_normal(50))
    cases = [
        ("g.png", [], "reflect"),
        ("x.npy", [], "constant"),
        ("g.png", ["--boundary", "edge"], "edge"),
        ("g.png", ["--cval", "0.5"], "constant"),
    ]
    for index, (name, options, boundary) in enumerate(cases):
        out = tmp_path / f"out{index}{Path(name).suffix}"
        result = run(
            "convolve",
            tmp_path / name,
            "-k",
            "box:3" if name.endswith("png") else "1 2 1",
            *options,
            "-o",
            out,
            "--json",
            "--explain",
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["files"][0]["boundary"] == boundary
        assert f"boundary {boundary}" in result.stderr


def test_audio_keeps_silence_before_and_after(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.full(50, 0.5), 8000, subtype="FLOAT")
    assert (
        run("convolve", tmp_path / "a.wav", "-k", "moving-average:5", "-o", tmp_path / "b.wav").exit_code == 0
    )
    out, _ = soundfile.read(tmp_path / "b.wav")
    assert out[0] == pytest.approx(0.3) and out[25] == pytest.approx(0.5)


# ---------------------------------------------------------------- learned feature maps
SPEC = (
    "Conv2d(3, 4, 3, stride=2, padding=1); ReLU(); Conv2d(4, 6, 3, padding=2, dilation=2, groups=2); "
    "ReLU(); MaxPool2d(2); Flatten(); LazyLinear(2)"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by the CLI on RGB images 12x14 (mean/std far from 0/1), and one input image."""
    folder = tmp_path_factory.mktemp("fm")
    x = (RNG.uniform(0.5, 1.0, (40, 3, 12, 14)) * 255).astype(np.uint8)
    y = np.arange(40) % 2
    np.savez(folder / "data.npz", x=x, y=y)
    result = run("train", folder / "data.npz", "--model", SPEC, "--epochs", 2, "-o", folder / "m.npz", "-q")
    assert result.exit_code == 0, result.output
    Image.fromarray(np.moveaxis(x[0], 0, -1)).save(folder / "in.png")
    return folder


def training_forward(folder: Path, upto: int) -> np.ndarray:
    """The training code's own forward pass (evaluation mode) on the prepared input."""
    from convcli.nn.model import load_model

    model = load_model(folder / "m.npz")
    pixels = np.moveaxis(np.asarray(Image.open(folder / "in.png")), -1, 0)[None]
    x = model.prepare(pixels)
    for layer in model.network.layers[:upto]:
        x = layer.forward(x, False)
    return x[0]


@pytest.mark.parametrize("layer, upto", [("conv1", 1), ("relu1", 2), ("conv2", 3), ("maxpool1", 5)])
def test_feature_map_equals_the_training_forward(trained, tmp_path, layer, upto):
    out = tmp_path / "maps.npy"
    result = run("convolve", trained / "in.png", "-k", f"{trained / 'm.npz'}:{layer}", "-o", out)
    assert result.exit_code == 0, result.output
    expected = training_forward(trained, upto)
    got = np.load(out)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_first_feature_map_against_scipy(trained, tmp_path):
    """Independent of the nn code: standardize, correlate each channel (stride 2, padding 1), add bias."""
    from scipy.signal import correlate2d

    with np.load(trained / "m.npz") as archive:
        weight, bias = archive["conv1.weight"].astype(np.float64), archive["conv1.bias"].astype(np.float64)
        meta = json.loads(str(archive["__meta__"]))
    x = np.moveaxis(np.asarray(Image.open(trained / "in.png"), np.float64) / 255, -1, 0)
    norm = meta["normalization"]
    x = (x - np.array(norm["mean"])[:, None, None]) / np.array(norm["std"])[:, None, None]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    expected = np.stack(
        [
            sum(correlate2d(padded[i], weight[o, i], mode="valid") for i in range(3)) + bias[o]
            for o in range(4)
        ]
    )[:, ::2, ::2]
    assert (
        run(
            "convolve", trained / "in.png", "-k", f"{trained / 'm.npz'}:conv1[2]", "-o", tmp_path / "c.npy"
        ).exit_code
        == 0
    )
    assert expected.shape == (4, 6, 7)
    assert np.allclose(np.load(tmp_path / "c.npy"), expected[2:3], atol=1e-4)


def test_feature_maps_default_to_normalize_and_many_channels_make_a_grid(trained, tmp_path):
    model = f"{trained / 'm.npz'}"
    result = run("convolve", trained / "in.png", "-k", f"{model}:conv1[1]", "-o", tmp_path / "one.png")
    assert result.exit_code == 0 and "clipped" not in result.output
    pixels = np.asarray(Image.open(tmp_path / "one.png"))
    assert pixels.shape == (6, 7) and pixels.min() == 0 and pixels.max() == 255  # normalize: min->0, max->255
    result = run(
        "convolve", trained / "in.png", "-k", f"{model}:conv1", "-o", tmp_path / "grid.png", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["picture"] == "grid"
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size[0] > 200 and grid.size[1] > 200
    result = run("convolve", trained / "in.png", "-k", f"{model}:conv1", "-o", tmp_path / "g.npy", "--grid")
    assert result.exit_code == 2 and "--grid draws a picture" in result.output


def test_feature_map_refuses_geometry_options_and_unknown_layers(trained, tmp_path):
    model = f"{trained / 'm.npz'}"
    result = run(
        "convolve", trained / "in.png", "-k", f"{model}:conv1", "--stride", 2, "-o", tmp_path / "a.npy"
    )
    assert result.exit_code == 2 and "--stride 2" in result.output and "conv1.weight" in result.output
    result = run("convolve", trained / "in.png", "-k", f"{model}:conv9", "-o", tmp_path / "a.npy")
    assert result.exit_code == 2 and "no layer 'conv9'" in result.output


def test_raw_weight_stays_available_as_a_plain_kernel(trained, tmp_path):
    from scipy.signal import correlate2d

    with np.load(trained / "m.npz") as archive:
        weight = archive["conv1.weight"].astype(np.float64)
    result = run(
        "convolve",
        trained / "in.png",
        "-k",
        f"{trained / 'm.npz'}:conv1.weight",
        "--correlate",
        "--boundary",
        "constant",
        "--dtype",
        "float64",
        "-o",
        tmp_path / "raw.npy",
        "--explain",
    )
    assert result.exit_code == 0, result.output
    assert "mixed as a CNN layer does" in result.stderr
    x = np.moveaxis(np.asarray(Image.open(trained / "in.png"), np.float64) / 255, -1, 0)
    expected = np.stack(
        [sum(correlate2d(x[i], weight[o, i], mode="same") for i in range(3)) for o in range(4)]
    )
    assert np.allclose(np.load(tmp_path / "raw.npy"), expected, atol=1e-6)


# ---------------------------------------------------------------- channel-mixing kernel files
def test_rgb_to_gray_kernel_file_mixes_channels_instead_of_squeezing(tmp_path):
    rgb = RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    weights = np.array([0.299, 0.587, 0.114])
    np.save(tmp_path / "gray.npy", weights.reshape(1, 3, 1, 1))
    result = run(
        "convolve",
        tmp_path / "rgb.png",
        "-k",
        tmp_path / "gray.npy",
        "-o",
        tmp_path / "g.npy",
        "--dtype",
        "float64",
        "--explain",
    )
    assert result.exit_code == 0, result.output
    assert "mixed as a CNN layer does" in result.stderr and "3 input channel(s)" in result.stderr
    expected = np.tensordot(weights, np.moveaxis(rgb / 255, -1, 0), axes=1)[None]
    assert np.allclose(np.load(tmp_path / "g.npy"), expected)


def test_four_d_kernel_file_equals_a_sum_of_per_channel_convolutions(tmp_path):
    from scipy.signal import convolve2d

    rgb = RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    weight = RNG.normal(size=(5, 3, 3, 2))
    np.save(tmp_path / "w.npy", weight)
    result = run(
        "convolve",
        tmp_path / "rgb.png",
        "-k",
        tmp_path / "w.npy",
        "--boundary",
        "constant",
        "--mode",
        "valid",
        "--dtype",
        "float64",
        "-o",
        tmp_path / "o.npy",
    )
    assert result.exit_code == 0, result.output
    x = np.moveaxis(rgb / 255, -1, 0)
    expected = np.stack(
        [sum(convolve2d(x[i], weight[o, i], mode="valid") for i in range(3)) for o in range(5)]
    )
    assert np.allclose(np.load(tmp_path / "o.npy"), expected)
    result = run("convolve", tmp_path / "rgb.png", "-k", tmp_path / "w.npy", "-o", tmp_path / "o.png")
    assert (
        result.exit_code == 0
        and json.loads(
            run(
                "convolve", tmp_path / "rgb.png", "-k", tmp_path / "w.npy", "-o", tmp_path / "p.png", "--json"
            ).stdout
        )["files"][0]["picture"]
        == "grid"
    )


def test_three_d_kernel_file_mixes_audio_channels(tmp_path):
    from scipy.signal import convolve

    stereo = RNG.uniform(-0.3, 0.3, (200, 2))
    soundfile.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    weight = RNG.normal(size=(1, 2, 5)) * 0.2
    np.save(tmp_path / "mix.npy", weight)
    result = run("convolve", tmp_path / "s.wav", "-k", tmp_path / "mix.npy", "-o", tmp_path / "m.npy")
    assert result.exit_code == 0, result.output
    expected = sum(convolve(stereo[:, i], weight[0, i], mode="same") for i in range(2))
    assert np.allclose(np.load(tmp_path / "m.npy")[0], expected, atol=1e-6)
    result = run("convolve", tmp_path / "s.wav", "-k", "1 2 1; 1 2 1", "-o", tmp_path / "x.npy")
    assert result.exit_code == 2
    np.save(tmp_path / "mono_mix.npy", RNG.normal(size=(2, 3, 5)))
    result = run("convolve", tmp_path / "s.wav", "-k", tmp_path / "mono_mix.npy", "-o", tmp_path / "y.npy")
    assert result.exit_code == 2 and "mixes 3 input channel(s) into 2, but the input has 2" in result.output


# ---------------------------------------------------------------- smaller wrong outputs
def test_ceil_mode_leaves_no_row_over_and_says_nothing_about_it():
    result = run("shapes", "--size", 6, "--kernel", 3, "--stride", 2, "--ceil-mode")
    assert result.exit_code == 0 and "= 3" in result.stdout
    assert "left over" not in result.stderr and "rounded up" in result.stderr
    from convcli.sizes import left_over

    assert left_over(6, 3, stride=2, ceil_mode=True) == 0 and left_over(6, 3, stride=2) == 1


def test_the_seeds_stride_three_case_gets_a_note():
    """Seeds: 5x5 input, 3x3 filter, padding 1, stride 3: (5 + 2 - 3)/3 = 4/3 is 'not possible'."""
    result = run("shapes", "--size", 5, "--kernel", 3, "--padding", 1, "--stride", 3)
    assert result.exit_code == 0 and result.stdout.strip().endswith("= 2")
    assert "4/3 is not a whole number" in result.stderr and "floored" in result.stderr


def test_explain_prints_a_zero_tap_as_zero(tmp_path):
    soundfile.write(tmp_path / "a.wav", RNG.uniform(-0.2, 0.2, 400), 16000, subtype="FLOAT")
    result = run(
        "convolve", tmp_path / "a.wav", "-k", "lowpass:cutoff=1000", "-o", tmp_path / "b.wav", "--explain"
    )
    assert result.exit_code == 0
    assert "e-19" not in result.stderr and " 0 " in result.stderr
    from convcli.kernels.show import format_matrix

    assert format_matrix(np.array([0.2, -4.07991e-19, 0.2])).split() == ["0.2", "0", "0.2"]
    assert format_matrix(np.array([1e-20, 2e-20])).split() == ["1e-20", "2e-20"]  # small but not rounding


@pytest.fixture(scope="module")
def blobs_with_test(tmp_path_factory):
    folder = tmp_path_factory.mktemp("blobs")
    y = np.arange(60) % 2
    x = RNG.normal(0, 0.3, (60, 6, 6)).astype(np.float32)
    x[:, 2:4, 2:4] += np.where(y == 1, 1.0, -1.0)[:, None, None]
    np.savez(folder / "d.npz", x=x[:40], y=y[:40], x_test=x[40:], y_test=y[40:])
    return folder


def test_explicit_val_split_is_kept_with_a_test_set(blobs_with_test, tmp_path):
    data = blobs_with_test / "d.npz"
    result = run("train", data, "--epochs", 1, "-o", tmp_path / "a.npz", "--json")
    document = json.loads(result.stdout)
    assert document["val_accuracy"] is None and "test_accuracy" in document
    result = run("train", data, "--epochs", 1, "-o", tmp_path / "b.npz", "--val-split", 0.25)
    assert result.exit_code == 0 and result.stdout.startswith("30 training samples")
    result = run("train", data, "--epochs", 1, "-o", tmp_path / "c.npz", "--val-split", 0.25, "--json")
    assert json.loads(result.stdout)["val_accuracy"] is not None


def test_resume_header_names_the_epoch_it_starts_at(blobs_with_test, tmp_path):
    data = blobs_with_test / "d.npz"
    assert run("train", data, "--epochs", 2, "-o", tmp_path / "m.npz", "-q").exit_code == 0
    result = run("train", data, "--resume", tmp_path / "m.npz", "--epochs", 3, "-o", tmp_path / "m.npz")
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert "resuming at epoch 3" in header and "from epoch 2" not in header


def test_a_nan_loss_never_names_a_model_file_that_was_not_written(blobs_with_test, tmp_path):
    out = tmp_path / "m.npz"
    result = run("train", blobs_with_test / "d.npz", "-o", out, "--lr", "1e30", "--optimizer", "sgd", "-q")
    assert result.exit_code == 1 and not out.exists()
    assert f"{out} was not written" in result.stderr and "keeps" not in result.stderr


# ---------------------------------------------------------------- shell habits
@pytest.fixture
def tree(tmp_path):
    """photos/a.png, photos/b.png and photos/more/a.png (the same file name one level down)."""
    for relative in ("photos/a.png", "photos/b.png", "photos/more/a.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(RNG.integers(0, 256, (8, 9), dtype=np.uint8)).save(tmp_path / relative)
    return tmp_path


def test_convolve_reads_a_folder_and_with_recursive_its_sub_folders(tree):
    result = run("convolve", tree / "photos", "-k", "box:3", "-o", str(tree / "flat") + "/", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tree / "flat").iterdir()) == ["a.png", "b.png"]
    result = run("convolve", tree / "photos", "-r", "-k", "box:3", "-o", str(tree / "deep") + "/")
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(tree / "deep")) for p in (tree / "deep").rglob("*.png"))
    assert written == ["a.png", "b.png", "more/a.png"]
    empty = tree / "empty"
    empty.mkdir()
    result = run("convolve", empty, "-k", "box:3")
    assert result.exit_code != 0 and "no image, audio or array files" in result.output


def test_predict_takes_folders_and_globs(trained):
    model = trained / "m.npz"
    result = run("predict", model, trained, "--json")  # the folder holds in.png (and m.npz, data.npz)
    assert result.exit_code == 0, result.output
    files = [p["file"] for p in json.loads(result.stdout)["predictions"]]
    assert str(trained / "in.png") in files
    result = run("predict", model, str(trained / "*.png"), "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["predictions"]) == 1


def test_binary_output_to_a_terminal_is_refused_with_a_hint(tmp_path, monkeypatch):
    from convcli.io import files

    Image.fromarray(RNG.integers(0, 256, (8, 9), dtype=np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "x.npy", np.arange(5.0))
    monkeypatch.setattr(files, "stdout_is_terminal", lambda: True)
    result = run("convolve", tmp_path / "a.png", "-k", "box:3", "-o", "-")
    assert result.exit_code == 2 and "refusing to write PNG data to the terminal" in result.output
    assert "> out.png" in result.output
    np.savetxt(tmp_path / "x.csv", np.arange(5.0)[None], delimiter=",")
    assert run("convolve", tmp_path / "x.csv", "-k", "1 1", "-o", "-").exit_code == 0  # text is fine


def test_stdin_from_a_terminal_says_it_is_waiting(tmp_path, monkeypatch):
    from convcli.io import files

    monkeypatch.setattr(files, "stdin_is_terminal", lambda: True)
    np.save(tmp_path / "x.npy", np.arange(5.0))
    result = run(
        "convolve", "-", "-k", "1 1", "-o", tmp_path / "y.npy", input=(tmp_path / "x.npy").read_bytes()
    )
    assert result.exit_code == 0 and "waiting for the input file on stdin" in result.stderr


def test_kernels_list_fits_80_columns():
    from rich.console import Console

    from convcli.cli.kernels import kernel_table

    rows = json.loads(run("kernels", "--json").stdout)["kernels"]
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(kernel_table(rows, 80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert all(row["name"] in text for row in rows)


def test_debug_is_accepted_after_the_subcommand(tmp_path):
    result = run("shapes", "--debug", "--size", 5, "--kernel", 3)
    assert result.exit_code == 0 and "= 3" in result.stdout
    result = run("convolve", tmp_path / "missing.png", "-k", "nope-kernel", "--debug")
    assert isinstance(result.exception, Exception) and result.exit_code != 2  # the traceback, not one line


@pytest.mark.parametrize("command", ["shapes", "params"])
def test_list_models_json_prints_json(command):
    result = run(command, "--list-models", "--json")
    assert result.exit_code == 0
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert models["alexnet"]["total_params"] == 61_100_840 and models["lenet5"]["input_shape"] == [1, 32, 32]


def test_help_names_the_default_boundary_and_why():
    text = " ".join(run("convolve", "--help").output.split())
    assert "Default: images reflect, audio and arrays constant 0" in text and "invents no frame" in text


def test_a_channel_mixing_kernel_of_the_wrong_dimensionality_says_which_layout_fits(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (8, 9, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    np.save(tmp_path / "mix1d.npy", np.ones((1, 3, 5)))
    result = run("convolve", tmp_path / "rgb.png", "-k", tmp_path / "mix1d.npy")
    assert result.exit_code == 2 and "(C_out, C_in, kh, kw)" in result.output


def test_feature_maps_are_budgeted_before_they_are_computed(trained, tmp_path):
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    args = [
        "convolve",
        str(tmp_path / "big.png"),
        "-k",
        f"{trained / 'm.npz'}:conv2",
        "-o",
        str(tmp_path / "a.npy"),
    ]
    result = run(*args, env={"CONVCLI_MAX_MEMORY": "60k"})
    assert result.exit_code == 2 and "activations up to conv2" in result.output
    assert not (tmp_path / "a.npy").exists()
    assert run(*args).exit_code == 0
