"""Layers (forward, backward, output shape, parameter count), the spec language, training."""
