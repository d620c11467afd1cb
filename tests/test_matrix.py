"""The matrix views: T (y = T x) against convolve for every mode/boundary/stride/dilation, against
scipy.linalg.toeplitz / circulant references, the transposed matrix, the data view, the DFT
eigenvalues of the circulant case, and `convcli matrix` on real files."""

import json

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
from commands import run
from hypothesis import assume, given
from hypothesis import strategies as st

import convcli
from convcli.engine.matrix import circulant_eigenvalues, data_matrix

BOUNDARIES = ["constant", "reflect", "symmetric", "edge", "wrap"]
MODES = ["same", "valid", "full"]


def geometry(nd):
    return st.fixed_dictionaries(
        {
            "mode": st.sampled_from(MODES),
            "boundary": st.sampled_from(BOUNDARIES),
            "stride": st.tuples(*[st.integers(1, 3)] * nd),
            "dilation": st.tuples(*[st.integers(1, 2)] * nd),
            "correlate": st.booleans(),
        }
    )


@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_matrix_times_x_is_convolve(nd, data):
    options = data.draw(geometry(nd))
    size = data.draw(st.tuples(*[st.integers(1, 7)] * nd))
    ksize = data.draw(st.tuples(*[st.integers(1, 4)] * nd))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x, kernel = rng.standard_normal(size), rng.standard_normal(ksize)
    try:
        y = convcli.convolve(x, kernel, **options)
    except ValueError:  # the kernel does not fit this geometry
        assume(False)
    T = convcli.convolution_matrix(kernel, size, **options)
    assert T.shape == (y.size, x.size)
    np.testing.assert_allclose(T @ x.ravel(), y.ravel(), atol=1e-9)
    sparse = convcli.convolution_matrix(kernel, size, sparse=True, **options)
    assert scipy.sparse.issparse(sparse) and np.array_equal(sparse.toarray(), T)
    # the other view: the input acting on the kernel
    D = data_matrix(x, ksize, **options)
    np.testing.assert_allclose(D @ kernel.ravel(), y.ravel(), atol=1e-9)


@pytest.mark.parametrize("nd", [1, 2])
@given(data=st.data())
def test_transposed_matrix_is_exactly_the_transpose(nd, data):
    options = data.draw(geometry(nd))
    size = data.draw(st.tuples(*[st.integers(1, 6)] * nd))
    ksize = data.draw(st.tuples(*[st.integers(1, 3)] * nd))
    extra = data.draw(st.tuples(*[st.integers(0, 2)] * nd))
    extra = tuple(
        a % max(s, d) for a, s, d in zip(extra, options["stride"], options["dilation"], strict=True)
    )
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    kernel = rng.standard_normal(ksize)
    try:
        T_t = convcli.convolution_matrix(kernel, size, transposed=True, output_padding=extra, **options)
    except ValueError:
        assume(False)
    out_size = [
        n for n in convcli.conv_transpose(np.zeros(size), kernel, output_padding=extra, **options).shape
    ]
    T = convcli.convolution_matrix(kernel, out_size, **options)
    forward_out = convcli.convolve(np.zeros(out_size), kernel, **options).shape
    if forward_out == size:
        assert np.array_equal(T_t, T.T)
    else:  # output_padding >= stride (dilation > stride): the forward has more outputs; their first rows
        kept = np.ravel_multi_index(np.indices(size).reshape(nd, -1), forward_out)
        assert np.array_equal(T_t, T[kept].T)
    y = rng.standard_normal(size)
    np.testing.assert_allclose(
        T_t @ y.ravel(),
        convcli.conv_transpose(y, kernel, output_padding=extra, **options).ravel(),
        atol=1e-9,
    )


def toeplitz_full(h, n):
    """The (n + k − 1) × n matrix of full convolution, from scipy.linalg.toeplitz (the notes' T(x))."""
    k = len(h)
    return scipy.linalg.toeplitz(np.r_[h, np.zeros(n - 1)], np.r_[h[0], np.zeros(n - 1)])[: n + k - 1]


