"""The built-in kernel library: fixed matrices in ``filters/*.kernel``, parametric designs in
``filters/parametric.json`` computed here (box, gaussian, moving-average, FIR designs).

A ``.kernel`` file is plain text: ``# key: value`` header lines (description, convention,
optional scale such as ``1/16``), then one matrix row per line.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np

from convcli.errors import UsageError, did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    convention: str
    params: dict = field(default_factory=dict)  # parameter -> default (parametric kernels)
    matrix: np.ndarray | None = None  # fixed kernels


def parse_kernel_text(text: str, *, label: str) -> tuple[np.ndarray, dict[str, str]]:
    """Rows of numbers with ``# key: value`` headers -> (matrix, headers). Ragged rows are refused."""
    headers: dict[str, str] = {}
    rows: list[list[float]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            key, _, value = line[1:].partition(":")
            headers[key.strip().lower()] = value.strip()
        elif line:
            rows.append(_numbers(line.replace(",", " ").split(), label))
    matrix = rows_to_matrix(rows, label)
    if "scale" in headers:
        matrix = matrix * parse_scale(headers["scale"], label)
    return matrix, headers


def _numbers(words: list[str], label: str) -> list[float]:
    try:
        return [float(word) for word in words]
    except ValueError as error:
        raise UsageError(f"{label}: not a number in the kernel ({error})") from error


def rows_to_matrix(rows: list[list[float]], label: str) -> np.ndarray:
    if not rows or not rows[0]:
        raise UsageError(f"{label}: empty kernel")
    for index, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise UsageError(
                f"{label}: ragged matrix: row {index} has {len(row)} values, row 1 has {len(rows[0])}"
            )
    matrix = np.array(rows, dtype=np.float64)
    return matrix[0] if len(rows) == 1 else matrix


def parse_scale(text: str, label: str) -> float:
    """'1/16', '/16', '0.0625' -> a factor."""
    numerator, slash, denominator = text.strip().partition("/")
    try:
        value = float(numerator or 1) / float(denominator) if slash else float(numerator)
    except (ValueError, ZeroDivisionError) as error:
        raise UsageError(f"{label}: bad scale {text!r}") from error
    if not math.isfinite(value) or value == 0:
        raise UsageError(f"{label}: bad scale {text!r}")
    return value


# filters/ at the top of a source checkout: where the library lives when convcli runs without being
# installed (``python -m convcli`` or ``python -m pytest`` from the repository root)
CHECKOUT_FILTERS = Path(__file__).resolve().parents[2] / "filters"


def filters_root():
    """The kernel library folder: the installed package ``convcli.filters`` (the wheel ships
    ``filters/`` under that name), else ``filters/`` of the source checkout this file is in."""
    try:
        return files("convcli.filters")
    except ModuleNotFoundError:
        if CHECKOUT_FILTERS.joinpath("parametric.json").is_file():
            return CHECKOUT_FILTERS
        raise


@functools.cache
def entries() -> dict[str, Entry]:
    """Every library kernel by name, read from the kernel library folder (:func:`filters_root`)."""
    root = filters_root()
    table: dict[str, Entry] = {}
    for resource in root.iterdir():
        if resource.name.endswith(".kernel"):
            name = Path(resource.name).stem
            matrix, headers = parse_kernel_text(resource.read_text(), label=resource.name)
            table[name] = Entry(
                name, headers.get("description", ""), headers.get("convention", ""), matrix=matrix
            )
    for name, spec in json.loads(root.joinpath("parametric.json").read_text()).items():
        table[name] = Entry(name, spec["description"], spec["convention"], params=dict(spec["params"]))
    return dict(sorted(table.items()))


def library_kernel(name: str, args: list[str], *, sample_rate: float | None = None) -> np.ndarray:
    """The library kernel ``name`` built with ``args`` ('5', 'sigma=2', ...)."""
    table = entries()
    entry = table.get(name)
    if entry is None:
        raise UsageError(f"unknown kernel {name!r}{did_you_mean(name, table)}; see 'convcli kernels'")
    if entry.matrix is not None:
        if args:
            raise UsageError(f"kernel {name!r} takes no parameters, got {':'.join(args)!r}")
        return entry.matrix.copy()
    factors = library_factors(name, args)
    if factors is not None:
        return np.outer(*factors)
    params = bind_params(entry, args)
    return DESIGNS[name](params, sample_rate)


def library_factors(name: str, args: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) of a library kernel known to be separable (box, gaussian), else None.

    These kernels are built as their two 1-D factors: box:20001 is two 20001-tap lines, not a
    20001×20001 matrix (3.2 GB) whose separability an SVD would then have to discover.
    """
    design = SEPARABLE.get(name)
    if design is None:
        return None
    line = design(bind_params(entries()[name], args))
    return line, line.copy()


def bind_params(entry: Entry, args: list[str]) -> dict:
    """'5' / 'size=5' style arguments -> parameter dict, typed like the defaults."""
    params = dict(entry.params)
    names = list(entry.params)
    for position, arg in enumerate(args):
        key, eq, value = arg.partition("=")
        if not eq:
            if position >= len(names):
                raise UsageError(
                    f"kernel {entry.name!r} takes at most {len(names)} parameters ({', '.join(names)})"
                )
            key, value = names[position], arg
        key = key.strip()
        if key not in params:
            raise UsageError(
                f"kernel {entry.name!r} has no parameter {key!r}{did_you_mean(key, names)}; "
                f"parameters: {', '.join(names)}"
            )
        params[key] = _typed(entry.name, key, value.strip(), entry.params[key])
    return params


def _typed(kernel: str, key: str, value: str, default):
    if isinstance(default, str):
        return value
    try:
        number = float(value)
    except ValueError as error:
        raise UsageError(f"kernel {kernel!r}: {key}={value!r} is not a number") from error
    if not math.isfinite(number):
        raise UsageError(f"kernel {kernel!r}: {key}={value!r} must be finite")
    if isinstance(default, int) or key in ("size", "n", "taps"):
        if number != int(number):
            raise UsageError(f"kernel {kernel!r}: {key}={value!r} must be a whole number")
        return int(number)
    return number


def _odd_size(kernel: str, key: str, size: int) -> int:
    if size < 1 or size % 2 == 0:
        raise UsageError(
            f"kernel {kernel!r}: {key}={size} must be an odd number >= 1 (so the kernel has a centre)"
        )
    return size


def _taps(kernel: str, key: str, count: int, lines: int = 1) -> int:
    """A tap count within the memory budget, checked before the taps are allocated: ``lines``
    arrays of ``count`` float64 values (a separable kernel is two, its column and its row)."""
    from convcli import budget

    budget.check("memory", 8 * count * lines, f"kernel {kernel!r} with {key}={count}")
    return count


def _box_line(params: dict) -> np.ndarray:
    size = _taps("box", "size", _odd_size("box", "size", params["size"]), lines=2)
    return np.full(size, 1.0 / size)


def _gaussian_line(params: dict) -> np.ndarray:
    sigma = params["sigma"]
    if sigma <= 0:
        raise UsageError(f"kernel 'gaussian': sigma={sigma:g} must be > 0")
    size = params["size"] if params["size"] is not None else 2 * math.ceil(3 * sigma) + 1
    size = _taps("gaussian", "size", _odd_size("gaussian", "size", size), lines=2)
    # in place: one array of taps at a time, as the budget counts (temporaries tripled it)
    line = np.arange(size, dtype=np.float64) - size // 2
    np.multiply(line, line, out=line)
    line /= -2 * sigma * sigma
    np.exp(line, out=line)
    line /= line.sum()
    return line


def _moving_average(params: dict, _rate) -> np.ndarray:
    n = params["n"]
    if n < 1:
        raise UsageError(f"kernel 'moving-average': n={n} must be >= 1")
    n = _taps("moving-average", "n", n)
    return np.full(n, 1.0 / n)


# arrays of the taps scipy's firwin holds at its peak (measured: 6.6; its window, sinc and their
# products), so a design within the budget stays within it while it is built
FIRWIN_ARRAYS = 7


def _fir(kind: str):
    def design(params: dict, sample_rate: float | None) -> np.ndarray:
        from convcli.kernels.fir import firwin, window  # numpy alone: no scipy.signal import

        if sample_rate is None:
            raise UsageError(
                f"kernel {kind!r} is designed in Hz and needs a sample rate: use it on audio input, "
                "or give the array's rate (convolve --sample-rate HZ; load_kernel(..., sample_rate=HZ))"
            )
        nyquist = sample_rate / 2
        taps = _taps(kind, "taps", _odd_size(kind, "taps", params["taps"]), lines=FIRWIN_ARRAYS)
        edges = [params["cutoff"]] if kind in ("lowpass", "highpass") else [params["low"], params["high"]]
        for edge in edges:
            if not 0 < edge < nyquist:
                raise UsageError(
                    f"kernel {kind!r}: cutoff {edge:g} Hz must be above 0 and below the Nyquist "
                    f"frequency {nyquist:g} Hz of the {sample_rate:g} Hz input"
                )
        if len(edges) == 2 and not edges[0] < edges[1]:
            raise UsageError(f"kernel {kind!r}: low={edges[0]:g} Hz must be below high={edges[1]:g} Hz")
        try:
            window(params["window"], 3)
        except ValueError as error:
            raise UsageError(f"kernel {kind!r}: unknown window {params['window']!r}") from error
        pass_zero = {"lowpass": True, "highpass": False, "bandpass": False, "bandstop": True}[kind]
        try:
            return firwin(taps, edges, window_name=params["window"], pass_zero=pass_zero, fs=sample_rate)
        except ValueError as error:
            raise UsageError(f"kernel {kind!r}: {error}") from error

    return design


# separable designs: one 1-D line, the kernel is outer(line, line)
SEPARABLE = {"box": _box_line, "gaussian": _gaussian_line}

DESIGNS = {
    "moving-average": _moving_average,
    "lowpass": _fir("lowpass"),
    "highpass": _fir("highpass"),
    "bandpass": _fir("bandpass"),
    "bandstop": _fir("bandstop"),
}
