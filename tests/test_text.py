"""The one shape format, and messages that name the library's parameters (shown as flags by the CLI)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcli.errors import UsageError, at_least, error_line, flag, named, one_of
from convcli.text import parse_shape, shape_text


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=4))
def test_a_shape_reads_back_as_it_is_written(shape):
    assert parse_shape(shape_text(shape), "shape") == tuple(shape)
    assert parse_shape("×".join(map(str, shape)), "shape") == tuple(shape)


def test_shapes_are_written_one_way():
    assert shape_text((3, 256, 256)) == "3x256x256"
    assert shape_text((101,)) == "101"
    assert shape_text(None) == "-"


@pytest.mark.parametrize("text", ["", "3x", "0x2", "a", "1x2x3x4x5"])
def test_a_bad_shape_names_its_label(text):
    with pytest.raises(UsageError, match="^--size "):
        parse_shape(text, "--size")


def test_parameters_are_named_for_python_and_flagged_for_the_command_line():
    with pytest.raises(UsageError) as caught:
        at_least("batch_size", 0, 1)
    assert str(caught.value) == "batch_size must be >= 1, got 0"
    assert error_line(caught.value, flag) == "--batch-size must be >= 1, got 0"
    with pytest.raises(UsageError) as caught:
        one_of("workers", "x", ("1",))
    assert error_line(caught.value, flag) == "unknown -j 'x'; choose one of 1"
    assert named("a `input_shape` and `lr`", flag) == "a --input and --lr"
    assert named("no marks: `not a name`", flag) == "no marks: `not a name`"
