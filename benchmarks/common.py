"""Side-by-side timing for the benchmarks: every result is a ratio, never a bare number.

Each script times convcli and the libraries a user would otherwise pick in one run, on the
same inputs, and prints ``reference_time / convcli_time`` (> 1 means convcli is faster).
Each run also writes its figures to one JSON file in ``benchmarks/results/`` (see ``Results``):
the benchmark history is data, and the README's performance table shows the latest file's figures.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# from a source checkout without installing, the package is at the repository root (appended:
# an installed convcli still wins)
sys.path.append(str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SCHEMA = 1
# the libraries whose versions a result depends on (those not installed are left out)
VERSIONED = ("convcli", "numpy", "scipy", "numba", "opencv-python-headless", "opencv-python", "torch",
             "scikit-image", "dask", "distributed", "Pillow", "imagecodecs", "soundfile")


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


def report(
    title: str,
    ours: float,
    others: dict[str, float],
    *,
    as_json: bool = False,
    results: Results | None = None,
) -> dict:
    """Print one case: convcli's speed relative to each reference (ratio > 1: convcli faster); add it
    to ``results`` when given."""
    ratios = {name: t / ours for name, t in others.items()}
    if results is not None:
        results.add(title, speedup_vs=ratios)
    if as_json:
        print(json.dumps({"case": title, "speedup_vs": ratios}))
    else:
        parts = ", ".join(f"{name} {ratio:6.2f}x" for name, ratio in ratios.items())
        print(f"{title:<48} convcli speed-up vs {parts}")
    return ratios


# ---------------------------------------------------------------- results as data
class Results:
    """One run of a benchmark script: its cases' figures, written as one JSON file.

    The file records what the figures depend on: the commit (and whether the tree had changes),
    the machine, the date, the library versions and the exact command, so a later run can be set
    beside it. ``add`` takes a case name and its figures (``speedup_vs``: ratios, > 1 means
    convcli is faster; anything else the script measures)."""

    def __init__(self, benchmark: str, argv: list[str] | None = None, note: str = "") -> None:
        self.benchmark = benchmark
        arguments = sys.argv[1:] if argv is None else argv
        self.command = " ".join(["python", f"benchmarks/{benchmark}.py", *arguments])
        self.note = note
        self.cases: list[dict] = []

    def add(self, case: str, **figures) -> dict:
        record = {"case": case, **figures}
        self.cases.append(record)
        return record

    def document(self) -> dict:
        commit, dirty = git_commit()
        return {
            "schema": SCHEMA,
            "benchmark": self.benchmark,
            "command": self.command,
            "commit": commit,
            "dirty": dirty,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": this_machine(),
            "versions": library_versions(),
            "note": self.note,
            "cases": self.cases,
        }

    def write(self, folder: Path | None = None) -> Path:
        """Write the run to ``folder`` (default benchmarks/results/) as DATE-BENCHMARK.json."""
        document = self.document()
        check_result(document)
        folder = RESULTS if folder is None else Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = document["date"].replace("-", "").replace(":", "").replace("+0000", "Z")
        path = folder / f"{stamp}-{self.benchmark}.json"
        path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        return path


def add_results_option(parser: argparse.ArgumentParser) -> None:
    """``--results DIR`` (where the run's JSON file goes) and ``--no-results`` (write none)."""
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR",
                        help="folder for this run's JSON file (default: benchmarks/results/)")
    parser.add_argument("--no-results", action="store_true", help="print only; write no results file")


def save(results: Results, args: argparse.Namespace) -> None:
    """Write the run's file as the options ask, and say where."""
    if not args.no_results and results.cases:
        print(f"results: {results.write(args.results)}", file=sys.stderr)


def git_commit() -> tuple[str | None, bool]:
    """The checkout's commit and whether its tracked files have changes (None outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                 capture_output=True, text=True)
    except OSError:
        return None, False
    if head.returncode != 0:
        return None, False
    return head.stdout.strip(), bool(changes.stdout.strip())


def this_machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def library_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


REQUIRED = {"schema": int, "benchmark": str, "command": str, "date": str, "machine": dict, "cases": list}


def check_result(document: dict) -> None:
    """Raise ValueError unless ``document`` is a results file of this schema: the keys above, a
    commit of 40 hex digits (or None), an ISO date, and cases with a name and numbers."""
    for key, kind in REQUIRED.items():
        if not isinstance(document.get(key), kind):
            raise ValueError(f"results: '{key}' missing or not {kind.__name__}")
    if document["schema"] != SCHEMA:
        raise ValueError(f"results: schema {document['schema']}, expected {SCHEMA}")
    commit = document.get("commit")
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ValueError(f"results: commit {commit!r} is not 40 hex digits")
    datetime.datetime.fromisoformat(document["date"])
    if not document["cases"]:
        raise ValueError("results: no cases")
    for case in document["cases"]:
        if not isinstance(case.get("case"), str):
            raise ValueError(f"results: a case without a name: {case}")
        for name, ratio in case.get("speedup_vs", {}).items():
            if not isinstance(ratio, (int, float)) or not ratio > 0:
                raise ValueError(f"results: {case['case']}: speedup_vs {name} = {ratio!r}")
