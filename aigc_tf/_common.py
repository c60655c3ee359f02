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


def batch_rows(x) -> tuple:
    """``(global batch size, this replica's first row in the global batch)`` of ``x``.

    Without a strategy this is ``(batch, 0)``. Under ``MirroredStrategy`` each
    replica holds a slice of the global batch, and the slices can differ in size
    (a last batch of 7 on 2 replicas arrives as 4 + 3), so the local sizes are
    gathered across replicas instead of assumed equal. Per-example losses are
    summed and divided by the global size (the replicas' gradients are summed),
    and noise is drawn for the whole global batch with each replica keeping its
    own rows, so a multi-device step equals the single-device step.
    """
    local = ops.shape(x)[0]
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local, 0
    sizes = context.all_gather(ops.reshape(ops.cast(local, "int32"), (1,)), axis=0)  # (replicas,)
    before = ops.arange(context.num_replicas_in_sync) < context.replica_id_in_sync_group
    return ops.sum(sizes), ops.sum(ops.where(before, sizes, 0))


def check_image_shape(image_shape) -> tuple[int, int, int]:
    """``image_shape`` as a tuple of 3 positive ints, or a clear error."""
    try:
        shape = tuple(int(d) for d in image_shape)
    except (TypeError, ValueError):
        raise TypeError(f"image_shape must be (H, W, C) ints, got {image_shape!r}.") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(f"image_shape must be (H, W, C) with positive ints, got {image_shape!r}.")
    return shape
