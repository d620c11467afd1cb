"""The warm worker starts where nothing but the project's own dependencies is installed: it loads
the TBB runtime of this environment's ``tbb`` distribution (pip puts it on no loader path in a
venv), and a worker that cannot run says why, stays quiet, and is tried again when that may
have changed."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pytest
from test_server import convcli, status, wait_for_worker

from convcli import jit
from convcli import server_protocol as protocol
from convcli.server import warmup

pytestmark = pytest.mark.skipif(not protocol.supported(), reason="the warm worker needs Linux")



def tbb_is_a_dependency() -> bool:
    """Where pyproject.toml makes ``tbb`` a dependency: the worker must work there."""
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def tbb_files() -> set[str]:
    distribution = metadata.distribution(jit.TBB_DISTRIBUTION)
    return {os.path.realpath(distribution.locate_file(file)) for file in distribution.files or []}


def run(*args, env, **kwargs) -> subprocess.CompletedProcess:
    """test_server's real call (its deadline and the worker's account on overrun), as text."""
    return convcli(*args, env=env, text=True, **kwargs)


@pytest.fixture()
def runtime_env():
    folder = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    os.chmod(folder, 0o700)
    env = {**os.environ, "CONVCLI_SERVER": "1", "XDG_RUNTIME_DIR": str(folder), "CONVCLI_SERVER_IDLE": "120"}
    env.pop("LD_LIBRARY_PATH", None)  # the newcomer's shell: nothing set by hand
    yield env
    run("server", "stop", "--all", env=env)
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- the TBB of this environment


@pytest.mark.skipif(not tbb_is_a_dependency(), reason="tbb is a dependency on Linux x86-64 only")
def test_load_tbb_loads_the_file_of_the_tbb_distribution():
    path = jit.load_tbb()
    assert path in tbb_files(), f"{path} is not one of the 'tbb' distribution's files"


@pytest.mark.skipif(not tbb_is_a_dependency(), reason="tbb is a dependency on Linux x86-64 only")
def test_the_worker_maps_the_libtbb_of_this_environments_tbb_distribution(runtime_env):
    """A system libtbb (ldconfig's, or one on LD_LIBRARY_PATH) cannot satisfy this test."""
    assert run("--version", env=runtime_env).returncode == 0  # in-process; starts a worker
    worker = wait_for_worker(runtime_env)
    assert worker["threading_layer"] == "tbb"
    maps = Path(f"/proc/{worker['pid']}/maps").read_text().splitlines()
    mapped = {line.split(None, 5)[5] for line in maps if len(line.split(None, 5)) == 6}
    libtbb = {os.path.realpath(path) for path in mapped if os.path.basename(path).startswith("libtbb.so")}
    assert libtbb, "the worker maps no libtbb"
    assert libtbb <= tbb_files(), f"{libtbb - tbb_files()} lie outside this environment's tbb distribution"


def no_distribution(name):
    raise metadata.PackageNotFoundError(name)


def test_load_tbb_names_every_place_it_tried(monkeypatch):
    def refuse(path, mode=0):
        raise OSError(f"{path}: cannot open shared object file")

    monkeypatch.setattr(metadata, "distribution", no_distribution)
    monkeypatch.setattr("ctypes.CDLL", refuse)
    with pytest.raises(jit.TbbUnavailable) as caught:
        jit.load_tbb()
    message = str(caught.value)
    assert f"no '{jit.TBB_DISTRIBUTION}' distribution is installed in {sys.prefix}" in message
    assert "libtbb.so.12: cannot open shared object file" in message


def test_a_tbb_older_than_numba_accepts_is_refused(monkeypatch):
    class OldTbb:
        class TBB_runtime_interface_version:  # noqa: N801 - the C symbol's name
            argtypes: list = []
            restype = None

            def __new__(cls):
                return 12050

    monkeypatch.setattr(metadata, "distribution", no_distribution)
    monkeypatch.setattr("ctypes.CDLL", lambda path, mode=0: OldTbb())
    with pytest.raises(jit.TbbUnavailable, match="TBB interface 12050, older than the 12060"):
        jit.load_tbb()


@pytest.mark.parametrize("gomp", [True, False])
def test_in_process_runs_load_tbb_where_openmp_is_missing(monkeypatch, gomp):
    """Without GNU OpenMP's runtime Numba would fall to workqueue, which aborts under -j N."""
    import ctypes

    loaded = []
    real = ctypes.CDLL

    def cdll(name, *args, **kwargs):
        if name == jit.GNU_OPENMP_RUNTIME and not gomp:
            raise OSError(f"{name}: cannot open shared object file")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(jit, "load_tbb", lambda: loaded.append("tbb") or "/x/libtbb.so.12")
    monkeypatch.setattr(jit.config, "THREADING_LAYER_PRIORITY", [])
    jit._thread_safe_layers()
    assert jit.config.THREADING_LAYER_PRIORITY == ["omp", "tbb", "workqueue"]
    assert loaded == ([] if gomp else ["tbb"])


# ---------------------------------------------------------------- a worker that cannot run


def test_warm_up_says_why_the_tbb_layer_cannot_load(monkeypatch, tmp_path):
    def unavailable():
        raise jit.TbbUnavailable("no 'tbb' distribution is installed in /somewhere")

    monkeypatch.setattr(jit.config, "THREADING_LAYER", jit.config.THREADING_LAYER)  # warm_up sets it
    monkeypatch.setattr(jit, "load_tbb", unavailable)
    monkeypatch.setitem(sys.modules, "numba.np.ufunc.tbbpool", None)  # its import fails
    monkeypatch.setattr(warmup, "_command_lines", lambda work, inputs: pytest.fail("warmed up anyway"))
    with pytest.raises(warmup.Unsupported) as caught:
        warmup.warm_up(tmp_path)
    problem = caught.value
    assert "TBB threading layer" in problem.reason and "fork-safe" in problem.reason
    assert "pip install --force-reinstall 'tbb'" in problem.fix and sys.prefix in problem.fix
    assert problem.tried[0] == "no 'tbb' distribution is installed in /somewhere"
    assert problem.tried[1].startswith("numba.np.ufunc.tbbpool: ")


def test_warm_up_refuses_a_threading_layer_that_is_not_fork_safe(monkeypatch, tmp_path):
    monkeypatch.setattr(jit.config, "THREADING_LAYER", jit.config.THREADING_LAYER)
    monkeypatch.setattr(warmup, "_fork_safe_threading_layer", lambda: None)
    monkeypatch.setattr(warmup, "_command_lines", lambda work, inputs: [])
    monkeypatch.setattr(warmup, "threading_layer", lambda: "omp")
    with pytest.raises(warmup.Unsupported, match="'omp'.*'tbb'"):
        warmup.warm_up(tmp_path)


def test_the_record_holds_until_the_loader_variables_change_or_it_is_old(tmp_path):
    path = tmp_path / "worker-x.unsupported"
    env = {"LD_LIBRARY_PATH": "/a"}
    path.write_text(protocol.unsupported_record("why", "fix", ["tried"], env))
    assert protocol.unsupported_holds(str(path), env)
    assert not protocol.unsupported_holds(str(path), {"LD_LIBRARY_PATH": "/b"})
    assert not protocol.unsupported_holds(str(path), {})
    record = protocol.read_unsupported(str(path), env)
    assert record["reason"] == "why" and record["fix"] == "fix" and record["tried"] == ["tried"]
    assert record["holds"] and record["recheck_after"] - record["checked"] == protocol.RECHECK_SECONDS
    old = time.time() - protocol.RECHECK_SECONDS - 1
    os.utime(path, (old, old))
    assert not protocol.unsupported_holds(str(path), env)
    assert not protocol.read_unsupported(str(path), env)["holds"]
    path.write_text("garbage")
    assert not protocol.unsupported_holds(str(path), env)
    assert protocol.read_unsupported(str(path), env) is None


FAILING_WORKER = """
import sys
sys.path.insert(0, sys.argv.pop(1))
from convcli.server import warmup, worker
def cannot(rehearsal):
    raise warmup.Unsupported("a reason for the test", "a fix for the test", ["tried one thing"])
warmup.warm_up = cannot
sys.exit(worker.main(sys.argv[1:]))
"""


def test_a_worker_that_cannot_run_says_why_stays_quiet_and_is_tried_again(runtime_env):
    key = status(runtime_env)["key"]
    package_parent = os.path.dirname(os.path.dirname(protocol.__file__))  # convcli/server_protocol.py
    failed = subprocess.run(
        [sys.executable, "-P", "-c", FAILING_WORKER, package_parent, key], env=runtime_env, timeout=60
    )
    assert failed.returncode == 0
    report = status(runtime_env)
    assert report["worker"] is None
    record = report["unsupported"]
    assert record["reason"] == "a reason for the test" and record["fix"] == "a fix for the test"
    assert record["holds"] and record["tried"] == ["tried one thing"]
    human = run("server", "status", env=runtime_env).stdout
    (line,) = [line for line in human.splitlines() if line.startswith("no worker here:")]
    assert "a reason for the test; to fix: a fix for the test" in line and "tried again in" in line

    # calls stay quiet and start no worker while the record holds
    call = run("--version", env=runtime_env)
    assert call.returncode == 0 and call.stderr == ""
    time.sleep(1.0)
    assert status(runtime_env)["worker"] is None

    # another loader path: the verdict may no longer hold, and the next call tries again
    moved = {**runtime_env, "LD_LIBRARY_PATH": "/nonexistent"}
    assert not status(moved)["unsupported"]["holds"]
    assert "the next call starts a worker again" in run("server", "status", env=moved).stdout

    # an old record is tried again: the real worker starts and takes its record away
    folder = os.path.join(runtime_env["XDG_RUNTIME_DIR"], "convcli")
    unsupported = Path(protocol.worker_paths(folder, key)["unsupported"])
    old = time.time() - protocol.RECHECK_SECONDS - 1
    os.utime(unsupported, (old, old))
    assert run("--version", env=runtime_env).returncode == 0
    if tbb_is_a_dependency():
        wait_for_worker(runtime_env)
        assert not unsupported.exists()


# ---------------------------------------------------------------- which client is installed


def test_an_install_without_its_native_client_says_so_once_and_status_names_it(runtime_env, tmp_path):
    """setup.py writes why it built no native client into the Python client's script (here by
    hand, as its _say_no_native_client does); the first call notes it, later ones stay quiet."""
    launcher = Path(warmup.__file__).with_name("convcli").read_text()  # the script beside the worker
    line = "NATIVE_CLIENT_MISSING = None"
    assert line in launcher
    command = tmp_path / protocol.COMMAND
    script = launcher.replace("#!python", f"#!{sys.executable}", 1)
    command.write_text(script.replace(line, "NATIVE_CLIENT_MISSING = 'no cc'"))
    command.chmod(0o755)
    quiet = {**runtime_env, "CONVCLI_SERVER": "0"}
    call = [command, "--version"]
    first, second = (subprocess.run(call, env=quiet, capture_output=True, text=True) for _ in "12")
    assert first.returncode == second.returncode == 0
    assert "has no native client (no cc)" in first.stderr and "Said once." in first.stderr
    assert second.stderr == ""
    answer = subprocess.run([command, "server", "status", "--json"], env=quiet, capture_output=True)
    report = json.loads(answer.stdout)
    assert report["client"] == {"kind": "python", "command": str(command), "native_missing": "no cc"}
    assert report["native_client"] is None
    human = subprocess.run([command, "server", "status"], env=quiet, capture_output=True, text=True).stdout
    assert f"Python client: {command} (no native client: no cc)" in human
