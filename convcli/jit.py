"""Numba as convcli uses it: kernels import ``njit``/``prange`` from here, which installs the
compile notice before any of them can compile.

The first call after an install or an upgrade compiles the kernels it needs (seconds each) into
Numba's cache; every later process loads them in milliseconds. That wait must never be silent:
the first compile of a convcli kernel prints one line on stderr at once, then, on a terminal, a
live line naming the kernel and the seconds so far (refreshed four times a second), elsewhere
one line per kernel when it is done. ``CONVCLI_COMPILE_NOTICE=0`` turns it off (the test suite
does, so that outputs compare equal on a machine whose cache is cold).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time


def _load_blas_module_alone() -> None:
    """Numba's first dispatch loads ``numba.np.arraymath``, whose BLAS probe imports
    ``scipy.linalg.cython_blas``. Through its package that costs ~85 ms of a cold call: the
    import runs ``scipy/linalg/__init__`` (the whole linalg API) and scipy's array-API layer,
    whose ``from numpy import *`` loads numpy.f2py, numpy.testing and unittest. The probe needs
    the extension module only: loaded by itself and put in ``sys.modules``, the probe's import
    finds it there. ``scipy.linalg`` still imports in full wherever it is used, and takes this
    very module. Anything unexpected leaves the import to Numba, as before."""
    name = "scipy.linalg.cython_blas"
    if name in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import importlib.machinery
        import importlib.util

        scipy = importlib.util.find_spec("scipy")  # finds the package folder, imports nothing
        folders = list(scipy.submodule_search_locations or []) if scipy else []
        for folder in folders:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "linalg", "cython_blas" + suffix)
                if os.path.isfile(path):
                    spec = importlib.util.spec_from_file_location(name, path)
                    module = importlib.util.module_from_spec(spec)
                    sys.modules[name] = module
                    spec.loader.exec_module(module)
                    return
    except Exception:  # noqa: BLE001 - an optimisation: Numba's own import path still works
        sys.modules.pop(name, None)


_load_blas_module_alone()


# Numba's tbbpool extension needs TBB's runtime under this name, and has no RPATH to find it
TBB_DISTRIBUTION = "tbb"
TBB_RUNTIME = {"linux": "libtbb.so.12", "win32": "tbb12.dll", "darwin": "libtbb.12.dylib"}
TBB_MIN_INTERFACE = 12060  # Numba's own floor: TBB 2021 update 6


class TbbUnavailable(Exception):
    """TBB's runtime could not be loaded; the message names what was tried."""


def load_tbb() -> str:
    """Load the TBB runtime that this environment's ``tbb`` distribution installed; the path loaded.

    Numba's TBB threading layer (the one that survives a fork: the warm worker needs it) is an
    extension linked against ``libtbb.so.12`` with no RPATH, and pip's ``tbb`` wheel puts that
    library in ``<prefix>/lib``: on no loader path in a venv or a ``--user`` install. Loaded here
    first, by the path the distribution's own file list gives, the extension's dependency is met
    by the library already in the process (the loader matches its soname). Where the distribution
    has no such file (conda ships TBB as a conda package), the loader's own search is tried, as
    Numba would. Raises :class:`TbbUnavailable` naming every place tried and why it failed."""
    import ctypes

    name = TBB_RUNTIME.get("linux" if sys.platform.startswith("linux") else sys.platform)
    if name is None:
        raise TbbUnavailable(f"no TBB runtime name is known for {sys.platform}")
    tried: list[str] = []
    for path in [*_distribution_files(name, tried), name]:
        try:
            library = ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        except OSError as error:
            tried.append(f"{path}: {error}")
            continue
        version = _tbb_interface_version(library)
        if version is not None and version < TBB_MIN_INTERFACE:
            tried.append(f"{path}: TBB interface {version}, older than the {TBB_MIN_INTERFACE} Numba needs")
            continue
        return path
    raise TbbUnavailable("; ".join(tried))


