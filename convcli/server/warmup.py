"""What a worker does once before serving: run every command's path on small made-up files, so
that the imports, Numba's typing set-up and every cached kernel (images 8/16-bit, audio, direct,
separable and FFT filtering, pooling, 1-D and 2-D training, prediction) are in memory, and each
call forked from it starts warm.

The runs go through ``convcli.cli.run``, the code path of a real call, so nothing is warmed that
a call does not use and nothing a call uses is forgotten when a command changes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

# fork-safe and thread-safe (-j N); OpenMP's GNU runtime dies in a forked child, workqueue
# aborts when two threads launch parallel kernels
FORK_SAFE_LAYERS = ("tbb",)


class Unsupported(Exception):
    """The worker cannot serve here: ``reason`` says why, ``fix`` what to do, ``tried`` the details."""

    def __init__(self, reason: str, fix: str, tried: list[str] | None = None):
        super().__init__(reason)
        self.reason, self.fix, self.tried = reason, fix, tried or []


def warm_up(rehearsal: Path) -> None:
    """Run the warm-up, or raise :class:`Unsupported`. ``rehearsal``: a private folder for the
    worker's life, where the warm-up leaves the small inputs its spares rehearse on."""
    from convcli.io import files

    _fork_safe_threading_layer()  # before any parallel kernel runs: it must survive every fork
    with tempfile.TemporaryDirectory(prefix="convcli-warm-") as folder:
        _quietly(_command_lines(Path(folder), _make_inputs(rehearsal)))
    files.release_held()  # the warm-up's replaced outputs: no child should inherit them
    layer = threading_layer()
    if layer not in FORK_SAFE_LAYERS:
        raise Unsupported(
            f"Numba's threading layer is {layer!r} after the warm-up, not the fork-safe 'tbb'",
            "check NUMBA_THREADING_LAYER and NUMBA_NUM_THREADS; CONVCLI_SERVER=0 silences the attempt",
        )


def _fork_safe_threading_layer() -> None:
    """Load the TBB runtime the ``tbb`` dependency installed (:func:`convcli.jit.load_tbb`), pin
    Numba's layer to it and load Numba's TBB extension now, so a worker that cannot have it
    says why at once instead of after a warm-up whose parallel kernels all failed."""
    from convcli import jit

    tried: list[str] = []
    try:
        tried.append(f"loaded {jit.load_tbb()}")
    except jit.TbbUnavailable as error:
        tried.append(str(error))
    jit.config.THREADING_LAYER = FORK_SAFE_LAYERS[0]
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401 - the import is the check
    except ImportError as error:
        tried.append(f"numba.np.ufunc.tbbpool: {error}")
        raise Unsupported(
            "Numba's TBB threading layer (fork-safe, which the warm worker needs) cannot be loaded",
            f"pip install --force-reinstall '{jit.TBB_DISTRIBUTION}' in this environment "
            f"({sys.prefix}); calls run in-process meanwhile",
            tried,
        ) from error


def rehearse(rehearsal: Path, stop: Callable[[], bool]) -> None:
    """A spare child's rehearsal while it waits for a call: an image filter, an audio filter and
    the command line (help, one layer's shapes) run once more on tiny inputs, so that
    the pages every call writes (the worker's objects, copied on write after the fork; the heap)
    are the spare's own before the call comes. Measured in forked children: a 10 s wav low-pass
    23.7 -> ~11 ms, a 512² PNG sharpen 47 -> 30 ms, --help 4.9 -> 1.7 ms; the rehearsal takes
    ~20 ms. ``stop``: a call has come (or the worker let the spare go); the spare takes it after
    the line it is running, which is never longer than the call's own first-run cost."""
    out = tempfile.mkdtemp(dir=rehearsal)
    try:
        _quietly(_rehearsal_lines(_inputs(rehearsal), out + os.sep), stop=stop)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _quietly(lines: list[list[str]], stop: Callable[[], bool] = lambda: False) -> None:
    from convcli.cli import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for argv in lines:
            if stop():
                return
            run(argv)


def _rehearsal_lines(inputs: dict[str, str], out: str) -> list[list[str]]:
    quiet = ["--quiet", "--force"]
    return [
        ["convolve", inputs["rgb8"], "-k", "sharpen", "-o", out, *quiet],
        ["convolve", inputs["wav"], "-k", "lowpass:cutoff=1000", "-o", out, *quiet],
        ["--help"],
        ["shapes", "--size", "28", "--kernel", "5"],
    ]


