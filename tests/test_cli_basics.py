"""The top-level command: version, help, exit codes, fast start-up."""

import json
import subprocess
import sys

from commands import run

from convcli import __version__
from convcli.cli import COMMANDS


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_help_lists_every_registered_command():
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_unknown_command_suggests_and_exits_2():
    assert COMMANDS, "no command is registered"
    name = sorted(COMMANDS)[0]
    result = run(name[:-1] + "x")
    assert result.exit_code == 2
    assert "did you mean" in result.output


LIGHT_PROBE = """
import json
import sys
from click.testing import CliRunner
from convcli.cli import cli
args = sys.argv[1:]
result = CliRunner().invoke(cli, args)
heavy = sorted(m for m in ("numba", "scipy", "llvmlite") if m in sys.modules)
print(json.dumps([result.exit_code, heavy]))
"""


def light_run(*args):
    command = [sys.executable, "-c", LIGHT_PROBE, *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    code, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    return code, heavy


def test_help_imports_no_numba_or_scipy():
    code, heavy = light_run("--help")
    assert code == 0 and heavy == []
    for name in COMMANDS:
        code, heavy = light_run(name, "--help")
        assert code == 0 and heavy == [], f"'convcli {name} --help' imported {heavy}"


def test_the_wheel_ships_every_filter_file():
    """pyproject maps filters/ to convcli.filters with patterns covering every data file; when convcli is
    installed, the installed package holds them all (from a bare checkout the folder itself is used)."""
    import importlib.util
    import tomllib
    from fnmatch import fnmatch
    from importlib.resources import files
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    setup = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"]["convcli.filters"] == "filters" and "convcli.filters" in setup["packages"]
    patterns = setup["package-data"]["convcli.filters"]
    data = {p.name for p in (repo / "filters").iterdir() if p.is_file() and p.suffix != ".py"}
    assert data and all(any(fnmatch(name, pattern) for pattern in patterns) for name in data)
    if importlib.util.find_spec("convcli.filters") is not None:
        shipped = {entry.name for entry in files("convcli.filters").iterdir()}
        assert data <= shipped, f"missing from the package: {sorted(data - shipped)}"


def test_public_api_is_top_level_and_in_help():
    import pydoc

    import convcli
    from convcli.nn.train import TrainConfig, train

    assert convcli.train is train and convcli.TrainConfig is TrainConfig
    text = pydoc.render_doc(convcli, renderer=pydoc.plaintext)
    for name in convcli.__all__:
        assert name.strip("_") in text.replace("VERSION", "version"), name
    assert "train(data" in text and "class TrainConfig" in text
