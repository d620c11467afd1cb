"""What every command writes for people and scripts, in one style.

Messages go to stderr as one line with the one prefix (``convcli: error:``, ``convcli: warning:``,
``convcli: note:``); the library's parameter names become the flags that set them
(:func:`convcli.errors.flag`); ``--json`` prints one document with the one vocabulary (:func:`print_json`);
tables right-align their numbers (:func:`table`). Shapes are written by
:func:`convcli.text.shape_text`. Nothing here imports Numba, NumPy or rich until it draws.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Collection

import click

PROGRAM = "convcli"

def error(message: str) -> None:
    click.echo(f"{PROGRAM}: error: {message}", err=True)


def warn(message: str) -> None:
    click.echo(f"{PROGRAM}: warning: {message}", err=True)


def note(message: str) -> None:
    click.echo(f"{PROGRAM}: note: {message}", err=True)


def interrupted(detail: str = "") -> None:
    click.echo(f"{PROGRAM}: interrupted{': ' + detail if detail else ''}", err=True)


# ---------------------------------------------------------------- --json
def print_json(command: str, document: dict, *, err: bool = False) -> None:
    """The one ``--json`` document of ``command``: an object whose first key names the command,
    indented by two spaces, NaN and ±inf written as null (``err``: on stderr, when stdout
    carries the output data)."""
    click.echo(json_text({"command": command, **document}), err=err)


def json_text(document) -> str:
    """``json.dumps`` with NaN and ±inf (a diverged loss, an undefined precision) written as null:
    JSON has no such numbers, and Python's ``NaN`` token makes the document invalid for every
    other parser."""
    return json.dumps(_finite(document), allow_nan=False, indent=2)


def _finite(value):
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rounded_seconds(seconds: float) -> float:
    """Seconds as every document gives them: to 0.1 ms."""
    return round(seconds, 4)


# ---------------------------------------------------------------- tables
def console(stderr: bool = False):
    """A rich console; not on a terminal, wide enough that tables are not wrapped."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 200, highlight=False)


def table(*headers: str, numeric: Collection[str] = (), **options) -> Table:
    """A table whose ``numeric`` columns are right-aligned (numbers line up by their units);
    ``options`` are rich's Table options (``title``, ``title_justify``, ``caption``...). Print it
    with a console's ``print``: rich draws it, or :class:`Table` writes rich's own output itself."""
    drawn = Table(**options)
    for header in headers:
        drawn.add_column(header, justify="right" if header in numeric else "left")
    return drawn


# characters besides printable ASCII that rich draws one cell wide and leaves as they are (no
# markup, no emoji codes, no combining or wide characters, no whitespace): tests check each
PLAIN_CHARACTERS = "·×²³−±–—≈≤≥∓√ΣΔαβγδεθλμµπσ"
# a cell the plain path may draw: printable ASCII without "[" (markup) and ":" (emoji codes)
_NOT_PLAIN = re.compile(rf"[^\x20-\x39\x3b-\x5a\x5c-\x7e{PLAIN_CHARACTERS}]")
# the options of a column that change nothing while every cell fits its column
_FITTING_OPTIONS = frozenset({"no_wrap", "overflow"})
_JUSTIFY = frozenset({"left", "center", "right"})


