"""What every command writes for people and scripts, in one style.

Messages go to stderr as one line with the one prefix (``convcli: error:``, ``convcli: warning:``,
``convcli: note:``); the library's parameter names become the flags that set them
(:func:`flag`); ``--json`` prints one document with the one vocabulary (:func:`print_json`);
tables right-align their numbers (:func:`table`). Shapes are written by
:func:`convcli.text.shape_text`. Nothing here imports Numba, NumPy or rich until it draws.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Collection

import click

PROGRAM = "convcli"

# the library's parameter names whose flag is not "--" + the name with dashes
FLAGS = {
    "workers": "-j",
    "input_shape": "--input",
    "spec": "--model",
    "unknown": "--solve",
    "target": "--out",
}


def flag(parameter: str) -> str:
    """The command-line flag that sets a library parameter: ``lr`` -> ``--lr``, ``workers`` -> ``-j``."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


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


def table(*headers: str, numeric: Collection[str] = (), **options):
    """A rich Table whose ``numeric`` columns are right-aligned (numbers line up by their units)."""
    from rich.table import Table

    drawn = Table(**options)
    for header in headers:
        drawn.add_column(header, justify="right" if header in numeric else "left")
    return drawn


HUMAN_UNITS = ("B", "KB", "MB", "GB")


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in HUMAN_UNITS:
        if value < 1024 or unit == HUMAN_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
