"""Side-by-side timing for the benchmarks: every result is a ratio, never a bare number.

Each script times convcli and the libraries a user would otherwise pick in one run, on the
same inputs, and prints ``reference_time / convcli_time`` (> 1 means convcli is faster).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

# from a source checkout without installing, the package is at the repository root (appended:
# an installed convcli still wins)
sys.path.append(str(Path(__file__).resolve().parents[1]))


def have(module: str) -> bool:
    """Is an optional comparison library (cv2, torch, skimage) installed?"""
    return importlib.util.find_spec(module) is not None


def best_time(fn: Callable[[], object], *, repeat: int = 5, min_seconds: float = 0.2) -> float:
    """Best wall time of one call, after one warm-up call (JIT compile, caches)."""
    fn()
    best = float("inf")
    spent = 0.0
    runs = 0
    while runs < repeat or spent < min_seconds:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        runs += 1
        if runs >= 50:
            break
    return best


def best_times(fns: dict[str, Callable[[], object]], *, rounds: int = 9) -> dict[str, float]:
    """Best wall time of each function, calls alternating round by round, so a slow phase of a shared
    machine (another process, a busy neighbour VM) slows every contender alike instead of one."""
    for fn in fns.values():
        fn()  # warm-up: JIT compile, allocator, caches
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def report(title: str, ours: float, others: dict[str, float], *, as_json: bool = False) -> dict:
    """Print one case: convcli's speed relative to each reference (ratio > 1: convcli faster)."""
    ratios = {name: t / ours for name, t in others.items()}
    if as_json:
        print(json.dumps({"case": title, "speedup_vs": ratios}))
    else:
        parts = ", ".join(f"{name} {ratio:6.2f}x" for name, ratio in ratios.items())
        print(f"{title:<48} convcli speed-up vs {parts}")
    return ratios
