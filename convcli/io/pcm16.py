"""16-bit PCM frames from float samples, converted as libsndfile converts them.

One pass over the samples in Numba (:mod:`convcli.io.pcm16_jit`): the conversion, the
interleaving into C-ordered frames (what libsndfile takes without a copy) and the count of samples
outside [-1, 1], the 'clip' policy's report. The conversion saturates such samples at the end
steps, exactly as clipping them to [-1, 1] first would. A 60 s stereo file: ~6 ms, where numpy's
passes take ~27 ms; numpy's passes (:func:`convert_numpy`, the same values: tested) run where
Numba is not loaded and loading it would cost more (:func:`convcli.twins.numba_pays`).
"""

from __future__ import annotations

import numpy as np

from convcli.io.ranges import PCM16_HIGHEST as HIGHEST
from convcli.io.ranges import PCM16_LOWEST as LOWEST
from convcli.io.ranges import PCM16_SCALE32 as SCALE

# numpy operations per sample of convert_numpy (its passes), as convcli.twins counts work
NUMPY_PASSES = 7


def pcm16_frames(block: np.ndarray) -> tuple[np.ndarray, int]:
    """(C, n) float samples as (n, C) 16-bit frames, and how many samples lie outside [-1, 1].

    floor(32768·x) in float32 (a float64 block is first rounded to float32, as numpy's float32
    multiply would), then bounded to [-32768, 32767]; NaN becomes -32768. That is libsndfile's
    rule, except that libsndfile rounds up values within ~3e-5 of a step. The count looks at
    the samples as given."""
    from convcli.twins import numba_pays

    block = np.ascontiguousarray(block)
    if not numba_pays(NUMPY_PASSES * block.size):
        return convert_numpy(block)
    from convcli.io.pcm16_jit import convert

    frames = np.empty(block.shape[::-1], dtype=np.int16)
    outside = convert(block, frames.reshape(-1))
    return frames, int(outside)


def convert_numpy(block: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`pcm16_frames` in numpy passes: the twin of :func:`convcli.io.pcm16_jit.convert`."""
    outside = int(np.count_nonzero(np.abs(block) > 1.0))  # NaN is not counted, nor by the kernel
    steps = np.multiply(block, SCALE, dtype=np.float32)
    np.floor(steps, out=steps)
    np.fmax(steps, LOWEST, out=steps)  # NaN gives the lowest step, as the Numba kernel's test does
    np.minimum(steps, HIGHEST, out=steps)
    frames = np.empty(block.shape[::-1], dtype=np.int16)
    np.copyto(frames, steps.T, casting="unsafe")
    return frames, outside
