"""The ``convcli`` command: a lazy Click group.

Subcommand modules are imported only when used (or listed by ``--help``), and they import
Numba/SciPy only inside their functions, so ``--help``, ``shapes`` and ``params`` stay fast.
Parsing lives in the subcommand modules; the work is done by the library; errors become one
line on stderr and an :class:`~convcli.errors.ExitStatus`.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import sys
import threading
import warnings

import click

from convcli import __version__
from convcli.cli import output
from convcli.errors import ConvcliError, ExitStatus, ParameterWarning, error_line, exit_status_for, flag

# command name -> "module:attribute". Add a line here only when the command is built.
COMMANDS: dict[str, str] = {
    "convolve": "convcli.cli.convolve:convolve",
    "evaluate": "convcli.cli.train:evaluate",
    "kernels": "convcli.cli.kernels:kernels",
    "matrix": "convcli.cli.matrix:matrix",
    "params": "convcli.cli.params:params",
    "pool": "convcli.cli.pool:pool_command",
    "predict": "convcli.cli.train:predict",
    "server": "convcli.cli.server:server",
    "shapes": "convcli.cli.shapes:shapes",
    "train": "convcli.cli.train:train",
}


# Click 8.2+ shows a group's help for a bare 'convcli' (exit 2) by raising this usage error
NO_ARGUMENTS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class LazyGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """The one exit path of every command (httpie's style): each outcome becomes an
        :class:`ExitStatus` here, returned (``standalone_mode=False``) or exited with."""
        status = self._status(args, prog_name, complete_var, **extra)
        if standalone_mode:
            sys.exit(status)
        return status

    def _status(self, args, prog_name, complete_var, **extra) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:  # Click's own: one line in the house style, exit 2
            if isinstance(error, NO_ARGUMENTS):  # 'convcli' alone: its help, as Click shows it
                error.show()
            else:
                output.error(usage_line(error))
            return ExitStatus.USAGE_ERROR
        except click.ClickException as error:
            output.error(" ".join(error.format_message().split()))
            return error.exit_code
        except click.Abort:  # Ctrl-C while Click itself was parsing or prompting
            output.interrupted()
            return ExitStatus.INTERRUPTED
        return ExitStatus.OK if result is None else int(result)

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
                raise click.UsageError(f"no such command {args[0]!r}{hint}", ctx) from error
            raise

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug belongs to the group, but people type it after the subcommand too
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            args = ["--debug", *(a for i, a in enumerate(args) if a != "--debug" or i >= end)]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> int | None:
        """The command's own status, or the status its exception stands for (one line on stderr)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            if debug_enabled(ctx):
                raise
            output.interrupted()
            return ExitStatus.INTERRUPTED
        except Exception as error:  # noqa: BLE001 - this is the one place errors become exit codes
            if debug_enabled(ctx):
                raise
            status = exit_status_for(error)
            output.error(error_line(error, flag))
            if status == ExitStatus.PROCESSING_ERROR and not isinstance(error, (ConvcliError, OSError)):
                output.note("run with --debug for the traceback")
            return status


def usage_line(error: click.UsageError) -> str:
    """Click's three-line usage error as one line: the problem, then where the help is."""
    text = " ".join(error.format_message().split()).rstrip(".")
    text = re.sub(r"\.\s+\(?Did you mean (?:one of: )?(.+?)\?\)?$", r" (did you mean \1?)", text)
    text = text[:1].lower() + text[1:]
    if error.ctx is not None:
        text += f" (see '{error.ctx.command_path} --help')"
    return text


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("CONVCLI_DEBUG"):
        return True
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and isinstance(root.obj, dict) and root.obj.get("debug"))


@click.group("convcli", cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    """Library warnings (resampled IRs, dropped alpha...) as one plain line on stderr; a decoder's
    warnings about the image being read wait for the read's end, to name the file or be dropped."""
    if "PIL" in str(filename):
        from convcli.io.image import held_decoder_warning

        if held_decoder_warning(message, filename):
            return
    output.warn(message.render(flag) if isinstance(message, ParameterWarning) else str(message))


def run(argv: list[str]) -> int:
    """Run one command line in this process and return its exit status (never exits).

    SIGTERM and SIGHUP interrupt like Ctrl-C: the running write is abandoned (no partial file)
    and the status is 130, whether the call runs in-process or in a warm worker's child.
    """
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, name), _interrupt)
    try:
        return cli.main(args=list(argv), prog_name="convcli", standalone_mode=False)
    except SystemExit as exit:  # Click's own exits: a broken pipe, shell completion
        return _exit_status(exit.code)
    except KeyboardInterrupt:  # between Click's handlers, at the very start or end
        output.interrupted()
        return ExitStatus.INTERRUPTED


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _exit_status(code) -> int:
    if code is None:
        return ExitStatus.OK
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)  # sys.exit("text"), as the interpreter would print it
    return ExitStatus.PROCESSING_ERROR
