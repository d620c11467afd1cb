"""Training: a run prepared from data, the loop, the choice of network, evaluation metrics.

Minibatch SGD-family training of a :class:`~convcli.nn.spec.Network` with softmax
cross-entropy. Every source of randomness is derived from ``seed`` and the epoch number
(initialization, shuffling, dropout), so two runs with one seed give identical models and a
resumed run continues exactly where a run stopped: the model file records the recipe
(:class:`TrainConfig`), and :func:`resume_config` continues with it unless told otherwise.

From Python, :func:`train` does what ``convcli train`` does::

    model = train("samples/shapes16.npz", config=TrainConfig(epochs=5), output="model.npz")

:func:`prepare_run` and :func:`fit` are its two halves, for callers that show progress.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convcli.errors import (
    ConvcliError,
    ExitStatus,
    InputError,
    ParameterWarning,
    UsageError,
    at_least,
    one_of,
)
from convcli.nn import functional as F
from convcli.nn.data import ReadOptions
from convcli.nn.model import Model, backward, check_batch_memory, forward, named_grads, named_params
from convcli.nn.optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OPTIMIZERS, SCHEDULES, Optimizer, scheduled_lr
from convcli.nn.spec import Network, parse_spec, split_statements
from convcli.process import collect_cycles
from convcli.text import shape_text


class NonFiniteLoss(ConvcliError):
    """The loss became NaN or infinite; the caller says what the model file holds."""

    exit_status = ExitStatus.PROCESSING_ERROR


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float | None = None
    schedule: str = "constant"
    init: str = "pytorch"
    seed: int = 0
    val_split: float = 0.1  # held out (drawn with ``seed``); with a test set only when asked for

    def check(self) -> None:
        """UsageError naming the first bad setting, before any data is read."""
        at_least("epochs", self.epochs, 1)
        at_least("batch_size", self.batch_size, 1)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        at_least("seed", self.seed, 0)
        self.make_optimizer()  # lr, momentum, nesterov, weight decay

    def make_optimizer(self) -> Optimizer:
        return Optimizer(self.optimizer, self.lr, momentum=self.momentum, nesterov=self.nesterov,
                         weight_decay=self.weight_decay)

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- choosing the network
def default_spec(sample_shape: tuple[int, ...], classes: int) -> str:
    """A small CNN for the data's dimensionality: (C, L) signals or (C, H, W) images."""
    if len(sample_shape) == 2:
        return (f"LazyConv1d(16, 5, stride=2, padding=2); ReLU()\n"
                f"LazyConv1d(32, 3, stride=2, padding=1); ReLU()\n"
                f"AdaptiveAvgPool1d(8); Flatten(); LazyLinear({classes})\n")
    return (f"LazyConv2d(8, 3, padding=1); ReLU(); MaxPool2d(2)\n"
            f"LazyConv2d(16, 3, padding=1); ReLU(); MaxPool2d(2)\n"
            f"Flatten(); LazyLinear({classes})\n")


def spec_text(model: str | None) -> tuple[str | None, Path | None]:
    """``--model`` as spec text: a model file's spec, a spec file, a zoo name or inline text.

    Returns (spec or None for the default network, the model file when one was given)."""
    if model is None:
        return None, None
    path = Path(model)
    if path.suffix.lower() == ".npz" and "(" not in model:
        from convcli.nn.model import load_model

        try:
            return load_model(path).network.spec, path
        except InputError as error:  # the network to build is named wrongly, as a bad spec is
            raise UsageError(str(error)) from error
    if "(" in model:
        return model, None
    if path.is_file():
        return path.read_text(encoding="utf-8"), None
    from convcli.nn.zoo import model_spec

    return model_spec(model), None


def _first_ndim(spec: str) -> int | None:
    """Dimensionality (1 or 2) of the first spatial layer of a spec, None for none (an MLP: a
    Linear or Flatten comes first, so a later BatchNorm1d reads features, not a signal)."""
    from convcli.nn.spec import make_layer

    for statement in split_statements(spec):
        if statement.text.strip().startswith("Input"):
            continue
        layer = make_layer(statement)
        if getattr(layer, "kind", None) in ("linear", "flatten"):
            return None
        ndim = getattr(type(layer), "ndim", None)
        if ndim is not None:
            return ndim
    return None


