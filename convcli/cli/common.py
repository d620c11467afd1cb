"""What every file-processing command shares: inputs, outputs, workers, progress, reports.

A command supplies one callable per file (``process(job) -> dict``); :func:`run_jobs` runs it
over all jobs with ``-j N`` workers, shows a progress bar on a terminal, keeps going when one
file fails, and :func:`finish` prints the human report or one ``--json`` document and returns
the exit status. Nothing here imports Numba or SciPy.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import click

from convcli.errors import ExitStatus, InputError, UsageError, exit_status_for
from convcli.io.files import STDIO, check_can_write, kind_of
from convcli.process import collect_cycles

Record = dict


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes (``output`` None means stdout)."""

    input: str  # a path, or "-" for stdin
    output: Path | None
    extension: str  # output format
    stdin: bytes | None = None  # the data piped in, when input is "-"


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
    many = len(inputs) > 1
    stdin_data, stdin_extension = _read_stdin() if STDIO in inputs else (None, "")
    to_dir = (
        output is not None
        and output != STDIO
        and (many or Path(output).is_dir() or output.endswith(("/", os.sep)))
    )
    if output == STDIO and many:
        raise UsageError("-o - (stdout) takes a single input")
    relative = _output_names(inputs)
    jobs = []
    for name in inputs:
        ext = stdin_extension if name == STDIO else input_extension(name)
        if output == STDIO or (output is None and name == STDIO):
            target, out_ext = None, ext
        elif to_dir:
            folder = Path(output)
            if not folder.is_dir() and not output.endswith(("/", os.sep)):
                raise UsageError(f"-o {output}: output folder does not exist (end it with / to create it)")
            target = folder / ("stdin" + ext if name == STDIO else relative[name])
            out_ext = ext
        elif output is not None:
            target = Path(output)
            out_ext = target.suffix.lower()
        else:
            source = Path(name)
            target = source.with_name(f"{source.stem}.{tag}{source.suffix}")
            out_ext = ext
        if out_ext:
            kind_of(out_ext)  # UsageError for an unknown output extension
        if target is None:
            refuse_binary_to_terminal(out_ext)
        if target is not None and name != STDIO and target.resolve() == Path(name).resolve():
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


def _output_names(inputs: list[str]) -> dict[str, Path]:
    """Each input's name inside an output folder: its file name, or, when two inputs share a file name
    (folders read recursively), its path below the inputs' common folder."""
    files = [name for name in inputs if name != STDIO]
    if len({Path(name).name for name in files}) == len(files):
        return {name: Path(Path(name).name) for name in files}
    common = Path(os.path.commonpath([str(Path(name).resolve().parent) for name in files]))
    return {name: Path(name).resolve().relative_to(common) for name in files}


def refuse_binary_to_terminal(extension: str) -> None:
    """PNG or WAV bytes on a terminal are noise (and can upset it): ask for a redirect instead."""
    from convcli.io.files import TEXT_EXTENSIONS, stdout_is_terminal

    if extension not in TEXT_EXTENSIONS and stdout_is_terminal():
        shown = extension.lstrip(".").upper() or "binary"
        raise UsageError(
            f"-o -: refusing to write {shown} data to the terminal; redirect it (> out{extension}) or pipe "
            "it to a program, or give -o FILE"
        )


def _read_stdin() -> tuple[bytes, str]:
    from convcli.io.files import read_stdin

    buffer, extension = read_stdin()
    return buffer.getvalue(), extension


def load_input(job: Job):
    """Decode the job's input file (or the stdin data) into a :class:`convcli.io.Media`."""
    import io

    from convcli.io import read_media
    from convcli.io.files import check_input_file, sniff_extension

    if job.input == STDIO:
        return read_media(io.BytesIO(job.stdin or b""), sniff_extension(job.stdin or b""), name="stdin")
    path = Path(job.input)
    check_input_file(path)
    return read_media(path, path.suffix, name=job.input)


def save_output(job: Job, media, *, force: bool, policy: str) -> int:
    """Encode ``media`` to the job's output atomically (or to stdout); return the clipped count."""
    from convcli.io import write_media
    from convcli.io.files import atomic_output, stdout_output

    target = stdout_output(job.extension) if job.output is None else atomic_output(job.output, force=force)
    with target as temp:
        return write_media(temp, media, extension=job.extension, policy=policy)


