"""What every file-processing command shares: inputs, outputs, batch options, reports.

A command supplies one callable per file (a job of :mod:`convcli.jobs`: ``process(job) -> dict``);
:func:`convcli.executors.run_batch` runs it over all jobs on the chosen executor (threads,
processes, Dask), and :func:`finish` prints the human report or one ``--json`` document and
returns the exit status. Nothing here imports Numba or SciPy.
"""

from __future__ import annotations

import functools
import glob
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import click

from convcli.cli.output import error, print_json, progress_bar, warn
from convcli.errors import ExitStatus, InputError, OutputExistsError, UsageError, flag
from convcli.executors import EXECUTORS, BatchOptions, Job, Record, run_batch
from convcli.io.files import STDIO, check_can_write, check_regular, is_folder, kind_of
from convcli.jobs.files import output_names, resolved
from convcli.text import ARROW, shape_text


def expand_inputs(
    patterns: Iterable[str], *, recursive: bool = False, extensions: Iterable[str] | None = None
) -> list[str]:
    """Paths, globs and folders (their files with a known extension, or one of ``extensions``, sorted;
    with ``recursive`` those of every sub-folder too) -> input list.

    A path that exists is taken literally before any pattern matching: 'a[1].png' is that file,
    not the pattern matching 'a1.png'."""
    wanted = None if extensions is None else set(extensions)
    inputs: list[str] = []
    for pattern in patterns:
        if pattern == STDIO:
            inputs.append(STDIO)
        elif Path(pattern).is_dir():
            found = Path(pattern).rglob("*") if recursive else Path(pattern).iterdir()
            files = sorted(
                str(p)
                for p in found
                if p.is_file()
                and not p.name.startswith(".")
                and (_known(p) if wanted is None else p.suffix.lower() in wanted)
            )
            if not files:
                hint = "" if recursive else " (--recursive looks into its sub-folders)"
                raise InputError(f"{pattern}: no image, audio or array files in this folder{hint}")
            inputs.extend(files)
        elif glob.has_magic(pattern) and not Path(pattern).exists():  # 'a[1].png' that exists is a name
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"{pattern}: no file matches this pattern")
            inputs.extend(matches)
        else:
            inputs.append(pattern)  # a missing file is reported by its job
    if not inputs:
        raise UsageError("no input files (give paths, globs, folders or '-')")
    if inputs.count(STDIO) > 1:
        raise UsageError("'-' (stdin) can be given only once")
    return inputs


def _known(path: Path) -> bool:
    try:
        kind_of(path.suffix)
    except UsageError:
        return False
    return True


def input_extension(name: str) -> str:
    return "" if name == STDIO else Path(name).suffix.lower()


def plan_outputs(inputs: list[str], output: str | None, *, tag: str, force: bool) -> list[Job]:
    """Where each result goes.

    - ``-o FILE``: the single input's result (its extension chooses the format);
    - ``-o DIR`` (an existing folder, a name ending in '/', or several inputs): DIR/<name>;
      a name ending in '/' is created if missing (once every other check has passed);
    - ``-o -``: stdout, in the input's format;
    - no ``-o``: ``<stem>.<tag><ext>`` next to the input (stdout for stdin).
    Unknown extensions and existing outputs (without --force) are refused before any work.
    """
    stdin_data, stdin_extension = _read_stdin() if STDIO in inputs else (None, "")
    try:
        return _plan(inputs, output, tag, force, stdin_data, stdin_extension)
    except BaseException:
        remove_spooled_stdin([Job(STDIO, None, "", stdin_data)])
        raise