def build_network(spec: str | None, sample_shape: tuple[int, ...], classes: int) -> Network:
    """The network for samples of ``sample_shape``; its first layer decides how they are read:
    a 1-D layer takes (L) as (1, L), a 2-D layer takes (H, W) as (1, H, W)."""
    if spec is None:
        if len(sample_shape) == 1 or (len(sample_shape) == 2 and _looks_like_image(sample_shape)):
            sample_shape = (1, *sample_shape)
        if len(sample_shape) not in (2, 3):
            raise UsageError(f"no default network for samples of shape {shape_text(sample_shape)}: "
                                 "give a `spec`")
        spec = default_spec(sample_shape, classes)
        network = parse_spec(spec, sample_shape)
    else:
        declared = _declared_input(spec)
        if declared is not None:
            if math.prod(declared) != math.prod(sample_shape):
                raise UsageError(f"the spec's Input({', '.join(map(str, declared))}) does not fit samples of "
                                 f"shape {shape_text(sample_shape)}")
            network = parse_spec(spec)
        else:
            ndim = _first_ndim(spec)
            if ndim is not None and len(sample_shape) == ndim:
                sample_shape = (1, *sample_shape)
            network = parse_spec(spec, sample_shape)
    outputs = network.output_shape
    if outputs != (classes,):
        raise UsageError(f"the network gives outputs of shape {shape_text(outputs)} but the data has "
                         f"{classes} classes: end the spec with Linear(..., {classes})")
    return network


def _looks_like_image(shape: tuple[int, ...]) -> bool:
    """(A, B) samples without a spec: gray images (H, W), unless A ≤ 2 (mono/stereo signals (C, L))."""
    return shape[0] > 2


def _declared_input(spec: str) -> tuple[int, ...] | None:
    from convcli.nn.spec import _input_statement

    statements = split_statements(spec)
    return _input_statement(statements[0]) if statements else None


# ---------------------------------------------------------------- a run
@dataclass
class Run:
    """A run ready for :func:`fit`: the model (fresh or resumed), the prepared (standardized)
    parts of the data as (x, y), where the loop starts, and the recipe it follows."""

    model: Model
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None
    test: tuple[np.ndarray, np.ndarray] | None
    config: TrainConfig
    start_epoch: int = 0
    optimizer: Optimizer | None = None  # a resumed run's, with its moments
    resumed_from: str | None = None


