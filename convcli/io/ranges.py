"""Output range policy for integer formats: clip, normalize, abs or offset. Never wrap integers."""

from __future__ import annotations

import numpy as np

from convcli.errors import UsageError

POLICIES = ("clip", "normalize", "abs", "offset")
# 16-bit PCM's full scale: a sample s reads as s / 32768 and writes back from 32768·x (io/audio.py
# reads, io/pcm16.py writes; here, below both, so the writer's kernel never imports the reader)
PCM16_SCALE = 32768.0
# the 16-bit writer's float32 scale and end steps (io/pcm16.py's numpy passes and io/pcm16_jit.py's
# kernel: one home, so the twins cannot disagree)
PCM16_SCALE32 = np.float32(PCM16_SCALE)
PCM16_LOWEST = np.float32(-PCM16_SCALE)
PCM16_HIGHEST = np.float32(PCM16_SCALE - 1)
# normalize: a result whose spread is within this many float32 roundings of its magnitude (or of
# the output range's, the scale images are read at) is flat
FLAT_ULPS = 64


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise UsageError(f"unknown range policy {policy!r}; choose one of {', '.join(POLICIES)}")
    return policy


def fit_range(
    x: np.ndarray, policy: str, low: float, high: float, *, gain: float | None = None
) -> tuple[np.ndarray, int]:
    """Map ``x`` into ``[low, high]`` by ``policy``; return the result and how many values were clipped.

    - clip: values outside are clipped (and counted).
    - normalize: rescale to the full range; for a signed range (audio) peak-normalize around 0,
      for images map [min, max] onto [low, high]. ``gain`` forces a precomputed peak gain (block-wise audio).
    - abs: magnitude, then clip (edge kernels).
    - offset: shift zero to mid-range (+0.5 for images in [0, 1]; audio's mid-range is already 0), then clip.
    """
    check_policy(policy)
    x = np.asarray(x)
    if policy == "normalize":
        if gain is not None or low < 0:
            peak_gain = gain if gain is not None else peak_normalize_gain(x, high)
            return x * peak_gain, 0
        lo, hi = float(np.min(x)), float(np.max(x))
        if hi - lo <= FLAT_ULPS * np.finfo(np.float32).eps * max(abs(lo), abs(hi), high - low):
            # (near-)constant: what differs is rounding (of values, or of sums that cancel to ~0 on
            # data of the output's scale), not signal; stretching it would paint stripes
            return np.full_like(x, low), 0
        # divide, not multiply by the reciprocal: a subnormal hi - lo would make that inf (and 0·inf NaN)
        return (x - lo) / (hi - lo) * (high - low) + low, 0
    if policy == "abs":
        x = np.abs(x)
    elif policy == "offset":
        x = x + (low + high) / 2
    clipped = int(np.count_nonzero((x < low) | (x > high)))
    if clipped:
        x = np.clip(x, low, high)
    return x, clipped


def count_non_finite(x: np.ndarray) -> int:
    """How many values are NaN or ±inf (reported, never silently filtered)."""
    x = np.asarray(x)
    return 0 if x.dtype.kind in "biu" else int(x.size - np.count_nonzero(np.isfinite(x)))


def peak_normalize_gain(x: np.ndarray, high: float) -> float:
    """The gain that takes the largest magnitude to ``high`` (1 for silence)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return high / peak if peak > 0 else 1.0
