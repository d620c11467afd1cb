"""The training loop, the choice of network for a data set, and evaluation metrics.

Minibatch SGD-family training of a :class:`~convcli.nn.spec.Network` with softmax
cross-entropy. Every source of randomness is derived from ``seed`` and the epoch number
(initialization, shuffling, dropout), so two runs with one seed give identical models and
``--resume`` continues exactly where a run stopped: the model file records the recipe
(:class:`TrainConfig`), and :func:`resume_config` continues with it unless told otherwise.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convcli.errors import ConvcliError, ExitStatus, UsageError
from convcli.nn import functional as F
from convcli.nn.model import Model, backward, check_batch_memory, forward, named_grads, named_params
from convcli.nn.optim import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, OPTIMIZERS, SCHEDULES, Optimizer, scheduled_lr
from convcli.nn.spec import Network, parse_spec, split_statements
from convcli.process import collect_cycles


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
        if self.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown --optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown --schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        self.make_optimizer()  # --lr, --momentum, --weight-decay: refused before any data is read

    def make_optimizer(self) -> Optimizer:
        try:
            return Optimizer(self.optimizer, self.lr, momentum=self.momentum, nesterov=self.nesterov,
                             weight_decay=self.weight_decay)
        except ValueError as error:
            raise UsageError(str(error)) from error

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

        return load_model(path).network.spec, path
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
            raise UsageError(f"no default network for samples of shape {_text(sample_shape)}: give --model")
        spec = default_spec(sample_shape, classes)
        network = parse_spec(spec, sample_shape)
    else:
        declared = _declared_input(spec)
        if declared is not None:
            if math.prod(declared) != math.prod(sample_shape):
                raise UsageError(f"the spec's Input({', '.join(map(str, declared))}) does not fit samples of "
                                 f"shape {_text(sample_shape)}")
            network = parse_spec(spec)
        else:
            ndim = _first_ndim(spec)
            if ndim is not None and len(sample_shape) == ndim:
                sample_shape = (1, *sample_shape)
            network = parse_spec(spec, sample_shape)
    outputs = network.output_shape
    if outputs != (classes,):
        raise UsageError(f"the network gives outputs of shape {_text(outputs)} but the data has {classes} "
                         f"classes: end the spec with Linear(..., {classes})")
    return network


def _looks_like_image(shape: tuple[int, ...]) -> bool:
    """(A, B) samples without a spec: gray images (H, W), unless A ≤ 2 (mono/stereo signals (C, L))."""
    return shape[0] > 2


def _declared_input(spec: str) -> tuple[int, ...] | None:
    from convcli.nn.spec import _input_statement

    statements = split_statements(spec)
    return _input_statement(statements[0]) if statements else None


def _text(shape) -> str:
    return "x".join(str(s) for s in shape)


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
    """(mean loss, accuracy) of prepared samples in evaluation mode."""
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
    # overflow shows up as a non-finite loss, reported below with its step: no numpy warnings
    with np.errstate(over="ignore", invalid="ignore"):
        return _fit(model, x, y, validation, config, start_epoch, optimizer, on_step, on_epoch)


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
                                    f"lower --lr (now {optimizer.lr:g})")
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
        option = f"--{name.replace('_', '-')} {_shown(value)}"
        if value == old:
            continue
        if name == "init":
            notes.append(f"{option} is ignored (the weights come from the file)")
        elif name != "epochs":
            notes.append(f"{option} replaces {_shown(old)}{_RESUME_CONSEQUENCES.get(name, '')}")
    if merged["epochs"] != saved.get("epochs", merged["epochs"]) and merged["schedule"] != "constant":
        notes.append(f"--epochs {merged['epochs']} reshapes the {merged['schedule']} schedule planned for "
                     f"{saved['epochs']} epochs")
    if notes:
        warnings.warn(f"{source}: options differ from the file's recipe: {'; '.join(notes)}", UserWarning,
                      stacklevel=2)
    config = TrainConfig(**merged)
    config.check()
    return config


_OPTIMIZER_SETTINGS = ("lr", "momentum", "nesterov", "weight_decay")
_RESUME_CONSEQUENCES = {
    "optimizer": " (fresh moments; its --lr, --momentum, --weight-decay: given or its defaults)",
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
