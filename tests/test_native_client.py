"""The native client (convcli/server/client.c): its request decodes to what the Python client
sends, every answer ends the call as the Python client ends it, anything else hands the call to
the Python client untouched, and a real warm worker serves it with the same bytes, output and
exit status as an in-process run."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server import (
    CALLS,
    START_TIMEOUT,
    call_timeout,
    make_env,
    masked,
    status,
    wait_for_worker,
    wait_until,
    why_no_worker,
)

import convcli.server
from convcli import server_protocol as protocol
from convcli.server import native_rules

COMPILER = shutil.which(os.environ.get("CC", "cc"))
pytestmark = pytest.mark.skipif(
    not protocol.supported() or COMPILER is None, reason="the native client is built on Linux with a compiler"
)
SOURCE = Path(convcli.server.__file__).with_name("client.c")
LAUNCHER = Path(convcli.server.__file__).with_name("convcli")
KEY = "0123456789abcdef01234567"
FALLBACK = b"the Python client ran with "


def build(folder: Path, python_client: str) -> Path:
    """The native client in ``folder`` (warnings are errors), and a Python client beside it."""
    native = folder / "convcli"
    (folder / native_rules.HEADER_NAME).write_text(native_rules.render(protocol))  # as setup.py does
    command = [COMPILER, "-O2", "-Wall", "-Wextra", "-Werror", "-I", folder, "-o", native, SOURCE]
    subprocess.run(command, check=True)
    (folder / "convcli-python").write_text(python_client)
    os.chmod(folder / "convcli-python", 0o755)
    return native


@pytest.fixture(scope="module")
def stub_native(tmp_path_factory) -> Path:
    """A native client whose Python client only says that it ran, and with how many arguments."""
    folder = tmp_path_factory.mktemp("stub")
    return build(folder, f'#!/bin/sh\nprintf "{FALLBACK.decode()}%s arguments" "$#"\n')


class FakeWorker:
    """A socket where a worker's would be, and the entry file naming it as a worker names it."""

    def __init__(self, base: Path, launcher_folder: Path):
        self.folder = base / "convcli"
        self.folder.mkdir(mode=0o700)
        self.launcher_folder = launcher_folder
        self.env = {"XDG_RUNTIME_DIR": str(base), "LANG": "C.UTF-8"}  # a locale Python keeps
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(protocol.worker_paths(str(self.folder), KEY)["socket"])
        self.listener.listen(4)
        self.listener.settimeout(30)
        self.serve(self.env)

    def serve(self, environ: dict[str, str]) -> Path:
        """Name this worker for callers whose environment (as Python sees it) is ``environ``."""
        for old in self.folder.glob("entry-*"):
            old.unlink()
        entry = Path(protocol.entry_path(str(self.folder), str(self.launcher_folder), environ))
        entry.write_text(KEY)
        os.chmod(entry, 0o600)
        return entry


@pytest.fixture()
def fake_worker(stub_native):
    base = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    os.chmod(base, 0o700)
    worker = FakeWorker(base, stub_native.parent)
    yield worker
    worker.listener.close()
    shutil.rmtree(base, ignore_errors=True)


