"""How convcli writes shapes for people, and reads them back: the one format (``3x256x256``).

Every command, table, message and ``--explain`` line shows a shape with :func:`shape_text`, and
every option or argument that takes one (``--input 1x28x28``, ``--size 32x32``, ``--output-size
7x7``) reads it with :func:`parse_shape`. Numba-free and cheap to import.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from convcli.errors import UsageError

ARROW = "->"  # input -> output, in every command's report line


def shape_text(shape: Iterable[int] | None) -> str:
    """``(3, 256, 256)`` -> ``'3x256x256'``, ``(101,)`` -> ``'101'``; None (no shape) -> ``'-'``."""
    if shape is None:
        return "-"
    return "x".join(str(int(size)) for size in shape)


def parse_shape(text: str, label: str, *, low: int = 1, lengths: Collection[int] = (1, 2, 3, 4),
                forms: str = "CxHxW, CxL or N", example: str = "1x28x28") -> tuple[int, ...]:
    """``'3x256x256'`` (also ``×`` or ``,`` between sizes) -> ``(3, 256, 256)``; UsageError naming
    ``label`` unless it holds one of ``lengths`` integers, each at least ``low``."""
    parts = str(text).lower().replace("×", "x").replace(",", "x").split("x")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        shape = ()
    if len(shape) not in lengths or any(size < low for size in shape):
        sizes = {0: "whole numbers", 1: "positive sizes"}.get(low, f"sizes >= {low}")
        raise UsageError(f"{label} {text!r}: write {sizes} as {forms} (e.g. {example})")
    return shape


AXIS_NAMES = {1: ("samples",), 2: ("rows", "columns")}


def uncovered_text(counts: dict[str, int]) -> str | None:
    """'the last 1 row and 2 columns are' / 'the last sample is': what a stride that does not tile
    leaves unread (subject and verb, for the caller to finish the sentence), or None."""
    left = {axis: n for axis, n in counts.items() if n}
    if not left:
        return None
    parts = " and ".join(f"{n} {axis if n > 1 else axis[:-1]}" for axis, n in left.items())
    plural = len(left) > 1 or next(iter(left.values())) > 1
    return f"the last {parts} {'are' if plural else 'is'}"
