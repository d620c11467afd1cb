"""Benchmark history is data: every run of a benchmark script writes one JSON file in
benchmarks/results/, and the README's performance table shows the latest figures of those files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import common  # noqa: E402

RESULT_FILES = sorted(common.RESULTS.glob("*.json"))
FILE_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-(?P<benchmark>bench_\w+?)(-[\w-]+)?\.json")
# a row of the README's table: | `python benchmarks/NAME.py ...` | case | against | 1.23× | date |
TABLE_ROW = re.compile(
    r"^\| `python benchmarks/(?P<benchmark>bench_\w+)\.py[^`]*` \| (?P<case>[^|]+?) \| (?P<vs>[^|]+?) \| "
    r"(?P<ratio>\d+\.\d+)× \| (?P<date>\d{4}-\d{2}-\d{2}) \|$"
)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_writer_writes_a_valid_file_named_by_date_and_benchmark(tmp_path):
    results = common.Results("bench_pool", argv=["--threads", "2"], note="a test")
    results.add("4K RGB float32 max 2x2", speedup_vs={"torch": 7.2})
    path = results.write(tmp_path)
    document = load(path)
    common.check_result(document)
    match = FILE_NAME.fullmatch(path.name)
    assert match and match["benchmark"] == "bench_pool"
    assert document["command"] == "python benchmarks/bench_pool.py --threads 2"
    assert document["cases"] == [{"case": "4K RGB float32 max 2x2", "speedup_vs": {"torch": 7.2}}]
    assert document["machine"]["cores"] >= 1 and document["versions"]["numpy"]
    assert document["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", document["commit"])


def test_the_results_options_choose_the_folder_or_none(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    common.add_results_option(parser)
    results = common.Results("bench_cli", argv=[])
    results.add("case", speedup_vs={"x": 1.5})
    common.save(results, parser.parse_args(["--results", str(tmp_path / "runs"), "--no-results"]))
    assert not (tmp_path / "runs").exists()
    common.save(results, parser.parse_args(["--results", str(tmp_path / "runs")]))
    (written,) = (tmp_path / "runs").iterdir()
    assert str(written) in capsys.readouterr().err


@pytest.mark.parametrize(
    "broken",
    [
        {"schema": 2},
        {"commit": "abc"},
        {"date": "yesterday"},
        {"cases": []},
        {"cases": [{"speedup_vs": {"x": 1.0}}]},
        {"cases": [{"case": "c", "speedup_vs": {"x": -1.0}}]},
        {"machine": None},
    ],
)
def test_the_checker_refuses_what_is_not_a_result(broken):
    results = common.Results("bench_cli", argv=[])
    results.add("case", speedup_vs={"x": 1.5})
    document = results.document() | broken
    with pytest.raises(ValueError):
        common.check_result(document)


def test_every_script_writes_results():
    for script in sorted((REPO / "benchmarks").glob("bench_*.py")):
        text = script.read_text()
        assert f'Results("{script.stem}"' in text and "add_results_option(parser)" in text, script.name


@pytest.mark.parametrize("path", RESULT_FILES, ids=lambda path: path.name)
def test_every_stored_result_is_valid(path):
    document = load(path)
    common.check_result(document)
    match = FILE_NAME.fullmatch(path.name)
    assert match, f"{path.name}: not named DATE-BENCHMARK[-RUN].json"
    assert match["benchmark"] == document["benchmark"]
    assert (REPO / "benchmarks" / f"{document['benchmark']}.py").exists()
    assert document["command"].startswith(f"python benchmarks/{document['benchmark']}.py")


def latest(benchmark: str, case: str, vs: str) -> tuple[float, str]:
    """The figure of the latest stored run of ``benchmark`` that measured ``case`` against ``vs``."""
    for path in sorted(RESULT_FILES, key=lambda p: (load(p)["date"], p.name), reverse=True):
        document = load(path)
        if document["benchmark"] != benchmark:
            continue
        for record in document["cases"]:
            if record["case"] == case and vs in record.get("speedup_vs", {}):
                return record["speedup_vs"][vs], document["date"][:10]
    raise AssertionError(f"no stored {benchmark} result for {case!r} against {vs!r}")


def test_the_readme_table_shows_the_latest_stored_figures():
    rows = [TABLE_ROW.match(line) for line in (REPO / "README.md").read_text().splitlines()]
    rows = [row for row in rows if row]
    assert len(rows) >= 10
    for row in rows:
        ratio, date = latest(row["benchmark"], row["case"], row["vs"])
        assert (f"{ratio:.2f}", date) == (row["ratio"], row["date"]), row.group(0)
