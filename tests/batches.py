"""What the batch-runner tests share: input folders of arrays and the --json document of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def json_of(output: str) -> dict:
    """The one JSON document in a command's output (stderr lines may stand around it)."""
    return json.loads(output[output.index("{") : output.rindex("}") + 1])


def arrays(folder: Path, count: int, rng: np.random.Generator, shape=(32, 32)) -> Path:
    """``count`` .npy inputs of random floats in a new ``folder``."""
    folder.mkdir()
    for index in range(count):
        np.save(folder / f"f{index:02d}.npy", rng.standard_normal(shape).astype(np.float32))
    return folder


def interrupted_batch(command: list[str], out: Path, cwd: Path) -> tuple[int, str, list[Path]]:
    """Run a batch command, send SIGINT to its process group (as a terminal's Ctrl-C does) once the
    first output exists; its exit status, stderr and the files left in ``out``."""
    import os
    import signal
    import subprocess
    import time

    # cwd outside the source tree: there, -m would import convcli from it, without its filters/
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, cwd=cwd)
    deadline = time.monotonic() + 120
    while not any(out.glob("*.npy")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, process.communicate()[1].decode()
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr.decode(), sorted(out.iterdir())
