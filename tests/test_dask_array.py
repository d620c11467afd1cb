"""convcli.dask.convolve on dask arrays equals convcli.convolve on the whole array, for every
boundary and method, across chunk edges; what it does not support is refused."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import convcli  # noqa: E402
import convcli.dask  # noqa: E402
from convcli.errors import UsageError  # noqa: E402

RNG = np.random.default_rng(2014)
BOUNDARIES = ["constant", "reflect", "symmetric", "edge", "wrap"]

# (shape, chunks, kernel shape): several chunks per axis (some smaller than the kernel's reach,
# so they are merged), even and odd kernels, leading channel axes, and an input smaller than the kernel
CASES = [
    ((37, 41), (10, 9), (5, 4)),
    ((2, 30, 33), (1, 8, 7), (3, 3)),
    ((3, 100), (3, 17), (7,)),
    ((60,), (9,), (4,)),
    ((5, 6), (2, 2), (9, 9)),
]


def lazy(x, chunks, kernel, **options):
    result = convcli.dask.convolve(da.from_array(x, chunks=chunks), kernel, **options)
    assert isinstance(result, da.Array) and result.chunks[0][0] <= x.shape[0]
    return result.compute(scheduler="sync")


def close(got: np.ndarray, expected: np.ndarray, kernel: np.ndarray) -> bool:
    """Equal to rounding: the fft sums in another order, and with wrap a block's edge columns are
    read from Dask's periodic overlap (interior sums) where the whole array maps them (edge sums)."""
    epsilon = np.finfo(expected.dtype).eps
    bound = 8 * epsilon * np.sqrt(kernel.size) * np.abs(expected).max()
    same_kind = got.dtype == expected.dtype and got.shape == expected.shape
    return same_kind and np.abs(got - expected).max() <= bound


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shape, chunks, kernel_shape", CASES)
def test_equals_convcli_convolve_on_the_whole_array(boundary, shape, chunks, kernel_shape):
    x = RNG.standard_normal(shape).astype(np.float32)
    kernels = [RNG.standard_normal(kernel_shape)]
    if len(kernel_shape) == 2:
        kernels.append(np.outer(RNG.standard_normal(kernel_shape[0]), RNG.standard_normal(kernel_shape[1])))
    for kernel in kernels:
        methods = ["direct", "fft"] + (["separable"] if kernel is kernels[-1] and len(kernels) == 2 else [])
        for method in methods:
            for dilation, correlate in ((1, False), (2, True)):
                options = dict(boundary=boundary, cval=0.25, method=method, dilation=dilation,
                               correlate=correlate)
                expected = convcli.convolve(x, kernel, **options)
                got = lazy(x, chunks, kernel, **options)
                if method != "fft" and boundary != "wrap":  # the same sums in the same order
                    assert got.dtype == expected.dtype and np.array_equal(got, expected), (method, dilation)
                else:
                    assert close(got, expected, kernel), (method, dilation)


def test_float64_and_the_automatic_method_pinned_from_the_whole_array():
    x = RNG.standard_normal((4, 300))
    kernel = RNG.standard_normal(81)  # long: the whole array's plan picks fft, every block uses it
    expected = convcli.convolve(x, kernel, boundary="reflect")
    got = lazy(x, (2, 90), kernel, boundary="reflect")
    assert got.dtype == np.float64 and close(got, expected, kernel)


@pytest.mark.parametrize("options, message", [
    (dict(mode="valid"), "mode='same'"),
    (dict(padding=2), "mode='same'"),
    (dict(stride=2), "stride 1"),
    (dict(boundary="mirror"), "mirror"),
])
def test_unsupported_requests_are_refused(options, message):
    with pytest.raises(UsageError, match=message):
        convcli.dask.convolve(da.zeros((8, 8), chunks=4), np.ones((3, 3)), **options)


def test_channel_mixing_kernels_are_refused():
    with pytest.raises(UsageError, match="channel-mixing"):
        convcli.dask.convolve(da.zeros((3, 8, 8), chunks=4), np.ones((2, 3, 3, 3)))
