"""Optimizers (PyTorch's update rules and defaults) and learning-rate schedules.

Parameters are named arrays updated in place; the state (moments, step count) is a dict of
named arrays so a model file can carry it for ``--resume``.
"""

from __future__ import annotations

import math

import numpy as np

from convcli.errors import UsageError, one_of

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.01}
DEFAULT_WEIGHT_DECAY = {"adam": 0.0, "adamw": 0.01, "sgd": 0.0}


class Optimizer:
    """One update rule over named parameters: ``step(params, grads)`` updates ``params`` in place."""

    def __init__(self, kind: str, lr: float | None = None, *, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float | None = None, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        one_of("optimizer", kind, OPTIMIZERS)
        lr = DEFAULT_LR[kind] if lr is None else lr
        weight_decay = DEFAULT_WEIGHT_DECAY[kind] if weight_decay is None else weight_decay
        if not 0 < lr < math.inf:  # NaN fails every comparison
            raise UsageError(f"`lr` must be a finite number > 0, got {lr}")
        if not 0 <= weight_decay < math.inf:
            raise UsageError(f"`weight_decay` must be a finite number >= 0, got {weight_decay}")
        if not 0 <= momentum < 1:
            raise UsageError(f"`momentum` must be in [0, 1), got {momentum}")
        if nesterov and (kind != "sgd" or momentum == 0):
            raise UsageError("`nesterov` needs `optimizer` sgd with a `momentum` > 0")
        self.kind, self.lr, self.base_lr = kind, lr, lr
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.betas, self.eps = betas, eps
        self.state: dict[str, np.ndarray] = {}
        self.steps = 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.steps += 1
        for name, param in params.items():
            grad = grads[name]
            if self.kind == "adamw":
                param *= 1 - self.lr * self.weight_decay   # decoupled decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * param      # L2, as torch's adam/sgd
            if self.kind == "sgd":
                self._sgd(name, param, grad)
            else:
                self._adam(name, param, grad)

    def _sgd(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        if self.momentum:
            buf = self.state.get(f"{name}.momentum")
            if buf is None:
                buf = self.state[f"{name}.momentum"] = grad.copy()
            else:
                buf *= self.momentum
                buf += grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        param -= (self.lr * grad).astype(param.dtype, copy=False)

    def _adam(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        beta1, beta2 = self.betas
        m = self.state.setdefault(f"{name}.exp_avg", np.zeros_like(param))
        v = self.state.setdefault(f"{name}.exp_avg_sq", np.zeros_like(param))
        m *= beta1
        m += (1 - beta1) * grad
        v *= beta2
        v += (1 - beta2) * grad * grad
        correction1 = 1 - beta1 ** self.steps
        correction2 = 1 - beta2 ** self.steps
        denom = np.sqrt(v) / math.sqrt(correction2) + self.eps
        param -= ((self.lr / correction1) * m / denom).astype(param.dtype, copy=False)


def scheduled_lr(base_lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """Learning rate for 0-based ``epoch`` of ``epochs``: constant, cosine annealing to 0
    (CosineAnnealingLR with T_max=epochs) or step (×0.1 every third of the run, StepLR)."""
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return base_lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if schedule == "step":
        step_size = max(1, epochs // 3)
        return base_lr * 0.1 ** (epoch // step_size)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
