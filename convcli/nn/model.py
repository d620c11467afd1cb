"""Trained models: a network with its weights, preprocessing and history, and its file.

A model file is one ``.npz`` read with ``allow_pickle=False``: every parameter and buffer as
an array named ``{layer}.{param}`` (``conv1.weight`` is ``(C_out, C_in, kh, kw)``), optimizer
state for ``--resume`` as ``__optim__.{layer}.{param}.{slot}``, and ``__meta__``: a 0-d
unicode array holding JSON (format version, spec, input shape, class names, normalization,
how files are read, training settings and history). Nothing executable is ever loaded.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from convcli.errors import InputError, UsageError, one_of
from convcli.nn.data import ReadOptions, standardize, to_float32
from convcli.nn.spec import Network, parse_spec
from convcli.sizes import FLOAT32_BYTES
from convcli.text import shape_text

FORMAT = "convcli-model"
VERSION = 1
META_KEY = "__meta__"
OPTIM_PREFIX = "__optim__."
INIT_SCHEMES = ("pytorch", "he")


# ---------------------------------------------------------------- the network's trainable state
def check_training_support(network: Network) -> None:
    """Refuse, by name, layers that only ``shapes``/``params`` support (3-D, composite blocks...)."""
    for layer in network.layers:
        if not layer.supports_training:
            raise UsageError(f"layer {layer.name} ({type(layer).__name__}) cannot be trained by convcli; "
                             "it trains Conv1d/2d, ConvTranspose1d/2d, Linear, Max/Avg/Adaptive pooling, "
                             "BatchNorm1d/2d, Dropout, Flatten and activations")


def init_network(network: Network, seed: int, scheme: str = "pytorch", dtype: str = "float32") -> None:
    """Fresh parameters for every layer, from one seeded generator (same seed, same model)."""
    one_of("init", scheme, INIT_SCHEMES)
    check_training_support(network)
    from convcli import budget

    # parameters, their gradients and two optimizer moments, in float32 or float64
    width = np.dtype(dtype).itemsize
    budget.check("memory", 4 * width * (network.num_params + network.num_buffers),
                 f"a network of {network.num_params:,} parameters")
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        layer.init_params(rng, scheme, dtype)


def array_name(layer: str, param: str) -> str:
    """The name of a layer's parameter or buffer in a model file (``conv1.weight``)."""
    return f"{layer}.{param}"


def is_array_name(name: str) -> bool:
    """Whether ``name`` names a stored array (``conv1.weight``) rather than a layer (``conv1``)."""
    return "." in name


def check_batch_memory(network: Network, batch_size: int) -> None:
    """The activations a training step keeps for the backward pass (each layer's input and output,
    and their gradients), within the memory budget, before the first step allocates them."""
    from convcli import budget

    per_sample = sum(math.prod(layer.out_shape) for layer in network.layers) + math.prod(network.input_shape)
    budget.check("memory", 4 * FLOAT32_BYTES * batch_size * per_sample,
                 f"training with batches of {batch_size} (activations of {per_sample:,} values per sample)")


def named_params(network: Network) -> dict[str, np.ndarray]:
    return {array_name(layer.name, k): v for layer in network.layers for k, v in layer.params.items()}


def named_grads(network: Network) -> dict[str, np.ndarray]:
    return {array_name(layer.name, k): v for layer in network.layers for k, v in layer.grads.items()}


def named_buffers(network: Network) -> dict[str, np.ndarray]:
    return {array_name(layer.name, k): v for layer in network.layers for k, v in layer.buffers.items()}


def logit_layers(network: Network) -> list:
    """The layers up to the logits: a trailing Softmax folds into the loss."""
    layers = network.layers
    return layers[:-1] if type(layers[-1]).__name__ == "Softmax" else layers


def forward(network: Network, x: np.ndarray, training: bool) -> np.ndarray:
    for layer in logit_layers(network):
        x = layer.forward(x, training)
    return x


def backward(network: Network, dlogits: np.ndarray) -> None:
    """Fill every layer's ``grads``; the first layer skips its (unused) input gradient."""
    layers = logit_layers(network)
    for index in range(len(layers) - 1, -1, -1):
        dlogits = layers[index].backward(dlogits, input_grad=index > 0)


