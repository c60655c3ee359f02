"""The three terms of the ELBO, and the log-mean-exp of the importance-weighted bound."""

from __future__ import annotations

import math

import numpy as np
from keras import ops
from scipy import special

__all__ = ["bernoulli_log_likelihood", "gaussian_log_density", "kl_divergence", "log_mean_exp"]

LOG_2PI = math.log(2.0 * math.pi)


def kl_divergence(z_mean, z_log_var):
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) in closed form, per example.

    KL = -1/2 * sum_j (1 + log_var_j - mu_j^2 - exp(log_var_j)), which is >= 0 and
    is 0 exactly when mu = 0 and log_var = 0.

    Args:
        z_mean: ``(batch, latent_dim)`` means of q(z | x).
        z_log_var: ``(batch, latent_dim)`` log-variances of q(z | x).

    Returns:
        ``(batch,)`` KL divergence in nats, summed over latent dimensions.
    """
    z_mean = ops.convert_to_tensor(z_mean)
    z_log_var = ops.cast(z_log_var, z_mean.dtype)
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)


def log_mean_exp(log_w, axis: int = 0) -> np.ndarray:
    """log (1/k) sum_i exp(log_w_i) along ``axis``, in float64 and without underflow.

    ``scipy.special.logsumexp`` shifts by the maximum before exponentiating: the
    IWAE log-weights are around -100, and e^-100 underflows float32 (its
    smallest subnormal is about e^-103), so the naive form returns -inf.

    Args:
        log_w: array of log-weights, k along ``axis``.
        axis: the sample axis.

    Returns:
        The array without ``axis``, float64.
    """
    log_w = np.asarray(log_w, np.float64)
    return special.logsumexp(log_w, axis=axis) - np.log(log_w.shape[axis])


def bernoulli_log_likelihood(x, logits):
    """log p(x | z) for independent Bernoulli pixels with the given logits.

    Per pixel, -BCE(x, l) = x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)), written
    in the overflow-free form ``-(max(l, 0) - l x + log(1 + exp(-|l|)))`` so that
    logits of +-100 still give finite values and gradients.

    Args:
        x: ``(..., H, W, C)`` targets in [0, 1] (binary for a true likelihood).
        logits: ``(..., H, W, C)`` decoder logits (broadcast against ``x``).

    Returns:
        ``(...)`` log-likelihood in nats, summed over H, W **and** C.
    """
    logits = ops.cast(logits, "float32")
    x = ops.cast(x, "float32")
    bce = ops.relu(logits) - logits * x + ops.softplus(-ops.abs(logits))
    return -ops.sum(bce, axis=(-3, -2, -1))


def gaussian_log_density(z, mean, log_var):
    """log N(z; mean, diag(exp(log_var))), summed over the last axis.

    Args:
        z, mean, log_var: broadcastable tensors whose last axis is the latent axis.

    Returns:
        The log-density with the last axis summed out.
    """
    return -0.5 * ops.sum(LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var), axis=-1)
