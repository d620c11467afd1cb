"""The single-layer size calculator and solver behind ``convcli shapes --size/--solve``.

All sizes come from :func:`convcli.sizes.output_size`; the solver tries every candidate value
in a range that provably contains all solutions, so it never misses one.
"""

from __future__ import annotations

from dataclasses import dataclass

from convcli.errors import ConvcliError
from convcli.sizes import Padding, effective_kernel, left_over, output_size, padding_pair, stride_remainder

UNKNOWNS = ("kernel", "stride", "padding", "size")


@dataclass(frozen=True)
class LayerSize:
    """One axis of one layer: input size and the layer's arithmetic."""

    size: int
    kernel: int
    stride: int = 1
    padding: Padding = 0
    dilation: int = 1
    transposed: bool = False
    output_padding: int = 0
    ceil_mode: bool = False

    def output(self) -> int:
        return output_size(
            self.size,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            transposed=self.transposed,
            output_padding=self.output_padding,
            ceil_mode=self.ceil_mode,
        )

    def left_over(self) -> int:
        """Input rows past the last window (0 when the stride tiles exactly; transposed: 0)."""
        if self.transposed:
            return 0
        return left_over(
            self.size,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
        )

    def exact(self) -> bool:
        """True when the size formula needs no flooring (the stride tiles the padded input)."""
        if self.transposed:
            return True
        return stride_remainder(
            self.size, self.kernel, stride=self.stride, padding=self.padding, dilation=self.dilation
        ) == 0

    def fraction(self) -> str:
        """The division the size formula rounds, with the numbers in: '4/3'."""
        before, after = padding_pair(self.padding)
        reach = self.size + before + after - effective_kernel(self.kernel, self.dilation)
        return f"{reach}/{self.stride}"

    def formula(self) -> str:
        """The size formula, then the same with the numbers in, then the result."""
        before, after = padding_pair(self.padding)
        n, k, s, d = self.size, self.kernel, self.stride, self.dilation
        if before == after:
            pad_sym, pad_num = "2p", f"2·{before}"
        else:
            pad_sym, pad_num = "p_before + p_after", f"{before} + {after}"
        out = self.output()
        if self.transposed:
            return (
                f"(n − 1)·s − {pad_sym} + d·(k − 1) + output_padding + 1 = "
                f"({n} − 1)·{s} − {pad_num} + {d}·({k} − 1) + {self.output_padding} + 1 = {out}"
            )
        rounding = "ceil" if self.ceil_mode else "floor"
        return (
            f"{rounding}((n + {pad_sym} − d·(k − 1) − 1) / s) + 1 = "
            f"{rounding}(({n} + {pad_num} − {d}·({k} − 1) − 1) / {s}) + 1 = {out}"
        )


def _candidates(unknown: str, target: int, layer: LayerSize) -> range:
    """A range of values certain to hold every solution for ``unknown``."""
    before, after = padding_pair(layer.padding) if unknown != "padding" else (0, 0)
    span = effective_kernel(layer.kernel, layer.dilation) if unknown != "kernel" else 0
    if layer.transposed:
        limits = {
            "kernel": target + before + after + 1,
            "stride": target + before + after + 1,
            "padding": (layer.size - 1) * layer.stride + span + layer.output_padding,
            "size": target + before + after + 1,
        }
    else:
        limits = {
            # forward: the output grows with the input and padding and shrinks with kernel and stride
            "kernel": layer.size + before + after,
            "stride": layer.size + before + after,
            "padding": target * layer.stride + span,
            "size": (target + 1) * layer.stride + span,
        }
    start = 0 if unknown == "padding" else 1
    return range(start, max(start, limits[unknown]) + 1)


def solve(unknown: str, target: int, layer: LayerSize) -> tuple[list[int], list[int]]:
    """Values of ``unknown`` that give output ``target``: (tiling exactly, reached by flooring only).

    The value of ``unknown`` in ``layer`` is ignored. Raises ConvcliError when nothing fits.
    """
    if unknown not in UNKNOWNS:
        raise ValueError(f"--solve must be one of {', '.join(UNKNOWNS)}, got {unknown!r}")
    if target < 1:
        raise ValueError(f"--out must be >= 1, got {target}")
    exact, inexact = [], []
    for value in _candidates(unknown, target, layer):
        trial = LayerSize(**{**layer.__dict__, unknown: value})
        try:
            if trial.output() != target:
                continue
        except ValueError:
            continue  # e.g. a kernel larger than the input, or an invalid output_padding
        (exact if trial.exact() else inexact).append(value)
    if not exact and not inexact:
        known = ", ".join(
            f"{name} {getattr(layer, name)}"
            for name in ("size", "kernel", "stride", "padding")
            if name != unknown
        )
        raise ConvcliError(f"no {unknown} gives output size {target} ({known}, dilation {layer.dilation})")
    return exact, inexact