# ---------------------------------------------------------------- the model
class Model:
    """A trained network with what it needs to predict: ``predict(x)`` gives class probabilities."""

    def __init__(self, network: Network, meta: dict) -> None:
        self.network = network
        self.meta = meta
        self.optimizer_state: dict[str, np.ndarray] = {}

    @property
    def history(self) -> list[dict]:
        return self.meta.setdefault("history", [])

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.network.input_shape)

    @property
    def read_options(self) -> ReadOptions:
        return ReadOptions.from_json(self.meta.get("read", {}))

    @property
    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel (mean, std) of the training data, which every input is standardized with."""
        norm = self.meta["normalization"]
        return np.array(norm["mean"], np.float32), np.array(norm["std"], np.float32)

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw samples -> the standardized (N, *input_shape) float32 batch the network was trained on
        (uint8/uint16 arrays are images: scaled to [0, 1] first, as in training)."""
        if np.asarray(x).dtype.kind not in "biuf":
            raise UsageError(f"samples must be numbers, got dtype {np.asarray(x).dtype}")
        x = to_float32(x)
        per_sample = int(np.prod(self.input_shape))
        if x.ndim < 2:
            raise UsageError(f"samples must come as a batch (N, ...), got shape {shape_text(x.shape)}")
        if len(x) == 0:
            raise UsageError(f"no samples to predict (a batch of shape {shape_text(x.shape)})")
        bad = x.size - np.count_nonzero(np.isfinite(x))
        if bad:  # a NaN sample would get a label anyway (argmax of NaN probabilities is 0)
            raise InputError(f"samples hold {bad} non-finite value(s) (NaN or inf); no prediction made")
        if x.shape[1:] != self.input_shape:
            if int(np.prod(x.shape[1:])) != per_sample:
                raise UsageError(f"samples of shape {shape_text(x.shape[1:])} do not fit the model's input "
                                 f"{shape_text(self.input_shape)}")
            x = x.reshape(len(x), *self.input_shape)
        return standardize(x, *self.normalization)

    def layer_index(self, name: str) -> int:
        """Position of the layer called ``name`` (UsageError naming the layers when there is none)."""
        from convcli.errors import did_you_mean

        names = [layer.name for layer in self.network.layers]
        if name not in names:
            raise UsageError(f"the model has no layer {name!r}{did_you_mean(name, names)}; layers: "
                             f"{', '.join(names)}")
        return names.index(name)

    def conform(self, sample: np.ndarray, kind: str, sample_rate: int | None = None) -> np.ndarray:
        """One decoded sample made to agree with the model's reading rules, as ``predict`` reads files
        (images: gray, size; audio: sample rate, mono, length); arrays are taken as they are."""
        from convcli.nn.data import conform_audio, conform_image

        sample = np.asarray(sample, dtype=np.float32)
        if kind == "image":
            return conform_image(sample if sample.ndim == 3 else sample[None], self.read_options)
        if kind == "audio":
            return conform_audio(sample, sample_rate, self.read_options)
        if sample.ndim == len(self.input_shape) - 1:
            sample = sample[None]  # (H, W) or (L,): one channel
        return sample

    def activation(self, sample: np.ndarray, layer: str) -> np.ndarray:
        """What the network computes at ``layer`` for one conformed sample (C, ...): standardized with
        the stored mean/std, then every layer up to and including ``layer`` in evaluation mode; the
        same operations as ``predict``. Convolution and pooling prefixes take any spatial size."""
        mean, std = self.normalization
        if sample.ndim != len(self.input_shape) or sample.shape[0] != len(mean):
            raise UsageError(f"the model takes samples of {len(mean)} channel(s) shaped like "
                             f"{shape_text(self.input_shape)}; this input is {shape_text(sample.shape)}")
        prefix = self.network.layers[: self.layer_index(layer) + 1]
        _check_activation_memory(prefix, sample.shape, layer)
        x = standardize(sample[None], mean, std)
        for current in prefix:
            try:
                x = current.forward(x, False)
            except (ValueError, UsageError) as error:
                raise UsageError(f"layer {current.name} ({current.source}) cannot take the input at this "
                                 f"size ({shape_text(x.shape[1:])}): {error}") from error
        return x[0]

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits of prepared samples, evaluation mode (running BatchNorm stats, no dropout)."""
        check_batch_memory(self.network, min(len(x), batch_size))
        parts = [forward(self.network, x[i:i + batch_size], training=False)
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) of raw samples."""
        from convcli.nn.functional import softmax

        probabilities = softmax(self.logits(self.prepare(x)))
        if not np.all(np.isfinite(probabilities)):
            raise InputError("the model's output is not finite for these samples (values far outside the "
                             "training data's range?); no prediction made")
        return probabilities

    def save(self, path: str | Path) -> None:
        save_model(self, path)


