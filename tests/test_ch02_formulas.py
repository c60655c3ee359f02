"""Numerical checks of the formulas shown in notebooks/02_vae.ipynb that
tests/test_vae.py does not already cover, each through the package's code: the
ELBO decomposition and its gap, the importance-weighted bound's log-mean-exp,
the reparameterization gradients, the cosine learning-rate schedule, what
``reconstruct`` decodes, and 784 log 2 for an untrained decoder.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

from aigc_tf.vae import (
    VAE,
    Sampling,
    bernoulli_log_likelihood,
    gaussian_log_density,
    kl_divergence,
    log_mean_exp,
)

TINY = dict(image_shape=(8, 8, 1), filters=(8, 16), dense_units=32)


def binary_images(n: int, shape=(8, 8, 1), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, *shape)) < 0.3).astype(np.float32)


def log_px_given_z(model: VAE, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log p(x | z) in float64 NumPy for z of shape (..., latent): decoder as a black box."""
    lead = z.shape[:-1]
    logits = np.asarray(model.decoder(z.reshape(-1, z.shape[-1]).astype(np.float32)), np.float64)
    logits = logits.reshape(*lead, *x.shape[-3:])
    # log sigmoid(l) = -logaddexp(0, -l), log(1 - sigmoid(l)) = -logaddexp(0, l)
    return np.sum(x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits), axis=(-3, -2, -1))


# --------------------------------------------------------------------------- #
# The ELBO: decomposition, and its gap to log p(x) on a 1-D latent model.
# --------------------------------------------------------------------------- #


def test_elbo_is_expected_log_weight_and_reconstruction_minus_kl():
    """E_q[log p(x|z) + log p(z) - log q(z|x)] = E_q[log p(x|z)] - KL(q || p)."""
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=3, seed=0, **TINY)
    x = binary_images(4)
    mu, log_var = (np.asarray(t, np.float64) for t in model.encoder(x))
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * np.random.default_rng(1).standard_normal((4000, *mu.shape))
    log_px = log_px_given_z(model, x, z)  # (S, N)
    log_w = log_px + stats.norm.logpdf(z).sum(-1) - stats.norm.logpdf(z, mu, sigma).sum(-1)
    kl = keras.ops.convert_to_numpy(kl_divergence(mu.astype(np.float32), log_var.astype(np.float32)))
    # The two forms of the ELBO agree (same samples; the KL by MC vs closed form).
    np.testing.assert_allclose(log_w.mean(0), log_px.mean(0) - kl, atol=0.05)
    # VAE.elbo (its own noise) and -(reconstruction + kl) of per_example_losses estimate the same.
    np.testing.assert_allclose(model.elbo(x, num_samples=2000, seed=0), log_w.mean(0), atol=0.15)
    recon, kl_model = (keras.ops.convert_to_numpy(t) for t in model.per_example_losses(tf.constant(x)))
    np.testing.assert_allclose(kl_model, kl, rtol=1e-5)
    std = log_px.std(0)
    assert np.all(np.abs(-recon - log_px.mean(0)) < 5 * std + 1e-3)


