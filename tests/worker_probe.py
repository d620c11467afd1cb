"""Runs inside a batch worker (a process-pool process, a Dask worker): which modules a job's code
loads there. Standard library only, so the probe itself loads nothing (tests/test_jobs.py,
tests/test_dask_executor.py)."""

from __future__ import annotations

import pickle
import sys

# what a worker must never load to run a file: the CLI and its display libraries
CLI_MODULES = ("click", "rich", "convcli.cli")


def cli_modules(names) -> list[str]:
    return sorted(name for name in names
                  if any(name == top or name.startswith(top + ".") for top in CLI_MODULES))


def modules_of(pickled_task: bytes, job) -> dict:
    """Unpickle the task here (importing its module, as the executor's own unpickling does), run it
    on ``job``; the record says which CLI modules this process holds and which the task imported."""
    before = set(sys.modules)
    task = pickle.loads(pickled_task)
    record = task(job)
    return {**record, "cli_loaded": cli_modules(sys.modules),
            "cli_imported": cli_modules(set(sys.modules) - before),
            "job_module": task.func.__module__}
