"""The numeric ops of training: each forward next to its backward (the simple activations'
math stands in their layer classes, :mod:`convcli.nn.layers.activation`).

Arrays are channels first. 1-D ops run as 2-D ops on a height-1 image, so there is one
implementation of each convolution and pooling. Convolution is im2col (a strided view,
one copy) followed by one small BLAS GEMM per image and group; its adjoint (col2im) is a serial Numba
scatter-add. Max-pooling is a
Numba kernel (serial: on the shared 2-core machine ``prange`` over the batch measured
slower) that records where each maximum came from, and its backward scatters there.

Conventions: ``stride``, ``dilation`` are ``(sh, sw)``; ``padding`` is
``((top, bottom), (left, right))``. Every ``*_forward`` returns ``(out, cache)`` and the
matching ``*_backward(dout, cache)`` returns the gradients in the order of the inputs.
All sizes come from :func:`convcli.sizes.output_size`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from convcli.jit import config, njit
from convcli.pool_windows import adaptive_bounds, ceil_overhang, window_taps
from convcli.sizes import output_size

Pair = tuple[int, int]
PadPair = tuple[Pair, Pair]
Cache = dict[str, Any]


# ---------------------------------------------------------------- the batch across cores
# Images are independent in these ops, so a big enough op splits its batch into one contiguous
# chunk per core and runs them on plain threads: numpy copies and ufuncs, BLAS GEMMs and the nogil
# Numba kernels release the GIL. Each chunk writes only its own slice; sums over the batch happen
# afterwards on the calling thread, so results do not depend on the number of threads.
# Handing a chunk to a thread costs ~50-100 µs, so only ops estimated at more than PARALLEL_NS of
# work split (measured: the small CNN's convolutions split, a length-40 1-D CNN's do not).
PARALLEL_NS = 300_000
NS_PER_MAC = 0.1  # a GEMM multiply-add (float32, one core)
NS_PER_ELEMENT = 0.7  # an elementwise pass, per element
NS_PER_SCATTER = 1.0  # a scatter-add (col2im, max-unpooling), per element
NS_PER_GEMM = 2_000  # the fixed cost of one small per-image GEMM
THREADS = config.NUMBA_NUM_THREADS  # the one thread count knob: NUMBA_NUM_THREADS


def gemm_cost(out: np.ndarray, depth: int) -> float:
    """Estimated ns of a stacked matmul producing ``out`` (N, ..., M, L) from depth-``depth`` products."""
    return out.size * depth * NS_PER_MAC + out.size // (out.shape[-1] * out.shape[-2]) * NS_PER_GEMM
_pool: ThreadPoolExecutor | None = None


def chunk_count(n: int, cost_ns: float) -> int:
    """How many chunks a batch of ``n`` costing ``cost_ns`` in all is worth splitting into."""
    affordable = int(cost_ns // PARALLEL_NS) if PARALLEL_NS > 0 else THREADS
    return max(1, min(THREADS, n, affordable))


def over_batch(work: Callable[[int, int], None], n: int, cost_ns: float) -> None:
    """Run ``work(lo, hi)`` over ``[0, n)``: in one chunk per thread (:data:`THREADS`) when the
    estimated cost pays for the threads, else in one call."""
    global _pool
    chunks = chunk_count(n, cost_ns)
    if chunks == 1:
        work(0, n)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max(1, THREADS - 1), thread_name_prefix="convcli-batch")
    bounds = [n * k // chunks for k in range(chunks + 1)]
    futures = [_pool.submit(work, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:], strict=True)]
    work(bounds[0], bounds[1])
    for future in futures:
        future.result()


# ---------------------------------------------------------------- im2col / col2im
def _out_hw(h: int, w: int, kernel: Pair, stride: Pair, padding: PadPair, dilation: Pair,
            ceil_mode: bool = False) -> Pair:
    ho = output_size(h, kernel[0], stride=stride[0], padding=padding[0], dilation=dilation[0],
                     ceil_mode=ceil_mode)
    wo = output_size(w, kernel[1], stride=stride[1], padding=padding[1], dilation=dilation[1],
                     ceil_mode=ceil_mode)
    return ho, wo


def _pad(x: np.ndarray, padding: PadPair, extra: Pair = (0, 0), value: float = 0.0) -> np.ndarray:
    """Pad the last two axes by ``padding`` plus ``extra`` more at the bottom/right."""
    (top, bottom), (left, right) = padding
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom + extra[0]), (left, right + extra[1])]
    if not any(any(w) for w in widths):
        return x
    return np.pad(x, widths, mode="constant", constant_values=value)


def _overhang(hw: Pair, kernel: Pair, stride: Pair, padding: PadPair, dilation: Pair,
              ceil_mode: bool) -> Pair:
    """Rows and columns beyond the padded input that the last ceil-mode windows reach."""
    return tuple(ceil_overhang(n, k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
                 for n, k, s, p, d in zip(hw, kernel, stride, padding, dilation, strict=True))


def _windows(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out: Pair) -> np.ndarray:
    """Read-only view (N, C, Ho, Wo, kh, kw) of the windows of a padded input."""
    n, c = xp.shape[:2]
    sn, sc, sh, sw = xp.strides
    shape = (n, c, out[0], out[1], kernel[0], kernel[1])
    strides = (sn, sc, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1])
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def _col2im(cols: np.ndarray, padded_hw: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """Adjoint of :func:`_windows`: sum (A, B, kh, kw, Ho, Wo) columns back onto (A, B, Hp, Wp)."""
    a, b = cols.shape[:2]
    out = np.zeros((a, b, *padded_hw), dtype=cols.dtype)
    over_batch(lambda lo, hi: _col2im_kernel(cols[lo:hi], *stride, *dilation, out[lo:hi]), a,
               cols.size * NS_PER_SCATTER)
    return out


@njit(cache=True, nogil=True)
def _col2im_kernel(cols, sh, sw, dh, dw, out):  # pragma: no cover - compiled
    """Serial scatter-add, one (image, channel) plane at a time so it stays in cache; numpy's
    one strided add per tap measured 4× slower (it walks the whole batch once per tap)."""
    a, b, kh, kw, ho, wo = cols.shape
    for n in range(a):
        for c in range(b):
            plane = out[n, c]
            for i in range(kh):
                for j in range(kw):
                    for r in range(ho):
                        line = plane[r * sh + i * dh]
                        taps = cols[n, c, i, j, r]
                        if sw == 1:  # unit stride: the compiler vectorizes this loop
                            start = j * dw
                            for q in range(wo):
                                line[start + q] += taps[q]
                        else:
                            for q in range(wo):
                                line[q * sw + j * dw] += taps[q]


def _crop(xp: np.ndarray, padding: PadPair, hw: Pair) -> np.ndarray:
    (top, _), (left, _) = padding
    return xp[:, :, top:top + hw[0], left:left + hw[1]]


# ---------------------------------------------------------------- convolution
# Columns are laid out per image, (N, g, C_g·kh·kw, Ho·Wo), and every product is a stacked
# np.matmul: one small GEMM per image and group. Each is below OpenBLAS's threading
# threshold, so it runs on the calling thread; one big multi-threaded GEMM measured 10–40×
# slower whenever the other core was busy. The per-image outputs are already (N, C_out, ...),
# so no transpose copy follows.
def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair = (1, 1),
                   padding: PadPair = ((0, 0), (0, 0)), dilation: Pair = (1, 1),
                   groups: int = 1) -> tuple[np.ndarray, Cache]:
    """Cross-correlation as CNN layers compute it: x (N, C_in, H, W), weight (C_out, C_in/g, kh, kw)."""
    n, c_in, h, w = x.shape
    c_out, c_group, kh, kw = weight.shape
    if c_in != c_group * groups:
        raise ValueError(f"input has {c_in} channels, the weight expects {c_group * groups}")
    out_hw = _out_hw(h, w, (kh, kw), stride, padding, dilation)
    xp = _pad(x, padding)
    win = _windows(xp, (kh, kw), stride, dilation, out_hw).transpose(0, 1, 4, 5, 2, 3)  # N, C, kh, kw, Ho, Wo
    cols = np.empty((n, groups, c_group * kh * kw, out_hw[0] * out_hw[1]), dtype=x.dtype)
    wmat = weight.reshape(groups, c_out // groups, c_group * kh * kw)
    y = np.empty((n, groups, c_out // groups, out_hw[0] * out_hw[1]), dtype=x.dtype)

    def images(lo: int, hi: int) -> None:
        cols[lo:hi].reshape(win[lo:hi].shape)[...] = win[lo:hi]
        np.matmul(wmat, cols[lo:hi], out=y[lo:hi])
        if bias is not None:
            y[lo:hi] += bias.reshape(groups, -1, 1)

    over_batch(images, n, gemm_cost(y, wmat.shape[-1]))
    y = y.reshape(n, c_out, *out_hw)
    cache = {"cols": cols, "x_shape": x.shape, "weight": weight, "stride": stride, "padding": padding,
             "dilation": dilation, "groups": groups, "out_hw": out_hw, "has_bias": bias is not None}
    return y, cache


def _cols_to_input(dcols: np.ndarray, cache: Cache) -> np.ndarray:
    """(N, g, C_g·kh·kw, Ho·Wo) column gradient -> (N, C_in, H, W) input gradient."""
    n, c_in, h, w = cache["x_shape"]
    _, _, kh, kw = cache["weight"].shape
    out_hw, padding = cache["out_hw"], cache["padding"]
    padded_hw = (h + sum(padding[0]), w + sum(padding[1]))
    dxp = _col2im(dcols.reshape(n, c_in, kh, kw, *out_hw), padded_hw, cache["stride"], cache["dilation"])
    return np.ascontiguousarray(_crop(dxp, padding, (h, w)))


def _matmul_over_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b)`` for a (g, M, K) and a batch b (N, g, K, L), the images split across cores."""
    out = np.empty((b.shape[0], b.shape[1], a.shape[-2], b.shape[-1]), dtype=b.dtype)
    over_batch(lambda lo, hi: np.matmul(a, b[lo:hi], out=out[lo:hi]), b.shape[0], gemm_cost(out, a.shape[-1]))
    return out


