"""``convcli train``, ``convcli evaluate`` and ``convcli predict``: small CNNs on the CPU.

Parsing and printing only; the work is in :mod:`convcli.nn` (imported inside the commands,
so ``--help`` stays fast).
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from pathlib import Path

import click

from convcli.cli.common import batch_options, expand_inputs, finish, given_options, run_files
from convcli.cli.output import console, interrupted, print_json, rounded_seconds, table
from convcli.errors import ExitStatus, UsageError


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _read_options(size, gray, length, sample_rate, mono):
    from convcli.nn.data import ReadOptions
    from convcli.text import parse_shape

    hw = None if size is None else parse_shape(size, "--size", lengths=(2,), forms="HxW", example="32x32")
    return ReadOptions(hw, gray, length, sample_rate, mono)


EPOCH_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "samples/s")
_PLAIN_WIDTHS = (5, 8, 8, 8, 12, 9, 7, 9)
EPOCH_CAPTION = ("loss, accuracy: running means over the epoch's batches (training mode); "
                 "val_*: the model at the end of the epoch")


def _epoch_cells(record: dict) -> list[str]:
    return [str(record["epoch"]), _fmt(record["loss"]), _fmt(record["accuracy"]), _fmt(record["val_loss"]),
            _fmt(record["val_accuracy"]), f"{record['lr']:.3g}", f"{record['seconds']:.2f}",
            _fmt(record.get("samples_per_second"), ".0f")]


def _plain_row(cells) -> str:
    return "  ".join(cell.rjust(width) for cell, width in zip(cells, _PLAIN_WIDTHS, strict=True))


class _TrainDisplay:
    """What ``train`` shows while it runs, one row per epoch.

    stdout a terminal: a rich Table of the epochs, live, with the progress bar (live loss and
    accuracy) beneath it while stderr is a terminal too; when the run ends (or stops: Ctrl-C, a
    NaN loss) the bar goes and the whole table stays. stdout not a terminal: one aligned text line
    per epoch as it completes (for logs and scripts), and the bar alone on stderr when that is a
    terminal. ``--quiet`` / ``--json``: nothing.
    """

    def __init__(self, out, err, shown: bool) -> None:
        self.out = out
        self.table_live = shown and out.is_terminal
        self.plain = shown and not out.is_terminal
        self.records: list[dict] = []
        self.bar = self.task = self.live = None
        if shown and err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(),
                                "loss {task.fields[loss]}", "acc {task.fields[acc]}", TimeElapsedColumn(),
                                console=out if self.table_live else err, transient=True)

    def __enter__(self):
        if self.table_live:
            from rich.live import Live

            # Live draws the bar as part of its renderable, so the bar is never started on its own
            # stderr is drawn above the table only when it is this terminal (else it stays put)
            self.live = Live(self._renderable(), console=self.out, transient=True, refresh_per_second=8,
                             redirect_stderr=self.bar is not None)
            self.live.__enter__()
        elif self.plain:
            self.out.print(_plain_row(EPOCH_COLUMNS), highlight=False, soft_wrap=True)
        if self.bar is not None and self.live is None:
            self.bar.__enter__()
        return self

    def step(self, progress) -> None:
        if self.bar is None:
            return
        if self.task is None or progress.step == 1:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(f"epoch {progress.epoch}/{progress.epochs}", total=progress.steps,
                                          loss="-", acc="-")
        self.bar.update(self.task, completed=progress.step, loss=f"{progress.loss:.4f}",
                        acc=f"{progress.accuracy:.3f}")

    def epoch(self, record: dict) -> None:
        self.records.append(record)
        if self.live is not None:
            self.live.update(self._renderable(), refresh=True)  # the new row (and bar) at once
        elif self.plain:
            self.out.print(_plain_row(_epoch_cells(record)), highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            if self.records:
                self.out.print(self._table(self.records))
        elif self.bar is not None:
            self.bar.__exit__(*exc)

    def _renderable(self):
        from rich.console import Group

        # the latest rows that fit above the bar; the final table (printed at the end) has them all
        room = max(3, self.out.size.height - 10)
        drawn = self._table(self.records[-room:], hidden=max(0, len(self.records) - room))
        return drawn if self.bar is None else Group(drawn, self.bar)

    def _table(self, records: list[dict], hidden: int = 0):
        caption = f"({hidden} earlier epochs not shown until the end) " if hidden else ""
        drawn = table(*EPOCH_COLUMNS, numeric=EPOCH_COLUMNS, caption=caption + EPOCH_CAPTION,
                      caption_justify="left")
        for record in records:
            drawn.add_row(*_epoch_cells(record))
        return drawn


@click.command("train")
@click.argument("data", metavar="DATA")
@click.option("--model", "model_arg", metavar="SPEC|FILE|NAME",
              help="Network: spec text ('Conv2d(1,8,3); ReLU(); ...'), a spec file, a model .npz (its "
                   "architecture) or a zoo name. Lazy layers take their sizes from the data. Default: a "
                   "small CNN for the data's dimensionality.")
@click.option("-o", "--output", default="model.npz", show_default=True, metavar="FILE",
              help="Model file, saved atomically after every epoch.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate [adam/adamw: 0.001, sgd: 0.01].")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd"]), default="adam", show_default=True)
@click.option("--momentum", type=float, default=0.0, show_default=True, help="sgd momentum.")
@click.option("--nesterov/--no-nesterov", default=False, help="Nesterov momentum (sgd).")
@click.option("--weight-decay", type=float, default=None,
              help="L2 penalty (adam, sgd) or decoupled decay (adamw) [adamw: 0.01, others: 0].")
@click.option("--schedule", type=click.Choice(["constant", "cosine", "step"]), default="constant",
              show_default=True, help="Learning rate per epoch: constant, cosine annealing to 0, or ×0.1 "
                                      "every third of the epochs.")
@click.option("--init", "init", type=click.Choice(["pytorch", "he"]), default="pytorch", show_default=True,
              help="PyTorch's default initialization (kaiming-uniform a=√5) or He normal.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same model.")
@click.option("--val-split", type=float, default=0.1, show_default=True,
              help="Fraction held out for validation (0: none); with a test set only when given.")
@click.option("--test", "test_path", metavar="DATA", help="Held-out test set (folder or .npz).")
@click.option("--resume", "resume_path", metavar="FILE",
              help="Continue a run from its model file, with the recipe the file recorded unless an "
                   "option given here overrides it (see above).")
@click.option("--size", metavar="HxW", help="Images: resize every image to HxW.")
@click.option("--gray", is_flag=True, help="Images: convert to one channel.")
@click.option("--length", type=int, help="Audio: crop or zero-pad to this many samples.")
@click.option("--sample-rate", type=int, help="Audio: resample to this rate.")
@click.option("--mono", is_flag=True, help="Audio: mix the channels down.")
@click.option("--plot", "plot_path", metavar="PNG", help="Draw loss/accuracy curves.")
@click.option("--filters-png", "filters_path", metavar="PNG", help="Draw the first layer's kernels.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document at the end.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no epoch table.")
@click.option("--force", is_flag=True, help="Replace an existing model file.")
@click.pass_context
def train(ctx: click.Context, data: str, model_arg: str | None, output: str, epochs: int, batch_size: int,
          lr: float | None, optimizer: str, momentum: float, nesterov: bool, weight_decay: float | None,
          schedule: str, init: str, seed: int, val_split: float, test_path: str | None,
          resume_path: str | None, size: str | None, gray: bool, length: int | None,
          sample_rate: int | None, mono: bool, plot_path: str | None, filters_path: str | None,
          as_json: bool, quiet: bool, force: bool) -> ExitStatus:
    """Train a small 1-D or 2-D CNN on the CPU from an .npz (x, y[, x_test, y_test, class_names])
    or a folder with one sub-folder of images or audio files per class.

    Inputs are scaled to [0, 1] (images) and standardized with the training set's per-channel
    mean/std, stored in the model so predict/evaluate prepare inputs the same way. A trailing
    Softmax folds into the loss (softmax cross-entropy). Ctrl-C keeps the last complete epoch.

    Output: a table with a row per epoch (a live rich table above the progress bar on a terminal,
    aligned text lines otherwise); loss and accuracy there are running means over the epoch's
    batches in training mode, val_loss/val_accuracy the model at the epoch's end. --json prints
    epochs, train_accuracy, val_accuracy, test_accuracy, seconds, samples_per_second, params,
    model and history (those four per epoch); train_accuracy is the final model evaluated on the
    training part (evaluation mode: no dropout, BatchNorm's running statistics).

    --resume FILE continues a run with the recipe FILE recorded (epochs in total, optimizer, lr,
    momentum, weight decay, schedule, batch size, seed, val split): an option left at its default
    does not change it, an option you give does, and one warning names each that differs from
    the file's. Another --optimizer starts fresh moments with its own defaults; --init is ignored
    (the weights come from FILE); data options (--size, --gray, --length, --sample-rate, --mono)
    must match FILE's.

    \b
    Examples:
      convcli train samples/shapes16.npz --epochs 5 -o shapes.npz
      convcli train samples/waves.npz -o w.npz --model "Conv1d(1,8,5,stride=2);ReLU();Flatten();LazyLinear(3)"
      convcli train samples/shapes/ --size 16x16 --gray --epochs 10 -o folder.npz --plot curves.png
      convcli train samples/shapes16.npz --resume shapes.npz -o shapes.npz --epochs 10
    """
    from convcli.io.files import check_can_write
    from convcli.nn.plots import check_picture_path
    from convcli.nn.train import TrainConfig, prepare_run

    config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                         momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
                         init=init, seed=seed, val_split=val_split)
    config.check()
    read = _read_options(size, gray, length, sample_rate, mono)
    read.check()
    out = Path(output)
    pictures = [Path(p) for p in (plot_path, filters_path) if p]
    _refuse_overwriting_inputs([out, *pictures], [data, test_path])
    resuming_in_place = resume_path is not None and Path(resume_path).resolve() == out.resolve()
    check_can_write(out, force or resuming_in_place)
    for picture in pictures:
        check_can_write(picture, force)
        check_picture_path(picture)
    run = prepare_run(data, spec=model_arg, config=config, resume=resume_path, test=test_path, read=read,
                      given=given_options(ctx))
    return _run_training(run, out, plot_path, filters_path, as_json, quiet)


def _refuse_overwriting_inputs(outputs: list[Path], inputs: list[str | None]) -> None:
    """The rule of every command: an output never replaces an input, --force or not."""
    for name in inputs:
        if name is None:
            continue
        source = Path(name).resolve()
        for target in outputs:
            if target.resolve() == source:
                raise UsageError(f"{target}: output would overwrite the input {name}")


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold back Ctrl-C until the block is done, then raise it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _run_training(run, out: Path, plot_path, filters_path, as_json: bool, quiet: bool) -> ExitStatus:
    from convcli.nn.model import save_model
    from convcli.nn.train import NonFiniteLoss, evaluate_loss, fit

    model, config = run.model, run.config
    shown = not as_json and not quiet
    out_console = console()
    if shown:
        start = run.start_epoch
        resumed = f", resuming at epoch {start + 1} (epochs 1-{start} done)" if start else ""
        out_console.print(f"[bold]{len(run.train[1])} training samples, "
                          f"{model.network.num_params:,} parameters, {config.epochs} epochs{resumed}[/bold]",
                          soft_wrap=True)
    in_place = run.resumed_from is not None and Path(run.resumed_from).resolve() == out.resolve()
    saved = {"epoch": run.start_epoch if in_place else 0}  # what the file at ``out`` holds
    display = _TrainDisplay(out_console, console(stderr=True), shown)

    def on_epoch(record: dict) -> None:
        with _interrupts_deferred():  # the file, the epoch we report and the table must agree
            save_model(model, out)
            saved["epoch"] = record["epoch"]
            display.epoch(record)

    started = time.perf_counter()
    try:
        with display:
            fit(model, *run.train, run.val, config, start_epoch=run.start_epoch, optimizer=run.optimizer,
                on_step=display.step, on_epoch=on_epoch)
    except KeyboardInterrupt:
        interrupted(_kept(out, saved["epoch"]))
        return ExitStatus.INTERRUPTED
    except NonFiniteLoss as error:  # args[0]: the message with its parameters marked, for the flags
        raise NonFiniteLoss(f"{error.args[0]}; {_kept(out, saved['epoch'])}") from None
    seconds = time.perf_counter() - started
    trained_samples = len(run.train[1]) * (config.epochs - run.start_epoch)
    if plot_path:
        from convcli.nn.plots import plot_curves

        plot_curves(model.history, plot_path)
    if filters_path:
        _draw_filters(model, filters_path)
    # the final model, in evaluation mode, on the data it trained on (one batched forward pass):
    # the history's running accuracy mixes the weights of a whole epoch and has dropout on
    train_accuracy = evaluate_loss(model, *run.train)[1]
    test_accuracy = evaluate_loss(model, *run.test)[1] if run.test is not None else None
    speed = trained_samples / seconds if seconds > 0 else None
    document = {"model": str(out), "epochs": len(model.history), "train_accuracy": train_accuracy,
                "val_accuracy": model.history[-1]["val_accuracy"], "test_accuracy": test_accuracy,
                "seconds": rounded_seconds(seconds),
                "samples_per_second": None if speed is None else round(speed, 1),
                "total_params": model.network.num_params,
                "history": [{k: r[k] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
                            for r in model.history]}
    if as_json:
        print_json("train", document)
    elif not quiet:
        accuracies = f"train accuracy {train_accuracy:.4f}"
        if document["val_accuracy"] is not None:
            accuracies += f", val accuracy {document['val_accuracy']:.4f}"
        if test_accuracy is not None:
            accuracies += f", test accuracy {test_accuracy:.4f}"
        out_console.print(f"saved {out} ({_fmt(speed, '.0f')} samples/s); final model: {accuracies}",
                          soft_wrap=True)
    return ExitStatus.OK


def _kept(out: Path, epoch: int) -> str:
    """What the model file holds after a stop: never name a file that was not written."""
    return f"{out} holds epoch {epoch}" if epoch else f"no epoch completed, {out} was not written"


def _draw_filters(model, path: str) -> None:
    from convcli.nn.plots import plot_filters

    for layer in model.network.layers:
        if "weight" in getattr(layer, "params", {}) and layer.params["weight"].ndim >= 3:
            plot_filters(layer.params["weight"], path, layer=layer.name)
            return
    raise UsageError("--filters-png: the network has no convolution layer to draw")


# ---------------------------------------------------------------- evaluate
@click.command("evaluate")
@click.argument("model_path", metavar="MODEL")
@click.argument("data", metavar="DATA")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def evaluate(model_path: str, data: str, as_json: bool) -> None:
    """Accuracy, per-class precision/recall and the confusion matrix of a model on labelled DATA
    (an .npz's x_test/y_test when it has them, else all of x/y; or a class folder).

    \b
    Example:
      convcli evaluate shapes.npz samples/shapes16.npz
    """
    from convcli.nn.data import load_dataset
    from convcli.nn.model import load_model
    from convcli.nn.train import classification_report

    model = load_model(model_path)
    train_set, test_set = load_dataset(data, model.read_options, model.class_names)
    labelled = test_set if test_set is not None else train_set
    classes = len(model.class_names)
    if labelled.y.max() >= classes:
        raise UsageError(f"{data}: label {int(labelled.y.max())} is out of range for the model's {classes} "
                         "classes")
    predicted = model.predict(labelled.x).argmax(axis=1)
    report = classification_report(labelled.y, predicted, model.class_names)
    report = {"model": model_path, "data": data, "split": "test" if test_set is not None else "all", **report}
    if as_json:
        print_json("evaluate", report)
        return
    _print_report(report)


def _print_report(report: dict) -> None:
    out = console()
    out.print(f"accuracy {report['accuracy']:.4f} on {report['samples']} samples ({report['split']})")
    per_class = table("class", "precision", "recall", "support", numeric=("precision", "recall", "support"))
    for row in report["per_class"]:
        per_class.add_row(row["class"], _fmt(row["precision"]), _fmt(row["recall"]), str(row["support"]))
    out.print(per_class)
    names = report["class_names"]
    confusion = table("true \\ predicted", *names, numeric=names)
    for name, counts in zip(names, report["confusion_matrix"], strict=True):
        confusion.add_row(name, *(str(c) for c in counts))
    out.print(confusion)


# ---------------------------------------------------------------- predict
@click.command("predict")
@click.argument("model_path", metavar="MODEL")
@click.argument("files", nargs=-1, required=True, metavar="FILES...")
@click.option("-r", "--recursive", is_flag=True, help="Folders: also the files in their sub-folders.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@batch_options
def predict(model_path: str, files: tuple[str, ...], recursive: bool, as_json: bool, batch) -> ExitStatus:
    """Label and class probabilities for each input: image or audio files (read as in training)
    or .npy arrays (one sample, or a batch of samples). Inputs may be files, globs and folders
    (their files; --recursive: their sub-folders' too), as for convolve. Many files run on the
    batch executor (-j, --executor thread|process|dask); a file that fails is reported and the
    others still are.

    \b
    Examples:
      convcli predict shapes.npz samples/shapes/circle/circle00.png
      convcli predict shapes.npz 'samples/shapes/square/*.png' --json
      convcli predict shapes.npz samples/shapes/ -r
      convcli predict shapes.npz samples/shapes/ -r -j 2 --json
    """
    from convcli.executors import Job, check_stdio
    from convcli.io.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
    from convcli.jobs.predict import predict_file
    from convcli.nn.model import load_model

    model = load_model(model_path)  # a bad model fails here, once, before any file
    readable = (*IMAGE_EXTENSIONS, *AUDIO_EXTENSIONS, ".npy")
    names = expand_inputs(files, recursive=recursive, extensions=readable)
    check_stdio(names, None, batch)
    jobs = [Job(name, None, "") for name in names]
    task = functools.partial(predict_file, model_path=str(Path(model_path).resolve()))
    result = run_files(jobs, task, batch, quiet=as_json)
    predictions = [p for record in result.records for p in record.pop("predictions", [])]
    status = finish(result.records, command="predict", as_json=as_json, quiet=True,
                    extra={"model": model_path, **result.info, "predictions": predictions})
    if predictions and not as_json:
        probabilities = table("file", "label", *model.class_names, numeric=model.class_names)
        for record in predictions:
            probabilities.add_row(record["file"], record["label"],
                                  *(f"{p:.3f}" for p in record["probabilities"].values()))
        console().print(probabilities)
    return status