@given(n=st.integers(1, 9), k=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_zero_boundary_is_toeplitz(n, k, seed):
    h = np.random.default_rng(seed).standard_normal(k)
    full = toeplitz_full(h, n)
    np.testing.assert_array_equal(convcli.convolution_matrix(h, n, mode="full"), full)
    same = full[(k - 1) // 2 : (k - 1) // 2 + n]  # scipy.signal's 'same' centring
    np.testing.assert_array_equal(convcli.convolution_matrix(h, n, mode="same"), same)
    if k <= n:
        np.testing.assert_array_equal(convcli.convolution_matrix(h, n, mode="valid"), full[k - 1 : n])
        strided = convcli.convolution_matrix(h, n, mode="valid", stride=2)
        np.testing.assert_array_equal(strided, full[k - 1 : n : 2])  # every second row


@given(
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    seed=st.integers(0, 99),
)
def test_2d_zero_boundary_is_doubly_block_toeplitz(h, w, kh, kw, seed):
    kernel = np.random.default_rng(seed).standard_normal((kh, kw))
    # block (i, j) of the full 2-D convolution is the 1-D Toeplitz matrix of kernel row i − j
    blocks = [toeplitz_full(kernel[r], w) for r in range(kh)]
    zero = np.zeros_like(blocks[0])
    expected = np.block(
        [[blocks[i - j] if 0 <= i - j < kh else zero for j in range(h)] for i in range(h + kh - 1)]
    )
    np.testing.assert_array_equal(convcli.convolution_matrix(kernel, (h, w), mode="full"), expected)


@given(n=st.integers(1, 9), k=st.integers(1, 9), dilation=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_wrap_is_circulant_with_the_kernels_dft_as_eigenvalues(n, k, dilation, seed):
    h = np.random.default_rng(seed).standard_normal(k)
    T = convcli.convolution_matrix(h, n, boundary="wrap", dilation=dilation)
    # first column: the (dilated) kernel wrapped onto n samples, shifted back by the 'same' centring
    span = dilation * (k - 1) + 1
    column = np.zeros(n)
    for j, tap in enumerate(h):
        column[(j * dilation - (span - 1) // 2) % n] += tap
    np.testing.assert_allclose(T, scipy.linalg.circulant(column), atol=1e-12)
    eigen = circulant_eigenvalues(h, n, dilation=dilation)
    modes = np.exp(2j * np.pi * np.outer(np.arange(n), np.arange(n)) / n)  # columns: the DFT's modes
    np.testing.assert_allclose(T @ modes, modes * eigen, atol=1e-9)
    dilated = np.zeros(span)
    dilated[::dilation] = h
    kernel_dft = np.array([np.sum(dilated * np.exp(-2j * np.pi * f * np.arange(span) / n)) for f in range(n)])
    np.testing.assert_allclose(np.abs(eigen), np.abs(kernel_dft), atol=1e-9)


def test_2d_wrap_is_block_circulant_with_circulant_blocks_diagonalised_by_the_2d_dft():
    rng = np.random.default_rng(5)
    kernel, (h, w) = rng.standard_normal((3, 2)), (4, 5)
    T = convcli.convolution_matrix(kernel, (h, w), boundary="wrap", correlate=True)
    pads = (1, 1)  # 'same' pads span // 2 before: spans 3 and 2
    expected = np.zeros((h * w, h * w))
    for i in range(3):
        row_shift = np.roll(np.eye(h), i - pads[0], axis=1)  # output row r reads input row r + i − 1
        column = np.zeros(w)
        for j in range(2):
            column[(-(j - pads[1])) % w] += kernel[i, j]
        expected += np.kron(row_shift, scipy.linalg.circulant(column))
    np.testing.assert_allclose(T, expected, atol=1e-12)
    eigen = circulant_eigenvalues(kernel, (h, w), correlate=True)
    modes = np.kron(*(np.exp(2j * np.pi * np.outer(np.arange(n), np.arange(n)) / n) for n in (h, w)))
    np.testing.assert_allclose(T @ modes, modes * eigen, atol=1e-9)
    np.testing.assert_allclose(np.abs(eigen), np.abs(np.fft.fft2(kernel, (h, w))).ravel(), atol=1e-9)


# ---------------------------------------------------------------- the command line
def test_cli_writes_each_format_equal_to_the_engine(tmp_path):
    expected = convcli.convolution_matrix(np.array([1.0, 2, 3]), 6, boundary="wrap")
    for name in ("T.npy", "T.csv", "T.npz", "T.png"):
        result = run("matrix", "-k", "1 2 3", "--size", 6, "--boundary", "wrap", "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert "6x6 circulant" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "T.npy"), expected)
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "T.csv", delimiter=","), expected)
    np.testing.assert_array_equal(scipy.sparse.load_npz(tmp_path / "T.npz").toarray(), expected)
    assert (tmp_path / "T.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_json_and_weight_sharing_summary():
    result = run("matrix", "-k", "2 1", "--size", 5, "--mode", "valid", "--correlate")
    assert result.exit_code == 0, result.output
    assert (
        "4x5 Toeplitz" in result.stdout
        and "learns 20 parameters, the convolution its kernel's 2" in result.stdout
    )
    assert "│ y1 │  . │  2 │  1 │  . │  . │" in result.stdout
    document = json.loads(
        run("matrix", "-k", "2 1", "--size", 5, "--mode", "valid", "--correlate", "--json").stdout
    )
    assert document["command"] == "matrix" and document["matrix_shape"] == [4, 5]
    assert (document["dense_params"], document["kernel_params"]) == (20, 2)
    assert document["structure"] == "Toeplitz" and document["output_shape"] == [4]
    x = np.arange(1, 6.0)
    assert np.array(document["matrix"]) @ x == pytest.approx([4, 7, 10, 13])  # the notes' example, computed


def test_cli_explain_lists_the_circulant_eigenvalues():
    result = run("matrix", "-k", "1 2 3", "--size", 4, "--boundary", "wrap", "--explain")
    assert result.exit_code == 0, result.output
    assert "diagonalised by the DFT" in result.stderr
    magnitudes = np.abs(np.fft.fft([1, 2, 3], 4))
    assert "|eigenvalues|: " + ", ".join(f"{m:.4g}" for m in magnitudes) in result.stderr


def test_cli_data_view_and_transposed(tmp_path):
    np.savetxt(tmp_path / "x.txt", [1, 2, 3, 4, 5, 6])
    result = run("matrix", "--data", tmp_path / "x.txt", "--size", 3, "--mode", "full", "--json")
    D = np.array(json.loads(result.stdout)["matrix"])
    x = np.arange(1, 7.0)
    np.testing.assert_array_equal(D, toeplitz_full(x, 3))  # the notes' T(y): 8x3
    up = json.loads(run("matrix", "-k", "1 2 1", "--size", 3, "--stride", 2, "--transposed", "--json").stdout)
    forward = json.loads(run("matrix", "-k", "1 2 1", "--size", 5, "--stride", 2, "--json").stdout)
    assert np.array_equal(np.array(up["matrix"]), np.array(forward["matrix"]).T) and up["matrix_shape"] == [
        5,
        3,
    ]


def test_cli_refusals(tmp_path):
    big = run("matrix", "-k", "1 2 1", "--size", 5000, "-o", tmp_path / "T.npy")
    assert big.exit_code == 2 and "T.npz" in big.stderr and not (tmp_path / "T.npy").exists()
    sparse = run("matrix", "-k", "1 2 1", "--size", 5000, "-o", tmp_path / "T.npz")
    assert sparse.exit_code == 0 and scipy.sparse.load_npz(tmp_path / "T.npz").nnz == 3 * 5000 - 2
    for args, fragment in [
        (("--size", 5), "give a kernel (-k) or an input (--data)"),
        (("-k", "1 2", "--size", "5x5x5"), "expected N or HxW"),
        (("-k", "sobel-x", "--size", 9), "give --size HxW"),
        (("-k", "1 2", "--size", 5, "-o", tmp_path / "T.txt"), "write T as"),
    ]:
        result = run("matrix", *args)
        assert result.exit_code == 2 and fragment in result.stderr, result.output
