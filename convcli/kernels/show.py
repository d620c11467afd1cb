"""Text renderings of kernels: the matrix for 'kernels show' and the --explain report."""

from __future__ import annotations

import numpy as np

MAX_SHOWN = 25  # values per axis printed in full; longer kernels are summarised


def format_matrix(matrix: np.ndarray) -> str:
    """Rows of aligned numbers; long 1-D kernels (FIR, impulse responses) are abbreviated."""
    matrix = np.asarray(matrix, dtype=np.float64)
    # a tap that is 0 up to rounding (a FIR design's zero crossing: -4e-19 beside taps of 0.2) prints as 0
    largest = float(np.abs(matrix).max()) if matrix.size else 0.0
    matrix = np.where(np.abs(matrix) <= 1e-12 * largest, 0.0, matrix)
    if matrix.ndim == 1:
        matrix = matrix[None]
    if matrix.ndim > 2:
        return "\n\n".join(f"[{i}]\n{format_matrix(sub)}" for i, sub in enumerate(matrix))
    words = [[f"{v:.6g}" for v in row] for row in matrix]
    width = max(len(w) for row in words for w in row)
    lines = []
    for row in words:
        if len(row) > MAX_SHOWN:
            row = [*row[:6], "...", *row[-6:]]
        lines.append(" ".join(w.rjust(width) for w in row))
    if len(lines) > MAX_SHOWN:
        lines = [*lines[:10], "...", *lines[-10:]]
    return "\n".join(lines)


def channel_rule(kernel) -> str:
    """How the kernel treats channels, in words."""
    if kernel.role == "mix":
        c_out, c_in = kernel.array.shape[:2]
        return (f"channels: mixed as a CNN layer does: each of the {c_out} output channel(s) o is the sum "
                f"over the {c_in} input channel(s) i of input i filtered by kernel [o, i] (no bias)")
    if kernel.role == "ir":
        return ("channels: input channel c with impulse-response channel c; a mono impulse response "
                "applies to every channel, a mono input gives one output per impulse-response channel")
    return "channels: the kernel applies to each channel alone"


def explain_text(kernels, plans: list[dict], geometry) -> str:
    """What --explain prints: each kernel resolved, and the method the engine chose and why."""
    lines = []
    for step, (kernel, how) in enumerate(zip(kernels, plans, strict=True), start=1):
        if kernel.role == "model":
            lines.append(f"kernel {step}: {kernel.spec} = {kernel.description}")
            if kernel.array.size:
                lines.append(f"layer weight {tuple(kernel.array.shape)}:")
                lines.append(format_matrix(kernel.array))
            continue
        applied = "correlation" if geometry.correlate else "convolution (kernel flipped)"
        lines.append(
            f"kernel {step}: {kernel.spec} = {kernel.description}; shape {tuple(kernel.array.shape)}, "
            f"sum {float(np.sum(kernel.array)):.6g}; applied as {applied}"
        )
        lines.append(channel_rule(kernel))
        lines.append(format_matrix(kernel.array))
        lines.append(f"method: {how['method']}: {how['reason']}")
    if all(kernel.role == "model" for kernel in kernels):
        return "\n".join(lines)  # the layers' own geometry, stated above
    lines.append(
        f"mode {geometry.mode}, boundary {geometry.boundary} (cval {geometry.cval:g}), "
        f"stride {geometry.stride}, dilation {geometry.dilation}, padding {geometry.padding}"
    )
    return "\n".join(lines)