def run_jobs(
    jobs: list[Job],
    process: Callable[[Job], Record],
    *,
    workers: int = 1,
    quiet: bool = False,
    executor: str | None = None,
) -> list[Record]:
    """Run ``process`` on every job; a failure becomes a record with ``error`` set.

    ``process`` must be picklable (a module-level function or functools.partial of one) when
    workers run in processes. Records come back in input order.
    """
    if workers < 1:
        raise UsageError(f"-j must be >= 1, got {workers}")
    workers = min(workers, len(jobs))
    records: dict[int, Record] = {}
    if len(jobs) > 1:
        collect_cycles()
    with _progress(len(jobs), quiet) as advance:
        if workers == 1:
            for index, job in enumerate(jobs):
                records[index] = _timed(process, job)
                advance()
        else:
            with _executor(workers, executor) as pool:
                futures = {pool.submit(_timed, process, job): index for index, job in enumerate(jobs)}
                for future in as_completed(futures):
                    records[futures[future]] = future.result()
                    advance()
    return [records[i] for i in range(len(jobs))]


def _executor(workers: int, kind: str | None) -> Executor:
    """Threads by default: the engine kernels and codecs release the GIL, and 40 PNGs of 512x512
    with -j 2 took 7.6 s with threads vs 13.7 s with (forkserver) processes; CONVCLI_EXECUTOR=process."""
    kind = kind or os.environ.get("CONVCLI_EXECUTOR", "thread")
    if kind == "thread":
        return ThreadPoolExecutor(workers, initializer=_share_cores, initargs=(workers,))
    import multiprocessing

    # not fork: the engine's Numba threading layer (OpenMP) must not be forked
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _share_cores(workers: int) -> None:
    """Give each worker thread its share of the cores for the parallel kernels (Numba's thread count
    is per thread), so -j N does not run N × cores threads."""
    import numba

    numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS // workers))


def _timed(process: Callable[[Job], Record], job: Job) -> Record:
    start = time.perf_counter()
    record: Record = {"input": job.input, "output": str(job.output) if job.output else STDIO}
    try:
        record.update(process(job))
        record["error"] = None
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001 - one file's failure must not stop the others
        record["error"] = _error_line(job.input, error)
        record["status"] = int(exit_status_for(error))
    record["seconds"] = round(time.perf_counter() - start, 4)
    return record


def _error_line(name: str, error: BaseException) -> str:
    from convcli.cli import error_line

    text = error_line(error)
    label = "stdin" if name == STDIO else name
    return text if text.startswith(label) else f"{label}: {text}"


class _progress:
    """A rich progress bar on stderr, only on a terminal and without --quiet."""

    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.enabled = not quiet and total > 1 and sys.stderr.isatty()
        self._bar = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
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
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def finish(
    records: list[Record],
    *,
    command: str,
    as_json: bool,
    quiet: bool,
    describe: Callable[[Record], str],
    extra: dict | None = None,
) -> int:
    """Print per-file errors (stderr), the report (human or one JSON document); return exit status.

    A single failed input exits with its own status (2 for a usage error); with several inputs
    any failure exits 1 while the other results are still written.
    """
    failed = [r for r in records if r.get("error")]
    for record in failed:
        click.echo(f"convcli: error: {record['error']}", err=True)
    to_stdout = any(r.get("output") == STDIO for r in records)
    if as_json:
        document = {
            "command": command,
            **(extra or {}),
            "files": records,
            "ok": len(records) - len(failed),
            "failed": len(failed),
        }
        click.echo(json_text(document, indent=2), err=to_stdout)
    elif not quiet:
        for record in records:
            if not record.get("error"):
                click.echo(describe(record), err=to_stdout)
    if not failed:
        return ExitStatus.OK
    if len(records) == 1:
        return records[0].get("status", ExitStatus.PROCESSING_ERROR)
    return ExitStatus.PROCESSING_ERROR


def json_text(document, **options) -> str:
    """``json.dumps``, with NaN and ±inf (a diverged loss, an undefined precision) written as null:
    JSON has no such numbers, and Python's ``NaN`` token makes the document invalid for every
    other parser."""
    return json.dumps(_finite(document), allow_nan=False, **options)


def _finite(value):
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def output_options(func: Callable) -> Callable:
    """The options every file command shares: -o, -j, --force, --range, --json, --quiet."""
    options = [
        click.option(
            "-o",
            "--output",
            metavar="FILE|DIR|-",
            help="Output file (one input), folder (many inputs) or '-' for stdout. "
            "Default: <name>.<command><ext> next to each input.",
        ),
        click.option(
            "-j",
            "--jobs",
            "jobs",
            type=int,
            default=1,
            show_default=True,
            help="Files processed in parallel (worker threads).",
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
    return func


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


def non_finite_text(count: int) -> str:
    """'1 input value is' / '3 input values are' (NaN or inf), for the warnings."""
    return f"{count} input value is" if count == 1 else f"{count} input values are"


def warn(message: str) -> None:
    click.echo(f"convcli: warning: {message}", err=True)
