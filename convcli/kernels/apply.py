"""Applying resolved kernels to decoded data through the engine (``convcli.convolve``).

This is where channel rules live: a filter applies to every channel, an impulse response maps
channels as :class:`convcli.kernels.Kernel` describes, a (C_out, C_in, *k) kernel mixes channels
the way a CNN layer does, and a model's layer gives the model's own feature map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from convcli.errors import UsageError
from convcli.kernels import Kernel
from convcli.sizes import PerAxis, PerAxisPadding, effective_kernel, output_size, per_axis
from convcli.text import shape_text

# What lies outside the input when the command line does not say. Images: reflect (d c b | a b c d,
# OpenCV's default BORDER_REFLECT_101) invents no frame: a flat image stays flat under any normalized
# kernel, and a sharpen or a blur does not paint or darken the border as zeros would. Audio and
# arrays: constant 0, silence before and after (the Python API's default, as in scipy.signal).
DEFAULT_BOUNDARY = {"image": "reflect", "audio": "constant", "array": "constant"}


@dataclass(frozen=True)
class Geometry:
    """The options of ``convcli.convolve`` shared by every kernel of a run (``boundary`` None: the
    media's default, :data:`DEFAULT_BOUNDARY`; ``mode`` None: the kernel's own, :meth:`for_kernel`)."""

    mode: str | None = "same"
    boundary: str | None = "constant"
    cval: float = 0.0
    stride: PerAxis = 1
    dilation: PerAxis = 1
    padding: PerAxisPadding | None = None
    correlate: bool = False
    method: str = "auto"
    groups: int = 1
    transposed: bool = False  # the adjoint of the operation the other options describe
    output_padding: PerAxis = 0

    def engine_options(self, ndim: int, *, correlate: bool | None = None) -> dict:
        """Keyword arguments of ``convcli.convolve`` for an ``ndim``-D kernel."""
        padding = self.padding
        if isinstance(padding, tuple) and len(padding) == 1 and ndim > 1:
            padding = padding * ndim  # one (before, after) pair given for every axis
        return {
            "mode": self.mode,
            "boundary": self.boundary,
            "cval": self.cval,
            "stride": self.stride,
            "dilation": self.dilation,
            "padding": padding,
            "correlate": self.correlate if correlate is None else correlate,
            "method": self.method,
        }

    def for_media(self, kind: str, *, feature_maps: bool = False) -> Geometry:
        """This geometry with the boundary resolved for media ``kind`` (feature maps: the layers'
        own zero padding)."""
        if self.boundary is not None:
            return self
        return replace(self, boundary="constant" if feature_maps else DEFAULT_BOUNDARY[kind])

    def transposed_options(self, ndim: int) -> dict:
        """Keyword arguments of ``convcli.conv_transpose`` for an ``ndim``-D kernel (no cval: the
        transpose exists for a linear padding, whose constant is 0)."""
        options = self.engine_options(ndim)
        del options["cval"]
        return options | {"groups": self.groups, "output_padding": self.output_padding}

    def for_kernel(self, kernel: Kernel) -> Geometry:
        """This geometry as it applies to ``kernel`` (:func:`alignment` says why).

        A designed kernel is centred: the unset mode is 'same'. An impulse response is causal: the
        unset mode is 'full' (its tail kept) and 'same' keeps the input's length with all the padding
        on the side of the past (for convolution; of the future for correlation, its mirror image)."""
        if kernel.role != "ir" or self.padding is not None:
            return self if self.mode is not None else replace(self, mode="same")
        if self.mode != "same":
            return replace(self, mode=self.mode or "full")
        dilation = self.dilation[0] if isinstance(self.dilation, tuple) else self.dilation
        reach = effective_kernel(kernel.shape[-1], dilation) - 1
        return replace(self, padding=((0, reach) if self.correlate else (reach, 0),))

    def in_chain(self, step: int, count: int) -> Geometry:
        """The geometry of kernel ``step`` of a chain of ``count`` (``-k a -k b``). The stride applies
        once, after the last kernel: the chain is one filter, and decimating between its kernels would
        alias before the next one filters (SoX and ffmpeg also resample after the effects). Mode,
        padding, boundary and dilation apply to each kernel: each reads outside its own input, and
        same/valid/full and dilation compose into the chain's own. A transposed chain upsamples once,
        likewise: its last kernel scatters with the stride and the output padding."""
        return self if step == count - 1 else replace(self, stride=1, output_padding=0)

    @property
    def keeps_size(self) -> bool:
        """Output grid equals the input grid (so alpha can pass through as is)."""
        strides = self.stride if isinstance(self.stride, tuple) else (self.stride,)
        extra = self.output_padding if isinstance(self.output_padding, tuple) else (self.output_padding,)
        return (self.padding is None and self.mode in (None, "same") and all(s == 1 for s in strides)
                and not any(extra))


CAUSAL_RULE = ("an impulse response (a recording) is causal, as ffmpeg afir and SoX apply it: output n hears "
               "inputs n, n-1, ...")


def alignment(kernel: Kernel, geometry: Geometry) -> tuple[str, str]:
    """(name, why) of where ``kernel`` sits against the input under ``geometry`` (as given, before
    :meth:`Geometry.for_kernel`): what --explain and --json report."""
    if kernel.role == "model":
        return "model", "the layers' own padding"
    if geometry.padding is not None:
        return "padding", "--padding places the kernel: output i starts at input i - before"
    if geometry.mode == "valid":
        return "valid", "only the outputs where the whole kernel lies on the input"
    if kernel.role == "ir":
        if geometry.mode == "same":
            return "causal", f"{CAUSAL_RULE}; --mode same keeps the input's length (the tail is cut)"
        return "causal", f"{CAUSAL_RULE}; its tail of K-1 samples is kept (--mode same cuts it)"
    if geometry.mode == "full":
        return "full", "every output the kernel reaches"
    return "centred", ("a designed kernel is centred as scipy.signal's 'same' (zero phase: a linear-phase "
                       "FIR's delay of (K-1)/2 samples compensated)")


def signal_ndim(kind: str, data: np.ndarray, kernel: Kernel) -> int:
    """How many trailing axes the kernel slides over: audio 1, images 2, arrays as the kernel."""
    want = kernel.spatial_ndim
    have = 1 if kind == "audio" else 2 if kind == "image" else data.ndim
    described = f"{kind} of shape {shape_text(data.shape)}"
    if kind == "image" and want == 1 and kernel.role == "filter":
        return 2  # a 1-D kernel on an image is applied as a row (1, k)
    if kernel.role == "mix" and want != have and kind != "array":
        layout = "(C_out, C_in, k)" if have == 1 else "(C_out, C_in, kh, kw)"
        raise UsageError(
            f"kernel {kernel.spec!r} {shape_text(kernel.array.shape)} mixes channels of {want}-D signals, "
            f"but the input is {described}: a channel-mixing kernel for it is {layout}"
        )
    if want > have or (kind != "array" and want != have):
        raise UsageError(
            f"kernel {kernel.spec!r} is {want}-D {shape_text(kernel.shape)} but the input is "
            f"{have}-D ({described}); use a {have}-D kernel"
        )
    return want


def check_fits(data: np.ndarray, kernel_shape: tuple[int, ...], geometry: Geometry, spec: str) -> None:
    """A message naming the kernel when it is larger than the input in valid mode (the engine checks
    explicit padding itself)."""
    ndim = len(kernel_shape)
    strides = _option_axes(geometry.stride, ndim, "stride")
    dilations = _option_axes(geometry.dilation, ndim, "dilation")
    if geometry.mode != "valid" or geometry.padding is not None:
        return
    for n, k, s, d in zip(data.shape[-ndim:], kernel_shape, strides, dilations, strict=True):
        try:
            output_size(n, k, stride=s, dilation=d)
        except ValueError as error:
            raise UsageError(
                f"kernel {spec!r} {shape_text(kernel_shape)} does not fit the input "
                f"{shape_text(data.shape[-ndim:])} in valid mode: {error}"
            ) from error


def _option_axes(value: PerAxis, ndim: int, name: str) -> tuple[int, ...]:
    """:func:`convcli.sizes.per_axis`; a bad value is a usage error naming the parameter."""
    try:
        return per_axis(value, ndim, f"`{name}`")
    except ValueError as error:
        raise UsageError(str(error)) from None


def apply_kernel(data: np.ndarray, kind: str, kernel: Kernel, geometry: Geometry) -> tuple[np.ndarray, dict]:
    """One kernel on channels-first ``data`` of media ``kind``; returns (result, the engine's plan)."""
    from convcli.engine.convolve import convolve_planned

    if kernel.role == "model":
        maps = kernel.feature.apply(data, kind)
        return maps, {"method": "model", "reason": "the model's own forward pass", "left_over": []}
    geometry = geometry.for_kernel(kernel)
    ndim = signal_ndim(kind, data, kernel)
    _option_axes(geometry.stride, ndim, "stride")
    _option_axes(geometry.dilation, ndim, "dilation")
    if kernel.role == "ir":
        if geometry.transposed or geometry.groups != 1:
            raise UsageError(f"{kernel.spec}: --transposed and --groups take a filter or a channel-mixing "
                             "kernel, not an impulse response")
        return _apply_ir(data, kernel, geometry)
    if kernel.role == "mix":
        data = data if data.ndim > ndim else data[None]
        check_channels(data, kernel, ndim, geometry)
        weights = kernel.array
    elif geometry.groups != 1:
        raise UsageError(
            f"kernel {kernel.spec!r} {shape_text(kernel.shape)} filters each channel alone: --groups "
            f"{geometry.groups} needs a (C_out, C_in/groups, kh, kw) kernel file (depthwise: (C, 1, kh, kw))"
        )
    elif kernel.factors is not None and not geometry.transposed:  # separable: never built as a matrix
        check_fits(data, kernel.shape, geometry, kernel.spec)
        out, how = convolve_planned(data, None, factors=kernel.factors, **geometry.engine_options(ndim))
        return out, _summary(how)
    else:
        weights = kernel.array[None, :] if ndim == 2 and kernel.array.ndim == 1 else kernel.array
    weights = weights.astype(data.dtype)
    if geometry.transposed:
        from convcli.engine.transposed import conv_transpose_planned

        out, how = conv_transpose_planned(data, weights, **geometry.transposed_options(ndim))
        return out, _summary(how)
    check_fits(data, weights.shape[-ndim:], geometry, kernel.spec)
    out, how = convolve_planned(data, weights, groups=geometry.groups, **geometry.engine_options(ndim))
    return out, _summary(how)


def check_channels(data: np.ndarray, kernel: Kernel, ndim: int, geometry: Geometry | None = None) -> None:
    """A channel-mixing kernel (C_out, C_in, *k) needs C_in input channels; with groups or transposed,
    the engine's rule (:func:`convcli.engine.groups.group_slices`), named with the kernel's spec."""
    if geometry is not None and (geometry.groups != 1 or geometry.transposed):
        from convcli.engine.groups import group_slices

        try:
            group_slices(data.shape, kernel.array.shape, geometry.groups, transposed=geometry.transposed)
        except UsageError as error:
            raise UsageError(f"{kernel.spec}: {error.args[0]}") from None
        return
    have, want = data.shape[-ndim - 1], kernel.array.shape[1]
    if have != want:
        raise UsageError(
            f"kernel {kernel.spec!r} {shape_text(kernel.array.shape)} mixes {want} input channel(s) into "
            f"{kernel.array.shape[0]}, but the input has {have}"
        )


def _summary(how) -> dict:
    """What the CLI reports of an engine plan."""
    return {"method": how.method, "reason": how.reason, "left_over": list(how.left_over)}


def _apply_ir(data: np.ndarray, kernel: Kernel, geometry: Geometry) -> tuple[np.ndarray, dict]:
    from convcli.engine.convolve import convolve_planned

    ir = kernel.array.astype(data.dtype)
    if data.ndim == 1:  # one signal (an array file): one channel, one output per IR channel
        out, how = _apply_ir(data[None], kernel, geometry)
        return (out[0] if len(out) == 1 else out), how
    pairs = ir_channel_pairs(data.shape[0], ir.shape[0], kernel.spec)
    check_fits(data, ir.shape[-1:], geometry, kernel.spec)
    options = geometry.engine_options(1)
    results = [convolve_planned(data[c], ir[i], **options) for c, i in pairs]
    return np.stack([out for out, _ in results]), _summary(results[0][1])


def ir_channel_pairs(channels: int, ir_channels: int, spec: str) -> list[tuple[int, int]]:
    """(input channel, IR channel) for each output channel, by the impulse-response rules."""
    if ir_channels == 1:
        return [(c, 0) for c in range(channels)]
    if channels == 1:
        return [(0, i) for i in range(ir_channels)]
    if channels == ir_channels:
        return [(c, c) for c in range(channels)]
    raise UsageError(
        f"impulse response {spec!r} has {ir_channels} channels but the input has {channels}; "
        f"use a mono impulse response, a mono input, or matching channel counts"
    )


def apply_chain(
    data: np.ndarray, kind: str, kernels: list[Kernel], geometry: Geometry
) -> tuple[np.ndarray, list[dict]]:
    """Several kernels one after another (``-k a -k b``); returns the result and each step's plan."""
    plans = []
    for step, kernel in enumerate(kernels):
        data, how = apply_kernel(data, kind, kernel, geometry.in_chain(step, len(kernels)))
        plans.append(how | alignment_summary(kernel, geometry))
    return data, plans


def alignment_summary(kernel: Kernel, geometry: Geometry) -> dict:
    """The plan's entries naming the kernel's :func:`alignment`."""
    name, why = alignment(kernel, geometry)
    return {"alignment": name, "alignment_reason": why}


def strided_sample_rate(rate: float, geometry: Geometry, *, whole: bool = True) -> float:
    """The sample rate after the chain: its stride keeps every s-th sample (once per chain,
    :meth:`Geometry.in_chain`), so the same duration is held at rate / s. ``whole``: the result is
    written as audio, whose rate must be a whole number of samples per second."""
    stride = geometry.stride[0] if isinstance(geometry.stride, tuple) else geometry.stride
    if geometry.transposed:  # each sample becomes `stride` samples over the same duration
        return rate * stride
    if not whole:
        return rate / stride if rate % stride else rate // stride
    if rate % stride:
        raise UsageError(
            f"stride {stride} on {rate:g} Hz audio gives {rate / stride:g} Hz, not a whole number of samples "
            f"per second: pick a stride that divides {rate:g}, or write .npy"
        )
    return int(rate // stride)


def follow_alpha(alpha: np.ndarray, kernels: list[Kernel], geometry: Geometry) -> np.ndarray | None:
    """Alpha is not filtered, but must land on the output grid: sample it with a unit impulse
    of each kernel's shape (so crops, strides and padding match the colour planes exactly).
    Feature maps have no alpha (None): they are the model's activations, not a picture."""
    if any(kernel.role == "model" for kernel in kernels):
        return None
    if geometry.keeps_size:
        return alpha
    if geometry.transposed:
        return _transposed_alpha(alpha, kernels, geometry)
    from convcli.engine.convolve import convolve_planned

    for step, kernel in enumerate(kernels):
        shape = kernel.shape[-2:] if len(kernel.shape) >= 2 else (1, kernel.shape[-1])
        correlate = geometry.correlate
        # the tap that lines up output and input: centre of the (flipped, for convolution) kernel
        lines = []
        for size in shape:
            line = np.zeros(size, dtype=alpha.dtype)
            line[size - 1 - (size - 1) // 2 if correlate else (size - 1) // 2] = 1
            lines.append(line)
        placed = geometry.in_chain(step, len(kernels)).for_kernel(kernel)
        options = placed.engine_options(2, correlate=correlate) | {"cval": 0.0}
        if kernel.factors is not None:  # as the colour: two 1-D passes, no matrix of the kernel's size
            options["method"] = "separable"
            alpha = convolve_planned(alpha, None, factors=tuple(lines), **options)[0]
        else:
            options["method"] = "direct"
            alpha = convolve_planned(alpha, np.outer(*lines), **options)[0]
    return alpha


def _transposed_alpha(alpha: np.ndarray, kernels: list[Kernel], geometry: Geometry) -> np.ndarray:
    """Alpha on a transposed convolution's grid: at each output pixel, the mean alpha of the input pixels
    whose kernel windows reach it (the same scatter with a kernel of ones, divided by its coverage)."""
    from convcli.engine.transposed import conv_transpose

    for step, kernel in enumerate(kernels):
        placed = geometry.in_chain(step, len(kernels)).for_kernel(kernel)
        options = placed.transposed_options(2) | {"groups": 1, "correlate": True, "method": "direct"}
        shape = kernel.shape[-2:] if len(kernel.shape) >= 2 else (1, kernel.shape[-1])
        ones = np.ones(shape, dtype=alpha.dtype)
        cover = conv_transpose(np.ones_like(alpha), ones, **options)
        spread = conv_transpose(alpha, ones, **options)
        alpha = np.divide(spread, cover, out=np.zeros_like(spread), where=cover > 0)
    return alpha
