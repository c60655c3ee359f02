"""Image batches: their pixel range, batch bookkeeping and shape checks.

Every image model declares the range its pixels live in (``model.value_range``:
``(-1, 1)`` for a tanh generator, ``(0, 1)`` for a Bernoulli decoder), and the
arrays it returns carry that range (:class:`Images`). Plotting and metrics read
the declared range, so callers do not restate it; :func:`to_unit_range` is the one
map from a declared range to ``[0, 1]``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.validation import check_value_range, numeric_array

UNIT_RANGE: tuple[float, float] = (0.0, 1.0)

__all__ = [
    "UNIT_RANGE",
    "Images",
    "as_images",
    "batch_rows",
    "check_first_batch",
    "check_image_batch",
    "check_image_dataset",
    "check_static_shape",
    "checked_images",
    "images_of",
    "materialise_images",
    "to_unit_range",
    "value_range_of",
]


class Images(np.ndarray):
    """A NumPy array of images that knows its pixel range (``.value_range``).

    Slicing and reshaping keep the range; arithmetic (``x * 2``, ``x - y``) returns a
    plain ``np.ndarray``, because the result's range is no longer known.
    """

    value_range: tuple[float, float]

    def __new__(cls, array: Any, value_range: tuple[float, float]) -> Images:
        obj = np.asarray(array).view(cls)
        obj.value_range = check_value_range(value_range)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.value_range = getattr(obj, "value_range", UNIT_RANGE)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        if context is not None:  # a ufunc result: its range is unknown
            array = array.view(np.ndarray)
            return array[()] if return_scalar else array
        return super().__array_wrap__(array, context, return_scalar)

    def __reduce__(self):  # pickles (multiprocessing, joblib) keep the range
        constructor, args, state = super().__reduce__()
        return constructor, args, (state, self.value_range)

    def __setstate__(self, state):
        array_state, self.value_range = state
        super().__setstate__(array_state)


def as_images(array: Any, value_range: tuple[float, float]) -> Images:
    """``array`` as float32 :class:`Images` declared to lie in ``value_range``."""
    return Images(np.asarray(array, dtype=np.float32), value_range)


def value_range_of(images: Any, value_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """The range to read ``images`` in: the one given, else the one the array (or model) declares, else [0, 1]."""
    if value_range is not None:
        return check_value_range(value_range)
    declared = getattr(images, "value_range", None)
    return check_value_range(declared) if declared is not None else UNIT_RANGE


def to_unit_range(
    images: Any,
    value_range: tuple[float, float] | None = None,
    *,
    strict: bool = False,
    tolerance: float = 0.05,
) -> np.ndarray:
    """Map images from their range to [0, 1], clipped: ``(x - low) / (high - low)``.

    Args:
        images: an array; :class:`Images` carry their own range.
        value_range: ``(low, high)``; default: the declared range, else ``(0, 1)``.
        strict: raise when pixels lie outside the range by more than
            ``tolerance * (high - low)`` (the usual sign of a wrong range, such as
            0..255 pixels or tanh samples read as [0, 1]).

    Returns:
        A float32 ``np.ndarray`` of the same shape with values in [0, 1].
    """
    low, high = value_range_of(images, value_range)
    array = np.asarray(images, dtype=np.float32).view(np.ndarray)
    if strict and array.size:
        margin = tolerance * (high - low)
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        if np.isnan(array).any() or lo < low - margin or hi > high + margin:
            raise ValueError(
                f"images: pixel values [{lo:g}, {hi:g}] lie outside value_range={(low, high)}; "
                "pass the range the images are in (e.g. value_range=(-1, 1) for tanh samples, "
                "or divide 0..255 images by 255)."
            )
    return np.clip((array - low) / (high - low), 0.0, 1.0)


def images_of(data: Any) -> Any:
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


def _shape_message(name: str, image_shape: tuple[int, ...], got: tuple) -> str:
    dims = ", ".join(map(str, image_shape))
    return (
        f"{name} must have shape (batch, {dims}) (image_shape={tuple(image_shape)}; "
        f"channel count {image_shape[-1]}), got {got}."
    )


def check_static_shape(images, image_shape: tuple[int, int, int], name: str = "images") -> None:
    """Trace-time check of a tensor's static shape: a wrong shape fails at once, clearly."""
    shape = tuple(images.shape)
    if len(shape) != 4 or any(s is not None and s != t for s, t in zip(shape[1:], image_shape)):
        raise ValueError(_shape_message(name, image_shape, shape))


