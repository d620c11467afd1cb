"""output_size against brute force: count the window positions that fit."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from convcli.sizes import left_over, output_size


def windows_by_enumeration(n, k, s, before, after, d):
    span = d * (k - 1) + 1
    starts = [-before + i * s for i in range(n + before + after + s)]
    return len([t for t in starts if t + span <= n + after])


@given(
    n=st.integers(1, 60), k=st.integers(1, 9), s=st.integers(1, 5), d=st.integers(1, 4),
    before=st.integers(0, 6), after=st.integers(0, 6),
)
def test_forward_matches_enumeration(n, k, s, d, before, after):
    span = d * (k - 1) + 1
    if span > n + before + after:
        with pytest.raises(ValueError, match="larger than the padded input"):
            output_size(n, k, stride=s, padding=(before, after), dilation=d)
        return
    got = output_size(n, k, stride=s, padding=(before, after), dilation=d)
    assert got == windows_by_enumeration(n, k, s, before, after, d)
    covered_end = (got - 1) * s + span - before  # in input coordinates
    input_rows_reached = set(range(-before, covered_end)) & set(range(n))
    assert left_over(n, k, stride=s, padding=(before, after), dilation=d) == n - len(input_rows_reached)


def torch_pool_size(n, k, s, p, d, ceil_mode):
    # PyTorch's pooling_output_shape, written out independently
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


@given(n=st.integers(1, 60), k=st.integers(1, 7), s=st.integers(1, 5), d=st.integers(1, 3),
       p=st.integers(0, 3), ceil_mode=st.booleans())
def test_ceil_mode_matches_pytorch_formula(n, k, s, d, p, ceil_mode):
    assume(d * (k - 1) + 1 <= n + 2 * p)
    assert output_size(n, k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode) == torch_pool_size(
        n, k, s, p, d, ceil_mode
    )


def test_seed_examples():
    x = 9  # [1 2 3 1 2 3 1 2 3] with a 3-tap moving average
    assert output_size(x, 3, padding=2) == 11  # full
    assert output_size(x, 3) == 7  # valid
    assert output_size(x, 3, stride=2, padding=1) == 5
    assert output_size(28, 5) == 24 and output_size(224, 11, stride=4, padding=2) == 55


@given(n=st.integers(1, 30), k=st.integers(1, 7), s=st.integers(1, 4), d=st.integers(1, 3),
       p=st.integers(0, 3), op=st.integers(0, 3))
def test_transposed_inverts_forward(n, k, s, d, p, op):
    if op >= max(s, d):
        with pytest.raises(ValueError, match="output_padding"):
            output_size(n, k, stride=s, padding=p, dilation=d, transposed=True, output_padding=op)
        return
    expected = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    if expected < 1:
        with pytest.raises(ValueError):
            output_size(n, k, stride=s, padding=p, dilation=d, transposed=True, output_padding=op)
        return
    out = output_size(n, k, stride=s, padding=p, dilation=d, transposed=True, output_padding=op)
    assert out == expected
    if op < s:  # the forward conv maps the transposed output back to n
        assert output_size(out, k, stride=s, padding=p, dilation=d) == n


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0, k=1), "input size"), (dict(n=5, k=0), "kernel size"),
    (dict(n=5, k=3, stride=0), "stride"), (dict(n=5, k=3, dilation=0), "dilation"),
    (dict(n=5, k=3, padding=-1), "padding"),
])
def test_bad_values_are_named(kwargs, match):
    n, k = kwargs.pop("n"), kwargs.pop("k")
    with pytest.raises(ValueError, match=match):
        output_size(n, k, **kwargs)
