"""``convcli.dask.convolve``: :func:`convcli.convolve` on a ``dask.array`` bigger than memory.

Needs the optional extra ``convcli[dask]``. Each block is convolved with the neighbours' rows it
needs (``map_overlap``, depth = the kernel's 'same' padding). At the array's true edges Dask adds
nothing (``boundary='none'``) and convcli pads with its own boundary, as dask-image does, because
Dask's names differ: Dask's ``'reflect'`` is numpy's (and convcli's) ``symmetric``, and convcli's
``reflect`` has no Dask name. ``wrap`` takes its margins from the far side (Dask's ``'periodic'``).
The method is chosen once from the whole array's shape and pinned for every block, so the result
equals ``convcli.convolve`` on the whole array (to float rounding for the fft method).
Supported: ``mode='same'``, stride 1, any dilation, 1-D or 2-D kernels applied to every leading
(channel/batch) index; other requests are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from convcli.errors import UsageError
from convcli.text import shape_text

if TYPE_CHECKING:
    import dask.array as da

INSTALL_HINT = "convcli.dask needs the optional extra: pip install 'convcli[dask]'"


def convolve(
    x: da.Array,
    kernel,
    *,
    mode: str = "same",
    boundary: str = "constant",
    cval: float = 0.0,
    stride=1,
    dilation=1,
    padding=None,
    correlate: bool = False,
    method: str = "auto",
) -> da.Array:
    """The lazy equivalent of ``convcli.convolve(x.compute(), kernel, ...)``; same arguments."""
    try:
        import dask.array as da
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    from convcli.engine.boundary import normalize_boundary
    from convcli.engine.convolve import plan

    kernel = np.asarray(kernel)
    if mode != "same" or padding is not None:
        raise UsageError("convcli.dask.convolve supports mode='same' without explicit padding")
    if np.any(np.asarray(stride) != 1):
        raise UsageError("convcli.dask.convolve supports stride 1 only")
    if kernel.ndim > 2:
        raise UsageError(f"convcli.dask.convolve takes a 1-D or 2-D kernel, not shape "
                         f"{shape_text(kernel.shape)} (channel-mixing kernels are not supported)")
    boundary = normalize_boundary(boundary)
    x = da.asarray(x)
    dtype = np.float64 if x.dtype == np.float64 else np.float32  # as convcli.convolve computes
    # the whole array's plan: its method is pinned for every block, its padding is the depth
    whole = plan(x.shape, kernel, mode="same", dilation=dilation, method=method, dtype=dtype)
    spatial = range(x.ndim - kernel.ndim, x.ndim)
    pads = dict(zip(spatial, whole.padding, strict=True))
    reach = {axis: max(pads[axis]) for axis in spatial}
    # every block at least as long as the kernel's reach: a block's own boundary then equals the array's
    x = x.rechunk(tuple(_at_least(reach[axis] + 1, chunks) if axis in reach else chunks
                        for axis, chunks in enumerate(x.chunks)))
    depth = {axis: reach[axis] if axis in reach and len(x.chunks[axis]) > 1 else 0 for axis in range(x.ndim)}
    periodic = boundary == "wrap"
    options = dict(boundary=boundary, cval=cval, dilation=dilation, correlate=correlate, method=whole.method)
    block = _Block(kernel, pads, depth, tuple(len(c) for c in x.chunks), periodic, options)
    return da.map_overlap(block, x, depth=depth, boundary="periodic" if periodic else "none", trim=False,
                          chunks=x.chunks, dtype=dtype, meta=np.empty((0,) * x.ndim, dtype=dtype))


def _at_least(size: int, chunks: tuple[int, ...]) -> tuple[int, ...]:
    from dask.array.overlap import ensure_minimum_chunksize

    if sum(chunks) <= size or len(chunks) == 1:
        return (sum(chunks),)
    return ensure_minimum_chunksize(size, chunks)


class _Block:
    """One block with its margins -> its part of the whole array's 'same' convolution."""

    def __init__(self, kernel, pads, depth, counts, periodic, options) -> None:
        self.kernel, self.pads, self.depth = kernel, pads, depth
        self.counts, self.periodic, self.options = counts, periodic, options

    def __call__(self, block: np.ndarray, block_id=None) -> np.ndarray:
        from convcli.engine.convolve import convolve

        crop, padding = [], []
        for axis, (before, after) in self.pads.items():
            margin = self.depth[axis]
            at_start = block_id[axis] == 0 and not self.periodic
            at_end = block_id[axis] == self.counts[axis] - 1 and not self.periodic
            # a side with a neighbour's margin is cropped to what the kernel reaches; a true edge
            # (or an axis in one chunk) is padded with convcli's boundary
            has_start, has_end = margin > 0 and not at_start, margin > 0 and not at_end
            start = margin - before if has_start else 0
            stop = block.shape[axis] - (margin - after if has_end else 0)
            crop.append(slice(start, stop))
            padding.append((0 if has_start else before, 0 if has_end else after))
        leading = (slice(None),) * (block.ndim - len(self.pads))
        return convolve(block[(*leading, *crop)], self.kernel, padding=tuple(padding), **self.options)