def _plan(inputs: list[str], output: str | None, tag: str, force: bool, stdin_data: Path | None,
          stdin_extension: str) -> list[Job]:
    many = len(inputs) > 1
    to_dir = (
        output is not None
        and output != STDIO
        and (many or is_folder(Path(output)) or output.endswith(("/", os.sep)))
    )
    if output == STDIO and many:
        raise UsageError("-o - (stdout) takes a single input")
    relative = output_names(inputs)
    jobs = []
    for name in inputs:
        ext = stdin_extension if name == STDIO else input_extension(name)
        if output == STDIO or (output is None and name == STDIO):
            target, out_ext = None, ext
        elif to_dir:
            folder = Path(output)
            if not is_folder(folder) and not output.endswith(("/", os.sep)):
                raise UsageError(f"-o {output}: output folder does not exist (end it with / to create it)")
            target = folder / ("stdin" + ext if name == STDIO else relative[name])
            out_ext = ext
        elif output is not None:
            target = Path(output)
            out_ext = target.suffix.lower()
            check_regular(target)
            if not out_ext:
                raise UsageError(f"-o {output}: no file extension to choose the format by "
                                 f"(give one such as .png, .wav or .npy)")
        else:
            source = Path(name)
            target = source.with_name(f"{source.stem}.{tag}{source.suffix}")
            out_ext = ext
        if out_ext:
            kind_of(out_ext)  # UsageError for an unknown output extension
        if target is None:
            if sys.stdout is None:  # the caller closed it (in-process and warm alike)
                raise UsageError("stdout: closed (the caller gave no standard output to write '-' to)")
            refuse_binary_to_terminal(out_ext)
        if target is not None and name != STDIO and resolved(target, UsageError) == resolved(Path(name)):
            raise UsageError(f"{name}: output would overwrite the input")
        jobs.append(Job(name, target, out_ext, stdin_data if name == STDIO else None))
    targets = [job.output for job in jobs if job.output is not None]
    if len(set(targets)) != len(targets):
        raise UsageError("two inputs would write the same output file; use distinct names")
    if to_dir:
        Path(output).mkdir(parents=True, exist_ok=True)
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)  # sub-folders of a recursive input
    for target in targets:
        if many:
            continue  # reported per file below, so the other files are still written
        check_can_write(target, force)
    return jobs


def refuse_binary_to_terminal(extension: str) -> None:
    """PNG or WAV bytes on a terminal are noise (and can upset it): ask for a redirect instead."""
    from convcli.io.files import TEXT_EXTENSIONS, stdout_is_terminal

    if extension not in TEXT_EXTENSIONS and stdout_is_terminal():
        shown = extension.lstrip(".").upper() or "binary"
        raise UsageError(
            f"-o -: refusing to write {shown} data to the terminal; redirect it (> out{extension}) or pipe "
            "it to a program, or give -o FILE"
        )


def _read_stdin() -> tuple[Path, str]:
    from convcli.io.files import spool_stdin

    return spool_stdin()


def remove_spooled_stdin(jobs: list[Job]) -> None:
    """Remove the temporary copy of stdin (:func:`convcli.io.files.spool_stdin`) once the jobs ran."""
    for job in jobs:
        if isinstance(job.stdin, Path):
            job.stdin.unlink(missing_ok=True)


def run_files(jobs: list[Job], process: Callable[[Job], Record], batch: BatchOptions, *, force: bool = False,
              quiet: bool = False):
    """:func:`convcli.executors.run_batch` with the library's parameter names shown as flags and
    the progress bar (on a terminal, without --quiet)."""
    try:
        bar = functools.partial(progress_bar, quiet=quiet)
        return run_batch(jobs, process, batch, force=force, progress=bar, name=flag)
    finally:
        remove_spooled_stdin(jobs)


def finish(
    records: list[Record],
    *,
    command: str,
    as_json: bool,
    quiet: bool,
    describe: Callable[[Record], str] | None = None,
    extra: dict | None = None,
) -> ExitStatus:
    """Print per-file errors and warnings (stderr), the report (a line per file, or one JSON
    document); return the exit status.

    A single failed input exits with its own status (2 for a usage error); with several inputs
    any failure exits 1 while the other results are still written.
    """
    failed = [r for r in records if r.get("error")]
    existing = [r for r in failed if OutputExistsError.MARK in str(r["error"])]
    for record in failed:
        if len(existing) < 2 or record not in existing:
            error(record["error"])
    if len(existing) >= 2:
        error(existing_outputs_line([r["output"] for r in existing]))
    for record in records:
        if record.get("clipped") and not quiet:
            warn(f"{record['input']}: {record['clipped']} values clipped to the output range (see --range)")
    to_stdout = any(r.get("output") == STDIO for r in records)
    if as_json:
        counts = {"ok": len(records) - len(failed), "failed": len(failed)}
        print_json(command, {**(extra or {}), "files": records, **counts}, err=to_stdout)
    elif not quiet and describe is not None:
        for record in records:
            if not record.get("error"):
                click.echo(describe(record), err=to_stdout)
    return batch_status(records)


# how many refused outputs the summary line names
NAMED_OUTPUTS = 3


