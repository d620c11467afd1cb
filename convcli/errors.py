"""Exit statuses and the exceptions that map onto them.

Library code raises ``ValueError`` (or the subclasses here) with a message that names the
offending value; the CLI turns them into one line on stderr and the exit status below.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    PROCESSING_ERROR = 1  # some inputs failed; the others were still written
    USAGE_ERROR = 2  # bad option, bad kernel, bad spec
    INTERRUPTED = 130  # Ctrl-C


class ConvcliError(Exception):
    """An error with a message fit to show a user as is."""

    exit_status = ExitStatus.PROCESSING_ERROR


class UsageError(ConvcliError, ValueError):
    """The user asked for something that cannot be done (bad option, kernel, spec...)."""

    exit_status = ExitStatus.USAGE_ERROR


class InputError(ConvcliError):
    """An input file is missing, unreadable, corrupt or of the wrong kind."""

    exit_status = ExitStatus.PROCESSING_ERROR


class OutputExistsError(ConvcliError):
    """The output exists and --force was not given."""

    exit_status = ExitStatus.PROCESSING_ERROR


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
