"""The Dask executor's cost: 200 RGB PNGs of 512x512 (sharpen) on a 2-worker LocalCluster
(processes × 1 thread) against -j 2 threads, through the same batch runner the CLI uses.

Prints the ratio (threads time / dask time, > 1: dask faster); the per-file overhead of dask (the
extra time per file against threads, from the slope between a 2-file and a 200-file batch, so the
fixed costs cancel); the per-batch fixed cost (client connect + preflight on every worker); and the
LocalCluster's start and stop. The contenders alternate round by round and keep their best, as the
machine may be shared. Needs the extra: pip install 'convcli[dask]'.

    python benchmarks/bench_dask.py [--files 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import photo  # noqa: E402

from convcli.cli.convolve import Settings, convolve_file  # noqa: E402
from convcli.executors import BatchOptions, Job, run_batch  # noqa: E402
from convcli.kernels.apply import Geometry  # noqa: E402


def jobs_for(inputs: list[Path], out: Path) -> list[Job]:
    return [Job(str(path), out / path.name, ".png") for path in inputs]


def timed_batch(inputs: list[Path], out: Path, options: BatchOptions, task) -> float:
    start = time.perf_counter()
    batch = run_batch(jobs_for(inputs, out), task, options, force=True, quiet=True)
    elapsed = time.perf_counter() - start
    failed = [r["error"] for r in batch.records if r.get("error")]
    assert not failed, failed[:3]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import distributed

    geometry = Geometry(mode="same", boundary="constant", cval=0.0, stride=1, dilation=1, padding=None,
                        correlate=False, method="auto")
    settings = Settings(("sharpen",), geometry, "float32", "clip", True, False, None)
    task = functools.partial(convolve_file, settings=settings)
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
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           silence_logs=logging.ERROR, dashboard_address=":0")
        cluster_start = time.perf_counter() - start
        threads = BatchOptions(workers=2, executor="thread")
        on_dask = BatchOptions(workers=2, executor="dask", scheduler_address=cluster.scheduler_address)
        times: dict[tuple[str, int], float] = {}
        timed_batch(small, folder / "out", threads, task)  # warm-up: Numba cache, codecs
        timed_batch(small, folder / "out", on_dask, task)
        for _ in range(args.rounds):  # alternate, so a busy phase of the machine slows both alike
            for name, options in (("threads", threads), ("dask", on_dask)):
                for batch in (small, inputs):
                    seconds = timed_batch(batch, folder / "out", options, task)
                    times[name, len(batch)] = min(times.get((name, len(batch)), float("inf")), seconds)
        start = time.perf_counter()
        cluster.close()
        cluster_stop = time.perf_counter() - start

    many, few = args.files, len(small)
    per_file = {name: (times[name, many] - times[name, few]) / (many - few) for name in ("threads", "dask")}
    fixed = {name: times[name, few] - few * per_file[name] for name in ("threads", "dask")}
    fixed = fixed["dask"] - fixed["threads"]
    print(f"{many} PNGs 512x512 sharpen, -j 2 threads vs 2-worker LocalCluster (processes x 1 thread), "
          f"best of {args.rounds}")
    speedup = times["threads", many] / times["dask", many]
    print(f"  dask speed-up vs threads ({many} files)  {speedup:.2f}x")
    print(f"  per-file time, dask / threads           {per_file['dask'] / per_file['threads']:.2f}x "
          f"(dask overhead {1000 * (per_file['dask'] - per_file['threads']):+.2f} ms per file; "
          f"threads {1000 * per_file['threads']:.1f} ms per file)")
    print(f"  dask per-batch fixed cost               {fixed:+.2f} s against threads (connect + preflight)")
    print(f"  LocalCluster start / stop               {cluster_start:.2f} s / {cluster_stop:.2f} s")


if __name__ == "__main__":
    main()
