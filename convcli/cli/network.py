"""What ``shapes`` and ``params`` share: the network a command line names, and the zoo's list."""

from __future__ import annotations

import os
import sys

from convcli.cli.output import console, print_json, table
from convcli.errors import UsageError
from convcli.text import shape_text


def load_network(spec: str | None, input_shape: str | None, model: str | None):
    """A built Network from spec text, a spec file, or a zoo model name."""
    from convcli.nn import zoo
    from convcli.nn.spec import parse_spec

    if model and spec:
        raise UsageError("give either a SPEC/FILE or --model, not both")
    if model:
        return zoo.load(model, input_shape)
    if not spec:
        raise UsageError("give a spec (text or file), --model NAME, or --size/--kernel for one layer")
    if spec == "-":
        if sys.stdin is None:
            raise UsageError("stdin: closed (the caller gave no standard input to read the spec from)")
        text = _read_spec(sys.stdin, "stdin")
    elif os.path.isfile(spec):
        with open(spec, encoding="utf-8") as handle:
            text = _read_spec(handle, spec)
    elif "(" not in spec:
        raise UsageError(f"{spec}: no such file, and not a spec (a spec looks like 'Conv2d(1, 8, 5)')")
    else:
        text = spec
    return parse_spec(text, input_shape)


def _read_spec(handle, name: str) -> str:
    """A spec's text, read no further than the longest spec the parser takes (an endless stdin
    or a huge file is refused after MAX_SPEC_CHARS, not read to its end first)."""
    from convcli.nn.spec import MAX_SPEC_CHARS

    try:
        text = handle.read(MAX_SPEC_CHARS + 1)
    except UnicodeDecodeError as error:
        raise UsageError(f"{name}: not a spec (not UTF-8 text: {error.reason})") from error
    if len(text) > MAX_SPEC_CHARS:
        raise UsageError(f"{name}: the spec is over {MAX_SPEC_CHARS:,} characters long, the limit")
    return text


def print_model_list(command: str, as_json: bool = False) -> None:
    """The zoo: a table, or with ``as_json`` one document using the key names of ``--json``."""
    from convcli.nn import zoo

    models = []
    for name, (_build, description) in zoo.MODELS.items():
        network = zoo.load(name)
        models.append({"name": name, "total_params": network.num_params, "total_macs": network.total_macs,
                       "input_shape": list(network.input_shape), "description": description})
    if as_json:
        print_json(command, {"models": models})
        return
    drawn = table("model", "parameters", "MACs", "input", "description", numeric=("parameters", "MACs"))
    for model in models:
        drawn.add_row(model["name"], f"{model['total_params']:,}", f"{model['total_macs']:,}",
                      shape_text(model["input_shape"]), model["description"])
    console().print(drawn)
