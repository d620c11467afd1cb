"""``convcli pool``: max / min / average / sum / Lp and adaptive (global) pooling of files.

Thin: parse options, read each file, call :func:`convcli.engine.pooling.pool` (or
``adaptive_pool``), write the result. Numba is imported only inside the per-file work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import click

from convcli.cli.common import (
    AXIS_NAMES,
    Job,
    expand_inputs,
    file_line,
    finish,
    load_input,
    non_finite_text,
    output_options,
    plan_outputs,
    run_files,
    save_output,
    uncovered_text,
)
from convcli.cli.output import flag, warn
from convcli.errors import ExitStatus, UsageError
from convcli.pool_windows import ADAPTIVE_OPS, OPS, check_window
from convcli.text import parse_shape, shape_text


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


def parse_sizes(text: str | None, option: str) -> tuple[int, ...] | None:
    """'3' -> (3,), '3x2' or '3,2' -> (3, 2) (height then width); the window rules check the values."""
    if text is None:
        return None
    return parse_shape(text, option, low=0, lengths=(1, 2), forms="K or HxW", example="3x2")


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
        raise UsageError(f"--boundary {settings.boundary} applies to avg, sum and lp; max/min pad with ∓inf")

    if settings.op not in ("max", "min") and any(d != 1 for d in settings.dilation):
        raise UsageError(f"--dilation applies to --op max and min only, not {settings.op}")
    stride = settings.stride or settings.size
    values = (settings.size, stride, settings.padding, settings.dilation)
    for axis in range(max(map(len, values))):
        try:
            check_window(*(value[min(axis, len(value) - 1)] for value in values))
        except ValueError as error:  # the window rules name pool parameters; here they are flags
            message = str(error)
            for name in ("size", "stride", "padding", "dilation"):
                message = message.replace(f"pool {name}", flag(name))
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


def describe(settings: PoolSettings, record: dict) -> str:
    return file_line(record, window_text(settings))


def window_text(settings: PoolSettings) -> str:
    """'max 2', 'avg 3 stride 2 padding 1', 'adaptive avg 7x7': the pooling, in a report line."""
    if settings.output_size is not None:
        return f"adaptive {settings.op} {shape_text(settings.output_size)}"
    text = f"{settings.op} {shape_text(settings.size)}"
    for name in ("stride", "padding", "dilation"):
        value, default = getattr(settings, name), (1,) if name == "dilation" else (0,)
        if value is not None and value != default and not (name == "stride" and value == settings.size):
            text += f" {name} {shape_text(value)}"
    return text


def warn_uncovered(records: list[dict]) -> None:
    """When the stride does not tile the input, say how much of it no window reached."""
    for record in records:
        left = uncovered_text(record.get("uncovered") or {})
        if left:
            warn(f"{record['input']}: {left} not covered by any window "
                 "(the stride does not tile the input; --ceil-mode or --padding would include them)")


@click.command("pool", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--op", type=click.Choice(OPS), default="max", show_default=True,
              help="max, min, avg (mean), sum, or lp: the window's Lp norm (Σ|x|^p)^(1/p).")
@click.option("--size", "-s", "size", metavar="K|HxW", help="Window size (required unless adaptive).")
@click.option("--stride", metavar="S|HxW", help="Step between windows. Default: the size.")
@click.option("--padding", metavar="P|HxW", default="0", show_default=True,
              help="Padding on each side, at most half the window (max pads with -inf, avg/sum with 0).")
@click.option("--dilation", metavar="D|HxW", default="1", show_default=True,
              help="Spacing of the window's taps (max and min only).")
@click.option("--p", "power", type=float, default=2.0, show_default=True,
              help="The power of --op lp: 1 sum of magnitudes, 2 L2 norm, inf largest magnitude.")
@click.option("--ceil-mode", is_flag=True,
              help="Keep a last partial window (unless it would start in the right padding).")
@click.option("--count-include-pad/--no-count-include-pad", default=True, show_default=True,
              help="avg: divide by the whole window (padding included) or by the samples inside.")
@click.option("--boundary", default="constant", show_default=True,
              help="avg/sum/lp: what the padding holds: constant (zeros), reflect, symmetric, edge, wrap.")
@click.option("--output-size", metavar="N|HxW", help="Adaptive pooling to this output size.")
@click.option("--global", "global_pool", is_flag=True, help="Global pooling: adaptive to 1 (1x1).")
@click.option("--abs", "magnitude", is_flag=True, help="Pool magnitudes |x| (e.g. an audio envelope).")
@click.option("--dims", type=click.IntRange(1, 2),
              help="Axes pooled: 1 (last axis) or 2 (last two). Default: 2 for images and 2-D+ arrays, "
                   "1 for audio and 1-D arrays.")
@output_options
def pool_command(inputs, op, size, stride, padding, dilation, power, ceil_mode, count_include_pad,
                 boundary, output_size, global_pool, magnitude, dims, output, batch, force, range_policy,
                 as_json, quiet) -> ExitStatus:
    """Pool images (each channel), audio (each channel along time) and arrays, as PyTorch does.

    Windows of --size move by --stride; --op max keeps each window's largest value, avg its mean,
    sum its total, lp its Lp norm. Sizes follow PyTorch's MaxPool/AvgPool/LPPool and
    AdaptiveAvg/MaxPool exactly: floor((n + 2p − d·(k−1) − 1)/s) + 1 windows per axis (ceil
    with --ceil-mode); adaptive bin i covers [floor(i·n/out), ceil((i+1)·n/out)). When the
    stride does not tile the input, a warning says how many rows/columns/samples no window
    reached. Pooled audio keeps its duration at a lower sample rate.

    \b
    Examples:
      convcli pool samples/photo.png --size 2 -o half.png     # 2x2 max: 256x256 -> 128x128
      convcli pool samples/photo.png --op avg --size 3 --stride 2 --padding 1 -o small.png
      convcli pool samples/speech.wav --op max --abs --size 160 -o envelope.wav
      convcli pool samples/photo.png --op avg --output-size 7x7 -o features.npy
      convcli pool features.npy --global --op avg -o means.npy
      convcli pool samples/shapes/circle/ --op avg --output-size 4x4 -o thumbs/ -j 2
    """
    if output_size is not None and global_pool:
        raise UsageError("give --output-size or --global, not both")
    adaptive = parse_sizes("1" if global_pool else output_size, "--output-size")
    if adaptive is None and size is None:
        raise UsageError("--size is required (or --output-size / --global for adaptive pooling)")
    if adaptive is not None and op not in ADAPTIVE_OPS:
        raise UsageError(f"adaptive pooling takes --op {', '.join(ADAPTIVE_OPS)}, not {op!r}")
    if op == "lp" and not power > 0:
        raise UsageError(f"--p must be > 0, got {power}")
    settings = PoolSettings(
        op=op, size=parse_sizes(size, "--size"), stride=parse_sizes(stride, "--stride"),
        padding=parse_sizes(padding, "--padding"), dilation=parse_sizes(dilation, "--dilation"),
        p=power, ceil_mode=ceil_mode, count_include_pad=count_include_pad, boundary=boundary,
        output_size=adaptive, magnitude=magnitude, dims=dims, force=force, policy=range_policy,
    )
    check_settings(settings)
    from convcli.executors import check_stdio

    paths = expand_inputs(inputs)
    check_stdio(paths, output, batch)
    planned = plan_outputs(paths, output, tag="pool", force=force)
    task = functools.partial(pool_file, settings=settings)
    result = run_files(planned, task, batch, force=force, quiet=quiet)
    records = result.records
    if not quiet:
        warn_uncovered(records)
    for record in records:
        if record.get("non_finite"):
            warn(f"{record['input']}: {non_finite_text(record['non_finite'])} NaN or inf: the windows "
                 "holding them are not finite (max/min: NaN wins, as in PyTorch)")
    return finish(records, command="pool", as_json=as_json, quiet=quiet,
                  describe=functools.partial(describe, settings),
                  extra={"op": op, "adaptive": adaptive is not None, **result.info})
