"""One validation policy: TypeError for a type, ValueError for a value, a message with name, value and expectation."""

from __future__ import annotations

import numpy as np
import pytest

from aigc_tf import validation as v


@pytest.mark.parametrize("value", [2.0, "3", None, True, np.bool_(True), [1]])
def test_check_int_rejects_non_ints_with_type_error(value):
    with pytest.raises(TypeError, match=r"^num_images must be an int, got "):
        v.check_int("num_images", value)


def test_check_int_bounds_and_numpy_ints():
    assert v.check_int("n", np.int64(3), minimum=1) == 3 and type(v.check_int("n", np.int64(3))) is int
    with pytest.raises(ValueError, match=r"^n must be >= 1, got 0\.$"):
        v.check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^n must be <= 5, got 6\.$"):
        v.check_int("n", 6, maximum=5)
    assert v.check_optional_int("n", None, minimum=1) is None


def test_check_seed():
    assert v.check_seed(None) is None and v.check_seed(np.uint8(7)) == 7
    with pytest.raises(TypeError, match=r"seed must be an int >= 0 or None, got 1.5 \(float\)"):
        v.check_seed(1.5)
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        v.check_seed(-1)


def test_check_float_intervals():
    assert v.check_float("t", 1) == 1.0 and type(v.check_float("t", np.float32(0.5))) is float
    assert v.check_rate("dropout", 0.0) == 0.0
    with pytest.raises(ValueError, match=r"dropout must be in \[0.0, 1.0\), got 1.0"):
        v.check_rate("dropout", 1.0)
    with pytest.raises(ValueError, match=r"top_p must be in \(0.0, 1.0\], got 0.0"):
        v.check_probability("top_p", 0.0)
    with pytest.raises(ValueError, match=r"temperature must be > 0.0, got -1.0"):
        v.check_float("temperature", -1.0, low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match=r"x must be finite, got nan"):
        v.check_float("x", float("nan"))
    with pytest.raises(TypeError, match=r"x must be a number, got True \(bool\)"):
        v.check_float("x", True)


def test_check_choice_lists_the_choices():
    assert v.check_choice("kind", "cosine", ("linear", "cosine")) == "cosine"
    with pytest.raises(ValueError, match=r"kind must be one of 'linear', 'cosine', got 'sqrt'"):
        v.check_choice("kind", "sqrt", ("linear", "cosine"))


def test_check_int_tuple_and_image_shape():
    assert v.check_int_tuple("filters", [32, np.int32(64)]) == (32, 64)
    with pytest.raises(TypeError, match="filters must be a sequence of ints"):
        v.check_int_tuple("filters", 32)
    with pytest.raises(ValueError, match=r"filters must hold ints >= 1, got \(32, 0\)"):
        v.check_int_tuple("filters", (32, 0))
    assert v.check_image_shape((28, 28, 1)) == (28, 28, 1)
    with pytest.raises(ValueError, match=r"image_shape must have 3 entries, got 2"):
        v.check_image_shape((28, 28))
    with pytest.raises(TypeError, match=r"image_shape must be \(height, width, channels\) ints"):
        v.check_image_shape("28x28")


def test_check_value_range():
    assert v.check_value_range((-1, 1)) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        v.check_value_range((1, 1))
    with pytest.raises(ValueError, match="must be a pair"):
        v.check_value_range((0, 1, 2))


def test_check_labels_broadcasts_and_checks():
    np.testing.assert_array_equal(v.check_labels("labels", 3, 10, size=4), [3, 3, 3, 3])
    np.testing.assert_array_equal(v.check_labels("labels", [0.0, 9.0], 10), [0, 9])
    assert v.check_labels("labels", [1, 2], 10).dtype == np.int32
    with pytest.raises(ValueError, match=r"labels must have 3 entries \(one per image\), got 2"):
        v.check_labels("labels", [1, 2], 10, size=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), got values in \[1, 10\]"):
        v.check_labels("labels", [1, 10], 10)
    with pytest.raises(ValueError, match="integer class ids"):
        v.check_labels("labels", [0.5], 10)
    with pytest.raises(TypeError, match="integer class ids, got dtype <U1"):
        v.check_labels("labels", ["a"], 10)
    with pytest.raises(ValueError, match=r"must be 1-D \(one class id per image\), got shape \(1, 2\)\.$"):
        v.check_labels("labels", [[1, 2]], 10)
    with pytest.raises(ValueError, match=r"got shape \(2, 10\)\. They look one-hot"):
        v.check_labels("labels", np.eye(10)[:2], 10)
    np.testing.assert_array_equal(v.check_labels("labels", [[1], [3]], 10), [1, 3])  # a column of ids
