"""convcli: convolutions for signals and images, and small CNNs on the CPU.

Public names (``help(convcli)`` documents each): ``convolve``, ``conv_transpose``,
``convolution_matrix``, ``pool``, ``adaptive_pool``, ``output_size``, ``load_kernel``,
``parse_spec``, ``load_model``, ``train`` and ``TrainConfig``; for folders of files,
``convolve_files`` and ``pool_files`` (what ``convcli convolve``/``pool ... -o DIR`` do, on
threads, processes or Dask, with a result per file).

The public API is loaded lazily so that ``import convcli`` (and the CLI's ``--help``,
``shapes`` and ``params``) never pays for Numba or SciPy.
"""

from __future__ import annotations

import importlib

# no 'typing' here: every `convcli` call imports this package first, and typing costs ~10 ms

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "convolve": "convcli.engine.convolve",
    "conv_transpose": "convcli.engine.transposed",
    "convolution_matrix": "convcli.engine.matrix",
    "pool": "convcli.engine.pooling",
    "adaptive_pool": "convcli.engine.pooling",
    "output_size": "convcli.sizes",
    "load_kernel": "convcli.kernels",
    "parse_spec": "convcli.nn.spec",
    "load_model": "convcli.nn.model",
    "train": "convcli.nn.train",
    "TrainConfig": "convcli.nn.train",
    "convolve_files": "convcli.jobs.batch",
    "pool_files": "convcli.jobs.batch",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> object:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'convcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
