"""Running a ``convcli`` command line in the test process, as every CLI test does."""

from __future__ import annotations

from click.testing import CliRunner, Result

from convcli.cli import cli


def run(*args, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
    """``convcli ARGS...`` (paths and numbers are turned into text) through Click's runner:
    ``exit_code``, ``stdout``, ``stderr`` and ``output`` (the two, interleaved)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env)
