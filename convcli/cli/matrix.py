"""``convcli matrix``: the matrix T of a convolution (y.ravel() = T @ x.ravel()), written or printed."""

from __future__ import annotations

import math
from pathlib import Path

import click

from convcli.cli.convolve import parse_ints, parse_padding
from convcli.cli.output import console, print_json, table
from convcli.errors import UsageError
from convcli.text import shape_text

HELP = """Write the matrix T of a convolution: y.ravel() = T @ x.ravel().

\b
T is the operation 'convcli convolve' runs with the same options on an input of
--size N (signals) or HxW (images), shape (output size, input size). It is built
by the engine's own index rule, so T @ x equals convolve's output exactly.
  boundary constant (zero)  Toeplitz (2-D: doubly block Toeplitz); --stride keeps
                            every S-th row
  boundary wrap             circulant (2-D: block circulant with circulant blocks),
                            diagonalised by the DFT: --explain lists its eigenvalues,
                            the kernel's DFT (times the phase of its centring)
  --transposed              the transposed convolution on an input of --size: exactly
                            T^T of the forward matrix whose output has that size
  --data FILE               the other view: the input acting on the kernel,
                            y.ravel() = D @ kernel.ravel(), --size the kernel's size
The summary compares parameter counts: a dense layer with T's shape learns every
entry, the convolution only its kernel (weight sharing).
Outputs: .npy and .csv dense (up to 16,777,216 entries), .npz sparse (scipy.sparse,
any size within the memory budget), .png a picture of the structure. Without -o a
matrix of up to 25x25 prints as a table.

\b
Examples:
  convcli matrix -k "1 2 3" --size 5 --mode valid --correlate
  convcli matrix -k "1 2 3" --size 6 --boundary wrap --explain
  convcli matrix -k "1 2 1" --size 3 --stride 2 --transposed
  convcli matrix -k box:3 --size 64x64 -o box.npz
"""

# the most entries a dense output (.npy, .csv, .png) holds: 128 MiB as float64
DENSE_LIMIT = 1 << 24
# the largest matrix printed as a table, and the largest given in --json
SHOWN = 25
JSON_ENTRIES = 1 << 16
OUTPUTS = (".npy", ".csv", ".npz", ".png")


def parse_size(text: str) -> tuple[int, ...]:
    """'8' -> (8,), '4x6' -> (4, 6)."""
    try:
        size = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) < 1:
        raise UsageError(f"--size {text!r}: expected N or HxW with positive integers")
    return size


@click.command("matrix", help=HELP)
@click.option("-k", "--kernel", "spec", metavar="SPEC", help="A 1-D or 2-D kernel, as convolve's -k.")
@click.option("--data", metavar="FILE", help="An input (.npy/.csv/.txt): its matrix acting on the kernel.")
@click.option("--size", required=True, metavar="N|HxW", help="Input size (with --data: the kernel's size).")
@click.option("--mode", type=click.Choice(["same", "valid", "full"]), default="same", show_default=True)
@click.option("--padding", metavar="P|B,A|B,A;B,A", help="Explicit padding; overrides --mode.")
@click.option("--boundary", default="constant", show_default=True,
              help="constant (zero), wrap (circular); reflect, symmetric and edge are linear too.")
@click.option("--stride", default="1", show_default=True, metavar="S|SH,SW")
@click.option("--dilation", default="1", show_default=True, metavar="D|DH,DW")
@click.option("--correlate", is_flag=True, help="Cross-correlation (no kernel flip), as CNN layers compute.")
@click.option("--transposed", is_flag=True, help="The transposed convolution's matrix (T^T).")
@click.option("--output-padding", default="0", show_default=True, metavar="A|AH,AW",
              help="With --transposed: as convolve's.")
