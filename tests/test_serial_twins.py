"""A parallel kernel's serial twin (convcli.jit.KernelPair) gives the same bytes: small work runs
serially (no thread wake-ups, and a first call that compiles no parallel machinery), large work in
parallel, and a block of an array must give the whole array's bytes whichever ran it."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from convcli import jit
from convcli.engine import direct
from convcli.io import pixels, png


def both(pair: jit.KernelPair, *args) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The output arrays (the arguments it fills) after the serial and after the parallel run."""
    runs = []
    for kernel in (pair.serial, pair.parallel):
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        kernel(*copies)
        runs.append([a for a in copies if isinstance(a, np.ndarray)])
    return runs[0], runs[1]


def test_pick_chooses_by_the_work():
    assert direct.correlate_direct.pick(jit.SERIAL_BELOW - 1) is direct.correlate_direct.serial
    assert direct.correlate_direct.pick(jit.SERIAL_BELOW) is direct.correlate_direct.parallel
    assert direct.correlate_direct.serial.py_func.__name__ == "correlate_direct_serial"


@given(
    h=st.integers(1, 40), w=st.integers(1, 40), kh=st.integers(1, 5), kw=st.integers(1, 5),
    c_in=st.integers(1, 3), c_out=st.integers(1, 2), stride=st.integers(1, 3), dilation=st.integers(1, 3),
    pad=st.integers(0, 6), mode=st.integers(0, 4), seed=st.integers(0, 2**16),
)
def test_correlate_direct_serial_equals_parallel(h, w, kh, kw, c_in, c_out, stride, dilation, pad, mode,
                                                 seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, c_in, h, w)).astype(np.float32)
    kernel = rng.standard_normal((c_out, c_in, kh, kw)).astype(np.float32)
    kernel[rng.random(kernel.shape) < 0.3] = 0  # zero taps are skipped
    ho = (h + 2 * pad - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dilation * (kw - 1) - 1) // stride + 1
    assume(ho >= 1 and wo >= 1)
    rows, offsets, weights, counts = direct.tap_tables(kernel, dilation)
    max_offsets = np.array([offsets[co, : counts[co]].max() for co in range(c_out)], dtype=np.int64)
    out = np.zeros((2, c_out, ho, wo), dtype=np.float32)
    serial, parallel = both(
        direct.correlate_direct, x, rows, offsets - pad, max_offsets, weights, counts, out, kh, stride,
        stride, dilation, dilation, pad, pad, mode, np.float32(0.5),
    )
    assert serial[-1].tobytes() == parallel[-1].tobytes()


@given(h=st.integers(1, 30), w=st.integers(1, 30), channels=st.sampled_from([1, 2, 3, 4]),
       bits=st.sampled_from([8, 16]), seed=st.integers(0, 2**16))
def test_pixel_conversions_serial_equal_parallel(h, w, channels, bits, seed):
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if bits == 16 else np.uint8
    image = rng.integers(0, np.iinfo(dtype).max + 1, (h, w, channels), dtype=dtype)
    has_alpha = channels in (2, 4)
    colour = np.empty((channels - has_alpha, h, w), np.float32)
    alpha = np.empty((h, w) if has_alpha else (0, 0), np.float32)
    serial, parallel = both(pixels._to_floats, image, np.iinfo(dtype).max, colour, alpha)
    assert [a.tobytes() for a in serial] == [a.tobytes() for a in parallel]
    planes = rng.uniform(-0.2, 1.2, (channels, h, w)).astype(np.float32)
    out = np.empty((h, w, channels), dtype)
    clipped = np.zeros(h, np.int64)
    serial, parallel = both(pixels._to_integers, planes, channels, np.iinfo(dtype).max, out, clipped)
    assert [a.tobytes() for a in serial] == [a.tobytes() for a in parallel]


@given(h=st.integers(1, 30), width=st.integers(1, 90), bpp=st.sampled_from([1, 2, 3, 4, 6, 8]),
       seed=st.integers(0, 2**16))
def test_png_filters_serial_equal_parallel(h, width, bpp, seed):
    rng = np.random.default_rng(seed)
    framed = np.zeros((h + 1, width + bpp), np.uint8)
    framed[1:, bpp:] = rng.integers(0, 256, (h, width), dtype=np.uint8)
    out = np.empty((h, width + 1), np.uint8)
    serial, parallel = both(png._filter_rows, framed, bpp, out)
    assert serial[-1].tobytes() == parallel[-1].tobytes()
