"""A warm worker's child: becomes the caller's process (descriptors, folder, umask, environment,
limits, priority) and runs its command line exactly as ``convcli.cli.run`` does in-process.

What does not travel (documented in the README): the controlling terminal and process group
(Ctrl-Z stops the client, not the child), signals other than SIGINT/SIGTERM/SIGHUP, the stack
limit, cgroup and namespaces, and resource limits above the worker's own hard limits.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import resource
import signal
import socket
import sys
import tempfile
import threading

from convcli.cli import run
from convcli.io import files
from convcli.server import protocol


def run_request(connection: socket.socket, request: dict, fds: list[int], inherited: list[int]) -> None:
    status = 1
    try:
        _become_caller(request, fds, inherited, connection)
        done = threading.Event()
        threading.Thread(target=_listen, args=(connection, done), daemon=True).start()
        protocol.send(connection, {"accepted": os.getpid()})
        status = run(request["argv"])
        _flush()
        done.set()
        atexit._run_exitfuncs()
        _flush()
    except BaseException as error:  # noqa: BLE001 - a child must always end in os._exit
        with contextlib.suppress(Exception):
            os.write(2, f"convcli: error: warm worker: {error!r}\n".encode())
    finally:
        with contextlib.suppress(OSError):
            protocol.send(connection, {"status": status})
        os._exit(protocol.exit_code(status))


def _become_caller(request: dict, fds: list[int], inherited: list[int], connection: socket.socket) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd in inherited:
        if fd != connection.fileno():
            with contextlib.suppress(OSError):
                os.close(fd)
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.fchdir(fds[3])
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _new_stdio()
    os.umask(int(request.get("umask", 0o022)))
    files.refresh_umask()
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in request["env"].items()})
    tempfile.tempdir = None  # gettempdir() caches the worker's TMPDIR
    sys.argv = ["convcli", *request["argv"]]
    _take_limits(request)


def _new_stdio() -> None:
    """Text streams over the caller's descriptors, made as the interpreter makes them at start:
    the worker's encoding (its locale is the caller's: part of the key), stdout line-buffered
    on a terminal only, stderr always line-buffered."""
    old = sys.__stdout__
    encoding = getattr(old, "encoding", None) or "utf-8"
    errors = getattr(old, "errors", None) or "strict"
    stdin = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding, errors=errors, newline="\n"
    )
    stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding=encoding,
        errors=errors,
        newline="\n",
        line_buffering=os.isatty(1),
    )
    stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding=encoding,
        errors="backslashreplace",
        newline="\n",
        line_buffering=True,
    )
    sys.stdin = sys.__stdin__ = stdin
    sys.stdout = sys.__stdout__ = stdout
    sys.stderr = sys.__stderr__ = stderr


def _take_limits(request: dict) -> None:
    for name, (soft, hard) in (request.get("rlimits") or {}).items():
        if name not in protocol.RLIMITS or not hasattr(resource, name):
            continue
        resource_id = getattr(resource, name)
        own_hard = resource.getrlimit(resource_id)[1]
        hard = min(hard, own_hard, key=_limit_order)  # a child cannot raise its hard limit
        soft = min(soft, hard, key=_limit_order)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource_id, (soft, hard))
    nice = request.get("nice")
    if isinstance(nice, int):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    affinity = request.get("affinity")
    if affinity:
        with contextlib.suppress(OSError, ValueError):
            os.sched_setaffinity(0, affinity)


def _limit_order(limit: int) -> float:
    return float("inf") if limit == resource.RLIM_INFINITY else limit


def _listen(connection: socket.socket, done: threading.Event) -> None:
    """The client's forwarded signals; its disappearance interrupts the command (exit 130, no
    partial files), as closing a terminal would."""
    while True:
        try:
            message, _ = protocol.receive(connection)
        except (OSError, protocol.ProtocolError):
            message = None
        if done.is_set():
            return
        if message is None:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signum = message.get("signal")
        if signum in {getattr(signal, name) for name in protocol.FORWARDED_SIGNALS}:
            os.kill(os.getpid(), signum)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