def test_elbo_gap_is_kl_to_the_true_posterior_on_a_1d_latent_model():
    """log p(x) - ELBO = KL(q(z|x) || p(z|x)) >= 0, with log p(x) by quadrature over z."""
    keras.utils.set_random_seed(1)
    model = VAE(latent_dim=1, seed=1, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = binary_images(16, seed=2)
    model.fit(x, batch_size=16, epochs=30, verbose=0)  # a posterior that is not the prior
    x = x[:4]
    grid = np.linspace(-10, 10, 8001)
    dz = grid[1] - grid[0]
    log_joint = log_px_given_z(model, x, grid[:, None, None].repeat(4, 1)) + stats.norm.logpdf(grid)[:, None]
    log_px = special.logsumexp(log_joint, axis=0) + np.log(dz)  # (N,)
    log_post = log_joint - log_px  # log p(z | x) on the grid
    mu, log_var = (np.asarray(t, np.float64)[:, 0] for t in model.encoder(x))
    log_q = stats.norm.logpdf(grid[:, None], mu, np.exp(0.5 * log_var))
    q = np.exp(log_q)
    elbo_exact = np.sum(q * (log_joint - log_q), axis=0) * dz
    kl_to_posterior = np.sum(q * (log_q - log_post), axis=0) * dz
    np.testing.assert_allclose(log_px - elbo_exact, kl_to_posterior, atol=1e-6)
    assert np.all(kl_to_posterior >= 0)
    # The model's estimators: ELBO (Monte Carlo) and the IW bound, which approaches log p(x).
    np.testing.assert_allclose(model.elbo(x, num_samples=3000, seed=0), elbo_exact, atol=0.1)
    ll = model.log_likelihood(x, num_samples=3000, seed=0)
    np.testing.assert_allclose(ll, log_px, atol=0.05)
    assert np.all(ll >= elbo_exact - 0.05)


def test_untrained_reconstruction_is_784_log_2_for_zero_logits():
    x = binary_images(3, shape=(28, 28, 1))
    got = keras.ops.convert_to_numpy(bernoulli_log_likelihood(x, np.zeros_like(x)))
    np.testing.assert_allclose(got, -784 * math.log(2.0), rtol=1e-6)


# --------------------------------------------------------------------------- #
# The importance-weighted bound: log-mean-exp.
# --------------------------------------------------------------------------- #


def test_shifted_log_mean_exp_is_exact_and_naive_underflows():
    log_w = np.array([-124.0, -121.5, -123.2, -130.0], np.float32)
    with np.errstate(divide="ignore"):
        naive = np.log(np.mean(np.exp(log_w)))
    assert naive == -np.inf  # e^-121.5 is below float32's smallest subnormal (e^-103.3)
    m = log_w.max()
    shifted = m + np.log(np.mean(np.exp(log_w - m)))  # the shift, in float32 as on the slide
    want = special.logsumexp(log_w.astype(np.float64)) - np.log(4)
    assert shifted == pytest.approx(want, abs=1e-5)
    # The package's log_mean_exp, used by VAE.log_likelihood, along either axis.
    assert log_mean_exp(log_w) == pytest.approx(want, abs=1e-12)
    table = np.stack([log_w, log_w - 1000.0], axis=1)  # (k, 2): the second column is e^-1100 scale
    np.testing.assert_allclose(log_mean_exp(table, axis=0), [want, want - 1000.0], atol=1e-9)
    np.testing.assert_allclose(log_mean_exp(table.T, axis=1), [want, want - 1000.0], atol=1e-9)


def test_log_likelihood_is_log_mean_exp_of_the_log_weights_with_the_same_noise():
    """L_k = log (1/k) sum_i w_i, log w = log p(x|z) + log p(z) - log q(z|x), recomputed exactly."""
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=3, seed=0, **TINY)
    x = binary_images(5, seed=3)
    k, seed = 40, 7
    got = model.log_likelihood(x, num_samples=k, batch_size=5, chunk_size=k, seed=seed)
    # The same eps the method draws: one batch, one chunk, a fresh SeedGenerator(seed).
    eps = keras.ops.convert_to_numpy(keras.random.normal((k, 5, 3), seed=keras.random.SeedGenerator(seed))).astype(
        np.float64
    )
    mu, log_var = (np.asarray(t, np.float64) for t in model.encoder(x))
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * eps
    log_w = log_px_given_z(model, x, z) + stats.norm.logpdf(z).sum(-1) - stats.norm.logpdf(z, mu, sigma).sum(-1)
    want = special.logsumexp(log_w, axis=0) - np.log(k)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    # And gaussian_log_density gives the two latent terms (the prior with scalar 0 arguments).
    lp = keras.ops.convert_to_numpy(gaussian_log_density(z.astype(np.float32), 0.0, 0.0))
    lq = keras.ops.convert_to_numpy(
        gaussian_log_density(z.astype(np.float32), mu.astype(np.float32), log_var.astype(np.float32))
    )
    np.testing.assert_allclose(lp, stats.norm.logpdf(z).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(lq, stats.norm.logpdf(z, mu, sigma).sum(-1), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- #
# Reparameterization gradients.
# --------------------------------------------------------------------------- #


def test_reparameterized_gradients_of_e_z_squared():
    """E[z^2] = mu^2 + sigma^2: gradients through z = mu + sigma eps give 2 mu and 2 sigma."""
    n, mu0, sigma0 = 200_000, 1.5, 0.5
    mu = tf.Variable(mu0)
    log_var = tf.Variable(float(np.log(sigma0**2)))
    with tf.GradientTape() as tape:
        z = Sampling(seed=0)((mu * tf.ones((n, 1)), log_var * tf.ones((n, 1))))
        mean_square = tf.reduce_mean(z**2)
    grad_mu, grad_log_var = tape.gradient(mean_square, [mu, log_var])
    assert float(mean_square) == pytest.approx(mu0**2 + sigma0**2, rel=0.01)
    assert float(grad_mu) == pytest.approx(2 * mu0, rel=0.01)
    # d/d sigma = d/d log_var * 2 / sigma
    assert float(grad_log_var) * 2 / sigma0 == pytest.approx(2 * sigma0, rel=0.02)


# --------------------------------------------------------------------------- #
# Plots and training glue shown as formulas.
# --------------------------------------------------------------------------- #


def test_time_cosine_schedule_is_keras_cosine_decay_with_alpha_005():
    """eta(s) = eta_max (0.05 + 0.95 * (1 + cos(pi s)) / 2), notebook 02's schedule, is
    TimeBudget's (the benchmarks')."""
    from aigc_tf.callbacks import TimeBudget

    peak, steps = 1e-3, 1000
    budget = TimeBudget(60, peak_lr=peak, final_fraction=0.05, verbose=False)
    reference = keras.optimizers.schedules.CosineDecay(peak, decay_steps=steps, alpha=0.05)
    for step in (0, 1, 250, 500, 999, 1000):
        s = step / steps
        assert budget.learning_rate(s) == pytest.approx(peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s))))
        assert budget.learning_rate(s) == pytest.approx(float(reference(step)), rel=1e-5)
    assert budget.learning_rate(1.5) == pytest.approx(0.05 * peak)  # past the budget: the floor


def test_reconstruct_decodes_the_posterior_mean():
    """reconstruct(x) = sigmoid(decoder(mu(x))): the pixel probabilities at the posterior mean,
    recomputed from the sub-models (no sampling: the same every call)."""
    keras.utils.set_random_seed(0)
    model = VAE(latent_dim=4, seed=0, **TINY)
    x = binary_images(3, seed=4)
    mu, _ = model.encoder(x)
    want = special.expit(np.asarray(model.decoder(mu), np.float64))
    got = model.reconstruct(x)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_array_equal(got, model.reconstruct(x))
    np.testing.assert_allclose(model.decode(model.encode(x)[0]), got, atol=1e-7)
    assert got.value_range == (0.0, 1.0)
