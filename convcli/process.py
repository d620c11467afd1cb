"""Process-wide policy shared by the in-process path and the warm worker's children."""

from __future__ import annotations

import gc


def collect_cycles() -> None:
    """Turn the cyclic collector back on for a long loop (a batch, a training run).

    A one-shot call runs with it off (see convcli.server.client: it would sweep the ~100k objects
    of the imports several times to free next to nothing); the objects made so far are frozen, so
    the collections that follow only look at what the loop makes.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
