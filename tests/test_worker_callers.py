"""The warm worker under odd callers: closed standard streams behave exactly as in-process (the
client's own socket is never handed in as one of them), no message or connection, however
malformed, slow or idle, kills or stalls the worker, children do not hold its lock, and a killed
worker's rehearsal folder is cleaned by the next one."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_server import CONVCLI, status, wait_for_worker
from test_worker_start import run

from convcli import server_protocol as protocol
from convcli.server import worker

pytestmark = pytest.mark.skipif(not protocol.supported(), reason="the warm worker needs Linux")

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
NATIVE = Path(sys.executable).with_name(protocol.COMMAND)


def native_client_installed() -> bool:
    try:
        return NATIVE.read_bytes()[:4] == b"\x7fELF"
    except OSError:
        return False


@pytest.fixture(scope="module")
def warm():
    """A private runtime folder with a worker up in it."""
    folder = private_folder()
    env = {**os.environ, "CONVCLI_SERVER": "1", "XDG_RUNTIME_DIR": folder, "CONVCLI_SERVER_IDLE": "300"}
    assert run("--version", env=env).returncode == 0
    wait_for_worker(env)
    yield env
    run("server", "stop", "--all", env=env)
    shutil.rmtree(folder, ignore_errors=True)


def private_folder() -> str:
    folder = tempfile.mkdtemp(prefix="cc-", dir="/tmp")  # short: a socket's path is limited
    os.chmod(folder, 0o700)
    return folder


def served(env) -> int:
    return status(env)["worker"]["served"]


def socket_path(env) -> str:
    folder = os.path.join(env["XDG_RUNTIME_DIR"], "convcli")
    return protocol.worker_paths(folder, status(env)["key"])["socket"]


# ---------------------------------------------------------------- closed standard streams

ODD_CALLS = [
    ("--version", ">&-"),
    ("--version", "<&- >&- 2>&-"),
    ("shapes --size 28 --kernel 5", ">&-"),
    ("shapes --size 28 --kernel 5", "<&-"),
    ("shapes --size 28 --kernel x", "2>&-"),
    ("shapes --size 28 --kernel x", ">&-"),
    ("shapes -", "<&-"),
    ("convolve - -k box:3 -o -", "<&-"),
    (f"convolve {SAMPLES / 'signal.npy'} -k moving-average:3 -o - --force", "<&- 2>&-"),
    (f"convolve {SAMPLES / 'signal.npy'} -k moving-average:3 -o -", ">&-"),
]


def clients() -> list[list[str]]:
    found = [CONVCLI]
    if native_client_installed():
        found.append([str(NATIVE)])
    return found


@pytest.mark.parametrize("client", clients(), ids=lambda c: "native" if len(c) == 1 else "python")
@pytest.mark.parametrize("args, redirections", ODD_CALLS)
def test_a_caller_with_closed_streams_gets_what_in_process_gives(warm, client, args, redirections):
    line = f"{' '.join(client)} {args} {redirections}"

    def call(server: str) -> tuple[bytes, bytes, int]:
        env = {**warm, "CONVCLI_SERVER": server}
        result = subprocess.run(["bash", "-c", line], env=env, capture_output=True, timeout=120)
        return result.stdout, result.stderr, result.returncode

    before = served(warm)
    assert call("1") == call("0")
    assert served(warm) == before + 1  # the worker took the warm call


DIRECTORY_STREAMS = [
    (f"convolve {SAMPLES / 'signal.npy'} -k moving-average:3 -o out.npy --force -q", "< ."),
    (f"convolve {SAMPLES / 'signal.npy'} -k moving-average:3 -o out.npy --force -q", "1< ."),
    ("shapes --size 28 --kernel x", "2< ."),
    ("convolve - -k box:3 -o -", "< ."),
    (f"convolve {SAMPLES / 'signal.npy'} -k moving-average:3 -o -", "1< ."),
]


@pytest.mark.skipif(not native_client_installed(), reason="the native client was not built (no C compiler)")
@pytest.mark.parametrize("args, redirections", DIRECTORY_STREAMS)
def test_a_directory_as_a_stream_is_a_closed_one_warm_and_in_process(warm, tmp_path, args, redirections):
    """Python cannot start with a directory as stdin, stdout or stderr ('Fatal Python error:
    init_sys_streams'): the native client holds such a stream as closed, so the call runs, warm and
    in-process alike, and only reading or writing that stream is refused, in one line."""
    line = f"{NATIVE} {args} {redirections}"

    def call(server: str) -> tuple[bytes, bytes, int]:
        env = {**warm, "CONVCLI_SERVER": server}
        result = subprocess.run(["bash", "-c", line], env=env, capture_output=True, timeout=120, cwd=tmp_path)
        return result.stdout, result.stderr, result.returncode

    before = served(warm)
    warm_call, in_process = call("1"), call("0")
    assert warm_call == in_process
    assert b"Fatal Python error" not in in_process[1] and in_process[2] in (0, 1, 2)
    assert served(warm) == before + 1


# ---------------------------------------------------------------- malformed, slow and idle clients


def nested(depth: int) -> bytes:
    body = b"[" * depth + b"]" * depth
    return protocol.HEADER.pack(len(body)) + body


@pytest.mark.parametrize(
    "garbage",
    [
        nested(100_000),  # deeper than the interpreter's stack
        protocol.HEADER.pack(protocol.MAX_MESSAGE + 1),
        protocol.HEADER.pack(2) + b"{}" + b"trailing",
        protocol.encode({"op": "run", "argv": [1, None], "env": {}}),
        protocol.encode({"op": "run", "argv": ["--version"], "env": {"A": 1}}),
        protocol.encode({"op": ["not", "hashable"]}),
        b"\x00\x00\x00\x05[1,2]",
    ],
    ids=["deep", "huge", "trailing", "argv", "env", "op", "list"],
)
def test_no_message_kills_the_worker(warm, garbage):
    pid = status(warm)["worker"]["pid"]
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(10)
        connection.connect(socket_path(warm))
        connection.sendall(garbage)
        try:
            reply = connection.recv(1 << 16)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    if reply:
        assert b"refused" in reply or b"unknown" in reply
    assert status(warm)["worker"]["pid"] == pid
    assert run("--version", env=warm).returncode == 0


def test_an_idle_or_slow_client_does_not_hold_up_the_others(warm):
    idle = [socket.socket(socket.AF_UNIX) for _ in range(3)]
    slow = socket.socket(socket.AF_UNIX)
    try:
        for connection in [*idle, slow]:
            connection.connect(socket_path(warm))
        slow.sendall(protocol.encode({"op": "status"})[:3])  # and the rest later
        started = time.monotonic()
        before = served(warm)
        assert run("--version", env=warm).returncode == 0
        # an accept loop that read each request in turn would wait out each idle client
        assert time.monotonic() - started < worker.REQUEST_TIMEOUT * 3
        assert served(warm) == before + 1
        slow.sendall(protocol.encode({"op": "status"})[3:])
        slow.settimeout(10)
        reply, _ = protocol.receive(slow)
        assert reply["pid"] == status(warm)["worker"]["pid"]
        # an idle client is let go after the request timeout, with nothing said
        idle[0].settimeout(worker.REQUEST_TIMEOUT + 10)
        assert idle[0].recv(10) == b""
    finally:
        for connection in [*idle, slow]:
            connection.close()


def test_a_child_does_not_hold_the_workers_lock(warm):
    """A child outliving a killed worker must not keep the next worker from starting."""
    reader, writer = os.pipe()
    env = {**warm}
    call = subprocess.Popen([*CONVCLI, "shapes", "-"], env=env, stdin=reader, stdout=subprocess.PIPE)
    os.close(reader)
    try:
        deadline = time.monotonic() + 30
        while not status(warm)["worker"]["running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        (child,) = status(warm)["worker"]["running"]
        lock = os.path.realpath(socket_path(warm)[: -len(protocol.SOCKET_SUFFIX)] + protocol.LOCK_SUFFIX)
        held = {os.path.realpath(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")}
        assert lock not in held
    finally:
        os.write(writer, b"Input(1, 28, 28); Conv2d(1, 8, 5)\n")
        os.close(writer)
        out, _ = call.communicate(timeout=60)
    assert call.returncode == 0 and b"8" in out


def test_a_killed_workers_rehearsal_folder_is_cleaned_by_the_next():
    folder = private_folder()
    env = {**os.environ, "CONVCLI_SERVER": "1", "XDG_RUNTIME_DIR": folder, "CONVCLI_SERVER_IDLE": "120"}
    try:
        assert run("--version", env=env).returncode == 0
        pid = wait_for_worker(env)["pid"]
        rehearsal = Path(socket_path(env)[: -len(protocol.SOCKET_SUFFIX)] + protocol.REHEARSAL_SUFFIX)
        assert rehearsal.is_dir() and any(rehearsal.iterdir())
        (rehearsal / "left-by-the-killed-worker").write_text("x")
        # another worker's folder, whose worker is gone too
        other = Path(folder) / "convcli" / f"{protocol.WORKER_PREFIX}{'0' * 24}{protocol.REHEARSAL_SUFFIX}"
        other.mkdir()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run("--version", env=env).returncode == 0
        wait_for_worker(env)
        assert not (rehearsal / "left-by-the-killed-worker").exists() and not other.exists()
    finally:
        run("server", "stop", "--all", env=env)
        shutil.rmtree(folder, ignore_errors=True)
