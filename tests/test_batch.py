"""The batch runner (convcli.executors) without Dask: Ctrl-C, retries, refusals, option rules."""

import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from batches import arrays, interrupted_batch, json_of
from commands import run

from convcli.errors import InputError
from convcli.executors import BatchOptions, Job, _Task, run_batch
from convcli.io.files import atomic_output, sweep_temporaries

RNG = np.random.default_rng(14)


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_ctrl_c_stops_a_batch_keeps_finished_files_and_leaves_no_partial_ones(tmp_path, executor):
    # 40 files of ~0.3 s each with -j 2: Ctrl-C (SIGINT to the process group, as a terminal sends
    # it) once the first output exists must not run the other ~38
    inputs = arrays(tmp_path / "in", 40, RNG, shape=(384, 384))
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "convcli", "convolve", str(inputs), "-k", "box:31", "--method", "direct",
               "-o", str(out), "-j", "2", "--executor", executor]
    returncode, stderr, kept = interrupted_batch(command, out, tmp_path)
    assert returncode == 130, stderr
    assert "interrupted" in stderr and "batch stopped" in stderr
    assert 1 <= len(kept) <= 6, [p.name for p in kept]  # finished ones kept; the queue was cancelled
    for path in kept:  # every file left is a complete output, no temporary file
        assert not path.name.startswith("."), path.name
        expected = np.load(inputs / path.name)
        assert np.load(path).shape == expected.shape


def test_transient_errors_are_retried_a_corrupt_input_is_not():
    calls = []

    def flaky(job):
        calls.append(job.input)
        if job.input == "nfs" and len(calls) < 3:
            raise OSError(116, "Stale file handle")  # ESTALE
        if job.input == "corrupt":
            raise InputError("corrupt: not a readable image")
        return {"value": 1}

    record = _Task(flaky, retries=2)(Job("nfs", None, ""))
    assert record["error"] is None and len(calls) == 3
    calls.clear()
    record = _Task(flaky, retries=2)(Job("corrupt", None, ""))
    assert "not a readable image" in record["error"] and len(calls) == 1
    calls.clear()
    record = _Task(flaky, retries=1)(Job("nfs", None, ""))
    assert "Stale file handle" in record["error"] and len(calls) == 2


