"""Text renderings of kernels: the matrix for 'kernels show' and the --explain report."""

from __future__ import annotations

import numpy as np

from convcli.text import shape_text

MAX_SHOWN = 25  # values per axis printed in full; longer kernels are summarised


def _shown(n: int, head: int, tail: int) -> np.ndarray:
    """Indices printed along an axis of n values (all of them up to MAX_SHOWN)."""
    return np.arange(n) if n <= MAX_SHOWN else np.r_[0:head, n - tail : n]


def format_matrix(matrix: np.ndarray | None, factors: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """Rows of aligned numbers; long 1-D kernels (FIR, impulse responses) are abbreviated.

    A separable kernel may come as its ``factors`` (column, row): only the printed values are built.
    """
    if factors is not None:
        column, row = (np.asarray(f, dtype=np.float64) for f in factors)
        rows, columns = _shown(len(column), 10, 10), _shown(len(row), 6, 6)
        values, full_shape = np.outer(column[rows], row[columns]), (len(column), len(row))
    else:
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix[None]
        if matrix.ndim > 2:
            return "\n\n".join(f"[{i}]\n{format_matrix(sub)}" for i, sub in enumerate(matrix))
        rows, columns = _shown(matrix.shape[0], 10, 10), _shown(matrix.shape[1], 6, 6)
        values, full_shape = matrix[np.ix_(rows, columns)], matrix.shape
    values = _zero_below_rounding(values, matrix if factors is None else values)
    words = [[f"{v:.6g}" for v in row] for row in values]
    width = max(len(w) for row in words for w in row)
    if factors is None and matrix.size <= 1 << 16:  # aligned as wide as the widest value, shown or not
        width = max(width, max(len(f"{v:.6g}") for v in _zero_below_rounding(matrix, matrix).ravel()))
    lines = []
    for row in words:
        if full_shape[1] > MAX_SHOWN:
            row = [*row[:6], "...", *row[-6:]]
        lines.append(" ".join(w.rjust(width) for w in row))
    if full_shape[0] > MAX_SHOWN:
        lines = [*lines[:10], "...", *lines[-10:]]
    return "\n".join(lines)


def _zero_below_rounding(values: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """A tap that is 0 up to rounding (a FIR design's zero crossing: -4e-19 beside taps of 0.2) as 0."""
    largest = float(np.abs(whole).max()) if whole.size else 0.0
    return np.where(np.abs(values) <= 1e-12 * largest, 0.0, values)


def channel_rule(kernel, geometry=None) -> str:
    """How the kernel treats channels, in words."""
    groups = 1 if geometry is None else geometry.groups
    if kernel.role == "mix" and geometry is not None and geometry.transposed:
        c_in, c_out = kernel.shape[0], kernel.shape[1] * groups
        return (f"channels: transposed layout (C_in, C_out/groups, ...): each of the {c_in} input "
                f"channel(s) i is scattered through kernel [i, o] into the {c_out} output channel(s) o of "
                f"its group ({groups} group(s)), and the scatters add up (no bias)")
    if kernel.role == "mix" and groups != 1:
        c_out, c_in = kernel.shape[:2]
        return (f"channels: {groups} groups: output channel o (of {c_out}) is the sum over the {c_in} input "
                f"channel(s) i of its group (o // {c_out // groups}) of input i filtered by kernel [o, i] "
                "(no bias)")
    if kernel.role == "mix":
        c_out, c_in = kernel.shape[:2]
        return (f"channels: mixed as a CNN layer does: each of the {c_out} output channel(s) o is the sum "
                f"over the {c_in} input channel(s) i of input i filtered by kernel [o, i] (no bias)")
    if kernel.role == "ir":
        return ("channels: input channel c with impulse-response channel c; a mono impulse response "
                "applies to every channel, a mono input gives one output per impulse-response channel")
    return "channels: the kernel applies to each channel alone"


def kernel_sum(kernel) -> float:
    """Sum of a kernel's values (of a factored one: the product of its factors' sums)."""
    if kernel.factors is not None:
        return float(np.sum(kernel.factors[0]) * np.sum(kernel.factors[1]))
    return float(np.sum(kernel.array))


def explain_text(kernels, plans: list[dict], geometry) -> str:
    """What --explain prints: each kernel resolved, and the method the engine chose and why."""
    lines = []
    for step, (kernel, how) in enumerate(zip(kernels, plans, strict=True), start=1):
        if kernel.role == "model":
            lines.append(f"kernel {step}: {kernel.spec} = {kernel.description}")
            if kernel.array.size:
                lines.append(f"layer weight {shape_text(kernel.array.shape)}:")
                lines.append(format_matrix(kernel.array))
            continue
        applied = "correlation" if geometry.correlate else "convolution (kernel flipped)"
        lines.append(
            f"kernel {step}: {kernel.spec} = {kernel.description}; shape {shape_text(kernel.shape)}, "
            f"sum {kernel_sum(kernel):.6g}; applied as {applied}"
        )
        lines.append(channel_rule(kernel, geometry))
        lines.append(format_matrix(kernel.matrix, kernel.factors))
        lines.append(f"method: {how['method']}: {how['reason']}")
        lines.append(f"alignment: {how['alignment']}: {how['alignment_reason']}")
    if all(kernel.role == "model" for kernel in kernels):
        return "\n".join(lines)  # the layers' own geometry, stated above
    # unset, the mode is each kernel's own (Geometry.for_kernel): same, or full for an impulse response
    modes = {geometry.for_kernel(kernel).mode for kernel in kernels if kernel.role != "model"}
    mode = geometry.mode or "/".join(sorted(modes))
    lines.append(
        f"mode {mode}, boundary {geometry.boundary} (cval {geometry.cval:g}), "
        f"stride {geometry.stride}, dilation {geometry.dilation}, padding {geometry.padding}"
        + (f", groups {geometry.groups}" if geometry.groups != 1 else "")
        + (f"; transposed (the adjoint of that convolution), output padding {geometry.output_padding}"
           if geometry.transposed else "")
    )
    return "\n".join(lines)
