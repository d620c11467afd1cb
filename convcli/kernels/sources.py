"""Kernels that are not in the library: files, inline matrices, impulse responses, learned layers."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.kernels.library import parse_kernel_text, parse_scale, rows_to_matrix

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
            f"{label}: kernel has {matrix.ndim} dimensions {matrix.shape}; at most {max_ndim} allowed"
        )
    if matrix.size == 0:
        raise UsageError(f"{label}: empty kernel")
    if not np.all(np.isfinite(matrix)):
        raise UsageError(f"{label}: kernel contains NaN or inf")
    return matrix


def file_kernel(path: Path) -> np.ndarray:
    """A 1-D or 2-D kernel from .npy, .csv, .txt or a filters/-format .kernel file."""
    from convcli.io.arrays import read_array

    label = str(path)
    if path.suffix.lower() == ".kernel":
        matrix, _ = parse_kernel_text(path.read_text(), label=label)
    else:
        try:
            matrix = read_array(path, path.suffix, name=label)
        except InputError as error:
            raise UsageError(str(error)) from error
    matrix = np.squeeze(np.asarray(matrix, dtype=np.float64)) if matrix.ndim > 2 else matrix
    return finite(np.asarray(matrix, dtype=np.float64), label)


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


def learned_layer(spec: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """'model.npz:conv1' -> (weight (C_out, C_in, *k), bias (C_out,) or None, description).

    ':conv1[3]' keeps output channel 3 only (C_out = 1). Nothing is unpickled.
    """
    match = LAYER.match(spec)
    if match is None:
        raise UsageError(f"{spec!r}: a learned layer is written model.npz:LAYER or model.npz:LAYER[i]")
    path, layer, index = Path(match["path"]), match["layer"], match["index"]
    if not path.is_file():
        raise UsageError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = archive.files
            key = f"{layer}.weight"
            if key not in names:
                layers = sorted({n.rsplit(".", 1)[0] for n in names if n.endswith(".weight")})
                from convcli.errors import did_you_mean

                raise UsageError(
                    f"{path}: no layer {layer!r}{did_you_mean(layer, layers)}; "
                    f"layers with weights: {', '.join(layers) or 'none'}"
                )
            from convcli import budget
            from convcli.io.arrays import npz_member

            def member(name: str) -> np.ndarray:  # only the layer's arrays, within the memory budget
                return np.asarray(npz_member(archive.zip, name, str(path), max_bytes=budget.limit("memory")),
                                  dtype=np.float64)

            weight = member(key)
            bias = member(f"{layer}.bias") if f"{layer}.bias" in names else None
            meta = _meta(archive)
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        raise UsageError(f"{path}: model array needs pickle or is unreadable; refused ({error})") from error
    except OSError as error:
        raise UsageError(f"{path}: not a readable model file ({error})") from error
    except InputError as error:  # an array needing pickle, or larger than it declares or may be
        raise UsageError(str(error)) from error
    if weight.ndim not in (3, 4):
        raise UsageError(
            f"{path}:{layer}: weight of shape {weight.shape} is not a Conv1d/Conv2d weight "
            f"(C_out, C_in, k) or (C_out, C_in, kh, kw)"
        )
    if index is not None:
        i = int(index)
        if not -weight.shape[0] <= i < weight.shape[0]:
            raise UsageError(f"{path}:{layer}[{i}]: the layer has {weight.shape[0]} output channels")
        weight = weight[i : i + 1] if i >= 0 else weight[i:][:1]
        bias = None if bias is None else bias[[i]]
    finite(weight, spec, max_ndim=4)
    described = f"learned layer {layer} of {path.name}{meta}, weight {tuple(weight.shape)}"
    return weight, bias, described


def _meta(archive) -> str:
    if "__meta__" not in archive.files:
        return ""
    try:
        from convcli.io.arrays import npz_member
        from convcli.nn.model import MAX_META_BYTES, META_KEY

        meta = json.loads(str(npz_member(archive.zip, META_KEY, "model", max_bytes=MAX_META_BYTES)))
    except (ValueError, TypeError, InputError):
        return ""
    spec = meta.get("spec") if isinstance(meta, dict) else None
    return f" (model spec: {' '.join(str(spec).split())[:60]})" if spec else ""
