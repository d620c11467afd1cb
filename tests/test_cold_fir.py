"""A cold FIR call without Numba (issue 21): 1-D filters run as rows (convcli.engine.lines) and 16-bit
frames are converted (convcli.io.pcm16) by numpy twins that give the Numba kernels' bytes, so a process
that has not loaded Numba need not load it, and a warm worker writes what a cold process writes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import assume, given
from hypothesis import strategies as st

import convcli
from convcli import jit, twins
from convcli.engine import direct, lines
from convcli.engine.boundary import BOUNDARIES, pad
from convcli.engine.convolve import plan
from convcli.io import pcm16, pcm16_jit


def _signal(rng: np.random.Generator, shape, dtype, special: bool) -> np.ndarray:
    x = rng.standard_normal(shape).astype(dtype)
    if special and x.size:
        flat = x.reshape(-1)
        where = rng.integers(0, flat.size, 3)
        flat[where] = np.array([np.nan, np.inf, -np.inf], dtype=dtype)[: where.size]
    return x


def _taps(rng: np.random.Generator, k: int, zeros: float, dtype) -> np.ndarray:
    kernel = rng.standard_normal(k).astype(dtype)
    kernel[rng.random(k) < zeros] = 0  # zero taps are skipped, as the direct engine skips them
    return kernel


@given(
    rows=st.integers(1, 3), n=st.integers(1, 200), k=st.integers(1, 40), stride=st.integers(1, 4),
    dilation=st.integers(1, 3), before=st.integers(0, 60), after=st.integers(0, 60), mode=st.integers(0, 4),
    zeros=st.sampled_from([0.0, 0.3, 1.0]), special=st.booleans(), parallel=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
)
def test_numpy_rows_give_the_numba_twins_bytes(rows, n, k, stride, dilation, before, after, mode, zeros,
                                               special, parallel, dtype, seed):
    """numpy on the padded rows, Numba on the rows in place and on padded copies of their ends:
    the same bytes, under every boundary, with NaN and inf, serial or parallel."""
    rng = np.random.default_rng(seed)
    weights, offsets = lines.tap_table(_taps(rng, k, zeros, dtype), dilation)
    span = dilation * (k - 1) + 1
    assume(n + before + after >= span)
    x = _signal(rng, (rows, n), dtype, special)
    cval = float(rng.standard_normal()) if mode == 0 else 0.0
    length = (n + before + after - span) // stride + 1
    with np.errstate(invalid="ignore"):  # inf - inf, 0·inf: NaN, as in the Numba twin
        expected = lines.correlate_numpy(pad(x, ((before, after),), BOUNDARIES[mode], cval), weights, offsets,
                                         length, stride)
    out = np.full((rows, length), 7, dtype=dtype)
    with _serial_below(0 if parallel else 1 << 62):
        lines._numba_rows(x, weights, offsets, out, stride, before, mode, cval, rows * length * k)
    np.testing.assert_array_equal(out, expected)  # NaN where NaN
    assert out.tobytes() == expected.tobytes() or special


@contextlib.contextmanager
def _serial_below(work: int):
    """Numba's parallel kernels run from ``work`` multiply-adds on (convcli.jit.SERIAL_BELOW)."""
    kept = jit.SERIAL_BELOW
    jit.SERIAL_BELOW = work
    try:
        yield
    finally:
        jit.SERIAL_BELOW = kept


def test_rows_longer_than_a_column_block_give_the_numpy_bytes():
    rng = np.random.default_rng(3)
    weights, offsets = lines.tap_table(rng.standard_normal(101).astype(np.float32), 1)
    x = rng.standard_normal((2, direct.COLUMN_BLOCK * 5 + 77)).astype(np.float32)
    length = x.shape[1]
    out = np.empty((2, length), dtype=np.float32)
    with _serial_below(0):
        lines._numba_rows(x, weights, offsets, out, 1, 50, 1, 0.0, 0)
    expected = lines.correlate_numpy(pad(x, ((50, 50),), "reflect"), weights, offsets, length, 1)
    assert out.tobytes() == expected.tobytes()


