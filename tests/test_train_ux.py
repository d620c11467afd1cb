"""`convcli train` as a user sees it: --resume and the recipe in the model file, the final
train_accuracy, and the per-epoch table (aligned lines off a terminal, a live rich table on one)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from commands import run

from convcli.nn.model import load_model, save_model
from convcli.nn.train import TrainConfig, resume_optimizer

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
EPOCH_HEADER = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "samples/s"]


def warning_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("convcli: warning:")]


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """Two classes of 6×6 images (dark/bright blobs), no test split: a validation part is held out."""
    rng = np.random.default_rng(5)
    y = np.arange(80) % 2
    x = rng.normal(0, 0.3, (80, 6, 6)).astype(np.float32)
    x[:, 2:4, 2:4] += np.where(y == 1, 1.0, -1.0)[:, None, None]
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


SPEC = "Conv2d(1, 4, 3); ReLU(); Dropout(0.3); Flatten(); LazyLinear(2)"
RECIPE = ("--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--batch-size", "16", "--seed", "3",
          "--val-split", "0.25", "--model", SPEC, "--quiet")


def test_resume_without_options_finishes_the_planned_run_with_the_files_recipe(blobs, tmp_path):
    straight, resumed = tmp_path / "straight.npz", tmp_path / "resumed.npz"
    assert run("train", blobs, "-o", straight, "--epochs", "4", *RECIPE).exit_code == 0
    assert run("train", blobs, "-o", resumed, "--epochs", "2", *RECIPE).exit_code == 0
    model = load_model(resumed)  # as if Ctrl-C had stopped a 4-epoch run after its second epoch
    model.meta["training"]["epochs"] = 4
    save_model(model, resumed)
    result = run("train", blobs, "-o", resumed, "--resume", resumed, "--quiet")  # every option at its default
    assert result.exit_code == 0, result.output
    assert warning_lines(result) == []
    a, b = load_model(straight), load_model(resumed)
    assert b.meta["training"] == a.meta["training"]  # sgd, lr 0.05, momentum, batch 16, seed 3, split 0.25
    for name, value in a.network.layers[0].params.items():
        np.testing.assert_allclose(b.network.layers[0].params[name], value, rtol=1e-5, atol=1e-7)
    assert [r["val_accuracy"] for r in b.history] == pytest.approx([r["val_accuracy"] for r in a.history])
    again = run("train", blobs, "-o", resumed, "--resume", resumed)
    assert "already has 4 of its 4 epochs: ask for more with --epochs" in again.output


def test_resume_warns_once_naming_each_option_that_differs(blobs, tmp_path):
    out = tmp_path / "m.npz"
    assert run("train", blobs, "-o", out, "--epochs", "2", *RECIPE).exit_code == 0
    result = run("train", blobs, "-o", out, "--resume", out, "--epochs", "3", "--lr", "0.01", "--seed", "3",
                 "--batch-size", "8", "--init", "he", "--momentum", "0.9", "--quiet")
    assert result.exit_code == 0, result.output
    (line,) = warning_lines(result)
    assert line.startswith(f"convcli: warning: --resume {out}: options differ from the file's recipe: ")
    assert "--lr 0.01 replaces 0.05" in line and "--batch-size 8 replaces 16" in line
    assert "--init he is ignored (the weights come from the file)" in line
    for same in ("--seed", "--momentum", "--epochs", "--optimizer"):  # given, but equal to the file's
        assert same not in line
    training = load_model(out).meta["training"]
    assert (training["lr"], training["batch_size"], training["init"], training["optimizer"]) == (
        0.01, 8, "pytorch", "sgd")


def test_resume_with_another_optimizer_or_seed_says_what_that_changes(blobs, tmp_path):
    out = tmp_path / "m.npz"
    assert run("train", blobs, "-o", out, "--epochs", "2", "--schedule", "cosine", *RECIPE).exit_code == 0
    result = run("train", blobs, "-o", out, "--resume", out, "--epochs", "4", "--optimizer", "adam",
                 "--seed", "4", "--quiet")
    assert result.exit_code == 0, result.output
    (line,) = warning_lines(result)
    assert "--optimizer adam replaces sgd (fresh moments" in line
    assert "--seed 4 replaces 3 (a new shuffle and, without a test set, a new validation part" in line
    assert "--epochs 4 reshapes the cosine schedule planned for 2 epochs" in line
    training = load_model(out).meta["training"]
    # adam brings its own settings: its default lr (not sgd's 0.05), no momentum
    assert (training["optimizer"], training["lr"], training["momentum"]) == ("adam", None, 0.0)


def test_resume_optimizer_keeps_moments_only_for_the_same_optimizer(blobs, tmp_path):
    out = tmp_path / "m.npz"
    assert run("train", blobs, "-o", out, "--epochs", "1", *RECIPE).exit_code == 0
    model = load_model(out)
    same = resume_optimizer(model, TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9))
    assert same.steps == 4 and set(same.state) == set(model.optimizer_state) != set()
    other = resume_optimizer(model, TrainConfig(optimizer="adam"))
    assert other.steps == 0 and other.state == {}


def test_resume_refuses_other_data_options_and_leaves_the_file(blobs, tmp_path):
    out = tmp_path / "m.npz"
    assert run("train", blobs, "-o", out, "--epochs", "1", *RECIPE).exit_code == 0
    before = out.read_bytes()
    result = run("train", blobs, "-o", out, "--resume", out, "--epochs", "2", "--size", "4x4", "--gray")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"convcli: error: --resume {out}: --size 4x4 (the file's: not set), --gray on (the file's: off): "
        "the model reads its inputs as it was trained to; leave them out"]
    assert out.read_bytes() == before


def test_train_accuracy_is_the_final_model_evaluated_on_the_training_part(tmp_path):
    # a test split, so the training part is all of x; dropout and BatchNorm make training mode differ.
    # (N, 8) samples and a Linear first: an MLP, whose BatchNorm1d normalizes 16 features
    rng = np.random.default_rng(7)
    y = np.arange(60) % 3
    x = rng.normal(0, 1, (60, 8)).astype(np.float32) + np.eye(3, 8, dtype=np.float32)[y] * 1.5
    data, out = tmp_path / "d.npz", tmp_path / "m.npz"
    np.savez(data, x=x, y=y, x_test=x[:9], y_test=y[:9])
    spec = "Linear(8, 16); BatchNorm1d(16); ReLU(); Dropout(0.5); Linear(16, 3)"
    result = run("train", data, "-o", out, "--epochs", "3", "--model", spec, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    evaluated = float((load_model(out).predict(x).argmax(axis=1) == y).mean())
    assert doc["train_accuracy"] == evaluated
    running = doc["history"][-1]["accuracy"]  # the mean over the last epoch's batches, training mode
    assert running == load_model(out).history[-1]["accuracy"] and running != doc["train_accuracy"]


def test_plain_output_is_one_aligned_line_per_epoch(blobs, tmp_path):
    out = tmp_path / "m.npz"
    result = run("train", blobs, "-o", out, "--epochs", "3", "--model", SPEC)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"72 training samples, {load_model(out).network.num_params} parameters, 3 epochs"
    header, rows, last = lines[1], lines[2:5], lines[5]
    assert header.split() == EPOCH_HEADER
    for number, row in enumerate(rows, start=1):
        cells = row.split()
        assert len(row) == len(header) and len(cells) == 8 and cells[0] == str(number)
        # every value ends under its column's name
        assert [m.end() for m in re.finditer(r"\S+", row)] == [m.end() for m in re.finditer(r"\S+", header)]
    assert re.fullmatch(rf"saved {re.escape(str(out))} \(\d+ samples/s\); final model: train accuracy "
                        r"[01]\.\d{4}, val accuracy [01]\.\d{4}", last)


# ---------------------------------------------------------------- on a terminal
def run_on_terminal(args, interrupt_when=None, timeout=120):
    """Run convcli with stdin/stdout/stderr on a pseudo-terminal (110×30); the text it drew, its exit."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen([sys.executable, "-m", "convcli", *map(str, args)], stdin=slave, stdout=slave,
                               stderr=slave, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    chunks, deadline, sent = [], time.monotonic() + timeout, False
    try:
        while time.monotonic() < deadline:
            if interrupt_when is not None and not sent and interrupt_when():
                process.send_signal(signal.SIGINT)
                sent = True
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has exited
                break
            if not data:
                break
            chunks.append(data)
        process.wait(timeout=30)
    finally:
        process.kill()
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace"), process.returncode


