"""The ``convcli`` entry point: hand the call to a warm worker, or run it here.

Standard library only until it knows it must run in-process. With a worker of this installation
up, the call costs an interpreter start, a socket connect and a fork in the worker; its output
goes straight from the worker's child to our stdout/stderr (they are passed as descriptors), so
terminals, pipes, progress bars and ``-`` behave as in-process.
"""

from __future__ import annotations

import _signal
import _socket
import os
import sys

from convcli import server_protocol as protocol

STDIO_FDS = (0, 1, 2)


def main(missing_native_client: str | None = None) -> None:
    argv = sys.argv[1:]
    if missing_native_client:
        protocol.native_client_missing = missing_native_client
        _note_once_no_native_client(missing_native_client)
    config = protocol.settings()
    use_worker = bool(config["enabled"]) and protocol.supported() and not _runs_here(argv)
    key = _installation_key() if use_worker else None
    if key is not None:
        status = _via_worker(argv, key)
        if status is not None:
            _exit(status)
    _exit(_in_process(argv, key))


def _installation_key() -> str | None:
    try:
        return protocol.installation_key(os.environ)
    except OSError:
        return None


def _runs_here(argv: list[str]) -> bool:
    """``convcli server ...`` manages the worker itself, so it never goes through one."""
    words = [word for word in argv if not word.startswith("-")]
    return bool(words) and words[0] in protocol.IN_PROCESS_COMMANDS


# ---------------------------------------------------------------- through a worker


def _via_worker(argv: list[str], key: str) -> int | None:
    """The command's exit status as the worker ran it, or None when no worker took the call
    (none up, not ours, refused): then nothing has run, and the caller runs it in-process."""
    try:
        paths = protocol.worker_paths(protocol.runtime_dir(create=False), key)
    except OSError:
        return None
    if not protocol.socket_is_ours(paths["socket"]):
        return None
    closed = _hold_closed_stdio()
    status = _call_worker(argv, paths["socket"], closed)
    if status is None:
        for fd in closed:  # the call runs here: as closed as the caller left them
            os.close(fd)
    return status


def _hold_closed_stdio() -> list[int]:
    """Which of stdin, stdout and stderr the caller left closed, each now held by /dev/null: our
    socket or folder must never take such a slot and be handed to the command as one of the
    caller's streams. The request names them, and the child closes them again."""
    closed = []
    for fd in STDIO_FDS:
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        placeholder = os.open(os.devnull, os.O_RDWR)
        if placeholder != fd:
            os.dup2(placeholder, fd, inheritable=False)
            os.close(placeholder)
    return closed


def _call_worker(argv: list[str], socket_path: str, closed: list[int]) -> int | None:
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    cwd = None
    try:
        connection.settimeout(protocol.CONNECT_TIMEOUT)
        connection.connect(socket_path)
        if protocol.peer_uid(connection) != os.getuid():
            return None
        connection.settimeout(protocol.ACCEPT_TIMEOUT)
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        protocol.send(connection, _request(argv, closed), fds=[*STDIO_FDS, cwd])
        reply, _ = protocol.receive(connection)
    except (OSError, protocol.ProtocolError):
        connection.close()
        return None
    finally:
        if cwd is not None:
            os.close(cwd)
    if not reply or "accepted" not in reply:
        connection.close()
        return None
    return _follow(connection)


def _request(argv: list[str], closed: list[int]) -> dict:
    import resource

    mask = os.umask(0o022)
    os.umask(mask)
    limits = {}
    for name in protocol.RLIMITS:
        resource_id = getattr(resource, name, None)
        if resource_id is not None:
            limits[name] = resource.getrlimit(resource_id)
    return {
        "op": "run",
        "argv": argv,
        "env": dict(os.environ),
        "umask": mask,
        "rlimits": limits,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)),
        "pid": os.getpid(),
        "closed": closed,
    }


def _follow(connection: _socket.socket) -> int:
    """Pass our signals on to the child and wait for its exit status."""
    connection.settimeout(None)

    def forward(signum, _frame):
        try:
            protocol.send(connection, {"signal": signum})
        except OSError:
            pass

    for name in protocol.FORWARDED_SIGNALS:
        _signal.signal(getattr(_signal, name), forward)  # not 'signal': it imports enum (~3 ms)
    while True:
        try:
            message, _ = protocol.receive(connection)
        except (OSError, protocol.ProtocolError):
            message = None
        if message is None:
            _say(
                "error: the warm worker ended without reporting an exit status (was it killed?); "
                "CONVCLI_SERVER=0 runs commands in-process"
            )
            return 1
        if "status" in message:
            if message.get("error"):
                _say(f"error: {message['error']}")
            return int(message["status"])


# ---------------------------------------------------------------- in this process


def _in_process(argv: list[str], key: str | None) -> int:
    """Run the command here; then, with a key, start a worker for the next call."""
    import gc

    # A one-shot process: the cyclic collector would sweep the ~100k objects of the imports
    # several times (and once more at exit) to free next to nothing. Long loops (batches,
    # training) turn it back on once the imports are done (convcli.process.collect_cycles).
    gc.disable()
    from convcli.cli import run

    status = run(argv)
    _flush_stdio()
    if key is not None:
        _start_worker(key)
    return status


def _start_worker(key: str) -> None:
    """Start a worker in the background unless one is starting or cannot run here."""
    import fcntl

    try:
        paths = protocol.worker_paths(protocol.runtime_dir(), key)
        if protocol.unsupported_holds(paths["unsupported"], os.environ):
            return  # it could not run here, and nothing that could change that has changed
        with open(paths["lock"], "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: one is starting
    except OSError:
        return
    import subprocess

    try:
        subprocess.Popen(
            protocol.worker_command(key, protocol.launcher_folder()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    except OSError:
        pass


def _note_once_no_native_client(reason: str) -> None:
    """One note, at the first call of an installation built without its native client."""
    try:
        folder = protocol.runtime_dir()
        stamp = os.path.join(folder, f"no-native-client-{protocol.fnv1a(os.fsencode(sys.argv[0])):016x}")
        os.close(os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return  # said already (or nowhere to remember it: then stay quiet rather than say it each time)
    _say(
        f"note: this installation has no native client ({reason}), so each call pays for a Python "
        "start (~15 ms); with a C compiler (e.g. gcc), reinstalling convcli builds it. Said once."
    )


# ---------------------------------------------------------------- leaving


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _exit(status: int) -> None:
    """Leave without the interpreter's teardown (a full collection and module cleanup: ~0.25 s
    after the imports of a convolve). Every output was committed by its atomic write before
    ``run`` returned; atexit handlers still run."""
    import atexit

    _flush_stdio()
    atexit._run_exitfuncs()
    _flush_stdio()
    os._exit(protocol.exit_code(status))


def _say(text: str) -> None:
    try:
        os.write(2, f"convcli: {text}\n".encode("utf-8", "replace"))
    except OSError:
        pass