def _numpy_reference(x, kernel, *, mode, stride, dilation, boundary, correlate):
    """float64 numpy: numpy.pad (whose mode names are convcli's), then the taps summed by hand."""
    taps = np.asarray(kernel, dtype=np.float64)
    taps = taps if correlate else taps[::-1]
    span = dilation * (len(taps) - 1) + 1
    # scipy.signal's 'same' centres on the full output: an even span's extra sample goes before
    before = {"same": span // 2, "valid": 0, "full": span - 1}[mode]
    after = {"same": (span - 1) // 2, "valid": 0, "full": span - 1}[mode]
    padded = np.pad(x.astype(np.float64), [(0, 0)] * (x.ndim - 1) + [(before, after)], mode=boundary)
    count = padded.shape[-1] - span + 1
    full = sum(w * padded[..., t * dilation : t * dilation + count] for t, w in enumerate(taps))
    return full[..., ::stride]


@given(
    channels=st.integers(1, 3), n=st.integers(1, 120), k=st.integers(1, 25), stride=st.integers(1, 3),
    dilation=st.integers(1, 3), mode=st.sampled_from(["same", "valid", "full"]),
    boundary=st.sampled_from(BOUNDARIES), correlate=st.booleans(), seed=st.integers(0, 2**16),
)
def test_rows_equal_the_general_direct_engine_and_numpy(channels, n, k, stride, dilation, mode, boundary,
                                                        correlate, seed):
    """The rows path against the general direct engine (the same taps as a (1, 1, k) channel-mixing
    kernel, which never runs as rows) and a float64 numpy reference: equal within float32 rounding,
    |error| <= 1e-5·Σ|w·x| (the rows path adds in order, the general engine fuses multiply-adds)."""
    span = dilation * (k - 1) + 1
    assume(mode != "valid" or span <= n)  # else no output: the engine refuses it (tests/test_engine.py)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, n)).astype(np.float32)
    kernel = _taps(rng, k, 0.2, np.float32)
    options = {"mode": mode, "stride": stride, "dilation": dilation, "boundary": boundary,
               "correlate": correlate, "method": "direct"}
    how = plan(x.shape, kernel, mode=mode, stride=stride, dilation=dilation, boundary=boundary)
    rows = convcli.convolve(x, kernel, **options)
    general = convcli.convolve(x[:, None, :], kernel[None, None], **options)[:, 0]
    reference = _numpy_reference(x, kernel, mode=mode, stride=stride, dilation=dilation, boundary=boundary,
                                 correlate=correlate)
    bound = 1e-5 * _numpy_reference(np.abs(x), np.abs(kernel), mode=mode, stride=stride, dilation=dilation,
                                    boundary=boundary, correlate=correlate) + 1e-30
    assert rows.dtype == np.float32 and rows.shape == reference.shape == general.shape
    assert np.all(np.abs(rows - general) <= 2 * bound)
    assert np.all(np.abs(rows - reference) <= bound)
    assert how.method != "direct" or how.lines == lines.fits(n, how.engine_padding[0])


@given(
    channels=st.integers(1, 3), n=st.integers(1, 150), k=st.integers(1, 30), stride=st.integers(1, 3),
    mode=st.sampled_from(["same", "full"]), boundary=st.sampled_from(BOUNDARIES), seed=st.integers(0, 2**16),
)
def test_a_process_without_numba_gives_the_same_bytes(channels, n, k, stride, mode, boundary, seed):
    """convcli.convolve where Numba is not loaded (the numpy twin runs) and where it is."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, n)).astype(np.float32)
    kernel = _taps(rng, k, 0.2, np.float32)
    options = {"mode": mode, "stride": stride, "boundary": boundary}
    assume(plan(x.shape, kernel, **options).lines)  # (a tiny input under a long kernel may take fft)
    warm = convcli.convolve(x, kernel, **options)
    numba = sys.modules.pop("numba")
    kept, twins._numpy_work_done = twins._numpy_work_done, 0
    try:
        cold = convcli.convolve(x, kernel, **options)
        assert twins._numpy_work_done > 0  # the numpy twin ran
    finally:
        sys.modules["numba"], twins._numpy_work_done = numba, kept
    assert cold.tobytes() == warm.tobytes()


def test_the_plan_runs_1d_filters_as_rows_and_says_so():
    kernel = np.hanning(101).astype(np.float32)
    how = plan((2, 441000), kernel)
    assert how.method == "direct" and how.lines
    assert "1-D rows, taps summed in order" in how.reason
    assert not plan((1, 2, 441000), kernel[None, None].repeat(2, axis=1)).lines  # channel mixing
    assert not plan((64, 64), np.ones((3, 3))).lines
    assert not plan((10,), np.ones(3), padding=(0, 10**6)).lines  # padding far wider than the row
    assert not plan((2, 441000), np.hanning(2001), method="fft").lines


@given(
    channels=st.integers(1, 3), n=st.integers(0, 300), dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([0.5, 1.0, 1.5, 100.0]), special=st.booleans(), seed=st.integers(0, 2**16),
)
def test_numpy_pcm16_frames_equal_the_numba_kernels(channels, n, dtype, scale, special, seed):
    rng = np.random.default_rng(seed)
    block = (scale * rng.uniform(-1, 1, (channels, n))).astype(dtype)
    # samples exactly on a step, one float above a step, and the range's ends
    steps = (rng.integers(-32768, 32768, block.shape) / 32768).astype(dtype)
    block = np.where(rng.random(block.shape) < 0.3, steps, block)
    block = np.where(rng.random(block.shape) < 0.1, np.nextafter(steps, dtype(2)), block)
    ends = rng.choice([-1.0, 1.0, 32767 / 32768], block.shape)
    block = np.where(rng.random(block.shape) < 0.1, ends, block)
    block = np.ascontiguousarray(block.astype(dtype))
    if special and block.size:
        block.reshape(-1)[rng.integers(0, block.size, 3)] = [np.nan, np.inf, -np.inf]
    frames, outside = pcm16.convert_numpy(block)
    expected = np.empty(block.shape[::-1], dtype=np.int16)
    expected_outside = pcm16_jit.convert(block, expected.reshape(-1))
    assert frames.tobytes() == expected.tobytes()
    assert frames.shape == expected.shape
    assert outside == expected_outside


def test_numba_pays_once_loaded_or_once_numpy_work_passes_its_allowance(monkeypatch):
    monkeypatch.setattr(twins, "_numpy_work_done", 0)
    assert twins.numba_pays(1)  # this test process has Numba loaded
    monkeypatch.delitem(sys.modules, "numba")
    assert not twins.numba_pays(twins.NUMPY_WORK // 2)
    assert not twins.numba_pays(twins.NUMPY_WORK // 2)
    assert twins.numba_pays(1)  # the allowance is spent: loading Numba pays now
    assert twins._numpy_work_done == twins.NUMPY_WORK


COLD_CALL = """
import sys
from convcli.cli import run
status = run(sys.argv[1:])
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"numba", "llvmlite", "scipy", "rich", "PIL"})
print("STATUS", status, "HEAVY", ",".join(heavy))
"""


def _cold_call(folder: Path, *args: str, preload: str = "") -> tuple[int, str]:
    """(exit status, heavy modules imported) of one in-process call in a fresh interpreter;
    ``preload``: a module imported first (numba: the kernels a warm worker runs)."""
    code = (f"import {preload}\n" if preload else "") + COLD_CALL
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "CONVCLI_SERVER": "0"}, timeout=300)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert last.startswith("STATUS"), done.stdout + done.stderr
    _, status, _, heavy = (last.split(" ") + [""])[:4]
    return int(status), heavy


@pytest.mark.parametrize("channels, rate, kernel", [(1, 44100, "lowpass:cutoff=3000"),
                                                     (2, 48000, "highpass:cutoff=200")])
def test_a_cold_wav_filter_imports_no_numba_or_scipy_and_writes_the_warm_bytes(tmp_path, channels, rate,
                                                                               kernel):
    rng = np.random.default_rng(channels)
    frames = 0.3 * np.sin(np.arange(rate)[:, None] * [0.05, 0.07][:channels]) + 0.05 * rng.standard_normal(
        (rate, channels))
    soundfile.write(tmp_path / "in.wav", frames, rate, subtype="PCM_16")
    call = ["convolve", "in.wav", "-k", kernel, "--stride", "1", "-q"]
    status, heavy = _cold_call(tmp_path, *call, "-o", "cold.wav")
    assert (status, heavy) == (0, "")
    status, heavy = _cold_call(tmp_path, *call, "-o", "warm.wav", preload="numba")
    assert status == 0 and "numba" in heavy
    assert (tmp_path / "cold.wav").read_bytes() == (tmp_path / "warm.wav").read_bytes()