def _command_lines(work: Path, inputs: dict[str, str]) -> list[list[str]]:
    out = str(work / "out") + os.sep
    quiet = ["--quiet", "--force"]
    return [
        *_rehearsal_lines(inputs, out),
        ["shapes", "Input(1,28,28); Conv2d(1,8,5); MaxPool2d(2); Flatten(); LazyLinear(10)"],
        ["params", "--model", "lenet5"],
        ["kernels"],
        ["convolve", inputs["rgb8"], inputs["gray8"], "-k", "sharpen", "-o", out, "-j", "2", *quiet],
        ["convolve", inputs["rgb8"], "-k", "gaussian:sigma=2", "-o", out, *quiet],
        # large enough for the parallel kernels (small ones run their serial twins: jit.SERIAL_BELOW)
        ["convolve", inputs["rgb8-large"], "-k", "sharpen", "-o", out, *quiet],
        ["convolve", inputs["rgb16-large"], "-k", "sharpen", "-o", out, *quiet],
        ["convolve", inputs["wav-large"], "-k", "lowpass:cutoff=1000", "-o", out, *quiet],  # parallel rows
        ["convolve", inputs["rgb16"], "-k", "box:3", "-o", out, *quiet],
        ["convolve", inputs["photo"], "-k", "box:3", "-o", out, *quiet],  # loads the JPEG check's walker
        ["convolve", inputs["rgb8"], "-k", "box:3", "--method", "fft", "-o", str(work / "f.npy"), *quiet],
        ["convolve", inputs["wav"], "-k", "moving-average:9", "-o", str(work / "m.wav"), *quiet],
        ["pool", inputs["rgb8"], "--size", "2", "-o", out, *quiet],
        [
            "pool",
            inputs["rgb8"],
            "--op",
            "avg",
            "--size",
            "3",
            "--stride",
            "2",
            "-o",
            str(work / "a.png"),
            *quiet,
        ],
        ["pool", inputs["wav"], "--op", "max", "--abs", "--size", "4", "-o", out, *quiet],
        ["train", inputs["images"], "-o", str(work / "m2.npz"), "--epochs", "1", "--seed", "0", *quiet],
        ["train", inputs["signals"], "-o", str(work / "m1.npz"), "--epochs", "1", "--seed", "0", *quiet],
        ["predict", str(work / "m2.npz"), inputs["gray8"], "--json"],
        ["evaluate", str(work / "m2.npz"), inputs["images"], "--json"],
    ]


def _inputs(work: Path) -> dict[str, str]:
    """The paths of the small inputs :func:`_make_inputs` writes in ``work``."""
    return {
        "rgb8": str(work / "rgb8.png"),
        "gray8": str(work / "gray8.png"),
        "rgb16": str(work / "rgb16.png"),
        "rgb8-large": str(work / "rgb8-large.png"),
        "rgb16-large": str(work / "rgb16-large.png"),
        "photo": str(work / "photo.jpg"),
        "wav": str(work / "clip.wav"),
        "wav-large": str(work / "clip-large.wav"),
        "images": str(work / "images.npz"),
        "signals": str(work / "signals.npz"),
    }


def _make_inputs(work: Path) -> dict[str, str]:
    import imagecodecs
    import numpy as np
    import soundfile
    from PIL import Image

    inputs = _inputs(work)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(inputs["rgb8"])
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(inputs["gray8"])
    deep = rng.integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    Path(inputs["rgb16"]).write_bytes(imagecodecs.png_encode(deep))
    side = 640  # 640² x 3 samples: over jit.SERIAL_BELOW
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(inputs["rgb8-large"])
    Path(inputs["rgb16-large"]).write_bytes(imagecodecs.png_encode(rng.integers(0, 65536, (side, side, 3),
                                                                                dtype=np.uint16)))
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(inputs["photo"], progressive=True)
    soundfile.write(inputs["wav"], rng.uniform(-0.5, 0.5, (1600, 2)), 16000, subtype="PCM_16")
    # 2 x 8000 samples under 101 taps: over jit.SERIAL_BELOW
    soundfile.write(inputs["wav-large"], rng.uniform(-0.5, 0.5, (8000, 2)), 16000, subtype="PCM_16")
    labels = np.arange(40) % 2
    np.savez(inputs["images"], x=rng.integers(0, 256, (40, 12, 12), dtype=np.uint8), y=labels)
    np.savez(inputs["signals"], x=rng.standard_normal((40, 32)).astype(np.float32), y=labels)
    return inputs


def threading_layer() -> str | None:
    """The layer Numba's parallel kernels run on, once one has run."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel ran
        return None
