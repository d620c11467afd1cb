"""The matrix of a convolution: T with ``y.ravel() = T @ x.ravel()`` (the lecture notes' matrix views).

T is built by the index rule the engine's kernels read through: output i, tap j reads padded
position i·s + j·d, which copies input sample ``source_index(i·s + j·d − p_before)`` (or nothing,
for the constant 0); T[i, that sample] += tap j. So T and :func:`convcli.convolve` cannot disagree.
A zero boundary gives a Toeplitz matrix (2-D: doubly block Toeplitz), ``wrap`` a circulant one (2-D:
block circulant with circulant blocks); the transposed operation's matrix is Tᵀ. The other view of
the notes, the input acting on the kernel (``y.ravel() = D @ kernel.ravel()``), comes from the same
table (:func:`data_matrix`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from convcli import budget
from convcli.errors import UsageError
from convcli.sizes import PerAxis, PerAxisPadding, effective_kernel, output_size, per_axis
from convcli.text import shape_text

# bytes one stored entry costs while T is built (row, column, value and the valid mask)
ENTRY_BYTES = 32


def _geometry(size: Sequence[int], ksize: Sequence[int], mode, stride, dilation, padding):
    """(stride, dilation, padding pairs, output sizes) per axis of the forward operation."""
    from convcli.engine.convolve import MODES, _unknown, axis_padding

    if padding is None and mode not in MODES:
        raise UsageError(_unknown("mode", mode, MODES))
    nd = len(ksize)
    try:
        stride, dilation = per_axis(stride, nd, "`stride`"), per_axis(dilation, nd, "`dilation`")
        pads = axis_padding([effective_kernel(k, d) for k, d in zip(ksize, dilation, strict=True)], mode,
                            padding)
        out = tuple(output_size(n, k, stride=s, padding=p, dilation=d)
                    for n, k, s, p, d in zip(size, ksize, stride, pads, dilation, strict=True))
    except UsageError:
        raise
    except ValueError as error:
        raise UsageError(str(error)) from None
    return stride, dilation, pads, out


def source_table(
    n: int, k: int, out: int, stride: int, dilation: int, before: int, mode_code: int
) -> np.ndarray:
    """(out, k) input sample that output i's tap j reads (-1: the constant), along one axis."""
    from convcli.engine.boundary import source_index

    return np.array([[source_index(i * stride + j * dilation - before, n, mode_code) for j in range(k)]
                     for i in range(out)], dtype=np.int64).reshape(out, k)


def output_grid(
    kernel_shape: Sequence[int], size: Sequence[int], *, mode: str = "same", stride: PerAxis = 1,
    dilation: PerAxis = 1, padding: PerAxisPadding | None = None, transposed: bool = False,
    output_padding: PerAxis = 0,
) -> tuple[int, ...]:
    """The output shape of the operation a matrix describes (its rows, unravelled)."""
    if transposed:
        from convcli.engine.transposed import transposed_sizes

        return transposed_sizes(size, kernel_shape, mode=mode, stride=stride, dilation=dilation,
                                padding=padding, output_padding=output_padding)[3]
    return _geometry(size, kernel_shape, mode, stride, dilation, padding)[3]


def _entries(size, ksize, boundary, stride, dilation, pads, out):
    """(output index, input index, tap index) of every nonzero entry, from the per-axis tables."""
    from convcli.engine.boundary import MODE_CODES, normalize_boundary

    code = MODE_CODES[normalize_boundary(boundary)]
    count = math.prod(out) * math.prod(ksize)
    budget.check("memory", ENTRY_BYTES * count, f"the matrix of a {shape_text(ksize)} kernel on size "
                 f"{shape_text(size)} ({count:,} entries)")
    tables = [source_table(n, k, o, s, d, p[0], code)
              for n, k, o, s, d, p in zip(size, ksize, out, stride, dilation, pads, strict=True)]
    nd = len(size)
    # broadcast axis a's (out_a, k_a) table into the grid (out_0, k_0, out_1, k_1, ...)
    grids = [t.reshape((1, 1) * a + t.shape + (1, 1) * (nd - 1 - a)) for a, t in enumerate(tables)]
    outs = [np.arange(o).reshape((1, 1) * a + (o, 1) + (1, 1) * (nd - 1 - a)) for a, o in enumerate(out)]
    taps = [np.arange(k).reshape((1, 1) * a + (1, k) + (1, 1) * (nd - 1 - a)) for a, k in enumerate(ksize)]
    shape = tuple(x for o, k in zip(out, ksize, strict=True) for x in (o, k))
    valid = np.ones(shape, dtype=bool)
    for grid in grids:
        valid &= grid >= 0
    rows = np.ravel_multi_index([np.broadcast_to(o, shape)[valid] for o in outs], out)
    cols = np.ravel_multi_index([np.broadcast_to(g, shape)[valid] for g in grids], size)
    tap = np.ravel_multi_index([np.broadcast_to(t, shape)[valid] for t in taps], ksize)
    return rows, cols, tap


def _assemble(rows, cols, values, shape, sparse: bool):
    if sparse:
        import scipy.sparse

        return scipy.sparse.coo_array((values, (rows, cols)), shape=shape).tocsr()  # sums duplicates
    budget.check("memory", 8 * math.prod(shape), f"a dense {shape[0]}×{shape[1]} matrix")
    dense = np.zeros(shape)
    np.add.at(dense, (rows, cols), values)
    return dense


def _sizes(size: PerAxis, nd: int) -> tuple[int, ...]:
    try:
        return per_axis(size, nd, "`size`")
    except ValueError as error:
        raise UsageError(str(error)) from None