@click.option("--explain", is_flag=True, help="Say what structure T has and why (wrap: its eigenvalues).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="T.npy|T.npz|T.csv|T.png")
@click.option("--force", is_flag=True, help="Replace an existing output.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (the matrix itself when small).")
def matrix(spec, data, size, mode, padding, boundary, stride, dilation, correlate, transposed, output_padding,
           explain, output, force, as_json):
    from convcli.engine.boundary import normalize_boundary

    if (spec is None) == (data is None):
        raise UsageError("give a kernel (-k) or an input (--data), not both")
    if output is not None and Path(output).suffix.lower() not in OUTPUTS:
        raise UsageError(f"{output}: write T as {', '.join(OUTPUTS)}")
    boundary = normalize_boundary(boundary)
    options = {"mode": mode, "boundary": boundary, "stride": parse_ints(stride, "stride"),
               "dilation": parse_ints(dilation, "dilation"), "padding": parse_padding(padding),
               "correlate": correlate}
    extra = parse_ints(output_padding, "output-padding", low=0)
    size = parse_size(size)
    sparse = output is not None and Path(output).suffix.lower() == ".npz"
    view = _build(spec, data, size, options, transposed, extra, sparse)
    found = view["matrix"]
    rows, cols = found.shape
    if not sparse:
        _check_dense(rows, cols)
    if output is not None:
        _write(found, Path(output), force, view["title"])
    document = _document(view, found, options, explain)
    if as_json:
        print_json("matrix", document)
        return
    click.echo(document["summary"])
    if output is None:
        _print_table(found, view)
    if explain:
        click.echo(document["explain"], err=True)


def _build(spec, data, size, options, transposed, output_padding, sparse) -> dict:
    """The matrix and what it is of."""
    from convcli.engine.matrix import convolution_matrix, data_matrix, output_grid

    if data is not None:
        if transposed:
            raise UsageError("--data gives the forward operation's matrix acting on the kernel; "
                             "leave out --transposed")
        x = _read_data(data)
        found = data_matrix(x, size, sparse=True, **options)
        out = output_grid(size, x.shape, **{k: options[k] for k in ("mode", "stride", "dilation", "padding")})
        return {"matrix": found if sparse else found.toarray(), "of": "data", "spec": data,
                "input_shape": list(x.shape), "output_shape": list(out), "kernel_shape": list(size),
                "transposed": False, "title": f"D of {data} acting on a {shape_text(size)} kernel"}
    kernel = _kernel(spec, len(size))
    found = convolution_matrix(kernel, size, transposed=transposed, output_padding=output_padding,
                               sparse=True, **options)
    out = output_grid(kernel.shape, size, transposed=transposed, output_padding=output_padding,
                      **{k: options[k] for k in ("mode", "stride", "dilation", "padding")})
    return {"matrix": found if sparse else found.toarray(), "of": "kernel", "spec": spec,
            "input_shape": list(size), "output_shape": list(out), "kernel_shape": list(kernel.shape),
            "kernel": kernel,
            "transposed": transposed, "title": f"T of {spec} on size {shape_text(size)}"}


def _kernel(spec: str, ndim: int):
    from convcli.kernels import resolve_kernel

    kernel = resolve_kernel(spec)
    if kernel.role not in ("filter",) or len(kernel.shape) > 2:
        raise UsageError(f"kernel {spec!r} {shape_text(kernel.shape)}: the matrix view takes a 1-D or 2-D "
                         "filter (one channel)")
    array = kernel.array
    if ndim == 2 and array.ndim == 1:
        array = array[None, :]  # a 1-D kernel on an image is a row, as convolve applies it
    if array.ndim != ndim:
        raise UsageError(f"kernel {spec!r} is {array.ndim}-D {shape_text(array.shape)} but --size is "
                         f"{ndim}-D; give --size {'N' if array.ndim == 1 else 'HxW'}")
    return array


def _read_data(name: str):
    from convcli.io.arrays import read_array
    from convcli.io.files import check_input_file

    path = Path(name)
    check_input_file(path)
    x = read_array(path, path.suffix, name=name)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]  # one channel
    return x


def _check_dense(rows: int, cols: int) -> None:
    if rows * cols > DENSE_LIMIT:
        raise UsageError(f"T is {rows}x{cols} ({rows * cols:,} entries), over the dense limit of "
                         f"{DENSE_LIMIT:,}: write it sparse with -o T.npz")


def structure(view: dict, options: dict) -> str:
    """The name of T's structure, as the notes name it."""
    if view["of"] == "data":
        return "Toeplitz in the data (the input acting on the kernel)"
    nd = len(view["input_shape"])
    strides = options["stride"] if isinstance(options["stride"], tuple) else (options["stride"],)
    strided = any(s > 1 for s in strides)
    rows, cols = view["matrix"].shape
    if options["boundary"] == "constant":
        name = "Toeplitz" if nd == 1 else "doubly block Toeplitz"
        rows_or_columns = "column" if view["transposed"] else "row"
        name = f"strided {name} (every stride-th {rows_or_columns})" if strided else name
    elif options["boundary"] == "wrap" and rows == cols and not strided:
        name = "circulant" if nd == 1 else "block circulant with circulant blocks"
    elif options["boundary"] == "wrap":
        name = "wrap-around rows of a circulant" if nd == 1 else "wrap-around rows of a block circulant"
    else:
        name = f"Toeplitz except at the edges (boundary {options['boundary']})"
    return f"transposed {name}" if view["transposed"] else name


