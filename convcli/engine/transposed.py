"""``convcli.conv_transpose``: transposed convolution, the adjoint of :func:`convcli.convolve`.

For the options of a forward convolution A (mode or padding, boundary, stride, dilation, groups,
flip or not), ``conv_transpose`` computes Aᵀ: ⟨A x, y⟩ = ⟨x, Aᵀ y⟩. It runs in three steps, each the
adjoint of a step of the forward operation read backwards:

1. stride: the input is zero-stuffed (s−1 zeros between samples; forward keeps every s-th output);
2. taps: a full convolution by the engine scatters every sample over the (dilated) kernel, into the
   padded grid of the forward input (forward: a correlation over that grid);
3. boundary: each padded position is added back onto the input sample it copies, by the same
   :func:`convcli.engine.boundary.source_index` the forward kernels read through (constant: the
   padding is dropped, as PyTorch crops it).

Output sizes come from :func:`convcli.sizes.output_size` (``transposed=True``), the rule ``shapes``
uses for ConvTranspose: (n−1)·s − p_before − p_after + d·(k−1) + output_padding + 1. With
``correlate=True`` and a ``(C_in, C_out/groups, *k)`` kernel this is
``torch.nn.functional.conv_transpose1d/2d`` with that weight (zero padding).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from convcli.errors import UsageError
from convcli.sizes import PerAxis, PerAxisPadding, effective_kernel, output_size, per_axis


def conv_transpose(
    x,
    kernel,
    *,
    mode: str = "same",
    boundary: str = "constant",
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    output_padding: PerAxis = 0,
    groups: int = 1,
    correlate: bool = False,
    method: str = "auto",
) -> np.ndarray:
    """The transposed (adjoint) convolution of ``x`` for the forward options given.

    ``x``: ``(..., L)`` / ``(..., H, W)`` with a 1-D / 2-D kernel (each channel alone), or
    ``(C_in, ...)`` / ``(N, C_in, ...)`` with a ``(C_in, C_out/groups, *k)`` kernel (PyTorch's
    transposed layout: the forward kernel's layout read from its output side). ``boundary``: any
    of :func:`convcli.convolve`'s (each padding is a linear map, so each has an adjoint); the
    constant is 0. ``output_padding`` picks among the forward input sizes that give the same
    output (0 <= output_padding < max(stride, dilation)).
    """
    return conv_transpose_planned(
        x, kernel, mode=mode, boundary=boundary, stride=stride, dilation=dilation, padding=padding,
        output_padding=output_padding, groups=groups, correlate=correlate, method=method,
    )[0]


def transposed_sizes(spatial_in, ksize, *, mode, stride, dilation, padding, output_padding):
    """(stride, dilation, padding pairs, output sizes) per axis of a transposed convolution."""
    from convcli.engine.convolve import axis_padding

    nd = len(ksize)
    try:
        stride, dilation = per_axis(stride, nd, "`stride`"), per_axis(dilation, nd, "`dilation`")
        extra = per_axis(output_padding, nd, "`output_padding`", low=0)
        spans = [effective_kernel(k, d) for k, d in zip(ksize, dilation, strict=True)]
        pads = axis_padding(spans, mode, padding)
        sizes = tuple(
            output_size(n, k, stride=s, padding=p, dilation=d, transposed=True, output_padding=a)
            for n, k, s, p, d, a in zip(spatial_in, ksize, stride, pads, dilation, extra, strict=True)
        )
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from None
    return stride, dilation, pads, sizes


def conv_transpose_planned(
    x,
    kernel,
    *,
    mode: str = "same",
    boundary: str = "constant",
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    output_padding: PerAxis = 0,
    groups: int = 1,
    correlate: bool = False,
    method: str = "auto",
):
    """:func:`conv_transpose`, also returning the plan of the engine's full convolution (its method
    and why, in the reason)."""
    from convcli.engine.boundary import MODE_CODES, normalize_boundary
    from convcli.engine.convolve import MODES, _check_kernel, _compute_dtype, _unknown, convolve_planned
    from convcli.engine.groups import channels, group_slices

    mode_code = MODE_CODES[normalize_boundary(boundary)]
    if padding is None and mode not in MODES:
        raise UsageError(_unknown("mode", mode, MODES))
    x = np.asarray(x)
    dtype = _compute_dtype(x)
    kernel = np.asarray(kernel)
    _check_kernel(kernel)
    nd = kernel.ndim if kernel.ndim <= 2 else kernel.ndim - 2
    if x.ndim < nd:
        raise UsageError(f"kernel has {nd} dimensions but the signal only {x.ndim} (shape {x.shape})")
    parts = group_slices(x.shape, kernel.shape, groups, transposed=True)
    ksize = kernel.shape[-nd:]
    stride, dilation, pads, sizes = transposed_sizes(
        x.shape[-nd:], ksize, mode=mode, stride=stride, dilation=dilation, padding=padding,
        output_padding=output_padding)
    spatial = tuple(range(-nd, 0))
    weights = kernel if correlate else np.flip(kernel, axis=spatial)  # the forward's correlation taps
    stuffed_shape = tuple((n - 1) * s + 1 for n, s in zip(x.shape[-nd:], stride, strict=True))
    _check_memory(x.shape, kernel.shape, groups, stuffed_shape, pads, sizes, dtype)
    stuffed = np.zeros((*x.shape[:-nd], *stuffed_shape), dtype)
    stuffed[(Ellipsis, *(slice(None, None, s) for s in stride))] = x
    # full convolution = every sample scattered over the taps (the engine flips, so pass them as is)
    options = {"mode": "full", "dilation": dilation, "correlate": False, "method": method}
    if kernel.ndim <= 2:
        scattered, how = convolve_planned(stuffed, weights, **options)
    else:
        results = [
            convolve_planned(channels(stuffed, inputs, nd), np.swapaxes(weights[rows], 0, 1), **options)
            for inputs, rows in parts
        ]
        scattered, how = np.concatenate([r[0] for r in results], axis=-nd - 1), results[0][1]
    out = fold(scattered, pads, sizes, mode_code)
    steps = f"zero-stuffed by stride {stride}, " if any(s > 1 for s in stride) else ""
    reason = (f"transposed: the input {steps}scattered over the taps by a full convolution ({how.reason}), "
              f"the padding {pads} folded back by boundary {normalize_boundary(boundary)}")
    return out, replace(how, output_shape=out.shape, reason=reason, left_over=())


def _check_memory(x_shape, kernel_shape, groups, stuffed_shape, pads, sizes, dtype) -> None:
    """The zero-stuffed input and the scattered grid are allocated before the engine plans (and checks)
    its own buffers: a large stride must not allocate them unchecked."""
    from convcli import budget
    from convcli.text import shape_text

    nd = len(sizes)
    signals = math.prod(x_shape[:-nd])
    outputs = signals if len(kernel_shape) <= 2 else signals // x_shape[-nd - 1] * kernel_shape[1] * groups
    grid = math.prod(n + b + a for n, (b, a) in zip(sizes, pads, strict=True))
    values = signals * math.prod(stuffed_shape) + 2 * outputs * grid
    budget.check("memory", np.dtype(dtype).itemsize * values,
                 f"the transposed convolution of an input of shape {shape_text(x_shape)} (zero-stuffed to "
                 f"{shape_text(stuffed_shape)})")


def fold(scattered: np.ndarray, pads, sizes, mode_code: int) -> np.ndarray:
    """The adjoint of padding the trailing axes: ``scattered`` holds the padded grid (or its first
    part; the rest is zero); each padded position adds onto the input sample it copies."""
    from convcli.engine.boundary import CONSTANT, _source_indices

    nd = len(sizes)
    out = scattered
    for axis, ((before, after), n) in enumerate(zip(pads, sizes, strict=True), start=scattered.ndim - nd):
        grid = np.moveaxis(out, axis, -1)
        length = before + n + after
        if grid.shape[-1] < length:  # output_padding past the last tap: zeros
            zeros = np.zeros((*grid.shape[:-1], length - grid.shape[-1]), grid.dtype)
            grid = np.concatenate([grid, zeros], axis=-1)
        core = grid[..., before : before + n].copy()
        if mode_code != CONSTANT and (before or after):
            edges = np.r_[0:before, before + n : length]
            sources = _source_indices(-before, length, n, mode_code)[edges]
            np.add.at(core, (Ellipsis, sources), grid[..., edges])
        out = np.moveaxis(core, -1, axis)
    return np.ascontiguousarray(out)