def start(native: Path, args: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([native, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def take_request(listener) -> tuple[socket.socket, dict, list[int]]:
    connection, _ = listener.accept()
    connection.settimeout(30)
    request, fds = protocol.receive(connection, max_fds=8)
    for fd in fds:
        os.close(fd)
    return connection, request, fds


names = st.binary(min_size=1, max_size=8).filter(lambda b: b"=" not in b and b"\0" not in b)
# names the worker's identity takes, leaves out or reads per call (not the locale's: see below)
kinds = st.sampled_from([
    b"T_", b"NUMBA_", b"CONVCLI_", b"CONVCLI_MAX_", b"OMP_", b"OPENBLAS_", b"MKL_", b"TBB_", b"PYTHONX",
    b"CONVCLI_SERVER", b"CONVCLI_DEBUG", b"CONVCLI_EXECUTOR", b"NUMBA",
])
values = st.binary(max_size=12).filter(lambda b: b"\0" not in b)
arguments = st.lists(st.binary(max_size=10).filter(lambda b: b"\0" not in b), max_size=4)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one fake worker serves all
@given(st.dictionaries(st.tuples(kinds, names | st.just(b"")).map(b"".join), values, max_size=5), arguments)
def test_the_request_decodes_to_what_the_python_client_sends(stub_native, fake_worker, extra, args):
    """argv and the environment as Python's os.fsdecode gives them (undecodable bytes as lone
    surrogates, control characters, quotes, backslashes), and the caller's umask, limits,
    priority and CPUs. The client found the worker named for its identity variables (the same
    ones, hashed the same way). A refused call goes to the Python client with its arguments."""
    environment = {key.encode(): value.encode() for key, value in fake_worker.env.items()}
    environment |= {b"LANG": b"C.UTF-8"} | extra
    fake_worker.serve({os.fsdecode(key): os.fsdecode(value) for key, value in environment.items()})
    client = start(stub_native, args, environment)
    connection, request, fds = take_request(fake_worker.listener)
    with connection:
        protocol.send(connection, {"refused": "not in this test"})
    out, err = client.communicate(timeout=30)
    assert client.returncode == 0 and out == FALLBACK + f"{len(args)} arguments".encode(), err
    decode = os.fsdecode
    assert request["op"] == "run" and request["check_installation"] is True
    assert request["argv"] == [decode(arg) for arg in args]
    assert request["env"] == {decode(key): decode(value) for key, value in environment.items()}
    assert len(fds) == 4 and request["pid"] == client.pid
    mask = os.umask(0o022)
    os.umask(mask)
    limits = {name: list(resource.getrlimit(getattr(resource, name))) for name in protocol.RLIMITS}
    assert request["umask"] == mask and request["rlimits"] == limits
    assert request["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
    assert request["affinity"] == sorted(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "locale",
    [{}, {"LANG": "C"}, {"LC_CTYPE": "POSIX"}, {"LC_ALL": "C"}, {"LANG": "C.UTF-8"},
     {"LANG": "C", "PYTHONCOERCECLOCALE": "0"}],
    ids=["unset", "LANG=C", "LC_CTYPE=POSIX", "LC_ALL=C", "LANG=C.UTF-8", "coercion off"],
)
def test_the_environment_is_the_one_python_would_see_in_any_locale(stub_native, fake_worker, locale):
    """In the C locale Python's start adds LC_CTYPE=C.UTF-8 to its environment (PEP 538), and a
    worker started by the Python client has it: the native client sends the same."""
    import json

    environment = {**fake_worker.env, **locale}
    seen = subprocess.run([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                          env=environment, capture_output=True, text=True, check=True)
    fake_worker.serve(json.loads(seen.stdout))  # found by the name Python's environment gives
    client = start(stub_native, [], environment)
    connection, request, _ = take_request(fake_worker.listener)
    with connection:
        protocol.send(connection, {"refused": "not in this test"})
    client.communicate(timeout=30)
    assert request["env"] == json.loads(seen.stdout)


KILLED = "the warm worker's process running this command was killed by SIGKILL"
ENDED = (
    b"convcli: error: the warm worker ended without reporting an exit status (was it killed?); "
    b"CONVCLI_SERVER=0 runs commands in-process\n"
)


@pytest.mark.parametrize(
    ("answers", "status", "stderr"),
    [
        ([{"accepted": 7}, {"status": 0}], 0, b""),
        ([{"accepted": 7}, {"status": 3}], 3, b""),
        ([{"accepted": 7}, {"status": 137, "error": KILLED}], 137, f"convcli: error: {KILLED}\n".encode()),
        ([{"accepted": 7}, {"status": 1, "error": "é ✓ 𝄞 \"q\" \\ tab\t"}], 1,
         'convcli: error: é ✓ 𝄞 "q" \\ tab\t\n'.encode()),
        ([{"accepted": 7}, {"status": 300}], 1, b""),
        ([{"accepted": 7}], 1, ENDED),
    ],
    ids=["ok", "status", "killed", "unicode error", "out of range", "ended"],
)
def test_the_answers_end_the_call_as_the_python_client_ends_it(stub_native, fake_worker, answers, status,
                                                                stderr):
    client = start(stub_native, ["--help"], fake_worker.env)
    connection, _, _ = take_request(fake_worker.listener)
    with connection:
        for answer in answers:
            protocol.send(connection, answer)
    out, err = client.communicate(timeout=30)
    assert (client.returncode, out, err) == (status, b"", stderr)


@pytest.mark.parametrize(
    "answer",
    [{"refused": "another installation"}, None, {"status": 0}],
    ids=["refused", "closed", "no accept"],
)
def test_a_call_not_accepted_goes_to_the_python_client(stub_native, fake_worker, answer):
    client = start(stub_native, ["convolve", "a b", "-k", "x"], fake_worker.env)
    connection, _, _ = take_request(fake_worker.listener)
    with connection:
        if answer is not None:
            protocol.send(connection, answer)
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0 and out == FALLBACK + b"4 arguments"


def test_signals_are_forwarded_to_the_command(stub_native, fake_worker):
    client = start(stub_native, ["--help"], fake_worker.env)
    connection, _, _ = take_request(fake_worker.listener)
    with connection:
        protocol.send(connection, {"accepted": 7})
        forwarded = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            client.send_signal(signum)
            forwarded.append(protocol.receive(connection)[0])
        protocol.send(connection, {"status": 130})
    client.wait(timeout=30)
    assert client.returncode == 130
    assert forwarded == [{"signal": int(s)} for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]


@pytest.mark.parametrize(
    "setting",
    [{"CONVCLI_SERVER": " Off\n"}, {"CONVCLI_SERVER": "FALSE"}, {"CONVCLI_SERVER": "0"}, "server",
     "loose folder", "no entry", "loose entry"],
)
def test_without_a_trusted_worker_the_python_client_takes_the_call(stub_native, fake_worker, setting):
    """Turned off, a 'server' command, or a folder or entry file others could write: the socket
    is never used (the fake worker would see a connection)."""
    env, folder = fake_worker.env, fake_worker.folder
    entry = fake_worker.serve(env)
    args = ["shapes", "--size", "8"]
    if setting == "server":
        args = ["server", "status"]
    elif setting == "loose folder":
        os.chmod(folder, 0o755)
    elif setting == "no entry":
        entry.unlink()
    elif setting == "loose entry":
        os.chmod(entry, 0o666)
    else:
        env = {**env, **setting}
    client = start(stub_native, args, env)
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0 and out == FALLBACK + f"{len(args)} arguments".encode()
    fake_worker.listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        fake_worker.listener.accept()


def test_entry_files_are_named_by_fnv1a_of_the_folder_and_the_identity():
    """The hash client.c computes; the tests above reach the fake worker through this name."""
    assert protocol.fnv1a(b"") == 0xCBF29CE484222325  # FNV-1a's offset basis and test vectors
    assert protocol.fnv1a(b"a") == 0xAF63DC4C8601EC8C and protocol.fnv1a(b"foobar") == 0x85944171F73967E8
    plain = protocol.entry_path("/f", "/bin", {"HOME": "/h", "CONVCLI_DEBUG": "1"})
    folder_only = protocol.fnv1a(b"/bin" + bytes(1))
    assert plain == f"/f/entry-{folder_only:016x}.key"
    assert protocol.entry_path("/f", "/bin", {"LC_ALL": "C"}) != plain


# ---------------------------------------------------------------- with a real worker


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The native client with the real Python client beside it, and a worker it started."""
    folder = tmp_path_factory.mktemp("bin")
    native = build(folder, LAUNCHER.read_text().replace("#!python", f"#!{sys.executable}", 1))
    runtime = Path(tempfile.mkdtemp(prefix="cc-", dir="/tmp"))
    env = make_env(runtime)
    first = subprocess.run([native, "--version"], env=env, capture_output=True, timeout=START_TIMEOUT)
    assert first.returncode == 0, first.stderr  # no worker: the Python client ran it, and starts one
    entry = Path(protocol.entry_path(str(runtime / "convcli"), str(folder), env))
    wait_for_worker(env, "the worker to name itself for the native client", entry.exists, [native])
    yield native, env, entry
    subprocess.run([native, "server", "stop", "--all"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(runtime, ignore_errors=True)


def served(native: Path, env: dict) -> int:
    worker = status(env, [native])["worker"]
    assert worker, f"the worker left: {why_no_worker(env, [native])}"
    return worker["served"]


@pytest.mark.parametrize("call", CALLS, ids=lambda call: " ".join(map(str, call))[:60])
def test_the_worker_serves_the_native_client_as_in_process(real, tmp_path, call):
    native, env, _ = real
    results, outputs = {}, {}
    for name, environment in (("cold", {**env, "CONVCLI_SERVER": "0"}), ("warm", env)):
        out = tmp_path / name
        out.mkdir()
        before = served(native, env)
        args = [str(a).replace("{out}", str(out)) for a in call]
        results[name] = subprocess.run([native, *args], env=environment, cwd=tmp_path, capture_output=True,
                                       timeout=call_timeout(environment))
        outputs[name] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        assert served(native, env) == before + (name == "warm"), "the warm call was not served by the worker"
    cold, warm = results["cold"], results["warm"]
    assert warm.returncode == cold.returncode
    assert masked(warm.stdout).replace("/warm", "/cold") == masked(cold.stdout)
    assert masked(warm.stderr).replace("/warm", "/cold") == masked(cold.stderr)
    assert outputs["warm"] == outputs["cold"]


def test_an_undecodable_argument_reads_the_same_through_the_worker(real, tmp_path):
    native, env, _ = real
    name = os.fsencode(tmp_path) + b"/\xff\xfe caf\xc3\xa9.png"
    results = [
        subprocess.run([native, b"convolve", name, b"-k", b"sharpen", b"-o", b"x.png"], env=environment,
                       cwd=tmp_path, capture_output=True, timeout=call_timeout(environment))
        for environment in ({**env, "CONVCLI_SERVER": "0"}, env)
    ]
    assert results[0].returncode == results[1].returncode == 1
    assert results[0].stderr == results[1].stderr and b"\\udcff\\udcfe caf\xc3\xa9.png" in results[0].stderr


def test_another_environment_is_refused_and_runs_in_process(real, tmp_path):
    """Another identity finds no entry of its own: the Python client runs it and starts that
    identity's worker, which names itself apart (this worker's entry stays)."""
    native, env, entry = real
    before = served(native, env)
    other = {**env, "NUMBA_OPT": "0"}
    result = subprocess.run([native, "shapes", "--size", "28", "--kernel", "5"], env=other,
                            capture_output=True, timeout=START_TIMEOUT)
    assert result.returncode == 0 and b"24" in result.stdout
    assert served(native, env) == before
    other_entry = Path(protocol.entry_path(str(entry.parent), str(native.parent), other))
    wait_for_worker(other, "the other worker's entry", other_entry.exists, [native])
    assert entry.exists() and other_entry != entry
    subprocess.run([native, "server", "stop"], env=other, capture_output=True, timeout=60)
    wait_until(lambda: not other_entry.exists(), 30, "the other worker to leave", other, [native])
    assert entry.exists()


def test_the_worker_checks_the_installation_of_a_native_call():
    from convcli.server.worker import Worker

    folder = tempfile.mkdtemp(prefix="cc-", dir="/tmp")
    try:
        on = {**os.environ, "CONVCLI_SERVER": "1"}
        key = protocol.installation_key(on)
        assert Worker(key, folder)._native_refusal(on) is None
        assert Worker("f" * 24, folder)._native_refusal(on) == "another installation"
        off = {**on, "CONVCLI_SERVER": "no"}
        assert Worker(key, folder)._native_refusal(off) == "the warm worker is turned off"
    finally:
        shutil.rmtree(folder)


def test_status_says_whether_the_native_client_finds_the_worker(real):
    import json

    native, env, entry = real
    result = subprocess.run([native, "server", "status", "--json"], env=env, capture_output=True, timeout=60)
    report = json.loads(result.stdout)["native_client"]
    assert report == {"command": str(native), "entry": str(entry), "finds_worker": True}
    text = subprocess.run([native, "server", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert f"native client: {native} (finds this worker)" in text.stdout


def test_a_stopped_worker_takes_its_entry_with_it(real):
    native, env, entry = real
    assert len(entry.read_text()) == 24  # the worker's key
    result = subprocess.run([native, "server", "stop"], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0
    wait_until(lambda: not entry.exists(), 30, "the entry to go", env, [native])
    result = subprocess.run([native, "--version"], env=env, capture_output=True, timeout=START_TIMEOUT)
    assert result.returncode == 0  # in-process again, and a new worker names itself
    wait_for_worker(env, "a new worker's entry", entry.exists, [native])


def test_the_native_client_carries_no_rule_of_its_own():
    """Which worker serves a call is decided in protocol.py; client.c takes it from the header
    setup.py generates, so no identity variable, off-word or file name is spelled in C."""
    source = SOURCE.read_text()
    rules = [
        *protocol.IDENTITY_PREFIXES, *protocol.IDENTITY_NAMES, *protocol.READ_PER_CALL,
        *protocol.READ_PER_CALL_PREFIXES, *protocol.IN_PROCESS_COMMANDS, protocol.PYTHON_CLIENT,
        protocol.FALLBACK_RUNTIME_PREFIX, protocol.WORKER_PREFIX, protocol.ENTRY_PREFIX,
        *protocol.RLIMITS,
    ]
    assert [rule for rule in rules if f'"{rule}"' in source] == []
    # ("0" is spelled for PYTHONCOERCECLOCALE=0: PEP 538's rule, the interpreter's, not ours)
    assert [word for word in protocol.FALSE_WORDS - {"0"} if f'"{word}"' in source] == []
    header = native_rules.render(protocol)
    assert all(f'"{rule}"' in header for rule in rules) and f'"{protocol.COMMAND}"' in header


def test_setup_builds_the_native_client_with_the_generated_rules(tmp_path):
    """setup.py's own path: the rules rendered from protocol.py loaded by its file, as the build
    loads it (no convcli import), compile with the client."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_build_protocol", Path(protocol.__file__))
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert native_rules.render(loaded) == native_rules.render(protocol)
    assert build(tmp_path, "#!/bin/sh\n").stat().st_size > 0
