"""Tables: the plain path (convcli.cli.output.Table writing the lines itself) prints byte for byte
what rich prints for the same table, and hands every table it cannot be sure of to rich."""

from __future__ import annotations

import io
import unicodedata

import numpy as np
import pytest
from commands import run
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from convcli.cli.output import PLAIN_CHARACTERS, Table, table

JUSTIFY = ("left", "center", "right")


def printed(renderable, *, width: int = 200, **options) -> str:
    """What ``renderable`` prints on a console without colours (not a terminal), as tests and
    pipes see it."""
    out = Console(file=io.StringIO(), width=width, highlight=False, color_system=None, **options)
    out.print(renderable)
    return out.file.getvalue()


def plain(drawn: Table, *, width: int = 200, **options) -> str | None:
    out = Console(file=io.StringIO(), width=width, highlight=False, color_system=None, **options)
    return drawn.plain(out, out.options)


def assert_as_rich(drawn: Table, **options) -> None:
    assert printed(drawn, **options) == printed(drawn.rich(), **options)


# ---------------------------------------------------------------- the plain path equals rich
# printable ASCII without rich's markup ("[") and emoji (":") characters, plus what the tables hold
TEXT = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "[:") + "·²×"
cells = st.text(st.sampled_from(TEXT + "  "), max_size=18)  # spaces twice as often: leading, trailing


@st.composite
def tables(draw):
    count = draw(st.integers(1, 8))
    headers = draw(st.lists(cells, min_size=count, max_size=count))
    justify = draw(st.lists(st.sampled_from(JUSTIFY), min_size=count, max_size=count))
    title = draw(st.none() | st.text(st.sampled_from(TEXT), max_size=30))
    drawn = Table(title=title, title_justify=draw(st.sampled_from(JUSTIFY)))
    for header, how in zip(headers, justify, strict=True):
        drawn.add_column(header, justify=how)
    if draw(st.booleans()):
        drawn.add_section()  # before any row: nothing
    for _ in range(draw(st.integers(0, 30))):
        drawn.add_row(*draw(st.lists(cells, min_size=draw(st.integers(0, count)), max_size=count)))
        if draw(st.integers(0, 3)) == 0:
            drawn.add_section()
    return drawn


@given(tables())
def test_plain_tables_are_what_rich_prints(drawn):
    text = plain(drawn)
    width = max(map(len, printed(drawn.rich()).splitlines()))
    fits = len(drawn.title or "") <= width  # (8 columns of 18 fit in 200: only a title may not)
    assert (text is not None) == fits
    assert_as_rich(drawn)
    if fits:
        assert printed(drawn) == text


@given(st.lists(st.text(st.sampled_from(TEXT), max_size=12), min_size=2, max_size=6),
       st.sets(st.integers(0, 5)), st.integers(0, 12), st.none() | st.sampled_from(("a title", "t  ")))
def test_the_table_helper_aligns_numeric_columns_right(headers, numeric, rows, title):
    numbers = [headers[i] for i in numeric if i < len(headers)]
    drawn = table(*headers, numeric=numbers, title=title, title_justify="left")
    for index in range(rows):
        drawn.add_row(*(f"{index * 997 ** column:,}" for column in range(len(headers))))
    drawn.add_section()
    drawn.add_row("", "total")
    assert plain(drawn) is not None
    assert printed(drawn) == plain(drawn) == printed(drawn.rich())


def test_a_table_without_rows_and_an_empty_column():
    drawn = table("a", "", "bbb", numeric=("bbb",), title="t", title_justify="right")
    assert plain(drawn) is not None
    assert_as_rich(drawn)
    drawn.add_row()
    assert_as_rich(drawn)


def test_the_plain_characters_are_one_cell_and_drawn_as_they_are():
    for character in PLAIN_CHARACTERS:
        assert cell_len(character) == 1, character
        assert not character.isspace() and character.isprintable(), character
        assert not unicodedata.combining(character) and unicodedata.category(character)[0] not in "CMZ"
    drawn = table("x", "y", numeric=("y",), title=PLAIN_CHARACTERS)
    drawn.add_row(PLAIN_CHARACTERS, PLAIN_CHARACTERS[::-1])
    assert plain(drawn) is not None
    assert_as_rich(drawn)


