"""The warm worker: the same bytes, output and exit codes as in-process, and every fault ends in
a clear status (never a hang, never a partial file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcli import server_protocol as protocol

pytestmark = pytest.mark.skipif(not protocol.supported(), reason="the warm worker needs Linux")

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
# The deadline of every wait on a worker: its warm-up (imports, the kernels it loads) takes a few
# seconds, and well under this on a loaded 2-core machine with an empty Numba cache.
START_TIMEOUT = 60
# -P: the convcli the worker serves is the installed one (or the editable checkout), whatever the
# test's working folder; a plain -m from the repository root would import the checkout instead
CONVCLI = [sys.executable, "-P", "-m", "convcli"]
CONVCLI_LINE = " ".join(CONVCLI)  # a fresh CI machine compiles the kernels the warm-up loads


def call_timeout(env) -> float:
    """How long a call may take: one the warm worker may serve, START_TIMEOUT; one in-process may
    compile kernels first (an empty Numba cache), and has longer."""
    return START_TIMEOUT if env.get("CONVCLI_SERVER") != "0" else 300


def convcli(*args, env, **kwargs) -> subprocess.CompletedProcess:
    """A real call; one that overruns call_timeout fails with the worker's own account."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", call_timeout(env))
    try:
        return subprocess.run([*CONVCLI, *map(str, args)], env=env, **kwargs)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"convcli {' '.join(map(str, args))} ran over {kwargs['timeout']} s; "
                             f"{why_no_worker(env)}") from None


