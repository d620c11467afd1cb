"""Where files go: format dispatch by extension or magic bytes, atomic writes.

Writes are atomic: data goes to a temporary file in the target folder, which is renamed over
the target only when complete, so a failed or interrupted run never leaves a partial file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from convcli import budget
from convcli.errors import InputError, OutputExistsError, UsageError

IMAGE_EXTENSIONS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
AUDIO_EXTENSIONS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
ARRAY_EXTENSIONS = {".npy": "NPY", ".npz": "NPZ", ".csv": "CSV", ".txt": "TXT"}
STDIO = "-"

# leading bytes -> extension, to recognise data piped on stdin
_MAGIC = [
    (b"\x89PNG", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
    (b"fLaC", ".flac"),
    (b"OggS", ".ogg"),
    (b"\x93NUMPY", ".npy"),
    (b"PK\x03\x04", ".npz"),
]


def kind_of(extension: str) -> str:
    """'image', 'audio' or 'array' for a file extension (with the dot); UsageError otherwise."""
    extension = extension.lower()
    if extension in IMAGE_EXTENSIONS:
        return "image"
    if extension in AUDIO_EXTENSIONS:
        return "audio"
    if extension in ARRAY_EXTENSIONS:
        return "array"
    known = ", ".join(sorted({*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS, *ARRAY_EXTENSIONS}))
    shown = extension or "(none)"
    raise UsageError(f"unknown file extension {shown!r}; known: {known}")


def sniff_extension(head: bytes) -> str:
    """The extension matching a file's first bytes (for stdin), or InputError."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    for magic, extension in _MAGIC:
        if head.startswith(magic):
            return extension
    raise InputError("stdin: unrecognised data (expected an image, audio or .npy/.npz stream)")


TEXT_EXTENSIONS = (".csv", ".txt")  # outputs that are readable on a terminal


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


PIPE_CHUNK = 1 << 20  # bytes copied at a time between a pipe and a temporary file


