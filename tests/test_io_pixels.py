"""The one-pass pixel conversions against the numpy expressions they replace."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcli.io.pixels import to_floats, to_integers
from convcli.io.png import encode_png

shapes = st.tuples(st.integers(1, 9), st.integers(1, 9))


@given(shapes, st.sampled_from([1, 2, 3, 4]), st.sampled_from([8, 16]), st.integers(0, 2**31))
def test_to_floats_scales_and_splits_off_the_alpha(hw, channels, bits, seed):
    top = 2**bits - 1
    pixels = np.random.default_rng(seed).integers(0, top + 1, (*hw, channels)).astype(f"u{bits // 8}")
    colour, alpha = to_floats(pixels, bits)
    expected = pixels.astype(np.float64) / top
    n_colour = channels - (channels in (2, 4))
    assert colour.dtype == np.float32 and colour.shape == (n_colour, *hw)
    np.testing.assert_allclose(colour, expected[:, :, :n_colour].transpose(2, 0, 1), rtol=1e-6)
    if channels in (2, 4):
        np.testing.assert_allclose(alpha, expected[:, :, -1], rtol=1e-6)
    else:
        assert alpha is None


@given(shapes, st.integers(1, 4), st.sampled_from([8, 16]), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2**31))
def test_to_integers_clips_counts_rounds_and_interleaves(hw, planes, bits, dtype, seed):
    rng = np.random.default_rng(seed)
    values = rng.uniform(-0.3, 1.3, (planes, *hw)).astype(dtype)
    values.flat[rng.integers(0, values.size)] = rng.choice([0.0, 1.0, 0.5 / (2**bits - 1)])
    counted = rng.integers(0, planes + 1)
    pixels, clipped = to_integers(values, bits, counted)
    top = 2**bits - 1
    expected = np.rint(np.clip(values.astype(np.float64), 0, 1) * top).astype(np.int64).transpose(1, 2, 0)
    assert pixels.dtype == (np.uint8 if bits == 8 else np.uint16) and pixels.shape == (*hw, planes)
    # float32 products may round a half-way value the other way: never by more than one step
    assert np.abs(pixels.astype(np.int64) - expected).max() <= (1 if dtype == np.float32 else 0)
    assert clipped == np.count_nonzero((values[:counted] < 0) | (values[:counted] > 1))


def test_nan_becomes_black_and_is_not_counted():
    pixels, clipped = to_integers(np.array([[[np.nan, 0.5, 2.0]]], np.float32), 8, 1)
    assert pixels.ravel().tolist() == [0, 128, 255] and clipped == 1


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_encode_png_decodes_back_exactly(channels, dtype):
    """Every colour type and depth, read back by Pillow's decoder for 8-bit and by zlib plus the
    test module's own unfiltering for both."""
    from test_io_image16 import read_png

    rng = np.random.default_rng(channels)
    smooth = np.cumsum(rng.integers(-3, 4, (300, 160, channels)), axis=1) + 128  # every filter has a use
    pixels = np.clip(smooth * (257 if dtype == np.uint16 else 1), 0, np.iinfo(dtype).max).astype(dtype)
    encoded = encode_png(pixels)
    np.testing.assert_array_equal(read_png(encoded).reshape(pixels.shape), pixels)
    if dtype == np.uint8:
        from PIL import Image

        decoded = np.asarray(Image.open(io.BytesIO(encoded)))
        np.testing.assert_array_equal(decoded.reshape(pixels.shape), pixels)
