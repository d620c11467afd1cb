"""The Dask executor: a batch's files in groups, one task per group, on a Dask cluster
(``--executor dask``).

Where it runs, in Dask's own terms: ``--scheduler-address`` or ``--scheduler-file`` (each implies
dask), else Dask's config ``scheduler-address`` (``DASK_SCHEDULER_ADDRESS``) when ``--executor dask``
was asked for, else a ``LocalCluster`` of ``-j`` worker processes × 1 thread. The connect timeout is
Dask's ``distributed.comm.timeouts.connect``.

Why groups: Dask's own cost per task (client, scheduler, the worker's wait for its next task)
measured 3-5 ms of CPU on a 2-core machine, a sixth of the work of a 512² PNG. Groups are planned
once on the client (:func:`plan_groups`), large first, single files last, so the workers finish together.

Dask runs a task at least once: a worker that dies mid-task is restarted by its nanny and the task
reruns elsewhere. So the client refuses existing outputs before submitting, tasks replace their own
earlier attempt, temporary files carry the run id and are swept at the end. A group whose worker
died is not run again as a group: its files run one per task, so a file that kills its worker
every time dies alone and ends, after ``allowed-failures + 1`` deaths, as one failed record.

Deaths are counted by the tasks themselves (:func:`_attempts`): each attempt appends a byte to a
marker in the output folder before it starts. Dask's own count (a task's ``suspicious``) also counts
a worker's death while the task only waited in that worker's queue, and is used only for jobs
without an output folder.
"""

from __future__ import annotations

import json
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
GROUP_FILES = 16  # at most this many files in one task: Dask's cost per task shared 16 ways
GROUP_BYTES = 16 * 2**20  # and at most this much input: a 4K PNG (12 MB) goes alone
GROUPS_PER_THREAD = 2  # a group takes at most 1/(2 × worker threads) of the files still to plan
# glibc malloc in the workers of the LocalCluster convcli starts. Dask's nanny sets
# MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's adaptive mmap threshold: every array
# over 128 KiB is mmapped, page-faulted in and unmapped again (a 512² PNG: ~4,600 page faults,
# +10 ms of CPU, measured). These are the values glibc's adaptation itself ends at (mmap threshold
# 32 MiB, trim threshold twice that): freed arrays are reused, and a worker keeps at most 64 MiB free.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 * 2**20, "MALLOC_TRIM_THRESHOLD_": 64 * 2**20}


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

        tasks = _Tasks(self.client, _OnWorker(task, self.host_threads), jobs, done)
        groups = plan_groups(tasks.jobs, sum(self.host_threads.values()))
        completed = as_completed(tasks.submit(groups), with_results=True, raise_errors=False,
                                 loop=self.client.loop)
        try:
            for batch in completed.batches():
                for future, result in batch:
                    completed.update(tasks.finish(future, result))
                tasks.deaths.poll()
            tasks.deaths.poll(force=True)
        except KeyboardInterrupt:
            self.client.cancel(list(tasks.live.values()), force=True)
            # running tasks cannot be interrupted: tell them to stop at their next safe point
            self.client.run(stop_run, tasks.run_id)
            raise


