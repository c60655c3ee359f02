"""The GAN losses, as plain functions of D's logits (per example, no reduction).

All are binary cross-entropies computed from logits with ``softplus``: exact,
and finite for any logit.
"""

from __future__ import annotations

from keras import ops

__all__ = ["bce_from_logits", "discriminator_loss", "generator_loss", "minimax_generator_loss"]


def bce_from_logits(target: float, logits):
    """Binary cross-entropy of ``sigmoid(logits)`` against a constant target.

    BCE(t, l) = t softplus(-l) + (1 - t) softplus(l)
              = -t log sigma(l) - (1 - t) log(1 - sigma(l)).

    Args:
        target: the label in [0, 1] (the same for the whole batch).
        logits: ``(batch, ...)`` logits; computed in float32.

    Returns:
        Same shape as ``logits``, float32.
    """
    logits = ops.cast(logits, "float32")
    return target * ops.softplus(-logits) + (1.0 - target) * ops.softplus(logits)


def discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Per-example D loss: BCE(1 - label_smoothing, D(x)) + BCE(0, D(G(z))).

    Label smoothing is one-sided (only real targets move), as in Salimans et al.
    (2016); ``keras.losses.BinaryCrossentropy(label_smoothing=...)`` would also
    move the fake targets to ``label_smoothing / 2``.

    Args:
        real_logits: ``(batch, 1)`` or ``(batch,)`` D logits on real images.
        fake_logits: same shape, D logits on generated images.
        label_smoothing: in [0, 1).

    Returns:
        ``(batch,)`` float32.
    """
    real = bce_from_logits(1.0 - label_smoothing, real_logits)
    fake = bce_from_logits(0.0, fake_logits)
    return ops.reshape(real + fake, (-1,))


def generator_loss(fake_logits):
    """Per-example non-saturating G loss: BCE(1, D(G(z))) = -log sigma(l) = softplus(-l).

    Args:
        fake_logits: ``(batch, 1)`` or ``(batch,)`` D logits on generated images.

    Returns:
        ``(batch,)`` float32.
    """
    return ops.reshape(bce_from_logits(1.0, fake_logits), (-1,))


def minimax_generator_loss(fake_logits):
    """Per-example *saturating* G loss of the original minimax game, for comparison.

    log(1 - sigma(l)) = -softplus(l). Its gradient -sigma(l) vanishes when D
    confidently rejects the fakes (l << 0), i.e. exactly at the start of training.

    Args:
        fake_logits: ``(batch, 1)`` or ``(batch,)`` D logits on generated images.

    Returns:
        ``(batch,)`` float32.
    """
    return ops.reshape(-ops.softplus(ops.cast(fake_logits, "float32")), (-1,))
