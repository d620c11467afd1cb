"""Training speed and accuracy of convcli against PyTorch (CPU, 2 threads), side by side.

    python benchmarks/bench_train.py [--steps 20] [--epochs 8] [--json] [--results DIR | --no-results]

Cases (the issue's): the seeds' small CNN on 1×28×28 inputs and a strided 1-D CNN on
length-40 signals, batch 100, Adam (PyTorch defaults), the same number of steps on the
same batches. Speed is samples per second as a ratio (> 1: convcli faster). Accuracy: both
trained with the same recipe on the same generated data set, test accuracy compared.
PyTorch is needed only here (`pip install torch==2.13.0`); the package never imports it.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Results, add_results_option, have, save  # noqa: E402

CASES = {
    "small-cnn 1x28x28 batch 100": {
        "spec": "Conv2d(1, 8, 5); ReLU(); MaxPool2d(2); Conv2d(8, 16, 3); ReLU(); MaxPool2d(2); Flatten(); "
                "Linear(400, 10)",
        "input": (1, 28, 28),
    },
    "strided-1d-cnn 1x40 batch 100": {
        "spec": "Conv1d(1, 25, 5, stride=2, padding=1); ReLU(); "
                "Conv1d(25, 25, 3, stride=2, padding=1); ReLU(); "
                "Conv1d(25, 25, 3, stride=2, padding=1); ReLU(); Flatten(); Linear(125, 10)",
        "input": (1, 40),
    },
}
BATCH = 100


def templates(shape: tuple[int, ...], rng: np.random.Generator, classes: int = 10) -> np.ndarray:
    """Ten smooth random templates (1-D signals or 2-D images), unit variance."""
    from scipy.ndimage import gaussian_filter

    raw = rng.normal(0, 1, (classes, *shape))
    smooth = np.stack([gaussian_filter(r, sigma=1.5) for r in raw])
    axes = tuple(range(1, smooth.ndim))
    return smooth / smooth.std(axis=axes, keepdims=True)


def noisy_copies(bank: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shifted (±3 on each axis), scaled (0.5–1.5), noisy (σ 1) copies of the templates."""
    y = rng.integers(0, len(bank), count)
    x = np.empty((count, *bank.shape[1:]), np.float32)
    axes = tuple(range(1, bank.ndim - 1 + 1))
    for i, label in enumerate(y):
        shifts = tuple(int(s) for s in rng.integers(-3, 4, len(axes)))
        x[i] = np.roll(bank[label], shifts, axis=tuple(a - 1 for a in axes)) * rng.uniform(0.5, 1.5)
    x += rng.normal(0, 1.0, x.shape).astype(np.float32)
    return x, y.astype(np.int64)


def make_data(case: dict, seed: int = 0):
    rng = np.random.default_rng(seed)
    spatial = case["input"][1:]
    bank = templates(spatial, rng)
    x, y = noisy_copies(bank, 3000, rng)
    x_test, y_test = noisy_copies(bank, 1000, rng)
    return x[:, None], y, x_test[:, None], y_test


# ---------------------------------------------------------------- convcli
class Ours:
    def __init__(self, case: dict, seed: int) -> None:
        from convcli.nn.model import Model, init_network
        from convcli.nn.optim import Optimizer
        from convcli.nn.spec import parse_spec

        self.network = parse_spec(case["spec"], case["input"])
        init_network(self.network, seed)
        self.model = Model(self.network, {"class_names": [str(i) for i in range(10)],
                                          "normalization": {"mean": [0.0], "std": [1.0]}})
        self.optimizer = Optimizer("adam")

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        from convcli.nn import functional as F
        from convcli.nn.model import backward, forward, named_grads, named_params

        logits = forward(self.network, x, training=True)
        loss, cache = F.cross_entropy_forward(logits, y)
        backward(self.network, F.cross_entropy_backward(cache).astype(np.float32))
        self.optimizer.step(named_params(self.network), named_grads(self.network))
        return loss

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.model.logits(x).argmax(axis=1) == y).mean())


def torch_layer(nn, statement: str):
    """``Conv2d(1, 8, 5)`` -> ``nn.Conv2d(1, 8, 5)``, arguments read as literals (never eval)."""
    call = ast.parse(statement.strip(), mode="eval").body
    args = [ast.literal_eval(arg) for arg in call.args]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    return getattr(nn, call.func.id)(*args, **kwargs)


class Theirs:
    def __init__(self, case: dict, seed: int) -> None:
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.model = nn.Sequential(*(torch_layer(nn, text) for text in case["spec"].split(";")))
        self.optimizer = torch.optim.Adam(self.model.parameters())
        self.torch = torch

    def step(self, x, y) -> float:
        self.model.train()
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def accuracy(self, x, y) -> float:
        self.model.eval()
        with self.torch.no_grad():
            return float((self.model(x).argmax(dim=1) == y).float().mean())


def batches(x, y, epochs: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y) - BATCH + 1, BATCH):
            index = order[start:start + BATCH]
            yield x[index], y[index]


def samples_per_second(trainers: dict, x, y, steps: int, converters: dict, rounds: int = 5) -> dict:
    """Best-of-rounds samples/s of each trainer on the same batches; rounds alternate between
    the trainers so a busy machine slows both alike."""
    chunks = {name: [convert(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
                     for i in range(steps)]
              for name, convert in converters.items()}
    best = {name: float("inf") for name in trainers}
    for name, trainer in trainers.items():
        trainer.step(*chunks[name][0])  # warm-up: JIT compile, allocator
    for _ in range(rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for xb, yb in chunks[name]:
                trainer.step(xb, yb)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: steps * BATCH / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per round")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the accuracy comparison")
    parser.add_argument("--json", action="store_true")
    add_results_option(parser)
    args = parser.parse_args()
    if not have("torch"):
        sys.exit("bench_train: PyTorch is not installed (pip install torch==2.13.0)")
    import torch

    torch.set_num_threads(2)

    def as_torch(xb, yb):
        return torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(yb)

    def as_numpy(xb, yb):
        return np.ascontiguousarray(xb), yb

    note = f"batch {BATCH}, Adam, 2 threads; accuracy after {args.epochs} epochs"
    results = Results("bench_train", note=note)
    for title, case in CASES.items():
        x, y, x_test, y_test = make_data(case)
        speed = samples_per_second({"convcli": Ours(case, 0), "pytorch": Theirs(case, 0)}, x, y, args.steps,
                                   {"convcli": as_numpy, "pytorch": as_torch})
        ours_speed, theirs_speed = speed["convcli"], speed["pytorch"]
        ours, theirs = Ours(case, 1), Theirs(case, 1)
        for xb, yb in batches(x, y, args.epochs, seed=2):
            ours.step(xb, yb)
            theirs.step(*as_torch(xb, yb))
        accuracy = {"convcli": ours.accuracy(x_test, y_test),
                    "pytorch": theirs.accuracy(*as_torch(x_test, y_test))}
        result = results.add(title, speedup_vs={"pytorch": ours_speed / theirs_speed},
                             speed_ratio_vs_pytorch=ours_speed / theirs_speed, test_accuracy=accuracy,
                             accuracy_points_vs_pytorch=100 * (accuracy["convcli"] - accuracy["pytorch"]))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{title:<32} speed ratio vs PyTorch(2 threads) {result['speed_ratio_vs_pytorch']:5.2f}x   "
                  f"test accuracy convcli {accuracy['convcli']:.3f} vs PyTorch {accuracy['pytorch']:.3f} "
                  f"({result['accuracy_points_vs_pytorch']:+.1f} points)")
    save(results, args)


if __name__ == "__main__":
    main()
