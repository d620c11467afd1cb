"""What a worker does once before serving: run every command's path on small made-up files, so
that the imports, Numba's typing set-up and every cached kernel (images 8/16-bit, audio, direct,
separable and FFT filtering, pooling, 1-D and 2-D training, prediction) are in memory, and each
call forked from it starts warm.

The runs go through ``convcli.cli.run``, the code path of a real call, so nothing is warmed that
a call does not use and nothing a call uses is forgotten when a command changes.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

# fork-safe and thread-safe (-j N); OpenMP's GNU runtime dies in a forked child, workqueue
# aborts when two threads launch parallel kernels
FORK_SAFE_LAYERS = ("tbb",)


def warm_up() -> str | None:
    """Run the warm-up; the reason this worker cannot serve, or None."""
    from convcli.jit import config

    # before any parallel kernel runs: the layer must survive the fork of every call
    config.THREADING_LAYER = FORK_SAFE_LAYERS[0]
    with tempfile.TemporaryDirectory(prefix="convcli-warm-") as folder:
        _quietly(_command_lines(Path(folder)))
    layer = threading_layer()
    if layer not in FORK_SAFE_LAYERS:
        return (
            f"Numba's threading layer is {layer!r}, which is not fork-safe; install the 'tbb' "
            "package (pip install tbb) for the warm worker"
        )
    return None


def rehearse(stop: Callable[[], bool]) -> None:
    """A spare child's rehearsal before it says it is ready for a call: the command line's path
    (Click, the help, one layer's shapes) runs once more, so that the pages it writes are copied
    now (copy-on-write after the fork), not during the call: a --help call's page faults went
    966 -> 344. Short on purpose (~5 ms): calls one after another must find the spare ready.
    Rehearsing an image and an audio filter too saved ~800 of a convolve's ~5,500 faults but took
    ~30 ms, so a loop's next call came before it ended. ``stop``: the worker has let the spare
    go; the rest of the rehearsal is skipped."""
    _quietly(_rehearsal_lines(), stop=stop)


def _quietly(lines: list[list[str]], stop: Callable[[], bool] = lambda: False) -> None:
    from convcli.cli import run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for argv in lines:
            if stop():
                return
            run(argv)


def _rehearsal_lines() -> list[list[str]]:
    return [["--help"], ["shapes", "--size", "28", "--kernel", "5"]]


def _command_lines(work: Path) -> list[list[str]]:
    inputs = _make_inputs(work)
    out = str(work / "out") + os.sep
    quiet = ["--quiet", "--force"]
    return [
        *_rehearsal_lines(),
        ["convolve", inputs["rgb8"], "-k", "sharpen", "-o", out, *quiet],
        ["convolve", inputs["wav"], "-k", "lowpass:cutoff=1000", "-o", out, *quiet],
        ["shapes", "Input(1,28,28); Conv2d(1,8,5); MaxPool2d(2); Flatten(); LazyLinear(10)"],
        ["params", "--model", "lenet5"],
        ["kernels"],
        ["convolve", inputs["rgb8"], inputs["gray8"], "-k", "sharpen", "-o", out, "-j", "2", *quiet],
        ["convolve", inputs["rgb8"], "-k", "gaussian:sigma=2", "-o", out, *quiet],
        ["convolve", inputs["rgb16"], "-k", "box:3", "-o", out, *quiet],
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


def _make_inputs(work: Path) -> dict[str, str]:
    import numpy as np
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(0)
    files = {name: str(work / name) for name in ("rgb8.png", "gray8.png", "rgb16.png", "clip.wav")}
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(files["rgb8.png"])
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(files["gray8.png"])
    import imagecodecs

    deep = rng.integers(0, 65536, (24, 32, 3), dtype=np.uint16)
    Path(files["rgb16.png"]).write_bytes(imagecodecs.png_encode(deep))
    soundfile.write(files["clip.wav"], rng.uniform(-0.5, 0.5, (1600, 2)), 16000, subtype="PCM_16")
    labels = np.arange(40) % 2
    images = rng.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    signals = rng.standard_normal((40, 32)).astype(np.float32)
    np.savez(work / "images.npz", x=images, y=labels)
    np.savez(work / "signals.npz", x=signals, y=labels)
    return {
        "rgb8": files["rgb8.png"],
        "gray8": files["gray8.png"],
        "rgb16": files["rgb16.png"],
        "wav": files["clip.wav"],
        "images": str(work / "images.npz"),
        "signals": str(work / "signals.npz"),
    }


def threading_layer() -> str | None:
    """The layer Numba's parallel kernels run on, once one has run."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel ran
        return None