def _per_group(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, ...) -> (N, g, C/g, prod(...)) view."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, -1)


def conv2d_backward(dy: np.ndarray, cache: Cache,
                    input_grad: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Gradients (dx, dweight, dbias) of :func:`conv2d_forward`; dx is None without ``input_grad``
    (the first layer of a network needs none)."""
    weight, groups = cache["weight"], cache["groups"]
    c_out = weight.shape[0]
    dy_mat = _per_group(np.ascontiguousarray(dy), groups)               # N, g, C_out/g, Ho·Wo
    cols = cache["cols"]
    per_image = np.empty((dy.shape[0], groups, c_out // groups, cols.shape[2]), dtype=dy_mat.dtype)

    def images(lo: int, hi: int) -> None:
        np.matmul(dy_mat[lo:hi], cols[lo:hi].transpose(0, 1, 3, 2), out=per_image[lo:hi])

    over_batch(images, dy.shape[0], gemm_cost(per_image, cols.shape[-1]))
    dweight = per_image.sum(axis=0).reshape(weight.shape)
    dx = None
    if input_grad:
        wmat = weight.reshape(groups, c_out // groups, -1)
        dx = _cols_to_input(_matmul_over_batch(wmat.transpose(0, 2, 1), dy_mat), cache)
    dbias = dy.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dweight, dbias


def conv_transpose2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                             stride: Pair = (1, 1), padding: PadPair = ((0, 0), (0, 0)),
                             output_padding: Pair = (0, 0), dilation: Pair = (1, 1),
                             groups: int = 1) -> tuple[np.ndarray, Cache]:
    """Transposed convolution (the input-gradient of a convolution): weight (C_in, C_out/g, kh, kw)."""
    n, c_in, h, w = x.shape
    _, c_out_group, kh, kw = weight.shape
    if weight.shape[0] != c_in:
        raise ValueError(f"input has {c_in} channels, the weight expects {weight.shape[0]}")
    ho = output_size(h, kh, stride=stride[0], padding=padding[0], dilation=dilation[0], transposed=True,
                     output_padding=output_padding[0])
    wo = output_size(w, kw, stride=stride[1], padding=padding[1], dilation=dilation[1], transposed=True,
                     output_padding=output_padding[1])
    c_out = c_out_group * groups
    # the equivalent forward convolution maps (N, C_out, Ho, Wo) -> x with weight viewed (C_in, C_out/g, ...)
    conv_cache = {"x_shape": (n, c_out, ho, wo), "weight": weight, "stride": stride, "padding": padding,
                  "dilation": dilation, "groups": groups, "out_hw": (h, w), "has_bias": False}
    x_mat = _per_group(np.ascontiguousarray(x), groups)
    wmat = weight.reshape(groups, c_in // groups, -1)
    y = _cols_to_input(_matmul_over_batch(wmat.transpose(0, 2, 1), x_mat), conv_cache)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    cache = {"x": x, "conv_cache": conv_cache, "has_bias": bias is not None}
    return y, cache


def conv_transpose2d_backward(dy: np.ndarray,
                              cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    conv_cache = cache["conv_cache"]
    weight, groups = conv_cache["weight"], conv_cache["groups"]
    dx, col_cache = conv2d_forward(dy, weight, None, conv_cache["stride"], conv_cache["padding"],
                                   conv_cache["dilation"], groups)
    cols, (h, w) = col_cache["cols"], cache["x"].shape[2:]
    if dx.shape[2:] != (h, w):
        # output_padding >= stride (possible when dilation > stride): the convolution of dy has
        # windows past the last input's; the first h×w are the input's gradient
        dx = np.ascontiguousarray(dx[:, :, :h, :w])
        cols = cols.reshape(*cols.shape[:3], *col_cache["out_hw"])[..., :h, :w]
        cols = cols.reshape(*cols.shape[:3], h * w)
    x_mat = _per_group(np.ascontiguousarray(cache["x"]), groups)
    dweight = np.matmul(x_mat, cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(weight.shape)
    dbias = dy.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dweight, dbias


# ---------------------------------------------------------------- linear
def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, Cache]:
    """y = x·Wᵀ + b with weight (out, in), as torch.nn.Linear."""
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y, {"x": x, "weight": weight, "has_bias": bias is not None}


def linear_backward(dy: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x, weight = cache["x"], cache["weight"]
    dbias = dy.sum(axis=0) if cache["has_bias"] else None
    return dy @ weight, dy.T @ x, dbias


# ---------------------------------------------------------------- pooling
def max_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: PadPair = ((0, 0), (0, 0)),
                       dilation: Pair = (1, 1), ceil_mode: bool = False) -> tuple[np.ndarray, Cache]:
    """Max pooling as torch.nn.MaxPool2d (padding counts as −inf; the first maximum wins).

    NaN propagates as in PyTorch: a window holding a NaN yields NaN, and its gradient goes
    to the last NaN of the window in row-major order (PyTorch's CPU kernel's index).
    """
    n, c, h, w = x.shape
    out_hw = _out_hw(h, w, kernel, stride, padding, dilation, ceil_mode)
    extra = _overhang((h, w), kernel, stride, padding, dilation, ceil_mode)
    xp = np.ascontiguousarray(_pad(x, padding, extra, value=-np.inf))
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    where = np.empty((n, c, *out_hw), dtype=np.int64)

    def images(lo: int, hi: int) -> None:
        if kernel == (2, 2) and stride == (2, 2) and dilation == (1, 1):
            _max_pool_2x2_kernel(xp[lo:hi], y[lo:hi], where[lo:hi])
        else:
            _max_pool_kernel(xp[lo:hi], *kernel, *stride, *dilation, y[lo:hi], where[lo:hi])

    over_batch(images, n, y.size * kernel[0] * kernel[1] * NS_PER_ELEMENT)
    # the kernels compare with a plain `>` (a NaN-aware compare made them 2-8x slower); one
    # vectorized min (NaN if any input is) decides whether NaN windows need fixing
    if x.size and np.isnan(np.min(x)):
        _propagate_nan(xp, kernel, stride, dilation, y, where)
    cache = {"where": where, "x_shape": x.shape, "padded_hw": xp.shape[2:], "padding": padding}
    return y, cache


def _propagate_nan(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out: np.ndarray,
                   where: np.ndarray) -> None:
    """Windows holding a NaN pool to NaN, their gradient going to the window's last NaN in
    row-major order (the index PyTorch's CPU kernel records: every NaN takes over)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n, c, ho, wo = out.shape
    taps = np.isnan(_windows(xp, kernel, stride, dilation, (ho, wo))).reshape(n, c, ho, wo, kh * kw)
    holds_nan = taps.any(axis=-1)
    p, q = np.divmod(kh * kw - 1 - taps[..., ::-1].argmax(axis=-1), kw)
    rows = np.arange(ho)[:, None] * sh + p * dh
    cols = np.arange(wo)[None, :] * sw + q * dw
    out[holds_nan] = np.nan
    where[holds_nan] = (rows * xp.shape[3] + cols)[holds_nan]


def max_pool2d_backward(dy: np.ndarray, cache: Cache) -> np.ndarray:
    n, c = dy.shape[:2]
    hp, wp = cache["padded_hw"]
    dxp = np.zeros((n, c, hp * wp), dtype=dy.dtype)
    dy, where = np.ascontiguousarray(dy), cache["where"]
    over_batch(lambda lo, hi: _max_unpool_kernel(dy[lo:hi], where[lo:hi], dxp[lo:hi]), n,
               dy.size * NS_PER_SCATTER)
    return np.ascontiguousarray(_crop(dxp.reshape(n, c, hp, wp), cache["padding"], cache["x_shape"][2:]))


@njit(cache=True, nogil=True)
def _max_pool_kernel(xp, kh, kw, sh, sw, dh, dw, out, where):  # pragma: no cover - compiled
    """out/where[n, c, i, j] = max/flat index over one window of the padded input."""
    n, c, ho, wo = out.shape
    width = xp.shape[3]
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    best = xp[b, ch, i * sh, j * sw]
                    at = i * sh * width + j * sw
                    for p in range(kh):
                        r = i * sh + p * dh
                        for q in range(kw):
                            col = j * sw + q * dw
                            v = xp[b, ch, r, col]
                            # selects, not branches: random data would mispredict every other one
                            larger = v > best
                            at = r * width + col if larger else at
                            best = v if larger else best
                    out[b, ch, i, j] = best
                    where[b, ch, i, j] = at


@njit(cache=True, nogil=True)
def _max_pool_2x2_kernel(xp, out, where):  # pragma: no cover - compiled
    """:func:`_max_pool_kernel` for the common 2×2 window, stride 2: the four taps unrolled
    in the same order (same first-maximum ties), which the compiler turns into straight-line code."""
    n, c, ho, wo = out.shape
    width = xp.shape[3]
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                top = xp[b, ch, 2 * i]
                bottom = xp[b, ch, 2 * i + 1]
                row = 2 * i * width
                for j in range(wo):
                    col = 2 * j
                    best, at = top[col], row + col
                    v = top[col + 1]
                    larger = v > best
                    at = row + col + 1 if larger else at
                    best = v if larger else best
                    v = bottom[col]
                    larger = v > best
                    at = row + width + col if larger else at
                    best = v if larger else best
                    v = bottom[col + 1]
                    larger = v > best
                    at = row + width + col + 1 if larger else at
                    best = v if larger else best
                    out[b, ch, i, j] = best
                    where[b, ch, i, j] = at


@njit(cache=True, nogil=True)
def _max_unpool_kernel(dy, where, dxp):  # pragma: no cover - compiled
    """Scatter each output gradient to the input its window's maximum came from."""
    n, c, ho, wo = dy.shape
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    dxp[b, ch, where[b, ch, i, j]] += dy[b, ch, i, j]


def avg_pool2d_forward(x: np.ndarray, kernel: Pair, stride: Pair, padding: PadPair = ((0, 0), (0, 0)),
                       ceil_mode: bool = False, count_include_pad: bool = True) -> tuple[np.ndarray, Cache]:
    """Average pooling as torch.nn.AvgPool2d: each window's sum over the divisor
    :func:`convcli.pool_windows.window_taps` gives (the one rule the engine's pooling uses too)."""
    n, c, h, w = x.shape
    dilation = (1, 1)
    out_hw = _out_hw(h, w, kernel, stride, padding, dilation, ceil_mode)
    xp = _pad(x, padding, _overhang((h, w), kernel, stride, padding, dilation, ceil_mode))
    win = _windows(xp, kernel, stride, dilation, out_hw)
    rows, cols = (window_taps(size, k, stride=s, padding=p, ceil_mode=ceil_mode,
                              count_include_pad=count_include_pad)[2]
                  for size, k, s, p in zip((h, w), kernel, stride, padding, strict=True))
    divisor = np.multiply.outer(rows, cols).astype(x.dtype)
    y = win.sum(axis=(-2, -1)) / divisor
    cache = {"divisor": divisor, "x_shape": x.shape, "padded_hw": xp.shape[2:], "kernel": kernel,
             "stride": stride, "padding": padding}
    return y.astype(x.dtype, copy=False), cache


def avg_pool2d_backward(dy: np.ndarray, cache: Cache) -> np.ndarray:
    kh, kw = cache["kernel"]
    share = (dy / cache["divisor"]).astype(dy.dtype, copy=False)
    n, c, ho, wo = share.shape
    dcols = np.broadcast_to(share.reshape(n, c, 1, 1, ho, wo), (n, c, kh, kw, ho, wo))
    dxp = _col2im(dcols, cache["padded_hw"], cache["stride"], (1, 1))
    return np.ascontiguousarray(_crop(dxp, cache["padding"], cache["x_shape"][2:]))


def adaptive_pool2d_forward(x: np.ndarray, out_hw: Pair, op: str = "avg") -> tuple[np.ndarray, Cache]:
    """Adaptive average or max pooling to ``out_hw`` (torch.nn.AdaptiveAvgPool2d / AdaptiveMaxPool2d)."""
    n, c, h, w = x.shape
    rows, cols = ([adaptive_bounds(i, size, out) for i in range(out)]
                  for size, out in zip((h, w), out_hw, strict=True))
    y = np.empty((n, c, *out_hw), dtype=x.dtype)
    where = {}
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            block = x[:, :, r0:r1, c0:c1].reshape(n, c, -1)
            if op == "max":
                arg = block.argmax(axis=-1)  # the first NaN, if any: PyTorch's CPU kernel keeps the last
                nan = np.isnan(block)
                arg = np.where(nan.any(axis=-1), block.shape[-1] - 1 - nan[..., ::-1].argmax(axis=-1), arg)
                where[i, j] = arg
                y[:, :, i, j] = np.take_along_axis(block, arg[..., None], axis=-1)[..., 0]
            else:
                y[:, :, i, j] = block.mean(axis=-1)
    return y, {"x_shape": x.shape, "rows": rows, "cols": cols, "op": op, "where": where}


def adaptive_pool2d_backward(dy: np.ndarray, cache: Cache) -> np.ndarray:
    n, c, h, w = cache["x_shape"]
    dx = np.zeros(cache["x_shape"], dtype=dy.dtype)
    for i, (r0, r1) in enumerate(cache["rows"]):
        for j, (c0, c1) in enumerate(cache["cols"]):
            size = (r1 - r0) * (c1 - c0)
            if cache["op"] == "max":
                block = np.zeros((n, c, size), dtype=dy.dtype)
                np.put_along_axis(block, cache["where"][i, j][..., None], dy[:, :, i, j, None], axis=-1)
                dx[:, :, r0:r1, c0:c1] += block.reshape(n, c, r1 - r0, c1 - c0)
            else:
                dx[:, :, r0:r1, c0:c1] += (dy[:, :, i, j] / size)[:, :, None, None]
    return dx


# ---------------------------------------------------------------- normalization, dropout
def batch_norm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                       running_var: np.ndarray, training: bool, momentum: float = 0.1,
                       eps: float = 1e-5) -> tuple[np.ndarray, Cache]:
    """BatchNorm1d/2d over every axis but 1. Training updates the running stats in place
    (unbiased variance, as PyTorch); evaluation uses them."""
    axes = tuple(a for a in range(x.ndim) if a != 1)
    shape = [1] * x.ndim
    shape[1] = -1
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        count = x.size // x.shape[1]
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * count / max(count - 1, 1)
    else:
        mean, var = running_mean, running_var
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    y = xhat * gamma.reshape(shape) + beta.reshape(shape)
    cache = {"xhat": xhat, "inv_std": inv_std, "gamma": gamma, "axes": axes, "shape": shape,
             "training": training}
    return y.astype(x.dtype, copy=False), cache


def batch_norm_backward(dy: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, inv_std, gamma, axes, shape = (cache[k] for k in ("xhat", "inv_std", "gamma", "axes", "shape"))
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dxhat = dy * gamma.reshape(shape)
    if not cache["training"]:
        return (dxhat * inv_std.reshape(shape)).astype(dy.dtype, copy=False), dgamma, dbeta
    count = dy.size // dy.shape[1]
    dx = (inv_std.reshape(shape) / count) * (
        count * dxhat - dxhat.sum(axis=axes).reshape(shape)
        - xhat * (dxhat * xhat).sum(axis=axes).reshape(shape))
    return dx.astype(dy.dtype, copy=False), dgamma, dbeta


def dropout_forward(x: np.ndarray, p: float, training: bool,
                    rng: np.random.Generator | None) -> tuple[np.ndarray, Cache]:
    """Inverted dropout: zero with probability p, scale the rest by 1/(1−p); identity in evaluation."""
    if not training or p == 0:
        return x, {"mask": None}
    if p >= 1:
        mask = np.zeros_like(x)
    else:
        mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1 - p)
    return x * mask, {"mask": mask}


def dropout_backward(dy: np.ndarray, cache: Cache) -> np.ndarray:
    return dy if cache["mask"] is None else dy * cache["mask"]


# ---------------------------------------------------------------- activations
def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    if chunk_count(len(x), 2 * x.size * NS_PER_ELEMENT) == 1:  # most calls: skip the buffers' set-up
        return np.maximum(x, 0), {"positive": x > 0}
    y, positive = np.empty_like(x), np.empty(x.shape, dtype=bool)

    def images(lo: int, hi: int) -> None:
        np.greater(x[lo:hi], 0, out=positive[lo:hi])
        np.maximum(x[lo:hi], 0, out=y[lo:hi])

    over_batch(images, len(x), 2 * x.size * NS_PER_ELEMENT)
    return y, {"positive": positive}


def relu_backward(dy: np.ndarray, cache: Cache) -> np.ndarray:
    positive = cache["positive"]
    if chunk_count(len(dy), dy.size * NS_PER_ELEMENT) == 1:
        return dy * positive
    dx = np.empty(np.broadcast_shapes(dy.shape, positive.shape), dtype=dy.dtype)
    over_batch(lambda lo, hi: np.multiply(dy[lo:hi], positive[lo:hi], out=dx[lo:hi]), len(dx),
               dx.size * NS_PER_ELEMENT)
    return dx


# ---------------------------------------------------------------- loss
def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax along the last axis via log-sum-exp (stable for any magnitude)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> tuple[float, Cache]:
    """Mean softmax cross-entropy of (N, K) logits against integer labels."""
    logp = log_softmax(logits)
    loss = -float(np.take_along_axis(logp, labels[:, None], axis=1).mean())
    return loss, {"logp": logp, "labels": labels}


def cross_entropy_backward(cache: Cache) -> np.ndarray:
    logp, labels = cache["logp"], cache["labels"]
    grad = np.exp(logp)
    grad[np.arange(len(labels)), labels] -= 1
    return grad / len(labels)