def plan_groups(jobs: list[Job], threads: int) -> list[list[int]]:
    """The jobs' positions in groups, one task each, in the order they run: guided sizes (as
    OpenMP's ``schedule(guided)``), each at most 1/(GROUPS_PER_THREAD × threads) of the files still
    to plan, GROUP_FILES files and GROUP_BYTES of input, so large groups run first and single files
    last. Jobs without an output file (``predict``) run one per task: a group marks its attempts in
    the output folder (:func:`_marker`)."""
    if any(job.output is None for job in jobs):
        return [[position] for position in range(len(jobs))]
    groups: list[list[int]] = []
    position = 0
    while position < len(jobs):
        size = min(GROUP_FILES, -(-(len(jobs) - position) // (GROUPS_PER_THREAD * max(1, threads))))
        group, total = [position], _input_bytes(jobs[position])
        position += 1
        while len(group) < size and position < len(jobs):
            total += _input_bytes(jobs[position])
            if total > GROUP_BYTES:
                break
            group.append(position)
            position += 1
        groups.append(group)
    return groups


def _input_bytes(job: Job) -> int:
    try:
        return os.path.getsize(job.input)
    except OSError:  # the task will say what is wrong with it; let it say so alone
        return GROUP_BYTES


class _Tasks:
    """The batch's tasks as the client follows them: which files each holds, their records as tasks
    end, and a group whose worker died split into one task per file."""

    def __init__(self, client, remote: _OnWorker, jobs: list[Job], done: Done) -> None:
        self.client, self.remote, self.done = client, remote, done
        self.shown = jobs  # the paths as given, for the records
        self.jobs = [_absolute(job) for job in jobs]
        self.run_id = jobs[0].run_id if jobs else ""
        self.files: dict[str, list[int]] = {}  # task key -> the positions of its jobs
        self.live: dict[str, object] = {}  # task key -> its future, until its result is taken
        self.carried: dict[int, tuple[int, int]] = {}  # position -> (deaths, files) of the group it left
        self.deaths = _DeathCount(client)

    def submit(self, groups: list[list[int]], kind: str = "group") -> list:
        keys = [f"convcli-{self.run_id}-{kind}-{group[0]}" for group in groups]
        futures = self.client.map(self.remote, [[self.jobs[p] for p in group] for group in groups],
                                  key=keys, pure=False)
        for future, group in zip(futures, groups, strict=True):
            self.files[future.key] = group
            self.live[future.key] = future
        return futures

    def finish(self, future, result) -> list:
        """Take one task's outcome; return the tasks it leads to (its files, one per task)."""
        from distributed.scheduler import KilledWorker

        positions = self.files.pop(future.key)
        del self.live[future.key]
        if future.cancelled():
            return []
        if future.status == "finished" and isinstance(result, list):
            for position, record in zip(positions, result, strict=True):
                self._report(position, record)
            if _marker([self.jobs[p] for p in positions]) is None:
                self.deaths.hold(future, result)  # no marker: Dask's count is all there is
            else:
                future.release()
            return []
        if future.status == "finished":  # an int: earlier attempts at this group died, so many
            future.release()
            return self._split(positions, result)
        error = future.exception()  # known to the client already: no round trip
        if isinstance(error, KilledWorker) and len(positions) > 1:
            return self._split(positions, self._died(positions, error))
        for position in positions:
            job = self.shown[position]
            if isinstance(error, KilledWorker):
                record = self._killed(job, position, error)
            else:
                record = {**failed_record(job, error), "worker": None, "worker_deaths": 0}
            self._report(position, record)
        return []

    def _split(self, positions: list[int], died: int) -> list:
        for position in positions:
            self.carried[position] = (died, len(positions))
        return self.submit([[position] for position in positions], kind="file")

    def _died(self, positions: list[int], error) -> int:
        """How many attempts at a task Dask gave up on died while they ran: the task's marker
        (Dask also counts deaths while the task only waited on a worker), else Dask's count."""
        started = _attempts(_marker([self.jobs[p] for p in positions]))
        return error.allowed_failures + 1 if started is None else started

    def _killed(self, job: Job, position: int, error) -> Record:
        died = self._died([position], error)
        carried, files = self.carried.get(position, (0, 1))
        how = f"{carried} in a group of {files} files, then {died} alone; " if carried else ""
        text = (f"{job.input}: the worker died {died + carried} times while processing this file ({how}"
                f"Dask's distributed.scheduler.allowed-failures is {error.allowed_failures})")
        return {**failed_record(job, text), "worker": error.last_worker.address, "worker_deaths": died}

    def _report(self, position: int, record: Record) -> None:
        shown = self.shown[position]
        record.update(input=shown.input, output=shown_output(shown))
        record["worker_deaths"] += self.carried.get(position, (0, 1))[0]
        self.done(position, record)


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
        address = scheduler_file_address(options.scheduler_file)
        where = f"at {address} (from {options.scheduler_file})"
    else:
        address = options.scheduler_address or dask.config.get("scheduler-address", None)
        if address is None:
            cluster = start_local_cluster(options.workers)
            return distributed.Client(cluster), cluster
        where = f"at {address}"
    probe_scheduler(address)
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


# A scheduler file is a small JSON document; reading more than this is reading something else.
SCHEDULER_FILE_BYTES = 1 << 20
# Seconds to connect to a scheduler's address, then for its first bytes: a Dask server speaks first
# (its handshake), so silence, a refusal or other bytes are found out within twice this.
PROBE_SECONDS = 2.0


def scheduler_file_address(path: str) -> str:
    """The scheduler address a ``dask scheduler --scheduler-file`` document holds; a usage error
    naming the file and what it holds instead (Dask itself fails on an assertion, or waits)."""
    try:
        with open(path, "rb") as file:
            text = file.read(SCHEDULER_FILE_BYTES + 1)
        if len(text) > SCHEDULER_FILE_BYTES:
            raise ValueError(f"over {SCHEDULER_FILE_BYTES} bytes")
        document = json.loads(text)
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"`scheduler_file` {path}: not a Dask scheduler file ({error})") from None
    address = document.get("address") if isinstance(document, dict) else None
    if not isinstance(address, str) or "://" not in address:
        raise UsageError(f"`scheduler_file` {path}: not a Dask scheduler file (no \"address\": "
                         "\"tcp://host:port\" in it)")
    return address


# schemes whose client speaks first (a TLS hello, an HTTP upgrade): only the connection is probed
CLIENT_FIRST_SCHEMES = ("tls", "ws", "wss")


def probe_scheduler(address: str) -> None:
    """Refuse within seconds, naming ``address`` and what was found, a tcp:// address where no Dask
    scheduler answers: nothing listening, no answer, or a server of another kind (silent, or
    speaking another protocol). Dask's client would wait out its whole timeout, or forever. For
    tls://, ws:// and wss:// (the client speaks first) the connection itself is probed."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp" and scheme not in CLIENT_FIRST_SCHEMES:
        return  # ucx://, inproc://, unknown schemes: Dask's own checks (at once)
    host, _, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"Dask scheduler address {address}: expected {scheme}://host:port")
    stage = "connecting"
    try:
        with socket.create_connection((host, int(port_text)), timeout=PROBE_SECONDS) as probe:
            if scheme != "tcp":
                return
            stage = "waiting for its handshake"
            head = b""
            while len(head) < 16 and (part := probe.recv(16 - len(head))):
                head += part
    except ConnectionRefusedError:
        raise UsageError(f"no Dask scheduler at {address}: connection refused (nothing listens there)") \
            from None
    except TimeoutError:
        found = "no answer to a connection" if stage == "connecting" else \
            "a server that sent nothing (a Dask scheduler greets first): a server of another kind"
        raise UsageError(f"no Dask scheduler at {address}: {found} within {PROBE_SECONDS:g} s") from None
    except OSError as error:
        raise UsageError(f"no Dask scheduler at {address}: {error.strerror or error} ({stage})") from None
    if not _looks_like_dask(head):
        shown = head.decode("latin-1").encode("unicode_escape").decode("ascii")[:40]
        found = "closed the connection without a word" if not head else f"answered {shown!r}"
        raise UsageError(f"no Dask scheduler at {address}: a server of another kind {found}")


def _looks_like_dask(head: bytes) -> bool:
    """Dask's TCP framing: 8 bytes of message length, then 8 bytes of frame count (both small)."""
    if len(head) < 16:
        return False
    length, frames = int.from_bytes(head[:8], "little"), int.from_bytes(head[8:16], "little")
    return 16 <= length <= SCHEDULER_FILE_BYTES and 1 <= frames <= 64


def start_local_cluster(workers: int, **options):
    """The LocalCluster ``--executor dask`` starts: ``workers`` processes × 1 thread, glibc's malloc
    as WORKER_MALLOC says (unless the environment sets it), Ctrl-C left to the client."""
    import dask
    import distributed

    malloc = {f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in WORKER_MALLOC.items()}
    with dask.config.set(malloc):
        # preload: dask_setup below, in every worker process, restarted ones included
        return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        silence_logs=logging.ERROR, preload=[__name__], **options)


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
    """A group's task as it runs on a Dask worker: its share of the host's cores for Numba (the
    nanny limits OMP/MKL/OpenBLAS threads but not Numba's), and the worker's address in the records."""

    task: Callable[[Job], Record]
    host_threads: dict[str, int]

    def __call__(self, group: list[Job]) -> list[Record] | int:
        """The group's records; or, when earlier attempts at a group of several files died, how
        many did (the client then runs its files one per task, so a file that kills its worker dies
        alone). A single file's records carry the deaths of its earlier attempts."""
        from distributed import get_worker
        from distributed.comm import get_address_host

        worker = get_worker()
        if "NUMBA_NUM_THREADS" not in os.environ:
            host = get_address_host(worker.address)
            share_numba_threads(self.host_threads.get(host, worker.state.nthreads))
        marker = _marker(group)
        died = _begin_attempt(marker)
        if died and len(group) > 1:
            return died  # the marker stays for the sweep: a rerun of this answer gives it again
        records = [{**self.task(job), "worker": worker.address, "worker_deaths": died} for job in group]
        if marker is not None:
            marker.unlink(missing_ok=True)  # not when the task was stopped: the sweep removes it then
        return records


