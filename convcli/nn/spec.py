"""The layer spec language and the :class:`Network` it describes.

One layer per line (or ``;``-separated), PyTorch class names and arguments, ``#`` comments,
an optional first line ``Input(C, H, W)``::

    Input(1, 28, 28)
    Conv2d(1, 8, kernel_size=5); ReLU(); MaxPool2d(2)
    Flatten()
    LazyLinear(10)

Each call is parsed with :mod:`ast` and its arguments read with ``ast.literal_eval``: nothing
in a spec is ever executed. Errors are :class:`SpecError` and name the line and column.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from convcli.errors import UsageError, did_you_mean
from convcli.nn.layers import GLOBAL, LAYERS, Layer, Shape, _ConvNd, _PoolNd
from convcli.sizes import FLOAT32_BYTES, left_over
from convcli.text import parse_shape, shape_text

# Parser limits: the largest zoo network (ResNet-50) is ~5,000 characters with brackets 2 deep;
# beyond these, Python's own parser would fail with a MemoryError or a RecursionError
MAX_SPEC_CHARS = 200_000
MAX_STATEMENT_CHARS = 2_000
MAX_NESTING = 10


class SpecError(UsageError):
    """A problem in a spec, at a line and column (1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.problem, self.line, self.column = message, line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(where + message)


@dataclass
class Statement:
    text: str
    line: int
    column: int


def parse_input_shape(text: str) -> Shape:
    """``'1x28x28'`` / ``'1,28,28'`` / ``'784'`` -> a shape of positive ints."""
    return parse_shape(text, "bad input shape")


# ------------------------------------------------------------------------------------------
# splitting text into statements
# ------------------------------------------------------------------------------------------


def _short(text: str, width: int = 60) -> str:
    """A statement as quoted in a message: one line, at most ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def split_statements(text: str) -> list[Statement]:
    """Cut the text at newlines and ``;`` outside brackets and strings; drop ``#`` comments.

    Specs longer than MAX_SPEC_CHARS, statements longer than MAX_STATEMENT_CHARS and brackets
    nested deeper than MAX_NESTING are refused here, before Python's parser sees them.
    """
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(f"the spec is {len(text):,} characters long; the limit is {MAX_SPEC_CHARS:,}")
    statements: list[Statement] = []
    current: list[str] = []
    start: tuple[int, int] | None = None
    depth, quote, comment = 0, "", False
    line, column = 1, 0

    def finish() -> None:
        nonlocal current, start
        body = "".join(current).rstrip()
        if len(body) > MAX_STATEMENT_CHARS:
            raise SpecError(f"layer {_short(body, 40)!r} is {len(body):,} characters long; the limit is "
                            f"{MAX_STATEMENT_CHARS:,}", *start)
        if body.strip():
            statements.append(Statement(body, *start))
        current, start = [], None

    for char in text:
        column += 1
        if char == "\n":
            comment = False
            if depth == 0 and not quote:
                finish()
            else:
                current.append(char)
            line, column = line + 1, 0
            continue
        if comment:
            current.append(" ") if start else None
            continue
        if quote:
            if char == quote:
                quote = ""
        elif char == "#":
            comment = True
            current.append(" ") if start else None
            continue
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise SpecError(f"brackets nested more than {MAX_NESTING} deep", line, column)
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0:
            finish()
            continue
        if start is None:
            if char.isspace():
                continue
            start = (line, column)
        current.append(char)
    if quote or depth:
        if start is not None:
            problem = "unclosed string" if quote else "unclosed bracket '('"
            raise SpecError(problem, *start)
    finish()
    return statements


# ------------------------------------------------------------------------------------------
# statements -> layers
# ------------------------------------------------------------------------------------------


def _position(statement: Statement, node: ast.AST) -> tuple[int, int]:
    lineno = getattr(node, "lineno", 1) or 1
    offset = getattr(node, "col_offset", 0) or 0
    if lineno == 1:
        return statement.line, statement.column + offset
    return statement.line + lineno - 1, offset + 1


def _call(statement: Statement) -> tuple[str, ast.Call]:
    try:
        tree = ast.parse(statement.text, mode="eval")
    except SyntaxError as error:
        node = ast.Pass()
        node.lineno, node.col_offset = error.lineno or 1, max(0, (error.offset or 1) - 1)
        line, column = _position(statement, node)
        raise SpecError(f"invalid syntax in {_short(statement.text)!r} ({error.msg})", line, column) from None
    except (MemoryError, RecursionError, ValueError):  # too deep or too large for Python's parser
        raise SpecError(f"{_short(statement.text)!r} is too complex to parse", statement.line,
                        statement.column) from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise SpecError(
            f"expected a layer such as Conv2d(1, 8, 5), got {_short(statement.text)!r}",
            statement.line,
            statement.column,
        )
    func = call.func
    if isinstance(func, ast.Name):
        return func.id, call
    if isinstance(func, ast.Attribute) and ast.unparse(func.value) in ("nn", "torch.nn"):
        return func.attr, call
    raise SpecError(f"expected a layer name, got {_short(ast.unparse(func))!r}", *_position(statement, func))


def _literal(statement: Statement, node: ast.AST, what: str):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise SpecError(
            f"{what} must be a literal (number, string, tuple, True, False or None), "
            f"got {_short(ast.get_source_segment(statement.text, node) or '?')!r}",
            *_position(statement, node),
        ) from None


def _arguments(statement: Statement, name: str, call: ast.Call) -> tuple[list, dict]:
    args, kwargs = [], {}
    for i, node in enumerate(call.args):
        if isinstance(node, ast.Starred):
            raise SpecError("*arguments are not supported", *_position(statement, node))
        args.append(_literal(statement, node, f"argument {i + 1} of {name}"))
    for keyword in call.keywords:
        if keyword.arg is None:
            raise SpecError("**arguments are not supported", *_position(statement, keyword))
        kwargs[keyword.arg] = _literal(statement, keyword.value, f"{name}'s {keyword.arg}")
    return args, kwargs


@functools.cache
def _parameters(init) -> tuple[tuple[inspect.Parameter, ...], tuple[str, ...]]:
    """A layer's arguments after ``self`` and their names, once per ``__init__`` function (a
    function's signature does not change): ``inspect.signature`` took ~13 us a layer, 0.3 ms
    of the 0.9 ms AlexNet's spec took to parse."""
    parameters = tuple(inspect.signature(init).parameters.values())[1:]
    return parameters, tuple(p.name for p in parameters)


def _check_signature(statement: Statement, name: str, cls: type, call: ast.Call, args, kwargs) -> None:
    parameters, names = _parameters(cls.__init__)
    for keyword in call.keywords:
        if keyword.arg not in names:
            raise SpecError(
                f"{name} has no argument {keyword.arg!r}{did_you_mean(keyword.arg, names)}",
                *_position(statement, keyword),
            )
    if len(args) > len(parameters):
        raise SpecError(
            f"{name} takes at most {len(parameters)} arguments ({', '.join(names)}), got {len(args)}",
            *_position(statement, call.args[len(parameters)]),
        )
    for parameter in parameters[: len(args)]:
        if parameter.name in kwargs:
            raise SpecError(f"{name} got two values for {parameter.name!r}", statement.line, statement.column)
    given = set(names[: len(args)]) | set(kwargs)
    for parameter in parameters:
        if parameter.default is inspect.Parameter.empty and parameter.name not in given:
            raise SpecError(
                f"{name} is missing its argument {parameter.name!r} ({name}({', '.join(names)}))",
                statement.line,
                statement.column,
            )


def make_layer(statement: Statement) -> Layer:
    """One statement -> one layer, with its position and text recorded for error messages."""
    name, call = _call(statement)
    cls = LAYERS.get(name)
    if cls is None:
        raise SpecError(
            f"unknown layer {name!r}{did_you_mean(name, [*LAYERS, 'Input'])}", *_position(statement, call)
        )
    args, kwargs = _arguments(statement, name, call)
    _check_signature(statement, name, cls, call, args, kwargs)
    try:
        layer = cls(*args, **kwargs)
    except (ValueError, TypeError) as error:
        raise SpecError(f"{_short(statement.text)}: {_short(str(error), 200)}", statement.line,
                        statement.column) from None
    layer.source = " ".join(statement.text.split())
    layer.line, layer.column = statement.line, statement.column
    return layer


def _input_statement(statement: Statement) -> Shape | None:
    name, call = _call(statement)
    if name != "Input":
        return None
    args, kwargs = _arguments(statement, name, call)
    if kwargs:
        raise SpecError("Input takes the sizes only, e.g. Input(1, 28, 28)", statement.line, statement.column)
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    if not args or any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in args):
        raise SpecError(
            f"Input needs positive integer sizes, e.g. Input(1, 28, 28), got {_short(statement.text)!r}",
            statement.line,
            statement.column,
        )
    return tuple(args)


