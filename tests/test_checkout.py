"""convcli runs from a source checkout without being installed: the kernel library in filters/ is
found both as the installed package convcli.filters and as the checkout's folder."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_uninstalled(*args: str) -> subprocess.CompletedProcess:
    """Python from the repository root with the dependencies on PYTHONPATH but without site
    processing (-S), so the editable install's import hook (a .pth file) is not loaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages()), "CONVCLI_SERVER": "0"}
    return subprocess.run(
        [sys.executable, "-S", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def test_python_m_convcli_finds_the_kernel_library_from_a_checkout():
    result = run_uninstalled("-m", "convcli", "kernels", "show", "sharpen")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sharpen") and "5" in result.stdout.split()


def test_load_kernel_from_a_checkout():
    code = (
        "import convcli, convcli.kernels.library as l; print(l.filters_root()); "
        "print(convcli.load_kernel('sharpen').sum())"
    )
    result = run_uninstalled("-c", code)
    assert result.returncode == 0, result.stderr
    root, total = result.stdout.split()
    assert Path(root) == REPO / "filters" and float(total) == 1.0


def test_the_installed_package_is_preferred(monkeypatch):
    import convcli
    from convcli.kernels import library

    assert "sharpen" in library.entries()
    # a wheel ships filters/ inside the package; an editable install maps it to the checkout's
    shipped = Path(convcli.__file__).parent / "filters"
    expected = shipped if shipped.is_dir() else REPO / "filters"
    assert Path(str(library.filters_root())).resolve() == expected.resolve()


def test_benchmark_scripts_reach_the_package_from_a_checkout():
    # as 'python benchmarks/bench_x.py' runs: the script's folder first on sys.path, not the repository
    code = "import sys; sys.path[0] = 'benchmarks'; import common, convcli.engine.convolve"
    result = run_uninstalled("-c", code)
    assert result.returncode == 0, result.stderr
