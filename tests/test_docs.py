"""The command blocks of README.md and docs/**/*.md and every ``--help`` example run as written, in
order, each document in a fresh folder with samples/; the documented output lines must match (see
tests/docs.py for the markers). The README stays a manual (at most 400 lines) and every local link
of the documentation reaches a file and heading that exist."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from convcli.cli import COMMANDS, cli
from docs import (
    README,
    README_MAX_LINES,
    REPO,
    Step,
    anchors,
    broken_links,
    document_steps,
    documents,
    environment,
    fenced_blocks,
    local_links,
    output_matches,
    run_step,
    workspace,
)

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


def test_document_parsing_finds_commands_outputs_and_continuations():
    text = (
        "```console\n$ convcli a \\\n    --b\nout 1\n$ convcli c\n```\n\n"
        "```python\nprint(1)\n```\n```\n1\n```\n"
    )
    steps = document_steps(text)
    assert [(s.command, s.expected, s.python) for s in steps] == [
        ("convcli a --b", ["out 1"], False),
        ("convcli c", [], False),
        ("print(1)", ["1"], True),
    ]


def test_links_and_anchors_are_found_as_github_makes_them():
    text = "# A `b`: c\n\n## Scripts: exit statuses and `--json`\n## A `b`: c\n[x](y.md#z) [w](https://e.org)\n"
    assert anchors(text) == {"a-b-c", "scripts-exit-statuses-and---json", "a-b-c-1"}
    assert local_links(text) == [(5, "y.md#z")]
    assert local_links("```\n[x](y.md)\n```\n") == []  # a fenced block holds no links


# ---------------------------------------------------------------- the documents
def test_documents_found():
    names = [str(path.relative_to(REPO)) for path in documents()]
    assert names[0] == "README.md" and "docs/guide/convolve.md" in names and "docs/reference/cli.md" in names


@pytest.mark.parametrize("path", documents(), ids=lambda path: str(path.relative_to(REPO)))
def test_document_commands_run_as_written(path, tmp_path):
    steps = document_steps(path.read_text())
    cwd = workspace(tmp_path)
    drifted = []
    for step in steps:
        status, actual = run_step(step, cwd)
        if step.expected and not output_matches(step.expected, actual):
            drifted.append(_report(path, step, actual))
        elif not step.expected and status != 0:
            drifted.append(_report(path, step, [f"(exit status {status})", *actual]))
    assert not drifted, f"{len(drifted)} block(s) disagree with the tool:\n\n" + "\n\n".join(drifted)


def _report(path, step: Step, actual: list[str]) -> str:
    shown = "\n".join(f"    {line}" for line in step.expected)
    got = "\n".join(f"    {line}" for line in actual)
    where = path.relative_to(REPO)
    return f"{where}:{step.line}: $ {step.command}\n  documented:\n{shown}\n  actual:\n{got}"


def test_readme_is_a_manual():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    assert len(document_steps(text)) > 15  # its tour and examples run
    # a fresh-machine check runs the first block's two lines, as written
    assert fenced_blocks(text)[0][1] == [
        "pip install . && convcli convolve samples/photo.png -k sharpen -o sharp.png",
        "pip install '.[test,dask]' && pytest",
    ]


def test_every_link_reaches_a_file_and_heading():
    broken = [problem for path in documents() for problem in broken_links(path)]
    assert not broken, "\n".join(broken)


def test_every_document_is_linked_from_the_readme_or_the_docs_index():
    linked = set()
    for path in (README, REPO / "docs" / "index.md"):
        for _, target in local_links(path.read_text()):
            linked.add((path.parent / target.partition("#")[0]).resolve())
    unlinked = [str(p.relative_to(REPO)) for p in documents()[1:] if p.resolve() not in linked]
    assert not unlinked, f"not reachable from README.md or docs/index.md: {unlinked}"


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
