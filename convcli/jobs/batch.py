"""Batches for Python: ``convcli.convolve_files`` and ``convcli.pool_files``.

What ``convcli convolve ... -o DIR`` and ``convcli pool ... -o DIR`` do, as functions: every input
is read, filtered and written into one folder by the same per-file jobs, on the same executors
(threads, processes, Dask). A bad kernel or option raises before any file is read; a file that
fails (missing, corrupt, an existing output) is a result with its error, and the others are still
written. Messages name the functions' parameters (``force``), not the command's flags.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path

from convcli.errors import UsageError, one_of
from convcli.executors import Advance, BatchOptions, Job, Record, no_progress, run_batch
from convcli.io.files import STDIO, kind_of
from convcli.jobs.files import output_names, resolved
from convcli.sizes import check_range

# the keys of a job's record that a FileResult holds as fields; the rest are its details
_FIELDS = ("input", "output", "error", "status")


@dataclass(frozen=True)
class FileResult:
    """What happened to one input of a batch (results come back in input order).

    ``error`` is one line naming the input and the problem (None: the output was written);
    ``details`` is what the job reported: ``input_shape``, ``output_shape``, ``seconds``, and for a
    convolution ``method``, ``boundary``, ``alignment``, ``clipped`` (samples or pixels clipped to an
    integer format's range), ``notes``...; the keys ``convcli convolve --json`` prints per file.
    """

    input: str
    output: Path | None
    error: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def convolve_files(
    inputs: Iterable[str | os.PathLike],
    kernel: str | Sequence[str],
    output_dir: str | os.PathLike,
    *,
    mode: str | None = None,
    boundary: str | None = None,
    cval: float = 0.0,
    stride: int | tuple[int, ...] = 1,
    dilation: int | tuple[int, ...] = 1,
    padding=None,
    correlate: bool = False,
    groups: int = 1,
    transposed: bool = False,
    output_padding: int | tuple[int, ...] = 0,
    method: str = "auto",
    dtype: str = "float32",
    range_policy: str | None = None,
    sample_rate: float | None = None,
    extension: str | None = None,
    force: bool = False,
    workers: int = 1,
    executor: str | None = None,
    scheduler_address: str | None = None,
    scheduler_file: str | None = None,
    retries: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[FileResult]:
    """Convolve every input file with ``kernel`` and write each result into ``output_dir``.

    What ``convcli convolve INPUT... -k KERNEL -o DIR/`` does, with the same per-file job:

    - ``inputs``: image, audio and array files (paths; expand globs and folders yourself).
    - ``kernel``: a kernel spec as ``-k`` takes it (``"gaussian:sigma=2"``, ``"box:5"``,
      ``"1 2 1; 2 4 2; 1 2 1 /16"``, ``"kernel.npy"``, ``"room.wav"``, ``"model.npz:conv1"``), or a
      sequence of specs applied one after another. An array: save it with ``numpy.save`` first.
    - ``output_dir``: created if missing; each output takes its input's file name (inputs that
      share a name keep their paths below their common folder) and format, or ``extension``
      (``".npy"`` keeps the floats).
    - ``mode``, ``boundary``, ``cval``, ``stride``, ``dilation``, ``padding``, ``correlate``,
      ``groups``, ``transposed``, ``output_padding``, ``method``: as :func:`convcli.convolve`, but
      the defaults are the command's, per file: ``mode`` "same" (an impulse response keeps its
      tail), ``boundary`` "reflect" for images and "constant" for audio and arrays.
    - ``range_policy``: integer formats' out-of-range values: "clip" (default), "normalize",
      "abs", "offset" ("normalize" is the default for a model's feature maps).
    - ``sample_rate``: of array inputs, for FIR designs in Hz (audio files carry their own).
    - ``force``: replace existing outputs (without it, such a file is a failed result).
    - ``workers``, ``executor`` ("thread", "process", "dask"; None: dask given a scheduler, else
      thread), ``scheduler_address``, ``scheduler_file``, ``retries``: where the files run, as
      ``-j``, ``--executor``... do.
    - ``progress(done, total)``: called as files finish.

    Returns one :class:`FileResult` per input, in input order; ``[r for r in results if not r.ok]``
    are the failures. Raises ``ValueError`` (:class:`convcli.errors.UsageError`) for a bad kernel or
    option, before any file is read.

    Example::

        results = convcli.convolve_files(sorted(glob.glob("photos/*.png")), "gaussian:sigma=2", "blurred",
                                         workers=4, executor="process")
        for failed in (r for r in results if not r.ok):
            print(failed.error)
    """
    from convcli.engine.boundary import check_cval, normalize_boundary
    from convcli.io.ranges import check_policy
    from convcli.jobs.convolve import ConvolveSettings, check_kernels, check_transposed, convolve_file
    from convcli.kernels.apply import Geometry
    from convcli.kernels.level import Level

    one_of("mode", mode or "same", ("same", "valid", "full"))
    one_of("method", method, ("auto", "direct", "separable", "fft"))
    one_of("dtype", dtype, ("float32", "float64"))
    stride, dilation = _axes(stride, "stride"), _axes(dilation, "dilation")
    output_padding = _axes(output_padding, "output_padding", low=0)
    specs = (kernel,) if isinstance(kernel, str) else tuple(kernel)
    if not specs or not all(isinstance(spec, str) for spec in specs):
        raise UsageError("`kernel`: give a kernel spec (a string) or a sequence of them")
    if boundary is None and cval != 0:
        boundary = "constant"  # a fill value asks for a constant boundary
    check_cval(boundary, cval)
    geometry = Geometry(mode=mode, boundary=None if boundary is None else normalize_boundary(boundary),
                        cval=cval, stride=_one(stride), dilation=_one(dilation), padding=padding,
                        correlate=correlate, method=method, groups=groups, transposed=transposed,
                        output_padding=_one(output_padding))
    check_transposed(geometry)
    feature_maps = check_kernels(specs, geometry, sample_rate)
    policy = check_policy(range_policy or ("normalize" if feature_maps else "clip"))
    settings = ConvolveSettings(specs, geometry, dtype, policy, force, explain=False, block_size=None,
                                sample_rate=sample_rate, level=Level())
    task = functools.partial(convolve_file, settings=settings)
    return _run(inputs, output_dir, extension, task, force, progress,
                BatchOptions.choose(workers, executor, scheduler_address, scheduler_file, retries))


def pool_files(
    inputs: Iterable[str | os.PathLike],
    size: int | tuple[int, ...] | None,
    output_dir: str | os.PathLike,
    *,
    stride: int | tuple[int, ...] | None = None,
    padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    op: str = "max",
    p: float = 2.0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    boundary: str = "constant",
    output_size: int | tuple[int, ...] | None = None,
    magnitude: bool = False,
    ndim: int | None = None,
    range_policy: str = "clip",
    extension: str | None = None,
    force: bool = False,
    workers: int = 1,
    executor: str | None = None,
    scheduler_address: str | None = None,
    scheduler_file: str | None = None,
    retries: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[FileResult]:
    """Pool every input file and write each result into ``output_dir``.

    What ``convcli pool INPUT... --size K -o DIR/`` does, with the same per-file job. ``size``,
    ``stride``, ``padding``, ``dilation``, ``op`` (max, min, avg, sum, lp), ``p``, ``ceil_mode``,
    ``count_include_pad`` and ``boundary`` follow :func:`convcli.pool` (PyTorch's rules); with
    ``output_size`` (``size`` None) the pooling is adaptive (:func:`convcli.adaptive_pool`).
    ``magnitude`` pools ``|x|`` (an audio envelope). ``ndim``: the pooled axes (default: 2 for
    images and 2-D or larger arrays, 1 for audio and 1-D arrays). Pooled audio keeps its duration
    at a lower sample rate. ``output_dir``, ``extension``, ``range_policy``, ``force``, the
    executor's options and ``progress`` are as in :func:`convolve_files`.

    Returns one :class:`FileResult` per input, in input order. Raises ``ValueError``
    (:class:`convcli.errors.UsageError`) for a bad window or option, before any file is read.
    """
    from convcli.io.ranges import check_policy
    from convcli.jobs.pool import PoolSettings, check_settings, pool_file
    from convcli.pool_windows import ADAPTIVE_OPS, OPS

    if (size is None) == (output_size is None):
        raise UsageError("give `size` (a window) or `output_size` (adaptive pooling), not both or neither")
    allowed = OPS if output_size is None else ADAPTIVE_OPS
    if op not in allowed:
        raise UsageError(f"`op` {op!r}: choose one of {', '.join(allowed)}")
    if op == "lp" and not p > 0:
        raise UsageError(f"`p` must be > 0, got {p}")
    if ndim not in (None, 1, 2):
        raise UsageError(f"`ndim` must be 1 or 2, got {ndim}")
    settings = PoolSettings(
        op=op, size=_axes(size, "size", low=0), stride=_axes(stride, "stride", low=0),
        padding=_axes(padding, "padding", low=0), dilation=_axes(dilation, "dilation", low=0), p=p,
        ceil_mode=ceil_mode, count_include_pad=count_include_pad, boundary=boundary,
        output_size=_axes(output_size, "output_size"), magnitude=magnitude, dims=ndim, force=force,
        policy=check_policy(range_policy),
    )
    check_settings(settings)
    task = functools.partial(pool_file, settings=settings)
    return _run(inputs, output_dir, extension, task, force, progress,
                BatchOptions.choose(workers, executor, scheduler_address, scheduler_file, retries))


def _axes(value: int | Sequence[int] | None, name: str, low: int = 1) -> tuple[int, ...] | None:
    """One value for every axis, or one per axis (at most two), each an integer >= ``low``, as
    the jobs take them; the window rules check the rest of a pooling window."""
    if value is None:
        return None
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    integers = all(isinstance(v, Integral) and not isinstance(v, bool) for v in values)
    if not integers or not 1 <= len(values) <= 2:
        raise UsageError(f"`{name}`: expected an integer or a tuple of two, got {value!r}")
    try:
        return tuple(check_range(f"`{name}`", v, low) for v in values)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _one(values: tuple[int, ...]) -> int | tuple[int, ...]:
    """``(2,)`` -> ``2``: one value for every axis, as the engine takes it."""
    return values[0] if len(values) == 1 else values


def _run(inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike, extension: str | None,
         task: Callable[[Job], Record], force: bool, progress: Callable[[int, int], None] | None,
         options: BatchOptions) -> list[FileResult]:
    jobs = _plan(inputs, Path(output_dir), extension)
    if not jobs:
        return []
    shown = no_progress if progress is None else functools.partial(_reported, progress)
    batch = run_batch(jobs, task, options, force=force, progress=shown)
    return [_result(record) for record in batch.records]


def _plan(inputs: Iterable[str | os.PathLike], folder: Path, extension: str | None) -> list[Job]:
    """Each input's job: its output in ``folder`` under its own name, refused before any work when
    the format is unknown or the output would replace the input."""
    names = [os.fspath(name) for name in inputs]
    if STDIO in names:
        raise UsageError("'-' (stdin) is the command line's: give file paths")
    if extension is not None:
        extension = ("." + extension.lstrip(".")).lower()
        kind_of(extension)
    relative = output_names(names)
    jobs = []
    for name in names:
        target = folder / relative[name]
        if extension is not None:
            target = target.with_suffix(extension)
        kind_of(target.suffix)  # an input of unknown format would have no output format
        if resolved(target, UsageError) == resolved(Path(name)):
            raise UsageError(f"{name}: the output would replace the input (give another `output_dir`)")
        jobs.append(Job(name, target, target.suffix.lower()))
    if len({job.output for job in jobs}) != len(jobs):
        raise UsageError("two inputs would write the same output file; use distinct names")
    for job in jobs:
        job.output.parent.mkdir(parents=True, exist_ok=True)
    return jobs


@contextmanager
def _reported(progress: Callable[[int, int], None], total: int) -> Iterator[Advance]:
    """A ``progress(done, total)`` callback as the executors' display."""
    done = 0

    def advance(files: int) -> None:
        nonlocal done
        done += files
        if files:
            progress(done, total)

    yield advance


def _result(record: Record) -> FileResult:
    output = record.get("output")
    return FileResult(record["input"], None if output is None else Path(output), record.get("error"),
                      {key: value for key, value in record.items() if key not in _FIELDS})
