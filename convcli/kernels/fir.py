"""Windowed-sinc FIR design with numpy alone: ``scipy.signal.firwin``'s arithmetic, without the
~0.6 s that importing ``scipy.signal`` costs a cold command (tests/test_audio.py checks equality).

The windows are ``scipy.signal.get_window``'s symmetric ones (``fftbins=False``, as firwin asks),
for every name that takes no parameter; a window not written here (lanczos, parzen, tukey, a
``_periodic`` suffix, ...) is still computed, by scipy.
"""

from __future__ import annotations

import numpy as np

# get_window's cosine-sum windows: w = sum_k a_k cos(k·t), t from -pi to pi over the taps
_COSINE_SUMS = {
    "hamming": (0.54, 0.46),
    "hann": (0.5, 0.5),
    "blackman": (0.42, 0.50, 0.08),
    "blackmanharris": (0.35875, 0.48829, 0.14128, 0.01168),
    "nuttall": (0.3635819, 0.4891775, 0.1365995, 0.0106411),
    "flattop": (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368),
}
# get_window's other names for them
_ALIASES = {
    "hamm": "hamming", "ham": "hamming", "han": "hann",
    "black": "blackman", "blk": "blackman", "blackharr": "blackmanharris", "bkh": "blackmanharris",
    "nutl": "nuttall", "nut": "nuttall", "flat": "flattop", "flt": "flattop",
    "box": "boxcar", "ones": "boxcar", "rect": "boxcar", "rectangular": "boxcar",
    "bart": "bartlett", "brt": "bartlett", "triangle": "triang", "tri": "triang",
    "halfcosine": "cosine", "bman": "bohman", "bmn": "bohman", "brthan": "barthann", "bth": "barthann",
}


def _cosine_sum(n: int, coefficients: tuple[float, ...]) -> np.ndarray:
    t = np.linspace(-np.pi, np.pi, n)
    window = np.zeros(n)
    for k, a in enumerate(coefficients):
        window += a * np.cos(k * t)
    return window


def _triang(n: int) -> np.ndarray:
    half = np.arange(1, (n + 1) // 2 + 1, dtype=np.float64)
    if n % 2 == 0:
        rising = (2 * half - 1.0) / n
        return np.concatenate([rising, rising[::-1]])
    rising = 2 * half / (n + 1.0)
    return np.concatenate([rising, rising[-2::-1]])


def _bartlett(n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.float64)
    return np.where(i <= (n - 1) / 2.0, 2.0 * i / (n - 1), 2.0 - 2.0 * i / (n - 1))


def _bohman(n: int) -> np.ndarray:
    fac = np.abs(np.linspace(-1, 1, n)[1:-1])
    inner = (1 - fac) * np.cos(np.pi * fac) + 1.0 / np.pi * np.sin(np.pi * fac)
    return np.concatenate([[0.0], inner, [0.0]])


def _barthann(n: int) -> np.ndarray:
    fac = np.abs(np.arange(n, dtype=np.float64) / (n - 1.0) - 0.5)
    return 0.62 - 0.48 * fac + 0.38 * np.cos(2 * np.pi * fac)


_SHAPES = {
    "boxcar": lambda n: np.ones(n),
    "triang": _triang,
    "bartlett": _bartlett,
    "cosine": lambda n: np.sin(np.pi / n * (np.arange(n, dtype=np.float64) + 0.5)),
    "bohman": _bohman,
    "barthann": _barthann,
}
WINDOWS = tuple(sorted([*_COSINE_SUMS, *_SHAPES]))  # the windows computed here


def window(name: str, n: int) -> np.ndarray:
    """``scipy.signal.get_window(name, n, fftbins=False)``; ValueError for a name scipy does not know."""
    key = _ALIASES.get(name, name)
    if n <= 1 and key in WINDOWS:
        return np.ones(n)
    if key in _COSINE_SUMS:
        return _cosine_sum(n, _COSINE_SUMS[key])
    if key in _SHAPES:
        return _SHAPES[key](n)
    from scipy.signal import get_window  # a window not written here

    return np.asarray(get_window(name, n, fftbins=False), dtype=np.float64)


def firwin(taps: int, edges: list[float], *, window_name: str, pass_zero: bool, fs: float) -> np.ndarray:
    """``scipy.signal.firwin(taps, edges, window=window_name, pass_zero=pass_zero, fs=fs)`` (scale=True):
    the ideal band filter's sinc sum, windowed, scaled to gain 1 at the centre of the first passband.
    The caller checks the edges (0 < edge < fs/2, increasing)."""
    cutoff = np.asarray(edges, dtype=np.float64) / (0.5 * fs)
    pass_nyquist = (cutoff.size % 2 == 0) == pass_zero
    if pass_nyquist and taps % 2 == 0:
        raise ValueError("an even number of taps must have zero response at the Nyquist frequency")
    bands = np.concatenate([np.zeros(int(pass_zero)), cutoff, np.ones(int(pass_nyquist))]).reshape(-1, 2)
    m = np.arange(taps, dtype=np.float64) - 0.5 * (taps - 1)
    h = np.zeros(taps)
    for left, right in bands:
        h += right * np.sinc(right * m)
        h -= left * np.sinc(left * m)
    h *= window(window_name, taps)
    left, right = bands[0]
    scale_frequency = 0.0 if left == 0 else 1.0 if right == 1 else 0.5 * (left + right)
    gain = np.sum(h * np.cos(np.pi * m * scale_frequency))
    if gain == 0 or not np.isfinite(gain):
        # e.g. 2 taps of a window that is zero at both ends: scipy returns NaNs here
        raise ValueError(f"the {window_name} window leaves {taps} taps with no gain to scale by")
    return h / gain
