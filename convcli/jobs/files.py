"""One file in, one file out: what every per-file job shares (decode its input, encode its output
atomically, name outputs in a folder).

Below the CLI and beside the executors' workers: nothing here imports Click, rich or the CLI, so a
process-pool or Dask worker that runs a job loads only the library (docs/design/layers.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from convcli.errors import ConvcliError, InputError
from convcli.executors import Job, check_stop
from convcli.io.files import STDIO


def load_input(job: Job):
    """Decode the job's input file (or the stdin data) into a :class:`convcli.io.Media`."""
    import io

    from convcli.io import read_media
    from convcli.io.files import check_input_file, sniff_extension

    if job.input == STDIO and isinstance(job.stdin, Path):  # stdin spooled to a file (plan_outputs)
        with job.stdin.open("rb") as spooled:
            head = spooled.read(16)
        return read_media(job.stdin, sniff_extension(head), name="stdin")
    if job.input == STDIO:
        return read_media(io.BytesIO(job.stdin or b""), sniff_extension(job.stdin or b""), name="stdin")
    path = Path(job.input)
    check_input_file(path)
    return read_media(path, path.suffix, name=job.input)


def save_output(job: Job, media, *, force: bool, policy: str) -> int:
    """Encode ``media`` to the job's output atomically (or to stdout); return the clipped count."""
    from convcli.io import write_media
    from convcli.io.files import atomic_output, stdout_output

    check_stop(job.run_id)  # the batch's safe point: an interrupted batch writes nothing more
    if job.output is None:
        target = stdout_output(job.extension)
    else:  # a task that runs again (Dask) replaces its own attempt: the client checked the target
        target = atomic_output(job.output, force=force or job.overwrite, run_id=job.run_id)
    with target as temp:
        return write_media(temp, media, extension=job.extension, policy=policy)


def output_names(inputs: list[str]) -> dict[str, Path]:
    """Each input's name inside an output folder: its file name, or, when two inputs share a file name
    (folders read recursively), its path below the inputs' common folder."""
    files = [name for name in inputs if name != STDIO]
    if len({Path(name).name for name in files}) == len(files):
        return {name: Path(Path(name).name) for name in files}
    common = Path(os.path.commonpath([str(resolved(Path(name)).parent) for name in files]))
    return {name: resolved(Path(name)).relative_to(common) for name in files}


def resolved(path: Path, error: type[ConvcliError] = InputError) -> Path:
    """``path.resolve()``; a path that cannot be resolved (a symbolic link loop: RuntimeError before
    Python 3.13, OSError after) is one ``error`` line naming it."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as failure:
        raise error(f"{path}: cannot resolve the path ({failure})") from None
