"""The Dask executor: one task per file on a Dask cluster (``--executor dask``).

Where it runs, in Dask's own terms: ``--scheduler-address`` or ``--scheduler-file`` (each implies
dask), else Dask's config ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``) when ``--executor dask``
was asked for, else a ``LocalCluster`` of ``-j`` worker processes × 1 thread. The connect timeout is
Dask's ``distributed.comm.timeouts.connect``.

Dask runs a task at least once: a worker that dies mid-task is restarted by its nanny and the task
reruns elsewhere. So the client refuses existing outputs before submitting, tasks replace their own
earlier attempt, temporary files carry the run id and are swept at the end, and a file whose task
killed its worker ``allowed-failures + 1`` times ends as one failed record.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from convcli.errors import ExecutorError, UsageError
from convcli.executors import (
    STDIO,
    BatchOptions,
    Done,
    Job,
    Record,
    Task,
    check_stdio,
    cores,
    failed_record,
    output_folders,
    share_numba_threads,
    shown_output,
    stop_run,
)

INSTALL_HINT = "`executor` dask needs the optional extra: pip install 'convcli[dask]'"
PREFLIGHT_INPUTS = 3  # the first inputs every worker must see
DEATHS_POLL_SECONDS = 1.0  # how often the scheduler is asked how many workers died under each task


class DaskExecutor:
    at_least_once = True

    def __init__(self, options: BatchOptions, jobs: list[Job]) -> None:
        stdout = any(job.output is None and job.extension for job in jobs)
        check_stdio([job.input for job in jobs], STDIO if stdout else None, options)
        self.options = options
        self.jobs = [_absolute(job) for job in jobs]
        self.info: dict = {"executor": "dask", "scheduler": None, "dashboard": None, "workers": 0}
        self.client = self.cluster = None

    # ------------------------------------------------------------------ start / stop
    def __enter__(self) -> DaskExecutor:
        try:
            import distributed
        except ImportError:
            raise UsageError(INSTALL_HINT) from None
        self.client, self.cluster = _connect(distributed, self.options)
        try:
            self._describe()
            self._preflight()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def _describe(self) -> None:
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        self.info.update(scheduler=self.client.scheduler.address, dashboard=_dashboard(self.client),
                         workers=len(workers))
        self.host_threads: dict[str, int] = {}
        for worker in workers.values():
            self.host_threads[worker["host"]] = self.host_threads.get(worker["host"], 0) + worker["nthreads"]
        where = "a LocalCluster" if self.cluster is not None else "the scheduler"
        dashboard = f", dashboard {self.info['dashboard']}" if self.info["dashboard"] else ""
        print(f"convcli: dask: {where} at {self.info['scheduler']}, {len(workers)} workers{dashboard}",
              file=sys.stderr)

    def _preflight(self) -> None:
        """Every worker: sees the first inputs, can write the output folders, runs this convcli; and
        has its imports and Numba cache warm before the first task."""
        from convcli import __version__

        inputs = [job.input for job in self.jobs[:PREFLIGHT_INPUTS]]
        folders = [str(folder) for folder in output_folders(self.jobs)]
        try:
            reports = self.client.run(check_worker, inputs, folders)
        except ImportError as error:
            raise ExecutorError(f"the Dask workers cannot import convcli ({error}): install the same "
                                "convcli on the workers") from None
        problems = []
        for address, report in sorted(reports.items()):
            where = f"worker {address} on host {report['host']}"
            if report["version"] != __version__:
                problems.append(f"{where} runs convcli {report['version']}, this client {__version__}: "
                                "install the same version on the workers")
            for path in report["unseen"]:
                problems.append(f"{where} cannot see {path}: Dask workers need the same paths as the client "
                                "(a shared filesystem mounted at the same place)")
            for folder in report["unwritable"]:
                problems.append(f"{where} cannot write to {folder}: Dask workers need the same paths as "
                                "the client, writable by the workers' user")
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise ExecutorError(problems[0] + more)

    # ------------------------------------------------------------------ tasks
    def run(self, jobs: list[Job], task: Task, done: Done) -> None:
        from distributed import as_completed

        remote = _OnWorker(task, self.host_threads)
        run_id = jobs[0].run_id if jobs else ""
        keys = [f"convcli-{run_id}-{index}" for index in range(len(jobs))]
        futures = self.client.map(remote, [_absolute(job) for job in jobs], key=keys,
                                  retries=self.options.retries, pure=False)
        position = {future.key: index for index, future in enumerate(futures)}
        deaths = _DeathCount(self.client)
        try:
            completed = as_completed(futures, with_results=True, raise_errors=False, loop=self.client.loop)
            for batch in completed.batches():
                for future, result in batch:
                    index = position[future.key]
                    record = self._record(future, result, jobs[index])
                    if record is not None:
                        record.update(input=jobs[index].input, output=shown_output(jobs[index]))
                        deaths.hold(future, record)
                        done(index, record)
                deaths.poll()
            deaths.poll(force=True)
        except KeyboardInterrupt:
            self.client.cancel(futures, force=True)
            # running tasks cannot be interrupted: tell them to stop at their next safe point
            self.client.run(stop_run, run_id)
            raise

    def _record(self, future, result, job: Job) -> Record | None:
        """The task's record, or a failed one for a task that raised or killed its workers."""
        from distributed.scheduler import KilledWorker

        if future.status == "finished":
            return result
        if future.cancelled():
            return None
        error = future.exception()  # known to the client already: no round trip
        if isinstance(error, KilledWorker):
            died = error.allowed_failures + 1
            text = (f"{job.input}: the worker died {died} times while processing this file (Dask's "
                    f"distributed.scheduler.allowed-failures is {error.allowed_failures})")
            return {**failed_record(job, text), "worker": error.last_worker.address, "worker_deaths": died}
        return {**failed_record(job, error), "worker": None, "worker_deaths": 0}


