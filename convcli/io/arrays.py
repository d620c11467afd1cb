"""Arrays: .npy, .npz (one array), .csv and .txt. Values are kept as they are (float32/64)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.text import shape_text

Source = Path | IO[bytes]


def read_array(source: Source, extension: str, *, name: str | None = None) -> np.ndarray:
    """Read a numeric array; pickled (object) arrays are refused, never loaded."""
    label = name or str(source)
    extension = extension.lower()
    try:
        if extension == ".npy":
            check_npy_header(source, label)
            array = np.load(source, allow_pickle=False)
        elif extension == ".npz":
            array = _single_npz_array(source, label)
        elif extension in (".csv", ".txt"):
            array = np.loadtxt(source, delimiter="," if extension == ".csv" else None, ndmin=1)
        else:
            raise UsageError(f"{label}: not an array file extension {extension!r}")
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise InputError(f"{label}: array needs pickle (object data); refused for safety") from error
        if isinstance(error, UsageError):
            raise
        reason = " ".join(str(error).split())
        raise InputError(f"{label}: not a readable {extension} array ({reason})") from error
    except (OSError, EOFError) as error:
        raise InputError(f"{label}: not a readable {extension} array ({error})") from error
    if array.dtype.kind not in "biuf":
        raise InputError(f"{label}: array of dtype {array.dtype} is not numeric")
    if array.size == 0:
        raise InputError(f"{label}: empty array")
    return array


def check_npy_header(source: Source, label: str) -> None:
    """The array's declared size within the memory budget, from its header, before it is read."""
    from convcli import budget

    stream = open(source, "rb") if isinstance(source, Path) else source  # noqa: SIM115 - closed below
    start = stream.tell()
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)
    finally:
        if stream is source:
            stream.seek(start)
        else:
            stream.close()
    budget.check("memory", math.prod(shape) * dtype.itemsize,
                 f"{label}: reading an array of shape {shape_text(shape)}")


def _single_npz_array(source: Source, label: str) -> np.ndarray:
    from convcli import budget

    with np.load(source, allow_pickle=False) as archive:
        names = list(archive.files)
        if len(names) != 1:
            raise InputError(f"{label}: .npz holds {len(names)} arrays {names}; exactly one is needed")
        return npz_member(archive.zip, names[0], label, max_bytes=budget.limit("memory"))


def write_array(path: Path, array: np.ndarray, extension: str) -> None:
    """Write ``array`` in the format ``extension`` names (.csv/.txt only up to 2-D)."""
    extension = extension.lower()
    if extension == ".npy":
        with open(path, "wb") as handle:
            np.save(handle, array)
    elif extension == ".npz":
        with open(path, "wb") as handle:
            np.savez(handle, data=array)
    elif extension in (".csv", ".txt"):
        if array.ndim > 2:
            raise UsageError(
                f"a {array.ndim}-D result {shape_text(array.shape)} cannot be written as {extension}; "
                "use .npy"
            )
        np.savetxt(path, np.atleast_1d(array), delimiter="," if extension == ".csv" else " ", fmt="%.9g")
    else:
        raise UsageError(f"not an array file extension {extension!r}")


NPY_HEADER_BYTES = 1 << 16  # numpy's own limit on a .npy header


def npz_member(archive: zipfile.ZipFile, name: str, label: str, *, max_bytes: float) -> np.ndarray:
    """Array ``name`` of an .npz, read only when its declared sizes (the zip entry, then the .npy
    header's shape) are within ``max_bytes``: a zip bomb or a header claiming 10**12 values is
    refused before anything is decompressed or allocated. KeyError when there is no such array."""
    info = archive.getinfo(name + ".npy")
    if info.file_size > max_bytes + NPY_HEADER_BYTES:
        raise InputError(f"{label}: array {name!r} would decompress to {info.file_size:,} bytes, more than "
                         f"the {int(max_bytes):,} it can hold")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)
        if dtype.hasobject:
            raise InputError(f"{label}: array {name!r} needs pickle (object data); refused for safety")
        if math.prod(shape) * dtype.itemsize > max_bytes:
            raise InputError(f"{label}: array {name!r} declares shape {shape_text(shape)} of {dtype}, more "
                             f"than the {int(max_bytes):,} bytes it can hold")
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)