def _marker(group: list[Job]) -> Path | None:
    """The hidden file in the output folder that counts a task's attempts, a byte each (named with
    the run id, so the batch's sweep removes what a dead attempt leaves); None without an output
    folder. A group and the task of its first file alone are told apart by the name."""
    first = group[0]
    if first.output is None:
        return None
    kind = "group" if len(group) > 1 else "file"
    return first.output.parent / f".{first.output.name}.{first.run_id}.{kind}.part"


def _begin_attempt(marker: Path | None) -> int:
    """Mark one more attempt; return how many started before it (each died: a finished attempt
    removes the marker). Appending one byte is atomic, and survives the process that wrote it."""
    if marker is None:
        return 0
    descriptor = os.open(marker, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    try:
        earlier = os.fstat(descriptor).st_size
        os.write(descriptor, b".")
    finally:
        os.close(descriptor)
    return earlier


def _attempts(marker: Path | None) -> int | None:
    """How many attempts started (and died) by the marker, seen from the client; None if unknown."""
    if marker is None:
        return None
    try:
        return marker.stat().st_size
    except FileNotFoundError:
        # never started (Dask counted deaths while it waited), unless the client does not share the folder
        return 0 if marker.parent.is_dir() else None
    except OSError:
        return None


class _DeathCount:
    """How many workers died under each task (the scheduler's ``suspicious`` count), asked about
    once a second for the records that arrived since; their futures are released after that."""

    def __init__(self, client) -> None:
        self.client = client
        self.held: list[tuple[object, list[Record]]] = []
        self.last = time.monotonic()

    def hold(self, future, records: list[Record]) -> None:
        self.held.append((future, records))

    def poll(self, force: bool = False) -> None:
        if not self.held or (not force and time.monotonic() - self.last < DEATHS_POLL_SECONDS):
            return
        counts = self.count([future.key for future, _ in self.held])
        for future, records in self.held:
            for record in records:
                record["worker_deaths"] += counts.get(future.key, 0)
            future.release()
        self.held = []
        self.last = time.monotonic()

    def count(self, keys: list[str]) -> dict[str, int]:
        def suspicious(dask_scheduler, keys):  # nested: sent by value, the scheduler may lack convcli
            return {key: dask_scheduler.tasks[key].suspicious for key in keys if key in dask_scheduler.tasks}

        try:
            return self.client.run_on_scheduler(suspicious, keys=keys)
        except Exception:  # noqa: BLE001 - a scheduler that cannot run it: the counts stay as they are
            return {}


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