def test_existing_outputs_are_refused_on_the_client_before_any_task(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b.npy").write_bytes(b"keep")
    seen = []

    def process(job):
        seen.append(job.input)
        return {}

    jobs = [Job(name, tmp_path / "out" / f"{name}.npy", ".npy") for name in "abc"]
    batch = run_batch(jobs, process, BatchOptions(workers=2))
    assert sorted(seen) == ["a", "c"]
    assert "output exists" in batch.records[1]["error"] and batch.records[1]["status"] == 1
    assert (tmp_path / "out" / "b.npy").read_bytes() == b"keep"
    assert batch.info == {"executor": "thread", "scheduler": None, "dashboard": None, "workers": 2}


def test_temporary_files_carry_the_run_id_and_are_swept(tmp_path):
    target = tmp_path / "x.npy"
    with pytest.raises(RuntimeError), atomic_output(target, run_id="abc123") as temp:
        assert ".abc123." in temp.name
        os.link(temp, tmp_path / "copy")  # what a killed worker would leave: the temp file itself
        raise RuntimeError
    os.rename(tmp_path / "copy", temp)
    (tmp_path / ".other.zzz.1.part.npy").write_bytes(b"")  # another run's: not ours to remove
    assert sweep_temporaries(tmp_path, "abc123") == 1
    assert [p.name for p in tmp_path.iterdir()] == [".other.zzz.1.part.npy"]


def test_dask_scheduler_address_alone_never_switches_the_executor(tmp_path):
    inputs = arrays(tmp_path / "in", 2, RNG)
    result = run("convolve", inputs, "-k", "box:3", "-o", f"{tmp_path}/out/", "--json",
                 env={"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    assert json_of(result.output)["executor"] == "thread"


@pytest.mark.parametrize("options, message", [
    (["--scheduler-address", "tcp://a:1", "--scheduler-file", "s.json"], "not both"),
    (["--executor", "process", "--scheduler-address", "tcp://a:1"], "run on Dask"),
    (["-j", "0"], "-j must be >= 1"),
])
def test_batch_option_rules_are_usage_errors(tmp_path, options, message):
    np.save(tmp_path / "x.npy", np.ones(8))
    result = run("convolve", tmp_path / "x.npy", "-k", "box:3", "-o", tmp_path / "y.npy", *options)
    assert result.exit_code == 2 and message in result.output


def test_stdin_is_refused_in_dask_mode_before_it_is_read():
    result = run("convolve", "-", "-k", "box:3", "-o", "-", "--executor", "dask")
    assert result.exit_code == 2
    assert "'-' (stdin/stdout) cannot be used with --executor dask" in result.output


def test_without_the_extra_dask_mode_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    np.save(tmp_path / "x.npy", np.ones(8))
    result = run("pool", tmp_path / "x.npy", "--size", "2", "-o", tmp_path / "y.npy", "--executor", "dask")
    assert result.exit_code == 2
    assert "pip install 'convcli[dask]'" in result.output


def test_predict_runs_many_files_on_the_executor_and_reports_a_bad_one(tmp_path):
    data = Path(__file__).resolve().parent.parent / "samples"
    model = tmp_path / "m.npz"
    assert run("train", data / "shapes16.npz", "--epochs", "1", "-o", model, "-q").exit_code == 0
    images = sorted((data / "shapes" / "circle").glob("*.png"))[:3]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    result = run("predict", model, *images, tmp_path / "bad.png", "-j", "2", "--json")
    assert result.exit_code == 1
    document = json_of(result.output)
    assert [p["file"] for p in document["predictions"]] == [str(p) for p in images]
    assert document["failed"] == 1 and document["executor"] == "thread"


def test_dask_groups_are_guided_large_first_single_files_last_within_their_limits(tmp_path):
    from convcli.executors.distributed import GROUP_BYTES, GROUP_FILES, plan_groups

    sizes = [600_000] * 150 + [GROUP_BYTES // 3] * 20 + [40_000] * 30  # 512² PNGs, big files, small ones
    jobs = []
    for index, size in enumerate(sizes):
        path = tmp_path / f"f{index:03d}.png"
        path.write_bytes(b"\0" * size)
        jobs.append(Job(str(path), tmp_path / "out" / path.name, ".png"))
    groups = plan_groups(jobs, threads=2)
    assert [p for group in groups for p in group] == list(range(len(jobs)))  # every file once, in order
    assert len(groups[0]) == GROUP_FILES and len(groups) < len(jobs) // 4
    assert all(len(group) == 1 or sum(sizes[p] for p in group) <= GROUP_BYTES for group in groups)
    assert max(len(g) for g in groups if sizes[g[0]] == GROUP_BYTES // 3) == 3  # the byte budget binds
    tail = [len(group) for group in groups if sizes[group[0]] == 40_000]
    assert tail == sorted(tail, reverse=True) and tail[-4:] == [1, 1, 1, 1]  # the workers finish together
    assert plan_groups(jobs[:3], threads=8) == [[0], [1], [2]]
    unreadable = [Job(str(tmp_path / "gone.png"), tmp_path / "out" / "gone.png", ".png")]
    assert plan_groups(jobs[:2] + unreadable + jobs[2:4], threads=1) == [[0, 1], [2], [3], [4]]
    predictions = [replace(job, output=None) for job in jobs]  # no output folder to mark attempts in
    assert plan_groups(predictions, threads=2) == [[p] for p in range(len(jobs))]


def test_a_task_counts_its_attempts_so_a_rerun_after_a_worker_death_is_known(tmp_path):
    from convcli.executors.distributed import _attempts, _begin_attempt, _marker

    group = [Job(f"in{i}", tmp_path / f"o{i}.npy", ".npy", run_id="abc123") for i in range(3)]
    marker = _marker(group)
    assert marker.name == ".o0.npy.abc123.group.part" and _attempts(marker) == 0
    assert _begin_attempt(marker) == 0 and _begin_attempt(marker) == 1  # two attempts that died
    assert _attempts(marker) == 2
    alone = _marker(group[:1])  # the first file's own task, after the group was split
    assert alone != marker and _begin_attempt(alone) == 0
    assert sweep_temporaries(tmp_path, "abc123") == 2 and list(tmp_path.iterdir()) == []