def parse_spec(text: str, input_shape: Sequence[int] | str | None = None) -> Network:
    """Parse a spec into a built :class:`Network` (``input_shape`` may be ``'1x28x28'``)."""
    statements = split_statements(text)
    if isinstance(input_shape, str):
        input_shape = parse_input_shape(input_shape)
    declared = None
    if statements:
        declared = _input_statement(statements[0])
        if declared is not None:
            statements = statements[1:]
    for statement in statements:
        if _call(statement)[0] == "Input":
            raise SpecError("Input(...) must be the first line of the spec", statement.line, statement.column)
    if declared is not None and input_shape is not None and tuple(input_shape) != declared:
        raise UsageError(
            f"`input_shape` {shape_text(input_shape)} disagrees with the spec's "
            f"Input({', '.join(map(str, declared))})"
        )
    shape = tuple(input_shape) if input_shape is not None else declared
    if shape is None:
        raise UsageError("no input shape: start the spec with Input(C, H, W) or give an `input_shape`")
    if not statements:
        raise UsageError("the spec has no layers")
    layers = [make_layer(statement) for statement in statements]
    return Network(layers, shape, spec=text)


# ------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------


def _field(value: int | Fraction) -> int:
    """A whole number of input samples (a transposed layer makes the recurrence fractional)."""
    return math.ceil(value)


