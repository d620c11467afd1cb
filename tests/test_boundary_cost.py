"""Issue #20, class 1: the cost of a convolution is bounded under every boundary mode.

A kernel or a dilation far larger than the input must not make the engines work over a padded
extent as large as the kernel: taps that the boundary sends to the same input sample are folded
into one (convcli/engine/folding.py), and the budget counts the folded work. The results must
equal the unfolded definition: numpy.pad to the whole padded extent, then scipy's correlation.
"""

import numpy as np
import pytest
import scipy.signal
from commands import run
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_budget import bounded, limits, stopwatch

from convcli.engine.boundary import BOUNDARIES, MODE_CODES, source_index
from convcli.engine.convolve import convolve, convolve_planned, plan
from convcli.engine.folding import fold_axis
from convcli.sizes import effective_kernel, output_size

MODES = ("same", "valid", "full", "padding")


def unfolded_reference(x, kernel, *, mode, padding, stride, dilation, boundary, cval, correlate):
    """The definition, materialized: numpy.pad by the whole (possibly huge) padding, the kernel
    dilated with zeros, scipy.signal.correlate 'valid', every stride-th output kept."""
    nd = kernel.ndim
    k = kernel if correlate else np.flip(kernel)
    spans = [effective_kernel(n, d) for n, d in zip(k.shape, dilation, strict=True)]
    if mode == "padding":
        pads = padding
    elif mode == "valid":
        pads = [(0, 0)] * nd
    elif mode == "full":
        pads = [(s - 1, s - 1) for s in spans]
    else:
        pads = [(s // 2, (s - 1) // 2) for s in spans]
    extra = {"constant_values": cval} if boundary == "constant" else {}
    padded = np.pad(x.astype(np.float64), [(0, 0)] * (x.ndim - nd) + list(pads), mode=boundary, **extra)
    dilated = np.zeros(spans)
    dilated[tuple(slice(None, None, d) for d in dilation)] = k
    planes = padded.reshape(-1, *padded.shape[-nd:])
    keep = tuple(slice(None, None, s) for s in stride)
    out = [scipy.signal.correlate(p, dilated, "valid", method="direct")[keep] for p in planes]
    return np.stack(out).reshape(*x.shape[:-nd], *out[0].shape)


@st.composite
def large_kernel_geometry(draw, nd):
    """Inputs of 1..7 samples per axis under kernels, dilations and paddings up to ~20 times as
    large: the cases that fold."""
    shape = tuple(draw(st.integers(1, 7)) for _ in range(nd))
    ksize = tuple(draw(st.integers(1, 14 if nd == 1 else 9)) for _ in range(nd))
    dilation = tuple(draw(st.one_of(st.just(1), st.integers(1, 40))) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    mode = draw(st.sampled_from(MODES))
    padding = tuple((draw(st.integers(0, 60)), draw(st.integers(0, 60))) for _ in range(nd))
    return shape, ksize, dilation, stride, mode, padding


def _sizes_fit(shape, ksize, dilation, stride, mode, padding) -> bool:
    pads = padding if mode == "padding" else [(0, 0)] * len(shape) if mode == "valid" else None
    if pads is None:
        return True
    try:
        for n, k, d, s, p in zip(shape, ksize, dilation, stride, pads, strict=True):
            output_size(n, k, stride=s, padding=p, dilation=d)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("nd", [1, 2])
@settings(max_examples=60)
@given(data=st.data(), boundary=st.sampled_from(BOUNDARIES), correlate=st.booleans(),
       method=st.sampled_from(["auto", "direct", "fft"]), seed=st.integers(0, 2**16))
def test_folded_convolution_equals_the_unfolded_definition(nd, data, boundary, correlate, method, seed):
    shape, ksize, dilation, stride, mode, padding = data.draw(large_kernel_geometry(nd))
    if not _sizes_fit(shape, ksize, dilation, stride, mode, padding):
        return
    rng = np.random.default_rng(seed)
    x, kernel = rng.standard_normal((2, *shape)), rng.standard_normal(ksize)
    cval = 0.7 if boundary == "constant" else 0.0
    got = convolve(x, kernel, mode="same" if mode == "padding" else mode,
                   padding=padding if mode == "padding" else None, stride=stride, dilation=dilation,
                   boundary=boundary, cval=cval, correlate=correlate, method=method)
    reference = unfolded_reference(x, kernel, mode=mode, padding=padding, stride=stride, dilation=dilation,
                                   boundary=boundary, cval=cval, correlate=correlate)
    np.testing.assert_allclose(got, reference, rtol=1e-9, atol=1e-9)


@settings(max_examples=60)
@given(data=st.data(), boundary=st.sampled_from(BOUNDARIES), method=st.sampled_from(["auto", "separable"]),
       seed=st.integers(0, 2**16))
def test_folded_factors_equal_the_unfolded_definition(data, boundary, method, seed):
    """A separable kernel given as its two factors (how box and gaussian arrive) folds factor by
    factor and stays separable."""
    shape, ksize, dilation, stride, mode, padding = data.draw(large_kernel_geometry(2))
    if min(ksize) < 2 or not _sizes_fit(shape, ksize, dilation, stride, mode, padding):
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    column, row = rng.standard_normal(ksize[0]), rng.standard_normal(ksize[1])
    got, how = convolve_planned(x, None, factors=(column, row), mode="same" if mode == "padding" else mode,
                                padding=padding if mode == "padding" else None, stride=stride,
                                dilation=dilation, boundary=boundary, correlate=True, method=method)
    reference = unfolded_reference(x, np.outer(column, row), mode=mode, padding=padding, stride=stride,
                                   dilation=dilation, boundary=boundary, cval=0.0, correlate=True)
    np.testing.assert_allclose(got, reference, rtol=1e-9, atol=1e-9)
    if method == "separable":
        assert how.method == "separable"


@settings(max_examples=200)
@given(n=st.integers(1, 9), k=st.integers(1, 12), dilation=st.integers(1, 50), stride=st.integers(1, 5),
       before=st.integers(0, 80), after=st.integers(0, 80), boundary=st.sampled_from(BOUNDARIES))
def test_every_folded_tap_reads_the_sample_it_read_before(n, k, dilation, stride, before, after, boundary):
    """The fold's defining property, tap by tap and output by output, and what makes it worth it:
    the folded span is at most the period, or the input plus the outputs' reach."""
    mode = MODE_CODES[boundary]
    try:
        size_out = output_size(n, k, stride=stride, padding=(before, after), dilation=dilation)
    except ValueError:
        return
    fold = fold_axis(n, k, dilation, (before, after), size_out, stride, mode)
    if fold is None:
        return
    assert fold.span < effective_kernel(k, dilation)
    assert fold.span <= max(2 * n, n + (size_out - 1) * stride + 2)
    for i in range(size_out):
        for t in range(k):
            old = source_index(i * stride - before + t * dilation, n, mode)
            new = source_index(i * stride - fold.padding[0] + int(fold.index[t]) * fold.dilation, n, mode)
            assert new == old
    reach = (size_out - 1) * stride + fold.span
    assert fold.padding[0] >= 0 and fold.padding[0] + n + fold.padding[1] >= reach


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_the_budget_counts_the_folded_work(boundary):
    """The issue's cases: a 20001-wide box, a 6001-tap gaussian and a 3×3 kernel dilated 10**7 on a
    512² image plan to at most a few times the image's own work, under any boundary."""
    image = (3, 512, 512)
    box = plan(image, None, factors=(np.ones(20001), np.ones(20001)), boundary=boundary)
    gaussian = plan(image, None, factors=(np.ones(6001), np.ones(6001)), boundary=boundary)
    sharpen = plan(image, np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]), dilation=10**7, boundary=boundary)
    for how in (box, gaussian, sharpen):
        assert how.output_shape == image
        assert how.costs[how.method] < 3e9, how.reason
        assert "folds" in how.reason
    assert max(how.engine_padding[1][0] for how in (box, gaussian, sharpen)) <= 2 * 512 + 2


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boundary_cost")
    pixels = (np.random.default_rng(0).random((64, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "x.png")
    return folder


@pytest.mark.parametrize("boundary", [None, *BOUNDARIES])
@pytest.mark.parametrize("kernel, extra", [("box:20001", []), ("gaussian:sigma=1000", []),
                                           ("sharpen", ["--dilation", "10000000"]),
                                           ("emboss", ["--dilation", "999,1000000"])])
def test_huge_kernels_on_images_run_within_a_small_budget(image, boundary, kernel, extra):
    """The real command on an image, every boundary (None: the image default, reflect), under an
    operations budget far below the unfolded work (4e12 for the box): it runs, quickly."""
    args = ["convolve", image / "x.png", "-k", kernel, *extra, "-o", image / "y.npy", "--force", "-q",
            "--range", "clip"]
    if boundary is not None:
        args += ["--boundary", boundary]
    with limits(operations="3e8", memory="256M"):
        started = stopwatch()
        result = run(*args)
    bounded(result, started)
    assert result.exit_code == 0, result.output


@settings(max_examples=25, deadline=None)
@given(
    kernel=st.one_of(
        st.sampled_from(["sharpen", "sobel-x", "1 2 1"]),
        st.integers(0, 10**7).map(lambda n: f"box:{2 * n + 1}"),
        st.floats(0.1, 1e6).map(lambda s: f"gaussian:sigma={s:.3g}"),
    ),
    stride=st.one_of(st.integers(1, 5), st.integers(1, 10**9)),
    dilation=st.one_of(st.integers(1, 5), st.integers(1, 10**12)),
    padding=st.one_of(st.none(), st.integers(0, 10), st.integers(0, 10**5)),
    boundary=st.sampled_from(BOUNDARIES),
    method=st.sampled_from(["auto", "direct", "fft"]),
)
def test_any_option_values_under_any_boundary_finish_or_exit_2(image, kernel, stride, dilation, padding,
                                                               boundary, method):
    args = ["convolve", image / "x.png", "-k", kernel, "--stride", stride, "--dilation", dilation,
            "--boundary", boundary, "--method", method, "-o", image / "z.npy", "--force", "-q"]
    if padding is not None:
        args += ["--padding", padding]
    with limits(memory="256M", operations="3e9"):
        started = stopwatch()
        result = run(*args)
    bounded(result, started)


def test_what_cannot_be_bounded_is_refused_in_one_line(image):
    """Padding that makes the output itself enormous: no fold can help; exit 2, one line."""
    result = run("convolve", image / "x.png", "-k", "box:3", "--boundary", "reflect", "--padding",
                 "100000000", "-o", image / "w.npy", "--force")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "budget" in result.output, result.output


@given(values=st.lists(st.integers(0, 10**6), max_size=300), factor=st.integers(1, 12),
       chunk=st.integers(1, 40))
def test_the_folds_common_step_is_the_gcd(values, factor, chunk):
    """The fold's tap spacing, taken a chunk at a time and stopped at 1, is numpy's gcd of them all."""
    from convcli.engine import folding

    relative = np.array(values, dtype=np.int64) * factor
    expected = (int(np.gcd.reduce(relative)) if relative.size else 0) or 1
    saved, folding.GCD_CHUNK = folding.GCD_CHUNK, chunk
    try:
        assert folding._common_step(relative) == expected
    finally:
        folding.GCD_CHUNK = saved
