"""Binarization protocols for MNIST-like images (dynamic for training, fixed for the test set)."""

from __future__ import annotations

import tensorflow as tf

from aigc_tf.images import images_of
from aigc_tf.validation import check_int

__all__ = ["binarize"]


def binarize(dataset: tf.data.Dataset, *, seed: int = 0, dynamic: bool = True) -> tf.data.Dataset:
    """Bernoulli-binarize a dataset of [0, 1] images: pixel = 1 with probability x.

    * ``dynamic=True`` (training): a fresh sample of every image each time the
      dataset is iterated (each epoch). The per-image seeds come from
      ``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`` and feed a
      stateless op, so epochs differ and a run repeats exactly given ``seed`` and
      TensorFlow's global seed (``keras.utils.set_random_seed`` sets it).
    * ``dynamic=False`` (test set): one fixed sample; element i always gets seed
      ``(seed, i)``, so every iteration, run and machine sees the same binary images.

    Apply it **before** ``batch`` so the result does not depend on the batch size
    (it works on batches too; then element i is batch i).

    Args:
        dataset: elements are images ``(..., H, W, C)`` in [0, 1], or tuples whose
            first entry is such images (e.g. ``(image, label)``); the rest pass through.
        seed: integer seed.
        dynamic: fresh sample per epoch (True) or a fixed one (False).

    Returns:
        A dataset with the same structure and float32 images in {0, 1}.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"dataset must be a tf.data.Dataset, got {type(dataset).__name__}.")
    seed = check_int("seed", seed)

    def sample(element, pair_seed):
        images = images_of(element)
        u = tf.random.stateless_uniform(tf.shape(images), seed=pair_seed)
        binary = tf.cast(u < tf.cast(images, tf.float32), tf.float32)
        if isinstance(element, tuple):
            return (binary, *element[1:])
        return binary

    if dynamic:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        return tf.data.Dataset.zip((dataset, seeds)).map(
            lambda element, s: sample(element, s), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.enumerate().map(
        lambda i, element: sample(element, tf.stack([tf.constant(seed, tf.int64), i])),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
