"""Batches: one task per file on a thread or process pool, one per group of files on a Dask cluster.

The client side (this module) refuses existing outputs once, before any task, gives every batch a
run id (its temporary files carry it and are swept at the end), tells the caller's progress display
(the CLI draws a bar: executors import no display library, so workers never load one), and turns
Ctrl-C into: queued tasks cancelled, running ones stopped at their next safe point, finished files
kept, ``KeyboardInterrupt`` re-raised for exit 130. The executors (:mod:`.local`,
:mod:`.distributed`) only run tasks and hand back records. Nothing here imports Numba or Dask.
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from convcli.errors import (
    ConvcliError,
    ExitStatus,
    UsageError,
    at_least,
    error_line,
    exit_status_for,
    one_of,
)

Record = dict
STDIO = "-"
EXECUTORS = ("thread", "process", "dask")


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes (``output`` None means stdout, or no file at all
    for commands that only report, such as ``predict``)."""

    input: str  # a path, or "-" for stdin
    output: Path | None
    extension: str  # output format
    stdin: bytes | Path | None = None  # the data piped in (or the file it was spooled to), when input is "-"
    run_id: str | None = None  # the batch's id, carried by its temporary files
    overwrite: bool = False  # the client checked the output: the task may replace its own attempt


Task = Callable[[Job], Record]  # one file's work, as a record
Done = Callable[[int, Record], None]  # told each job's record (by its position) as it finishes
Advance = Callable[[int], None]  # told how many more files are done
# a batch's display: called with the number of files, entered while the tasks run (not when every
# output exists), its value told of each file done
Progress = Callable[[int], AbstractContextManager[Advance]]


@contextmanager
def no_progress(total: int) -> Iterator[Advance]:
    """No display (Python callers that pass none; scripts)."""
    yield lambda files: None


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs: -j, --executor, --scheduler-address / --scheduler-file, --retries."""

    workers: int = 1
    executor: str = "thread"
    scheduler_address: str | None = None
    scheduler_file: str | None = None
    retries: int = 0

    def __post_init__(self) -> None:
        at_least("workers", self.workers, 1)
        at_least("retries", self.retries, 0)
        one_of("executor", self.executor, EXECUTORS)

    @classmethod
    def choose(cls, workers: int, executor: str | None, scheduler_address: str | None,
               scheduler_file: str | None, retries: int) -> BatchOptions:
        """The options with Dask's rules, for the command line and Python alike: an address or a
        scheduler file implies dask; the two exclude each other; DASK_SCHEDULER_ADDRESS alone never
        switches the executor."""
        for name, value in (("scheduler_address", scheduler_address), ("scheduler_file", scheduler_file)):
            if value is not None and not value.strip():  # an unset variable in a script: never run elsewhere
                raise UsageError(f"`{name}` is empty")
        if scheduler_address and scheduler_file:
            raise UsageError("give `scheduler_address` or `scheduler_file`, not both")
        if (scheduler_address or scheduler_file) and executor not in (None, "dask"):
            raise UsageError(f"`scheduler_address`/`scheduler_file` run on Dask, not `executor` {executor}")
        kind = "dask" if scheduler_address or scheduler_file else executor or "thread"
        return cls(workers, kind, scheduler_address, scheduler_file, retries)


@dataclass
class Batch:
    """What a batch produced: one record per job (input order) and how it ran (for ``--json``)."""

    records: list[Record]
    info: dict = field(default_factory=dict)  # executor, scheduler, dashboard, workers


class Cancelled(Exception):
    """The batch was interrupted: a task stops at its next safe point without writing."""


class Executor(Protocol):
    """Runs tasks; ``__enter__`` starts workers (or connects), ``__exit__`` stops them."""

    info: dict
    at_least_once: bool  # True when a task may run more than once (a retried or restarted worker)

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc) -> None: ...

    def run(self, jobs: list[Job], task: Task, done: Done) -> None:
        """Run ``task`` on every job; call ``done(index, record)`` as each finishes. On
        KeyboardInterrupt: cancel what has not started, let running tasks reach a safe point, re-raise."""
        ...


def check_stdio(inputs: list[str], output: str | None, options: BatchOptions) -> None:
    """'-' (stdin/stdout) needs the client's own process: refused in dask mode, before stdin is read."""
    if options.executor == "dask" and (STDIO in inputs or output == STDIO):
        raise UsageError("'-' (stdin/stdout) cannot be used with `executor` dask: tasks run in other "
                         "processes, possibly on other machines; give file paths")


def choose_executor(options: BatchOptions, jobs: list[Job]) -> Executor:
    """The executor the options ask for (``-j 1`` with threads runs in the calling thread)."""
    if options.executor == "dask":
        from convcli.executors.distributed import DaskExecutor

        return DaskExecutor(options, jobs)
    from convcli.executors.local import InlineExecutor, PoolExecutor

    workers = min(options.workers, len(jobs))
    if workers == 1 and options.executor == "thread":
        return InlineExecutor()
    return PoolExecutor(options.executor, workers)