def _jump(value: int | Fraction) -> int | float:
    """Integer jumps stay ints; a transposed layer's 1/s spacing becomes a rounded float."""
    if isinstance(value, Fraction) and value.denominator != 1:
        return round(float(value), 6)
    return int(value)


class Network:
    """A built stack of layers with names (conv1, relu1...), shapes and totals."""

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int], spec: str = "") -> None:
        self.layers = list(layers)
        self.input_shape: Shape = tuple(int(s) for s in input_shape)
        if not self.input_shape or any(s < 1 for s in self.input_shape):
            raise UsageError(f"bad input shape {shape_text(self.input_shape)}: sizes must be positive")
        self.spec = spec
        self._name_layers()
        shape = self.input_shape
        for layer in self.layers:
            try:
                shape = layer.build(shape)
            except (ValueError, TypeError) as error:
                if isinstance(error, SpecError):
                    raise
                where = getattr(layer, "source", type(layer).__name__)
                message = f"{_short(where)} on input {shape_text(shape)}: {_short(str(error), 200)}"
                line = getattr(layer, "line", None)
                raise SpecError(message, line, getattr(layer, "column", None)) from None
        self.output_shape: Shape = shape

    def _name_layers(self) -> None:
        counters: dict[str, int] = {}
        for layer in self.layers:
            counters[layer.kind] = counters.get(layer.kind, 0) + 1
            layer.name = f"{layer.kind}{counters[layer.kind]}"

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}{did_you_mean(name, [layer.name for layer in self.layers])}")

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        return self.num_params  # every parameter trains; running statistics are buffers

    @property
    def num_buffers(self) -> int:
        return sum(layer.num_buffers for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs() for layer in self.layers)

    def param_shapes(self) -> dict[str, Shape]:
        """Every parameter as ``layer.param`` -> shape (the array names of a model file)."""
        return {f"{layer.name}.{k}": s for layer in self.layers for k, s in layer.param_shapes().items()}

    def buffer_shapes(self) -> dict[str, Shape]:
        return {f"{layer.name}.{k}": s for layer in self.layers for k, s in layer.buffer_shapes().items()}

    def receptive_fields(self) -> list[tuple[list | None, list | None]]:
        """(receptive field, jump) per layer on each input axis (Araujo et al., Distill 2019).

        r_out = r_in + (k − 1)·j_in,  j_out = j_in·s. After a layer that mixes everything
        (Linear) the field is the whole input and the jump is undefined (None). A transposed
        convolution counts ceil(k/s) inputs per output and spacing 1/s, so after one the field is
        the recurrence rounded up; after an adaptive pool whose bins differ in width, it uses the
        widest bin and the floor of the mean bin step (both approximations).
        """
        spatial = list(self.input_shape[1:])
        fields: list[int | Fraction] = [1] * len(spatial)
        jumps: list[int | Fraction] | None = [1] * len(spatial)
        result = []
        shape = self.input_shape
        for layer in self.layers:
            step = layer.rf_steps(shape) if spatial else None
            if step == GLOBAL or (step is not None and len(step) != len(spatial)):
                fields, jumps = list(spatial), None
            elif step is not None and jumps is not None:
                for axis, (k, s, _p) in enumerate(step):
                    fields[axis] += (k - 1) * jumps[axis]
                    jumps[axis] *= s
            if spatial:
                result.append(
                    ([_field(f) for f in fields], None if jumps is None else [_jump(j) for j in jumps])
                )
            else:
                result.append((None, None))
            shape = layer.out_shape
        return result

    def notes(self, layer: Layer) -> list[str]:
        """Where TensorFlow's SAME would differ, and input rows a strided window never reads."""
        if not isinstance(layer, (_ConvNd, _PoolNd)) or getattr(layer, "transposed", False):
            return []
        spatial = layer.in_shape[len(layer.in_shape) - layer.ndim :]
        out = layer.out_shape[len(layer.out_shape) - layer.ndim :]
        pads = layer.pads() if isinstance(layer, _ConvNd) else [(p, p) for p in layer.padding]
        notes = []
        padded = any(a or b for a, b in pads)
        strided = any(s > 1 for s in layer.stride)
        tf_same = tuple(-(-n // s) for n, s in zip(spatial, layer.stride, strict=True))
        if padded and strided and tuple(out) != tf_same:
            notes.append(f"TensorFlow SAME would give {shape_text(tf_same)}")
        if strided and not getattr(layer, "ceil_mode", False):
            unread = [
                left_over(n, k, stride=s, padding=p, dilation=d)
                for n, k, s, p, d in zip(
                    spatial, layer.kernel_size, layer.stride, pads, layer.dilation, strict=True
                )
            ]
            if any(unread):
                notes.append(f"input rows left over: {shape_text(unread)}")
        return notes

    def summary(self) -> list[dict]:
        """One row per layer: what the ``shapes``/``params`` tables and ``--json`` show."""
        rows = []
        for index, (layer, (field, jump)) in enumerate(
            zip(self.layers, self.receptive_fields(), strict=True), 1
        ):
            rows.append(
                {
                    "index": index,
                    "name": layer.name,
                    "type": type(layer).__name__,
                    "layer": getattr(layer, "source", type(layer).__name__),
                    "output_shape": list(layer.out_shape),
                    "params": layer.num_params,
                    "trainable": layer.num_params,
                    "buffers": layer.num_buffers,
                    "formula": layer.params_formula(),
                    "macs": layer.macs(),
                    "receptive_field": field,
                    "jump": jump,
                    "activation_bytes": math.prod(layer.out_shape) * FLOAT32_BYTES,
                    "notes": self.notes(layer),
                }
            )
        return rows

    def to_json(self) -> dict:
        """The ``--json`` contract of ``shapes`` and ``params``."""
        keys = (
            "index",
            "name",
            "type",
            "output_shape",
            "params",
            "trainable",
            "macs",
            "receptive_field",
            "jump",
        )
        layers = [{key: row[key] for key in keys} for row in self.summary()]
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": layers,
            "total_params": self.num_params,
            "trainable_params": self.trainable_params,
            "total_macs": self.total_macs,
        }
