"""Pictures of training and of what a network computes, drawn with matplotlib: loss/accuracy/learning
rate curves, learned filters and feature maps.

matplotlib is imported inside each function, only when a picture is asked for, with the Agg backend
(no display needed; nothing else in convcli pays for the import). Every picture is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from convcli.errors import UsageError
from convcli.text import shape_text

DIVERGING = "RdBu_r"  # negative blue, 0 white, positive red
CURVES = {  # history key -> (panel, label, style)
    "loss": ("loss", "training (running mean over the epoch)", "-"),
    "val_loss": ("loss", "validation (end of epoch)", "--"),
    "accuracy": ("accuracy", "training (running mean over the epoch)", "-"),
    "val_accuracy": ("accuracy", "validation (end of epoch)", "--"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_picture_path(path: str | Path) -> None:
    """Refuse, before any work, a picture name whose extension the drawing backend cannot write
    (no extension: PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = FigureCanvasAgg.get_supported_filetypes()
    extension = Path(path).suffix.lstrip(".").lower() or "png"
    if extension not in formats:
        raise UsageError(f"{path}: cannot draw a picture as '.{extension}'; choose one of "
                         f"{', '.join('.' + name for name in sorted(formats))}")


def _save(figure, path: str | Path) -> None:
    """Atomic write (a temporary file in the target folder, then rename); the format follows the
    extension of ``path``."""
    from convcli.io.files import atomic_output

    path = Path(path)
    plt = _pyplot()
    try:
        with atomic_output(path, force=True) as temp:
            figure.savefig(temp, format=path.suffix.lstrip(".").lower() or "png", dpi=100)
    finally:
        plt.close(figure)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss, accuracy and learning rate per epoch, training and validation, with labelled axes, a grid
    and the legend below the panels (never over the curves). One epoch shows as marked points."""
    plt = _pyplot()
    epochs = [record["epoch"] if "epoch" in record else i + 1 for i, record in enumerate(history)]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
    panels = dict(zip(("loss", "accuracy", "lr"), axes, strict=True))
    for key, (panel, label, style) in CURVES.items():
        points = [(e, r.get(key)) for e, r in zip(epochs, history, strict=True) if r.get(key) is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            panels[panel].plot(xs, ys, style, marker="o", markersize=4, label=label)
    lrs = [(e, r["lr"]) for e, r in zip(epochs, history, strict=True) if r.get("lr") is not None]
    if lrs:
        xs, ys = zip(*lrs, strict=True)
        panels["lr"].plot(xs, ys, "-", marker="o", markersize=4, color="tab:gray")
    panels["loss"].set_ylim(bottom=0)
    panels["accuracy"].set_ylim(0, 1.02)
    panels["lr"].set_ylim(bottom=0)
    for name, axis in panels.items():
        axis.set_xlabel("epoch")
        axis.set_ylabel({"loss": "cross-entropy loss", "accuracy": "accuracy", "lr": "learning rate"}[name])
        axis.set_title({"loss": "loss", "accuracy": "accuracy", "lr": "learning rate"}[name])
        axis.grid(True, alpha=0.4)
        axis.xaxis.get_major_locator().set_params(integer=True)
        if epochs:
            axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    handles, labels = panels["loss"].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    _save(figure, path)


def _grid_shape(count: int) -> tuple[int, int]:
    columns = math.ceil(math.sqrt(count))
    return math.ceil(count / columns), columns


def plot_filters(weight: np.ndarray, path: str | Path, *, layer: str = "conv1") -> None:
    """A layer's kernels (C_out, C_in, kh, kw): one tile per (output, input) channel pair on a diverging
    colour map centred on 0 (one scale for the layer, with a colour bar), labelled ``layer[o, i]``;
    1-D kernels (C_out, C_in, k) as line plots of their taps."""
    plt = _pyplot()
    weight = np.asarray(weight, dtype=np.float64)
    pairs = [(o, i) for o in range(weight.shape[0]) for i in range(weight.shape[1])]
    rows, columns = _grid_shape(len(pairs)) if weight.shape[1] == 1 else weight.shape[:2]
    size = (max(4.0, 1.6 * columns + 1.2), max(3.0, 1.6 * rows + 0.8))
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained")
    limit = float(np.abs(weight).max()) or 1.0
    image = None
    for axis, (o, i) in zip(axes.ravel(), pairs, strict=False):
        kernel = weight[o, i]
        if kernel.ndim == 1:
            axis.axhline(0, color="black", linewidth=0.6)
            axis.plot(np.arange(len(kernel)), kernel, marker="o", markersize=3)
            axis.set_ylim(-limit * 1.1, limit * 1.1)
            axis.grid(True, alpha=0.4)
            axis.set_xlabel("tap", fontsize=7)
            axis.tick_params(labelsize=6)
        else:
            image = axis.imshow(kernel, cmap=DIVERGING, vmin=-limit, vmax=limit, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        axis.set_title(f"{layer}[{o}, {i}]", fontsize=8)
    for axis in axes.ravel()[len(pairs):]:
        axis.axis("off")
    if image is not None:
        figure.colorbar(image, ax=axes, shrink=0.8, label="weight (0 = white)")
    figure.suptitle(f"{layer}: {weight.shape[0]} output x {weight.shape[1]} input channel(s), "
                    f"kernel {shape_text(weight.shape[2:])}")
    _save(figure, path)


def plot_feature_maps(maps: np.ndarray, path: str | Path, *, labels: list[str], title: str) -> None:
    """Channels (C, H, W) as a labelled grid of tiles on one colour scale with a colour bar (diverging and
    centred on 0 when the values have both signs), so maps can be compared with each other."""
    plt = _pyplot()
    maps = np.asarray(maps, dtype=np.float64)
    rows, columns = _grid_shape(len(maps))
    aspect = maps.shape[2] / maps.shape[1]
    size = (min(20.0, max(4.0, 2.0 * columns * aspect + 1.5)), min(20.0, max(3.0, 2.0 * rows + 0.8)))
    figure, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, layout="constrained")
    low, high = float(maps.min()), float(maps.max())
    if low < 0 < high:
        limit = max(-low, high)
        options = {"cmap": DIVERGING, "vmin": -limit, "vmax": limit}
    else:
        options = {"cmap": "viridis", "vmin": low, "vmax": high if high > low else low + 1}
    image = None
    for axis, plane, label in zip(axes.ravel(), maps, labels, strict=False):
        image = axis.imshow(plane, interpolation="nearest", **options)
        axis.set_title(label, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in axes.ravel()[len(maps):]:
        axis.axis("off")
    figure.colorbar(image, ax=axes, shrink=0.8, label="activation")
    figure.suptitle(title, fontsize=9)
    _save(figure, path)
