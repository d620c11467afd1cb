"""Central finite differences, the independent reference for every backward pass in the tests."""

import numpy as np


def central_difference(f, flat: np.ndarray, i: int, eps: float = 1e-6) -> float:
    """d f() / d flat[i] by central differences; ``flat`` is a view into f's input, restored after."""
    old = flat[i]
    flat[i] = old + eps
    up = f()
    flat[i] = old - eps
    down = f()
    flat[i] = old
    return (up - down) / (2 * eps)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of x (mutated in place)."""
    flat = x.reshape(-1)
    return np.array([central_difference(f, flat, i, eps) for i in range(flat.size)]).reshape(x.shape)
