"""Optimizers against their update rules written out by hand (PyTorch's documented algorithms),
and the learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from convcli.nn.optim import Optimizer, scheduled_lr


def run(optimizer: Optimizer, grads: list[np.ndarray], start: np.ndarray) -> np.ndarray:
    param = start.copy()
    for grad in grads:
        optimizer.step({"w": param}, {"w": grad})
    return param


@pytest.fixture
def grads():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(4) for _ in range(5)], rng.standard_normal(4)


def test_adam_defaults_and_rule(grads):
    steps, start = grads
    optimizer = Optimizer("adam")
    defaults = (optimizer.lr, optimizer.betas, optimizer.eps, optimizer.weight_decay)
    assert defaults == (1e-3, (0.9, 0.999), 1e-8, 0)
    p, m, v = start.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(steps, 1):
        g = g + 0.1 * p
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(run(Optimizer("adam", 0.01, weight_decay=0.1), steps, start), p, rtol=1e-12)


def test_adamw_decouples_weight_decay(grads):
    steps, start = grads
    p, m, v = start.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate(steps, 1):
        p = p * (1 - 0.01 * 0.01)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    assert Optimizer("adamw").weight_decay == 0.01
    np.testing.assert_allclose(run(Optimizer("adamw", 0.01), steps, start), p, rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum(grads, nesterov):
    steps, start = grads
    p, buf = start.copy(), None
    for g in steps:
        g = g + 0.01 * p
        buf = g.copy() if buf is None else 0.9 * buf + g
        p = p - 0.1 * (g + 0.9 * buf if nesterov else buf)
    optimizer = Optimizer("sgd", 0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    np.testing.assert_allclose(run(optimizer, steps, start), p, rtol=1e-12)


def test_plain_sgd(grads):
    steps, start = grads
    np.testing.assert_allclose(run(Optimizer("sgd", 0.5), steps, start), start - 0.5 * sum(steps), rtol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "rmsprop"}, "unknown optimizer"), ({"kind": "adam", "lr": 0}, "lr"),
    ({"kind": "adam", "nesterov": True}, "nesterov"), ({"kind": "sgd", "momentum": 1.5}, "momentum"),
    ({"kind": "sgd", "weight_decay": -1}, "weight_decay"),
])
def test_bad_settings_are_named(kwargs, message):
    """By the parameter a Python caller typed (the CLI shows its flag instead)."""
    with pytest.raises(ValueError, match=f"^(unknown )?{message} "):
        Optimizer(**kwargs)


def test_schedules():
    assert [scheduled_lr(0.1, "constant", e, 4) for e in range(4)] == [0.1] * 4
    cosine = [scheduled_lr(0.1, "cosine", e, 4) for e in range(4)]
    assert cosine == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    assert cosine[0] == 0.1 and cosine == sorted(cosine, reverse=True)
    assert [scheduled_lr(1.0, "step", e, 6) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        scheduled_lr(0.1, "linear", 0, 3)
