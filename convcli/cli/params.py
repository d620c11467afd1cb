"""``convcli params``: parameter counts per layer and in total, with the formula behind each."""

from __future__ import annotations

import math

import click

from convcli.cli.network import load_network, print_model_list
from convcli.cli.output import console, human_bytes, print_json, table
from convcli.sizes import FLOAT32_BYTES
from convcli.text import shape_text


def dense_cost(layer) -> int:
    """Parameters of a fully connected layer with the same input and output sizes (weights + bias)."""
    inputs, outputs = math.prod(layer.in_shape), math.prod(layer.out_shape)
    return inputs * outputs + outputs


def print_params_table(network, compare_dense: bool) -> None:
    from convcli.nn.layers import _ConvNd

    rows = network.summary()
    headers = ["#", "name", "layer", "params", "formula", "buffers"]
    if compare_dense:
        headers += ["dense equivalent", "saving"]
    drawn = table(*headers, numeric=("#", "params", "buffers", "dense equivalent", "saving"),
                  title=f"input {shape_text(network.input_shape)}", title_justify="left")
    for layer, row in zip(network.layers, rows, strict=True):
        cells = [
            str(row["index"]),
            row["name"],
            row["layer"],
            f"{row['params']:,}",
            row["formula"],
            f"{row['buffers']:,}" if row["buffers"] else "",
        ]
        if compare_dense:
            if isinstance(layer, _ConvNd) and row["params"]:
                dense = dense_cost(layer)
                cells += [f"{dense:,}", f"{dense / row['params']:,.0f}x"]
            else:
                cells += ["", ""]
        drawn.add_row(*cells)
    drawn.add_section()
    drawn.add_row("", "total", "", f"{network.num_params:,}", "", f"{network.num_buffers:,}")
    out = console()
    out.print(drawn)
    out.print(
        f"total {network.num_params:,} parameters: {network.trainable_params:,} trainable, "
        f"{network.num_params - network.trainable_params:,} non-trainable; "
        f"{network.num_params * FLOAT32_BYTES:,} bytes ({human_bytes(network.num_params * FLOAT32_BYTES)}) "
        "as float32."
    )
    if network.num_buffers:
        out.print(
            f"plus {network.num_buffers:,} non-trainable buffer values (BatchNorm running statistics; not "
            f"parameters, as in PyTorch): {human_bytes(network.num_buffers * FLOAT32_BYTES)}."
        )
    if compare_dense:
        out.print(
            "dense equivalent: a fully connected layer from the same input to the same output size; "
            "a convolution shares its kernel across positions."
        )


@click.command("params")
@click.argument("spec", required=False)
@click.option("--input", "input_shape", metavar="CxHxW", help="Input shape per sample: CxHxW, CxL or N.")
@click.option("--model", metavar="NAME", help="A network from the zoo (see --list-models).")
@click.option("--list-models", is_flag=True, help="List the zoo's networks and exit.")
@click.option("--compare-dense", is_flag=True, help="Show what a fully connected layer would cost instead.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table.")
def params(spec, input_shape, model, list_models, compare_dense, as_json):
    """Parameter counts per layer and in total, with the formula behind each number.

    SPEC is a file or inline text in PyTorch's layer names (see 'convcli shapes --help').
    BatchNorm's running statistics are buffers, not parameters, as in PyTorch; they are
    listed apart. Sizes assume float32.

    \b
    Examples:
      convcli params "Input(1,28,28); Conv2d(1,8,5); ReLU(); MaxPool2d(2); Flatten(); LazyLinear(10)"
      convcli params --model vgg16 --compare-dense
      convcli params --list-models
    """
    if list_models:
        print_model_list("params", as_json)
        return
    network = load_network(spec, input_shape, model)
    if as_json:
        print_json("params", network.to_json())
        return
    print_params_table(network, compare_dense)