def final_screen(drawn: str) -> list[str]:
    """What stays on the terminal after the live display has gone: the text after its last erase."""
    tail = drawn.split("\x1b[?25h")[-1].split("\x1b[2K")[-1]
    return [line.rstrip() for line in ANSI.sub("", tail).replace("\r", "").splitlines() if line.strip()]


def table_rows(lines: list[str]) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in lines if line.startswith("│")]


def test_terminal_shows_a_live_table_with_the_bar_and_keeps_the_table(blobs, tmp_path):
    out = tmp_path / "m.npz"
    drawn, status = run_on_terminal(["train", blobs, "-o", out, "--epochs", "3", "--model", SPEC])
    assert status == 0, drawn
    # one frame of the live display (no line erased in between): row 1 of the table above the bar
    frame = re.search(r"│\s+1 │((?:(?!\x1b\[2K).)*)epoch 1/3((?:(?!\x1b\[2K).)*)", drawn, re.S)
    assert frame and re.search(r"loss \d\.\d{4} acc [01]\.\d{3}", ANSI.sub("", frame[2]))
    screen = final_screen(drawn)
    assert [cell.strip() for cell in screen[1].strip("┃").split("┃")] == EPOCH_HEADER
    rows = table_rows(screen)
    history = load_model(out).history
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [row[1] for row in rows] == [f"{r['loss']:.4f}" for r in history]
    assert screen[-1].startswith(f"saved {out} (") and "final model: train accuracy" in screen[-1]
    assert "epoch 3/3" not in "\n".join(screen)  # the bar has gone


def test_ctrl_c_on_a_terminal_keeps_the_table_of_the_saved_epochs(blobs, tmp_path):
    out = tmp_path / "m.npz"
    drawn, status = run_on_terminal(["train", blobs, "-o", out, "--epochs", "100000", "--model", SPEC],
                                    interrupt_when=out.exists)
    assert status == 130, drawn
    screen = final_screen(drawn)
    kept = int(screen[-1].split("holds epoch ")[1])
    assert screen[-1] == f"convcli: interrupted: {out} holds epoch {kept}"
    assert [row[0] for row in table_rows(screen)] == [str(e) for e in range(1, kept + 1)]
    assert len(load_model(out).history) == kept
