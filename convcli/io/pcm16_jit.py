"""The Numba kernel of :mod:`convcli.io.pcm16` (imported there only where Numba runs)."""

from __future__ import annotations

import numpy as np

from convcli.io.ranges import PCM16_HIGHEST as HIGHEST
from convcli.io.ranges import PCM16_LOWEST as LOWEST
from convcli.io.ranges import PCM16_SCALE32 as SCALE
from convcli.jit import njit


@njit(cache=True, nogil=True)
def convert(block, flat):
    """Fill ``flat`` (the (n, C) frames) from ``block`` (C, n); return the count outside [-1, 1]."""
    channels, n = block.shape
    outside = 0
    for c in range(channels):  # a row at a time: the count and the scaling vectorize
        row = block[c]
        for j in range(n):
            x = row[j]
            outside += (x < -1.0) | (x > 1.0)
    for c in range(channels):
        row = block[c]
        for j in range(n):
            step = np.floor(np.float32(row[j]) * SCALE)
            step = step if step >= LOWEST else LOWEST  # NaN fails the test: the lowest step
            step = step if step <= HIGHEST else HIGHEST
            flat[j * channels + c] = np.int16(step)
    return outside
