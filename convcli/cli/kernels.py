"""``convcli kernels``: list the built-in library, or print one kernel's matrix."""

from __future__ import annotations

import math

import click

from convcli.cli.output import console, print_json, table
from convcli.text import shape_text

EXAMPLES = """

\b
Examples:
  convcli kernels
  convcli kernels --json
  convcli kernels show gaussian:sigma=1.5
  convcli kernels show lowpass:cutoff=3000 --rate 48000
"""


# 'convcli kernels' alone lists the library; 'convcli kernels show NAME' prints one
@click.group(
    invoke_without_command=True,
    help="List the built-in kernel library (name, parameters, shape, description, convention)." + EXAMPLES,
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every kernel.")
@click.pass_context
def kernels(ctx: click.Context, as_json: bool) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from convcli.kernels import entries
    from convcli.kernels.library import DESIGNS

    rows = []
    for name, entry in entries().items():
        shape = list(entry.matrix.shape) if entry.matrix is not None else _default_shape(name, entry, DESIGNS)
        rows.append(
            {
                "name": name,
                "parameters": entry.params,
                "kernel_shape": shape,
                "description": entry.description,
                "convention": entry.convention,
            }
        )
    if as_json:
        print_json("kernels", {"kernels": rows})
        return
    out = console()
    out.print(kernel_table(rows, out.width))
    if out.width < WIDE:
        click.echo("conventions (flipped or not): 'convcli kernels show NAME', or a wider terminal")


WIDE = 120  # columns from which the convention column fits beside the description


def kernel_table(rows: list[dict], width: int):
    """The library as a table that fits ``width`` columns (80 too): long cells fold, never cut; the
    convention column only where there is room for it."""
    headers = ["name", "parameters (defaults)", "shape", "description"]
    headers += ["convention"] if width >= WIDE else []
    drawn = table()
    drawn.add_column(headers[0], no_wrap=True)
    for header in headers[1:]:
        drawn.add_column(header, overflow="fold")
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in row["parameters"].items()) or "-"
        shape = shape_text(row["kernel_shape"]) if row["kernel_shape"] else "by parameters"
        cells = [row["name"], params, shape, row["description"], row["convention"]]
        drawn.add_row(*cells[: len(headers)])
    return drawn


def _default_shape(name: str, entry, designs) -> list[int] | None:
    """Shape with the default parameters (FIR designs at 48 kHz have `taps` taps)."""
    from convcli.kernels.library import library_factors

    if "taps" in entry.params:
        return [entry.params["taps"]]
    factors = library_factors(name, [])
    if factors is not None:
        return [len(f) for f in factors]
    return list(designs[name](dict(entry.params), None).shape)


@kernels.command(
    "show",
    help="Print the matrix of one kernel spec (library name with parameters, file, "
    "or inline matrix)." + EXAMPLES,
)
@click.argument("spec")
@click.option("--sample-rate", "--rate", "rate", type=float, default=None,
              help="Sample rate in Hz for FIR designs (lowpass...).")
@click.option("--json", "as_json", is_flag=True, help="The matrix as JSON.")
def show(spec: str, rate: float | None, as_json: bool) -> None:
    from convcli import budget
    from convcli.kernels import entries, resolve_kernel
    from convcli.kernels.show import format_matrix, kernel_sum

    kernel = resolve_kernel(spec, sample_rate=rate)
    if as_json:
        # every value as JSON text: ~25 bytes each, and a Python float (32 bytes) while it is made
        budget.check("memory", 64 * math.prod(kernel.shape), f"the matrix of {spec!r} as JSON")
        print_json("kernels show", {"spec": spec, "kernel_shape": list(kernel.shape),
                                    "description": kernel.description, "matrix": kernel.array.tolist()})
        return
    click.echo(f"{spec}: {kernel.description}; shape {shape_text(kernel.shape)}, "
               f"sum {kernel_sum(kernel):.6g}")
    click.echo(format_matrix(kernel.matrix, kernel.factors))
    entry = entries().get(spec.partition(":")[0].strip().lower())
    if entry is not None and entry.convention:
        click.echo(f"convention: {entry.convention}")
