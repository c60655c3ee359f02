"""Images that know their range, the one map to [0, 1], and the batch checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from aigc_tf.images import (
    Images,
    as_images,
    check_image_batch,
    check_static_shape,
    to_unit_range,
    value_range_of,
)


def test_to_unit_range_is_the_affine_map_and_clips():
    x = np.array([-1.0, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(to_unit_range(x, (-1, 1)), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(to_unit_range(x, (0, 2)), [0.0, 0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="low < high"):
        to_unit_range(x, (1, 1))


def test_declared_range_is_read_and_survives_slicing_not_arithmetic():
    x = as_images(np.linspace(-1, 1, 2 * 4 * 4).reshape(2, 4, 4, 1), (-1, 1))
    assert isinstance(x, Images) and x.value_range == (-1.0, 1.0)
    assert x[:1].value_range == (-1.0, 1.0) and x.reshape(2, 16).value_range == (-1.0, 1.0)
    np.testing.assert_allclose(to_unit_range(x), (np.asarray(x) + 1) / 2)
    shifted = x * 0.5 + 0.5  # now in [0, 1], and no longer declared
    assert type(shifted) is np.ndarray and value_range_of(shifted) == (0.0, 1.0)
    assert value_range_of(x, (0, 2)) == (0.0, 2.0)  # an explicit range wins
    assert pickle.loads(pickle.dumps(x)).value_range == (-1.0, 1.0)
    assert type(to_unit_range(x)) is np.ndarray


def test_strict_range_catches_the_usual_mistakes():
    tanh_samples = np.linspace(-1, 1, 10)
    with pytest.raises(ValueError, match=r"outside value_range=\(0.0, 1.0\)"):
        to_unit_range(tanh_samples, strict=True)
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        to_unit_range(np.array([0.0, 255.0]), strict=True)
    with pytest.raises(ValueError, match="outside"):
        to_unit_range(np.array([0.0, np.nan]), strict=True)
    np.testing.assert_allclose(to_unit_range(np.array([-0.01, 1.01]), strict=True), [0.0, 1.0])  # within 5 %


def test_check_image_batch():
    good = np.zeros((2, 4, 4, 1), np.uint8)
    assert check_image_batch("images", good, (4, 4, 1)).dtype == np.float32
    with pytest.raises(ValueError, match=r"images must have shape \(batch, 4, 4, 1\).*got \(2, 4, 4\)"):
        check_image_batch("images", good[..., 0], (4, 4, 1))
    with pytest.raises(ValueError, match=r"pixel values must lie in \[0, 1\], got min 0, max 255 \(divide"):
        check_image_batch("x", np.arange(2 * 16).reshape(2, 4, 4, 1) * 255 // 31, (4, 4, 1), value_range=(0, 1))
    with pytest.raises(TypeError, match="numeric array"):
        check_image_batch("x", np.array([["a"]]), (4, 4, 1))


def test_check_static_shape_allows_unknown_batch():
    import keras

    check_static_shape(keras.KerasTensor((None, 4, 4, 1)), (4, 4, 1))
    with pytest.raises(ValueError, match="channel count 1"):
        check_static_shape(keras.KerasTensor((None, 4, 4, 3)), (4, 4, 1))
