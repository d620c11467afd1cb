"""The convolve job: read one file, apply the kernels, write the result, return its record.

What ``convcli convolve`` runs on each file, on any executor; the checks that refuse bad kernels
and geometries before any file is read live here too, so the command and
``convcli.convolve_files`` refuse the same things.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from convcli.errors import UsageError
from convcli.executors import Job
from convcli.jobs.files import load_input, save_output
from convcli.text import AXIS_NAMES, shape_text, uncovered_text


@dataclass(frozen=True)
class ConvolveSettings:
    """Everything a worker needs to convolve one file (picklable: it travels to worker processes
    and Dask workers)."""

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


def check_transposed(geometry) -> None:
    """Options that only a transposed convolution takes, or that it cannot honour (the messages mark
    the parameters they name: the command shows its flags)."""
    extra = geometry.output_padding
    if any(extra if isinstance(extra, tuple) else (extra,)) and not geometry.transposed:
        raise UsageError("`output_padding` applies only with `transposed`")
    if geometry.transposed and geometry.cval != 0:
        raise UsageError("`transposed` is the adjoint of a linear operation: a constant boundary with "
                         f"`cval` {geometry.cval:g} is not linear (leave out `cval`)")



def check_kernels(specs: tuple[str, ...], geometry, sample_rate: float | None = None) -> bool:
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


def convolve_file(job: Job, settings: ConvolveSettings) -> dict:
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


def _kernels(specs: tuple[str, ...], sample_rate: float | None, settings: ConvolveSettings) -> list:
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


def _long_audio(job: Job, settings: ConvolveSettings):
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


def _convolve_blocks(job: Job, info, kernels, geometry, settings: ConvolveSettings) -> dict:
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


def _record(input_shape, output_shape, kernels, plans, settings: ConvolveSettings, geometry) -> dict:
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
