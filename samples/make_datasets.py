"""Write the small labelled data sets that `convcli train` examples use (deterministic).

    python samples/make_datasets.py          # writes into samples/

- shapes16.npz: 16×16 gray images (uint8) of circles, squares and triangles with random size,
  position, brightness and noise; x (600, 16, 16), y, x_test (150, ...), y_test, class_names.
- waves.npz: 64-sample waveforms (float32) of sine, square and sawtooth kinds with random
  frequency, phase, amplitude and noise; x (600, 64), y, x_test (150, 64), y_test, class_names.
- shapes/: the same kind of images as PNG files, one sub-folder per class (24 per class),
  for the folder-of-files form of `convcli train` and for `convcli predict`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHAPES = ("circle", "square", "triangle")
WAVES = ("sine", "square", "sawtooth")


def shape_image(kind: str, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """One uint8 image: a bright filled shape on a dark noisy background."""
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    radius = rng.uniform(3.0, 6.0)
    cy, cx = rng.uniform(radius, size - radius, 2)
    if kind == "circle":
        mask = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
    elif kind == "square":
        half = radius * 0.85
        mask = (np.abs(rows - cy) <= half) & (np.abs(cols - cx) <= half)
    else:  # triangle pointing up: inside when below both slanted edges and above the base
        top, base = cy - radius, cy + radius * 0.8
        width = (rows - top) / (base - top) * radius
        mask = (rows >= top) & (rows <= base) & (np.abs(cols - cx) <= width)
    brightness = rng.uniform(0.6, 1.0)
    image = np.where(mask, brightness, rng.uniform(0.0, 0.25)) + rng.normal(0, 0.06, (size, size))
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def waveform(kind: str, rng: np.random.Generator, length: int = 64) -> np.ndarray:
    t = np.arange(length) / length
    cycles = rng.uniform(2.0, 6.0)
    phase = rng.uniform(0, 1)
    u = (t * cycles + phase) % 1.0
    if kind == "sine":
        wave = np.sin(2 * np.pi * u)
    elif kind == "square":
        wave = np.where(u < 0.5, 1.0, -1.0)
    else:
        wave = 2 * u - 1
    return (rng.uniform(0.5, 1.5) * wave + rng.normal(0, 0.25, length)).astype(np.float32)


def labelled(make, kinds, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(count) % len(kinds)
    rng.shuffle(y)
    return np.stack([make(kinds[label], rng) for label in y]), y.astype(np.int64)


def main() -> None:
    from PIL import Image

    rng = np.random.default_rng(2024)
    x, y = labelled(shape_image, SHAPES, 600, rng)
    x_test, y_test = labelled(shape_image, SHAPES, 150, rng)
    np.savez_compressed(HERE / "shapes16.npz", x=x, y=y, x_test=x_test, y_test=y_test,
                        class_names=np.array(SHAPES))
    x, y = labelled(waveform, WAVES, 600, rng)
    x_test, y_test = labelled(waveform, WAVES, 150, rng)
    np.savez_compressed(HERE / "waves.npz", x=x, y=y, x_test=x_test, y_test=y_test,
                        class_names=np.array(WAVES))
    for kind in SHAPES:
        folder = HERE / "shapes" / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(24):
            Image.fromarray(shape_image(kind, rng)).save(folder / f"{kind}{i:02d}.png")


if __name__ == "__main__":
    main()
