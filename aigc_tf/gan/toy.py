"""The toys of chapter 01: a 1-D discriminator whose logit is a quadratic in x, and the
gradients of the two generator losses.

For two Gaussians, the optimal discriminator's logit ``log p_data(x) / p_g(x)`` is exactly a
quadratic, so a quadratic logit trained with :func:`~aigc_tf.gan.losses.discriminator_loss`
can reach D* and the notebook can compare the learned coefficients with the closed form.

:func:`generator_loss_gradients` differentiates the saturating (minimax) and the
non-saturating generator losses with respect to D's logit, by automatic
differentiation of the package's losses, so a table or a plot of them against
D(G(z)) shows what the closed forms -D and -(1 - D) say.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.gan.losses import discriminator_loss, generator_loss, minimax_generator_loss
from aigc_tf.validation import check_float, check_int

__all__ = ["fit_quadratic_discriminator", "generator_loss_gradients", "logit_of_score", "quadratic_logit"]


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


def logit_of_score(scores: Any) -> np.ndarray:
    """The logit ``l = log D / (1 - D)`` of discriminator scores D in (0, 1).

    Args:
        scores: D(G(z)) values, any shape, strictly between 0 and 1.

    Returns:
        float64 array of the same shape.

    Raises:
        ValueError: if a score is not strictly inside (0, 1).
    """
    d = np.asarray(scores, dtype=np.float64)
    if d.size == 0 or not np.all((d > 0) & (d < 1)):
        raise ValueError(f"scores: expected values strictly between 0 and 1, got {d.ravel()[:5]} ...")
    return np.log(d) - np.log1p(-d)


def generator_loss_gradients(logits: Any) -> dict[str, np.ndarray]:
    """dL/dl of the two generator losses at the given discriminator logits l = D_logit(G(z)).

    The gradients come from ``tf.GradientTape`` on :func:`generator_loss` (non-saturating,
    -log sigma(l)) and :func:`minimax_generator_loss` (saturating, log(1 - sigma(l))); their
    closed forms are -(1 - sigma(l)) and -sigma(l).

    Args:
        logits: D's logits on fakes, any shape (flattened), finite.

    Returns:
        ``{"logit": l, "score": sigma(l), "non_saturating": dL/dl, "minimax": dL/dl}``,
        each a float64 array of shape ``(N,)``.
    """
    values = np.asarray(logits, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"logits: expected a non-empty array of finite values, got {values[:5]} ...")
    lg = tf.constant(values.astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(lg)
        non_saturating = ops.sum(generator_loss(lg))
        minimax = ops.sum(minimax_generator_loss(lg))
    out = {"logit": values, "score": 1.0 / (1.0 + np.exp(-values))}
    for name, loss in (("non_saturating", non_saturating), ("minimax", minimax)):
        out[name] = np.asarray(ops.convert_to_numpy(tape.gradient(loss, lg)), dtype=np.float64)
    del tape
    return out