def status(env, command=CONVCLI) -> dict:
    """`server status --json` of the installation and environment ``env`` names."""
    result = subprocess.run([*command, "server", "status", "--json"], env=env, capture_output=True, text=True,
                            timeout=START_TIMEOUT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def worker_expected() -> bool:
    """Whether a warm worker must run here: Linux where the installation depends on tbb, Numba's
    fork-safe threading layer (pyproject.toml's marker says where wheels exist). Elsewhere the
    worker declines (the layer Numba has is not fork-safe) and its tests skip saying why."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    dependencies = [Requirement(line) for line in requires("convcli") or []]
    return sys.platform == "linux" and any(
        dependency.name == "tbb" and (dependency.marker is None or dependency.marker.evaluate({"extra": ""}))
        for dependency in dependencies
    )


def why_no_worker(env, command=CONVCLI, report: dict | None = None) -> str:
    """The worker's own account of why it serves nothing: the reason it recorded, else its status."""
    try:
        report = report or status(env, command)
    except (AssertionError, subprocess.TimeoutExpired, ValueError) as error:
        return f"server status --json failed: {error}"
    record = report.get("unsupported") or {}
    if record.get("holds"):
        tried = "; ".join(record.get("tried") or [])
        return f"the worker cannot run here: {record['reason']}; to fix: {record['fix']} (tried: {tried})"
    if report.get("worker"):
        return f"the worker is up: {json.dumps(report['worker'])}"
    return f"no worker and no reason recorded (server status --json: {json.dumps(report)})"


def no_worker(what: str, reason: str) -> NoReturn:
    """A worker that did not start fails the test where it must run here, and skips it elsewhere."""
    message = f"no warm worker ({what}): {reason}"
    if worker_expected():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def wait_for_worker(env, what: str = "the worker to start", ready=None, command=CONVCLI) -> dict:
    """The status of the worker serving ``env`` once it is up (and ``ready()``), within START_TIMEOUT;
    a worker that records why it cannot run ends the wait at once, with its reason."""
    started = time.monotonic()
    while True:
        report = status(env, command)
        if report.get("worker") and (ready is None or ready()):
            return report["worker"]
        waited = time.monotonic() - started
        if (report.get("unsupported") or {}).get("holds") or waited > START_TIMEOUT:
            no_worker(f"waited {waited:.0f} s for {what}", why_no_worker(env, command, report))
        time.sleep(0.2)


def wait_until(predicate, timeout: float, what: str, env=None, command=CONVCLI):
    """``predicate()``'s first true value, within ``timeout`` (START_TIMEOUT at most); the failure
    says what the worker serving ``env`` reports."""
    deadline = time.monotonic() + min(timeout, START_TIMEOUT)
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    account = f"; {why_no_worker(env, command)}" if env is not None else ""
    raise AssertionError(f"timed out after {min(timeout, START_TIMEOUT)} s waiting for {what}{account}")


def served(env) -> int:
    worker = status(env)["worker"]
    assert worker, f"the worker left: {why_no_worker(env)}"
    return worker["served"]


def make_env(runtime: Path, **extra) -> dict:
    """An environment whose workers live in ``runtime`` (a short path: a socket's is limited)."""
    runtime.mkdir(exist_ok=True)
    os.chmod(runtime, 0o700)
    env = {**os.environ, "CONVCLI_SERVER": "1", "XDG_RUNTIME_DIR": str(runtime), "CONVCLI_SERVER_IDLE": "600"}
    env.update(extra)
    return env


def stop_all(env) -> None:
    convcli("server", "stop", "--all", env=env)


@pytest.fixture()
def runtime():
    folder = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def env():
    """A private runtime folder with a warm worker in it (started as a user starts one: by a call)."""
    folder = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    env = make_env(folder)
    assert convcli("--version", env=env).returncode == 0  # in-process; starts the worker
    wait_for_worker(env)
    yield env
    worker = status(env)["worker"]
    stop_all(env)
    if worker:
        wait_until(lambda: not Path(f"/proc/{worker['pid']}").exists(), 30, "the worker to leave", env)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def cold(env):
    return {**env, "CONVCLI_SERVER": "0"}


def masked(text: bytes) -> str:
    """Output with the values that vary between runs (seconds) masked."""
    text = text.decode("utf-8", "surrogateescape")
    text = re.sub(r"\d+\.\d+ s\b", "<t> s", text)
    return re.sub(r'"seconds": [0-9.e+-]+', '"seconds": <t>', text)


CALLS = [
    ("convolve", SAMPLES / "photo.png", "-k", "sharpen", "-o", "{out}/sharp.png"),
    ("convolve", SAMPLES / "photo.png", "-k", "gaussian:sigma=2", "-o", "{out}/soft.png", "--json"),
    ("convolve", SAMPLES / "speech.wav", "-k", "lowpass:cutoff=1000", "-o", "{out}/low.wav", "--explain"),
    ("pool", SAMPLES / "photo.png", "--size", "3", "-o", "{out}/thirds.png"),
    ("pool", SAMPLES / "speech.wav", "--op", "max", "--abs", "--size", "160", "-o", "{out}/env.wav"),
    ("convolve", SAMPLES / "signal.npy", "-k", "1 2 1", "-o", "-"),
    ("shapes", "--size", "224", "--kernel", "11", "--stride", "4", "--padding", "2"),
    ("params", "--model", "alexnet"),
    ("kernels", "show", "sobel-x"),
    ("--help",),
    ("convolve", SAMPLES / "photo.png", "-k", "sharpn", "-o", "{out}/x.png"),  # exit 2, a suggestion
    ("convolve", "missing.png", "-k", "sharpen", "-o", "{out}/y.png"),  # exit 1
    ("nosuchcommand",),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda call: " ".join(map(str, call))[:60])
def test_worker_and_in_process_give_the_same_bytes_output_and_status(env, cold, tmp_path, call):
    results, outputs = {}, {}
    for name, environment in (("cold", cold), ("warm", env)):
        out = tmp_path / name
        out.mkdir()
        before = served(env)
        args = [str(a).replace("{out}", str(out)) for a in call]
        results[name] = convcli(*args, env=environment, cwd=tmp_path)
        outputs[name] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        assert served(env) == before + (name == "warm"), "the warm call was not served by the worker"
    cold_result, warm_result = results["cold"], results["warm"]
    assert warm_result.returncode == cold_result.returncode
    assert masked(warm_result.stdout).replace("/warm", "/cold") == masked(cold_result.stdout)
    assert masked(warm_result.stderr).replace("/warm", "/cold") == masked(cold_result.stderr)
    assert outputs["warm"] == outputs["cold"]


def test_stdin_umask_and_working_folder_travel(env, cold, tmp_path):
    data = (SAMPLES / "photo.png").read_bytes()
    modes = {}
    for name, environment in (("cold", cold), ("warm", env)):
        result = subprocess.run(
            ["sh", "-c", f"umask 077; {CONVCLI_LINE} convolve - -k box:3 -o {name}.png"],
            input=data,
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            timeout=call_timeout(environment),
        )
        assert result.returncode == 0, result.stderr
        modes[name] = (tmp_path / f"{name}.png").stat().st_mode & 0o777
    assert modes == {"cold": 0o600, "warm": 0o600}
    assert (tmp_path / "cold.png").read_bytes() == (tmp_path / "warm.png").read_bytes()


def test_a_call_longer_than_the_request_timeout_runs_to_its_end(env, cold, tmp_path):
    """The listener waits on the connection for as long as the command runs (here, for stdin)."""
    from convcli.server import worker

    data = (SAMPLES / "photo.png").read_bytes()
    for name, environment in (("cold", cold), ("warm", env)):
        call = subprocess.Popen(
            [*CONVCLI, "convolve", "-", "-k", "box:3", "-o", f"{name}.png"],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, cwd=tmp_path,
        )
        time.sleep(worker.REQUEST_TIMEOUT + 1.0)
        _, stderr = call.communicate(data, timeout=call_timeout(environment))
        assert call.returncode == 0, stderr
    assert (tmp_path / "cold.png").read_bytes() == (tmp_path / "warm.png").read_bytes()


def test_file_size_limit_travels(env, cold, tmp_path):
    """ulimit -f: the write fails the same way in both paths, and no partial file is left."""
    results = {}
    for name, environment in (("cold", cold), ("warm", env)):
        photo = SAMPLES / "photo.png"
        command = f"ulimit -f 8; {CONVCLI_LINE} convolve {photo} -k sharpen -o {name}.png"
        results[name] = subprocess.run(
            ["sh", "-c", command], env=environment, cwd=tmp_path, capture_output=True,
            timeout=call_timeout(environment),
        )
    assert results["warm"].returncode == results["cold"].returncode != 0
    assert masked(results["warm"].stderr).replace("warm", "cold") == masked(results["cold"].stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_status_reports_memory_idle_time_and_threading_layer(env):
    worker = status(env)["worker"]
    assert worker["memory"]["rss"] > 50 * 2**20
    # the spare shares the worker's pages, plus the few MiB its rehearsal made its own
    assert 0 < worker["memory"]["pss"] <= 1.25 * worker["memory"]["rss"]
    assert worker["idle_seconds"] >= 0 and worker["threading_layer"] == "tbb"
    text = convcli("server", "status", env=env, text=True).stdout
    assert f"pid {worker['pid']}" in text and "MiB resident" in text and "idle" in text


def test_concurrent_clients_each_get_their_own_child(env, tmp_path):
    before = served(env)
    processes = [
        subprocess.Popen(
            [
                *CONVCLI,
                "convolve",
                str(SAMPLES / "photo.png"),
                "-k",
                "sharpen",
                "-o",
                str(tmp_path / f"out{i}.png"),
                "--json",
            ],
            env=env,
            stdout=subprocess.PIPE,
        )
        for i in range(4)
    ]
    outputs = [process.communicate(timeout=START_TIMEOUT)[0] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4
    assert all(json.loads(output)["ok"] == 1 for output in outputs)
    assert served(env) == before + 4
    assert len({(tmp_path / f"out{i}.png").read_bytes() for i in range(4)}) == 1


def waiting_on_stdin(env, folder: Path) -> tuple[subprocess.Popen, int]:
    """A client whose command blocks reading stdin, and the pid of the child running it."""
    client = subprocess.Popen(
        [*CONVCLI, "convolve", "-", "-k", "sharpen", "-o", str(folder / "out.png")],
        env=env,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=folder,
    )
    client.stdin.write((SAMPLES / "photo.png").read_bytes()[:1000])
    client.stdin.flush()
    running = wait_until(lambda: wait_for_worker(env)["running"], 30, "the request to start", env)
    return client, running[0]


def test_a_killed_worker_child_gives_the_client_128_plus_n_and_a_clear_error(env, tmp_path):
    client, child = waiting_on_stdin(env, tmp_path)
    os.kill(child, signal.SIGKILL)
    client.wait(timeout=30)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 128 + signal.SIGKILL
    assert b"killed by SIGKILL" in stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_on_the_client_interrupts_the_command(env, tmp_path):
    client, child = waiting_on_stdin(env, tmp_path)
    client.send_signal(signal.SIGINT)
    client.wait(timeout=30)  # stdin stays open: the command can only end by the signal
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 130 and b"interrupted" in stderr
    assert list(tmp_path.iterdir()) == []
    wait_until(lambda: not Path(f"/proc/{child}").exists(), 10, "the child to end", env)


def test_sigterm_on_the_client_interrupts_the_command(env, tmp_path):
    client, _ = waiting_on_stdin(env, tmp_path)
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=30)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 130, stderr
    assert list(tmp_path.iterdir()) == []


def test_a_killed_client_stops_its_child_and_leaves_no_file(env, tmp_path):
    client, child = waiting_on_stdin(env, tmp_path)
    client.kill()
    client.wait(timeout=10)
    wait_until(lambda: not wait_for_worker(env)["running"], 30, "the child to stop", env)
    assert not Path(f"/proc/{child}").exists()
    client.stdin.close()
    assert list(tmp_path.iterdir()) == []


def test_a_caller_environment_read_at_import_is_served_in_process(env, tmp_path):
    before = served(env)
    # the call starts a worker for its own environment: let it leave soon after its warm-up
    other = {**env, "NUMBA_NUM_THREADS": "1", "CONVCLI_SERVER_IDLE": "1"}
    result = convcli("convolve", SAMPLES / "photo.png", "-k", "sharpen", "-o", tmp_path / "a.png", env=other)
    assert result.returncode == 0 and (tmp_path / "a.png").exists()
    assert served(env) == before


def test_the_worker_refuses_a_request_from_another_environment(env):
    key = status(env)["key"]
    path = protocol.worker_paths(protocol_runtime(env), key)["socket"]
    request = {"op": "run", "argv": ["--version"], "env": {**env, "NUMBA_OPT": "0"}, "umask": 0o22}
    reply = raw_request(path, request, fds=4)
    assert "refused" in reply and "environment" in reply["refused"]


def test_garbage_on_the_socket_does_not_hurt_the_worker(env, tmp_path):
    key = status(env)["key"]
    path = protocol.worker_paths(protocol_runtime(env), key)["socket"]
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(path)
        connection.sendall(b"\xff\xff\xff\xff not a message")
        try:
            assert connection.recv(100) == b""  # closed without an answer
        except ConnectionResetError:
            pass  # closed with our bytes unread
    before = served(env)
    assert convcli("--version", env=env).returncode == 0
    assert served(env) == before + 1


def protocol_runtime(env) -> str:
    return str(Path(env["XDG_RUNTIME_DIR"]) / "convcli")


def raw_request(path: str, request: dict, fds: int) -> dict:
    opened = [os.open(os.devnull, os.O_RDWR) for _ in range(fds - 1)] + [os.open(".", os.O_RDONLY)]
    try:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(path)
            protocol.send(connection, request, fds=opened)
            reply, _ = protocol.receive(connection)
    finally:
        for fd in opened:
            os.close(fd)
    return reply


@pytest.mark.parametrize("harm", ["loose socket", "foreign socket", "loose folder"])
def test_a_socket_or_folder_others_could_touch_is_not_used(env, tmp_path, harm):
    key = status(env)["key"]
    folder = Path(protocol_runtime(env))
    sock = Path(protocol.worker_paths(str(folder), key)["socket"])
    before = served(env)
    undo = {
        "loose socket": (lambda: os.chmod(sock, 0o777), lambda: os.chmod(sock, 0o700)),
        "foreign socket": (lambda: os.chown(sock, 65534, -1), lambda: os.chown(sock, os.getuid(), -1)),
        "loose folder": (lambda: os.chmod(folder, 0o755), lambda: os.chmod(folder, 0o700)),
    }[harm]
    if harm == "foreign socket" and os.getuid() != 0:
        pytest.skip("chown to another user needs root")
    undo[0]()
    try:
        result = convcli(
            "convolve", SAMPLES / "photo.png", "-k", "sharpen", "-o", tmp_path / "a.png", env=env
        )
        assert result.returncode == 0 and (tmp_path / "a.png").exists(), result.stderr
    finally:
        undo[1]()
    assert served(env) == before  # ran in-process


def test_a_stale_socket_is_ignored_and_replaced(tmp_path, runtime):
    env = make_env(runtime)
    assert convcli("--version", env=env).returncode == 0
    pid = wait_for_worker(env, "a worker")["pid"]
    key = status(env)["key"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, "the worker to die", env)
    sock = Path(protocol.worker_paths(protocol_runtime(env), key)["socket"])
    assert sock.exists()  # left behind by the killed worker
    result = convcli("convolve", SAMPLES / "photo.png", "-k", "sharpen", "-o", tmp_path / "a.png", env=env)
    assert result.returncode == 0, result.stderr
    new = wait_for_worker(env, "a new worker")
    assert new["pid"] != pid
    stop_all(env)


def test_two_workers_starting_at_once_leave_one_and_it_leaves_when_idle(tmp_path, runtime):
    env = make_env(runtime, CONVCLI_SERVER_IDLE="8")
    key = status(env)["key"]
    command = protocol.worker_command(key)
    first, second = (subprocess.Popen(command, env=env) for _ in range(2))
    loser = wait_until(
        lambda: [p for p in (first, second) if p.poll() is not None], 30, "one worker to yield", env
    )
    if len(loser) == 2:
        no_worker("both of two started at once left", why_no_worker(env))
    assert len(loser) == 1 and loser[0].returncode == 0
    winner = second if loser[0] is first else first
    worker = wait_for_worker(env, "the worker")
    assert worker["pid"] == winner.pid
    assert winner.wait(timeout=60) == 0  # idle for 8 s: gone
    assert not Path(protocol.worker_paths(protocol_runtime(env), key)["socket"]).exists()


def test_stop_ends_the_worker_and_calls_run_in_process(tmp_path, runtime):
    env = make_env(runtime)
    convcli("--version", env=env)
    pid = wait_for_worker(env, "a worker")["pid"]
    spares = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(spares) == 1, "a spare child waits for the next call"
    result = convcli("server", "stop", env=env, text=True)
    assert result.returncode == 0 and str(pid) in result.stdout
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 30, "the worker to leave", env)
    assert not Path(f"/proc/{spares[0]}").exists()
    assert convcli("server", "stop", env=env, text=True).stdout.strip() == "no worker was running"


def test_server_off_runs_in_process_and_starts_no_worker(tmp_path, runtime):
    env = make_env(runtime, CONVCLI_SERVER="0")
    assert convcli("--version", env=env).returncode == 0
    time.sleep(1)
    assert not list(runtime.glob("convcli/*"))
    report = status(env)
    assert report["enabled"] is False and "CONVCLI_SERVER=0" in report["why"]


def test_config_file_turns_the_worker_off(tmp_path):
    config = tmp_path / "config" / "convcli"
    config.mkdir(parents=True)
    (config / "server.conf").write_text("# no warm worker here\nenabled = no\nidle_timeout = 42\n")
    values = protocol.settings({"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert values == {"enabled": False, "idle_timeout": 42.0}
    values = protocol.settings({"XDG_CONFIG_HOME": str(tmp_path / "config"), "CONVCLI_SERVER": "1"})
    assert values["enabled"] is True


def test_a_full_runtime_folder_leaves_calls_working(tmp_path):
    """tmpfs without a free inode: no folder, lock or socket can be made; calls run in-process."""
    runtime = tmp_path / "full"
    runtime.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=1,mode=0700", "tmpfs", str(runtime)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        env = make_env(runtime)
        result = convcli(
            "convolve", SAMPLES / "photo.png", "-k", "sharpen", "-o", tmp_path / "a.png", env=env
        )
        assert result.returncode == 0 and (tmp_path / "a.png").exists(), result.stderr
        assert result.stderr.count(b"\n") == 1  # the clipped-values warning, nothing about the worker
        report = convcli("server", "status", env=env, text=True)
        assert report.returncode == 1 and "No space left" in report.stderr
    finally:
        subprocess.run(["umount", str(runtime)], check=True)


def test_an_installation_change_names_another_worker(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = protocol._tree_stamps(str(package))
    time.sleep(0.01)
    (package / "a.py").write_text("x = 2\n")
    assert protocol._tree_stamps(str(package)) != before
    assert protocol.installation_key({}) != protocol.installation_key({"NUMBA_OPT": "1"})
    per_call = {"CONVCLI_DEBUG": "1", "COLUMNS": "80", "CONVCLI_MAX_MEMORY": "16G", "CONVCLI_EXECUTOR": "x"}
    assert protocol.installation_key({}) == protocol.installation_key(per_call)


def test_a_worker_refuses_to_start_for_another_installation(tmp_path, runtime):
    env = make_env(runtime)
    result = subprocess.run(protocol.worker_command("0" * 24), env=env, timeout=60)
    assert result.returncode == 1
    assert not list(runtime.glob("convcli/*.sock"))


text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_the_clients_json_encoder_is_json(value):
    """The client writes JSON without the json module: json reads back every value it sends
    (lone surrogates of undecodable environment bytes included)."""
    import json

    assert json.loads(protocol.encode({"value": value})[4:]) == {"value": value}
    assert protocol._decode(protocol.encode({"value": value})[4:]) == {"value": value}


def test_the_posix_launcher_imports_only_the_client():
    """pip's entry-point wrapper imports re and runs a regex on every call (~6 ms); the script
    setup.py installs on POSIX starts the client and nothing else."""
    import ast

    launcher = Path(__file__).resolve().parents[1] / "convcli" / "server" / "convcli"
    tree = ast.parse(launcher.read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported == {"convcli.server.client"}
    assert launcher.read_text().startswith("#!python\n") and os.access(launcher, os.X_OK)
    # multiprocessing's spawn runs the main script again as __mp_main__ in each child (Dask's
    # nannies): the call must run only as __main__
    guarded = [node for node in tree.body if isinstance(node, ast.If)]
    assert len(guarded) == 1 and "__main__" in ast.unparse(guarded[0].test)
    assert not [node for node in tree.body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
