"""Executors on this machine: the calling thread (``-j 1``), a thread pool, a process pool.

Threads are the default: the engine kernels and codecs release the GIL, and 40 PNGs of 512x512
with -j 2 took 7.6 s with threads vs 13.7 s with (forkserver) processes.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from convcli.executors import (
    Cancelled,
    Done,
    Job,
    Record,
    Task,
    failed_record,
    set_stop_event,
    share_numba_threads,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

# concurrent.futures (and its process module) is imported by the pools only: a one-file call
# runs inline and need not pay ~7 ms for it


class InlineExecutor:
    """One job after another in the calling thread: Ctrl-C interrupts the job itself, and its
    atomic write leaves nothing behind."""

    at_least_once = False

    def __init__(self) -> None:
        self.info = {"executor": "thread", "scheduler": None, "dashboard": None, "workers": 1}

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, jobs: list[Job], task: Task, done: Done) -> None:
        for index, job in enumerate(jobs):
            done(index, {**task(job), "worker": "main", "worker_deaths": 0})


class PoolExecutor:
    """A thread or process pool of ``workers``. On Ctrl-C the queued jobs are cancelled, a stop
    event tells the running ones to stop at their next safe point, and the pool is drained."""

    at_least_once = False

    def __init__(self, kind: str, workers: int) -> None:
        self.kind = kind
        self.workers = workers
        self.info = {"executor": kind, "scheduler": None, "dashboard": None, "workers": workers}
        self._pool = None

    def __enter__(self) -> PoolExecutor:
        if self.kind == "thread":
            self._stop = threading.Event()
            set_stop_event(self._stop)
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, initializer=share_numba_threads,
                                            initargs=(self.workers,))
        else:
            import multiprocessing

            # not fork: the engine's Numba threading layer (OpenMP) must not be forked
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            context = multiprocessing.get_context(method)
            self._stop = context.Event()
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_process,
                                             initargs=(self._stop, self.workers))
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.kind == "thread":
            set_stop_event(threading.Event())  # a later batch in this process starts afresh

    def run(self, jobs: list[Job], task: Task, done: Done) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        futures: dict[Future, int] = {self._pool.submit(task, job): i for i, job in enumerate(jobs)}
        waiting = set(futures)

        def report(finished) -> None:
            for future in finished:
                if not future.cancelled() and not isinstance(future.exception(), Cancelled):
                    done(futures[future], self._record(future, jobs[futures[future]]))

        try:
            while waiting:
                finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                report(finished)
        except KeyboardInterrupt:
            self._stop.set()
            self._pool.shutdown(wait=True, cancel_futures=True)
            report(waiting)  # the files that finished while the pool drained are kept: count them
            raise

    def _record(self, future: Future, job: Job) -> Record:
        from concurrent.futures.process import BrokenProcessPool

        error = future.exception()
        if error is None:
            return {**future.result(), "worker": self.kind, "worker_deaths": 0}
        if isinstance(error, BrokenProcessPool):
            return {**failed_record(job, f"{job.input}: the worker process died while processing this file"),
                    "worker": self.kind, "worker_deaths": 1}
        raise error


def _start_process(stop, workers: int) -> None:
    """A process worker: Ctrl-C in a terminal reaches the whole process group, but only the main
    process decides (it sets ``stop``); the worker's share of the cores for Numba's threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    set_stop_event(stop)
    share_numba_threads(workers)