def run_batch(
    jobs: list[Job],
    process: Callable[[Job], Record],
    options: BatchOptions,
    *,
    force: bool = False,
    progress: Progress = no_progress,
    name: Callable[[str], str] = str,
) -> Batch:
    """Run ``process`` on every job with the chosen executor; a failure becomes a record with
    ``error`` set (one line; ``name`` shows the parameters it names), and the other files are
    still processed.

    ``process`` (and ``name``) must be picklable (a module-level function or a functools.partial
    of one) for the process and dask executors. Existing outputs (without ``force``) are refused
    here, once. ``progress`` shows the batch as it runs (:data:`Progress`; the CLI's bar).
    """
    executor = choose_executor(options, jobs)
    run_id = secrets.token_hex(4)
    records: dict[int, Record] = {}
    pending: list[int] = []
    from convcli.io.files import check_can_write

    for index, job in enumerate(jobs):
        try:
            if job.output is not None:
                check_can_write(job.output, force)
            pending.append(index)
        except ConvcliError as error:
            records[index] = failed_record(job, error, name)
    submitted = [replace(jobs[i], run_id=run_id, overwrite=executor.at_least_once) for i in pending]
    task = _Task(process, options.retries, name=name)
    if not submitted:  # every output exists: nothing to start a pool or a cluster for
        return Batch([records[i] for i in range(len(jobs))], executor.info)
    if len(jobs) > 1:
        from convcli.process import collect_cycles

        collect_cycles()
    try:
        with executor, progress(len(jobs)) as advance:
            advance(len(records))

            def done(position: int, record: Record) -> None:
                records[pending[position]] = record
                advance(1)

            executor.run(submitted, task, done)
    except KeyboardInterrupt:
        # counted on disk once the workers are gone: a task past its safe point finished its file
        kept = sum(1 for job in submitted if job.output is not None and job.output.exists()) if not force \
            else sum(1 for record in records.values() if not record.get("error"))
        print(f"convcli: batch stopped: {kept} of {len(submitted)} files finished and kept; "
              "the others were cancelled", file=sys.stderr)
        raise
    finally:
        from convcli.io.files import sweep_temporaries

        for folder in output_folders(submitted):
            sweep_temporaries(folder, run_id)
    return Batch([records[i] for i in range(len(jobs))], executor.info)


# ----------------------------------------------------------------------------------- tasks
# Set in every worker when the batch is interrupted; checked at the safe points (a threading or
# multiprocessing Event: the process pool installs its own in each worker process). Dask workers
# outlive a batch, so they are told which run stopped instead.
_stop: threading.Event | None = threading.Event()
_stopped_runs: set[str] = set()


def set_stop_event(event) -> None:
    global _stop
    _stop = event


def stop_run(run_id: str) -> None:
    """Tell the tasks of batch ``run_id`` in this process to stop at their next safe point."""
    _stopped_runs.add(run_id)


def check_stop(run_id: str | None = None) -> None:
    """A safe point: raise :class:`Cancelled` when the batch was interrupted (call before writing)."""
    if (_stop is not None and _stop.is_set()) or run_id in _stopped_runs:
        raise Cancelled("interrupted")


@dataclass(frozen=True)
class _Task:
    """``process`` on one job as a record: timed, failures caught (transient ones retried in place)."""

    process: Callable[[Job], Record]
    retries: int
    name: Callable[[str], str] = str  # how a message shows the parameters it names

    def __call__(self, job: Job) -> Record:
        start = time.perf_counter()
        record: Record = {"input": job.input, "output": shown_output(job)}
        attempt = 0
        while True:
            check_stop(job.run_id)  # a job dequeued after the interrupt does not start
            try:
                record.update(self.process(job))
                record["error"] = None
                break
            except (KeyboardInterrupt, Cancelled):
                raise
            except Exception as error:  # noqa: BLE001 - one file's failure must not stop the others
                if is_transient(error) and attempt < self.retries:
                    attempt += 1
                    continue
                record.update(failed_record(job, error, self.name))
                break
        record["seconds"] = round(time.perf_counter() - start, 4)
        return record


def shown_output(job: Job) -> str | None:
    if job.output is not None:
        return str(job.output)
    return STDIO if job.extension else None


def failed_record(job: Job, error: BaseException | str, name: Callable[[str], str] = str) -> Record:
    """The record of a file that failed: one error line naming the input, and its exit status."""
    text = error if isinstance(error, str) else _labelled(job.input, error_line(error, name))
    status = ExitStatus.PROCESSING_ERROR if isinstance(error, str) else exit_status_for(error)
    return {"input": job.input, "output": shown_output(job), "error": text, "status": int(status)}


def _labelled(name: str, text: str) -> str:
    label = "stdin" if name == STDIO else name
    return text if text.startswith(label) else f"{label}: {text}"


# errno values that say "try again" (network filesystems, busy devices), not "this file is bad"
_TRANSIENT_ERRNOS = {
    errno.ESTALE, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN, errno.EBUSY, errno.EINTR,
    errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EHOSTUNREACH, errno.ECONNRESET,
    errno.ECONNABORTED, errno.ECONNREFUSED,
}


def is_transient(error: BaseException) -> bool:
    """Timeouts, lost connections and stale-NFS-like OSErrors: worth retrying. A corrupt or
    missing input, a bad option or an existing output is not."""
    if isinstance(error, (TimeoutError, ConnectionError)):
        return True
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def share_numba_threads(workers_here: int) -> None:
    """Give the calling thread its share of the host's cores for the parallel kernels (Numba's
    thread count is per thread), so N workers on a host do not run N × cores threads."""
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, cores() // max(1, workers_here))))


def output_folders(jobs: list[Job]) -> list[Path]:
    return sorted({job.output.parent for job in jobs if job.output is not None})