def _absolute(job: Job) -> Job:
    """Workers may run in another folder, or on another machine with the same mounts."""
    output = None if job.output is None else Path(os.path.abspath(job.output))
    return replace(job, input=os.path.abspath(job.input), output=output)


def _connect(distributed, options: BatchOptions):
    """(client, cluster): to the scheduler the options or Dask's config name, else a new LocalCluster."""
    import dask

    timeout = dask.config.get("distributed.comm.timeouts.connect")
    if options.scheduler_file:
        if not Path(options.scheduler_file).is_file():
            raise UsageError(f"`scheduler_file` {options.scheduler_file}: no such file")
        where = f"in {options.scheduler_file}"
        connect = {"scheduler_file": options.scheduler_file}
    else:
        address = options.scheduler_address or dask.config.get("scheduler-address", None)
        if address is None:
            # preload: dask_setup below, in every worker process, restarted ones included
            cluster = distributed.LocalCluster(n_workers=options.workers, threads_per_worker=1,
                                               processes=True, silence_logs=logging.ERROR, preload=[__name__])
            return distributed.Client(cluster), cluster
        where = f"at {address}"
        connect = {"address": address}
    try:
        client = distributed.Client(**connect, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ExecutorError(f"cannot reach the Dask scheduler {where} within {timeout} "
                            f"(distributed.comm.timeouts.connect): {' '.join(str(error).split())}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        raise ExecutorError(f"the Dask scheduler {where} has no workers (waited {timeout})") from None
    return client, None


def dask_setup(worker) -> None:
    """Preloaded into the LocalCluster's workers (our children, in our process group): Ctrl-C in
    the terminal reaches them too, but only the client decides what stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dashboard(client) -> str | None:
    try:
        return client.dashboard_link
    except (KeyError, AttributeError):  # no dashboard (bokeh missing, or turned off)
        return None


@dataclass(frozen=True)
class _OnWorker:
    """The task as it runs on a Dask worker: its share of the host's cores for Numba (the nanny
    limits OMP/MKL/OpenBLAS threads but not Numba's), and the worker's address in the record."""

    task: Callable[[Job], Record]
    host_threads: dict[str, int]

    def __call__(self, job: Job) -> Record:
        from distributed import get_worker
        from distributed.comm import get_address_host

        worker = get_worker()
        if "NUMBA_NUM_THREADS" not in os.environ:
            host = get_address_host(worker.address)
            share_numba_threads(self.host_threads.get(host, worker.state.nthreads))
        return {**self.task(job), "worker": worker.address, "worker_deaths": 0}


class _DeathCount:
    """How many workers died under each task (the scheduler's ``suspicious`` count), asked about
    once a second for the records that arrived since; their futures are released after that."""

    def __init__(self, client) -> None:
        self.client = client
        self.held: list[tuple[object, Record]] = []
        self.last = time.monotonic()

    def hold(self, future, record: Record) -> None:
        self.held.append((future, record))

    def poll(self, force: bool = False) -> None:
        if not self.held or (not force and time.monotonic() - self.last < DEATHS_POLL_SECONDS):
            return
        def suspicious(dask_scheduler, keys):  # nested: sent by value, the scheduler may lack convcli
            return {key: dask_scheduler.tasks[key].suspicious for key in keys if key in dask_scheduler.tasks}

        keys = [future.key for future, _ in self.held]
        try:
            counts = self.client.run_on_scheduler(suspicious, keys=keys)
        except Exception:  # noqa: BLE001 - a scheduler that cannot run it: the counts stay as they are
            counts = {}
        for future, record in self.held:
            record["worker_deaths"] = max(record.get("worker_deaths") or 0, counts.get(future.key, 0))
            future.release()
        self.held = []
        self.last = time.monotonic()


def check_worker(inputs: list[str], folders: list[str]) -> dict:
    """Run on every worker before the batch (``client.run``): what it sees, what it can write,
    which convcli it runs; warms the imports and Numba's cache of compiled kernels."""
    from convcli import __version__

    report = {
        "host": socket.gethostname(),
        "version": __version__,
        "unseen": [path for path in inputs if not os.path.isfile(path)],
        "unwritable": [folder for folder in folders if not os.access(folder, os.W_OK | os.X_OK)],
        "cores": cores(),
    }
    _warm()
    return report


def _warm() -> None:
    """Import the engine and load its most used compiled kernels from Numba's cache."""
    import numpy as np

    from convcli.engine.convolve import convolve
    from convcli.engine.pooling import pool

    image = np.zeros((1, 8, 8), dtype=np.float32)
    convolve(image, np.ones((3, 3), dtype=np.float32), method="direct")
    pool(image, 2)