def prepare_run(data: str | Path, *, spec: str | None = None, config: TrainConfig | None = None,
                resume: str | Path | None = None, test: str | Path | None = None,
                read: ReadOptions | None = None, given: Collection[str] = ()) -> Run:
    """Read the data, split it, build the network and the model (or resume one); nothing is trained.

    ``data``/``test``: an .npz or a class folder. ``spec``: the network (spec text, a spec file, a
    zoo name or a model file's architecture); None: a small CNN for the data. ``resume``: a model
    file to continue, with the recipe it recorded, except the settings named in ``given`` (field
    names of ``config`` and ``read`` the caller chose). Bad values raise UsageError naming them.
    """
    from convcli.nn.data import channel_stats, load_dataset, split_validation
    from convcli.nn.model import Model, init_network, load_model

    config = config if config is not None else TrainConfig()
    read = read if read is not None else ReadOptions()
    config.check()
    read.check()
    resumed = load_model(resume) if resume is not None else None
    if resumed is not None:
        if spec is not None:
            raise UsageError("`resume` continues the saved network: leave out `spec`")
        source = f"`resume` {resume}"
        _same_reading(read, resumed.read_options, given, source)
        read = resumed.read_options
        config = resume_config(resumed, config, given, source)
    train_set, test_set = load_dataset(data, read, resumed.class_names if resumed else None)
    if test is not None:
        test_set, _ = load_dataset(test, read, train_set.class_names)
    classes = len(train_set.class_names)
    for part in (train_set, test_set):
        if part is not None and part.y.max() >= classes:
            raise UsageError(f"label {int(part.y.max())} is out of range for {classes} classes")
    labels = np.unique(train_set.y)
    if labels.size < 2:
        name = train_set.class_names[int(labels[0])] if labels.size else "none"
        raise InputError(f"{data}: every training sample has the same label ({name!r}): a classifier "
                         "needs samples of at least two classes")
    if test_set is not None and resumed is None and "val_split" not in given:
        config.val_split = 0.0  # a test set replaces the default validation part; an explicit one is kept
    train_part, val_part = split_validation(train_set, config.val_split, np.random.default_rng(config.seed))
    if resumed is not None:
        model = resumed
        done = int(model.meta.get("training", {}).get("epochs_done", len(model.history)))
        if done >= config.epochs:
            raise UsageError(f"{resume} already has {done} of its {config.epochs} epochs: ask for more "
                                 "with `epochs`")
        optimizer = resume_optimizer(model, config)
    else:
        network = build_network(spec_text(spec)[0], train_set.x.shape[1:], classes)
        init_network(network, config.seed, config.init)
        x_shaped = train_part.x.reshape(len(train_part.x), *network.input_shape)
        mean, std = channel_stats(x_shaped)
        model = Model(network, {"class_names": train_set.class_names, "kind": train_set.kind,
                                "normalization": {"mean": mean.tolist(), "std": std.tolist()},
                                "read": read.to_json(), "data": str(data), "history": []})
        done, optimizer = 0, None
    prepared = [None if part is None else (model.prepare(part.x), part.y)
                for part in (train_part, val_part, test_set)]
    return Run(model, *prepared, config=config, start_epoch=done, optimizer=optimizer,
               resumed_from=None if resume is None else str(resume))


def _same_reading(given: ReadOptions, saved: ReadOptions, explicit: Collection[str], source: str) -> None:
    """A resumed run reads its files as the saved model did: the network's input is fixed."""
    given, saved = given.to_json(), saved.to_json()

    def shown(value) -> str:
        if value is None or isinstance(value, bool):
            return {None: "not set", True: "on", False: "off"}[value]
        return shape_text(value) if isinstance(value, list) else str(value)

    differing = [f"`{name}` {shown(given[name])} (the file's: {shown(saved[name])})"
                 for name in given if name in explicit and given[name] != saved[name]]
    if differing:
        raise UsageError(f"{source}: {', '.join(differing)}: the model reads its inputs as it was "
                             f"trained to; leave {'them' if len(differing) > 1 else 'it'} out")


def train(data: str | Path, *, spec: str | None = None, config: TrainConfig | None = None,
          output: str | Path | None = None, resume: str | Path | None = None, test: str | Path | None = None,
          read: ReadOptions | None = None, given: Collection[str] = (),
          on_epoch: Callable[[dict], None] | None = None) -> Model:
    """Train a model as ``convcli train`` does (:func:`prepare_run`, then :func:`fit`), saving it
    to ``output`` after every epoch when given; returns the trained model."""
    from convcli.nn.model import save_model

    run = prepare_run(data, spec=spec, config=config, resume=resume, test=test, read=read, given=given)

    def epoch_done(record: dict) -> None:
        if output is not None:
            save_model(run.model, output)
        if on_epoch is not None:
            on_epoch(record)

    fit(run.model, *run.train, run.val, run.config, start_epoch=run.start_epoch, optimizer=run.optimizer,
        on_epoch=epoch_done)
    return run.model