def _check_activation_memory(layers: list, shape: tuple[int, ...], layer: str) -> None:
    """The activations of ``layers`` for one sample of ``shape``, within the memory budget, before any
    is computed (an input far larger than the training images makes large maps)."""
    from convcli import budget

    total = math.prod(shape)
    for current in layers:
        try:
            shape = current.output_shape(shape)
        except ValueError as error:
            raise UsageError(f"layer {current.name} ({current.source}) cannot take the input at this size "
                             f"({shape_text(shape)}): {error}") from error
        total += math.prod(shape)
    budget.check("memory", 2 * FLOAT32_BYTES * total, f"the activations up to {layer} for this input")


def save_model(model: Model, path: str | Path) -> None:
    """Write atomically (a temporary file in the target folder, renamed over the target when complete);
    the caller decides about replacing an existing file."""
    path = Path(path)
    arrays = {**named_params(model.network), **named_buffers(model.network)}
    arrays.update({OPTIM_PREFIX + k: v for k, v in model.optimizer_state.items()})
    meta = {**model.meta, "format": FORMAT, "version": VERSION, "spec": model.network.spec,
            "input_shape": list(model.input_shape)}
    arrays[META_KEY] = np.array(json.dumps(meta))
    from convcli.io.files import atomic_output

    with atomic_output(path, force=True) as temp, open(temp, "wb") as stream:
        np.savez(stream, **arrays)


# the __meta__ JSON (spec, class names, history): far more than any real model's
MAX_META_BYTES = 16 << 20
# stored arrays may be float64: a parameter can take 8 bytes on disk
STORED_BYTES = 8


def read_array(path: str | Path, name: str) -> np.ndarray:
    """One named array of a model file (``conv1.weight``), read alone and within the memory budget;
    UsageError listing the names when there is none such."""
    from convcli import budget
    from convcli.errors import did_you_mean
    from convcli.io.arrays import npz_member

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(member.removesuffix(".npy") for member in archive.namelist()
                           if not member.startswith((META_KEY, OPTIM_PREFIX)))
            if name not in names:
                raise UsageError(f"{path}: no array {name!r}{did_you_mean(name, names)}; arrays: "
                                 f"{', '.join(names) or 'none'}")
            return npz_member(archive, name, str(path), max_bytes=budget.limit("memory"))
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(f"{path}: not a model file ({' '.join(str(error).split())})") from error


