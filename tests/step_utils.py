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


def counting_dataset(images, labels=None):
    """A dataset that counts how often it is iterated (each iteration calls the generator)."""
    reads = []

    def gen():
        reads.append(1)
        yield from zip(images, labels) if labels is not None else images

    spec = tf.TensorSpec((None, *images.shape[2:]), tf.float32)
    if labels is not None:
        spec = (spec, tf.TensorSpec((None,), tf.int64))
    dataset = tf.data.Dataset.from_generator(gen, output_signature=spec)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(images))), reads


#: Constructor arguments every image model rejects alike: (kwargs, exception, message).
BAD_IMAGE_MODEL_ARGUMENTS = [
    (dict(latent_dim=0), ValueError, "latent_dim must be >= 1, got 0"),
    (dict(latent_dim=-3), ValueError, "latent_dim must be >= 1"),
    (dict(latent_dim=2.5), TypeError, "latent_dim must be an int"),
    (dict(image_shape=(28, 28)), ValueError, "image_shape must have 3 entries"),
    (dict(image_shape=(30, 30, 1)), ValueError, "divisible by 4"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
]
