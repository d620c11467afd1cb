"""``convcli shapes``: a network's layer-by-layer table, or the single-layer calculator/solver."""

from __future__ import annotations

import click

from convcli.cli.network import load_network, print_model_list
from convcli.cli.output import console, human_bytes, note, print_json, table, warn
from convcli.errors import UsageError
from convcli.text import shape_text


def print_network_table(network) -> None:
    rows = network.summary()
    drawn = table("#", "name", "layer", "output", "params", "MACs", "RF", "jump", "activations", "notes",
                  numeric=("#", "params", "MACs", "activations"),
                  title=f"input {shape_text(network.input_shape)}", title_justify="left")
    for row in rows:
        drawn.add_row(
            str(row["index"]),
            row["name"],
            row["layer"],
            shape_text(row["output_shape"]),
            f"{row['params']:,}",
            f"{row['macs']:,}",
            shape_text(row["receptive_field"]),
            shape_text(row["jump"]),
            human_bytes(row["activation_bytes"]),
            "; ".join(row["notes"]),
        )
    activations = sum(row["activation_bytes"] for row in rows)
    drawn.add_section()
    drawn.add_row(
        "",
        "total",
        "",
        shape_text(network.output_shape),
        f"{network.num_params:,}",
        f"{network.total_macs:,}",
        "",
        "",
        human_bytes(activations),
        "",
    )
    out = console()
    out.print(drawn)
    out.print(
        f"{network.num_params:,} parameters ({network.trainable_params:,} trainable), "
        f"{network.total_macs:,} MACs per sample, "
        f"{human_bytes(activations)} of float32 activations per sample. "
        "RF: receptive field on the input; jump: its stride on the input."
    )


def run_calculator(layer, out: int | None, solve: str | None, as_json: bool) -> None:
    from convcli.nn.calculator import solve as solve_for

    if solve:
        if out is None:
            raise UsageError("--solve needs --out (the output size to reach)")
        exact, inexact = solve_for(solve, out, layer)
        if as_json:
            print_json("shapes", {"solutions": exact, "inexact": inexact})
            return
        click.echo(f"{solve} values giving output size {out}:")
        click.echo(f"  tile exactly:      {', '.join(map(str, exact)) or 'none'}")
        click.echo(f"  only by flooring:  {', '.join(map(str, inexact)) or 'none'}")
        return
    if out is not None:
        raise UsageError("--out goes with --solve kernel|stride|padding|size")
    size, left = layer.output(), layer.left_over()
    if as_json:
        print_json("shapes", {"output_size": size, "exact": layer.exact(), "left_over": left})
    else:
        click.echo(f"output size: {layer.formula()}")
    if left:
        rows = "1 input row is" if left == 1 else f"{left} input rows are"
        warn(f"stride {layer.stride} does not tile the input exactly: {rows} left over (never read)")
    elif not layer.exact():
        rounded = "rounded up: the last window hangs over the end" if layer.ceil_mode else (
            "floored: only padding is left over, every input row is read"
        )
        note(f"stride {layer.stride} does not tile the padded input exactly ({layer.fraction()} is not "
             f"a whole number); the size is {rounded}")


def parse_padding(text: str | None):
    if text is None:
        return 0
    parts = text.replace(" ", "").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v < 0 for v in values):
        raise UsageError(f"bad --padding {text!r}: give P or BEFORE,AFTER (non-negative integers)")
    return values[0] if len(values) == 1 else tuple(values)


@click.command("shapes")
@click.argument("spec", required=False)
@click.option("--input", "input_shape", metavar="CxHxW", help="Input shape per sample: CxHxW, CxL or N.")
@click.option("--model", metavar="NAME", help="A network from the zoo (see --list-models).")
@click.option("--list-models", is_flag=True, help="List the zoo's networks and exit.")
@click.option("--size", type=click.IntRange(min=1), help="Calculator: input size along one axis.")
@click.option("--kernel", type=click.IntRange(min=1), help="Calculator: kernel size.")
@click.option(
    "--stride", type=click.IntRange(min=1), default=1, show_default=True, help="Calculator: stride."
)
@click.option("--padding", metavar="P|B,A", help="Calculator: padding, or before,after.  [default: 0]")
@click.option(
    "--dilation", type=click.IntRange(min=1), default=1, show_default=True, help="Calculator: dilation."
)
@click.option("--transposed", is_flag=True, help="Calculator: transposed convolution.")
@click.option("--output-padding", type=click.IntRange(min=0), default=0, help="Calculator: transposed only.")
@click.option("--ceil-mode", is_flag=True, help="Calculator: round up, as pooling's ceil_mode.")
@click.option("--out", type=click.IntRange(min=1), help="Solver: the output size to reach.")
@click.option(
    "--solve", type=click.Choice(["kernel", "stride", "padding", "size"]), help="Solver: the unknown."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table.")
def shapes(
    spec,
    input_shape,
    model,
    list_models,
    size,
    kernel,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    ceil_mode,
    out,
    solve,
    as_json,
):
    """Output shapes layer by layer, or of one layer (and solve for a missing parameter).

    SPEC is a file ('-' for stdin) or inline text in PyTorch's layer names, one layer per line
    or ';'-separated.
    Columns: output shape, parameters, MACs (multiply-accumulates of conv/linear layers per
    sample, bias not counted), receptive field and jump on the input (Araujo et al., 2019),
    float32 activation memory. padding='same' follows PyTorch (stride 1 only); the notes say
    where TensorFlow's SAME would differ and how many input rows a stride leaves over.

    \b
    Examples:
      convcli shapes "Input(1,28,28); Conv2d(1,8,5); ReLU(); MaxPool2d(2); Flatten(); LazyLinear(10)"
      echo 'LazyConv2d(16, 3, stride=2); ReLU(); Flatten()' > net.txt
      convcli shapes net.txt --input 3x64x64
      convcli shapes --model resnet18 --json
      convcli shapes --size 28 --kernel 5 --stride 2
      convcli shapes --size 224 --kernel 3 --stride 2 --out 112 --solve padding
    """
    if list_models:
        print_model_list("shapes", as_json)
        return
    calculator = size is not None or kernel is not None or solve is not None
    if calculator:
        if spec or model:
            raise UsageError("the calculator (--size/--kernel/--solve) takes no SPEC or --model")
        from convcli.nn.calculator import LayerSize

        missing = [
            name for name, value in (("size", size), ("kernel", kernel)) if value is None and solve != name
        ]
        if missing:
            raise UsageError(f"the calculator needs --{missing[0]}")
        layer = LayerSize(
            size=size or 1,
            kernel=kernel or 1,
            stride=stride,
            padding=parse_padding(padding),
            dilation=dilation,
            transposed=transposed,
            output_padding=output_padding,
            ceil_mode=ceil_mode,
        )
        run_calculator(layer, out, solve, as_json)
        return
    network = load_network(spec, input_shape, model)
    if as_json:
        print_json("shapes", network.to_json())
        return
    print_network_table(network)
