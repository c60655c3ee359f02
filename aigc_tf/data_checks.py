"""Training data checked batch by batch, as it streams into ``fit``.

A bad value in a late batch (a NaN pixel, an image in 0..255 among [0, 1] ones, a
token id outside the vocabulary) used to train a model to NaN without a word, or
fail deep inside TensorFlow. :class:`CheckedFit` makes every model's ``fit`` check
each batch inside the ``tf.data`` pipeline (outside the compiled step, so with XLA
too) and stop at the first bad one with an error naming the batch; NumPy data are
checked whole before training.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from aigc_tf.images import images_of
from aigc_tf.validation import check_int

__all__ = [
    "NONNEGATIVE_WARNING_AFTER",
    "CheckedFit",
    "batch_labels",
    "check_label_spec",
    "checked_ids",
    "checked_labels",
    "checked_pixels",
    "too_long",
    "warn_unit_range",
]


def _with_check(dataset: tf.data.Dataset, check) -> tf.data.Dataset:
    """``dataset`` whose element ``b`` passes through ``check(b, element)`` (an assert op) first."""

    def checked(index, element):
        with tf.control_dependencies([check(index, element)]):
            return tf.nest.map_structure(tf.identity, element)

    return dataset.enumerate().map(checked)  # sequential: the batches keep their order


#: Batches read before :func:`checked_pixels` warns that no pixel went below 0 (fewer if an epoch is shorter).
NONNEGATIVE_WARNING_AFTER = 100


def warn_unit_range(name: str, value_range: tuple[float, float]) -> None:
    """The warning for [0, 1] images given to a model whose pixels lie in ``value_range`` (low < 0)."""
    low, high = value_range
    warnings.warn(
        f"{name}: no pixel is below 0, but the model works in [{low:g}, {high:g}]: the images look like "
        f"[0, 1] ones, so the model learns a grey background. Load them with value_range=({low:g}, {high:g}).",
        UserWarning,
        stacklevel=3,
    )


def _warn_if_never_negative(dataset: tf.data.Dataset, value_range, name: str) -> tf.data.Dataset:
    """Warn (a Python ``UserWarning``, once) if the first batches never go below 0."""
    cardinality = int(dataset.cardinality())
    after = NONNEGATIVE_WARNING_AFTER if cardinality <= 0 else min(cardinality, NONNEGATIVE_WARNING_AFTER)

    warned = []  # once for this dataset, not once per epoch

    def warn():
        if not warned:
            warned.append(True)
            warn_unit_range(name, value_range)
        return np.int8(0)

    def step(state, element):
        index, seen_negative = state
        seen_negative = tf.logical_or(seen_negative, tf.reduce_min(tf.cast(images_of(element), tf.float32)) < 0)
        report = tf.logical_and(index == after - 1, tf.logical_not(seen_negative))
        done = tf.cond(report, lambda: tf.py_function(warn, [], tf.int8), lambda: tf.constant(0, tf.int8))
        with tf.control_dependencies([done]):
            element = tf.nest.map_structure(tf.identity, element)
        return (index + 1, seen_negative), element

    return dataset.scan((tf.constant(0, tf.int64), tf.constant(False)), step)


def checked_pixels(dataset: tf.data.Dataset, value_range: tuple[float, float], name: str = "x") -> tf.data.Dataset:
    """``dataset`` (images, or ``(images, labels, ...)``) with every batch's pixels checked.

    For a model whose range goes below 0 (a tanh generator's [-1, 1]) it also warns
    once when the first :data:`NONNEGATIVE_WARNING_AFTER` batches (or the first
    epoch, if shorter) hold no negative pixel: [0, 1] images are *in* range, so
    they would train without an error — and wrongly.

    Raises (when the bad batch is read, i.e. during ``fit``):
        tf.errors.InvalidArgumentError: naming the batch (counted from 0), the range and
            the batch's min and max, for a pixel outside ``value_range`` or not finite.
    """
    low, high = (float(v) for v in value_range)
    if low < 0:
        dataset = _warn_if_never_negative(dataset, (low, high), name)

    def check(index, element):
        x = tf.cast(images_of(element), tf.float32)
        lo, hi = tf.reduce_min(x), tf.reduce_max(x)
        ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(x)), tf.logical_and(lo >= low, hi <= high))
        message = f"{name}: batch (counted from 0)"
        detail = f"has pixel values outside [{low:g}, {high:g}] or not finite (NaN, inf); its min and max:"
        return tf.debugging.Assert(ok, [message, index, detail, lo, hi], summarize=4)

    return _with_check(dataset, check)


def check_label_spec(dataset: tf.data.Dataset, num_classes: int, name: str = "x") -> None:
    """Refuse a dataset whose labels are not one integer class id per image (one-hot, floats), from its spec.

    Raises:
        TypeError: for labels that are not integers.
        ValueError: for labels with a trailing axis other than 1 (one-hot ones are named).
    """
    spec = dataset.element_spec
    if not isinstance(spec, (tuple, list)) or len(spec) < 2:
        return
    labels = spec[1]
    if not labels.dtype.is_integer:
        raise TypeError(f"{name}: labels must be integer class ids, got dtype {labels.dtype.name}.")
    if labels.shape.rank is not None and labels.shape.rank > 1 and labels.shape[-1] != 1:
        hint = (
            " They look one-hot: map them with tf.argmax(labels, axis=-1)." if labels.shape[-1] == num_classes else ""
        )
        raise ValueError(f"{name}: labels must be one class id per image, got batches shaped {labels.shape}.{hint}")


def checked_labels(dataset: tf.data.Dataset, num_classes: int, name: str = "x") -> tf.data.Dataset:
    """``dataset`` of ``(images, labels, ...)`` with every batch's labels checked to lie in ``[0, num_classes)``.

    The check runs in ``tf.data``, outside the compiled step, so it holds under XLA too
    (which drops graph assertions and would clamp an embedding lookup).

    Raises (when the bad batch is read):
        tf.errors.InvalidArgumentError: naming the range.
    """
    message = f"{name}: labels must lie in [0, {num_classes}) (num_classes); a batch holds one outside it."

    def guard(images, labels, *rest):
        checks = [
            tf.debugging.assert_non_negative(labels, message=message),
            tf.debugging.assert_less(labels, tf.cast(num_classes, labels.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return (images, tf.identity(labels), *rest)

    return dataset.map(guard)


def batch_labels(data, num_classes: int, owner: str):
    """The labels of a training batch ``(images, labels, ...)``, checked in the graph to lie in [0, num_classes).

    A label outside the range fails the step with an ``InvalidArgumentError``, except
    under XLA, which drops graph assertions: :func:`checked_labels` guards a dataset in
    its input pipeline, outside the compiled step.

    Raises:
        ValueError: if the batch holds images only (``owner`` names the model).
    """
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise ValueError(
            f"{owner} needs labels: train on (images, labels) batches "
            "(fit(images, labels) or a dataset of pairs); got images only."
        )
    labels = tf.reshape(tf.cast(data[1], tf.int32), (-1,))
    message = f"labels must lie in [0, {num_classes}) (num_classes); a batch holds one outside it."
    checks = [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, num_classes, message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def too_long(name: str, length: int, max_length: int) -> str:
    """The error for sequences of ``length`` tokens given to a model whose context is ``max_length``."""
    return (
        f"{name}: sequences of {length} tokens, but the model reads at most {max_length} (its context); "
        "cut shorter windows."
    )


def checked_ids(
    dataset: tf.data.Dataset, vocab_size: int, name: str = "x", *, max_length: int | None = None
) -> tf.data.Dataset:
    """``dataset`` of ``ids`` or ``(ids, targets)`` batches with every id checked to lie in ``[0, vocab_size)``
    and, with ``max_length``, every sequence (axis 1) checked to be at most that long."""
    vocab_size = check_int("vocab_size", vocab_size, minimum=1)
    if max_length is not None:
        max_length = check_int("max_length", max_length, minimum=1)
        length = dataset.element_spec
        length = (length[0] if isinstance(length, (tuple, list)) else length).shape
        if length.rank is not None and length.rank >= 2 and length[1] is not None and length[1] > max_length:
            raise ValueError(too_long(name, length[1], max_length))

    def check(index, element):
        parts = element if isinstance(element, (tuple, list)) else (element,)
        ids = [tf.cast(p, tf.int64) for p in parts[:2] if p.dtype.is_integer]
        lo = tf.reduce_min([tf.reduce_min(p) for p in ids]) if ids else tf.constant(0, tf.int64)
        hi = tf.reduce_max([tf.reduce_max(p) for p in ids]) if ids else tf.constant(0, tf.int64)
        ok = tf.logical_and(lo >= 0, hi < vocab_size)
        message = f"{name}: batch (counted from 0)"
        detail = f"has token ids outside [0, {vocab_size}) (the model's vocabulary); its min and max id:"
        in_vocabulary = tf.debugging.Assert(ok, [message, index, detail, lo, hi], summarize=4)
        if max_length is None or not ids or ids[0].shape.rank < 2:
            return in_vocabulary
        length = tf.shape(ids[0])[1]
        detail = f"has sequences longer than the context of the model ({max_length} tokens); its length:"
        with tf.control_dependencies([in_vocabulary]):
            return tf.debugging.Assert(length <= max_length, [message, index, detail, length], summarize=4)

    return _with_check(dataset, check)


class CheckedFit:
    """Mixin for a ``keras.Model``: ``fit`` refuses bad arguments and checks every batch.

    A model family says what a good batch is: :meth:`checked_batches` wraps a dataset,
    :meth:`check_arrays` checks NumPy inputs whole. ``fit`` also refuses
    ``batch_size`` below 1 (Keras would silently use 32) and empty arrays (Keras would
    return an empty history and count one step).
    """

    def checked_batches(self, dataset: tf.data.Dataset, name: str) -> tf.data.Dataset:
        """``dataset`` with each batch checked inside the pipeline."""
        return dataset

    def check_arrays(self, x: Any, y: Any) -> None:
        """Check array (NumPy) training data before ``fit``; raise ``ValueError`` for bad values."""

    def fit(self, x=None, y=None, batch_size=None, *args, **kwargs):
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size, minimum=1)
        if isinstance(x, tf.data.Dataset):
            x = self.checked_batches(x, "x")
        elif x is not None and not hasattr(x, "__next__"):
            first = x[0] if isinstance(x, (tuple, list)) else x
            if len(first) == 0:
                raise ValueError(f"x is empty (shape {np.shape(first)}): there is nothing to train on.")
            self.check_arrays(x, y)
        validation = kwargs.get("validation_data")
        if isinstance(validation, tf.data.Dataset):
            kwargs["validation_data"] = self.checked_batches(validation, "validation_data")
        return super().fit(x, y, batch_size, *args, **kwargs)