def spool_stdin() -> tuple[Path, str]:
    """stdin copied, a chunk at a time, to a temporary file (``TMPDIR``), and the extension its content
    looks like. A pipe can be read neither twice nor out of order, which decoders and a two-pass
    normalisation need; a file can, and memory stays bounded however long the input. The caller
    removes the file. On a terminal, say that we are waiting (a forgotten '< file' looks like a hang)."""
    if sys.stdin is None:
        raise InputError("stdin: closed (the caller gave no standard input to read '-' from)")
    if stdin_is_terminal():
        print("convcli: waiting for the input file on stdin ('-'); pipe or redirect it (< FILE), "
              "Ctrl-D ends it", file=sys.stderr, flush=True)
    fd, name = tempfile.mkstemp(prefix="convcli-stdin-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as spool:
            extension = None
            for chunk in read_bounded(sys.stdin.buffer, "stdin"):
                if extension is None:
                    extension = sniff_extension(chunk[:16])
                spool.write(chunk)
            if extension is None:
                raise InputError("stdin: empty input")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, extension



def read_bounded(stream, name: str) -> Iterator[bytes]:
    """``stream`` a chunk at a time, refused (budget error, exit 2) once it passes the memory
    budget: an endless or huge standard input is held to the budget a file's decoder is held to,
    and never fills the temporary folder it is spooled to."""
    limit = budget.limit("memory")
    total = 0
    while chunk := stream.read(min(PIPE_CHUNK, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            variable = budget.BUDGETS["memory"][0]
            raise budget.BudgetError(f"{name}: the input is larger than the memory budget of {limit:,} bytes "
                                     f"(set {variable} to raise it)")
        yield chunk


def input_is_audio_file(name: str) -> bool:
    return name != STDIO and Path(name).suffix.lower() in AUDIO_EXTENSIONS


def check_input_file(path: Path) -> None:
    """One clear line for a missing, non-regular or empty input file."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")


def check_can_write(path: Path, force: bool) -> None:
    """Refuse, before any work is done, an output that is not a regular file (a FIFO, a device, a
    folder, a symbolic link loop or to nothing: never replaced, even with ``force``), an existing
    output without ``force``, and an output in a folder that does not exist (usage errors but the
    existing output)."""
    check_regular(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path}: {OutputExistsError.MESSAGE}")
    if not path.parent.is_dir():
        raise UsageError(f"{path}: output folder {path.parent} does not exist")


def check_regular(path: Path) -> None:
    """Refuse an output path where something other than nothing or a regular file is."""
    what = non_regular(path)
    if what is not None:
        raise UsageError(f"{path}: the output is {what}; only a regular file is ever replaced")


def non_regular(path: Path) -> str | None:
    """What is at ``path`` when it is something other than nothing or a regular file (or a link to one)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing" if os.path.islink(path) else None
    except OSError as error:  # a symbolic link loop, a name too long, a path through a file...
        return f"unreachable ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@contextlib.contextmanager
def atomic_output(path: Path, *, force: bool = False, run_id: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the extension so encoders that choose the format by extension work.
    A batch's ``run_id`` goes into the name, so :func:`sweep_temporaries` can remove what a killed
    worker left behind.
    """
    path = Path(path)
    check_can_write(path, force)
    suffix = f".part{path.suffix}"
    tail = f".{run_id}." if run_id else "."
    stem = _fitting(path.stem, NAME_MAX - len(os.fsencode(f".{tail}{suffix}")) - TEMP_RANDOM)
    fd, temp_name = tempfile.mkstemp(prefix=f".{stem}{tail}", suffix=suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        what = non_regular(path)
        if what is not None:
            raise UsageError(f"{path}: the output became {what} while writing; it is not replaced")
        if not force:
            _link_new(temp, path)  # atomic: of two runs writing one new output, one is told it lost
            return
        replaced = _hold(path)
        os.replace(temp, path)
        _release_later(replaced)
    except Exception as error:
        _name_target(error, temp, str(path))
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows); a temporary name must fit too
TEMP_RANDOM = 8  # the characters mkstemp adds


def _fitting(stem: str, room: int) -> str:
    """``stem`` cut to ``room`` bytes: an output name near the limit still has a temporary name
    beside it, so an error names the user's file, never a temporary one."""
    encoded = os.fsencode(stem)
    return stem if len(encoded) <= room else os.fsdecode(encoded[: max(room, 1)])


def is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder; False for a path the system cannot even look at (a name too
    long, a loop), which the output checks then name (Path.is_dir raises for some of those)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _link_new(temp: Path, path: Path) -> None:
    """Give ``temp`` the name ``path`` only if nothing has it (a hard link fails on an existing
    name, where a check then a rename would let another run's file in between and replace it)."""
    appeared = f"{path}: output appeared while writing (use `force` to replace it)"
    try:
        os.link(temp, path)
    except FileExistsError:
        raise OutputExistsError(appeared) from None
    except OSError:  # a file system without hard links: the check, then the rename
        if path.exists():
            raise OutputExistsError(appeared) from None
        os.replace(temp, path)


# Descriptors on files that outputs replaced: the kernel frees a replaced file's pages when its
# last reference goes, ~9 ms for a minute of stereo audio (a page-cache truncate), and a warm
# worker's child sends the caller its exit status before it exits. Held, the old file goes with
# the process, after the answer. A few at a time: a long batch closes the oldest as it goes.
HELD_REPLACED = 4
_held: list[int] = []
_held_lock = threading.Lock()


def _hold(path: Path) -> int | None:
    """A descriptor on the file at ``path`` that is about to be replaced (POSIX: a file open on
    Windows cannot be replaced)."""
    if os.name != "posix":
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # nothing there, or not readable: nothing to hold


def _release_later(fd: int | None) -> None:
    if fd is None:
        return
    with _held_lock:
        _held.append(fd)
        oldest = _held.pop(0) if len(_held) > HELD_REPLACED else None
    if oldest is not None:
        os.close(oldest)


def release_held() -> None:
    """Close every held replaced file now (a warm worker, before its children inherit them)."""
    with _held_lock:
        held, _held[:] = list(_held), []
    for fd in held:
        os.close(fd)


def _name_target(error: Exception, temp: Path, target: str) -> None:
    """Make an encoder's error name the output the user asked for, not the temporary file
    (whose name the user never gave, and which is gone by the time they read the message)."""
    if isinstance(error, OSError) and error.filename is not None and Path(error.filename) == temp:
        error.filename = target
    temp_text = str(temp)
    error.args = tuple(a.replace(temp_text, target) if isinstance(a, str) else a for a in error.args)
    if isinstance(error, OSError) and error.strerror:
        error.strerror = error.strerror.replace(temp_text, target)


def sweep_temporaries(folder: Path, run_id: str) -> int:
    """Remove the temporary files of batch ``run_id`` left in ``folder`` (by a killed worker, or an
    attempt cancelled mid-write); return how many there were."""
    removed = 0
    for temp in Path(folder).glob(f".*.{run_id}.*.part*"):
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
            removed += 1
    return removed


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# os.umask can only be read by setting it: do that once at import, never while -j threads write files
_UMASK = _read_umask()


def refresh_umask() -> None:
    """Read the umask again: a warm worker's child takes on its caller's after the import."""
    global _UMASK
    _UMASK = _read_umask()


@contextlib.contextmanager
def stdout_output(extension: str) -> Iterator[Path]:
    """Like :func:`atomic_output` for ``-o -``: encode to a temporary file, then copy it to stdout."""
    fd, temp_name = tempfile.mkstemp(suffix=extension)
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        with temp.open("rb") as encoded:  # a chunk at a time: long audio stays out of memory
            shutil.copyfileobj(encoded, sys.stdout.buffer, PIPE_CHUNK)
        sys.stdout.buffer.flush()
    except Exception as error:
        _name_target(error, temp, "stdout")
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
