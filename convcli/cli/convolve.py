"""``convcli convolve``: parse options, resolve kernels, run the per-file job, print."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import click

from convcli.cli.common import (
    AXIS_NAMES,
    Job,
    file_line,
    finish,
    given_options,
    load_input,
    non_finite_text,
    output_options,
    plan_outputs,
    run_files,
    save_output,
    uncovered_text,
)
from convcli.cli.output import warn
from convcli.errors import ExitStatus, UsageError
from convcli.sizes import MAX_SIZE
from convcli.text import shape_text

HELP = """Apply hand-crafted, file-based or learned kernels to images, audio and arrays.

\b
Semantics:
  convolve     true convolution: the kernel is flipped, out[i] = sum_j x[i-j] k[j]
               (signal processing; numpy.convolve, scipy.signal.convolve)
  --correlate  cross-correlation, no flip: out[i] = sum_j x[i+j] k[j]
               (what CNN layers, OpenCV filter2D and ImageMagick -morphology compute)
  model.npz:LAYER is what the trained model computes at LAYER for the input: the
  input read as the model reads it (gray/size, rate/mono/length), standardized with
  its stored mean/std, then every layer up to LAYER with its own stride, padding,
  dilation, groups and bias (evaluation mode) -- predict's forward pass. Any layer
  (conv2, relu1, ...); LAYER[i] keeps channel i. Feature maps default to
  --range normalize (one scale for all maps: min -> 0, max -> 1); an image output
  with other than 1 or 3 channels (or --grid) is a labelled grid picture; .npy keeps
  the floats. model.npz:conv1.weight is the stored array as a plain kernel (no bias,
  no standardization; --correlate for what the layer computes).
  A (C_out, C_in, kh, kw) kernel file (or (C_out, C_in, k) for signals) mixes
  channels as a CNN layer does: "-k rgb2gray.npy" with shape (1, 3, 1, 1).
  sobel-x, prewitt-x, scharr-x are OpenCV's matrices: --correlate gives +d/dx,
  plain convolution gives -d/dx ('convcli kernels' states each convention).
  --groups G takes a (C_out, C_in/G, kh, kw) kernel file: the channels split into G
  groups and group g's outputs see only group g's inputs, as torch's conv2d(groups=G);
  depthwise: (C, 1, kh, kw) with --groups C.
  --transposed is the adjoint (transpose) of the operation the other options describe,
  <A x, y> = <x, A^T y>: each input sample is scattered over the kernel, so --stride S
  upsamples (audio comes out at rate x S). Its size is ConvTranspose's ('shapes'):
  (n-1)*S - padding + D*(k-1) + output_padding + 1, --output-padding A < max(S, D)
  picking among the sizes that stride maps to n. A kernel file is (C_in, C_out/G, kh, kw),
  PyTorch's transposed layout; with --correlate it equals torch's conv_transpose1d/2d.
  Every boundary has an adjoint: the padding is folded back onto the samples it copies.

