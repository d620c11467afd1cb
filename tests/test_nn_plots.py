"""The learned-filter picture: layout and values."""

import numpy as np

from convcli.nn.plots import filter_grid


def test_single_input_channel_filters_fold_into_a_square_grid():
    weight = np.random.default_rng(0).normal(size=(8, 1, 3, 3))
    grid = filter_grid(weight, cell=48, gap=4)
    tile = 3 * 16
    assert grid.shape == (3 * (tile + 4) + 4, 3 * (tile + 4) + 4)  # 8 kernels in 3 columns, 3 rows
    # kernel 4 sits in row 1, column 1; mid-gray is 0, the largest magnitude maps to 0 or 255
    top = left = 4 + tile + 4
    cell = grid[top : top + tile : 16, left : left + tile : 16].astype(float)
    expected = np.clip((weight[4, 0] / np.abs(weight).max() + 1) * 127.5, 0, 255)
    assert np.abs(cell - expected).max() <= 1


def test_multi_channel_filters_keep_one_row_per_output_channel():
    weight = -np.ones((4, 3, 5))  # Conv1d weights (C_out, C_in, k): one 1×5 strip, enlarged to 10×10
    grid = filter_grid(weight, cell=10, gap=2)
    assert grid.shape == (4 * (10 + 2) + 2, 3 * (10 + 2) + 2)
    assert (grid[2:12, 2:12] == 0).all() and (grid[12:14, :] == 255).all()
