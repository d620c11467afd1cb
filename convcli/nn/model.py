"""Trained models: a network with its weights, preprocessing and history, and its file.

A model file is one ``.npz`` read with ``allow_pickle=False``: every parameter and buffer as
an array named ``{layer}.{param}`` (``conv1.weight`` is ``(C_out, C_in, kh, kw)``), optimizer
state for ``--resume`` as ``__optim__.{layer}.{param}.{slot}``, and ``__meta__``: a 0-d
unicode array holding JSON (format version, spec, input shape, class names, normalization,
how files are read, training settings and history). Nothing executable is ever loaded.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from convcli.errors import InputError, UsageError
from convcli.nn.data import ReadOptions, standardize, to_float32
from convcli.nn.spec import Network, parse_spec

FORMAT = "convcli-model"
VERSION = 1
META_KEY = "__meta__"
OPTIM_PREFIX = "__optim__."
INIT_SCHEMES = ("pytorch", "he")


# ---------------------------------------------------------------- the network's trainable state
def check_trainable(network: Network) -> None:
    """Refuse, by name, layers that only ``shapes``/``params`` support (3-D, composite blocks...)."""
    for layer in network.layers:
        if not layer.trainable:
            raise UsageError(f"layer {layer.name} ({type(layer).__name__}) cannot be trained by convcli; "
                             "trainable: Conv1d/2d, ConvTranspose1d/2d, Linear, Max/Avg/Adaptive pooling, "
                             "BatchNorm1d/2d, Dropout, Flatten and activations")


def init_network(network: Network, seed: int, scheme: str = "pytorch", dtype: str = "float32") -> None:
    """Fresh parameters for every layer, from one seeded generator (same seed, same model)."""
    if scheme not in INIT_SCHEMES:
        raise UsageError(f"unknown --init {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    check_trainable(network)
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        layer.init_params(rng, scheme, dtype)


def array_name(layer: str, param: str) -> str:
    """The name of a layer's parameter or buffer in a model file (``conv1.weight``)."""
    return f"{layer}.{param}"


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

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw samples -> the standardized (N, *input_shape) float32 batch the network was trained on
        (uint8/uint16 arrays are images: scaled to [0, 1] first, as in training)."""
        x = to_float32(x)
        per_sample = int(np.prod(self.input_shape))
        if x.ndim < 2:
            raise UsageError(f"samples must come as a batch (N, ...), got shape {_text(x.shape)}")
        if x.shape[1:] != self.input_shape:
            if int(np.prod(x.shape[1:])) != per_sample:
                raise UsageError(f"samples of shape {_text(x.shape[1:])} do not fit the model's input "
                                 f"{_text(self.input_shape)}")
            x = x.reshape(len(x), *self.input_shape)
        norm = self.meta["normalization"]
        return standardize(x, np.array(norm["mean"], np.float32), np.array(norm["std"], np.float32))

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
        norm = self.meta["normalization"]
        mean, std = np.array(norm["mean"], np.float32), np.array(norm["std"], np.float32)
        if sample.ndim != len(self.input_shape) or sample.shape[0] != len(mean):
            raise UsageError(f"the model takes samples of {len(mean)} channel(s) shaped like "
                             f"{_text(self.input_shape)}; this input is {_text(sample.shape)}")
        x = standardize(sample[None], mean, std)
        for current in self.network.layers[: self.layer_index(layer) + 1]:
            try:
                x = current.forward(x, False)
            except (ValueError, UsageError) as error:
                raise UsageError(f"layer {current.name} ({current.source}) cannot take the input at this "
                                 f"size ({_text(x.shape[1:])}): {error}") from error
        return x[0]

    def logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Logits of prepared samples, evaluation mode (running BatchNorm stats, no dropout)."""
        parts = [forward(self.network, x[i:i + batch_size], training=False)
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) of raw samples."""
        from convcli.nn.functional import softmax

        return softmax(self.logits(self.prepare(x)))

    def save(self, path: str | Path) -> None:
        save_model(self, path)


def _text(shape) -> str:
    return "x".join(str(s) for s in shape)


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


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise InputError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise InputError(f"{path}: not a convcli model (a model is an .npz archive)")
            arrays = {key: data[key] for key in data.files}
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise InputError(f"{path}: refused: the file needs pickle to load, and convcli never unpickles "
                             "(a convcli model holds plain arrays)") from error
        raise InputError(f"{path}: not a convcli model ({' '.join(str(error).split())})") from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"{path}: not a convcli model ({' '.join(str(error).split())})") from error
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # numpy hands back raw bytes for a member that is no .npy
            raise InputError(f"{path}: malformed model: member {key!r} is not an array")
    return arrays


def read_array(path: str | Path, name: str) -> np.ndarray:
    """One named array of a model file (``conv1.weight``); UsageError listing the names otherwise."""
    from convcli.errors import did_you_mean

    arrays = {k: v for k, v in _read_arrays(Path(path)).items()
              if k != META_KEY and not k.startswith(OPTIM_PREFIX)}
    if name not in arrays:
        raise UsageError(f"{path}: no array {name!r}{did_you_mean(name, arrays)}; arrays: "
                         f"{', '.join(sorted(arrays)) or 'none'}")
    return arrays[name]


def load_model(path: str | Path) -> Model:
    """Read a model file written by ``convcli train`` (never unpickles; malformed files are refused)."""
    path = Path(path)
    arrays = _read_arrays(path)
    raw = arrays.pop(META_KEY, None)
    if raw is None or raw.shape != () or raw.dtype.kind != "U":
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
    try:
        network = parse_spec(meta["spec"], meta["input_shape"])
        for key in ("class_names", "normalization"):
            meta[key]  # noqa: B018 - presence check
    except (KeyError, ValueError, TypeError) as error:
        raise InputError(f"{path}: malformed model ({error})") from error
    init_network(network, seed=0, dtype="float32")
    expected = {**named_params(network), **named_buffers(network)}
    for name, value in expected.items():
        stored = arrays.get(name)
        if stored is None:
            raise InputError(f"{path}: malformed model: array {name!r} is missing")
        if stored.shape != value.shape:
            raise InputError(f"{path}: malformed model: {name} has shape {stored.shape}, the spec says "
                             f"{value.shape}")
        value[...] = stored
    model = Model(network, meta)
    model.optimizer_state = {k[len(OPTIM_PREFIX):]: v for k, v in arrays.items()
                             if k.startswith(OPTIM_PREFIX)}
    return model
