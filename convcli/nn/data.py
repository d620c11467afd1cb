"""Labelled data sets for training: an .npz of arrays, or a folder with one sub-folder per class.

Images are read by :mod:`convcli.io.image` (scaled to [0, 1]) and audio by
:mod:`convcli.io.audio`; here they are only made to agree (``size``/``gray`` for images,
``length``/``sample_rate``/``mono`` for audio). Every problem names its file and value.
The per-channel standardization computed on the training part is stored in the model, so
``predict`` prepares its inputs exactly as training did.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convcli.errors import InputError, UsageError, at_least
from convcli.io.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from convcli.text import shape_text


@dataclass
class ReadOptions:
    """How files are made to agree; stored in the model so ``predict`` reads files the same way."""

    size: tuple[int, int] | None = None   # images: resize to (H, W)
    gray: bool = False                     # images: convert to one channel
    length: int | None = None              # audio: crop or zero-pad to this many samples
    sample_rate: int | None = None         # audio: resample to this rate
    mono: bool = False                     # audio: mix the channels down

    def check(self) -> None:
        """UsageError naming the first bad setting (sizes must be positive and resizing fit the
        pixel budget)."""
        if self.size is not None:
            if len(self.size) != 2 or min(self.size) < 1:
                raise UsageError(f"`size` must be two positive sizes (height, width), got {self.size}")
            from convcli import budget

            budget.check("pixels", self.size[0] * self.size[1],
                         f"`size` {shape_text(self.size)}: resizing every image")
        for name in ("length", "sample_rate"):
            value = getattr(self, name)
            if value is not None:
                at_least(name, value, 1)

    def to_json(self) -> dict:
        return {"size": list(self.size) if self.size else None, "gray": self.gray, "length": self.length,
                "sample_rate": self.sample_rate, "mono": self.mono}

    @classmethod
    def from_json(cls, data: dict) -> ReadOptions:
        size = data.get("size")
        return cls(tuple(size) if size else None, bool(data.get("gray")), data.get("length"),
                   data.get("sample_rate"), bool(data.get("mono")))


@dataclass
class Dataset:
    x: np.ndarray                      # (N, *sample_shape) float32
    y: np.ndarray                      # (N,) int64 labels 0..K-1
    class_names: list[str]
    kind: str = "array"                # 'image', 'audio' or 'array'
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.class_names, self.kind)


# ---------------------------------------------------------------- .npz
def _labels(y: np.ndarray, n: int, label: str) -> np.ndarray:
    if y.ndim != 1:
        raise InputError(f"{label}: labels must be a 1-D array, got shape {shape_text(y.shape)}")
    if len(y) != n:
        raise InputError(f"{label}: {len(y)} labels for {n} samples")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise InputError(f"{label}: labels must be integers, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise InputError(f"{label}: labels must be >= 0, found {int(y.min())}")
    return y.astype(np.int64)


def to_float32(x: np.ndarray) -> np.ndarray:
    """Samples as float32; 8/16-bit integer arrays are images, scaled to [0, 1] as image files are."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(np.asarray(x).dtype, 1.0)
    return np.asarray(x).astype(np.float32) / np.float32(scale)