class Table:
    """A table as rich's ``Table`` takes it (columns, rows, sections, options) and prints through
    a rich console. Where rich would draw it without colours or styles (no colour system, UTF-8,
    not legacy Windows, not recording), its default box (``box.HEAVY_HEAD``), text cells that
    rich prints as they are and a natural width within the console's, the lines are written
    here, byte for byte as rich writes them (~0.3 ms instead of ~10 for a 20-row table); anything
    else is drawn by rich."""

    def __init__(self, *, title: str | None = None, title_justify: str = "center", **options) -> None:
        self.title = title
        self.title_justify = title_justify
        self.options = options  # rich's own; the plain path draws none
        self.columns: list[tuple[str, str, dict]] = []  # header, justify, rich's column options
        self.rows: list[tuple] = []
        self.sections: set[int] = set()  # rows followed by a line

    def add_column(self, header: str = "", justify: str = "left", **options) -> None:
        self.columns.append((header, justify, options))

    def add_row(self, *cells) -> None:
        self.rows.append(cells)

    def add_section(self) -> None:
        """A line after the last row so far (none at the end of the table, as in rich)."""
        if self.rows:
            self.sections.add(len(self.rows) - 1)

    def rich(self):
        """The same table as a rich ``Table``."""
        from rich.table import Table as RichTable

        drawn = RichTable(title=self.title, title_justify=self.title_justify, **self.options)
        for header, justify, options in self.columns:
            drawn.add_column(header, justify=justify, **options)
        for index, cells in enumerate(self.rows):
            drawn.add_row(*cells, end_section=index in self.sections)
        return drawn

    def __rich_console__(self, console, options):
        text = self.plain(console, options)
        if text is None:
            yield self.rich()
        else:
            from rich.segment import Segment

            yield Segment(text)

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement.get(console, options, self.rich())

    def plain(self, console, options) -> str | None:
        """The lines rich would print on ``console`` with ``options``, or None where this cannot
        be sure of writing exactly those."""
        if (console.color_system is not None or console.record or options.legacy_windows
                or options.ascii_only or self.options or not self.columns):
            return None
        count = len(self.columns)
        headers = [header for header, _justify, _options in self.columns]
        justify = [justify for _header, justify, _options in self.columns]
        if not _JUSTIFY.issuperset(justify) or any(not _FITTING_OPTIONS.issuperset(options_)
                                                   for _header, _justify, options_ in self.columns):
            return None
        rows = [cells + ("",) * (count - len(cells)) for cells in self.rows]
        title = self.title or ""
        if any(len(cells) > count for cells in rows) or self.title_justify not in _JUSTIFY:
            return None
        cells = [*headers, title, *(cell for row in rows for cell in row)]
        if not all(type(cell) is str for cell in cells) or _NOT_PLAIN.search(" ".join(cells)):
            return None
        widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
        width = sum(widths) + 3 * count + 1
        if width > options.max_width or len(title) > width:
            return None  # rich would wrap or shrink
        lines = []
        if title:
            lines.append(_justified(title, width, self.title_justify))
        lines.append(_rule("┏", "━", "┳", "┓", widths))
        lines.append(_row("┃", headers, widths, justify))
        lines.append(_rule("┡", "━", "╇", "┩", widths))
        last = len(rows) - 1
        for index, row in enumerate(rows):
            lines.append(_row("│", row, widths, justify))
            if index in self.sections and index != last:
                lines.append(_rule("├", "─", "┼", "┤", widths))
        lines.append(_rule("└", "─", "┴", "┘", widths))
        lines.append("")
        return "\n".join(lines)


def _justified(text: str, width: int, justify: str) -> str:
    """``text`` (no wider than ``width``) aligned in ``width`` columns as rich's Text aligns it:
    left keeps its trailing spaces, center and right drop them first."""
    if justify == "left":
        return text.ljust(width)
    text = text.rstrip()
    if justify == "right":
        return text.rjust(width)
    before = (width - len(text)) // 2
    return " " * before + text + " " * (width - len(text) - before)


def _row(edge: str, cells, widths: list[int], justify: list[str]) -> str:
    aligned = (_justified(cell, width, how) for cell, width, how in zip(cells, widths, justify, strict=True))
    inner = f" {edge} ".join(aligned)
    return f"{edge} {inner} {edge}"


def _rule(left: str, line: str, cross: str, right: str, widths: list[int]) -> str:
    return left + cross.join(line * (width + 2) for width in widths) + right


HUMAN_UNITS = ("B", "KB", "MB", "GB")


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in HUMAN_UNITS:
        if value < 1024 or unit == HUMAN_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


class progress_bar:
    """A batch's progress: a rich bar on stderr, only on a terminal and without --quiet (a
    :data:`convcli.executors.Progress`, with ``quiet`` given)."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.enabled = not quiet and total > 1 and sys.stderr.isatty()
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.__enter__()
        task = self._bar.add_task("files", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
