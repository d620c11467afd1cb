"""The warm worker: imports everything and loads the cached kernels once, then serves each call
in a forked child (started by the client with :func:`protocol.worker_command`).

One worker per installation key (see :func:`protocol.installation_key`): a lock file makes a
second one starting at the same time leave at once. The parent only accepts, forks and reaps;
it never runs a command, so a crash or a leak in one call cannot reach the next. It leaves when
it has been idle for the idle timeout, when its installation changes, or on
``convcli server stop`` (SIGTERM too). Its children finish the calls they are running.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from convcli import server_protocol as protocol
from convcli.server import child, warmup

REQUEST_TIMEOUT = 2.0  # connect -> request: the client sends it at once
MAX_CALL_FDS = 4  # stdin, stdout, stderr and the working folder
MAX_PENDING = 64  # connections whose request is still arriving; more are closed at once
CHECK_EVERY = 30.0  # seconds between checks that the installation did not change
WARM_NICE = 10  # the warm-up runs behind the user's own work


class Worker:
    def __init__(self, key: str, folder: str, launcher_folder: str | None = None):
        self.key = key
        self.folder = folder
        self.paths = protocol.worker_paths(folder, key)
        # where the native client of launcher_folder finds this worker's key
        self.entry = protocol.entry_path(folder, launcher_folder, os.environ) if launcher_folder else None
        self.idle_timeout = float(protocol.settings()["idle_timeout"])
        self.identity = protocol.identity_environment(os.environ)
        self.children: dict[int, socket.socket] = {}
        self.pending: dict[socket.socket, _Pending] = {}  # requests still arriving
        self.started = time.time()
        self.last_active = time.monotonic()
        self.served = 0
        self.stopping = False
        self.listener: socket.socket | None = None
        self.selector: selectors.BaseSelector | None = None
        self.wakeup: tuple[int, int] | None = None
        self.spare: tuple[int, socket.socket] | None = None  # a child forked ahead of its call
        self.rehearsal: Path | None = None  # the small inputs spares rehearse on
        self.lock: int | None = None  # held until it stops; no child may hold it after

    # ------------------------------------------------------------ life

    def run(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        self.lock = os.open(self.paths["lock"], flags, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.lock)
            return 0  # another worker of this installation is starting or running
        try:
            _remove_stale_rehearsals(self.folder, own=self.paths["rehearsal"])
            self.rehearsal = Path(self.paths["rehearsal"])
            self.rehearsal.mkdir(mode=0o700)
            return self._serve()
        finally:
            self._give_up_place()

    def _serve(self) -> int:
        self.listener = self._bind()  # before the warm-up: a full or broken folder fails fast
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice + WARM_NICE)
        try:
            warmup.warm_up(self.rehearsal)
        except warmup.Unsupported as problem:
            self._record_unsupported(problem.reason, problem.fix, problem.tried)
            return 0
        except Exception as error:  # noqa: BLE001 - said once in the record, not at every call
            self._record_unsupported(
                f"the warm-up failed: {type(error).__name__}: {error}",
                "run the call with CONVCLI_SERVER=0 and --debug to see it; calls run in-process meanwhile",
                [],
            )
            return 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths["unsupported"])  # an earlier verdict that no longer holds
        # back to the caller's priority where the system lets a process lower its nice value
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        import gc

        gc.collect()
        gc.freeze()  # the warm state is shared with every child: keep the collector off it
        self.last_active = time.monotonic()  # idle from now: a long warm-up is not idleness
        self.listener.listen(128)
        if self.entry:
            with contextlib.suppress(OSError):
                self._write(self.entry, self.key)
        self._loop()
        return 0

    def _give_up_place(self) -> None:
        """The socket, the entry, the rehearsal folder, then the lock: from then on a new worker
        of this installation may start (a call right after ``server stop`` starts one), while
        this one finishes the calls it runs. Once: the places may be the new worker's next."""
        if self.lock is None:
            return
        self._unlink_socket()
        if self.rehearsal is not None:
            shutil.rmtree(self.rehearsal, ignore_errors=True)
        os.close(self.lock)
        self.lock = None

    def _unlink_socket(self) -> None:
        """The socket, and the entry naming this worker unless a newer worker has taken it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paths["socket"])
        if self.entry:
            with contextlib.suppress(OSError), open(self.entry, encoding="ascii") as file:
                if file.read() == self.key:
                    os.unlink(self.entry)

    def _bind(self) -> socket.socket:
        path = self.paths["socket"]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # we hold the lock: whatever is there is a dead worker's
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o077)
        try:
            listener.bind(path)
        finally:
            os.umask(old_mask)
        return listener

    def _record_unsupported(self, reason: str, fix: str, tried: list[str]) -> None:
        self._write(self.paths["unsupported"], protocol.unsupported_record(reason, fix, tried, os.environ))

    def _write(self, path: str, text: str) -> None:
        temp = f"{path}.{os.getpid()}.tmp"
        with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)

    def _describe(self) -> dict:
        from convcli import __version__

        return {
            "pid": os.getpid(),
            "key": self.key,
            "version": __version__,
            "python": sys.executable,
            "socket": self.paths["socket"],
            "started": self.started,
            "idle_timeout": self.idle_timeout,
        }

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup = (read_end, write_end)
        signal.set_wakeup_fd(write_end)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
        for name in ("SIGTERM", "SIGINT", "SIGHUP"):
            signal.signal(getattr(signal, name), self._stop)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(read_end, selectors.EVENT_READ, "signal")
        next_check = time.monotonic() + CHECK_EVERY
        while not (self.stopping and not self.children):
            if self.spare is None and not self.stopping:
                self._fork_spare()
            timeout = self._idle_left()
            if timeout <= 0:
                self._stop()
                continue
            wait = min(timeout, max(0.0, next_check - time.monotonic()), self._pending_left())
            for selected, _ in self.selector.select(wait):
                if isinstance(selected.data, _Pending):
                    self._read(selected.data)
                elif selected.data == "accept" and not self.stopping:
                    self._accept()
                elif selected.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(read_end, 512)
            self._expire_pending()
            self._reap()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_EVERY
                if self._installation_changed():
                    self._stop()

    def _idle_left(self) -> float:
        if self.children or self.stopping:
            return CHECK_EVERY
        return self.idle_timeout - (time.monotonic() - self.last_active)

    def _installation_changed(self, environ: dict[str, str] = os.environ) -> bool:
        """Whether ``environ`` (the worker's own, or a native caller's) names another key."""
        try:
            return protocol.installation_key(environ) != self.key
        except OSError:
            return True

    def _stop(self, *_signal) -> None:
        """Stop accepting (the socket goes at once); leave when the running children are done."""
        if self.stopping:
            return
        self.stopping = True
        self._dismiss_spare()
        if self.selector is not None and self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
        for pending in list(self.pending.values()):
            self._drop(pending)  # their clients run in-process
        self._give_up_place()

    def _accept(self) -> None:
        """Take a connection; its request is read as it arrives (:meth:`_read`), so a slow or
        idle client never holds up the others, and is dropped after REQUEST_TIMEOUT."""
        try:
            connection, _ = self.listener.accept()
        except OSError:  # gone already, or out of descriptors: the client runs in-process
            return
        try:
            if protocol.peer_uid(connection) != os.getuid() or len(self.pending) >= MAX_PENDING:
                raise PermissionError
            connection.setblocking(False)
        except OSError:
            connection.close()
            return
        pending = _Pending(connection, time.monotonic() + REQUEST_TIMEOUT)
        self.pending[connection] = pending
        self.selector.register(connection, selectors.EVENT_READ, pending)

    def _read(self, pending: _Pending) -> None:
        try:
            data, fds, _flags, _address = socket.recv_fds(pending.connection, 1 << 16, MAX_CALL_FDS)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pending)
            return
        pending.fds.extend(fds)
        pending.data.extend(data)
        try:
            if not data or len(pending.fds) > MAX_CALL_FDS:
                raise protocol.ProtocolError("closed, or too many descriptors")
            request = protocol.complete_message(pending.data)
        except protocol.ProtocolError:
            self._drop(pending)  # every malformed message is a refusal, never the worker's end
            return
        if request is None:
            return  # more to come
        self._forget(pending)
        connection, fds = pending.connection, pending.fds
        try:
            connection.settimeout(REQUEST_TIMEOUT)  # for the answer: a client that reads none
            self._handle(connection, request, fds)
        except OSError:
            connection.close()
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _pending_left(self) -> float:
        if not self.pending:
            return CHECK_EVERY
        return max(0.0, min(p.deadline for p in self.pending.values()) - time.monotonic())

    def _expire_pending(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            self._drop(pending)

    def _forget(self, pending: _Pending) -> None:
        self.pending.pop(pending.connection, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(pending.connection)

    def _drop(self, pending: _Pending) -> None:
        self._forget(pending)
        pending.connection.close()
        for fd in pending.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        pending.fds.clear()

    def _handle(self, connection: socket.socket, request: dict, fds: list[int]) -> None:
        op = request.get("op")
        if op == "status":
            self._answer(connection, self._status())
        elif op == "stop":
            self._answer(connection, {"stopping": os.getpid()})
            self._stop()
        elif op == "run":
            self.last_active = time.monotonic()
            refusal = self._refusal(request, fds)
            if refusal:
                self._answer(connection, {"refused": refusal})
            else:
                self._dispatch(connection, request, fds)
        else:
            self._answer(connection, {"refused": f"unknown request {op!r}"})

    def _refusal(self, request: dict, fds: list[int]) -> str | None:
        if len(fds) != 4:
            return "a run request passes stdin, stdout, stderr and the working folder"
        argv, env = request.get("argv"), request.get("env")
        if not (isinstance(argv, list) and all(isinstance(word, str) for word in argv)):
            return "malformed request: argv is not a list of strings"
        if not (isinstance(env, dict) and all(isinstance(value, str) for value in env.values())):
            return "malformed request: env is not an object of strings"
        if protocol.identity_environment(request["env"]) != self.identity:
            return "the caller's environment differs in a variable read at import"
        if request.get("check_installation"):
            return self._native_refusal(request["env"])
        return None

    def _native_refusal(self, env: dict) -> str | None:
        """What the Python client checks before it connects, for the native client that cannot:
        the worker is on, and this environment's installation key is this worker's own."""
        if not protocol.settings(env)["enabled"]:
            return "the warm worker is turned off"
        return "another installation" if self._installation_changed(env) else None

    def _answer(self, connection: socket.socket, message: dict) -> None:
        with contextlib.suppress(OSError):
            protocol.send(connection, message)
        connection.close()

    def _dispatch(self, connection: socket.socket, request: dict, fds: list[int]) -> None:
        """Hand the call to the spare child, forked while the worker waited and rehearsing: a fork
        of the warm process costs ~4 ms, and a fresh child's first call ~12 ms more in copied and
        new pages, none of which the caller should wait for. A spare still rehearsing takes the
        call after the line it is running. With no spare (calls at the same time), fork now."""
        if self.spare is not None:
            (pid, channel), self.spare = self.spare, None
            try:
                protocol.send(channel, request, fds=[*fds, connection.fileno()])
            except OSError:
                self._end_spare(pid, channel)
            else:
                channel.close()
                self.served += 1
                self.children[pid] = connection
                return
        try:
            pid = os.fork()
        except OSError as error:
            self._answer(connection, {"refused": f"fork failed: {error}"})
            return
        if pid == 0:
            child.run_request(connection, request, fds, self._inherited_fds())  # never returns
        self.served += 1
        self.children[pid] = connection

    def _fork_spare(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            ours.close()
            child.wait_for_request(theirs, self._inherited_fds(), self.rehearsal)  # never returns
        theirs.close()
        self.spare = (pid, ours)

    def _dismiss_spare(self) -> None:
        if self.spare is not None:
            self._end_spare(*self.spare)
            self.spare = None

    def _end_spare(self, pid: int, channel: socket.socket) -> None:
        """Closing its channel ends a waiting spare; the kill covers one that is not waiting."""
        channel.close()
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def _inherited_fds(self) -> list[int]:
        """What the child must close: the lock (a child outliving a killed worker must not keep
        the next one from starting), the listener, the selector and the wakeup pipe."""
        fds = [self.listener.fileno(), *self.wakeup]
        if self.lock is not None:
            fds.append(self.lock)
        if hasattr(self.selector, "fileno"):
            fds.append(self.selector.fileno())
        fds.extend(c.fileno() for c in self.children.values())
        fds.extend(c.fileno() for c in self.pending)
        if self.spare is not None:
            fds.append(self.spare[1].fileno())
        return fds

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:
                self.spare[1].close()  # died waiting (an OOM kill, a stray signal): fork another
                self.spare = None
                continue
            connection = self.children.pop(pid, None)
            self.last_active = time.monotonic()
            if connection is None:
                continue
            if os.WIFSIGNALED(status):
                signum = os.WTERMSIG(status)
                name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else signum
                self._answer(
                    connection,
                    {
                        "status": 128 + signum,
                        "error": f"the warm worker's process running this command was killed by {name}",
                    },
                )
            else:
                connection.close()

    def _status(self) -> dict:
        return {
            **self._describe(),
            "served": self.served,
            "running": sorted(self.children),
            "idle_seconds": 0.0 if self.children else round(time.monotonic() - self.last_active, 1),
            "memory": _memory(self.spare[0] if self.spare else None),
            "threading_layer": warmup.threading_layer(),
        }


class _Pending:
    """A connection whose request is still arriving: its bytes and descriptors so far."""

    __slots__ = ("connection", "data", "deadline", "fds")

    def __init__(self, connection: socket.socket, deadline: float):
        self.connection = connection
        self.deadline = deadline
        self.data = bytearray()
        self.fds: list[int] = []


def _remove_stale_rehearsals(folder: str, own: str) -> None:
    """The rehearsal folders of workers that were killed before they could remove them: ours
    (we hold its lock), and any other whose worker's lock nobody holds."""
    shutil.rmtree(own, ignore_errors=True)
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        stale = [entry.path for entry in entries if entry.name.endswith(protocol.REHEARSAL_SUFFIX)]
    for path in stale:
        if path == own:
            continue
        lock = path[: -len(protocol.REHEARSAL_SUFFIX)] + protocol.LOCK_SUFFIX
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            shutil.rmtree(path, ignore_errors=True)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)  # its worker is gone
        except OSError:
            pass  # its worker is alive
        finally:
            os.close(fd)


def _memory(spare: int | None) -> dict:
    """The worker's resident set size, and the proportional set size of the worker and its
    waiting spare together in bytes (PSS counts each page shared between them once)."""
    sizes = {"rss": _proc_field("self", "status", "VmRSS")}
    for process in ("self", spare):
        if process is not None:
            sizes["pss"] = sizes.get("pss", 0) + _proc_field(process, "smaps_rollup", "Pss")
    return {name: size for name, size in sizes.items() if size}


def _proc_field(process: int | str, table: str, field: str) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{process}/{table}", encoding="ascii") as file:
        for line in file:
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) * 1024
    return 0


def _detach_stdio() -> None:
    """The warm-up's own output goes nowhere; each child gets its caller's streams."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: python -m convcli.server.worker KEY [LAUNCHER_FOLDER]", file=sys.stderr)
        return 2
    try:
        folder = protocol.runtime_dir()
    except OSError:
        return 1
    key = argv[0]
    _detach_stdio()
    try:
        if protocol.installation_key(os.environ) != key:
            # started by a client that sees another installation: never serve it
            return 1
        return Worker(key, folder, *argv[1:]).run()
    except OSError:
        return 1  # a full or unwritable runtime folder: callers keep running in-process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
