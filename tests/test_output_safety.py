"""Issue #20, class 6 (outputs): what an output option names is checked before any work, and a
write never replaces what is not a regular file nor silently loses another run's result; and
class 5: standard input is read under the budgets a file is."""

import os
import threading

import numpy as np
import pytest
from commands import run

from convcli.errors import OutputExistsError
from convcli.io.files import atomic_output


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("convcli: ")]


@pytest.fixture
def signal(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(10.0))
    return tmp_path / "x.npy"


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_fifo_is_never_replaced(tmp_path, signal, force):
    os.mkfifo(tmp_path / "pipe.npy")
    result = run("convolve", signal, "-k", "1 1", "-o", tmp_path / "pipe.npy", *force)
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == [f"convcli: error: {tmp_path / 'pipe.npy'}: the output is a FIFO "
                                          "(named pipe); only a regular file is ever replaced"]
    assert os.path.exists(tmp_path / "pipe.npy") and not os.path.isfile(tmp_path / "pipe.npy")


def test_a_device_is_never_replaced(signal):
    result = run("convolve", signal, "-k", "1 1", "-o", "/dev/null", "--force")
    assert result.exit_code == 2 and "the output is a device" in result.output, result.output
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_symbolic_link_loops_are_one_line(tmp_path, signal):
    os.symlink(tmp_path / "b.npy", tmp_path / "a.npy")
    os.symlink(tmp_path / "a.npy", tmp_path / "b.npy")
    as_output = run("convolve", signal, "-k", "1 1", "-o", tmp_path / "a.npy", "--force")
    assert as_output.exit_code == 2 and len(error_lines(as_output.output)) == 1, as_output.output
    assert "a.npy" in as_output.output and "--debug" not in as_output.output
    as_input = run("convolve", tmp_path / "a.npy", "-k", "1 1", "-o", tmp_path / "y.npy")
    assert as_input.exit_code == 1 and len(error_lines(as_input.output)) == 1, as_input.output
    assert "a.npy" in as_input.output and "--debug" not in as_input.output


def test_a_dangling_link_is_not_replaced(tmp_path, signal):
    os.symlink(tmp_path / "nowhere.npy", tmp_path / "link.npy")
    result = run("convolve", signal, "-k", "1 1", "-o", tmp_path / "link.npy", "--force")
    assert result.exit_code == 2 and "symbolic link to nothing" in result.output, result.output
    assert os.path.islink(tmp_path / "link.npy") and not (tmp_path / "nowhere.npy").exists()


def test_an_output_without_extension_is_named_as_given(tmp_path, signal):
    result = run("convolve", signal, "-k", "1 1", "-o", tmp_path / "result")
    assert result.exit_code == 2, result.output
    assert f"-o {tmp_path / 'result'}: no file extension" in result.output and ".part" not in result.output
    assert os.listdir(tmp_path) == ["x.npy"]  # nothing left behind


def test_a_picture_format_is_checked_before_training(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((20, 1, 6, 6)).astype(np.float32), y=np.arange(20) % 2)
    result = run("train", tmp_path / "d.npz", "--epochs", "1", "-o", tmp_path / "m.npz", "--plot",
                 tmp_path / "curves.xyz")
    assert result.exit_code == 2 and not (tmp_path / "m.npz").exists()
    assert len(error_lines(result.output)) == 1 and "cannot draw a picture as '.xyz'" in result.output
    assert "epoch" not in result.output  # refused before the first epoch


def test_two_writers_of_one_new_output_never_both_succeed(tmp_path):
    """Both pass the early check, both finish writing, then race to the name: one wins, the other
    is told; the file holds the winner's bytes."""
    target = tmp_path / "out.txt"
    both_written = threading.Barrier(2)
    outcome = {}

    def writer(text: str) -> None:
        try:
            with atomic_output(target) as temp:
                temp.write_text(text)
                both_written.wait(timeout=10)
            outcome[text] = "written"
        except OutputExistsError as error:
            outcome[text] = str(error)

    threads = [threading.Thread(target=writer, args=(text,)) for text in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    winners = [text for text, result in outcome.items() if result == "written"]
    assert len(winners) == 1, outcome
    loser = next(text for text in outcome if text not in winners)
    assert "output appeared while writing" in outcome[loser]
    assert target.read_text() == winners[0]
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]  # no temporary left