# ---------------------------------------------------------------- everything else goes to rich
def one_row(*row, title=None, **options) -> Table:
    drawn = table("name", "value", numeric=("value",), title=title, **options)
    drawn.add_row(*row)
    return drawn


@pytest.mark.parametrize(
    "drawn",
    [
        one_row("[bold]markup[/bold]", "1"),  # rich markup
        one_row("a", "[red]2"),
        one_row(":smiley: face", "1"),  # an emoji code
        one_row("a:b", "1"),
        one_row("tab\there", "1"),  # control characters
        one_row("two\nlines", "1"),
        one_row("bell\x07", "1"),
        one_row("esc\x1b[1m", "1"),
        one_row("wide 日本", "1"),  # two cells a character
        one_row("combining é", "1"),
        one_row("accented é", "1"),  # one cell, but not in the known set
        one_row("no-break\xa0space", "1"),
        one_row("x" * 190, "1"),  # wider than the console: rich wraps
        one_row("x", "1", title="a title wider than the table"),  # rich wraps the title
        one_row("x", "1", title="[b]markup[/b]"),
        one_row("x", "1", title=Text("a Text")),
        one_row(Text("a Text"), "1"),  # not a str
        one_row("a", "1", "an extra cell"),  # rich adds a column
        one_row("a", "1", caption="a caption"),  # options the plain path does not draw
        one_row("a", "1", show_lines=True),
        one_row("a", "1", title="t", title_justify="full"),
    ],
    ids=lambda drawn: repr(drawn.rows[0][0])[:30],
)
def test_what_the_plain_path_cannot_be_sure_of_goes_to_rich(drawn):
    assert plain(drawn) is None
    assert_as_rich(drawn)


def test_column_options_go_to_rich_unless_they_change_nothing():
    fitting = table()
    fitting.add_column("name", no_wrap=True)
    fitting.add_column("text", overflow="fold")
    fitting.add_row("a", "b")
    assert plain(fitting) is not None
    assert_as_rich(fitting)
    styled = table()
    styled.add_column("name", style="bold")
    styled.add_row("a")
    center = table()
    center.add_column("name", justify="full")
    center.add_row("a")
    assert plain(styled) is None and plain(center) is None and plain(table()) is None
    for drawn in (styled, center, table()):
        assert_as_rich(drawn)


@pytest.mark.parametrize(
    "options",
    [
        {"color_system": "truecolor"},  # bold headers, italic titles
        {"color_system": "standard", "force_terminal": True},
        {"record": True},  # export_html would lose the styles
        {"legacy_windows": True},  # another box
        {"file": io.TextIOWrapper(io.BytesIO(), encoding="ascii")},  # the ASCII box
    ],
    ids=lambda options: next(iter(options)),
)
def test_consoles_that_style_or_substitute_go_to_rich(options):
    drawn = one_row("x", "1", title="t")
    out = Console(width=80, highlight=False, **{"file": io.StringIO(), **options})
    assert drawn.plain(out, out.options) is None
    reference = Console(width=80, highlight=False, **{"file": io.StringIO(), **options})
    out.print(drawn)
    reference.print(drawn.rich())
    if isinstance(out.file, io.StringIO):
        assert out.file.getvalue() == reference.file.getvalue()
    else:
        out.file.flush(), reference.file.flush()
        assert out.file.buffer.getvalue() == reference.file.buffer.getvalue()


def test_narrower_options_than_the_console_are_respected():
    drawn = one_row("x" * 30, "1")
    out = Console(file=io.StringIO(), width=200, color_system=None)
    assert drawn.plain(out, out.options) is not None
    assert drawn.plain(out, out.options.update_width(20)) is None
    out.print(drawn, width=20)
    reference = Console(file=io.StringIO(), width=200, color_system=None)
    reference.print(drawn.rich(), width=20)
    assert out.file.getvalue() == reference.file.getvalue()


