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
