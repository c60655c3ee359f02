"""Standard Inception FID (``aigc_tf.metrics``): the metric of the papers, when the ImageNet weights load.

Needs the InceptionV3 ImageNet weights (~90 MB, downloaded by
``keras.applications`` on first use): online, e.g. on Colab. Offline, the
classifier FID of :mod:`aigc_tf.metrics.images` is the course's metric.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from aigc_tf.images import to_unit_range
from aigc_tf.metrics.images import frechet_distance

__all__ = ["INCEPTION_WEIGHTS_FILE", "inception_features", "inception_fid", "load_inception"]

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


def load_inception() -> keras.Model:
    """InceptionV3 (ImageNet weights, no top, global average pooling → 2048 features).

    Raises:
        RuntimeError: when the weights cannot be loaded — e.g. offline
            (``AIGC_OFFLINE=1``, or no network) and not already in ``~/.keras/models``.
    """
    from aigc_tf.data import is_offline

    cached = Path(os.path.expanduser("~/.keras/models")) / INCEPTION_WEIGHTS_FILE
    hint = (
        "Inception FID needs the InceptionV3 ImageNet weights (~90 MB, downloaded by "
        "keras.applications on first use). Run online (e.g. on Colab), or use the offline "
        "classifier FID: aigc_tf.metrics.evaluate_samples()."
    )
    if is_offline() and not cached.exists():
        raise RuntimeError(
            f"offline (AIGC_OFFLINE=1) and the InceptionV3 weights are not in the Keras cache "
            f"(~/.keras/models/{INCEPTION_WEIGHTS_FILE}). {hint}"
        )
    try:
        return keras.applications.InceptionV3(
            include_top=False, weights="imagenet", pooling="avg", input_shape=(299, 299, 3)
        )
    except Exception as err:  # download or file errors: turn into one clear message
        raise RuntimeError(f"could not load InceptionV3 ImageNet weights ({err}). {hint}") from err


def inception_features(
    images: Any, *, value_range: tuple[float, float] | None = None, batch_size: int = 50, model=None
) -> np.ndarray:
    """2048-d InceptionV3 pool features with the usual protocol.

    Protocol: grey → 3 identical channels, bilinear resize to 299x299, pixels
    mapped to [0, 255] and through ``keras.applications.inception_v3.preprocess_input``
    (→ [-1, 1]). Slow on a CPU (~0.1 s per image).

    Args:
        images: ``(N, H, W, 1 or 3)`` in ``value_range``.
        value_range: the images' pixel range (default: the declared one, else (0, 1)).
        batch_size: images per forward pass.
        model: a model from :func:`load_inception` (default: load one).

    Returns:
        ``(N, 2048)`` float32 features.
    """
    import tensorflow as tf

    x = to_unit_range(images, value_range)
    if x.ndim == 3:
        x = x[..., None]
    model = model or load_inception()
    out = []
    for start in range(0, len(x), int(batch_size)):
        batch = tf.convert_to_tensor(x[start : start + int(batch_size)])
        if batch.shape[-1] == 1:
            batch = tf.repeat(batch, 3, axis=-1)
        batch = tf.image.resize(batch, (299, 299), method="bilinear") * 255.0
        batch = keras.applications.inception_v3.preprocess_input(batch)
        out.append(np.asarray(model(batch, training=False)))
    return np.concatenate(out)


def inception_fid(
    images_a: Any,
    images_b: Any,
    *,
    value_range_a: tuple[float, float] | None = None,
    value_range_b: tuple[float, float] | None = None,
) -> float:
    """Standard (Inception) FID between two image sets; see :func:`inception_features`.

    Comparable with published numbers only with the same sample counts (papers
    use 10k-50k) and the same real set. Raises ``RuntimeError`` when the weights
    cannot be loaded (offline).
    """
    model = load_inception()
    return frechet_distance(
        inception_features(images_a, value_range=value_range_a, model=model),
        inception_features(images_b, value_range=value_range_b, model=model),
    )
