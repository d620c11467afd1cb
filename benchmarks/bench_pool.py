"""Pooling a 4K RGB float32 image: convcli vs skimage.measure.block_reduce and PyTorch's CPU pooling.

    python benchmarks/bench_pool.py [--json] [--threads 2] [--results DIR | --no-results]

Ratios > 1 mean convcli is faster. block_reduce only tiles (stride = size, no overlap), so it
appears in the 2×2 cases only. PyTorch runs with the same number of threads as convcli's Numba
kernels (default 2, the size of the CI machine). Results are checked equal before timing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Results, add_results_option, best_time, have, report, save  # noqa: E402

from convcli.engine.pooling import pool  # noqa: E402

CASES = [  # (name, op, size, stride)
    ("max 2x2", "max", 2, 2),
    ("max 3x3 stride 2", "max", 3, 2),
    ("avg 2x2", "avg", 2, 2),
    ("avg 3x3 stride 2", "avg", 3, 2),
]


def time_block_reduce(image: np.ndarray, ours: np.ndarray, op: str, size: int) -> float:
    from skimage.measure import block_reduce

    reducer = np.max if op == "max" else np.mean
    np.testing.assert_allclose(ours, block_reduce(image, (1, size, size), reducer), rtol=1e-5, atol=1e-6)
    return best_time(lambda: block_reduce(image, (1, size, size), reducer))


def time_torch(image: np.ndarray, ours: np.ndarray, op: str, size: int, stride: int) -> float:
    import torch

    batch = torch.from_numpy(image)[None]
    function = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d
    np.testing.assert_allclose(ours, function(batch, size, stride)[0].numpy(), rtol=1e-5, atol=1e-6)
    return best_time(lambda: function(batch, size, stride))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    parser.add_argument("--threads", type=int, default=2, help="threads for Numba and PyTorch")
    add_results_option(parser)
    args = parser.parse_args()
    results = Results("bench_pool", note=f"{args.threads} threads for Numba and PyTorch")

    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if have("torch"):
        import torch

        torch.set_num_threads(args.threads)
    image = np.random.default_rng(0).random((3, 2160, 3840), dtype=np.float32)  # 4K RGB, channels first

    for name, op, size, stride in CASES:
        ours = pool(image, size, stride=stride, op=op)
        others = {}
        if have("skimage") and size == stride:  # block_reduce only tiles
            others["skimage.block_reduce"] = time_block_reduce(image, ours, op, size)
        if have("torch"):
            others["torch"] = time_torch(image, ours, op, size, stride)
        if not others:
            print(f"{name}: no reference library installed (pip install scikit-image torch)")
            continue
        seconds = best_time(lambda o=op, k=size, s=stride: pool(image, k, stride=s, op=o))
        report(f"4K RGB float32 {name}", seconds, others, as_json=args.json, results=results)
    save(results, args)


if __name__ == "__main__":
    main()