# ---------------------------------------------------------------- the loop
@dataclass
class Progress:
    """What a step callback receives."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float


def evaluate_loss(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(mean loss, accuracy) of prepared samples in evaluation mode (overflow gives an inf or NaN
    loss, which the caller reports: no numpy warnings)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        logits = model.logits(x)
        loss, _ = F.cross_entropy_forward(logits, y)
    return loss, float((logits.argmax(axis=1) == y).mean())


def fit(model: Model, x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None,
        config: TrainConfig, *, start_epoch: int = 0, optimizer: Optimizer | None = None,
        on_step: Callable[[Progress], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train on prepared samples ``x`` (N, *input_shape) float32 with labels ``y``.

    ``on_epoch`` gets each epoch's record after it completes (the CLI saves the model there).
    Raises :class:`NonFiniteLoss` naming the step when the loss stops being finite.
    """
    # a loss that stops being finite is reported with its step (NonFiniteLoss); overflow that leaves
    # it finite is counted and told once, in these words: never numpy's own warnings
    overflows = []
    with np.errstate(over="call", invalid="ignore", divide="ignore",
                     call=lambda kind, _flag: overflows.append(kind)):
        history = _fit(model, x, y, validation, config, start_epoch, optimizer, on_step, on_epoch)
    if overflows and history:
        warnings.warn(ParameterWarning(
            f"values overflowed float32 {len(overflows)} times during training (final loss "
            f"{history[-1]['loss']:.4g}): the run is likely diverging; lower `lr` "
            f"(now {history[-1]['lr']:g})"),
            stacklevel=2)
    elif history:
        _tell_exploded_loss(history, np.unique(y).size)
    return history


# A mean cross-entropy this many times chance level's (ln of the class count: what a network that
# knows nothing scores) is a network confidently wrong by odds past e^69 for two classes: diverged,
# not slow. Finite, so no overflow is there to tell it.
EXPLODED = 100


def _tell_exploded_loss(history: list[dict], classes: int) -> None:
    chance = math.log(max(2, classes))
    worst = max(history, key=lambda record: record["loss"])
    if not worst["loss"] > EXPLODED * chance:
        return
    warnings.warn(ParameterWarning(
        f"the training loss reached {worst['loss']:.4g} (epoch {worst.get('epoch', '?')}), over {EXPLODED} "
        f"times chance level's {chance:.3g}: the run is likely diverging; lower `lr` "
        f"(now {history[-1]['lr']:g})"),
        stacklevel=3)


def _fit(model, x, y, validation, config, start_epoch, optimizer, on_step, on_epoch) -> list[dict]:
    network = model.network
    optimizer = optimizer or config.make_optimizer()
    params = named_params(network)
    n = len(y)
    check_batch_memory(network, min(n, config.batch_size))
    steps = -(-n // config.batch_size)
    collect_cycles()
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        optimizer.lr = scheduled_lr(optimizer.base_lr, config.schedule, epoch, config.epochs)
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        dropout_rng = np.random.default_rng([config.seed, epoch, 1])
        for layer in network.layers:
            layer.rng = dropout_rng
        total_loss, correct = 0.0, 0
        for step in range(steps):
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            logits = forward(network, x[index], training=True)
            loss, cache = F.cross_entropy_forward(logits, y[index])
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}: "
                                    f"lower `lr` (now {optimizer.lr:g})")
            backward(network, F.cross_entropy_backward(cache).astype(logits.dtype, copy=False))
            optimizer.step(params, named_grads(network))
            total_loss += loss * len(index)
            correct += int((logits.argmax(axis=1) == y[index]).sum())
            seen = min((step + 1) * config.batch_size, n)
            if on_step is not None:
                on_step(Progress(epoch + 1, config.epochs, step + 1, steps, total_loss / seen,
                                 correct / seen))
        seconds = time.perf_counter() - started
        # loss/accuracy: running means over the epoch's batches, in training mode (dropout on,
        # batch statistics, weights changing); val_*: the epoch's final model in evaluation mode
        record = {"epoch": epoch + 1, "loss": total_loss / n, "accuracy": correct / n,
                  "val_loss": None, "val_accuracy": None, "lr": optimizer.lr, "seconds": seconds,
                  "samples_per_second": n / seconds if seconds > 0 else None}
        if validation is not None:
            record["val_loss"], record["val_accuracy"] = evaluate_loss(model, *validation)
        model.history.append(record)
        model.optimizer_state = dict(optimizer.state)
        model.meta["training"] = {**config.to_json(), "epochs_done": epoch + 1,
                                  "optimizer_steps": optimizer.steps}
        if on_epoch is not None:
            on_epoch(record)
    return model.history


