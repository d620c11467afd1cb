"""Running documentation: the command blocks of README.md and docs/**/*.md and every ``--help``
example, as written.

Each document runs on its own, top to bottom, in a fresh folder holding a copy of samples/ (a
document that needs a trained model trains it itself). Conventions the documentation follows so
that it can be checked (and so it cannot drift):

- A command block is a fenced block whose lines start with ``$ ``; the lines after a command, up to
  the next ``$ `` line, are its output (stdout and stderr, in the order they were written). A command
  may continue on the next line after a trailing backslash.
- In an output line, ``~`` before a number marks a value that varies between runs (seconds, samples
  per second, file sizes; what training computes and counts that float rounding decides, which
  differ from one CPU to another): ``~0.50 s`` matches any number there. Columns may
  move with it (runs of two or more spaces match any run of whitespace, and so do the spaces before a
  ``~``, which takes a column: the cells ``│ ~0.76 │`` and ``│~0.980 │`` match ``│  0.76 │`` and
  ``│ 0.980 │``); nothing else may differ.
- A line ``...`` stands for any number of lines left out.
- A command shown without output must succeed (exit 0); one shown with output may fail, and its
  output says how (the error line, ``echo $?``).
- A ```` ```python ```` block runs as a script; a plain ```` ``` ```` block right after it is its output.
- In a ``--help`` example, ``# FILE: 1 2 3`` after a command says what FILE holds afterwards.
Fenced blocks without ``$`` lines and without a python block before them are data (installation
lines, benchmark tables) and are not run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_LINES = 400
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")
VARIES = re.compile(r"~(-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?)")
NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?"
SKIPPED = "..."


@dataclass
class Step:
    """One command (or python script) and the output the documentation shows for it."""

    command: str
    expected: list[str] = field(default_factory=list)
    line: int = 0  # where it is written (1-based)
    python: bool = False


def fenced_blocks(text: str) -> list[tuple[str, list[str], int, int]]:
    """(language, lines without the fence's indentation, first line number, last line number)."""
    blocks, lines, inside = [], text.splitlines(), None
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if fence and inside is None:
            inside = (fence["lang"], len(fence["indent"]), number, [])
        elif fence and inside is not None:
            lang, indent, start, body = inside
            blocks.append(
                (lang, [b[indent:] if b[:indent].isspace() else b for b in body], start + 1, number)
            )
            inside = None
        elif inside is not None:
            inside[3].append(line)
    return blocks


def documents() -> list[Path]:
    """The documents whose command blocks run: the README, then docs/ in path order."""
    return [README, *sorted((REPO / "docs").rglob("*.md"))]


def document_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    blocks = fenced_blocks(text)
    for index, (lang, body, start, end) in enumerate(blocks):
        if lang == "python":
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            output = following[1] if following and following[0] == "" and following[2] == end + 2 else None
            steps.append(Step("\n".join(body), output or [], start, python=True))
            continue
        if not any(line.startswith("$ ") for line in body):
            continue
        for offset, line in enumerate(body):
            if line.startswith("$ "):
                steps.append(Step(line[2:], [], start + offset))
            elif steps and steps[-1].command.endswith("\\") and not steps[-1].expected:
                steps[-1].command = steps[-1].command[:-1].rstrip() + " " + line.strip()
            elif steps and steps[-1].line >= start:
                steps[-1].expected.append(line.rstrip())
    for step in steps:
        while step.expected and not step.expected[-1]:
            step.expected.pop()  # the blank line that separates two commands
    return steps


def line_pattern(expected: str) -> re.Pattern:
    """Literal text, where ``~N`` is any number and a run of spaces any run (a varying number may be
    wider or narrower than the one shown, and columns move with it)."""
    parts = VARIES.split(expected)
    # split() alternates literal text and the captured varying numbers
    pieces = []
    for i, part in enumerate(parts):
        if i % 2:
            pieces.append(NUMBER)
        elif i + 1 < len(parts):
            pieces.append(_before_number(part))
        else:
            pieces.append(_literal(part))
    return re.compile("".join(pieces) + r"\s*$")


def _before_number(text: str) -> str:
    """The literal text before a ``~N``: the ``~`` takes a column, so the spaces before it match any
    run of whitespace, and where none is written (a table cell ``│~0.98 │``) any run or none."""
    stripped = text.rstrip(" ")
    return _literal(stripped) + (r"\s*" if stripped == text else r"\s+")


def _literal(text: str) -> str:
    return r"\s+".join(re.escape(word) for word in re.split(r" {2,}", text))


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, ``...`` lines matching any run of lines, ``~N`` any number."""
    patterns = [None if line.strip() == SKIPPED else line_pattern(line) for line in expected]
    reachable = {0}
    for pattern in patterns:
        if pattern is None:
            reachable = set(range(min(reachable), len(actual) + 1)) if reachable else set()
        else:
            reachable = {i + 1 for i in reachable if i < len(actual) and pattern.fullmatch(actual[i])}
    return len(actual) in reachable


def workspace(tmp: Path) -> Path:
    """A folder holding a copy of samples/, where the documented commands run, and a private runtime
    folder (so 'convcli server stop' can only reach a worker of this test)."""
    shutil.copytree(REPO / "samples", tmp / "samples")
    (tmp / ".runtime").mkdir(mode=0o700)
    return tmp


def environment(cwd: Path) -> dict[str, str]:
    """This test's Python and its convcli first on PATH; output in program order; no colours; calls
    run in-process, and any warm worker lives in the workspace's own runtime folder."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    return env | {
        "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
        "CONVCLI_SERVER": "0",
        "TERM": "dumb",
        "XDG_RUNTIME_DIR": str(cwd / ".runtime"),
        "CONVCLI_COMPILE_NOTICE": "0",  # whether kernels compile depends on the cache, not the command
    }


def run_step(step: Step, cwd: Path) -> tuple[int, list[str]]:
    """The exit status and output lines (stdout and stderr interleaved as written) of one step."""
    args = [sys.executable, "-c", step.command] if step.python else ["bash", "-c", step.command]
    result = subprocess.run(
        args,
        cwd=cwd,
        env=environment(cwd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=300,
    )
    return result.returncode, [ANSI.sub("", line).rstrip() for line in result.stdout.splitlines()]


LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


def local_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link that is not a web address, outside fenced blocks."""
    fenced = {n for _, _, start, end in fenced_blocks(text) for n in range(start - 1, end + 1)}
    return [
        (number, match["target"])
        for number, line in enumerate(text.splitlines(), start=1)
        if number not in fenced
        for match in LINK.finditer(line)
        if not re.match(r"[a-z][a-z0-9+.-]*:", match["target"])
    ]


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as
    hyphens (a repeated heading gets -1, -2...)."""
    fenced = {n for _, _, start, end in fenced_blocks(text) for n in range(start - 1, end + 1)}
    found, repeats = set(), {}
    for number, line in enumerate(text.splitlines(), start=1):
        heading = HEADING.match(line)
        if heading and number not in fenced:
            slug = re.sub(r"[^\w\- ]", "", heading["title"].lower()).replace(" ", "-")
            found.add(f"{slug}-{repeats[slug]}" if slug in repeats else slug)
            repeats[slug] = repeats.get(slug, 0) + 1
    return found


def broken_links(path: Path) -> list[str]:
    """Links of ``path`` to a file that does not exist, or to a heading its target does not have."""
    broken = []
    for number, target in local_links(path.read_text()):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(REPO)}:{number}: {target}"
        if not linked.exists():
            broken.append(f"{where} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{where} (no heading #{anchor})")
    return broken