def _document(view: dict, found, options: dict, explain: bool) -> dict:
    import numpy as np
    import scipy.sparse

    rows, cols = found.shape
    nonzero = int(found.count_nonzero() if scipy.sparse.issparse(found) else np.count_nonzero(found))
    taps = math.prod(view["kernel_shape"])
    name = structure(view, options)
    summary = f"{view['title']}: {rows}x{cols} {name}, {nonzero:,} nonzero of {rows * cols:,}"
    if view["of"] == "kernel":
        ratio = rows * cols / taps
        shown = f"{ratio:,.0f}" if ratio >= 10 else f"{ratio:.3g}"
        summary += (f"; a dense layer of this shape learns {rows * cols:,} parameters, the convolution its "
                    f"kernel's {taps:,} (weight sharing: {shown}x fewer)")
    document = {
        "spec": view["spec"], "of": view["of"], "input_shape": view["input_shape"],
        "output_shape": view["output_shape"],
        "kernel_shape": view["kernel_shape"], "matrix_shape": [rows, cols], "nonzero": nonzero,
        "structure": name, "boundary": options["boundary"], "transposed": view["transposed"],
        "dense_params": rows * cols, "kernel_params": taps, "summary": summary,
    }
    if rows * cols <= JSON_ENTRIES:
        document["matrix"] = (found.toarray() if scipy.sparse.issparse(found) else found).tolist()
    if explain:
        document["explain"] = _explain(view, options, name)
    return document


def _explain(view: dict, options: dict, name: str) -> str:
    """Why T has its structure; for a circulant one, its eigenvalues (the DFT diagonalises it)."""
    import numpy as np

    applied = "correlation (taps as given)" if options["correlate"] else "convolution (kernel flipped)"
    lines = [f"T[i, j] is the tap of the {applied} that output i applies to input j; every row holds the "
             "same taps, shifted by the stride: a " + name + " matrix"]
    if view["of"] == "kernel" and "circulant" in name and not name.startswith("wrap"):
        from convcli.engine.matrix import circulant_eigenvalues

        eigen = circulant_eigenvalues(view["kernel"], view["input_shape"], dilation=options["dilation"],
                                      padding=options["padding"], mode=options["mode"],
                                      correlate=options["correlate"])
        lines.append("a circulant matrix is diagonalised by the DFT: T = F^-1 diag(lambda) F, with "
                     "eigenvalues lambda_f = the kernel's DFT at frequency f (times the phase of its "
                     "centring), |lambda| = |DFT of the kernel|")
        if eigen.size <= SHOWN:
            shown = ", ".join(f"{v.real + 0.0:.4g}{v.imag + 0.0:+.4g}j" for v in np.round(eigen, 12))
            lines.append(f"eigenvalues: {shown}")
            lines.append("|eigenvalues|: " + ", ".join(f"{abs(v):.4g}" for v in eigen))
    return "\n".join(lines)


def _print_table(found, view: dict) -> None:
    import numpy as np
    import scipy.sparse

    rows, cols = found.shape
    if rows > SHOWN or cols > SHOWN:
        click.echo(f"({rows}x{cols}: too large to print; write it with -o T.npy, T.npz, T.csv or T.png)")
        return
    dense = found.toarray() if scipy.sparse.issparse(found) else np.asarray(found)
    columns = "w" if view["of"] == "data" else "x"
    drawn = table("", *(f"{columns}{j}" for j in range(cols)), numeric=[f"{columns}{j}" for j in range(cols)])
    for i, row in enumerate(dense):
        drawn.add_row(f"y{i}", *(f"{v:.6g}" if v else "." for v in row))
    console().print(drawn)


def _write(found, path: Path, force: bool, title: str) -> None:
    from convcli.io.arrays import write_array
    from convcli.io.files import atomic_output

    suffix = path.suffix.lower()
    with atomic_output(path, force=force) as temp:
        if suffix == ".npz":
            import scipy.sparse

            with open(temp, "wb") as handle:
                scipy.sparse.save_npz(handle, found)
        elif suffix == ".png":
            _draw(found, temp, title)
        else:
            write_array(temp, found, suffix)


def _draw(found, path: Path, title: str) -> None:
    """The structure: values on a diverging scale (0 white); a large matrix as its nonzero pattern."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, cols = found.shape
    figure, axes = plt.subplots(figsize=(6, 6 * min(max(rows / cols, 0.25), 4)))
    try:
        if rows * cols <= 512 * 512:
            limit = float(np.abs(found).max()) or 1.0
            shown = axes.imshow(found, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            figure.colorbar(shown, ax=axes, shrink=0.8)
        else:
            axes.spy(found, markersize=0.5)
        axes.set_title(f"{title} ({rows}x{cols})", fontsize=9)
        figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
