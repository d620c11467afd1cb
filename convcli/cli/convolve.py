"""``convcli convolve``: parse options, resolve kernels, run the per-file job, print."""

from __future__ import annotations

import functools

import click

from convcli.cli.common import (
    file_line,
    finish,
    given_options,
    non_finite_text,
    output_options,
    plan_outputs,
    run_files,
)
from convcli.cli.output import warn
from convcli.errors import ExitStatus, UsageError
from convcli.sizes import MAX_SIZE

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
    from convcli.jobs.convolve import ConvolveSettings, check_kernels, check_transposed, convolve_file
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
    check_transposed(geometry)
    feature_maps = check_kernels(kernels, geometry, sample_rate)
    level = _level(gain_db, normalize_dbfs, ir_norm, mix, range_policy)
    if feature_maps and "range_policy" not in given_options(click.get_current_context()):
        range_policy = "normalize"  # activations have no fixed range: show them all on one scale
    names = expand_inputs(inputs, recursive=recursive)
    check_stdio(names, output, batch)
    plans = plan_outputs(names, output, tag="convolved", force=force)
    settings = ConvolveSettings(tuple(kernels), geometry, dtype, range_policy, force, explain, block_size,
                                grid, sample_rate, level)
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


def _level(gain_db, normalize_dbfs, ir_norm, mix, range_policy: str):
    from convcli.kernels.level import Level

    if normalize_dbfs is not None and range_policy == "normalize":
        raise UsageError("--normalize DBFS and --range normalize both rescale the output: give one")
    return Level(gain_db, normalize_dbfs, ir_norm, mix)


def _describe(specs: tuple[str, ...], record: dict) -> str:
    return file_line(record, ", ".join(f"{k} [{m}]" for k, m in zip(specs, record["method"], strict=True)))
