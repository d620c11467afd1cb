"""The single-layer size calculator and solver behind ``convcli shapes --size/--solve``.

All sizes come from :func:`convcli.sizes.output_size`; the solver searches a range that provably
contains all solutions, so it never misses one.
"""

from __future__ import annotations

from dataclasses import dataclass

from convcli.errors import ConvcliError, UsageError, at_least, one_of
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


# the most solutions the solver lists (more is a range too wide to be an answer)
MAX_LISTED = 100_000


def _output_or_zero(layer: LayerSize, unknown: str, value: int) -> int:
    """The output size with ``unknown`` set to ``value``; 0 where the layer is invalid (a kernel
    larger than the input, an output below 1, an output_padding the stride does not allow)."""
    try:
        return LayerSize(**{**layer.__dict__, unknown: value}).output()
    except ValueError:
        return 0


def _first(low: int, high: int, holds) -> int:
    """The smallest value in [low, high] where the monotone predicate holds (high + 1 if none)."""
    while low <= high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle - 1
        else:
            low = middle + 1
    return low


def solve(unknown: str, target: int, layer: LayerSize) -> tuple[list[int], list[int]]:
    """Values of ``unknown`` that give output ``target``: (tiling exactly, reached by flooring only).

    The value of ``unknown`` in ``layer`` is ignored. Raises ConvcliError when nothing fits. The
    output is monotone in each unknown (invalid layers count as output 0), so the solutions are
    one run of consecutive values, found by bisection: the search costs a few dozen evaluations
    however large the sizes (an hour of 48 kHz audio is 172,800,000 samples).
    """
    one_of("unknown", unknown, UNKNOWNS)
    at_least("target", target, 1)
    candidates = _candidates(unknown, target, layer)
    low, high = candidates.start, candidates.stop - 1

    def out(value: int) -> int:
        return _output_or_zero(layer, unknown, value)

    # forward layers shrink as kernel and stride grow, transposed ones shrink as padding grows
    if unknown in (("kernel", "stride", "size") if layer.transposed else ("size", "padding")):
        first = _first(low, high, lambda v: out(v) >= target)
        last = _first(low, high, lambda v: out(v) > target) - 1
    else:  # invalid layers (output 0) lie at the far end, below every target
        first = _first(low, high, lambda v: out(v) <= target)
        last = _first(low, high, lambda v: out(v) < target) - 1
    if last - first + 1 > MAX_LISTED:
        raise UsageError(
            f"{unknown} values {first} to {last} all give output size {target} "
            f"({last - first + 1:,} values, more than the {MAX_LISTED:,} the solver lists); fix another "
            "parameter to narrow them"
        )
    exact, inexact = [], []
    for value in range(first, last + 1):
        trial = LayerSize(**{**layer.__dict__, unknown: value})
        if out(value) == target:
            (exact if trial.exact() else inexact).append(value)
    if not exact and not inexact:
        known = ", ".join(
            f"{name} {getattr(layer, name)}"
            for name in ("size", "kernel", "stride", "padding")
            if name != unknown
        )
        raise ConvcliError(f"no {unknown} gives output size {target} ({known}, dilation {layer.dilation})")
    return exact, inexact