def existing_outputs_line(outputs: list[str]) -> str:
    """Many outputs refused because they exist: one line with the count and the first few names."""
    named = ", ".join(str(o) for o in outputs[:NAMED_OUTPUTS])
    more = f" and {len(outputs) - NAMED_OUTPUTS} more" if len(outputs) > NAMED_OUTPUTS else ""
    return (f"{len(outputs)} files not written, each output exists (use --force to replace them): "
            f"{named}{more}")


def batch_status(records: list[Record]) -> ExitStatus:
    """OK; a single input's own status (2 for a usage error); 1 when any of several inputs failed."""
    failed = [r for r in records if r.get("error")]
    if not failed:
        return ExitStatus.OK
    if len(records) == 1:
        return ExitStatus(records[0].get("status", ExitStatus.PROCESSING_ERROR))
    return ExitStatus.PROCESSING_ERROR


def file_line(record: Record, work: str) -> str:
    """A processed file, as every file command reports it:
    ``in.png -> out.png  3x256x256 -> 3x128x128  <work>  0.05 s``."""
    rate = f" at {record['sample_rate']} Hz" if record.get("sample_rate") else ""
    picture = " (a grid picture of the channels)" if record.get("picture") else ""
    return (f"{record['input']} {ARROW} {record['output']}  {shape_text(record['input_shape'])} {ARROW} "
            f"{shape_text(record['output_shape'])}{rate}{picture}  {work}  {record['seconds']:.2f} s")


def given_options(ctx: click.Context) -> set[str]:
    """The parameters set on the command line (or the environment), not left at their default."""
    from click.core import ParameterSource

    return {name for name in ctx.params
            if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}


def output_options(func: Callable) -> Callable:
    """The options every file command shares: -o, --force, --range, --json, --quiet, and the batch's."""
    options = [
        click.option(
            "-o",
            "--output",
            metavar="FILE|DIR|-",
            help="Output file (one input), folder (many inputs) or '-' for stdout. "
            "Default: <name>.<command><ext> next to each input.",
        ),
        click.option("--force", is_flag=True, help="Replace existing output files."),
        click.option(
            "--range",
            "range_policy",
            type=click.Choice(["clip", "normalize", "abs", "offset"]),
            default="clip",
            show_default=True,
            help="Integer formats: clip (and count), normalize to full range, abs, offset "
            "(add half-range). Float outputs are never clipped.",
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="Print one JSON document with a record per file."
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-file lines."),
    ]
    for option in reversed(options):
        func = option(func)
    return batch_options(func)


def batch_options(func: Callable) -> Callable:
    """-j, --executor, --scheduler-address, --scheduler-file, --retries, handed to the command as
    one ``batch`` argument (a :class:`convcli.executors.BatchOptions`)."""

    @functools.wraps(func)
    def command(*args, jobs, executor, scheduler_address, scheduler_file, retries, **kwargs):
        batch = BatchOptions.choose(jobs, executor, scheduler_address, scheduler_file, retries)
        return func(*args, batch=batch, **kwargs)

    options = [
        click.option("-j", "--jobs", "jobs", type=int, default=1, show_default=True,
                     help="Files processed in parallel (worker threads or processes; with --executor dask "
                     "and no scheduler, the LocalCluster's worker processes)."),
        click.option("--executor", type=click.Choice(EXECUTORS), envvar="CONVCLI_EXECUTOR",
                     help="Where the files are processed: thread (default), process, or dask (optional "
                     "extra convcli[dask]) [env: CONVCLI_EXECUTOR]."),
        click.option("--scheduler-address", metavar="ADDR",
                     help="Dask scheduler to run on (implies --executor dask). With --executor dask and "
                     "neither this nor --scheduler-file: Dask's config scheduler-address "
                     "(DASK_SCHEDULER_ADDRESS), else a LocalCluster of -j processes x 1 thread."),
        click.option("--scheduler-file", metavar="FILE",
                     help="Dask scheduler file (dask scheduler --scheduler-file); implies --executor dask."),
        click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Retry a file after a transient error (timeout, lost connection, stale NFS "
                     "handle); a corrupt input is not retried."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def non_finite_text(count: int) -> str:
    """'1 input value is' / '3 input values are' (NaN or inf), for the warnings."""
    return f"{count} input value is" if count == 1 else f"{count} input values are"

