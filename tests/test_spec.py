"""The spec language and the layers' shape/parameter/MAC arithmetic, against independent counts."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcli.errors import UsageError
from convcli.nn import layers as L
from convcli.nn.spec import SpecError, parse_input_shape, parse_spec, split_statements

SEEDS_CNN = """Input(1, 28, 28)
Conv2d(1, 8, kernel_size=5)     # or LazyConv2d(8, 5)
ReLU()
MaxPool2d(2)
LazyConv2d(16, 3)
ReLU()
MaxPool2d(2)
Flatten()
LazyLinear(10)                  # Linear(400, 10) is also accepted
"""


# ---------------------------------------------------------------- brute-force references


def windows(n, k, s, p_before, p_after, d=1):
    """Count the window positions by walking them (no size formula)."""
    count, start = 0, 0
    while start + d * (k - 1) < n + p_before + p_after:
        count += 1
        start += s
    return count


def transposed_length(n, k, s, p, d, a):
    """Scatter every input position and see how far the output reaches."""
    reach = max(i * s + t * d for i in range(n) for t in range(k))
    return reach + 1 - 2 * p + a


# ---------------------------------------------------------------- the design's example


def test_design_example_shapes_params_and_names():
    net = parse_spec(SEEDS_CNN)
    rows = net.summary()
    assert [r["name"] for r in rows] == [
        "conv1",
        "relu1",
        "maxpool1",
        "conv2",
        "relu2",
        "maxpool2",
        "flatten1",
        "linear1",
    ]
    assert [tuple(r["output_shape"]) for r in rows] == [
        (8, 24, 24),
        (8, 24, 24),
        (8, 12, 12),
        (16, 10, 10),
        (16, 10, 10),
        (16, 5, 5),
        (400,),
        (10,),
    ]
    # the seeds: 8·(5·5·1+1) = 208, 16·(3·3·8+1) = 1,168, 400·10+10 = 4,010, total 5,386
    assert [r["params"] for r in rows if r["params"]] == [208, 1168, 4010]
    assert net.num_params == 5386 and net.output_shape == (10,)
    assert rows[0]["formula"] == "k²·C_in·C_out + C_out = 5·5·1·8 + 8 = 208"
    assert net.param_shapes() == {
        "conv1.weight": (8, 1, 5, 5),
        "conv1.bias": (8,),
        "conv2.weight": (16, 8, 3, 3),
        "conv2.bias": (16,),
        "linear1.weight": (10, 400),
        "linear1.bias": (10,),
    }
    # MACs: 24·24·8·25 + 10·10·16·72 + 400·10
    assert net.total_macs == 24 * 24 * 8 * 25 + 10 * 10 * 16 * 72 + 4000


def test_semicolons_comments_and_input_option_agree():
    inline = "Conv2d(1,8,5); ReLU(); MaxPool2d(2) # tail comment\nFlatten(); LazyLinear(10)"
    a = parse_spec(inline, "1x28x28")
    b = parse_spec("Input(1, 28, 28)\n" + inline)
    assert a.num_params == b.num_params == 8 * 26 + (8 * 12 * 12 * 10 + 10)


def test_alexnet_conv1_of_the_original_paper_is_34944():
    # the seeds write another number; 11·11·3·96 + 96 is 34,944
    net = parse_spec("Input(3, 227, 227); Conv2d(3, 96, 11, stride=4)")
    assert net.num_params == 11 * 11 * 3 * 96 + 96 == 34944
    assert net.output_shape == (96, 55, 55)


def test_lazy_variants_share_their_kind_counter_and_infer_sizes():
    net = parse_spec(
        "Input(3, 8, 8); LazyConv2d(4, 3); Conv2d(4, 4, 3); LazyBatchNorm2d(); Flatten(); "
        "LazyLinear(5); Linear(5, 2)"
    )
    assert [layer.name for layer in net.layers] == ["conv1", "conv2", "bn1", "flatten1", "linear1", "linear2"]
    assert net.layers[0].in_channels == 3 and net.layers[4].in_features == 64


def test_batchnorm_running_stats_are_buffers_not_parameters():
    net = parse_spec("Input(16, 8, 8); BatchNorm2d(16)")
    bn = net.layers[0]
    assert bn.param_shapes() == {"weight": (16,), "bias": (16,)}
    assert bn.buffer_shapes() == {"running_mean": (16,), "running_var": (16,), "num_batches_tracked": ()}
    assert net.num_params == net.trainable_params == 32 and net.num_buffers == 33
    assert parse_spec("Input(4, 3); BatchNorm1d(4, affine=False, track_running_stats=False)").num_params == 0


def test_padding_same_follows_pytorch_and_refuses_stride():
    net = parse_spec("Input(1, 10, 11); Conv2d(1, 1, (4, 3), padding='same', dilation=(1, 2))")
    assert net.output_shape == (1, 10, 11)
    assert net.layers[0].pads() == [(1, 2), (2, 2)]  # d·(k−1) split, the extra one on the right
    with pytest.raises(SpecError, match="stride=1"):
        parse_spec("Input(1, 10, 10); Conv2d(1, 1, 3, stride=2, padding='same')")
    assert parse_spec("Input(1, 10, 10); Conv2d(1, 1, 3, padding='valid')").output_shape == (1, 8, 8)


def test_tensorflow_same_note_and_left_over_note():
    net = parse_spec("Input(3, 224, 224); Conv2d(3, 64, 11, stride=4, padding=2)")
    notes = net.summary()[0]["notes"]
    assert "TensorFlow SAME would give 56x56" in notes
    # 224 + 4 − 11 = 217 = 54·4 + 1: the one position past the last window is padding, not data
    assert not any("left over" in note for note in notes)
    unpadded = parse_spec("Input(3, 224, 224); Conv2d(3, 64, 11, stride=4)").summary()[0]["notes"]
    assert "input rows left over: 1x1" in unpadded  # 224 − 11 = 213 = 53·4 + 1


def test_flatten_softmax_dims_count_the_batch_axis():
    assert parse_spec("Input(2, 3, 4); Flatten(2)").output_shape == (2, 12)
    assert parse_spec("Input(2, 3, 4); Flatten(1, 2)").output_shape == (6, 4)
    with pytest.raises(SpecError, match="batch axis"):
        parse_spec("Input(2, 3, 4); Flatten(0)")
    with pytest.raises(SpecError, match="out of range"):
        parse_spec("Input(10); Softmax(dim=2)")


def test_transposed_convolution_and_groups():
    net = parse_spec(
        "Input(8, 7, 7); ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2)"
    )
    assert net.output_shape == (4, 14, 14)
    assert net.layers[0].param_shapes() == {"weight": (8, 2, 3, 3), "bias": (4,)}
    assert net.layers[0].name == "convt1"
    assert net.total_macs == 8 * 7 * 7 * 9 * 2
    dw = parse_spec("Input(32, 10, 10); Conv2d(32, 32, 3, groups=32, bias=False)")
    assert dw.num_params == 32 * 9 and "/groups" in dw.layers[0].params_formula()


def test_1d_and_3d_layers():
    net = parse_spec(
        "Input(2, 100); Conv1d(2, 4, 9, stride=2, dilation=2); AvgPool1d(3); "
        "LPPool1d(2, 2); AdaptiveMaxPool1d(5); Flatten(); Linear(20, 3)"
    )
    assert net.output_shape == (3,)
    assert [tuple(layer.out_shape) for layer in net.layers[:4]] == [(4, 42), (4, 14), (4, 7), (4, 5)]
    vol = parse_spec("Input(1, 8, 9, 10); Conv3d(1, 2, 3, padding=1, stride=(1, 2, 3))")
    assert vol.output_shape == (2, 8, 5, 4) and vol.num_params == 27 * 2 + 2


# ---------------------------------------------------------------- randomized against brute force


@given(
    n=st.integers(1, 40),
    k=st.integers(1, 7),
    s=st.integers(1, 4),
    p=st.integers(0, 3),
    d=st.integers(1, 3),
    cin=st.integers(1, 4),
    cout=st.integers(1, 4),
    bias=st.booleans(),
)
def test_random_conv1d_against_brute_force(n, k, s, p, d, cin, cout, bias):
    spec = (
        f"Input({cin}, {n}); Conv1d({cin}, {cout}, {k}, stride={s}, padding={p}, dilation={d}, bias={bias})"
    )
    expected = windows(n, k, s, p, p, d)
    if expected == 0:
        column = len(f"Input({cin}, {n}); ") + 1
        with pytest.raises(SpecError, match=f"line 1, column {column}: .*larger than the padded input"):
            parse_spec(spec)
        return
    net = parse_spec(spec)
    assert net.output_shape == (cout, expected)
    assert net.num_params == cout * cin * k + (cout if bias else 0)
    assert net.total_macs == sum(cin * k for _ in range(cout * expected))


@given(
    n=st.integers(1, 12),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    data=st.data(),
)
def test_random_transposed_against_scatter(n, k, s, d, data):
    p = data.draw(st.integers(0, 2))
    a = data.draw(st.integers(0, max(s, d) - 1))
    expected = transposed_length(n, k, s, p, d, a)
    spec = (
        f"Input(1, {n}); ConvTranspose1d(1, 2, {k}, stride={s}, padding={p}, output_padding={a}, "
        f"dilation={d})"
    )
    if expected < 1:
        with pytest.raises(SpecError):
            parse_spec(spec)
    else:
        assert parse_spec(spec).output_shape == (2, expected)


@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    data=st.data(),
    ceil_mode=st.booleans(),
)
def test_random_maxpool2d_against_walk(h, w, k, s, data, ceil_mode):
    p = data.draw(st.integers(0, k // 2))
    spec = f"Input(3, {h}, {w}); MaxPool2d({k}, stride={s}, padding={p}, ceil_mode={ceil_mode})"

    def walk(n):
        # windows that fit; ceil_mode adds one overhanging window while the previous one did not reach
        # the end, but only if it starts inside the input or the left padding
        starts = [
            i for i in range(0, n + p, s) if i + k <= n + 2 * p or (ceil_mode and i - s + k < n + 2 * p)
        ]
        return len(starts)

    if walk(h) == 0 or walk(w) == 0 or k > h + 2 * p or k > w + 2 * p:
        with pytest.raises(SpecError):
            parse_spec(spec)
        return
    assert parse_spec(spec).output_shape == (3, walk(h), walk(w))


@given(n=st.integers(1, 30), out=st.integers(1, 8))
def test_adaptive_pool_keeps_the_requested_size(n, out):
    assert parse_spec(f"Input(2, {n}); AdaptiveAvgPool1d({out})").output_shape == (2, out)


@given(
    st.lists(
        st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 2)),
        min_size=1,
        max_size=4,
    )
)
def test_receptive_field_and_jump_against_dependency_sets(stack):
    """Trace which input positions one interior output depends on, layer by layer."""
    n = 400
    lines = ["Input(1, 400)"]
    for k, s, p, d in stack:
        lines.append(f"Conv1d(1, 1, {k}, stride={s}, padding={min(p, d * (k - 1))}, dilation={d})")
    net = parse_spec("; ".join(lines))
    field, jump = net.summary()[-1]["receptive_field"], net.summary()[-1]["jump"]
    # one output in the middle, walked back to the input
    sizes = [n] + [layer.out_shape[-1] for layer in net.layers]
    positions = {sizes[-1] // 2}
    for layer in reversed(net.layers):
        (k,), (s,), (d,) = layer.kernel_size, layer.stride, layer.dilation
        p = layer.pads()[0][0]
        positions = {o * s - p + t * d for o in positions for t in range(k)}
    assert field == [max(positions) - min(positions) + 1]
    assert jump == [math.prod(s for _k, s, _p, _d in stack)]


def test_receptive_fields_by_hand_for_the_seeds_cnn():
    # conv5: 5, pool2: 5+1·1 = 6 (jump 2), conv3: 6+2·2 = 10, pool2: 10+1·2 = 12 (jump 4)
    rows = parse_spec(SEEDS_CNN).summary()
    assert [r["receptive_field"][0] for r in rows[:6]] == [5, 5, 6, 10, 10, 12]
    assert [r["jump"][0] for r in rows[:6]] == [1, 1, 2, 2, 2, 4]
    assert rows[-1]["receptive_field"] == [28, 28] and rows[-1]["jump"] is None


# ---------------------------------------------------------------- errors name line and column


@pytest.mark.parametrize(
    "spec, where, words",
    [
        ("Input(1,28,28)\nConv2D(1, 8, 5)", "line 2, column 1", "did you mean 'Conv2d'"),
        ("Input(1,28,28)\n  Conv2d(1, 8, kernal_size=5)", "line 2, column 16", "did you mean 'kernel_size'"),
        ("Input(3,28,28); Conv2d(1, 8, 5)", "line 1, column 17", "expects in_channels=1 but its input has 3"),
        (
            "Input(1,4,4)\nMaxPool2d(2); MaxPool2d(2); MaxPool2d(2)",
            "line 2, column 29",
            "larger than the padded",
        ),
        ("Input(1,4,4); Conv2d(1, 2, size)", "line 1, column 28", "must be a literal"),
        ("Input(1,4,4); Conv2d(1, 2, __import__('os'))", "line 1, column 28", "must be a literal"),
        ("Input(1,4,4)\nConv2d(1, 2", "line 2, column 1", "unclosed"),
        ("Input(1,4,4)\nConv2d(1, 2)", "line 2, column 1", "missing its argument 'kernel_size'"),
        ("Input(1,4,4); ReLU(True, 1)", "line 1, column 26", "at most 1 arguments"),
        ("Input(1,4,4); Conv2d(1, 2, 3, 1, stride=1)", "line 1, column 15", "two values for 'stride'"),
        ("Input(1,4,4); Conv2d(1, 2, 3, stride=0)", "line 1, column 15", "stride must be >= 1"),
        ("Input(1,4,4); Conv2d(1, 2, 3) +", "line 1, column", "invalid syntax"),
        ("Input(1,4,4); 3", "line 1, column 15", "expected a layer"),
        ("Input(4,4); Flatten(); Linear(15, 2)", "line 1, column 24", "in_features=15 but its input has 16"),
        ("Input(1,4,4)\nReLU(); Input(1, 4, 4)", "line 2, column 9", "first line"),
        ("Input(1,0,4); ReLU()", "line 1, column 1", "positive integer sizes"),
        ("Input(4, 4); Conv2d(4, 2, 3)", "line 1, column 14", "needs a (C, H, W) input"),
    ],
)
def test_errors_name_line_column_and_problem(spec, where, words):
    with pytest.raises(SpecError) as info:
        parse_spec(spec)
    message = str(info.value)
    assert message.startswith(where) and words in message, message
    assert isinstance(info.value, UsageError)


def test_multiline_call_reports_the_inner_line():
    with pytest.raises(SpecError, match="line 3, column 5: .*'strid'"):
        parse_spec("Input(1, 8, 8)\nConv2d(1, 2,\n    strid=2, kernel_size=3)")


def test_comment_and_semicolon_inside_strings_do_not_split():
    parts = split_statements("Conv2d(1, 2, 3, padding='same') # c; d\nReLU()")
    assert [(p.text, p.line, p.column) for p in parts] == [
        ("Conv2d(1, 2, 3, padding='same')", 1, 1),
        ("ReLU()", 2, 1),
    ]


@pytest.mark.parametrize("text", ["1x0x28", "axb", "", "1x2x3x4x5", "-3"])
def test_bad_input_shape(text):
    with pytest.raises(UsageError, match="bad input shape"):
        parse_input_shape(text)


def test_input_disagreement_and_missing_input():
    with pytest.raises(UsageError, match="disagrees"):
        parse_spec("Input(1, 28, 28); ReLU()", (3, 28, 28))
    with pytest.raises(UsageError, match="no input shape"):
        parse_spec("ReLU()")
    assert parse_input_shape("3x224x224") == (3, 224, 224) and parse_input_shape("784") == (784,)


def test_every_layer_class_is_in_the_spec_language():
    for name in (
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "Linear",
        "MaxPool1d",
        "MaxPool2d",
        "AvgPool1d",
        "AvgPool2d",
        "LPPool1d",
        "LPPool2d",
        "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d",
        "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d",
        "BatchNorm1d",
        "BatchNorm2d",
        "Dropout",
        "Flatten",
        "ReLU",
        "LeakyReLU",
        "Tanh",
        "Sigmoid",
        "Softmax",
        "Identity",
        "BasicBlock",
        "Bottleneck",
        "InvertedResidual",
        "ReLU6",
        "LazyLinear",
        "LazyConv1d",
    ):
        assert L.LAYERS[name].__name__ == name


layer_choice = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(1, 6)),
    st.tuples(st.just("pool"), st.integers(1, 3), st.integers(1, 3), st.just(0), st.just(0)),
)


@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    cin=st.integers(1, 3),
    stack=st.lists(layer_choice, max_size=5),
    classes=st.integers(1, 10),
)
def test_random_networks_against_a_walk(h, w, cin, stack, classes):
    """Random conv/pool stacks, one layer per line: shapes, parameters, MACs, or the failing line."""
    lines, params, macs, channels, failed_line = [f"Input({cin}, {h}, {w})"], 0, 0, cin, None
    for kind, k, s, p, cout in stack:
        if kind == "conv":
            lines.append(f"Conv2d({channels}, {cout}, kernel_size={k}, stride={s}, padding={p})")
        else:
            lines.append(f"MaxPool2d({k}, stride={s})")
        h, w = windows(h, k, s, p, p), windows(w, k, s, p, p)
        if failed_line is None and (h == 0 or w == 0):
            failed_line = len(lines)
        if failed_line is None and kind == "conv":
            params += cout * (channels * k * k + 1)
            macs += h * w * cout * channels * k * k
            channels = cout
    lines += ["Flatten()", f"LazyLinear({classes})"]
    if failed_line is not None:
        with pytest.raises(SpecError, match=f"^line {failed_line}, column 1: "):
            parse_spec("\n".join(lines))
        return
    net = parse_spec("\n".join(lines))
    features = channels * h * w
    assert net.output_shape == (classes,)
    assert net.num_params == params + features * classes + classes
    assert net.total_macs == macs + features * classes


@given(k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 2))
def test_transposed_receptive_field_is_the_widest_scatter(k, s, p):
    n = 30
    net = parse_spec(f"Input(1, {n}); ConvTranspose1d(1, 1, {k}, stride={s}, padding={p})")
    out = net.output_shape[-1]
    spans = []
    for o in range(out):
        sources = [i for i in range(n) for t in range(k) if i * s - p + t == o]
        if sources:  # with k < s some outputs receive nothing
            spans.append(max(sources) - min(sources) + 1)
    row = net.summary()[0]
    assert row["receptive_field"] == [max(spans)]
    assert row["jump"] == [1 if s == 1 else round(1 / s, 6)]