def test_force_still_replaces_a_regular_file(tmp_path, signal):
    (tmp_path / "y.npy").write_bytes(b"old")
    result = run("convolve", signal, "-k", "1 1", "-o", tmp_path / "y.npy", "--force")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.convolve(np.arange(10.0), [1, 1], "same"))


# ---------------------------------------------------------------- class 5: every input path bounded
@pytest.mark.parametrize("command", [["convolve", "-", "-k", "1 1"], ["pool", "-", "--size", "2"]])
def test_standard_input_is_held_to_the_memory_budget(tmp_path, command):
    """An endless (here: 3 MB of) standard input under a 1 MB budget: refused once past it, exit 2."""
    result = run(*command, "-o", tmp_path / "y.npy", input=b"\x93NUMPY" + bytes(3_000_000),
                 env={"CONVCLI_MAX_MEMORY": "1M"})
    assert result.exit_code == 2, result.output
    assert "stdin: the input is larger than the memory budget of 1,000,000 bytes" in result.output
    assert not (tmp_path / "y.npy").exists()


def test_standard_input_within_the_budget_is_read(tmp_path):
    buffer = tmp_path / "x.npy"
    np.save(buffer, np.arange(10.0))
    result = run("convolve", "-", "-k", "1 1", "-o", tmp_path / "y.npy", input=buffer.read_bytes(),
                 env={"CONVCLI_MAX_MEMORY": "1M"})
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.convolve(np.arange(10.0), [1, 1], "same"))


@pytest.mark.parametrize("command", ["shapes", "params"])
def test_a_spec_on_standard_input_is_read_no_further_than_the_longest_spec(command):
    """A spec on stdin that never ends (the pipe stays open): refused once past the parser's limit,
    not read to an end that never comes."""
    import subprocess

    from test_server import CONVCLI

    from convcli.nn.spec import MAX_SPEC_CHARS

    call = subprocess.Popen([*CONVCLI, command, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "CONVCLI_SERVER": "0"})
    try:
        call.stdin.write(b"#" * (MAX_SPEC_CHARS + 10))
        call.stdin.flush()
        call.wait(timeout=120)  # stdin still open: only a bounded read returns
        err = call.stderr.read().decode()
    finally:
        call.kill()
        call.stdin.close()
        call.stdout.close()
        call.stderr.close()
    assert call.returncode == 2
    limit = f"the spec is over {MAX_SPEC_CHARS:,} characters long, the limit"
    assert err.strip() == f"convcli: error: stdin: {limit}"


@pytest.mark.parametrize("arguments", ["x.npy -o -", "- < x.npy"], ids=["-o -", "stdin to stdout"])
def test_a_closed_stdout_asked_for_the_result_is_one_line(tmp_path, arguments):
    import subprocess

    from test_server import CONVCLI_LINE

    np.save(tmp_path / "x.npy", np.arange(10.0))
    line = f"{CONVCLI_LINE} convolve {arguments} -k '1 1' >&-"
    result = subprocess.run(["bash", "-c", line], cwd=tmp_path, env={**os.environ, "CONVCLI_SERVER": "0"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    said = "stdout: closed (the caller gave no standard output to write '-' to)"
    assert result.stderr.strip() == f"convcli: error: {said}"


@pytest.mark.parametrize("length", [240, 251])
def test_an_output_name_near_the_length_limit_is_written(tmp_path, signal, length):
    """Its temporary name (a prefix, a run mark, random letters) is cut to fit beside it: an error
    about a name never names a temporary file."""
    target = tmp_path / ("y" * (length - 4) + ".npy")
    result = run("convolve", signal, "-k", "1 1", "-o", target)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(target), np.convolve(np.arange(10.0), [1, 1], "same"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([signal.name, target.name])


def test_an_output_name_past_the_length_limit_is_one_line_naming_it(tmp_path, signal):
    name = "z" * 300 + ".npy"
    result = run("convolve", signal, "-k", "1 1", "-o", tmp_path / name)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "File name too long" in lines[0]
    assert "--debug" not in result.output
