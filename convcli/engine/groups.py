"""Grouped convolution (``groups`` of ``torch.nn.functional.conv2d`` and ``conv_transpose2d``).

The input's channels and the kernel's output channels split into ``groups`` equal groups; group g's
outputs see only group g's inputs. Each group is an ordinary channel-mixing convolution, so the
engine runs them one after another: the kernel is never padded with the zeros of a block-diagonal
layout. Depthwise convolution is ``groups`` = channels with a ``(C, 1, *k)`` kernel.
"""

from __future__ import annotations

import numpy as np

from convcli.errors import UsageError
from convcli.text import shape_text


def group_slices(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], groups: int, *,
                 transposed: bool = False) -> list[tuple[slice, slice]]:
    """(input channels, kernel rows) of each group, after checking kernel, input and ``groups`` agree.

    Forward kernels are ``(C_out, C_in/groups, *k)``; transposed ones PyTorch's
    ``(C_in, C_out/groups, *k)``. A mismatch is one line naming the kernel's shape, the input's
    channels and ``groups``.
    """
    groups = int(groups)
    if groups < 1:
        raise UsageError(f"`groups` must be >= 1, got {groups}")
    if len(kernel_shape) < 3:
        if groups == 1:
            return [(slice(None), slice(None))]
        raise UsageError(
            f"`groups` {groups} needs a channel-mixing kernel (C_out, C_in/groups, k) or "
            f"(C_out, C_in/groups, kh, kw); a {shape_text(kernel_shape)} kernel already filters each "
            "channel alone"
        )
    nd = len(kernel_shape) - 2
    if len(x_shape) not in (nd + 1, nd + 2):
        raise UsageError(
            f"a channel-mixing kernel {shape_text(kernel_shape)} needs input (C_in, ...) or (N, C_in, ...) "
            f"with {nd} spatial axes, got shape {shape_text(x_shape)}"
        )
    have = x_shape[-nd - 1]
    rows = kernel_shape[0]
    if transposed:
        need, per_group, layout = rows, rows // groups, "(C_in, C_out/groups, ...)"
        divisible = rows % groups == 0
    else:
        need, per_group, layout = kernel_shape[1] * groups, kernel_shape[1], "(C_out, C_in/groups, ...)"
        divisible = rows % groups == 0
    if not divisible or need != have:
        why = (f"its {rows} {'input' if transposed else 'output'} channels do not split into {groups} groups"
               if not divisible else f"it needs {need} input channels ({groups} groups of {per_group})")
        raise UsageError(
            f"kernel {shape_text(kernel_shape)} {layout} with `groups` {groups} does not fit an input with "
            f"{have} channels: {why}"
        )
    in_step = have // groups
    row_step = rows // groups
    return [(slice(g * in_step, (g + 1) * in_step), slice(g * row_step, (g + 1) * row_step))
            for g in range(groups)]


def channels(x: np.ndarray, part: slice, nd: int) -> np.ndarray:
    """``x``'s channels ``part`` (the axis before the ``nd`` spatial ones)."""
    return x[(Ellipsis, part, *([slice(None)] * nd))]
