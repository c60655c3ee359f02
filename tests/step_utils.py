"""Helpers shared by the model tests."""

from __future__ import annotations

import numpy as np


def assert_same_update(reference: list[np.ndarray], other: list[np.ndarray], floor: float, rtol: float = 0.05) -> int:
    """Each weight change in ``other`` matches ``reference`` to ``rtol`` (relative norm).

    Only changes larger than ``floor`` (max abs) in the reference are compared.

    Returns:
        How many weights moved, so a caller can check that the step did something.
    """
    moved = 0
    for a, b in zip(reference, other):
        if np.abs(a).max() > floor:
            moved += 1
            assert np.linalg.norm(a - b) < rtol * np.linalg.norm(a)
    return moved
