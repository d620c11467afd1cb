"""PNG pictures of training, drawn with Pillow: loss/accuracy curves and learned filter grids."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

CURVE_COLOURS = {"loss": (31, 119, 180), "val_loss": (255, 127, 14), "accuracy": (44, 160, 44),
                 "val_accuracy": (214, 39, 40)}


def _save(image, path: str | Path) -> None:
    """Atomic PNG write (temporary file in the target folder, then rename)."""
    from convcli.io.files import atomic_output

    with atomic_output(Path(path), force=True) as temp:
        image.save(temp, format="PNG")


def _panel(draw, box, title: str, series: dict[str, list[float | None]], fixed_range=None) -> None:
    from PIL import ImageFont

    font = ImageFont.load_default()
    left, top, right, bottom = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left, top - 14), title, fill=(0, 0, 0), font=font)
    values = [v for points in series.values() for v in points if v is not None]
    if not values:
        return
    low, high = fixed_range or (min(values), max(values))
    if high - low < 1e-12:
        high = low + 1.0
    draw.text((left - 46, top), f"{high:.3g}", fill=(0, 0, 0), font=font)
    draw.text((left - 46, bottom - 10), f"{low:.3g}", fill=(0, 0, 0), font=font)
    epochs = max(len(points) for points in series.values())
    draw.text((left, bottom + 4), "epoch 1", fill=(0, 0, 0), font=font)
    draw.text((right - 50, bottom + 4), f"epoch {epochs}", fill=(0, 0, 0), font=font)
    legend_y = top + 4
    for name, points in series.items():
        xy = [(left + (right - left) * (i / max(epochs - 1, 1)),
               bottom - (bottom - top) * (v - low) / (high - low))
              for i, v in enumerate(points) if v is not None]
        if not xy:
            continue
        colour = CURVE_COLOURS[name]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
        draw.text((right - 90, legend_y), name, fill=colour, font=font)
        legend_y += 12


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss (left) and accuracy (right) per epoch, training and validation."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (820, 340), "white")
    draw = ImageDraw.Draw(image)
    series = {key: [record.get(key) for record in history] for key in CURVE_COLOURS}
    _panel(draw, (60, 30, 390, 300), "loss", {k: series[k] for k in ("loss", "val_loss")})
    _panel(draw, (470, 30, 800, 300), "accuracy", {k: series[k] for k in ("accuracy", "val_accuracy")},
           fixed_range=(0.0, 1.0))
    _save(image, path)


def filter_grid(weight: np.ndarray, cell: int = 48, gap: int = 4) -> np.ndarray:
    """(C_out, C_in, kh, kw) or (C_out, C_in, k) weights as one gray uint8 picture.

    One row per output channel, one cell per input channel (single-input-channel layers are
    folded into a near-square grid so the picture is not one long column); each kernel is
    scaled to the layer's largest magnitude (mid-gray is 0), and enlarged by nearest neighbour.
    """
    if weight.ndim == 3:
        weight = weight[:, :, None, :]
    c_out, c_in, kh, kw = weight.shape
    if c_in == 1:
        columns = math.ceil(math.sqrt(c_out))
        cells = [weight[o, 0] for o in range(c_out)]
    else:
        columns = c_in
        cells = [weight[o, i] for o in range(c_out) for i in range(c_in)]
    rows = math.ceil(len(cells) / columns)
    scale = float(np.abs(weight).max()) or 1.0
    zoom_h, zoom_w = max(1, cell // kh), max(1, cell // kw)
    tile_h, tile_w = kh * zoom_h, kw * zoom_w
    grid = np.full((rows * (tile_h + gap) + gap, columns * (tile_w + gap) + gap), 255, np.uint8)
    for index, kernel in enumerate(cells):
        row, column = divmod(index, columns)
        top, left = gap + row * (tile_h + gap), gap + column * (tile_w + gap)
        enlarged = np.kron(kernel / scale, np.ones((zoom_h, zoom_w)))
        pixels = np.clip((enlarged + 1) * 127.5, 0, 255).astype(np.uint8)
        grid[top : top + tile_h, left : left + tile_w] = pixels
    return grid


def plot_filters(weight: np.ndarray, path: str | Path) -> None:
    """The first layer's learned kernels as a grid (row: output channel, column: input channel)."""
    from PIL import Image

    _save(Image.fromarray(filter_grid(weight), mode="L"), path)
