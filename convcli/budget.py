"""Budgets: what one request may cost, checked from sizes before anything is allocated or run.

A small file or a short option must never make the tool allocate gigabytes or compute for
minutes by surprise. Costs are estimated from sizes (the engine's cost model, the
arrays a step will allocate, an image's header) and a request over a budget is refused with
:class:`BudgetError` (a usage error: exit 2) naming the estimate, the budget and how to raise it.

Each budget is an environment variable, read at every check (so a warm worker, a test or a
Python caller setting ``os.environ`` sees the change); the defaults are below.
"""

from __future__ import annotations

import os
import re

from convcli.errors import UsageError

# name -> (environment variable, default, unit shown in messages)
BUDGETS = {
    # bytes of the arrays one step allocates (input copy, output, padded input, FFT spectra):
    # 4 GiB is a 4K RGB image filtered several times over, and a fifth of this 24 GB machine
    "memory": ("CONVCLI_MAX_MEMORY", 4 << 30, "bytes"),
    # multiply-adds of one convolution or pooling (the engine's cost model): the engine runs ~3e9
    # a second on two cores, so 1e11 is about half a minute; an hour of 48 kHz stereo audio through a
    # 101-tap filter is 3.5e10, a 4K RGB image through a 64-channel 3x3 layer 1.4e10
    "operations": ("CONVCLI_MAX_OPERATIONS", 10**11, "operations"),
    # pixels of one decoded image: Pillow's own MAX_IMAGE_PIXELS (89,478,485; ~9459x9459, 1 GB as
    # float32 RGB), applied to every decoder (Pillow, libpng and libtiff through imagecodecs)
    "pixels": ("CONVCLI_MAX_PIXELS", 89_478_485, "pixels"),
    # classes of a data set (labels 0..K-1): ImageNet-21k has 21,841
    "classes": ("CONVCLI_MAX_CLASSES", 100_000, "classes"),
}

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 1 << 10, "mi": 1 << 20,
           "gi": 1 << 30, "ti": 1 << 40}


class BudgetError(UsageError):
    """A request whose estimated cost exceeds a budget (exit 2, before any work)."""


def parse_amount(text: str, variable: str) -> int:
    """'4G', '4GiB', '1e12', '89478485' -> an integer (decimal or binary suffixes)."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]i?)?[bB]?\s*", text)
    try:
        value = float(match.group(1)) * _SUFFIX[(match.group(2) or "").lower()] if match else -1
    except ValueError:
        value = -1
    if not value >= 1 or value == float("inf"):
        raise UsageError(f"{variable}={text!r}: expected a positive amount such as 8G, 1e13 or 200000000")
    return int(value)


def limit(name: str) -> int:
    """The current value of budget ``name`` (its environment variable, else the default)."""
    variable, default, _unit = BUDGETS[name]
    text = os.environ.get(variable)
    return default if text in (None, "") else parse_amount(text, variable)


def check(name: str, amount: float, what: str) -> None:
    """Refuse ``amount`` of budget ``name`` for ``what`` (e.g. 'convolving 'x.png'') when over it."""
    allowed = limit(name)
    if amount > allowed:
        variable, _default, unit = BUDGETS[name]
        raise BudgetError(
            f"{what} needs ~{_amount(amount, unit)}, over the {name} budget of {_amount(allowed, unit)} "
            f"(set {variable} to raise it)"
        )


def check_cost(operations: float, memory: float, what: str) -> None:
    """Both budgets of one computation."""
    check("memory", memory, what)
    check("operations", operations, what)


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        for size, name in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= size:
                return f"{value / size:.3g} {name}"
        return f"{int(value)} bytes"
    return f"{value:.3g} {unit}" if value >= 1e6 else f"{int(value):,} {unit}"
