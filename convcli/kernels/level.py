"""Level controls of audio: an impulse response's own gain and dry/wet mix (changes of the kernel),
and the output's gain or peak level (a factor on the result), with SoX's and ffmpeg's meanings.

- ``--ir-norm energy``: the impulse response scaled so that its loudest channel has unit energy
  (sum of squares 1); ``peak``: so that its largest tap is ±1. One factor for all its channels,
  so the balance between them is kept.
- ``--mix W``: output = (1 − W)·dry + W·wet, the input itself beside its reverb, sample for sample.
  An impulse response is causal (output n hears inputs n, n−1, …), so the dry signal is the unit
  impulse at the response's first tap: mixing is the response W·h + (1 − W)·δ, and it streams,
  chains and runs through every method as any kernel does.
- ``--gain DB``: the output times 10^(DB/20) (SoX's ``gain DB``).
- ``--normalize DBFS``: the output scaled so its peak is DBFS (SoX's ``--norm=DBFS``, ``gain -n``):
  the peak must be known before the first sample is written, so a block-wise run reads its input
  twice (memory stays bounded by the block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from convcli.errors import UsageError

IR_NORMS = ("energy", "peak")


@dataclass(frozen=True)
class Level:
    """The level options of one run (None: not asked for)."""

    gain_db: float | None = None
    normalize_dbfs: float | None = None
    ir_norm: str | None = None
    mix: float | None = None

    def __post_init__(self) -> None:
        if self.gain_db is not None and self.normalize_dbfs is not None:
            raise UsageError("--gain and --normalize both set the output level: give one")
        for name, value in (("--gain", self.gain_db), ("--normalize", self.normalize_dbfs)):
            if value is not None and not math.isfinite(value):
                raise UsageError(f"{name} {value}: expected a finite number of dB")
        if self.mix is not None and not 0 <= self.mix <= 1:
            raise UsageError(f"--mix {self.mix:g}: the wet share is between 0 (dry) and 1 (wet)")
        if self.ir_norm is not None and self.ir_norm not in IR_NORMS:
            raise UsageError(f"--ir-norm {self.ir_norm!r}: choose {' or '.join(IR_NORMS)}")

    @property
    def changes_kernels(self) -> bool:
        return self.ir_norm is not None or self.mix is not None

    @property
    def needs_peak(self) -> bool:
        """The output factor depends on the output's peak (``--normalize``)."""
        return self.normalize_dbfs is not None

    def output_factor(self, peak: float | None = None) -> float:
        """The factor on the output: ``--gain``'s, or ``--normalize``'s for an output whose largest
        finite magnitude is ``peak`` (:func:`finite_peak`); 1 without either."""
        if self.needs_peak:
            return peak_factor(peak, self.normalize_dbfs)
        return 1.0 if self.gain_db is None else db_to_factor(self.gain_db)


def db_to_factor(db: float) -> float:
    """An amplitude ratio from decibels: 10^(dB/20)."""
    return 10.0 ** (db / 20.0)


def peak_factor(peak: float, dbfs: float) -> float:
    """The factor that takes ``peak`` to ``dbfs`` (1 for silence, which no gain can raise)."""
    return db_to_factor(dbfs) / peak if peak > 0 else 1.0


def finite_peak(x: np.ndarray) -> float:
    """The largest finite magnitude of ``x`` (NaN and inf are reported elsewhere, not normalised)."""
    magnitudes = np.abs(x[np.isfinite(x)])
    return float(magnitudes.max()) if magnitudes.size else 0.0


def check_level_kernels(kernels: list, level: Level, geometry) -> None:
    """--ir-norm and --mix are for one impulse response on the input's time grid."""
    if not level.changes_kernels:
        return
    names = " and ".join(n for n, v in (("--ir-norm", level.ir_norm), ("--mix", level.mix)) if v is not None)
    if len(kernels) != 1 or kernels[0].role != "ir":
        raise UsageError(f"{names} apply to an impulse response: give one audio file as the only -k")
    if level.mix is not None:
        if geometry.correlate or geometry.padding is not None or geometry.mode == "valid":
            raise UsageError("--mix adds the dry input to the causal reverb sample for sample: "
                             "leave out --correlate, --padding and --mode valid")


def adjust_ir(kernel, level: Level):
    """``kernel`` (an impulse response) with its own gain normalised and the dry signal mixed in,
    its description saying so; unchanged without those options."""
    if not level.changes_kernels:
        return kernel
    ir = np.array(kernel.array, dtype=np.float64)
    said = []
    if level.ir_norm == "energy":
        ir /= _nonzero(float(np.sqrt(np.max(np.sum(ir * ir, axis=-1)))), kernel.spec)
        said.append("scaled to unit energy (its loudest channel)")
    elif level.ir_norm == "peak":
        ir /= _nonzero(float(np.max(np.abs(ir))), kernel.spec)
        said.append("scaled to peak 1")
    if level.mix is not None:
        ir *= level.mix
        ir[:, 0] += 1.0 - level.mix  # the dry input: the impulse at the response's first tap
        said.append(f"mixed {level.mix:g} wet with {1 - level.mix:g} dry")
    return replace(kernel, matrix=ir, description=f"{kernel.description}; {', '.join(said)}")


def _nonzero(norm: float, spec: str) -> float:
    if norm == 0:
        raise UsageError(f"impulse response {spec!r} is silent: it has no gain to normalise")
    return norm
