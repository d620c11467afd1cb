"""A warm worker's child: becomes the caller's process (descriptors, folder, umask, environment,
limits, priority) and runs its command line exactly as ``convcli.cli.run`` does in-process.

What does not travel (documented in the README): the controlling terminal and process group
(Ctrl-Z stops the client, not the child), signals other than SIGINT/SIGTERM/SIGHUP, the stack
limit, cgroup and namespaces, and resource limits above the worker's own hard limits.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import io
import os
import resource
import select
import signal
import socket
import sys
import tempfile
from pathlib import Path

from convcli import server_protocol as protocol
from convcli.cli import run
from convcli.io import files
from convcli.server import warmup


def wait_for_request(channel: socket.socket, inherited: list[int], rehearsal: Path) -> None:
    """A spare child: drop the worker's descriptors and handlers at once, rehearse (until a call
    comes), then take the call the worker hands over: its request, the caller's descriptors and
    the connection."""
    _leave_worker(inherited, keep=channel.fileno())
    with contextlib.suppress(Exception):
        warmup.rehearse(rehearsal, stop=lambda: bool(select.select([channel], [], [], 0)[0]))
    for name in ("SIGTERM", "SIGHUP"):  # neither the worker's stop handler nor a rehearsal's
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        request, fds = protocol.receive(channel, max_fds=5)
    except (OSError, protocol.ProtocolError):
        request, fds = None, []
    channel.close()
    if request is not None and len(fds) == 5:
        run_request(socket.socket(fileno=fds[4]), request, fds[:4], [])  # never returns
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    os._exit(0 if request is None else 1)  # let go by the worker, or handed a malformed call


def run_request(connection: socket.socket, request: dict, fds: list[int], inherited: list[int]) -> None:
    status = 1
    try:
        _become_caller(request, fds, inherited, connection)
        _listen(connection)
        protocol.send(connection, {"accepted": os.getpid()})
        status = run(request["argv"])
        _flush()
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # the command is done: nothing to interrupt
        atexit._run_exitfuncs()
        _flush()
    except BaseException as error:  # noqa: BLE001 - a child must always end in os._exit
        with contextlib.suppress(Exception):
            os.write(2, f"convcli: error: warm worker: {error!r}\n".encode())
    finally:
        with contextlib.suppress(OSError):
            protocol.send(connection, {"status": status})
        os._exit(protocol.exit_code(status))


def _leave_worker(inherited: list[int], keep: int) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for fd in inherited:
        if fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _become_caller(request: dict, fds: list[int], inherited: list[int], connection: socket.socket) -> None:
    _leave_worker(inherited, keep=connection.fileno())
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.fchdir(fds[3])
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    closed = {fd for fd in request.get("closed") or [] if fd in (0, 1, 2)}
    for fd in closed:  # the caller left it closed (its client held the slot with /dev/null)
        os.close(fd)
    _new_stdio(closed)
    os.umask(int(request.get("umask", 0o022)))
    files.refresh_umask()
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in request["env"].items()})
    tempfile.tempdir = None  # gettempdir() caches the worker's TMPDIR
    sys.argv = ["convcli", *request["argv"]]
    _take_limits(request)


def _new_stdio(closed: set[int]) -> None:
    """Text streams over the caller's descriptors, made as the interpreter makes them at start:
    the worker's encoding (its locale is the caller's: part of the key), stdout line-buffered
    on a terminal only, stderr always line-buffered, and None for a descriptor the caller left
    closed."""
    old = sys.__stdout__ or sys.__stderr__
    encoding = getattr(old, "encoding", None) or "utf-8"
    errors = getattr(old, "errors", None) or "strict"
    stdin = None if 0 in closed else io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding=encoding, errors=errors, newline="\n"
    )
    stdout = None if 1 in closed else io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
        encoding=encoding,
        errors=errors,
        newline="\n",
        line_buffering=os.isatty(1),
    )
    stderr = None if 2 in closed else io.TextIOWrapper(
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


def _listen(connection: socket.socket) -> None:
    """Take the client's forwarded signals, and its disappearance, which interrupts the command
    (exit 130, no partial files) as closing a terminal would. They arrive as SIGIO on the
    connection (O_ASYNC), not on a thread: starting one measured 0.5-18 ms on a busy machine
    (Thread.start waits for a scheduler round; the GIL hand-over after it, up to 9 ms more).
    Either way a signal reaches the command between two Python steps."""
    fd = connection.fileno()
    connection.settimeout(None)  # the worker's request timeout must not reach this connection

    forwarded = {getattr(signal, name) for name in protocol.FORWARDED_SIGNALS}

    def on_io(_signum, _frame) -> None:
        while True:  # signals do not queue: one SIGIO may stand for several messages
            try:
                waiting = connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return  # nothing (more) to read: SIGIO also reports the connection writable
            except OSError:
                waiting = b""
            try:
                message = protocol.receive(connection)[0] if waiting else None  # one small send each
            except (OSError, protocol.ProtocolError):
                message = None
            if message is None:
                signal.signal(signal.SIGIO, signal.SIG_IGN)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if message.get("signal") in forwarded:
                os.kill(os.getpid(), message["signal"])

    signal.signal(signal.SIGIO, on_io)
    fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)
    on_io(signal.SIGIO, None)  # what came before O_ASYNC was set


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