def _distribution_files(name: str, tried: list[str]) -> list[str]:
    """The paths of ``name`` in the installed ``tbb`` distribution's own file list (RECORD)."""
    from importlib import metadata

    try:
        distribution = metadata.distribution(TBB_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        tried.append(f"no '{TBB_DISTRIBUTION}' distribution is installed in {sys.prefix}")
        return []
    paths = [
        os.path.realpath(distribution.locate_file(file))
        for file in distribution.files or []
        if file.name == name
    ]
    found = [path for path in paths if os.path.isfile(path)]
    if not found:
        where = ", ".join(paths) or "its file list names none"
        tried.append(f"'{TBB_DISTRIBUTION}' {distribution.version} installed no {name} ({where})")
    return found


def _tbb_interface_version(library) -> int | None:
    try:
        function = library.TBB_runtime_interface_version
    except AttributeError:
        return None
    import ctypes

    function.argtypes = []
    function.restype = ctypes.c_int
    return int(function())

from numba import config, njit, prange, uint64  # noqa: E402 - after the BLAS module
from numba.core import event  # noqa: E402

__all__ = ["FMA_ONLY", "SERIAL_BELOW", "config", "njit", "parallel_kernel", "prange", "uint64"]

# Work (elements, or multiply-adds) below which a parallel kernel's serial twin runs: threads do
# not pay for themselves on ~1 ms of work, and a process whose calls are all small (the README's
# first command on a 256² photo) never compiles Numba's parallel machinery, whose first compile in
# a process costs ~2.3 s on top of each kernel's own (measured: a trivial prange loop 2.9 s first,
# 0.6 s second, 0.27 s serial).
SERIAL_BELOW = 1 << 20


class KernelPair:
    """A ``parallel=True`` kernel and its serial twin (the same function: ``prange`` runs as
    ``range``), each with its own name in Numba's cache; :meth:`pick` chooses by the work."""

    def __init__(self, function, options: dict):
        self.parallel = njit(cache=True, parallel=True, **options)(function)
        self.serial = njit(cache=True, **options)(_renamed(function, "_serial"))

    def pick(self, work: int):
        return self.serial if work < SERIAL_BELOW else self.parallel


def parallel_kernel(**options):
    """``@njit(cache=True, parallel=True, **options)``, with a serial twin: see :class:`KernelPair`."""
    return lambda function: KernelPair(function, options)


def _renamed(function, suffix: str):
    """A copy of ``function`` under another name (Numba's cache files are named after it)."""
    import types

    code = function.__code__.replace(
        co_name=function.__name__ + suffix, co_qualname=function.__qualname__ + suffix
    )
    twin = types.FunctionType(code, function.__globals__, code.co_name, function.__defaults__,
                              function.__closure__)
    twin.__qualname__, twin.__module__, twin.__doc__ = code.co_qualname, function.__module__, function.__doc__
    return twin

# fastmath for the filtering kernels: fused multiply-adds only. No reassociation, so a column's
# rounding does not depend on whether it falls in the vectorized body or the scalar tail of a
# loop (a block of an array gives the whole array's bytes: convcli.dask relies on it); no
# 'nnan'/'ninf', because NaN and inf inputs are real and must propagate as they do in numpy.
FMA_ONLY = {"contract"}

# The threading layer for parallel kernels, unless the user chose one (NUMBA_THREADING_LAYER or
# NUMBA_THREADING_LAYER_PRIORITY). In-process, GNU OpenMP first: on the 4K filtering benchmarks it
# ran 15-35 % faster than TBB, and it is thread-safe (-j N). It is not fork-safe, so the warm
# worker, which forks a child per call, asks for TBB (convcli.server.warmup).
# Where GNU OpenMP's runtime is missing (a slim image without the compiler's libgomp), Numba
# would fall through to workqueue, which aborts when two threads (-j N, batched training) launch
# parallel kernels: TBB's runtime is loaded then, so the thread-safe TBB layer takes its place.
# (libgomp's load costs ~1 ms, which the OpenMP layer's first launch would pay anyway.)
GNU_OPENMP_RUNTIME = "libgomp.so.1"


def _thread_safe_layers() -> None:
    import ctypes

    config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(GNU_OPENMP_RUNTIME)
    except OSError:
        with contextlib.suppress(TbbUnavailable):
            load_tbb()


if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
    _thread_safe_layers()

HEADER = (
    "convcli: compiling kernels for this machine (once after an install or upgrade; "
    "later calls load them from Numba's cache)"
)
TICK = 0.25


class CompileNotice(event.Listener):
    """Reports the compiles of convcli's own kernels (Numba's internal overloads nest inside)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: list[tuple[str, float]] = []  # (kernel, start), outermost first
        self.done = 0
        self.announced = False
        self.live_line = False
        self.ticking = False  # a thread refreshes the live line while kernels compile

    def on_start(self, ev) -> None:
        name = _kernel_name(ev)
        if name is None:
            return
        with self.lock:
            if not self.announced:
                self.announced = True
                _write(HEADER + "\n")
            if not self.ticking and _on_terminal():
                self.ticking = True
                threading.Thread(target=self._tick, daemon=True, name="convcli-compile-notice").start()
            self.running.append((name, time.monotonic()))

    def on_end(self, ev) -> None:
        name = _kernel_name(ev)
        if name is None:
            return
        with self.lock:
            _, started = self.running.pop()
            self.done += 1
            if _on_terminal():
                if not self.running and self.live_line:
                    _write("\r\x1b[K")
                    self.live_line = False
            else:
                _write(f"convcli: compiled {name} in {time.monotonic() - started:.1f} s\n")

    def _tick(self) -> None:
        """Refresh the live line until the compiles end (the rest of the run needs no thread)."""
        while True:
            time.sleep(TICK)
            with self.lock:
                if not self.running:
                    self.ticking = False
                    return
                name, started = self.running[0]
                seconds = time.monotonic() - started
                _write(f"\r\x1b[K  compiling {name}: {seconds:.0f} s ({self.done} done)")
                self.live_line = True


def _kernel_name(ev) -> str | None:
    function = getattr(ev.data.get("dispatcher"), "py_func", None)
    module = getattr(function, "__module__", "") or ""
    if not module.startswith("convcli."):
        return None
    return f"{module.removeprefix('convcli.')}.{function.__name__}"


def _on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


if os.environ.get("CONVCLI_COMPILE_NOTICE", "1").strip().lower() not in {"0", "off", "no", "false"}:
    event.register("numba:compile", CompileNotice())
