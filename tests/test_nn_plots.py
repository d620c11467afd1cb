"""The pictures (matplotlib, Agg): they open, have a sensible size, and change with the data."""

import subprocess
import sys

import numpy as np
from PIL import Image

from convcli.nn.plots import plot_curves, plot_feature_maps, plot_filters

RNG = np.random.default_rng(0)


def history(epochs: int, val: bool = True) -> list[dict]:
    return [
        {
            "epoch": e + 1,
            "loss": 1 / (e + 1),
            "accuracy": e / epochs,
            "lr": 0.01,
            "val_loss": 1.2 / (e + 1) if val else None,
            "val_accuracy": e / epochs if val else None,
        }
        for e in range(epochs)
    ]


def opened(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_curves_open_and_change_with_the_history(tmp_path):
    plot_curves(history(5), tmp_path / "a.png")
    plot_curves(history(1, val=False), tmp_path / "one.png")  # one epoch: a marked point, not nothing
    plot_curves(history(9), tmp_path / "b.png")
    a, one, b = (opened(tmp_path / n) for n in ("a.png", "one.png", "b.png"))
    assert a.shape[0] >= 300 and a.shape[1] >= 900
    assert not np.array_equal(a, b) and not np.array_equal(a, one)


def test_filters_use_a_colour_map_and_change_with_the_weights(tmp_path):
    weight = RNG.normal(size=(8, 1, 3, 3))
    plot_filters(weight, tmp_path / "a.png")
    plot_filters(-weight, tmp_path / "b.png")
    plot_filters(RNG.normal(size=(4, 2, 5)), tmp_path / "lines.png")  # 1-D kernels: line plots
    a, b = opened(tmp_path / "a.png"), opened(tmp_path / "b.png")
    assert a.shape == b.shape and not np.array_equal(a, b)
    colourful = np.abs(a.astype(int) - a.mean(axis=2, keepdims=True)).max(axis=2) > 40
    assert colourful.mean() > 0.05  # a diverging colour map, not grey
    assert opened(tmp_path / "lines.png").shape[0] > 200


def test_feature_map_grid(tmp_path):
    maps = RNG.normal(size=(6, 10, 12))
    plot_feature_maps(maps, tmp_path / "g.png", labels=[f"conv1[{i}]" for i in range(6)], title="t")
    plot_feature_maps(maps[::-1], tmp_path / "h.png", labels=[f"conv1[{i}]" for i in range(6)], title="t")
    assert not np.array_equal(opened(tmp_path / "g.png"), opened(tmp_path / "h.png"))


def test_matplotlib_is_imported_only_for_pictures():
    code = (
        "import sys, convcli.nn.plots, convcli.cli.train, convcli.cli.convolve; "
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
