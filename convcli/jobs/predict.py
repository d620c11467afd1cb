"""The predict job: a trained model's labels and class probabilities for one file (one per
sample of a batched .npy), as a batch task: what ``convcli predict`` runs on each file.
"""

from __future__ import annotations

import functools
from pathlib import Path

from convcli.executors import Job


def predict_file(job: Job, model_path: str) -> dict:
    """The predictions for one file (one per sample of a batched .npy), as a batch task."""
    import numpy as np

    from convcli.io.arrays import check_npy_header
    from convcli.io.files import check_input_file
    from convcli.nn.data import read_sample

    model = _cached_model(model_path)
    path = Path(job.input)
    check_input_file(path)
    if path.suffix.lower() == ".npy":
        check_npy_header(path, job.input)
        samples = np.load(path, allow_pickle=False)
        many = samples.ndim == len(model.input_shape) + 1 or (
            samples.size != np.prod(model.input_shape) and samples.ndim > 1)
        batch = samples if many else samples[None]
    else:
        batch = read_sample(path, model.read_options)[0][None]
    probabilities = model.predict(batch)
    records = []
    for index, row in enumerate(probabilities):
        best = int(row.argmax())
        records.append({"file": job.input if len(probabilities) == 1 else f"{job.input}[{index}]",
                        "label": model.class_names[best], "class_index": best,
                        "probabilities": dict(zip(model.class_names, map(float, row), strict=True))})
    return {"predictions": records}


@functools.lru_cache(maxsize=2)
def _cached_model(path: str):
    """One load per worker (thread pool, process, Dask worker) rather than one per file."""
    from convcli.nn.model import load_model

    return load_model(path)