\b
Sizes: --mode same (default: output has the input's size, centred like scipy.signal),
  valid, full; or --padding P | B,A | B,A;B,A (per axis). An even span centres with
  its extra tap before: --correlate out[i] = sum_j x[i+j-span//2] k[j] (as
  scipy.signal.correlate, numpy.correlate, OpenCV filter2D), convolve the same on the
  flipped kernel (scipy.signal.convolve, numpy.convolve). --stride S subsamples
  (same with stride s gives ceil(n/s)); --dilation D spaces the taps: span D*(k-1)+1.
  Stride, dilation: one value, or one per axis as 'rows,cols'.
  An impulse response (an audio file as -k) is causal, as ffmpeg afir and SoX apply
  it: output n hears inputs n, n-1, ...; its tail is kept (N+K-1 samples, as --mode
  full) unless --mode same asks for the input's length. Designed kernels (FIR, image)
  stay centred (zero phase). --explain and --json name the alignment.

\b
Boundary (what lies outside the input):
  convcli            numpy.pad  scipy.ndimage OpenCV              PyTorch   ImageMagick
  constant (zero)    constant   constant      BORDER_CONSTANT     zeros     Black/Background
  reflect  dcb|abcd  reflect    mirror        BORDER_REFLECT_101  reflect   -
  symmetric cba|abcd symmetric  reflect       BORDER_REFLECT      -         Mirror
  edge (replicate,   edge       nearest       BORDER_REPLICATE    replicate Edge
        nearest)
  wrap (circular)    wrap       wrap          (unsupported)       circular  Tile
  'mirror' is refused: it means reflect in scipy.ndimage and symmetric in ImageMagick.
  Default: images reflect, audio and arrays constant 0 (silence before and after).
  Reflect invents no frame: a flat image stays flat under any normalized kernel,
  where zeros paint a bright frame with sharpen and darken the border with a blur
  (OpenCV's default is BORDER_REFLECT_101, ImageMagick's Edge; neither adds a frame).
  A feature map (model.npz:LAYER) pads as its layers do. --explain and --json name
  the boundary used.

\b
Kernels (-k, repeatable: applied one after another; --stride applies once, after the
  last kernel (the chain is one filter: decimating inside it would alias); --mode,
  --padding, --boundary and --dilation apply to each kernel):
  sharpen, box:5, gaussian:sigma=2, sobel-x, moving-average:9,
  lowpass:cutoff=3000 (at the input's sample rate; arrays: --sample-rate), highpass,
  bandpass:low=300,high=3000,
  kernel.npy / .csv / .txt / .kernel, "1 2 1; 2 4 2; 1 2 1 /16", room.wav (impulse response),
  mix.npy (C_out, C_in, kh, kw), model.npz:conv1 or model.npz:conv1[3].
  An impulse response at another sample rate is resampled to the input's rate
  (scipy.signal.resample_poly) with a warning.
  Long audio (1-D kernels and chains of them, zero boundary, same/full/causal; files and
  pipes) is processed in blocks by overlap-add, in memory bounded by block and kernels.

\b
Worked example (convolution flips, correlation does not):
  echo "0 0 1 0 0" > x.txt
  convcli convolve x.txt -k "1 2 3" -o y.txt               # y.txt: 0 1 2 3 0
  convcli convolve x.txt -k "1 2 3" --correlate -o z.txt   # z.txt: 0 3 2 1 0

\b
Examples:
  convcli convolve samples/photo.png -k sharpen -o sharpened.png
  convcli convolve samples/photo.png -k sobel-x --correlate --range abs -o edges.png
  convcli convolve samples/speech.wav -k lowpass:cutoff=1000 -o low.wav --explain
  convcli convolve samples/speech.wav -k moving-average:4 --stride 2 -o half-rate.wav
  convcli convolve 'samples/shapes/*/*0.png' -k gaussian:sigma=2 -o blurred/ -j 2 --json
  convcli convolve samples/shapes -r -k box:3 -o boxed/ --quiet
  convcli convolve samples/shapes/circle/ -k box:3 -o soft/ --executor dask -j 2
"""


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs for one file (picklable)."""

    specs: tuple[str, ...]
    geometry: object  # convcli.kernels.apply.Geometry
    dtype: str
    policy: str
    force: bool
    explain: bool
    block_size: int | None
    grid: bool = False
    sample_rate: float | None = None  # of inputs that carry none (arrays): --sample-rate
    level: object = None  # convcli.kernels.level.Level: --gain, --normalize, --ir-norm, --mix


def parse_ints(text: str, name: str, low: int = 1) -> int | tuple[int, ...]:
    """'2' -> 2, '2,1' -> (2, 1); values >= ``low``."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError as error:
        raise UsageError(f"--{name} {text!r}: expected an integer or 'rows,cols'") from error
    from convcli.sizes import check_range  # numba-free

    try:
        values = tuple(check_range(f"--{name}", value, low) for value in values)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return values[0] if len(values) == 1 else values


def parse_padding(text: str | None):
    """'2' -> 2, '1,2' -> ((1, 2),) (before, after on every axis), '1,2;0,3' -> per axis pairs."""
    if text is None:
        return None
    try:
        axes = [tuple(int(v) for v in part.split(",")) for part in text.split(";")]
    except ValueError as error:
        raise UsageError(f"--padding {text!r}: expected P, B,A or B,A;B,A with integers") from error
    for axis in axes:
        if len(axis) > 2 or any(v < 0 for v in axis):
            raise UsageError(f"--padding {text!r}: each axis takes P or B,A with values >= 0")
        if max(axis) > MAX_SIZE:
            raise UsageError(f"--padding {text!r}: values must be at most 2**48 = {MAX_SIZE}")
    if len(axes) == 1 and len(axes[0]) == 1:
        return axes[0][0]
    return tuple(a if len(a) == 2 else (a[0], a[0]) for a in axes)


@click.command(help=HELP)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option(
    "-k",
    "--kernel",
    "kernels",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="Kernel: library name[:params], file, inline matrix, audio IR, model.npz:layer[i]. Repeat to chain.",
)
@click.option(
    "--mode",
    type=click.Choice(["same", "valid", "full"]),
    default=None,
    help="Output size. [default: same; full for an impulse response (causal, its tail kept); "
    "--mode same keeps the input's length]",
)
@click.option("--padding", metavar="P|B,A|B,A;B,A", help="Explicit zero/boundary padding; overrides --mode.")
@click.option(
    "--boundary",
    default=None,
    help="constant|reflect|symmetric|edge|wrap (aliases zero, replicate, nearest, circular). "
    "[default: reflect for images, constant for audio and arrays; constant when --cval is given]",
)
@click.option(
    "--cval", type=float, default=0.0, show_default=True, help="Value outside the input for constant."
)
@click.option("--stride", default="1", show_default=True, metavar="S|SH,SW")
@click.option("--dilation", default="1", show_default=True, metavar="D|DH,DW")
@click.option("--correlate", is_flag=True, help="Cross-correlation (no kernel flip), as CNN layers compute.")
@click.option("--groups", type=click.IntRange(min=1), default=1, show_default=True,
              help="Channel groups of a (C_out, C_in/G, kh, kw) kernel (depthwise: --groups C).")
@click.option("--transposed", is_flag=True,
              help="Transposed convolution: the adjoint of the operation the other options describe.")
@click.option("--output-padding", default="0", show_default=True, metavar="A|AH,AW",
              help="With --transposed: samples added at the end, 0 <= A < max(stride, dilation).")
@click.option(
    "--method",
    type=click.Choice(["auto", "direct", "separable", "fft"]),
    default="auto",
    show_default=True,
    help="Engine method; auto picks the cheapest by a measured cost model.",
)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--explain", is_flag=True, help="Print the resolved kernel, the method and why (stderr).")
@click.option(
    "--grid",
    is_flag=True,
    help="Draw the output channels as a labelled grid picture (automatic for an image output with "
    "other than 1 or 3 channels).",
)
@click.option(
    "--sample-rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="HZ",
    help="Sample rate of array inputs (.npy, .csv, .txt), for FIR designs in Hz and the reported rate; "
    "audio files carry their own.",
)
@click.option("--gain", "gain_db", type=float, metavar="DB", help="Output times 10^(DB/20) (SoX's gain DB).")
@click.option(
    "--normalize",
    "normalize_dbfs",
    type=float,
    metavar="DBFS",
    help="Scale the output so its peak is DBFS, as sox --norm=DBFS (-1: peak at -1 dBFS). Long audio "
    "in blocks reads its input twice.",
)
@click.option(
    "--ir-norm",
    type=click.Choice(["energy", "peak"]),
    help="Scale the impulse response first: its loudest channel to unit energy, or its peak to 1.",
)
@click.option(
    "--mix",
    type=float,
    metavar="W",
    help="Impulse response: (1-W)*dry + W*wet, the input beside its reverb sample for sample.",
)
@click.option("-r", "--recursive", is_flag=True, help="Folders: also the files in their sub-folders.")
@click.option(
    "--block-size",
    type=click.IntRange(min=1),
    hidden=True,
    help="Frames per block for block-wise audio (default: automatic).",
)
@output_options
def convolve(
    inputs,
    kernels,
    mode,
    padding,
    boundary,
    cval,
    stride,
    dilation,
    correlate,
    groups,
    transposed,
    output_padding,
    method,
    dtype,
    explain,
    grid,
    sample_rate,
    gain_db,
    normalize_dbfs,
    ir_norm,
    mix,
    recursive,
    block_size,
    output,
    batch,
    force,
    range_policy,
    as_json,
    quiet,
) -> ExitStatus:
    from convcli.cli.common import expand_inputs
    from convcli.engine.boundary import check_cval, normalize_boundary
    from convcli.executors import check_stdio
    from convcli.kernels.apply import Geometry

    if boundary is None and cval != 0:
        boundary = "constant"  # a fill value asks for a constant boundary
    check_cval(boundary, cval)
    geometry = Geometry(
        mode=mode,
        boundary=None if boundary is None else normalize_boundary(boundary),
        cval=cval,
        stride=parse_ints(stride, "stride"),
        dilation=parse_ints(dilation, "dilation"),
        padding=parse_padding(padding),
        correlate=correlate,
        method=method,
        groups=groups,
        transposed=transposed,
        output_padding=parse_ints(output_padding, "output-padding", low=0),
    )
    _check_transposed(geometry)
    feature_maps = _check_specs(kernels, geometry, sample_rate)
    level = _level(gain_db, normalize_dbfs, ir_norm, mix, range_policy)
    if feature_maps and "range_policy" not in given_options(click.get_current_context()):
        range_policy = "normalize"  # activations have no fixed range: show them all on one scale
    names = expand_inputs(inputs, recursive=recursive)
    check_stdio(names, output, batch)
    plans = plan_outputs(names, output, tag="convolved", force=force)
    settings = Settings(tuple(kernels), geometry, dtype, range_policy, force, explain, block_size, grid,
                        sample_rate, level)
    result = run_files(plans, functools.partial(convolve_file, settings=settings), batch, force=force,
                       quiet=quiet)
    records = result.records
    for record in records:
        for note in record.pop("notes", []):
            warn(f"{record['input']}: {note}")
        if record.get("non_finite"):
            warn(f"{record['input']}: {non_finite_text(record['non_finite'])} NaN or inf: the outputs within "
                 "the kernel's reach of them are not finite")
        if explain and not record.get("error"):
            click.echo(record.pop("explain"), err=True)
    return finish(records, command="convolve", as_json=as_json, quiet=quiet,
                  describe=functools.partial(_describe, kernels),
                  extra={"kernels": list(kernels), **result.info})


def _check_transposed(geometry) -> None:
    """Options that only a transposed convolution takes, or that it cannot honour."""
    extra = geometry.output_padding
    if any(extra if isinstance(extra, tuple) else (extra,)) and not geometry.transposed:
        raise UsageError("--output-padding applies only with --transposed")
    if geometry.transposed and geometry.cval != 0:
        raise UsageError("--transposed is the adjoint of a linear operation: a constant boundary with "
                         f"--cval {geometry.cval:g} is not linear (leave out --cval)")


def _level(gain_db, normalize_dbfs, ir_norm, mix, range_policy: str):
    from convcli.kernels.level import Level

    if normalize_dbfs is not None and range_policy == "normalize":
        raise UsageError("--normalize DBFS and --range normalize both rescale the output: give one")
    return Level(gain_db, normalize_dbfs, ir_norm, mix)


def _check_specs(specs: tuple[str, ...], geometry, sample_rate: float | None = None) -> bool:
    """Bad kernels fail before any file is touched; rate-dependent designs wait for the input.
    Returns whether a kernel is a model's feature map."""
    from convcli.kernels import resolve_kernel

    feature_maps = False
    for spec in specs:
        try:
            kernel = resolve_kernel(spec, sample_rate=sample_rate)
        except UsageError as error:
            if "needs a sample rate" not in str(error):
                raise
            continue
        if kernel.role == "model":
            _check_feature_geometry(kernel, geometry)
            feature_maps = True
    return feature_maps


def _check_feature_geometry(kernel, geometry) -> None:
    """A feature map is computed with the layers' own geometry: options that would change it are refused."""
    given = [
        text
        for text, changed in (
            (f"--mode {geometry.mode}", geometry.mode not in (None, "same")),
            (f"--boundary {geometry.boundary}", geometry.boundary is not None),
            ("--padding", geometry.padding is not None),
            (f"--stride {geometry.stride}", geometry.stride not in (1, (1,), (1, 1))),
            (f"--dilation {geometry.dilation}", geometry.dilation not in (1, (1,), (1, 1))),
            (f"--groups {geometry.groups}", geometry.groups != 1),
            ("--transposed", geometry.transposed),
        )
        if changed
    ]
    if given:
        from convcli.nn.model import array_name

        raw = f"{kernel.feature.path}:{array_name(kernel.feature.layer, 'weight')}"
        raise UsageError(
            f"{kernel.spec} is the model's feature map, computed with its layers' own stride, padding and "
            f"dilation: leave out {', '.join(given)} (for the stored kernel with your geometry use -k {raw})"
        )


def convolve_file(job: Job, settings: Settings) -> dict:
    """Read one input, apply the kernels, write the result; return its record."""
    from dataclasses import replace

    import numpy as np

    from convcli.io.audio import audio_info_for
    from convcli.io.files import AUDIO_EXTENSIONS
    from convcli.io.ranges import count_non_finite
    from convcli.kernels.apply import apply_chain, follow_alpha, strided_sample_rate
    from convcli.kernels.stream import can_stream

    audio = _long_audio(job, settings)  # its header only: such a file may go through in blocks
    media = load_input(job) if audio is None else None
    rate = (audio.sample_rate if audio is not None else media.sample_rate) or settings.sample_rate
    kernels = _kernels(settings.specs, rate, settings)
    feature_maps = any(kernel.role == "model" for kernel in kernels)
    kind = "audio" if audio is not None else media.kind
    geometry = settings.geometry.for_media(kind, feature_maps=feature_maps)
    if audio is not None and can_stream(kernels, geometry):
        return _convolve_blocks(job, audio, kernels, geometry, settings)
    media = media or load_input(job)
    data = media.data.astype(np.dtype(settings.dtype))
    result, plans = apply_chain(data, media.kind, kernels, geometry)
    result = result if settings.level is None else _leveled(result, settings.level)
    record = _record(media.data.shape, result.shape, kernels, plans, settings, geometry)
    record["non_finite"] = count_non_finite(media.data)
    if _as_grid(job, result, settings.grid):
        _save_grid(job, result, kernels, force=settings.force)
        return record | {"picture": "grid"}
    alpha = None if media.alpha is None else follow_alpha(media.alpha, kernels, geometry)
    output = replace(media, data=result, alpha=alpha)
    as_audio = job.extension in AUDIO_EXTENSIONS
    if rate is not None:  # every output sample holds 1/rate s of the input; the stride makes it s/rate
        rate = record["sample_rate"] = strided_sample_rate(rate, geometry, whole=as_audio)
        if as_audio:
            audio_out = media.audio or audio_info_for(job.extension, channels=len(np.atleast_2d(result)))
            output = replace(output, audio=replace(audio_out, sample_rate=rate, frames=result.shape[-1]))
    record["clipped"] = save_output(job, output, force=settings.force, policy=settings.policy)
    return record


def _kernels(specs: tuple[str, ...], sample_rate: float | None, settings: Settings) -> list:
    """The kernels of one file (FIR designs are made at its sample rate; an impulse response with
    its level options applied)."""
    from convcli.kernels import resolve_kernel
    from convcli.kernels.level import adjust_ir, check_level_kernels

    kernels = [resolve_kernel(spec, sample_rate=sample_rate) for spec in specs]
    if settings.level is None:
        return kernels
    check_level_kernels(kernels, settings.level, settings.geometry)
    return [adjust_ir(kernel, settings.level) for kernel in kernels]


def _leveled(result, level):
    """The result at the level --gain or --normalize asks for."""
    from convcli.kernels.level import finite_peak

    factor = level.output_factor(finite_peak(result) if level.needs_peak else None)
    return result if factor == 1 else result * result.dtype.type(factor)


def _as_grid(job: Job, result, asked: bool) -> bool:
    """A picture of the channels side by side: asked for, or the only honest image of C != 1, 3 channels."""
    from convcli.io.files import IMAGE_EXTENSIONS

    is_image = job.extension in IMAGE_EXTENSIONS
    if asked and not is_image:
        shown = job.extension or "stdout"
        raise UsageError(f"--grid draws a picture: give an image output (.png), not {shown}")
    return is_image and result.ndim == 3 and (asked or result.shape[0] not in (1, 3))


def _save_grid(job: Job, maps, kernels, *, force: bool) -> None:
    from convcli.io.files import atomic_output, stdout_output
    from convcli.nn.plots import plot_feature_maps

    last = kernels[-1]
    name = f"{last.feature.layer}" if last.feature is not None else "channel"
    first = 0 if last.feature is None or last.feature.index is None else last.feature.index
    labels = [f"{name}[{first + c}]" for c in range(len(maps))]
    title = f"{job.input}: {' then '.join(k.spec for k in kernels)} ({shape_text(maps.shape)})"
    target = stdout_output(job.extension) if job.output is None else atomic_output(job.output, force=force)
    with target as temp:
        plot_feature_maps(maps, temp, labels=labels, title=title)


# below this many samples (frames × channels) an audio file is simply convolved in memory
STREAM_MIN_SAMPLES = 1 << 23


def _long_audio(job: Job, settings: Settings):
    """The :class:`~convcli.io.audio.AudioInfo` of a long audio input (a file, or stdin spooled to
    one) bound for an audio output, file or stdout (one that may be convolved in blocks, in bounded
    memory), else None."""
    from convcli.io.audio import audio_info
    from convcli.io.files import AUDIO_EXTENSIONS, check_input_file

    source = _audio_source(job)
    if source is None or job.extension not in AUDIO_EXTENSIONS or settings.dtype != "float32":
        return None
    check_input_file(source)
    info = audio_info(source, name=_input_name(job))
    least = 1 if settings.block_size else STREAM_MIN_SAMPLES
    return info if info.frames * info.channels >= least else None


def _audio_source(job: Job) -> Path | None:
    """The audio file the job reads: its input, or the file stdin was spooled to (None: not audio)."""
    from convcli.io.files import AUDIO_EXTENSIONS, STDIO, input_is_audio_file, sniff_extension

    if job.input != STDIO:
        return Path(job.input) if input_is_audio_file(job.input) else None
    if not isinstance(job.stdin, Path):
        return None
    with job.stdin.open("rb") as spooled:
        head = spooled.read(16)
    return job.stdin if sniff_extension(head) in AUDIO_EXTENSIONS else None


def _input_name(job: Job) -> str:
    from convcli.io.files import STDIO

    return "stdin" if job.input == STDIO else job.input


def _convolve_blocks(job: Job, info, kernels, geometry, settings: Settings) -> dict:
    """Convolve an audio file into an audio file block by block (overlap-add through the chain;
    memory bounded by the block and the kernels). Normalising makes two passes: the first finds the
    peak, the second writes with that gain."""
    import numpy as np

    from convcli.engine.convolve import plan
    from convcli.executors import check_stop
    from convcli.io.audio import AudioWriter, read_audio_blocks
    from convcli.io.files import atomic_output, stdout_output
    from convcli.io.ranges import count_non_finite, peak_normalize_gain
    from convcli.kernels.apply import alignment_summary, strided_sample_rate
    from convcli.kernels.level import Level, finite_peak
    from convcli.kernels.stream import DEFAULT_BLOCK, block_method, stream_chain, stream_taps

    block = settings.block_size or max(DEFAULT_BLOCK, 4 * max(kernel.shape[-1] for kernel in kernels))
    rate = strided_sample_rate(info.sample_rate, geometry)  # before any work: a fractional rate is refused
    non_finite = 0

    def counted(blocks):
        nonlocal non_finite
        non_finite = 0  # normalize reads the file twice
        for data in blocks:
            non_finite += count_non_finite(data)
            yield data

    def pieces():
        blocks = counted(read_audio_blocks(_audio_source(job), block, name=_input_name(job)))
        return stream_chain(blocks, info.frames, kernels, geometry, info.channels)[0]

    _, channels, _ = stream_chain(iter(()), info.frames, kernels, geometry, info.channels)
    gain = None
    if settings.policy == "normalize" and not info.is_float:
        gain = peak_normalize_gain(np.array([np.max(np.abs(p)) for p in pieces()] or [0.0]), 1.0)
    level = settings.level or Level()
    factor = np.float32(level.output_factor(
        max((finite_peak(p) for p in pieces()), default=0.0) if level.needs_peak else None))
    frames = 0
    check_stop(job.run_id)
    target = (stdout_output(job.extension) if job.output is None
              else atomic_output(job.output, force=settings.force or job.overwrite, run_id=job.run_id))
    with target as temp:
        with AudioWriter(temp, sample_rate=rate, channels=channels, info=info,
                         policy=settings.policy, gain=gain) as writer:
            for piece in pieces():
                check_stop(job.run_id)  # a long file stops at the next block when its batch is interrupted
                writer.write(piece if factor == 1 else piece * factor)
                frames += piece.shape[1]
            clipped = writer.clipped
    passes = "; two passes over the input (the first finds the peak to normalise to)"
    plans = []
    for kernel in kernels:
        taps = stream_taps(kernel, 1, geometry)[1][0]
        how = plan((min(block, info.frames),), taps, mode="full", method=block_method(geometry))
        reason = f"block-wise overlap-add, {block} frames per block; per block: {how.reason}"
        reason += passes if level.needs_peak or gain is not None else ""
        plans.append({"method": how.method, "reason": reason} | alignment_summary(kernel, geometry))
    record = _record((info.channels, info.frames), (channels, frames), kernels, plans, settings, geometry)
    return record | {"clipped": clipped, "non_finite": non_finite, "sample_rate": rate}


def _record(input_shape, output_shape, kernels, plans, settings: Settings, geometry) -> dict:
    from convcli.kernels.show import explain_text

    record = {
        "input_shape": list(input_shape),
        "output_shape": list(output_shape),
        "boundary": geometry.boundary,
        "method": [p["method"] for p in plans],
        "reason": [p["reason"] for p in plans],
        "alignment": [p["alignment"] for p in plans],
        "alignment_reason": [p["alignment_reason"] for p in plans],
        "clipped": 0,
        "notes": [n for k in kernels for n in k.notes] + _stride_notes(kernels, plans),
    }
    if settings.explain:
        record["explain"] = explain_text(kernels, plans, geometry)
    return record


def _stride_notes(kernels, plans) -> list[str]:
    notes = []
    for kernel, plan in zip(kernels, plans, strict=True):
        counts = plan.get("left_over") or []
        left = uncovered_text(dict(zip(AXIS_NAMES.get(len(counts), ()), counts, strict=False)))
        if left:
            notes.append(f"{kernel.spec}: the stride does not tile the input: {left} never read")
    return notes


def _describe(specs: tuple[str, ...], record: dict) -> str:
    return file_line(record, ", ".join(f"{k} [{m}]" for k, m in zip(specs, record["method"], strict=True)))
