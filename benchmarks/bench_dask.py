"""The Dask executor's cost: 200 RGB PNGs of 512x512 (sharpen) on a 2-worker LocalCluster
(processes × 1 thread, as ``--executor dask -j 2`` starts it) against -j 2 threads, through the same
batch runner the CLI uses.

Prints the ratio (threads time / dask time, > 1: dask faster); the per-file overhead of dask (the
extra time per file against threads, from the slope between a 2-file and a 200-file batch, so the
fixed costs cancel), in wall time and in CPU time of all the processes (client, scheduler, workers:
the figure a busy shared machine disturbs least); the per-batch fixed cost (client connect +
preflight on every worker); the tasks the files went in; and the LocalCluster's start and stop. The
contenders alternate round by round and keep their best, as the machine may be shared; the load
average is printed before and after. ``--dask-defaults`` starts the LocalCluster with Dask's
defaults instead (as a cluster started by ``dask worker`` runs); ``--one-task-per-file`` turns the
groups off. Needs the extra: pip install 'convcli[dask]'.

    python benchmarks/bench_dask.py [--files 200] [--rounds 3] [--dask-defaults] [--one-task-per-file]
                                    [--results DIR | --no-results]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import photo  # noqa: E402
from common import Results, add_results_option, save  # noqa: E402

from convcli.executors import BatchOptions, Job, run_batch  # noqa: E402
from convcli.executors.distributed import plan_groups, start_local_cluster  # noqa: E402
from convcli.jobs.convolve import ConvolveSettings, convolve_file  # noqa: E402
from convcli.kernels.apply import Geometry  # noqa: E402


def jobs_for(inputs: list[Path], out: Path) -> list[Job]:
    return [Job(str(path), out / path.name, ".png") for path in inputs]


def cpu_seconds() -> float:
    """User + system CPU of this process (client, scheduler, threads) and its children (workers)."""
    import psutil  # installed with distributed

    me = psutil.Process()
    return sum(sum(process.cpu_times()[:2]) for process in [me, *me.children(recursive=True)])


def timed_batch(inputs: list[Path], out: Path, options: BatchOptions, task) -> tuple[float, float]:
    """(wall, CPU) seconds of one batch."""
    cpu, start = cpu_seconds(), time.perf_counter()
    batch = run_batch(jobs_for(inputs, out), task, options, force=True)
    elapsed = time.perf_counter() - start
    failed = [r["error"] for r in batch.records if r.get("error")]
    assert not failed, failed[:3]
    return elapsed, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dask-defaults", action="store_true",
                        help="a LocalCluster with Dask's defaults, not the one convcli starts")
    parser.add_argument("--one-task-per-file", action="store_true",
                        help="no groups (to measure what they save)")
    add_results_option(parser)
    args = parser.parse_args()
    if args.one_task_per_file:
        import convcli.executors.distributed

        convcli.executors.distributed.GROUP_FILES = 1
    import distributed

    geometry = Geometry(mode="same", boundary="constant", cval=0.0, stride=1, dilation=1, padding=None,
                        correlate=False, method="auto")
    settings = ConvolveSettings(("sharpen",), geometry, "float32", "clip", True, False, None)
    task = functools.partial(convolve_file, settings=settings)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "in").mkdir()
        (folder / "out").mkdir()
        inputs = []
        for index in range(args.files):
            path = folder / "in" / f"p{index:03d}.png"
            Image.fromarray(photo(512, 512, index)).save(path)
            inputs.append(path)
        small = inputs[:2]

        start = time.perf_counter()
        if args.dask_defaults:
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                               silence_logs=logging.ERROR, dashboard_address=":0")
        else:
            cluster = start_local_cluster(2, dashboard_address=":0")
        cluster_start = time.perf_counter() - start
        threads = BatchOptions(workers=2, executor="thread")
        on_dask = BatchOptions(workers=2, executor="dask", scheduler_address=cluster.scheduler_address)
        times: dict[tuple[str, int], tuple[float, float]] = {}
        timed_batch(small, folder / "out", threads, task)  # warm-up: Numba cache, codecs
        timed_batch(small, folder / "out", on_dask, task)
        for _ in range(args.rounds):  # alternate, so a busy phase of the machine slows both alike
            for name, options in (("threads", threads), ("dask", on_dask)):
                for batch in (small, inputs):
                    wall, cpu = timed_batch(batch, folder / "out", options, task)
                    best = times.get((name, len(batch)), (float("inf"), float("inf")))
                    times[name, len(batch)] = (min(best[0], wall), min(best[1], cpu))
        start = time.perf_counter()
        cluster.close()
        cluster_stop = time.perf_counter() - start
        tasks = len(plan_groups(jobs_for(inputs, folder / "out"), threads=2))

    many, few = args.files, len(small)

    def per_file(name: str, which: int) -> float:  # seconds per file, from the 2 -> many slope
        return (times[name, many][which] - times[name, few][which]) / (many - few)

    wall = {name: per_file(name, 0) for name in ("threads", "dask")}
    cpu = {name: per_file(name, 1) for name in ("threads", "dask")}
    fixed = {name: times[name, few][0] - few * wall[name] for name in ("threads", "dask")}
    cluster = "Dask's defaults" if args.dask_defaults else "as convcli starts it"
    print(f"{many} PNGs 512x512 sharpen, -j 2 threads vs a 2-worker LocalCluster ({cluster}; processes "
          f"x 1 thread), best of {args.rounds}")
    speed = times["threads", many][0] / times["dask", many][0]
    print(f"  dask speed vs threads ({many} files)       {speed:.2f}x ({tasks} dask tasks)")
    print(f"  per-file wall time, dask / threads       {wall['dask'] / wall['threads']:.2f}x "
          f"(dask overhead {1000 * (wall['dask'] - wall['threads']):+.2f} ms per file; "
          f"threads {1000 * wall['threads']:.1f} ms per file)")
    print(f"  per-file CPU time, dask / threads        {cpu['dask'] / cpu['threads']:.2f}x "
          f"(dask {1000 * (cpu['dask'] - cpu['threads']):+.2f} ms CPU per file; "
          f"threads {1000 * cpu['threads']:.1f} ms CPU per file; all processes)")
    print(f"  dask per-batch fixed cost                {fixed['dask'] - fixed['threads']:+.2f} s against "
          "threads (connect + preflight)")
    print(f"  LocalCluster start / stop                {cluster_start:.2f} s / {cluster_stop:.2f} s")
    print(f"  load average before / after              {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}")
    results = Results("bench_dask", note=f"{cluster}; groups {'off' if args.one_task_per_file else 'on'}; "
                      f"best of {args.rounds}")
    results.add(
        f"{many} PNGs 512x512 sharpen, 2-worker LocalCluster vs -j 2 threads",
        speedup_vs={"threads": speed},
        tasks=tasks,
        overhead_per_file_wall_ms=1000 * (wall["dask"] - wall["threads"]),
        threads_per_file_wall_ms=1000 * wall["threads"],
        overhead_per_file_cpu_ms=1000 * (cpu["dask"] - cpu["threads"]),
        threads_per_file_cpu_ms=1000 * cpu["threads"],
        fixed_cost_s=fixed["dask"] - fixed["threads"],
        cluster_start_s=cluster_start,
        cluster_stop_s=cluster_stop,
        load_average=[round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    )
    save(results, args)


if __name__ == "__main__":
    main()
