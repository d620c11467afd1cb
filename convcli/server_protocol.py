"""What the client and the worker agree on: where the socket lives, which installation and
environment a worker serves, the settings, and how messages are framed.

A base module, below the warm worker (``convcli.server``, which runs CLI command lines) and the
CLI (whose ``convcli server`` command reads the same settings and asks the worker): both import
it, neither imports the other's way round (docs/design/layers.md). setup.py loads this file by
its path to build the native client.

Standard library only, and only the cheap parts of it: every ``convcli`` call runs this.
Messages are JSON objects behind a 4-byte length; nothing is ever unpickled from the socket.
The client side avoids the ``json``, ``socket`` and ``signal`` modules (``re`` and ``enum`` come
with them: ~10 ms of a ~13 ms interpreter start); the worker decodes with ``json``.
"""

from __future__ import annotations

import _socket
import os
import stat
import struct
import sys

# CONVCLI_SERVER=0 (or off/no/false) runs every call in-process; the config file says the same
# with 'enabled = no'. CONVCLI_SERVER_IDLE / 'idle_timeout' is how long an idle worker stays up.
ENABLE_VARIABLE = "CONVCLI_SERVER"
IDLE_VARIABLE = "CONVCLI_SERVER_IDLE"
DEFAULT_IDLE_SECONDS = 300.0
CONFIG_NAME = os.path.join("convcli", "server.conf")
FALSE_WORDS = {"0", "off", "no", "false"}

# Variables read once, when a module is imported (Numba's config, thread pools, the interpreter's
# own options, the locale of the standard streams): a worker started under other values would
# behave differently from an in-process run, so they are part of the worker's identity.
# Variables read at each call (CONVCLI_DEBUG, CONVCLI_EXECUTOR, COLUMNS, NO_COLOR...) travel
# with the request instead.
IDENTITY_PREFIXES = ("NUMBA_", "CONVCLI_", "OMP_", "OPENBLAS_", "MKL_", "TBB_", "PYTHON", "LC_")
IDENTITY_NAMES = {"LANG"}
READ_PER_CALL = {ENABLE_VARIABLE, IDLE_VARIABLE, "CONVCLI_DEBUG", "CONVCLI_EXECUTOR"}
READ_PER_CALL_PREFIXES = ("CONVCLI_MAX_",)  # the budgets (convcli/budget.py) are read at every check

# The names both clients use: the command, the Python client the native one runs for every call
# it does not hand to a worker, the commands that never go through a worker, where sockets live.
COMMAND = "convcli"
PYTHON_CLIENT = "convcli-python"
LAUNCHERS = (COMMAND, PYTHON_CLIENT)  # the installed commands (setup.py)
IN_PROCESS_COMMANDS = ("server",)  # 'convcli server ...' manages the worker itself
RUNTIME_NAME = "convcli"  # $XDG_RUNTIME_DIR/convcli, else FALLBACK_RUNTIME_PREFIX + uid
FALLBACK_RUNTIME_PREFIX = "/tmp/convcli-"
WORKER_PREFIX, SOCKET_SUFFIX, LOCK_SUFFIX, REHEARSAL_SUFFIX = "worker-", ".sock", ".lock", ".rehearsal"
ENTRY_PREFIX, ENTRY_SUFFIX = "entry-", ".key"
CONNECT_TIMEOUT = 2  # seconds: a worker accepts in microseconds; a hung one must not hang the call
ACCEPT_TIMEOUT = 10  # seconds from connect to the child's "accepted": a fork, even on a loaded machine
MAX_REPLY = 1 << 20  # what a client reads of one answer

# the client's resource limits the forked child takes on (as far as the worker's hard limits allow)
RLIMITS = ("RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_NOFILE", "RLIMIT_CORE")
# signals the client passes on to the child that runs its command
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

# the interpreter options that change behaviour (not safe_path: the worker runs with -P)
INTERPRETER_FLAGS = (
    "optimize",
    "dont_write_bytecode",
    "no_user_site",
    "no_site",
    "ignore_environment",
    "verbose",
    "bytes_warning",
    "hash_randomization",
    "isolated",
    "dev_mode",
    "utf8_mode",
    "int_max_str_digits",
)

HEADER = struct.Struct(">I")
MAX_MESSAGE = 16 * 1024 * 1024  # an environment and argv fit with room to spare


def exit_code(status: int) -> int:
    """A status a process can exit with (0-255); anything else is a failure."""
    return status if 0 <= status <= 255 else 1


class ProtocolError(Exception):
    """The other side sent something that is not a message of this protocol."""


