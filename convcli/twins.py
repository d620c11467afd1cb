"""Numpy twins of Numba kernels: which of the two runs in this process.

Importing Numba and loading a kernel from its cache costs a cold process ~0.45 s (the import
~0.2 s, the typing set-up of its first dispatch ~0.2 s; measured on a 10 s wav low-pass, whose
filtering itself takes ~3 ms in Numba and ~25 ms in numpy). A few kernels therefore have a numpy
twin that performs the same float operations in the same order, so that either gives the same
bytes (tested): the 1-D filter rows (:mod:`convcli.engine.lines`) and the 16-bit PCM conversion
(:mod:`convcli.io.pcm16`). Standard library only: asking must not import Numba.
"""

from __future__ import annotations

import sys

# numpy work (elementary array operations on one element each, ~0.3 ns apiece) after which
# loading Numba pays for itself: ~0.15 s of numpy, a third of Numba's load
NUMPY_WORK = 1 << 29

_numpy_work_done = 0


def numba_pays(work: int) -> bool:
    """Whether the Numba kernel should run ``work`` operations: Numba is loaded already (the warm
    worker, or a call that used another of its kernels), or the numpy work of this process would
    pass :data:`NUMPY_WORK` with it. Else the numpy twin runs, and its work is counted."""
    global _numpy_work_done
    if "numba" in sys.modules or _numpy_work_done + work > NUMPY_WORK:
        return True
    _numpy_work_done += work  # threads (-j N) may race here: a lost count only delays Numba's load
    return False
