"""The ``convcli`` command: a lazy Click group.

Subcommand modules are imported only when used (or listed by ``--help``), and they import
Numba/SciPy only inside their functions, so ``--help``, ``shapes`` and ``params`` stay fast.
Parsing lives in the subcommand modules; the work is done by the library; errors become one
line on stderr and an :class:`~convcli.errors.ExitStatus`.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import warnings

import click

from convcli import __version__
from convcli.errors import ConvcliError, ExitStatus, exit_status_for

# command name -> "module:attribute". Add a line here only when the command is built.
COMMANDS: dict[str, str] = {
    "convolve": "convcli.cli.convolve:convolve",
    "evaluate": "convcli.cli.train:evaluate",
    "kernels": "convcli.cli.kernels:kernels",
    "params": "convcli.cli.params:params",
    "pool": "convcli.cli.pool:pool_command",
    "predict": "convcli.cli.train:predict",
    "server": "convcli.cli.server:server",
    "shapes": "convcli.cli.shapes:shapes",
    "train": "convcli.cli.train:train",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as error:
            from convcli.errors import did_you_mean

            if args and args[0] not in COMMANDS and not args[0].startswith("-"):
                hint = did_you_mean(args[0], COMMANDS)
                raise click.UsageError(f"No such command {args[0]!r}{hint}.", ctx) from error
            raise

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug belongs to the group, but people type it after the subcommand too
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            args = ["--debug", *(a for i, a in enumerate(args) if a != "--debug" or i >= end)]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            if debug_enabled(ctx):
                raise
            click.echo("convcli: interrupted", err=True)
            ctx.exit(ExitStatus.INTERRUPTED)
        except Exception as error:  # noqa: BLE001 - this is the one place errors become exit codes
            if debug_enabled(ctx):
                raise
            status = exit_status_for(error)
            click.echo(f"convcli: error: {error_line(error)}", err=True)
            if status == ExitStatus.PROCESSING_ERROR and not isinstance(error, (ConvcliError, OSError)):
                click.echo("convcli: (run with --debug for the traceback)", err=True)
            ctx.exit(status)


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("CONVCLI_DEBUG"):
        return True
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and isinstance(root.obj, dict) and root.obj.get("debug"))


def error_line(error: BaseException) -> str:
    """One line for a user: the message, folded onto a single line."""
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.filename}: no such file"
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = " ".join(str(error).split()) or type(error).__name__
    return text


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="convcli")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Convolutions for signals and images, and small CNNs on the CPU.

    \b
    Examples:
      convcli convolve samples/photo.png -k sharpen -o sharp.png
      convcli shapes "Input(1,28,28); Conv2d(1,8,5); MaxPool2d(2); Flatten(); LazyLinear(10)"

    Run 'convcli COMMAND --help' for the options of each command.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    warnings.showwarning = show_warning


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings (resampled IRs, dropped alpha...) as one plain line on stderr."""
    click.echo(f"convcli: warning: {message}", err=True)


def run(argv: list[str]) -> int:
    """Run one command line in this process and return its exit status (never exits).

    SIGTERM and SIGHUP interrupt like Ctrl-C: the running write is abandoned (no partial file)
    and the status is 130, whether the call runs in-process or in a warm worker's child.
    """
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, name), _interrupt)
    try:
        cli.main(args=list(argv), prog_name="convcli", standalone_mode=True)
    except SystemExit as exit:
        return _exit_status(exit.code)
    except KeyboardInterrupt:
        click.echo("convcli: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    return ExitStatus.OK


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _exit_status(code) -> int:
    if code is None:
        return ExitStatus.OK
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)  # sys.exit("text"), as the interpreter would print it
    return ExitStatus.PROCESSING_ERROR