def _samples(x: np.ndarray, label: str) -> np.ndarray:
    if x.dtype == object or x.dtype.kind not in "iufb":
        raise InputError(f"{label}: samples must be numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.ndim > 4:
        raise InputError(f"{label}: samples must be (N, L), (N, C, L), (N, H, W) or (N, C, H, W), "
                         f"got shape {shape_text(x.shape)}")
    if len(x) == 0:
        raise InputError(f"{label}: no samples")
    x = to_float32(x)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{label}: samples contain NaN or infinity")
    return x


DATA_KEYS = ("x", "y", "x_test", "y_test", "class_names")


def read_npz(path: Path) -> tuple[Dataset, Dataset | None]:
    """x, y (+ x_test, y_test, class_names) from an .npz; never unpickles."""
    from convcli import budget
    from convcli.io.arrays import npz_member

    try:
        with np.load(path, allow_pickle=False) as data:
            # only the arrays a data set has, each within the memory budget before it is decompressed
            arrays = {key: npz_member(data.zip, key, str(path), max_bytes=budget.limit("memory"))
                      for key in DATA_KEYS if key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"{path}: not a readable .npz of arrays ({' '.join(str(error).split())})") from error
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise InputError(f"{path}: missing array {missing[0]!r} (an .npz data set needs x and y; "
                         f"found {', '.join(sorted(arrays)) or 'nothing'})")
    x = _samples(arrays["x"], f"{path}: x")
    y = _labels(arrays["y"], len(x), f"{path}: y")
    test = None
    if "x_test" in arrays or "y_test" in arrays:
        if "x_test" not in arrays or "y_test" not in arrays:
            raise InputError(f"{path}: x_test and y_test must come together")
        x_test = _samples(arrays["x_test"], f"{path}: x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise InputError(f"{path}: x_test samples are {x_test.shape[1:]}, x samples are {x.shape[1:]}")
        test_labels = _labels(arrays["y_test"], len(x_test), f"{path}: y_test")
        test = (x_test, test_labels)
    classes = int(max(y.max(), test[1].max() if test else 0)) + 1
    from convcli import budget

    # before the class names (one per class up to the largest label) are made
    budget.check("classes", classes, f"{path}: labels up to {classes - 1}")
    if "class_names" in arrays:
        names = [str(n) for n in np.asarray(arrays["class_names"]).reshape(-1)]
        if len(names) < classes:
            raise InputError(f"{path}: {len(names)} class_names but labels go up to {classes - 1}")
    else:
        names = [str(i) for i in range(classes)]
    train = Dataset(x, y, names)
    return train, (Dataset(test[0], test[1], names) if test else None)


# ---------------------------------------------------------------- files
def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    height, width = size
    channels = [np.asarray(Image.fromarray(c, mode="F").resize((width, height), Image.BILINEAR))
                for c in image.astype(np.float32)]
    return np.stack(channels)


def read_image_sample(path: Path, options: ReadOptions) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]; alpha dropped; ``gray`` mixes RGB with ITU-R 601 weights (Pillow's L)."""
    from convcli.io.image import read_image

    colour, _alpha, _info = read_image(path)
    return conform_image(colour, options)


def conform_image(colour: np.ndarray, options: ReadOptions) -> np.ndarray:
    """A decoded (C, H, W) image made to agree with ``options`` (gray, size), float32."""
    if options.gray and colour.shape[0] == 3:
        colour = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), colour, axes=1)[None]
    if options.size is not None and colour.shape[1:] != options.size:
        colour = _resize(colour, options.size)
    return colour.astype(np.float32)


def read_audio_sample(path: Path, options: ReadOptions) -> np.ndarray:
    """(C, L) float32; resampled (polyphase), mixed down, cropped or zero-padded as asked."""
    from convcli.io.audio import read_audio

    data, info = read_audio(path)
    return conform_audio(data, info.sample_rate, options, label=str(path))


