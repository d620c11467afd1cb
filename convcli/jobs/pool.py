"""The pool job: read one file, pool it, write the result, return its record.

What ``convcli pool`` runs on each file, on any executor, and the check that refuses bad windows
before any file is read (its messages mark the parameters they name: the CLI shows flags).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from convcli.errors import UsageError
from convcli.executors import Job
from convcli.jobs.files import load_input, save_output
from convcli.pool_windows import check_window
from convcli.text import AXIS_NAMES, shape_text


@dataclass(frozen=True)
class PoolSettings:
    """Everything one file's pooling needs (picklable, for -j worker processes)."""

    op: str
    size: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    p: float
    ceil_mode: bool
    count_include_pad: bool
    boundary: str
    output_size: tuple[int, ...] | None  # adaptive pooling when set
    magnitude: bool
    dims: int | None  # pooled axes; None: 2 for images and 2-D+ arrays, 1 for audio and 1-D arrays
    force: bool
    policy: str


def fit_axes(values: tuple[int, ...] | None, dims: int, option: str) -> int | tuple[int, ...] | None:
    """One value for every pooled axis, or one per axis."""
    if values is None or len(values) == 1:
        return None if values is None else values[0]
    if len(values) != dims:
        raise UsageError(f"{option} {shape_text(values)}: this input has {dims} pooled axis (--dims)")
    return values


def pooled_dims(media, dims: int | None) -> int:
    if dims is not None:
        return dims
    if media.kind == "audio":
        return 1
    if media.kind == "image":
        return 2
    return 1 if media.data.ndim == 1 else 2


def check_settings(settings: PoolSettings) -> None:
    """Refuse bad window options once, before any file is read (exit 2, not one error per file)."""
    if settings.output_size is not None:
        return
    from convcli.engine.boundary import normalize_boundary

    if normalize_boundary(settings.boundary) != "constant" and settings.op in ("max", "min"):
        raise UsageError(f"`boundary` {settings.boundary} applies to avg, sum and lp; max/min pad with ∓inf")

    if settings.op not in ("max", "min") and any(d != 1 for d in settings.dilation):
        raise UsageError(f"`dilation` applies to `op` max and min only, not {settings.op}")
    stride = settings.stride or settings.size
    values = (settings.size, stride, settings.padding, settings.dilation)
    for axis in range(max(map(len, values))):
        try:
            check_window(*(value[min(axis, len(value) - 1)] for value in values))
        except ValueError as error:  # the window rules say 'pool size': mark the parameter it names
            message = str(error)
            for name in ("size", "stride", "padding", "dilation"):
                message = message.replace(f"pool {name}", f"`{name}`")
            raise UsageError(message) from None


def pool_file(job: Job, settings: PoolSettings) -> dict:
    """Read, pool and write one file; the record says what happened."""
    import numpy as np

    from convcli.engine.pooling import adaptive_pool, pool, pool_plan
    from convcli.io.ranges import count_non_finite

    media = load_input(job)
    dims = pooled_dims(media, settings.dims)
    data = np.abs(media.data) if settings.magnitude else media.data
    if data.ndim < dims:
        raise UsageError(f"{job.input}: data of shape {shape_text(data.shape)} has fewer than {dims} axes "
                         "to pool")
    uncovered: tuple[int, ...] = (0,) * dims
    if settings.output_size is not None:
        target = fit_axes(settings.output_size, dims, "--output-size")

        def apply(array, op):
            return adaptive_pool(array, target, op=op, ndim=dims)
    else:
        size = fit_axes(settings.size, dims, "--size")
        window = dict(stride=fit_axes(settings.stride, dims, "--stride"),
                      padding=fit_axes(settings.padding, dims, "--padding"),
                      dilation=fit_axes(settings.dilation, dims, "--dilation"),
                      ceil_mode=settings.ceil_mode, count_include_pad=settings.count_include_pad)
        uncovered = pool_plan(data.shape, size, op=settings.op, ndim=dims, **window).uncovered

        def apply(array, op):
            return pool(array, size, op=op, p=settings.p, ndim=dims, boundary=settings.boundary, **window)

    result = apply(data, settings.op)
    alpha = None
    if media.alpha is not None:  # transparency is pooled alike (max/min) or averaged
        alpha = apply(media.alpha, settings.op if settings.op in ("max", "min") else "avg")
    pooled = media.with_data(result, alpha)
    if media.audio is not None:  # fewer samples over the same duration: a lower sample rate
        rate = max(1, round(media.audio.sample_rate * result.shape[-1] / data.shape[-1]))
        pooled = replace(pooled, audio=replace(media.audio, sample_rate=rate, frames=result.shape[-1]))
    clipped = save_output(job, pooled, force=settings.force, policy=settings.policy)
    record = {"kind": media.kind, "input_shape": list(data.shape), "output_shape": list(result.shape),
              "uncovered": dict(zip(AXIS_NAMES[dims], uncovered, strict=True)), "clipped": clipped,
              "non_finite": count_non_finite(media.data)}
    if media.audio is not None:
        record["sample_rate"] = pooled.audio.sample_rate
    return record