def test_inside_other_renderables():
    from rich.console import Group
    from rich.panel import Panel

    drawn = one_row("x", "1", title="t")
    captioned = one_row("x", "1", caption="a caption", caption_justify="left")  # as train's table
    for outer in (Panel.fit, Panel, lambda inner: Group(inner, "below")):
        for inner in (drawn, captioned):
            assert printed(outer(inner)) == printed(outer(inner.rich()))


# ---------------------------------------------------------------- the commands print what they did
@pytest.fixture
def drawn_by(monkeypatch):
    """Run a command twice: as it runs (which tables the plain path drew: True, or rich: False),
    and with every table drawn by rich, as before the plain path."""

    def runs(*args):
        ways = []
        plain_of = Table.plain

        def spy(self, console, options):
            text = plain_of(self, console, options)
            ways.append(text is not None)
            return text

        with monkeypatch.context() as patched:
            patched.setattr(Table, "plain", spy)
            result = run(*args)
        with monkeypatch.context() as patched:
            patched.setattr(Table, "plain", lambda self, console, options: None)
            reference = run(*args)
        assert result.exit_code == reference.exit_code == 0, result.output
        assert result.stdout == reference.stdout and result.stderr == reference.stderr
        return ways

    return runs


COMMANDS = [
    (("params", "--model", "alexnet"), [True]),
    (("params", "--model", "alexnet", "--compare-dense"), [True]),
    (("params", "--model", "resnet18"), [False]),  # over 200 columns: rich wraps the formulas
    (("params", "--model", "vgg11_bn"), [True]),  # γ, β in the formulas
    (("shapes", "--model", "alexnet"), [True]),
    (("shapes", "Input(1,28,28); Conv2d(1,8,5); ReLU(); MaxPool2d(2); Flatten(); LazyLinear(10)"), [True]),
    (("params", "--list-models"), [True]),
    (("kernels",), [False]),  # wider than 200 columns (rich folds its cells), and ':' in them
    (("params", "--model", "alexnet", "--json"), []),
]


@pytest.mark.parametrize(("args", "ways"), COMMANDS, ids=[" ".join(args)[:40] for args, _ways in COMMANDS])
def test_commands_print_what_rich_printed(drawn_by, args, ways):
    assert drawn_by(*args) == ways


def test_evaluate_and_predict_tables(drawn_by, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(8, 1, 4, 4)).astype(np.float32), y=np.arange(8) % 2,
             class_names=np.array(["even", "odd"]))
    model = tmp_path / "m.npz"
    assert run("train", data, "-o", model, "--epochs", "1", "--quiet").exit_code == 0
    assert drawn_by("evaluate", model, data) == [True, True]  # per class, confusion matrix
    one, batch = tmp_path / "one.npy", tmp_path / "batch.npy"
    np.save(one, rng.normal(size=(1, 4, 4)).astype(np.float32))
    np.save(batch, rng.normal(size=(2, 1, 4, 4)).astype(np.float32))
    assert drawn_by("predict", model, one) == [True]
    assert drawn_by("predict", model, batch) == [False]  # its samples are named batch.npy[0]...: "["


def test_train_live_table_on_a_terminal_is_rich_with_its_caption():
    from convcli.cli.train import EPOCH_CAPTION, _TrainDisplay

    def terminal():
        return Console(file=io.StringIO(), force_terminal=True, width=120, height=30,
                       color_system="truecolor")

    records = [{"epoch": n, "loss": 1 / n, "accuracy": 0.5, "val_loss": None, "val_accuracy": None,
                "lr": 0.01, "seconds": 0.25, "samples_per_second": 1000.0} for n in (1, 2, 3)]
    out = terminal()
    with _TrainDisplay(out, terminal(), shown=True) as display:
        for record in records:
            display.epoch(record)
    drawn = display._table(records)
    assert drawn.plain(out, out.options) is None  # a terminal's colours, and the caption
    reference = terminal()
    reference.print(drawn.rich())
    assert out.file.getvalue().endswith(reference.file.getvalue())
    assert EPOCH_CAPTION[:40] in reference.file.getvalue()
