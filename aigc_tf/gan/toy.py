"""The one-dimensional toy of chapter 01: a discriminator whose logit is a quadratic in x.

For two Gaussians, the optimal discriminator's logit ``log p_data(x) / p_g(x)`` is exactly a
quadratic, so a quadratic logit trained with :func:`~aigc_tf.gan.losses.discriminator_loss`
can reach D* and the notebook can compare the learned coefficients with the closed form.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.gan.losses import discriminator_loss
from aigc_tf.validation import check_float, check_int

__all__ = ["fit_quadratic_discriminator", "quadratic_logit"]


def quadratic_logit(w: Any, x: Any) -> Any:
    """``l(x) = w0 + w1 x + w2 x^2`` (a tensor)."""
    return w[0] + w[1] * x + w[2] * x**2


def fit_quadratic_discriminator(real: Any, fake: Any, *, steps: int = 1000, learning_rate: float = 0.2) -> Any:
    """Train the coefficients of a quadratic logit by full-batch Adam on the discriminator's loss.

    Args:
        real: samples of p_data, shape (N,).
        fake: samples of p_g, shape (M,).
        steps: Adam steps (each on all the samples).
        learning_rate: Adam's learning rate.

    Returns:
        The coefficient variable ``w`` (3,): pass it to :func:`quadratic_logit`.
    """
    steps = check_int("steps", steps, minimum=1)
    learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    real = tf.constant(np.asarray(real, np.float32))
    fake = tf.constant(np.asarray(fake, np.float32))
    w = keras.Variable(np.zeros(3, "float32"))
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function  # one compiled full-batch step
    def train_step():
        with tf.GradientTape() as tape:
            loss = ops.mean(discriminator_loss(quadratic_logit(w, real), quadratic_logit(w, fake)))
        optimizer.apply([tape.gradient(loss, w)], [w])
        return loss

    for _ in range(steps):
        train_step()
    return w
