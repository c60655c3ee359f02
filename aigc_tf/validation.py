"""Argument checks with one policy for the whole package.

* a wrong **type** raises :class:`TypeError`, a wrong **value** :class:`ValueError`;
* the message names the argument, shows the value given and says what is expected;
* checks run in Python before any TensorFlow work, so bad input fails in milliseconds.

``bool`` is never accepted where a number belongs (``True`` is an ``int`` to Python,
but ``num_images=True`` is a mistake), and NumPy scalars are accepted where Python
numbers are. Every checker returns the value converted to a plain Python type.

Example:
    >>> check_int("num_images", 4, minimum=1)
    4
    >>> check_int("num_images", 2.0)
    Traceback (most recent call last):
    ...
    TypeError: num_images must be an int, got 2.0 (float).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_image_shape",
    "check_int",
    "check_int_tuple",
    "check_labels",
    "check_optional_int",
    "check_probability",
    "check_rate",
    "check_seed",
    "check_value_range",
]


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (either bound optional).

    Raises:
        TypeError: if ``value`` is not an integer (floats and bools included).
        ValueError: if it lies outside the bounds.
    """
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {_describe(value)}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a ``bool``; ints, strings and the like are a ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}.")
    return bool(value)


def check_optional_int(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """:func:`check_int`, or ``None`` passed through."""
    return None if value is None else check_int(name, value, minimum=minimum, maximum=maximum)


def check_seed(value: Any, name: str = "seed") -> int | None:
    """A seed: ``None`` (fresh randomness) or a non-negative int."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"{name} must be an int >= 0 or None, got {_describe(value)}.")
    return check_int(name, value, minimum=0)


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a finite ``float`` in the interval given by ``low``/``high``.

    Raises:
        TypeError: if ``value`` is not a real number.
        ValueError: if it is NaN, infinite or outside the interval.
    """
    if not _is_number(value):
        raise TypeError(f"{name} must be a number, got {_describe(value)}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    bad_low = low is not None and (value < low if low_inclusive else value <= low)
    bad_high = high is not None and (value > high if high_inclusive else value >= high)
    if bad_low or bad_high:
        left = "" if low is None else f"{'[' if low_inclusive else '('}{low}"
        right = "" if high is None else f"{high}{']' if high_inclusive else ')'}"
        if low is None:
            expected = f"{'<=' if high_inclusive else '<'} {high}"
        elif high is None:
            expected = f"{'>=' if low_inclusive else '>'} {low}"
        else:
            expected = f"in {left}, {right}"
        raise ValueError(f"{name} must be {expected}, got {value}.")
    return value


def check_rate(name: str, value: Any) -> float:
    """A dropout-like rate in ``[0, 1)``."""
    return check_float(name, value, low=0.0, high=1.0, high_inclusive=False)


def check_probability(name: str, value: Any) -> float:
    """A probability in ``(0, 1]`` (a nucleus mass, an acceptance rate)."""
    return check_float(name, value, low=0.0, high=1.0, low_inclusive=False)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}.")
    return value


def check_int_tuple(name: str, value: Any, *, length: int | None = None, minimum: int = 1) -> tuple[int, ...]:
    """A non-empty sequence of ints ``>= minimum`` (filter counts, a shape) as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence of ints, got {_describe(value)}.")
    items = list(value)
    if not items or not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must be a non-empty sequence of ints, got {value!r}.")
    if length is not None and len(items) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(items)}: {tuple(items)!r}.")
    if min(items) < minimum:
        raise ValueError(f"{name} must hold ints >= {minimum}, got {tuple(int(v) for v in items)!r}.")
    return tuple(int(v) for v in items)


def check_image_shape(value: Any, name: str = "image_shape") -> tuple[int, int, int]:
    """``(height, width, channels)`` as a tuple of three positive ints."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be (height, width, channels) ints, got {_describe(value)}.")
    return check_int_tuple(name, value, length=3, minimum=1)  # type: ignore[return-value]


def check_value_range(value: Any, name: str = "value_range") -> tuple[float, float]:
    """``(low, high)`` with finite ``low < high``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a pair (low, high), got {_describe(value)}.")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (low, high), got {len(value)} values: {tuple(value)!r}.")
    low = check_float(f"{name}[0]", value[0])
    high = check_float(f"{name}[1]", value[1])
    if not low < high:
        raise ValueError(f"{name} must be (low, high) with low < high, got {tuple(value)!r}.")
    return low, high


def check_labels(name: str, labels: Any, num_classes: int, *, size: int | None = None) -> np.ndarray:
    """Class ids as an ``int32`` array of shape ``(n,)`` with values in ``[0, num_classes)``.

    Args:
        name: the argument's name, for messages.
        labels: an int, a sequence or an array of ints (integer-valued floats are accepted).
        num_classes: the number of classes.
        size: when given, a single int is broadcast to this many labels and an
            array must have exactly this length.

    Raises:
        TypeError: for non-numeric labels.
        ValueError: for a wrong length, non-integer values or ids out of range.
    """
    if _is_int(labels):
        labels = np.full((1 if size is None else size,), int(labels))
    try:
        array = np.asarray(labels)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of class ids, got {_describe(labels)}.") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must be an array of integer class ids, got dtype {array.dtype}.")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # a column of ids
    if array.ndim != 1:
        one_hot = array.ndim == 2 and array.shape[1] == num_classes
        hint = " They look one-hot: pass labels.argmax(axis=1)." if one_hot else ""
        raise ValueError(f"{name} must be 1-D (one class id per image), got shape {array.shape}.{hint}")
    if size is not None and array.shape[0] != size:
        raise ValueError(f"{name} must have {size} entries (one per image), got {array.shape[0]}.")
    if array.size and np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.all(np.mod(array, 1) == 0):
            raise ValueError(f"{name} must be integer class ids, got non-integer values such as {array[0]!r}.")
    if array.size:
        low, high = array.min(), array.max()
        if low < 0 or high >= num_classes:
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in [{low}, {high}].")
    return array.astype(np.int32)


def numeric_array(name: str, value: Any, what: str = "a numeric array") -> np.ndarray:
    """``value`` as a NumPy array of numbers (or booleans).

    Raises:
        TypeError: naming ``what`` was expected, if it is not numeric.
    """
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(f"{name} must be {what}, got {_describe(value)}.") from error
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be {what}, got dtype {array.dtype}.")
    return array


def check_finite(name: str, value: Any) -> np.ndarray:
    """``value`` as a float64 NumPy array with every entry finite.

    Raises:
        TypeError: if it is not numeric.
        ValueError: naming how many entries are NaN or infinite (a diverged model, a bad file).
    """
    array = numeric_array(name, value).astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} of {array.size} entries NaN or infinite "
            f"({int(np.isnan(array).sum())} NaN): expected finite values."
        )
    return array


def check_writable_file(name: str, path: Any) -> Path:
    """``path`` as a ``Path`` whose folder exists (created if needed) and can be written.

    Call it before long work whose result is written at the end, so a bad path fails
    in a second rather than after the training.

    Raises:
        TypeError: if ``path`` is not a str or ``os.PathLike``.
        ValueError: if ``path`` is a folder, or its folder cannot be created or written.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or Path), got {_describe(path)}.")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a folder; give a file name inside it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{name}={str(path)!r}: its folder cannot be created ({error.strerror}).") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{name}={str(path)!r} cannot be written (no permission).")
    return path
