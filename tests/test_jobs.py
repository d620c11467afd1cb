"""The per-file jobs below the CLI (convcli.jobs) and the batch functions Python calls
(convcli.convolve_files, convcli.pool_files): real files, a failing input, the command's own
bytes, and workers that never load Click, rich or the CLI."""

import functools
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import worker_probe
from commands import run
from PIL import Image
from scipy import signal

import convcli
from convcli.errors import UsageError

RNG = np.random.default_rng(2323)


def pictures(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"p{index}.png"
        Image.fromarray(RNG.integers(0, 256, (18 + index, 21, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_convolve_files_writes_every_good_file_and_reports_the_bad_ones_in_input_order(tmp_path):
    good = pictures(tmp_path / "in", 2)
    corrupt = tmp_path / "in" / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    array = RNG.standard_normal((9, 13)).astype(np.float32)
    np.save(tmp_path / "in" / "a.npy", array)
    inputs = [good[0], corrupt, tmp_path / "in" / "a.npy", tmp_path / "in" / "missing.png", good[1]]
    seen = []
    results = convcli.convolve_files(inputs, "box:3", tmp_path / "out", progress=lambda *n: seen.append(n))
    assert [r.input for r in results] == [str(p) for p in inputs]
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert results[1].error.startswith(f"{corrupt}: ") and "image" in results[1].error
    assert results[3].error == f"{inputs[3]}: no such file"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.npy", "p0.png", "p1.png"]
    assert seen[-1] == (5, 5) and [done for done, _ in seen] == sorted(done for done, _ in seen)
    # an array: the command's default boundary for arrays is constant 0, centred 'same' (scipy's)
    expected = signal.convolve2d(array, np.ones((3, 3)) / 9, mode="same", boundary="fill")
    assert np.allclose(np.load(results[2].output), expected, atol=1e-6)
    assert results[2].details["output_shape"] == [9, 13] and results[2].details["boundary"] == "constant"


def test_convolve_files_equals_the_command_byte_for_byte(tmp_path):
    inputs = pictures(tmp_path / "in", 3)
    results = convcli.convolve_files(inputs, ["gaussian:sigma=1.5", "sharpen"], tmp_path / "api", workers=2)
    assert all(r.ok for r in results)
    command = run("convolve", *inputs, "-k", "gaussian:sigma=1.5", "-k", "sharpen",
                  "-o", f"{tmp_path / 'cli'}/")
    assert command.exit_code == 0, command.output
    for result in results:
        assert result.output.read_bytes() == (tmp_path / "cli" / result.output.name).read_bytes()
        assert result.details["boundary"] == "reflect"  # the command's default for images


def test_an_existing_output_is_a_failed_file_until_force(tmp_path):
    [picture] = pictures(tmp_path / "in", 1)
    first = convcli.convolve_files([picture], "box:3", tmp_path / "out")
    before = first[0].output.read_bytes()
    [again] = convcli.convolve_files([picture], "sharpen", tmp_path / "out")
    assert not again.ok and "output exists (use force to replace it)" in again.error  # not --force
    assert first[0].output.read_bytes() == before
    [forced] = convcli.convolve_files([picture], "sharpen", tmp_path / "out", force=True)
    assert forced.ok and forced.output.read_bytes() != before


@pytest.mark.parametrize(("call", "message"), [
    (lambda i, o: convcli.convolve_files(i, "no-such-kernel", o), "no-such-kernel"),
    (lambda i, o: convcli.convolve_files(i, "box:3", o, boundary="mirror"), "mirror"),
    (lambda i, o: convcli.convolve_files(i, "box:3", o, output_padding=1), "`output_padding`"),
    (lambda i, o: convcli.convolve_files(i, "box:3", o, method="fast"), "method"),
    (lambda i, o: convcli.convolve_files(i, "box:3", o, extension=".xyz"), ".xyz"),
    (lambda i, o: convcli.convolve_files(i, "box:3", o, stride=0), "stride must be >= 1, got 0"),
    (lambda i, o: convcli.convolve_files(i, "box:3", o, dilation=(1, 2, 3)), "dilation"),
    (lambda i, o: convcli.pool_files(i, 2, o, output_size=3), "not both"),
    (lambda i, o: convcli.pool_files(i, 0, o), "size"),
    (lambda i, o: convcli.pool_files(i, 2, o, op="max", dilation=2, boundary="reflect"), "boundary"),
])
def test_bad_kernels_and_options_raise_before_any_file_is_touched(tmp_path, call, message):
    inputs = pictures(tmp_path / "in", 1)
    with pytest.raises(UsageError) as raised:
        call(inputs, tmp_path / "out")
    assert message in str(raised.value) or message in raised.value.args[0]
    assert isinstance(raised.value, ValueError) and not (tmp_path / "out").exists()


def test_pool_files_pools_as_the_engine_does_and_adaptive_too(tmp_path):
    array = RNG.standard_normal((3, 8, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    [windowed] = convcli.pool_files([tmp_path / "x.npy"], 2, tmp_path / "max")
    expected = array.reshape(3, 4, 2, 5, 2).max(axis=(2, 4))  # 2x2 windows, stride 2, by hand
    assert np.array_equal(np.load(windowed.output), expected)
    [adaptive] = convcli.pool_files([tmp_path / "x.npy"], None, tmp_path / "avg", op="avg",
                                    output_size=np.int64(1))
    assert np.allclose(np.load(adaptive.output), array.mean(axis=(1, 2), keepdims=True), atol=1e-6)
    [picture] = pictures(tmp_path / "in", 1)
    [as_array] = convcli.pool_files([picture], 3, tmp_path / "npy", extension="npy")
    assert as_array.output.name == "p0.npy" and as_array.details["output_shape"] == [3, 6, 7]


def test_convolve_files_takes_a_stride_per_axis(tmp_path):
    array = RNG.standard_normal((3, 8, 10)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    [strided] = convcli.convolve_files([tmp_path / "x.npy"], "1 1; 1 1", tmp_path / "strided", stride=(1, 2))
    same = np.stack([signal.convolve(channel, np.ones((2, 2)), mode="same") for channel in array])
    assert np.allclose(np.load(strided.output), same[:, :, ::2], atol=1e-5)  # stride subsamples 'same'
    assert strided.details["output_shape"] == [3, 8, 5]


def test_inputs_that_share_a_name_keep_their_folders(tmp_path):
    a = pictures(tmp_path / "a", 1)[0]
    b = pictures(tmp_path / "b", 1)[0]
    results = convcli.convolve_files([a, b], "box:3", tmp_path / "out")
    assert [r.output for r in results] == [tmp_path / "out" / folder / "p0.png" for folder in ("a", "b")]
    assert all(r.output.exists() for r in results)


def test_the_python_batch_loads_neither_click_nor_rich_nor_the_cli(tmp_path):
    pictures(tmp_path / "in", 2)
    code = (
        "import sys, glob, convcli\n"
        f"results = convcli.convolve_files(sorted(glob.glob({str(tmp_path / 'in' / '*.png')!r})), 'box:3', "
        f"{str(tmp_path / 'out')!r}, workers=2)\n"
        "assert all(r.ok for r in results), results\n"
        "from worker_probe import cli_modules\n"
        "print(cli_modules(sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(worker_probe.__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_process_pool_workers_run_files_without_click_rich_or_the_cli(tmp_path):
    """The command's own batch path (run_files: its progress bar, its flag names for errors) with
    a probe around the convolve job: what the workers hold."""
    from convcli.cli.common import run_files
    from convcli.executors import BatchOptions, Job
    from convcli.jobs.convolve import ConvolveSettings, convolve_file
    from convcli.kernels.apply import Geometry
    from convcli.kernels.level import Level

    inputs = pictures(tmp_path / "in", 3)
    (tmp_path / "out").mkdir()
    settings = ConvolveSettings(("box:3",), Geometry(mode=None, boundary=None), "float32", "clip",
                                force=False, explain=False, block_size=None, level=Level())
    task = pickle.dumps(functools.partial(convolve_file, settings=settings))  # what the executor ships
    jobs = [Job(str(path), tmp_path / "out" / path.name, ".png") for path in inputs]
    probe = functools.partial(worker_probe.modules_of, task)
    records = run_files(jobs, probe, BatchOptions(workers=2, executor="process"), quiet=True).records
    assert [r["error"] for r in records] == [None] * 3
    assert all(r["worker"] == "process" and r["job_module"] == "convcli.jobs.convolve" for r in records)
    # (jobs defined in the Click modules loaded click, rich and convcli.cli into every worker)
    assert [r["cli_loaded"] for r in records] == [[]] * 3
    assert all((tmp_path / "out" / path.name).exists() for path in inputs)


def test_the_batch_functions_follow_the_commands_dask_rules(tmp_path):
    """An address or a scheduler file means Dask (as on the command line); an empty one, both at
    once, or one with another executor is refused before any file, naming the parameters."""
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(photo)
    for kwargs, message in [
        ({"scheduler_address": ""}, "scheduler_address is empty"),
        ({"scheduler_file": " "}, "scheduler_file is empty"),
        ({"scheduler_address": "tcp://127.0.0.1:1", "scheduler_file": "s.json"}, "not both"),
        ({"scheduler_address": "tcp://127.0.0.1:1", "executor": "process"}, "not executor process"),
    ]:
        with pytest.raises(UsageError) as refusal:
            convcli.convolve_files([photo], "sharpen", tmp_path / "out", **kwargs)
        assert message in str(refusal.value)
        assert not (tmp_path / "out").exists()
