"""The README's command blocks and every ``--help`` example run as written, in order, in a fresh
folder with samples/; the README's output lines must match (see tests/docs.py for the markers)."""

from __future__ import annotations

import re
import subprocess

import numpy as np
from click.testing import CliRunner
from docs import REPO, Step, environment, output_matches, readme_steps, run_step, workspace

from convcli.cli import COMMANDS, cli

# the order in which the help examples run: train writes the model evaluate and predict use
HELP_ORDER = [
    "",
    "convolve",
    "pool",
    "kernels",
    "kernels show",
    "matrix",
    "shapes",
    "params",
    "train",
    "evaluate",
    "predict",
    "server",
]
EXAMPLE_HEADER = re.compile(r"^\s*(Examples?|Worked example)\b.*:\s*$")
FILE_CLAIM = re.compile(r"#\s*(?P<file>[\w.-]+): (?P<values>[-\d. ]+)$")


# ---------------------------------------------------------------- the markers themselves
def test_markers_match_what_they_say_and_nothing_else():
    assert output_matches(["took ~0.50 s"], ["took 12.25 s"])
    assert not output_matches(["took 0.50 s"], ["took 0.51 s"])
    assert output_matches(["a", "...", "z"], ["a", "b", "c", "z"]) and output_matches(
        ["a", "...", "z"], ["a", "z"]
    )
    assert not output_matches(["a", "z"], ["a", "b", "z"])  # no silent gaps
    assert not output_matches(["a"], ["a", "extra line"])
    assert output_matches(["│ x │ ~1,234 │"], ["│ x │ 98,765 │"])
    assert output_matches(["│ a │ ~0.76 │"], ["│ a │  0.76 │"])  # the ~ takes a column of the table
    assert output_matches(["│ a │~0.980 │"], ["│ a │ 0.980 │"])
    assert not output_matches(["│ a │ ~0.76 │"], ["│ a │0.76 │"]) and not output_matches(["a ~1"], ["a1"])


def test_readme_parsing_finds_commands_outputs_and_continuations():
    text = (
        "```console\n$ convcli a \\\n    --b\nout 1\n$ convcli c\n```\n\n"
        "```python\nprint(1)\n```\n```\n1\n```\n"
    )
    steps = readme_steps(text)
    assert [(s.command, s.expected, s.python) for s in steps] == [
        ("convcli a --b", ["out 1"], False),
        ("convcli c", [], False),
        ("print(1)", ["1"], True),
    ]


# ---------------------------------------------------------------- the README
def test_readme_commands_run_as_written(tmp_path):
    steps = readme_steps((REPO / "README.md").read_text())
    assert len(steps) > 30
    cwd = workspace(tmp_path)
    drifted = []
    for step in steps:
        status, actual = run_step(step, cwd)
        if step.expected and not output_matches(step.expected, actual):
            drifted.append(_report(step, actual))
        elif not step.expected and status != 0:
            drifted.append(_report(step, [f"(exit status {status})", *actual]))
    assert not drifted, f"{len(drifted)} README block(s) disagree with the tool:\n\n" + "\n\n".join(drifted)


def _report(step: Step, actual: list[str]) -> str:
    shown = "\n".join(f"    {line}" for line in step.expected)
    got = "\n".join(f"    {line}" for line in actual)
    return f"README.md:{step.line}: $ {step.command}\n  documented:\n{shown}\n  actual:\n{got}"


# ---------------------------------------------------------------- the --help examples
def help_examples(command: str) -> list[str]:
    """The example lines of ``convcli COMMAND --help``, as printed."""
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    examples, inside = [], False
    for line in result.output.splitlines():
        if EXAMPLE_HEADER.match(line):
            inside = True
        elif inside and not line.strip():
            inside = False
        elif inside:
            examples.append(line.strip())
    return examples


def test_every_command_has_help_examples():
    assert set(COMMANDS) <= set(HELP_ORDER)
    for command in HELP_ORDER:
        assert help_examples(command), f"'convcli {command} --help' shows no example"


def test_help_examples_run_as_written(tmp_path):
    cwd = workspace(tmp_path)
    failures = []
    seen = set()
    for command in HELP_ORDER:
        for example in help_examples(command):
            if example in seen:  # 'kernels' and 'kernels show' share their examples
                continue
            seen.add(example)
            result = subprocess.run(
                ["bash", "-c", example],
                cwd=cwd,
                env=environment(cwd),
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=300,
            )
            if result.returncode != 0:
                failures.append(
                    f"convcli {command} --help: {example}\n    exit {result.returncode}: "
                    f"{result.stderr.strip()[-300:]}"
                )
            claim = FILE_CLAIM.search(example)
            if claim and result.returncode == 0:
                values = np.loadtxt(cwd / claim["file"]).ravel()
                if not np.allclose(values, [float(v) for v in claim["values"].split()]):
                    failures.append(
                        f"convcli {command} --help: {example}\n    {claim['file']} holds {values}"
                    )
    assert not failures, "\n".join(failures)