# ---------------------------------------------------------------- settings


def settings(environ: dict[str, str] | None = None) -> dict[str, object]:
    """``enabled`` and ``idle_timeout``: the environment overrides the config file."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {"enabled": True, "idle_timeout": DEFAULT_IDLE_SECONDS}
    values.update(_config_file(environ))
    if ENABLE_VARIABLE in environ:
        values["enabled"] = environ[ENABLE_VARIABLE].strip().lower() not in FALSE_WORDS
    if IDLE_VARIABLE in environ:
        values["idle_timeout"] = _seconds(environ[IDLE_VARIABLE], values["idle_timeout"])
    return values


def config_path(environ: dict[str, str]) -> str:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, CONFIG_NAME)


def _config_file(environ: dict[str, str]) -> dict[str, object]:
    """``key = value`` lines (``#`` comments); unknown keys and bad values are ignored."""
    try:
        with open(config_path(environ), encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError:
        return {}
    values: dict[str, object] = {}
    for line in lines:
        key, _, value = line.split("#", 1)[0].partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if key == "enabled" and value:
            values["enabled"] = value not in FALSE_WORDS
        elif key == "idle_timeout" and value:
            values["idle_timeout"] = _seconds(value, DEFAULT_IDLE_SECONDS)
    return values


def _seconds(text: str, default) -> float:
    try:
        value = float(text)
    except ValueError:
        return default
    return value if value > 0 else default


# ---------------------------------------------------------------- identity


def identity_environment(environ: dict[str, str]) -> dict[str, str]:
    """The part of an environment a worker must share with its clients."""
    return {
        name: value
        for name, value in environ.items()
        if (name.startswith(IDENTITY_PREFIXES) or name in IDENTITY_NAMES)
        and name not in READ_PER_CALL
        and not name.startswith(READ_PER_CALL_PREFIXES)
    }


def installation_key(environ: dict[str, str]) -> str:
    """A short digest of everything a worker's behaviour depends on: the interpreter and its
    options, convcli's source files and kernel library (paths, sizes, modification times), the
    folders holding its dependencies (pip changes them when it installs or removes a package),
    and the identity environment. A change to any of them names another socket, so a stale
    worker is never reached."""
    from _blake2 import blake2b  # hashlib would pull in OpenSSL: ~3 ms on every call

    parts = [
        os.path.realpath(sys.executable),
        sys.version,
        repr([getattr(sys.flags, name) for name in INTERPRETER_FLAGS]),
        repr(sys.warnoptions),
        repr(sorted(sys._xoptions.items())),
        repr(sorted(identity_environment(environ).items())),
    ]
    parts.extend(_tree_stamps(_package_dir()))
    parts.extend(_tree_stamps(_filters_dir()))
    for folder in _dependency_dirs():
        parts.append(f"{folder} {os.stat(folder).st_mtime_ns}")
    return blake2b("\n".join(parts).encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


def worker_command(key: str, launcher_folder: str | None = None) -> list[str]:
    """How to start the worker for ``key``: this interpreter with this process's options, and the
    convcli package this process runs (a source checkout's when ``python -m convcli`` runs from
    one, which is not the installed package a plain ``-m`` from elsewhere would import), never the
    caller's working folder on the path (-P). ``launcher_folder``: where the ``convcli`` command
    that started it lives; the worker names itself there for the native client
    (:func:`entry_path`)."""
    import subprocess

    boot = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from convcli.server.worker import main; sys.exit(main(sys.argv[1:]))"
    )
    flags = subprocess._args_from_interpreter_flags()
    launcher = [launcher_folder] if launcher_folder else []
    return [sys.executable, *flags, "-P", "-c", boot, os.path.dirname(_package_dir()), key, *launcher]


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _filters_dir() -> str | None:
    """The kernel library: inside the package when installed, beside it in a source checkout."""
    for folder in (
        os.path.join(_package_dir(), "filters"),
        os.path.join(os.path.dirname(_package_dir()), "filters"),
    ):
        if os.path.isdir(folder):
            return folder
    return None


def _tree_stamps(root: str | None) -> list[str]:
    """Path, size and modification time of each file under ``root`` (caches left out), in a
    fixed order. Every Python-client call and every native call pays for this: scandir's entries,
    not os.walk's joined paths (~1 ms -> ~0.5 ms for convcli's ~100 files)."""
    stamps: list[str] = []
    if root is not None:
        _add_stamps(root, stamps)
    return stamps


def _add_stamps(folder: str, stamps: list[str]) -> None:
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        name = entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                if name != "__pycache__" and not name.startswith("."):
                    _add_stamps(entry.path, stamps)
            elif entry.is_file() and not name.endswith((".pyc", ".nbi", ".nbc")):
                info = entry.stat()
                stamps.append(f"{entry.path} {info.st_size} {info.st_mtime_ns}")
        except OSError:
            continue


def _dependency_dirs() -> list[str]:
    """The sys.path folders that hold numba and numpy (site-packages, usually one)."""
    found = []
    for entry in sys.path:
        if (
            entry
            and entry not in found
            and any(os.path.isdir(os.path.join(entry, package)) for package in ("numba", "numpy"))
        ):
            found.append(entry)
    return found


# ---------------------------------------------------------------- places

# why the native client was not built, where setup.py could not build it: the Python client's
# launcher hands it to the client's main, and 'convcli server status' (run in that same process,
# IN_PROCESS_COMMANDS) reports it
native_client_missing: str | None = None


def launcher_folder() -> str | None:
    """The folder of the installed command running this call, where the native client looks for
    its worker (:func:`entry_path`); None under ``python -m convcli``."""
    path = sys.argv[0] if sys.argv else ""
    if os.path.basename(path) not in LAUNCHERS:
        return None
    return os.path.dirname(os.path.realpath(path))



def runtime_dir(create: bool = True) -> str:
    """The private folder of this user's sockets: $XDG_RUNTIME_DIR/convcli, else /tmp/convcli-UID.

    Raises ``PermissionError`` when the folder is not ours alone (another owner, a symlink, or
    group/other permissions): then nothing may be trusted there, and the caller runs in-process.
    """
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and _private(base, uid):
        folder = os.path.join(base, RUNTIME_NAME)
    else:
        folder = f"{FALLBACK_RUNTIME_PREFIX}{uid}"
    if create:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
    if not _private(folder, uid):
        raise PermissionError(f"{folder}: not a private folder of user {uid} (owner or mode)")
    return folder


def _private(path: str, uid: int) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077


def worker_paths(folder: str, key: str) -> dict[str, str]:
    """The files of the worker for ``key``: its socket, its start lock, and the reason it cannot
    run here when it found one (clients then stop starting it while :func:`unsupported_holds`)."""
    stem = os.path.join(folder, f"{WORKER_PREFIX}{key}")
    return {
        "socket": stem + SOCKET_SUFFIX,
        "lock": stem + LOCK_SUFFIX,
        "unsupported": stem + ".unsupported",
        "rehearsal": stem + REHEARSAL_SUFFIX,  # the small inputs its spare children rehearse on
    }


# ---------------------------------------------------------------- a worker that cannot run

# A worker that cannot run here records why; clients stop starting it (each try costs a
# warm-up) until the record is this old, or until what could change the verdict changes: the
# installation and the identity variables (both in the key, so a new record is consulted), or
# these variables, which steer the loader that finds TBB.
RECHECK_SECONDS = 3600.0
RECHECK_VARIABLES = ("LD_LIBRARY_PATH", "LD_PRELOAD")


def unsupported_record(reason: str, fix: str, tried: list[str], environ: dict[str, str]) -> str:
    """The text of a worker's ``unsupported`` file: the fingerprint of the loader's variables on
    the first line (read without ``json`` by every client that would start a worker), then the
    record as JSON: what failed, what fixes it, what was tried, and when it is tried again."""
    import json
    import time

    now = time.time()
    record = {"reason": reason, "fix": fix, "tried": tried}
    record.update(checked=now, recheck_after=now + RECHECK_SECONDS)
    return _loader_fingerprint(environ) + "\n" + json.dumps(record) + "\n"


def unsupported_holds(path: str, environ: dict[str, str]) -> bool:
    """Whether the record at ``path`` still stands for a caller with ``environ``: written for the
    same loader variables less than :data:`RECHECK_SECONDS` ago."""
    import time

    try:
        with open(path, encoding="utf-8") as file:
            fingerprint = file.readline().rstrip("\n")
            age = time.time() - os.fstat(file.fileno()).st_mtime
    except (OSError, ValueError):
        return False
    return fingerprint == _loader_fingerprint(environ) and 0 <= age < RECHECK_SECONDS


def read_unsupported(path: str, environ: dict[str, str]) -> dict | None:
    """The record at ``path`` with ``holds`` (:func:`unsupported_holds`), or None."""
    import json

    try:
        with open(path, encoding="utf-8") as file:
            file.readline()
            record = json.loads(file.read())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return {**record, "holds": unsupported_holds(path, environ)}


def _loader_fingerprint(environ: dict[str, str]) -> str:
    text = "\0".join(f"{name}={environ.get(name, '')}" for name in RECHECK_VARIABLES)
    return f"{fnv1a(os.fsencode(text)):016x}"


def entry_path(folder: str, launcher_folder: str, environ: dict[str, str]) -> str:
    """The file naming the key of the worker that serves the ``convcli`` commands installed in
    ``launcher_folder`` for callers with ``environ``'s identity (a caller with ``LC_ALL=C`` has a
    worker of its own). The native client (client.c) cannot compute an installation key, so it
    finds its worker by this name: an FNV-1a hash of the folder and the identity variables, as
    bytes, sorted by name. The worker checks each such call's installation key before it runs."""
    data = os.fsencode(launcher_folder) + b"\0"
    variables = sorted((os.fsencode(k), os.fsencode(v)) for k, v in identity_environment(environ).items())
    data += b"".join(name + b"=" + value + b"\0" for name, value in variables)
    return os.path.join(folder, f"{ENTRY_PREFIX}{fnv1a(data):016x}{ENTRY_SUFFIX}")


def fnv1a(data: bytes) -> int:
    """FNV-1a, 64 bits: a hash both clients compute the same way in a few lines."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def socket_is_ours(path: str) -> bool:
    """A socket file owned by this user that nobody else may write to."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def peer_uid(connection: _socket.socket) -> int:
    """The user id of the process at the other end (SO_PEERCRED: pid, uid, gid)."""
    creds = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def supported() -> bool:
    """fork, Unix sockets, descriptor passing and peer credentials: Linux has them all."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and hasattr(_socket, "AF_UNIX")
        and hasattr(_socket, "SCM_RIGHTS")
        and hasattr(_socket, "SO_PEERCRED")
        and hasattr(_socket.socket, "sendmsg")
    )


# ---------------------------------------------------------------- framing


def encode(message: dict) -> bytes:
    body = _json(message).encode("ascii")
    return HEADER.pack(len(body)) + body


def send(connection: _socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = encode(message)
    if fds:
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        data = data[connection.sendmsg([data], rights) :]
    if data:  # an empty send to a peer that has answered and closed would raise EPIPE
        connection.sendall(data)


def receive(connection: _socket.socket, *, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message (None at end of stream) and the descriptors that came with it."""
    fds: list[int] = []
    if max_fds:
        import socket  # the worker's side: it has imported it anyway

        head, fds, _flags, _address = socket.recv_fds(connection, HEADER.size, max_fds)
    else:
        head = connection.recv(HEADER.size)
    if not head:
        _close_all(fds)
        return None, []
    try:
        head += _exactly(connection, HEADER.size - len(head))
        (length,) = HEADER.unpack(head)
        if length > MAX_MESSAGE:
            raise ProtocolError(f"message of {length} bytes")
        return _decode(_exactly(connection, length)), fds
    except BaseException:
        _close_all(fds)
        raise


def complete_message(data: bytes | bytearray) -> dict | None:
    """The message ``data`` holds, or None while it is incomplete; anything that is not exactly
    one message of this protocol raises :class:`ProtocolError`."""
    if len(data) < HEADER.size:
        return None
    (length,) = HEADER.unpack_from(data)
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes")
    if len(data) < HEADER.size + length:
        return None
    if len(data) > HEADER.size + length:
        raise ProtocolError("bytes after the message")
    return _decode(bytes(data[HEADER.size :]))


def _decode(body: bytes) -> dict:
    # the two answers every call gets, read without importing json
    for key in ("accepted", "status"):
        prefix = b'{"' + key.encode() + b'":'
        number = body[len(prefix) : -1]
        if body.startswith(prefix) and body.endswith(b"}") and number.isdigit():
            return {key: int(number)}
    import json

    try:
        message = json.loads(body.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError) as error:  # RecursionError: nesting deeper than the stack
        raise ProtocolError(str(error)) from error
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json(value) -> str:
    """JSON text of None, bools, ints, finite floats, strings, lists, tuples and dicts, all ASCII
    (other characters, lone surrogates of undecodable bytes included, as \\u escapes)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(_json_string(str(k)) + ":" + _json(v) for k, v in value.items()) + "}"
    raise TypeError(f"cannot send a {type(value).__name__}")


def _json_string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    out = []
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return '"' + "".join(out) + '"'


def _exactly(connection: _socket.socket, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = connection.recv(size)
        if not chunk:
            raise ProtocolError("connection closed inside a message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
