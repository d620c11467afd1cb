"""``convcli pool``: max / min / average / sum / Lp and adaptive (global) pooling of files.

Thin: parse options, then run :func:`convcli.jobs.pool.pool_file` on each file (it calls
:func:`convcli.engine.pooling.pool` or ``adaptive_pool``). Numba is imported only inside the
per-file work.
"""

from __future__ import annotations

import functools

import click

from convcli.cli.common import (
    expand_inputs,
    file_line,
    finish,
    non_finite_text,
    output_options,
    plan_outputs,
    run_files,
)
from convcli.cli.output import warn
from convcli.errors import ExitStatus, UsageError
from convcli.jobs.pool import PoolSettings, check_settings, pool_file
from convcli.pool_windows import ADAPTIVE_OPS, OPS
from convcli.text import parse_shape, shape_text, uncovered_text


def parse_sizes(text: str | None, option: str) -> tuple[int, ...] | None:
    """'3' -> (3,), '3x2' or '3,2' -> (3, 2) (height then width); the window rules check the values."""
    if text is None:
        return None
    return parse_shape(text, option, low=0, lengths=(1, 2), forms="K or HxW", example="3x2")


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
