"""Kernels: the built-in library (filters/), files, inline matrices, impulse responses and learned layers.

``load_kernel(spec)`` is the public entry point; :func:`resolve_kernel` returns the same array
with what the command needs to apply it (how channels map, notes to warn about).

Spec forms, tried in this order:
  ``model.npz:conv1`` / ``model.npz:conv1[3]``  the model's feature map at a layer (any layer)
  ``model.npz:conv1.weight``                     an array of a model file as a raw kernel
  an existing file: .wav/.flac/.ogg (impulse response), .npy/.csv/.txt/.kernel (matrix)
  ``"1 2 1; 2 4 2; 1 2 1 /16"``                 an inline matrix (rows on ';', optional /scale)
  ``name`` or ``name:arg,key=value``              a library kernel ('convcli kernels')
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convcli.errors import UsageError
from convcli.io.files import AUDIO_EXTENSIONS
from convcli.kernels import sources
from convcli.kernels.library import entries, library_factors, library_kernel

__all__ = ["Kernel", "load_kernel", "resolve_kernel", "entries"]


@dataclass(frozen=True)
class Kernel:
    """A resolved kernel and how it applies to channels.

    role: "filter" (1-D or 2-D, applied to every channel), "ir" (impulse response (C_ir, L):
    channel c with IR channel c, a mono IR to every channel, a mono input to every IR channel),
    "mix" ((C_out, C_in, *k) from a file or a model's array: output o = sum over input channels i
    of x[i] filtered by k[o, i], as a CNN layer mixes channels), "model" (a model's feature map:
    ``feature`` computes it; ``array`` is the layer's weight, for --explain).
    """

    spec: str
    matrix: np.ndarray | None  # None when the kernel is given by its factors
    role: str = "filter"
    description: str = ""
    notes: list[str] = field(default_factory=list)
    feature: sources.FeatureMap | None = None
    # a separable library kernel as (column, row): outer(column, row), never built unless needed
    factors: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        if self.matrix is None:
            return tuple(len(f) for f in self.factors)
        return tuple(self.matrix.shape)

    @property
    def array(self) -> np.ndarray:
        """The kernel as one array (a factored kernel is built here, within the memory budget)."""
        if self.matrix is not None:
            return self.matrix
        from convcli import budget

        budget.check("memory", 8 * np.prod(self.shape, dtype=float), f"kernel {self.spec!r} as a matrix")
        return np.outer(*self.factors)

    @property
    def spatial_ndim(self) -> int:
        """1 for signal kernels, 2 for image kernels."""
        if self.role == "mix":
            return len(self.shape) - 2
        if self.role == "ir":
            return 1
        return len(self.shape)


def resolve_kernel(spec: str, *, sample_rate: float | None = None) -> Kernel:
    """Parse one ``-k`` value. Bad specs raise UsageError naming the value."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty kernel spec")
    if sources.LAYER.match(spec) and not Path(spec).is_file():
        feature, weight, description = sources.learned(spec, sample_rate)
        return Kernel(spec, weight, "mix" if feature is None else "model", description, feature=feature)
    path = Path(spec)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            ir, notes = sources.impulse_response(path, sample_rate)
            role = "ir"
            return Kernel(
                spec,
                ir,
                role,
                f"impulse response {path.name}, {ir.shape[0]} channel(s), {ir.shape[-1]} samples",
                notes=notes,
            )
        if suffix not in sources.FILE_EXTENSIONS:
            raise UsageError(
                f"{spec}: unknown kernel file type {suffix!r} "
                f"(use {', '.join(sources.FILE_EXTENSIONS)} or an audio file)"
            )
        matrix = sources.file_kernel(path)
        return Kernel(spec, matrix, "mix" if matrix.ndim > 2 else "filter", f"kernel file {path.name}")
    if sources.is_inline(spec):
        return Kernel(spec, sources.inline_matrix(spec), "filter", "inline matrix")
    if path.suffix.lower() in (*sources.FILE_EXTENSIONS, *AUDIO_EXTENSIONS, ".npz"):
        raise UsageError(f"{spec}: no such kernel file")
    name, _, arguments = spec.partition(":")
    args = [a for a in arguments.split(",") if a.strip()] if arguments else []
    entry = entries().get(name.strip().lower())
    description = entry.description if entry else ""
    factors = library_factors(name.strip().lower(), args)
    if factors is not None:
        return Kernel(spec, None, "filter", description, factors=factors)
    matrix = library_kernel(name.strip().lower(), args, sample_rate=sample_rate)
    return Kernel(spec, matrix, "filter", description)


def load_kernel(spec: str, *, sample_rate: float | None = None) -> np.ndarray:
    """The kernel array a ``-k`` spec names (see the module doc for the forms).

    Impulse responses come back as (C_ir, L); channel-mixing kernels as (C_out, C_in, *k); a model's
    layer (``model.npz:conv1``) as its weight (its feature map needs the network: use the CLI).
    A sample-rate mismatch of an impulse response resamples it and emits a UserWarning.
    """
    kernel = resolve_kernel(spec, sample_rate=sample_rate)
    for note in kernel.notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return kernel.array
