"""Small helpers shared by the image models (GAN, VAE): batch unpacking,
distribution bookkeeping and argument checks."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import tensorflow as tf
from keras import ops


def images_of(data):
    """The images of a batch that may be ``x``, ``(x,)`` or ``(x, y[, w])``."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


def check_first_batch(dataset: tf.data.Dataset, checked: weakref.WeakSet, check: Callable) -> None:
    """Run ``check(first element)`` once per dataset object.

    One batch catches the common mistakes (0..255 pixels, 1-based labels), but
    reading it creates an iterator, tens of ms that repeated ``fit(..., epochs=1)``
    calls on the same dataset need not pay again. A dataset that fails the check
    is not remembered, so it fails every time.
    """
    if dataset in checked:
        return
    for element in dataset.take(1):
        check(element)
    checked.add(dataset)


def replica() -> tuple:
    """``(replica index, number of replicas in sync)``; ``(0, 1)`` without a strategy."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: not inside a replica's step
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def global_batch_size(x):
    """Local batch size times the number of replicas training in sync.

    Per-example losses are summed and divided by this: MirroredStrategy sums
    the replicas' gradients, so a per-replica mean would step too far.
    """
    return ops.shape(x)[0] * replica()[1]


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """``image_shape`` as a tuple of 3 positive ints, or a clear error."""
    try:
        shape = tuple(int(d) for d in image_shape)
    except (TypeError, ValueError):
        raise TypeError(f"image_shape must be (H, W, C) ints, got {image_shape!r}.") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"image_shape must be (H, W, C) with positive ints, got {image_shape!r}.")
    return shape
