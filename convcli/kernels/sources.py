"""Kernels that are not in the library: files, inline matrices, impulse responses, learned layers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.kernels.library import parse_kernel_text, parse_scale, rows_to_matrix
from convcli.text import shape_text

# numbers (nan and inf included, so a non-finite inline kernel is refused as such, not as a name)
_INLINE_TOKEN = r"(?:[\s\d.,;eE+\-/]|(?i:nan|inf(?:inity)?))"
INLINE = re.compile(rf"^{_INLINE_TOKEN}*(?:\d|(?i:nan|inf)){_INLINE_TOKEN}*$")
LAYER = re.compile(r"^(?P<path>.+\.npz):(?P<layer>[A-Za-z_][\w.]*?)(?:\[(?P<index>-?\d+)\])?$")
FILE_EXTENSIONS = (".npy", ".csv", ".txt", ".kernel")


def is_inline(spec: str) -> bool:
    return bool(INLINE.match(spec))


def inline_matrix(spec: str) -> np.ndarray:
    """'1 2 1; 2 4 2; 1 2 1 /16' -> matrix (rows split on ';', optional trailing /scale)."""
    body, slash, scale = spec.rpartition("/") if "/" in spec else (spec, "", "")
    rows = [row.replace(",", " ").split() for row in body.split(";")]
    rows = [row for row in rows if row]
    try:
        numbers = [[float(word) for word in row] for row in rows]
    except ValueError as error:
        raise UsageError(f"inline kernel {spec!r}: {error}") from error
    matrix = rows_to_matrix(numbers, f"inline kernel {spec!r}")
    if slash:
        matrix = matrix * parse_scale("1/" + scale, f"inline kernel {spec!r}")
    return finite(matrix, f"inline kernel {spec!r}")


def finite(matrix: np.ndarray, label: str, *, max_ndim: int = 2) -> np.ndarray:
    """Refuse NaN/inf, empty kernels and too many dimensions."""
    if matrix.ndim > max_ndim:
        raise UsageError(
            f"{label}: kernel has {matrix.ndim} dimensions {shape_text(matrix.shape)}; "
            f"at most {max_ndim} allowed"
        )
    if matrix.size == 0:
        raise UsageError(f"{label}: empty kernel")
    if not np.all(np.isfinite(matrix)):
        raise UsageError(f"{label}: kernel contains NaN or inf")
    return matrix


def file_kernel(path: Path) -> np.ndarray:
    """A kernel from .npy, .csv, .txt or a filters/-format .kernel file: 1-D or 2-D (applied to every
    channel), or 3-D (C_out, C_in, k) / 4-D (C_out, C_in, kh, kw) (mixing channels as a CNN layer)."""
    from convcli.io.arrays import read_array

    label = str(path)
    if path.suffix.lower() == ".kernel":
        matrix, _ = parse_kernel_text(path.read_text(), label=label)
    else:
        try:
            matrix = read_array(path, path.suffix, name=label)
        except InputError as error:
            raise UsageError(str(error)) from error
    # never squeezed: a (1, 3, 1, 1) file mixes RGB to one channel, it is not a row kernel
    return finite(np.asarray(matrix, dtype=np.float64), label, max_ndim=4)


def impulse_response(path: Path, sample_rate: float | None) -> tuple[np.ndarray, list[str]]:
    """(IR (C_ir, L), warnings). A rate mismatch resamples the IR (resample_poly) with a warning."""
    from convcli.io.audio import read_audio

    try:
        data, info = read_audio(path, name=str(path))
    except InputError as error:
        raise UsageError(str(error)) from error
    notes = []
    if sample_rate is not None and int(sample_rate) != info.sample_rate:
        from scipy.signal import resample_poly

        rate = int(sample_rate)
        divisor = math.gcd(rate, info.sample_rate)
        data = resample_poly(data.astype(np.float64), rate // divisor, info.sample_rate // divisor, axis=-1)
        notes.append(
            f"impulse response {path} is {info.sample_rate} Hz but the input is {rate} Hz: "
            f"resampled the impulse response to {rate} Hz (scipy.signal.resample_poly)"
        )
    return finite(np.asarray(data, dtype=np.float64), str(path)), notes


@dataclass(frozen=True)
class FeatureMap:
    """``model.npz:LAYER[i]``: what the trained model computes at LAYER for an input (its reading
    rules, its stored standardization, every layer up to LAYER with its own stride, padding,
    dilation, groups and bias, in evaluation mode); ``index`` keeps one output channel."""

    model: object  # convcli.nn.model.Model
    path: str
    layer: str
    index: int | None = None
    sample_rate: int | None = None

    def apply(self, data: np.ndarray, kind: str) -> np.ndarray:
        sample = self.model.conform(data, kind, self.sample_rate)
        maps = self.model.activation(sample, self.layer)
        if self.index is None:
            return maps
        if maps.ndim < 2 or not -maps.shape[0] <= self.index < maps.shape[0]:
            raise UsageError(f"{self.path}:{self.layer}[{self.index}]: the layer gives "
                             f"{maps.shape[0] if maps.ndim >= 2 else 'no'} channels")
        return maps[[self.index]]

    @property
    def layers(self) -> list:
        network = self.model.network
        return network.layers[: self.model.layer_index(self.layer) + 1]

    def describe(self) -> str:
        mean, std = self.model.normalization
        chain = " -> ".join(f"{layer.name} {layer.source}" for layer in self.layers)
        return (f"feature map of layer {self.layer} of {Path(self.path).name}: the input read as the model "
                f"reads it, standardized with mean {_numbers(mean)} and std {_numbers(std)}, "
                f"then {chain} (evaluation mode; each layer's own stride, padding, dilation, groups "
                f"and bias)" + ("" if self.index is None else f"; output channel {self.index}"))


def _numbers(values) -> str:
    return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"


def learned(spec: str, sample_rate: float | None = None) -> tuple[FeatureMap | None, np.ndarray, str]:
    """'model.npz:conv1[3]' -> (feature map, the layer's weight or an empty array, description);
    'model.npz:conv1.weight[3]' -> (None, that raw array (C_out, C_in, *k), description): the stored
    kernel itself, applied like a kernel file. Model files are read by :mod:`convcli.nn.model`."""
    match = LAYER.match(spec)
    if match is None:
        raise UsageError(f"{spec!r}: a learned layer is written model.npz:LAYER or model.npz:LAYER[i]")
    path, layer, index = match["path"], match["layer"], match["index"]
    index = None if index is None else int(index)
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such model file")
    try:  # a bad -k value is a usage error, whatever the file says
        from convcli.nn.model import is_array_name

        if is_array_name(layer):
            return None, *_stored_kernel(path, layer, index, spec)
        return _feature_map(path, layer, index, sample_rate)
    except InputError as error:
        raise UsageError(str(error)) from error


def _stored_kernel(path: str, name: str, index: int | None, spec: str) -> tuple[np.ndarray, str]:
    from convcli.nn.model import read_array

    weight = _channel_mixing(np.asarray(read_array(path, name), dtype=np.float64), spec)
    if index is not None:
        if not -weight.shape[0] <= index < weight.shape[0]:
            raise UsageError(f"{spec}: the array has {weight.shape[0]} output channels")
        weight = weight[[index]]
    return weight, f"array {name} of {Path(path).name}, as stored (no bias, no standardization)"


def _feature_map(path: str, layer: str, index: int | None, sample_rate: float | None):
    from convcli.nn.model import load_model

    model = load_model(path)
    weight = model.network.layers[model.layer_index(layer)].params.get("weight", np.zeros(0))
    feature = FeatureMap(model, path, layer, index, None if sample_rate is None else int(sample_rate))
    return feature, np.asarray(weight, dtype=np.float64), feature.describe()


def _channel_mixing(weight: np.ndarray, label: str) -> np.ndarray:
    if weight.ndim not in (3, 4):
        raise UsageError(
            f"{label}: an array of shape {shape_text(weight.shape)} is not a channel-mixing kernel "
            f"(C_out, C_in, k) or (C_out, C_in, kh, kw)"
        )
    return finite(weight, label, max_ndim=4)
