"""Helpers shared by the model tests."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def assert_same_update(
    reference: list[np.ndarray], other: list[np.ndarray], floor: float, rtol: float = 0.05, min_moved: int = 1
) -> int:
    """Each weight change in ``other`` matches ``reference`` to ``rtol`` (relative norm).

    Only changes larger than ``floor`` (max abs) in the reference are compared, and
    at least ``min_moved`` of them must be, so a step that did nothing fails.

    Returns:
        How many weights moved.
    """
    moved = 0
    for i, (a, b) in enumerate(zip(reference, other)):
        if np.abs(a).max() > floor:
            moved += 1
            error = np.linalg.norm(a - b) / np.linalg.norm(a)
            assert error < rtol, f"weight {i}: the update differs by {error:.3g} (relative), over rtol={rtol}"
    assert moved >= min_moved, f"only {moved} weights moved by more than {floor} (expected >= {min_moved})"
    return moved


def fixed_noise(z: np.ndarray):
    """A GAN ``noise_fn`` that hands out the first rows of ``z`` at every draw, for hand checks."""
    table = tf.constant(z)
    return lambda shape, seed=None: table[: shape[0]]
