"""The import rules of docs/design/layers.md: ``lint-imports`` keeps the contracts of
pyproject.toml, and each contract breaks on an import it forbids (injected into a copy of the
package); no package imports a sibling that imports it back; no module is over 800 lines."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # import-linter, of the test extra
MAX_LINES = 800


def contract_names() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract["name"] for contract in config["contracts"]}


def lint(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on ``project``'s pyproject.toml, with its own convcli first on the path."""
    assert LINT_IMPORTS.exists(), "no lint-imports beside this Python: pip install -e '.[test]'"
    environ = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=300)


def test_lint_imports_keeps_every_contract():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in contract_names().values():
        assert f"{name} KEPT" in done.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The package and its contracts, in a folder of their own."""
    project = tmp_path_factory.mktemp("project")
    shutil.copytree(ROOT / "convcli", project / "convcli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


# (module, the import added to it, the contracts it must break)
INJECTIONS = [
    # the CLI importing the warm worker, which runs CLI command lines (the cli <-> server cycle)
    ("convcli/cli/server.py", "from convcli.server import client", {"layers", "no-cycles"}),
    # the 16-bit writer's kernel importing the audio reader that imports it (the audio <-> pcm16 cycle)
    ("convcli/io/pcm16.py", "from convcli.io.audio import PCM16", {"io-layers", "no-cycles"}),
    # a worker's code path importing Click, or rich, or the CLI
    ("convcli/jobs/convolve.py", "import click", {"no-display-below-cli"}),
    ("convcli/executors/__init__.py", "import rich.progress", {"no-display-below-cli"}),
    ("convcli/jobs/pool.py", "from convcli.cli import output",
     {"layers", "no-cycles", "no-display-below-cli"}),
    # the engine reading files
    ("convcli/engine/convolve.py", "from convcli.io import files", {"layers"}),
    # a job leaning on another command's job
    ("convcli/jobs/predict.py", "from convcli.jobs import convolve", {"jobs-independent"}),
]


@pytest.mark.parametrize(("module", "line", "broken"), INJECTIONS, ids=[i[1] for i in INJECTIONS])
def test_each_contract_breaks_on_an_import_it_forbids(copy, module, line, broken):
    path = copy / module
    original = path.read_text()
    path.write_text(f"{original}\n{line}  # injected by tests/test_layers.py\n")
    try:
        done = lint(copy)
    finally:
        path.write_text(original)
    assert done.returncode == 1, done.stdout + done.stderr
    names = contract_names()
    assert {id for id, name in names.items() if f"{name} BROKEN" in done.stdout} == broken, done.stdout
    importer = module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    assert f"{importer} -> " in done.stdout  # the report names the import


def test_a_new_module_must_be_given_its_layer(copy):
    """The layers contract is exhaustive: a module nobody placed breaks it."""
    path = copy / "convcli" / "unplaced.py"
    path.write_text('"""A module added without a place in the layers."""\n')
    try:
        done = lint(copy)
    finally:
        path.unlink()
    assert done.returncode == 1 and "unplaced" in done.stdout, done.stdout + done.stderr
    assert f"{contract_names()['layers']} BROKEN" in done.stdout


def test_the_copy_keeps_every_contract_before_an_injection(copy):
    """The injections above break contracts, not the copy itself."""
    done = lint(copy)
    assert done.returncode == 0, done.stdout + done.stderr


def sibling_cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """The children of ``package`` that import one another in a circle (each child with its
    descendants), as strongly connected components of more than one child."""
    children = sorted(graph.find_children(package))
    owner = {}
    for child in children:
        owner[child] = child
        for descendant in graph.find_descendants(child):
            owner[descendant] = child
    edges = {child: set() for child in children}
    for module, child in owner.items():
        for imported in graph.find_modules_directly_imported_by(module):
            if owner.get(imported, child) != child:
                edges[child].add(owner[imported])
    return [component for component in components(children, edges) if len(component) > 1]


def components(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def test_no_package_imports_a_sibling_that_imports_it_back():
    graph = grimp.build_graph("convcli", cache_dir=None)
    packages = sorted(module for module in graph.modules if graph.find_children(module))
    assert "convcli.io" in packages and "convcli.nn.layers" in packages
    assert {package: sibling_cycles(graph, package) for package in packages} == {p: [] for p in packages}


def test_the_cycle_finder_finds_a_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in components(list(edges), edges) if len(c) > 1] == [["a", "b", "c"]]


def test_no_module_is_over_800_lines():
    lengths = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
               for path in (ROOT / "convcli").rglob("*.py")}
    assert len(lengths) > 50
    assert {path: n for path, n in lengths.items() if n > MAX_LINES} == {}