def resume_optimizer(model: Model, config: TrainConfig) -> Optimizer:
    """The optimizer of a saved run, with its moments and step count (fresh ones when
    ``config`` asks for another kind of optimizer than the file's: their slots differ)."""
    optimizer = config.make_optimizer()
    saved = model.meta.get("training", {})
    if saved.get("optimizer", config.optimizer) == config.optimizer:
        optimizer.state = {k: v.copy() for k, v in model.optimizer_state.items()}
        optimizer.steps = int(saved.get("optimizer_steps", 0))
    return optimizer


def resume_config(model: Model, given: TrainConfig, explicit: Collection[str], source: str) -> TrainConfig:
    """The recipe a resumed run continues with: the one the model file recorded, except the
    settings named in ``explicit`` (:class:`TrainConfig` field names the user gave). Explicit
    values that differ from the file's are named in one UserWarning, with what they change.

    ``epochs`` is the run's total; a file from before a setting was recorded takes ``given``'s.
    ``init`` never changes: the weights come from the file. Another ``optimizer`` brings its own
    settings: its lr, momentum, nesterov and weight decay come from ``given`` too.
    """
    saved = model.meta.get("training", {})
    switched = "optimizer" in explicit and given.optimizer != saved.get("optimizer", given.optimizer)
    merged, notes = {}, []
    for name, value in asdict(given).items():
        if name not in saved:
            merged[name] = value
            continue
        old = saved[name]
        chosen = name in explicit or (switched and name in _OPTIMIZER_SETTINGS)
        merged[name] = value if chosen and name != "init" else old
        if name not in explicit:
            continue
        value, old = _effective(name, value, given.optimizer), _effective(name, old, saved.get("optimizer"))
        option = f"`{name}` {_shown(value)}"
        if value == old:
            continue
        if name == "init":
            notes.append(f"{option} is ignored (the weights come from the file)")
        elif name != "epochs":
            notes.append(f"{option} replaces {_shown(old)}{_RESUME_CONSEQUENCES.get(name, '')}")
    if merged["epochs"] != saved.get("epochs", merged["epochs"]) and merged["schedule"] != "constant":
        notes.append(f"`epochs` {merged['epochs']} reshapes the {merged['schedule']} schedule planned for "
                     f"{saved['epochs']} epochs")
    if notes:
        message = f"{source}: options differ from the file's recipe: {'; '.join(notes)}"
        warnings.warn(ParameterWarning(message), stacklevel=2)
    config = TrainConfig(**merged)
    config.check()
    return config


_OPTIMIZER_SETTINGS = ("lr", "momentum", "nesterov", "weight_decay")
_RESUME_CONSEQUENCES = {
    "optimizer": " (fresh moments; its `lr`, `momentum`, `weight_decay`: given or its defaults)",
    "seed": " (a new shuffle and, without a test set, a new validation part that may hold samples "
            "already trained on)",
    "val_split": " (a new validation part that may hold samples already trained on)",
}


def _effective(name: str, value, optimizer: str | None):
    """A setting left to the optimizer's default (None) as the number it stands for."""
    defaults = {"lr": DEFAULT_LR, "weight_decay": DEFAULT_WEIGHT_DECAY}.get(name)
    if value is None and defaults is not None and optimizer in defaults:
        return defaults[optimizer]
    return value


def _shown(value) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return format(value, "g") if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- metrics
def classification_report(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class precision/recall/support and the confusion matrix (rows: true class)."""
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = []
    for i, name in enumerate(class_names):
        predicted, actual = confusion[:, i].sum(), confusion[i].sum()
        per_class.append({"class": name,
                          "precision": float(confusion[i, i] / predicted) if predicted else None,
                          "recall": float(confusion[i, i] / actual) if actual else None,
                          "support": int(actual)})
    accuracy = float((y_true == y_pred).mean()) if len(y_true) else None
    return {"samples": int(len(y_true)), "accuracy": accuracy,
            "per_class": per_class, "confusion_matrix": confusion.tolist(), "class_names": list(class_names)}