def check_image_batch(
    name: str,
    images: Any,
    image_shape: tuple[int, int, int],
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """A batch ``(N, H, W, C)`` as float32 NumPy, checked for shape (and range, when given).

    Raises:
        TypeError: if ``images`` is not numeric.
        ValueError: for a wrong shape, or pixels outside ``value_range`` (NaN included).
    """
    array = numeric_array(name, images, "a numeric array of images")
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(image_shape):
        raise ValueError(_shape_message(name, image_shape, tuple(array.shape)))
    array = array.astype(np.float32, copy=False).view(np.ndarray)
    if value_range is not None and array.size:
        low, high = value_range
        lo, hi = float(array.min()), float(array.max())
        if not (low <= lo and hi <= high):  # also catches NaN
            hint = " (divide 0..255 images by 255)" if hi > 1.5 else ""
            raise ValueError(f"{name}: pixel values must lie in [{low:g}, {high:g}], got min {lo:g}, max {hi:g}{hint}.")
    return array


def materialise_images(images: Any, image_shape: tuple[int, int, int], name: str) -> np.ndarray:
    """An array of images from an array or a ``tf.data.Dataset`` of batches (labels dropped)."""
    if isinstance(images, tf.data.Dataset):
        batches = [np.asarray(images_of(b)) for b in images.as_numpy_iterator()]
        if not batches:
            raise ValueError(f"{name}: the dataset is empty.")
        images = np.concatenate(batches)
    return check_image_batch(name, images, image_shape)


def check_image_dataset(
    name: str,
    dataset: Any,
    image_shape: tuple[int, int, int],
    value_range: tuple[float, float],
    checked: weakref.WeakSet,
    check_element: Callable | None = None,
) -> None:
    """Check a dataset of image batches (or of ``(images, labels, ...)`` tuples) before training.

    The element spec is checked at once (the image shape); the first batch is read
    once per dataset object (:func:`check_first_batch`) for the pixel range, and
    passed to ``check_element`` for anything else (labels, say).

    Raises:
        TypeError: if ``dataset`` is not a ``tf.data.Dataset``.
        ValueError: for a wrong image shape or pixels outside ``value_range``.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"{name} must be a tf.data.Dataset, got {type(dataset).__name__}.")
    spec = dataset.element_spec
    image_spec = spec[0] if isinstance(spec, (tuple, list)) else spec
    if not isinstance(image_spec, tf.TensorSpec) or image_spec.shape.rank not in (3, 4):
        raise ValueError(f"{name}: expected images shaped {tuple(image_shape)} (or (images, labels)), got {spec}.")
    if tuple(image_spec.shape[-3:]) != tuple(image_shape):
        raise ValueError(_shape_message(name, image_shape, tuple(image_spec.shape)))

    def check(element) -> None:
        images = np.asarray(images_of(element))
        check_image_batch(name, images.reshape(-1, *image_shape), image_shape, value_range)
        if check_element is not None:
            check_element(element)

    check_first_batch(dataset, checked, check)


def checked_images(images, image_shape: tuple[int, int, int], name: str = "images"):
    """``images`` with their shape checked: at trace time, and when the step runs for dims left unknown.

    Keras retraces a step with relaxed shapes (``reduce_retracing``): after a first
    fit on 28x28 images, a fit on 32x32 ones is traced as ``(None, None, None, 1)``
    and only a run-time check catches it (``InvalidArgumentError``; XLA drops it).
    With every dim known there is nothing to check at run time and no op is added.
    """
    check_static_shape(images, image_shape, name)
    if all(s is not None for s in tuple(images.shape)[1:]):
        return images
    message = _shape_message(name, image_shape, "another shape")
    check = tf.debugging.assert_equal(tf.shape(images)[1:], tf.constant(image_shape, tf.int32), message=message)
    with tf.control_dependencies([check]):
        return tf.identity(images)