def conform_audio(data: np.ndarray, sample_rate: int | None, options: ReadOptions, *,
                  label: str = "audio") -> np.ndarray:
    """Decoded (C, L) audio made to agree with ``options`` (sample rate, mono, length), float32."""
    from convcli import budget

    rate = options.sample_rate or sample_rate
    sample_rate = sample_rate or rate
    frames = options.length or -(-data.shape[1] * rate // sample_rate)
    # float64 while resampling, before anything of that length is made
    budget.check("memory", 8 * data.shape[0] * max(frames, -(-data.shape[1] * rate // sample_rate)),
                 f"{label}: {data.shape[0]} channel(s) at {rate} Hz, {frames} samples")
    if options.sample_rate and sample_rate != options.sample_rate:
        from math import gcd

        from scipy.signal import resample_poly

        common = gcd(options.sample_rate, sample_rate)
        data = resample_poly(data, options.sample_rate // common, sample_rate // common, axis=1)
    if options.mono and data.shape[0] > 1:
        data = data.mean(axis=0, keepdims=True)
    if options.length is not None:
        data = data[:, :options.length]
        if data.shape[1] < options.length:
            data = np.pad(data, ((0, 0), (0, options.length - data.shape[1])))
    return data.astype(np.float32)


def read_sample(path: Path, options: ReadOptions) -> tuple[np.ndarray, str]:
    """One image or audio file as (array, kind)."""
    extension = path.suffix.lower()
    if extension in IMAGE_EXTENSIONS:
        return read_image_sample(path, options), "image"
    if extension in AUDIO_EXTENSIONS:
        return read_audio_sample(path, options), "audio"
    known = ", ".join(sorted({*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS}))
    raise InputError(f"{path}: not an image or audio file (known extensions: {known})")


def read_folder(path: Path, options: ReadOptions, class_names: list[str] | None = None) -> Dataset:
    """One sub-folder per class (sorted names are the labels), every file in it a sample."""
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(f"{path}: no class sub-folders (expected one folder per class holding its files)")
    names = [f.name for f in folders]
    if class_names is not None:
        unknown = [n for n in names if n not in class_names]
        if unknown:
            raise InputError(f"{path}: class folder {unknown[0]!r} is not one of the training classes "
                             f"({', '.join(class_names)})")
    else:
        class_names = names
    samples, labels, files, kinds = [], [], [], set()
    for folder in folders:
        members = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not members:
            raise InputError(f"{folder}: empty class folder")
        for file in members:
            sample, kind = read_sample(file, options)
            if samples and sample.shape != samples[0].shape:
                hint = " (use `size` and/or `gray`)" if kind == "image" else \
                    " (use `length`, `sample_rate` and/or `mono`)"
                raise InputError(f"{file}: sample shape {shape_text(sample.shape)} differs from {files[0]}'s "
                                 f"{shape_text(samples[0].shape)}{hint}")
            samples.append(sample)
            labels.append(class_names.index(folder.name))
            files.append(str(file))
            kinds.add(kind)
    if len(kinds) > 1:
        raise InputError(f"{path}: mixes images and audio files")
    return Dataset(np.stack(samples), np.array(labels, np.int64), list(class_names), kinds.pop(), files)


def load_dataset(path: str | Path, options: ReadOptions | None = None,
                 class_names: list[str] | None = None) -> tuple[Dataset, Dataset | None]:
    """(training data, test data or None) from an .npz or a class folder."""
    path = Path(path)
    options = options or ReadOptions()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_folder(path, options, class_names), None
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: data must be an .npz (x, y) or a folder with one sub-folder per class")
    return read_npz(path)


# ---------------------------------------------------------------- preparation
def split_validation(data: Dataset, fraction: float,
                     rng: np.random.Generator) -> tuple[Dataset, Dataset | None]:
    """Hold out ``fraction`` of the samples (shuffled with ``rng``); 0 holds out nothing."""
    if not 0 <= fraction < 1:
        raise UsageError(f"`val_split` must be in [0, 1), got {fraction}")
    held = int(round(len(data) * fraction))
    if fraction == 0 or held == 0:
        return data, None
    if held >= len(data):
        raise UsageError(f"`val_split` {fraction} leaves no training samples out of {len(data)}")
    order = rng.permutation(len(data))
    return data.subset(order[held:]), data.subset(order[:held])


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of (N, C, ...) samples (std 1 where a channel is constant)."""
    axes = tuple(a for a in range(x.ndim) if a != 1)
    mean = x.mean(axis=axes, dtype=np.float64)
    std = x.std(axis=axes, dtype=np.float64)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean.reshape(shape)) / std.reshape(shape)).astype(np.float32)
