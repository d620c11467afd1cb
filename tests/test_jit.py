"""The first run is never silent: compiling kernels is announced at once, with progress."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import types

import numpy as np

from convcli import jit


class Stream(io.StringIO):
    def __init__(self, terminal: bool):
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def event_for(module: str, name: str):
    function = types.FunctionType((lambda: None).__code__, {}, name)
    function.__module__ = module
    return types.SimpleNamespace(data={"dispatcher": types.SimpleNamespace(py_func=function)})


def test_a_compile_is_announced_once_and_each_kernel_reported(monkeypatch):
    stream = Stream(terminal=False)
    monkeypatch.setattr(sys, "stderr", stream)
    notice = jit.CompileNotice()
    outer, inner = (
        event_for("convcli.engine.direct", "correlate_direct"),
        event_for("convcli.engine.direct", "rows"),
    )
    internal = event_for("numba.np.arraymath", "impl_max")
    for ev in (outer, inner, internal):
        notice.on_start(ev)
    for ev in (internal, inner, outer):
        notice.on_end(ev)
    lines = stream.getvalue().splitlines()
    assert lines[0] == jit.HEADER
    assert [line.split(" in ")[0] for line in lines[1:]] == [
        "convcli: compiled engine.direct.rows",
        "convcli: compiled engine.direct.correlate_direct",
    ]


def test_on_a_terminal_a_live_line_names_the_kernel_and_the_seconds(monkeypatch):
    stream = Stream(terminal=True)
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(jit, "TICK", 0.05)
    notice = jit.CompileNotice()
    kernel = event_for("convcli.io.png", "_filter_rows")
    notice.on_start(kernel)
    time.sleep(0.4)  # a long compile: the live line keeps the user informed
    notice.on_end(kernel)
    text = stream.getvalue()
    assert text.startswith(jit.HEADER + "\n")
    assert "\r\x1b[K  compiling io.png._filter_rows: 0 s (0 done)" in text
    assert text.endswith("\r\x1b[K")  # the live line is cleared when compiling ends


def test_a_cold_cache_run_says_so_on_stderr_and_a_warm_one_does_not(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(20, dtype=np.float32))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "CONVCLI_COMPILE_NOTICE": "1"}
    command = [
        sys.executable,
        "-m",
        "convcli",
        "pool",
        str(tmp_path / "x.npy"),
        "--size",
        "2",
        "-o",
        str(tmp_path / "y.npy"),
        "--force",
        "-q",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith(jit.HEADER + "\n")
    assert "convcli: compiled engine.pooling._pool_planes in" in first.stderr
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and second.stderr == ""


def test_numbas_blas_probe_does_not_import_scipy_linalg(tmp_path):
    """A cold image filter loads scipy.linalg's BLAS module alone (~85 ms less than through the
    package); Numba still finds BLAS, and scipy.linalg imports in full when it is asked for."""
    from PIL import Image

    image = tmp_path / "in.png"
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(image)
    script = (
        "import sys\n"
        "from convcli.cli import run\n"
        f"assert run(['convolve', {str(image)!r}, '-k', 'sharpen', "
        f"'-o', {str(tmp_path / 'out.png')!r}, '-q']) == 0\n"
        "import numba.np.arraymath\n"
        "print(numba.np.arraymath._HAVE_BLAS, 'scipy.linalg' in sys.modules)\n"
        "import numpy as np, scipy.linalg\n"
        "print(scipy.linalg.solve(2 * np.eye(2), np.ones(2)).tolist())\n"
    )
    env = {**os.environ, "CONVCLI_SERVER": "0"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split("\n")[:2] == ["True False", "[0.5, 0.5]"]
