"""Checks of a VAE's estimators: the reparameterised gradient, and the ELBO and IW bounds on the same draws."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.vae.elbo import gaussian_log_density, log_mean_exp
from aigc_tf.vae.networks import Sampling
from aigc_tf.validation import check_float, check_int, check_seed

__all__ = ["importance_bounds", "latent_summary", "reparameterization_gradients"]


def reparameterization_gradients(
    mu: float, sigma: float, *, num_samples: int = 200_000, seed: int = 0
) -> dict[str, float]:
    """Monte-Carlo gradients of E[z^2] through the ``Sampling`` layer, against the exact ones.

    With z = mu + sigma * eps, E[z^2] = mu^2 + sigma^2, so d/d mu = 2 mu and
    d/d sigma = 2 sigma. The layer takes log_var = 2 log sigma; its gradient is
    converted with d/d sigma = d/d log_var * 2 / sigma.

    Args:
        mu: mean of q, a float.
        sigma: standard deviation of q, > 0.
        num_samples: draws of z, >= 2.
        seed: seed of the layer's noise generator.

    Returns:
        ``{"mean", "variance", "grad_mu", "grad_sigma"}``: the sample mean and
        variance of z and the two gradient estimates (floats).
    """
    mu = check_float("mu", mu)
    sigma = check_float("sigma", sigma, low=0.0)
    if sigma == 0.0:
        raise ValueError("sigma must be > 0 (log_var = 2 log sigma), got 0.0.")
    num_samples = check_int("num_samples", num_samples, minimum=2)
    seed = check_seed(seed)
    mu_var = tf.Variable(mu, dtype="float32")
    log_var = tf.Variable(2.0 * float(np.log(sigma)), dtype="float32")
    sampling = Sampling(seed=seed)
    with tf.GradientTape() as tape:
        ones = ops.ones((num_samples, 1))
        z = sampling((mu_var * ones, log_var * ones))
        mean_square = ops.mean(ops.square(z))
    grad_mu, grad_log_var = tape.gradient(mean_square, [mu_var, log_var])
    return {
        "mean": float(ops.mean(z)),
        "variance": float(ops.var(z)),
        "grad_mu": float(grad_mu),
        "grad_sigma": float(grad_log_var) * 2.0 / sigma,
    }


def importance_bounds(
    vae: Any, x: Any, ks: Sequence[int] = (1, 10, 100), *, batch_size: int = 100, seed: int | None = 0
) -> dict[Any, np.ndarray]:
    """The ELBO and the IW bounds L_k of each image, all from ONE set of draws.

    For every image ``max(ks)`` codes z_i ~ q(z|x) are drawn once; L_k uses the
    first k of them, so the curve k -> L_k is nested (no new noise per k), and
    the ELBO uses the first draw:

    * ``"elbo"``: log p(x|z_1) - KL(q || p) with the KL in closed form (what
      :meth:`VAE.elbo` computes);
    * ``1`` (L_1): log p(x|z_1) + log p(z_1) - log q(z_1|x), the same draw with
      the KL estimated by Monte Carlo; ``L_1 - elbo`` is the error of that
      one-sample KL estimate (zero on average);
    * ``k``: log (1/k) sum_{i<=k} w_i.

    Args:
        vae: a :class:`aigc_tf.vae.VAE`.
        x: ``(N, H, W, C)`` images in [0, 1].
        ks: the k values, each >= 1.
        batch_size: images per forward pass.
        seed: seed of the draws (None: the model's sampling stream).

    Returns:
        A dict: ``"elbo"``, ``"kl_closed_form"``, ``"kl_monte_carlo"`` and every k,
        each an ``(N,)`` float64 array in nats.
    """
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise TypeError(f"ks must be a non-empty sequence of ints, got {ks!r}.")
    ks = [check_int("ks", k, minimum=1) for k in ks]
    k_max = max(ks)
    generator = vae._eval_generator(seed)
    parts: dict[Any, list[np.ndarray]] = {key: [] for key in ["elbo", "kl_closed_form", "kl_monte_carlo", *ks]}
    for xb in vae._batches(x, batch_size):
        z_mean, z_log_var = vae._encode_batch(xb)
        eps = keras.random.normal((k_max, *ops.shape(z_mean)), seed=generator)
        log_w = vae._log_weights_fn(xb, z_mean, z_log_var, eps).numpy().astype(np.float64)  # (k_max, batch)
        elbo = vae._elbo_fn(xb, z_mean, z_log_var, eps[0]).numpy().astype(np.float64)
        kl_closed = ops.convert_to_numpy(-0.5 * ops.sum(1.0 + z_log_var - z_mean**2 - ops.exp(z_log_var), axis=-1))
        z1 = z_mean + ops.exp(0.5 * z_log_var) * eps[0]
        kl_mc = ops.convert_to_numpy(gaussian_log_density(z1, z_mean, z_log_var) - gaussian_log_density(z1, 0.0, 0.0))
        parts["elbo"].append(elbo)
        parts["kl_closed_form"].append(kl_closed.astype(np.float64))
        parts["kl_monte_carlo"].append(kl_mc.astype(np.float64))
        for k in ks:
            parts[k].append(np.asarray(log_mean_exp(log_w[:k], axis=0), np.float64))
    return {key: np.concatenate(value) for key, value in parts.items()}


def latent_summary(z: Any, labels: Any, radius: float = 2.0) -> dict[str, Any]:
    """What a scatter of 2-D (or J-D) codes shows, in numbers.

    Args:
        z: ``(N, J)`` codes (e.g. posterior means).
        labels: ``(N,)`` integer classes.
        radius: the radius of the reference ball around 0 (2: two prior std).

    Returns:
        ``{"inside": share of codes within radius, "inside_by_class": {c: share},
        "separation": {c: share of class c's codes whose nearest class centre is
        their own}, "centre_norm": norm of the mean code, "std": per-dimension std}``.
        Under N(0, I) in 2-D, the share within radius 2 is 1 - exp(-2) = 0.865.
    """
    z = np.asarray(z, np.float64)
    labels = np.asarray(labels)
    if z.ndim != 2 or labels.shape != (len(z),):
        raise ValueError(f"z must be (N, J) and labels (N,); got z {z.shape}, labels {labels.shape}.")
    radius = check_float("radius", radius, low=0.0)
    norms = np.linalg.norm(z, axis=1)
    classes = np.unique(labels)
    centres = np.stack([z[labels == c].mean(axis=0) for c in classes])
    nearest = classes[np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)]
    return {
        "inside": float((norms <= radius).mean()),
        "inside_by_class": {int(c): float((norms[labels == c] <= radius).mean()) for c in classes},
        "separation": {int(c): float((nearest[labels == c] == c).mean()) for c in classes},
        "centre_norm": float(np.linalg.norm(z.mean(axis=0))),
        "std": z.std(axis=0),
    }