def load_model(path: str | Path) -> Model:
    """Read a model file written by ``convcli train`` (never unpickles; malformed files are refused).

    Only the arrays the spec names are read, each after its declared size has been compared with
    the spec's (so a zip bomb or a spec of billions of parameters costs nothing), and the model's
    size is checked against the memory budget before any parameter is allocated. Weights must be
    finite, class names must match the network's outputs, and the normalization must be usable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as archive:
            meta = _read_meta(archive, path)
            network = _network(meta, path)
            expected = {**network.param_shapes(), **network.buffer_shapes()}
            from convcli import budget

            total = sum(math.prod(shape) for shape in expected.values())
            budget.check("memory", 4 * total, f"{path}: loading a model of {total:,} values")
            arrays = {name: _stored(archive, name, shape, path) for name, shape in expected.items()}
            optimizer_state = _optimizer_state(archive, network.param_shapes(), path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(f"{path}: not a convcli model ({' '.join(str(error).split())})") from error
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        raise InputError(f"{path}: not a convcli model ({' '.join(str(error).split())})") from error
    _check_meta(meta, network, path)
    init_network(network, seed=0, dtype="float32")
    for name, value in {**named_params(network), **named_buffers(network)}.items():
        value[...] = arrays[name]
    model = Model(network, meta)
    model.optimizer_state = optimizer_state
    return model


def _read_meta(archive: zipfile.ZipFile, path: Path) -> dict:
    from convcli.io.arrays import npz_member

    try:
        raw = npz_member(archive, META_KEY, str(path), max_bytes=MAX_META_BYTES)
    except KeyError:
        raise InputError(f"{path}: not a convcli model (no {META_KEY} JSON string)") from None
    if raw.shape != () or raw.dtype.kind != "U":
        raise InputError(f"{path}: not a convcli model (no {META_KEY} JSON string)")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: malformed model metadata ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise InputError(f"{path}: not a convcli model (format is {found!r})")
    if meta.get("version") != VERSION:
        raise InputError(f"{path}: model format version {meta.get('version')!r} is not supported "
                         f"(this convcli reads version {VERSION})")
    return meta


def _network(meta: dict, path: Path) -> Network:
    try:
        network = parse_spec(meta["spec"], meta["input_shape"])
        for key in ("class_names", "normalization"):
            meta[key]  # noqa: B018 - presence check
    except (KeyError, ValueError, TypeError) as error:
        raise InputError(f"{path}: malformed model ({error})") from error
    check_training_support(network)
    return network


def _stored(archive: zipfile.ZipFile, name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """One parameter or buffer: present, of the spec's shape, numeric and finite."""
    from convcli.io.arrays import npz_member

    try:
        stored = npz_member(archive, name, str(path), max_bytes=STORED_BYTES * max(1, math.prod(shape)))
    except KeyError:
        raise InputError(f"{path}: malformed model: array {name!r} is missing") from None
    except InputError as error:
        raise InputError(f"{path}: malformed model: {name} does not match the spec's {shape} "
                         f"({error})") from None
    if stored.shape != tuple(shape):
        raise InputError(f"{path}: malformed model: {name} has shape {shape_text(stored.shape)}, "
                         f"the spec says {shape_text(shape)}")
    if stored.dtype.kind not in "biuf":
        raise InputError(f"{path}: malformed model: {name} has dtype {stored.dtype}, not numbers")
    bad = np.size(stored) - np.count_nonzero(np.isfinite(stored))
    if bad:
        raise InputError(f"{path}: malformed model: {name} holds {bad} non-finite value(s) (NaN or inf)")
    return stored


def _optimizer_state(archive: zipfile.ZipFile, params: dict, path: Path) -> dict[str, np.ndarray]:
    """The saved optimizer moments: only those of the spec's parameters, each of its shape."""
    state = {}
    for member in archive.namelist():
        name = member.removesuffix(".npy")
        if not name.startswith(OPTIM_PREFIX):
            continue
        key = name[len(OPTIM_PREFIX):]
        param = key.rsplit(".", 1)[0]
        if param in params:
            state[key] = _stored(archive, name, params[param], path)
    return state


def _check_meta(meta: dict, network: Network, path: Path) -> None:
    """Class names one per output, a normalization of one finite mean and positive std per channel."""
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path}: malformed model: class_names must be a list of strings")
    outputs = network.output_shape[-1] if len(network.output_shape) == 1 else None
    if outputs != len(names):
        raise InputError(f"{path}: malformed model: {len(names)} class names for a network with output "
                         f"{shape_text(network.output_shape)}")
    norm = meta["normalization"]
    channels = network.input_shape[0]  # standardization is per index of axis 1 of the batch
    try:
        mean, std = (np.asarray(norm[key], dtype=np.float64) for key in ("mean", "std"))
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: malformed model: normalization needs mean and std lists") from None
    for key, values in (("mean", mean), ("std", std)):
        if values.shape != (channels,) or not np.all(np.isfinite(values)):
            raise InputError(f"{path}: malformed model: normalization {key} must be {channels} finite "
                             f"value(s), got {values.tolist()}")
    if np.any(std <= 0):
        raise InputError(f"{path}: malformed model: normalization std must be > 0, got {std.tolist()}")
