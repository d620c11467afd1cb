"""Exit statuses, the exceptions that map onto them, and the one line a user reads for an error.

Library code raises ``ValueError`` (or the subclasses here) with a message that names the
offending value; the CLI turns them into one line on stderr and the exit status below. A message
that names a parameter of the library marks it as `name` (:class:`NamesParameters`): a Python
caller reads the parameter's name, the command line the flag that sets it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection


class ExitStatus(enum.IntEnum):
    OK = 0
    PROCESSING_ERROR = 1  # some inputs failed; the others were still written
    USAGE_ERROR = 2  # bad option, bad kernel, bad spec
    INTERRUPTED = 130  # Ctrl-C


class NamesParameters:
    """A message that marks each parameter it names as `name`: ``str()`` shows the parameter's
    name (what a Python caller typed), ``render(flag)`` the flag that sets it on the command line."""

    def __str__(self) -> str:
        return self.render()

    def render(self, name: Callable[[str], str] = str) -> str:
        return named(str(self.args[0]) if self.args else "", name)


class ConvcliError(NamesParameters, Exception):
    """An error with a message fit to show a user as is (parameters marked `name`)."""

    exit_status = ExitStatus.PROCESSING_ERROR


class UsageError(ConvcliError, ValueError):
    """The user asked for something that cannot be done (bad option, kernel, spec...)."""

    exit_status = ExitStatus.USAGE_ERROR


class ParameterWarning(NamesParameters, UserWarning):
    """A warning about the values of named parameters."""


_MARKED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def named(text: str, name: Callable[[str], str] = str) -> str:
    """``text`` with every `parameter` marker replaced by ``name(parameter)``."""
    return _MARKED.sub(lambda match: name(match[1]), text)


# the library's parameter names whose command-line flag is not "--" + the name with dashes
FLAGS = {
    "workers": "-j",
    "input_shape": "--input",
    "spec": "--model",
    "unknown": "--solve",
    "target": "--out",
}


def flag(parameter: str) -> str:
    """The command-line flag that sets a library parameter: ``lr`` -> ``--lr``, ``workers`` -> ``-j``.

    Here, below the CLI, because a batch's tasks carry it to the workers (they name parameters in
    their error lines): a worker that unpickles it must not import the CLI."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def at_least(parameter: str, value: int, low: int) -> None:
    """Refuse ``value`` below ``low``, naming ``parameter``."""
    if value < low:
        raise UsageError(f"`{parameter}` must be >= {low}, got {value}")


def one_of(parameter: str, value: str, choices: Collection[str]) -> None:
    """Refuse a ``value`` that is none of ``choices``, naming ``parameter``."""
    if value not in choices:
        raise UsageError(f"unknown `{parameter}` {value!r}; choose one of {', '.join(choices)}")


class InputError(ConvcliError):
    """An input file is missing, unreadable, corrupt or of the wrong kind."""

    exit_status = ExitStatus.PROCESSING_ERROR


class OutputExistsError(ConvcliError):
    """The output exists and --force was not given."""

    exit_status = ExitStatus.PROCESSING_ERROR
    # its message after the path, by which a batch's report gathers many of them into one line
    MESSAGE = "output exists (use `force` to replace it)"
    MARK = ": output exists ("


class ExecutorError(ConvcliError):
    """The batch cannot run where it was sent (scheduler unreachable, workers that cannot see the files)."""

    exit_status = ExitStatus.PROCESSING_ERROR


def exit_status_for(error: BaseException) -> ExitStatus:
    """The exit status an exception stands for: bad values are usage errors, the rest processing."""
    if isinstance(error, ConvcliError):
        return error.exit_status
    if isinstance(error, (ValueError, TypeError)):
        return ExitStatus.USAGE_ERROR
    return ExitStatus.PROCESSING_ERROR


def error_line(error: BaseException, name: Callable[[str], str] = str) -> str:
    """One line for a user: the message folded onto a single line (``name`` shows a parameter)."""
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.filename}: no such file"
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = error.render(name) if isinstance(error, NamesParameters) else str(error)
    return " ".join(text.split()) or type(error).__name__


def closest(name: str, choices, n: int = 3) -> list[str]:
    """The choices that look most like ``name`` (for 'did you mean ...?' hints)."""
    import difflib

    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, choices) -> str:
    """' (did you mean 'x'?)' or '' — appended to unknown-name messages."""
    hits = closest(name, choices)
    if not hits:
        return ""
    return " (did you mean " + " or ".join(repr(h) for h in hits) + "?)"