def _check(kernel) -> np.ndarray:
    from convcli.engine.convolve import _check_kernel

    kernel = np.asarray(kernel, dtype=np.float64)
    _check_kernel(kernel)
    if kernel.ndim > 2:
        raise UsageError(f"the matrix view takes a 1-D or 2-D kernel, got shape {shape_text(kernel.shape)}")
    return kernel


def convolution_matrix(
    kernel,
    size: PerAxis,
    *,
    mode: str = "same",
    boundary: str = "constant",
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    correlate: bool = False,
    transposed: bool = False,
    output_padding: PerAxis = 0,
    sparse: bool = False,
):
    """T of shape (output size, input size) with ``y.ravel() = T @ x.ravel()`` for
    ``convcli.convolve(x, kernel, ...)`` on an input of ``size`` (N, or (H, W) for a 2-D kernel), or
    with ``transposed=True`` for ``convcli.conv_transpose`` on that size (T is then the forward
    matrix's transpose: exactly Tᵀ, or the transpose of its first rows where ``output_padding`` >=
    ``stride`` makes the forward output longer). ``sparse``: a ``scipy.sparse.csr_array``, not dense."""
    kernel = _check(kernel)
    nd = kernel.ndim
    size = _sizes(size, nd)
    if transposed:
        from convcli.engine.transposed import transposed_sizes

        *_, forward_size = transposed_sizes(size, kernel.shape, mode=mode, stride=stride, dilation=dilation,
                                            padding=padding, output_padding=output_padding)
        forward = convolution_matrix(kernel, forward_size, mode=mode, boundary=boundary, stride=stride,
                                     dilation=dilation, padding=padding, correlate=correlate, sparse=sparse)
        _, _, _, forward_out = _geometry(forward_size, kernel.shape, mode, stride, dilation, padding)
        if forward_out != size:
            # output_padding >= stride (dilation > stride): the forward input of that size has more
            # outputs than the transposed input has samples; the transpose scatters the first ones
            kept = np.ravel_multi_index(np.indices(size).reshape(nd, -1), forward_out)
            forward = forward[kept]
        return forward.T
    if any(per_axis(output_padding, nd, "`output_padding`", low=0)):
        raise UsageError("`output_padding` applies only to transposed convolutions")
    stride, dilation, pads, out = _geometry(size, kernel.shape, mode, stride, dilation, padding)
    rows, cols, tap = _entries(size, kernel.shape, boundary, stride, dilation, pads, out)
    weights = kernel if correlate else np.flip(kernel)
    return _assemble(rows, cols, weights.ravel()[tap], (math.prod(out), math.prod(size)), sparse)


def data_matrix(
    x,
    kernel_size: PerAxis,
    *,
    mode: str = "same",
    boundary: str = "constant",
    stride: PerAxis = 1,
    dilation: PerAxis = 1,
    padding: PerAxisPadding | None = None,
    correlate: bool = False,
    sparse: bool = False,
):
    """D of shape (output size, kernel size) with ``convolve(x, kernel, ...).ravel() = D @ kernel.ravel()``
    for a kernel of ``kernel_size``: the input acting on the kernel (the notes' second matrix view)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2) or x.size == 0:
        raise UsageError(f"the data must be a 1-D or 2-D array, got shape {shape_text(x.shape)}")
    ksize = _sizes(kernel_size, x.ndim)
    stride, dilation, pads, out = _geometry(x.shape, ksize, mode, stride, dilation, padding)
    rows, cols, tap = _entries(x.shape, ksize, boundary, stride, dilation, pads, out)
    if not correlate:  # convolution reads tap j from kernel entry k−1−j (per axis)
        flipped = [k - 1 - i for i, k in zip(np.unravel_index(tap, ksize), ksize, strict=True)]
        tap = np.ravel_multi_index(flipped, ksize)
    return _assemble(rows, tap, x.ravel()[cols], (math.prod(out), math.prod(ksize)), sparse)


def circulant_eigenvalues(
    kernel, size: PerAxis, *, dilation: PerAxis = 1, padding: PerAxisPadding | None = None,
    mode: str = "same", correlate: bool = False,
) -> np.ndarray:
    """Eigenvalues of the (block) circulant matrix of a stride-1 ``wrap`` convolution, one per DFT
    frequency (f, or (f, g) in 2-D, flattened as T's rows): the Fourier modes are its eigenvectors,
    λ_f = Σ_j w[j]·exp(2πi·f·(j·d − p_before)/n) with w the correlation taps, i.e. the kernel's DFT
    times the phase of its alignment (so |λ| = |DFT of the kernel|)."""
    kernel = _check(kernel)
    nd = kernel.ndim
    size = _sizes(size, nd)
    _, dilation, pads, out = _geometry(size, kernel.shape, mode, 1, dilation, padding)
    if out != size:
        raise UsageError(f"a circulant matrix is square: this geometry maps size {shape_text(size)} to "
                         f"{shape_text(out)}")
    weights = kernel if correlate else np.flip(kernel)
    eigen = weights.astype(complex)
    for axis, (n, d, (before, _)) in enumerate(zip(size, dilation, pads, strict=True)):
        shifts = np.arange(kernel.shape[axis]) * d - before
        phases = np.exp(2j * np.pi * np.outer(np.arange(n), shifts) / n)  # (n, k)
        eigen = np.moveaxis(np.tensordot(phases, eigen, axes=([1], [axis])), 0, axis)
    return eigen.ravel()
