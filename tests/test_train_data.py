"""Data sets for training: .npz arrays, class folders of audio, validation split, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from convcli.errors import InputError
from convcli.nn.data import (
    ReadOptions,
    channel_stats,
    load_dataset,
    split_validation,
    standardize,
)
from convcli.nn.train import build_network


def test_npz_integer_images_are_scaled_and_names_kept(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.full((3, 4, 4), 255, np.uint8), y=np.array([0, 1, 1]),
             class_names=np.array(["a", "b"]))
    train, test = load_dataset(path)
    assert test is None
    assert train.x.dtype == np.float32 and np.all(train.x == 1.0)
    assert train.class_names == ["a", "b"]


def test_npz_whole_float_labels_are_accepted_and_bad_ones_named(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 5)), y=np.array([0.0, 1.0]))
    assert load_dataset(path)[0].y.dtype == np.int64
    np.savez(path, x=np.zeros((2, 5)), y=np.array([0, -1]))
    with pytest.raises(InputError, match=">= 0"):
        load_dataset(path)
    np.savez(path, x=np.zeros((2, 5)), y=np.array([0, 1]), x_test=np.zeros((2, 6)), y_test=np.array([0, 1]))
    with pytest.raises(InputError, match="x_test"):
        load_dataset(path)


def test_audio_folder_with_length_and_mono(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("hum", "hiss"):
        (tmp_path / name).mkdir()
        for i, frames in enumerate((900, 1100)):
            soundfile.write(tmp_path / name / f"{i}.wav", rng.uniform(-0.5, 0.5, (frames, 2)), 8000)
    with pytest.raises(InputError, match="use length"):
        load_dataset(tmp_path)
    train, _ = load_dataset(tmp_path, ReadOptions(length=1000, mono=True))
    assert train.x.shape == (4, 1, 1000) and train.kind == "audio"
    assert train.class_names == ["hiss", "hum"] and list(train.y) == [0, 0, 1, 1]
    assert np.all(train.x[0, 0, 900:] == 0)  # zero-padded
    resampled, _ = load_dataset(tmp_path, ReadOptions(length=500, sample_rate=4000, mono=True))
    assert resampled.x.shape == (4, 1, 500)


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png"):
        load_dataset(tmp_path)


def test_validation_split_and_statistics():
    from convcli.nn.data import Dataset

    data = Dataset(np.arange(40, dtype=np.float32).reshape(10, 1, 4), np.arange(10) % 2, ["a", "b"])
    train, val = split_validation(data, 0.2, np.random.default_rng(0))
    assert len(train) == 8 and len(val) == 2
    assert sorted(np.concatenate([train.x[:, 0, 0], val.x[:, 0, 0]]).tolist()) == list(range(0, 40, 4))
    assert split_validation(data, 0.0, np.random.default_rng(0))[1] is None
    mean, std = channel_stats(train.x)
    z = standardize(train.x, mean, std)
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-5
    with pytest.raises(ValueError, match="^val_split "):
        split_validation(data, 1.0, np.random.default_rng(0))


def test_read_options_are_checked_by_their_parameter_names():
    ReadOptions(size=(32, 24), length=8, sample_rate=8000).check()
    for options, name in ((ReadOptions(size=(32, 0)), "size"), (ReadOptions(length=0), "length"),
                          (ReadOptions(sample_rate=0), "sample_rate")):
        with pytest.raises(ValueError, match=f"^{name} "):
            options.check()


def test_first_layer_decides_the_sample_layout():
    assert build_network("Conv1d(1, 2, 3); Flatten(); LazyLinear(3)", (10,), 3).input_shape == (1, 10)
    assert build_network("Conv2d(1, 2, 3); Flatten(); LazyLinear(3)", (6, 6), 3).input_shape == (1, 6, 6)
    assert build_network("Conv1d(6, 2, 3); Flatten(); LazyLinear(3)", (6, 6), 3).input_shape == (6, 6)
    assert build_network("Input(1, 36); Conv1d(1, 2, 3); Flatten(); LazyLinear(3)", (6, 6), 3).input_shape \
        == (1, 36)
    assert build_network(None, (2, 50), 3).input_shape == (2, 50)       # stereo signals
    assert build_network(None, (12, 12), 3).input_shape == (1, 12, 12)  # gray images
    with pytest.raises(ValueError, match="3 classes"):
        build_network("Flatten(); LazyLinear(4)", (5,), 3)
