"""Tests for aigc_tf.vae: the ELBO terms against independent computations, the
training contract (trackers, scaling, seeds, XLA, mixed precision) and bad inputs.

Distribution and save/load run in fresh subprocesses: see test_vae_subprocess.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats
from step_utils import BAD_IMAGE_MODEL_ARGUMENTS, assert_same_update, counting_dataset

from aigc_tf.images import Images
from aigc_tf.vae import (
    VAE,
    Sampling,
    bernoulli_log_likelihood,
    binarize,
    gaussian_log_density,
    kl_divergence,
)

SMALL = dict(image_shape=(16, 16, 1), latent_dim=4, filters=(8, 16), dense_units=32)


def make_deterministic(model: VAE) -> None:
    """Pin log_var at -30 (sigma = 3e-7), so z = z_mean up to ~1e-6: lets a test
    compare against a noise-free reference without touching the sampling code."""
    head = model.encoder.get_layer("z_log_var")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, -30.0)])


# --------------------------------------------------------------------------- #
# The KL term.
# --------------------------------------------------------------------------- #


def test_kl_hand_values():
    mu = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]], np.float32)
    log_var = np.array([[0.0, 0.0], [0.0, 0.0], [np.log(2.0), 0.0]], np.float32)
    kl = keras.ops.convert_to_numpy(kl_divergence(mu, log_var))
    # N(0,1) || N(0,1) = 0; mean shift: |mu|^2 / 2; variance 2: (2 - 1 - ln 2) / 2.
    np.testing.assert_allclose(kl, [0.0, 2.5, 0.5 * (1.0 - np.log(2.0))], atol=1e-6)


def test_kl_matches_monte_carlo_and_is_nonnegative():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(4, 3)).astype(np.float32)
    log_var = rng.normal(scale=0.7, size=(4, 3)).astype(np.float32)
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * rng.standard_normal((200_000, 4, 3))
    # KL = E_q[log q(z) - log p(z)], estimated with SciPy densities.
    mc = np.mean(np.sum(stats.norm.logpdf(z, mu, sigma) - stats.norm.logpdf(z), axis=-1), axis=0)
    kl = keras.ops.convert_to_numpy(kl_divergence(mu, log_var))
    np.testing.assert_allclose(kl, mc, atol=0.03)
    assert np.all(kl > 0)


def test_gaussian_log_density_matches_scipy():
    rng = np.random.default_rng(1)
    z, mu, lv = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(3))
    got = keras.ops.convert_to_numpy(gaussian_log_density(z, mu, lv))
    want = stats.norm.logpdf(z, mu, np.exp(0.5 * lv)).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


# --------------------------------------------------------------------------- #
# The reconstruction term: summed over pixels AND channels.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstruction_sums_over_pixels_and_channels(channels):
    rng = np.random.default_rng(channels)
    x = (rng.random((4, 5, 6, channels)) < 0.4).astype(np.float32)
    logits = rng.normal(scale=3.0, size=x.shape).astype(np.float32)
    got = -keras.ops.convert_to_numpy(bernoulli_log_likelihood(x, logits))
    p = special.expit(logits.astype(np.float64))
    want = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=(1, 2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # keras.losses.binary_crossentropy means over the channel axis: x C to match.
    keras_fn = keras.losses.binary_crossentropy(x, logits, from_logits=True)
    np.testing.assert_allclose(got, channels * keras.ops.convert_to_numpy(keras_fn).sum(axis=(1, 2)), rtol=1e-4)
    # The averaged-over-pixels pitfall would be 5*6*C times smaller.
    averaged = keras.losses.BinaryCrossentropy(from_logits=True)(x[:1], logits[:1])
    assert got[0] / float(averaged) == pytest.approx(5 * 6 * channels, rel=1e-4)


def test_reconstruction_is_stable_for_extreme_logits():
    x = tf.constant([[[[0.0], [1.0]], [[1.0], [0.0]]]])
    logits = tf.Variable([[[[100.0], [-100.0]], [[100.0], [-100.0]]]])
    with tf.GradientTape() as tape:
        ll = bernoulli_log_likelihood(x, logits)
    grad = tape.gradient(ll, logits)
    assert np.isfinite(ll.numpy()).all() and np.isfinite(grad.numpy()).all()
    np.testing.assert_allclose(ll.numpy(), [-200.0], rtol=1e-6)  # two pixels wrong by 100
    np.testing.assert_allclose(np.abs(grad.numpy()).ravel(), [1, 1, 0, 0], atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_model_loss_is_sum_over_pixels_plus_beta_kl_averaged_over_batch(channels, bars):
    model = VAE(**{**SMALL, "image_shape": (8, 8, channels)}, beta=2.0, seed=0)
    make_deterministic(model)
    x = bars(6, (8, 8, channels), seed=channels)
    model.compile(optimizer="sgd")
    logs = model.evaluate(x, batch_size=6, verbose=0, return_dict=True)
    # NumPy reference from the sub-models' outputs (z = z_mean when sigma ~ 0).
    mu, log_var = (np.asarray(t, np.float64) for t in model.encoder(x))
    p = special.expit(np.asarray(model.decoder(mu.astype(np.float32)), np.float64))
    recon = -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=(1, 2, 3))
    kl = -0.5 * np.sum(1 + log_var - mu**2 - np.exp(log_var), axis=1)
    assert logs["reconstruction_loss"] == pytest.approx(recon.mean(), rel=1e-4)
    assert logs["kl_loss"] == pytest.approx(kl.mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx(recon.mean() + 2.0 * kl.mean(), rel=1e-4)


# --------------------------------------------------------------------------- #
# Reparameterization.
# --------------------------------------------------------------------------- #


def test_sampling_statistics_and_fresh_noise():
    layer = Sampling(seed=3)
    n = 100_000
    mu = np.tile(np.array([[1.0, -2.0, 0.0]], np.float32), (n, 1))
    log_var = np.tile(np.array([[0.0, np.log(0.25), -40.0]], np.float32), (n, 1))
    z = keras.ops.convert_to_numpy(layer((mu, log_var)))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0, 0.0], atol=0.02)
    np.testing.assert_allclose(z[:, :2].var(0), [1.0, 0.25], rtol=0.03)
    np.testing.assert_allclose(z[:, 2], 0.0, atol=1e-6)  # sigma -> 0 gives z = mu
    z2 = keras.ops.convert_to_numpy(layer((mu, log_var)))
    assert not np.allclose(z[:, 0], z2[:, 0])  # the generator advanced


def test_gradients_reach_every_encoder_weight(bars):
    model = VAE(**SMALL, seed=0)
    x = tf.constant(bars(8))
    with tf.GradientTape() as tape:
        recon, kl = model.per_example_losses(x, training=True)
        loss = tf.reduce_mean(recon + kl)
    grads = tape.gradient(loss, model.encoder.trainable_variables)
    assert len(grads) == len(model.encoder.trainable_variables) > 0
    for var, grad in zip(model.encoder.trainable_variables, grads):
        assert grad is not None and np.abs(grad.numpy()).max() > 0, var.path
    # Through z (not only the KL): the reconstruction alone moves the log-variance head.
    with tf.GradientTape() as tape:
        recon, _ = model.per_example_losses(x, training=True)
        recon = tf.reduce_mean(recon)
    head = model.encoder.get_layer("z_log_var").kernel
    assert np.abs(tape.gradient(recon, head).numpy()).max() > 0


def test_fit_draws_fresh_noise_every_step(bars):
    model = VAE(**SMALL, seed=0)
    model.compile(optimizer="adam")
    before = model.noise_seed_generator.state.numpy().copy()
    sample_before = model.sample_seed_generator.state.numpy().copy()
    model.fit(bars(32), batch_size=8, epochs=1, verbose=0)  # 4 steps
    np.testing.assert_array_equal(model.noise_seed_generator.state.numpy() - before, [0, 4])
    # Generation and the bounds draw from the other stream: the training noise stays put.
    model.generate(3)
    model.elbo(bars(4))
    np.testing.assert_array_equal(model.noise_seed_generator.state.numpy() - before, [0, 4])
    np.testing.assert_array_equal(model.sample_seed_generator.state.numpy() - sample_before, [0, 2])


# --------------------------------------------------------------------------- #
# Training: overfitting, metrics, determinism, XLA, mixed precision.
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def trained(bars):
    """A small VAE overfitted on 16 bar images (shared by the bound tests)."""
    keras.utils.set_random_seed(0)
    model = VAE(**SMALL, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = bars(16)
    before = model.evaluate(x, verbose=0, return_dict=True)
    history = model.fit(x, batch_size=16, epochs=150, verbose=0)
    return model, x, before, history.history


def test_overfitting_a_tiny_batch_lowers_the_loss(trained):
    model, x, before, history = trained
    assert set(history) == {"loss", "reconstruction_loss", "kl_loss"}
    assert history["loss"][-1] < 0.5 * before["loss"]
    assert history["reconstruction_loss"][-1] < 0.4 * before["reconstruction_loss"]
    # Decoding z = mu of a training image gives that image back.
    err_after = np.abs(model.reconstruct(x) - x).mean()
    assert err_after < 0.15
    np.testing.assert_allclose(
        history["loss"],
        np.array(history["reconstruction_loss"]) + np.array(history["kl_loss"]),
        rtol=1e-5,
    )


def test_log_likelihood_is_above_elbo_and_grows_with_k(trained):
    model, x, _, _ = trained
    elbo = model.elbo(x, num_samples=20, seed=0)
    ll = {k: model.log_likelihood(x, num_samples=k, seed=0) for k in (1, 10, 200)}
    assert elbo.shape == ll[200].shape == (16,)
    assert np.all(elbo < 0) and np.all(ll[200] < 0)
    assert ll[200].mean() >= elbo.mean()
    assert ll[1].mean() < ll[10].mean() < ll[200].mean()
    # With k = 1 the bound is the ELBO again: log w of one z ~ q, and the ELBO estimate
    # log p(x|z) - KL, are both unbiased for ELBO(x). 30 independent draws of each (mean
    # over the 16 images) agree within 4 standard errors of their difference.
    draws_ll = np.array([model.log_likelihood(x, num_samples=1, seed=s).mean() for s in range(30)])
    draws_elbo = np.array([model.elbo(x, num_samples=1, seed=100 + s).mean() for s in range(30)])
    gap = draws_ll.mean() - draws_elbo.mean()
    se = np.sqrt(draws_ll.var(ddof=1) / 30 + draws_elbo.var(ddof=1) / 30)
    assert abs(gap) < 4 * se, f"L_1 - ELBO = {gap:.3f} nats, 4 standard errors = {4 * se:.3f}"
    assert 4 * se < 0.02 * abs(elbo.mean()), se  # far tighter than a 10 % band


def test_log_likelihood_matches_numpy_importance_sampling(trained):
    model, x, _, _ = trained
    x = x[:4]
    k = 3000
    got = model.log_likelihood(x, num_samples=k, seed=1)
    # Independent estimate: NumPy noise, SciPy densities, the decoder as a black box.
    mu, log_var = (np.asarray(t, np.float64) for t in model.encoder(x))
    sigma = np.exp(0.5 * log_var)
    z = mu + sigma * np.random.default_rng(0).standard_normal((k, *mu.shape))
    logits = np.asarray(model.decoder(z.reshape(-1, mu.shape[1]).astype(np.float32)), np.float64)
    logits = logits.reshape(k, *x.shape)
    log_px = np.sum(x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits), axis=(2, 3, 4))
    log_w = log_px + stats.norm.logpdf(z).sum(-1) - stats.norm.logpdf(z, mu, sigma).sum(-1)
    want = special.logsumexp(log_w, axis=0) - np.log(k)
    # Two independent Monte-Carlo estimates: equal within a few tenths of a nat
    # (a wrong term, e.g. a missing -log k or log q, is off by several nats).
    np.testing.assert_allclose(got, want, atol=0.5)


def test_generate_and_reconstruct_are_probabilities(trained):
    model, x, _, _ = trained
    samples = model.generate(5, seed=0)
    assert samples.shape == (5, 16, 16, 1) and samples.dtype == np.float32
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    # The images declare the model's range, for plotting and metrics.
    assert model.value_range == (0.0, 1.0)
    for images in (samples, model.reconstruct(x), model.decode(np.zeros((2, 4)))):
        assert isinstance(images, Images) and images.value_range == (0.0, 1.0)
    np.testing.assert_array_equal(samples, model.generate(5, seed=0))
    assert not np.allclose(samples, model.generate(5, seed=1))
    mean, log_var = model.encode(x)
    assert mean.shape == log_var.shape == (16, 4)
    # A dataset of (images, labels) batches gives the same numbers as the array.
    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(16))).batch(16)
    np.testing.assert_allclose(model.elbo(ds, seed=0), model.elbo(x, seed=0), rtol=1e-6)
    np.testing.assert_allclose(model.encode(ds)[0], mean, rtol=1e-6)


def test_seeded_runs_repeat_and_different_seeds_differ(bars):
    def run(seed):
        keras.utils.set_random_seed(seed)
        model = VAE(**SMALL)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        data = binarize(tf.data.Dataset.from_tensor_slices(bars(32) * 0.8), seed=seed).batch(8)
        history = model.fit(data, epochs=2, shuffle=False, verbose=0).history
        return history, model.get_weights()

    h1, w1 = run(7)
    h2, w2 = run(7)
    _, w3 = run(8)
    assert h1 == h2
    for a, b in zip(w1, w2):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(w1, w3))


def test_xla_step_matches_the_graph_step(bars):
    x = bars(8)
    reference = VAE(**SMALL, seed=0)
    make_deterministic(reference)  # the noise differs under XLA; take it out
    start = reference.get_weights()
    runs = []
    for jit in (False, True):
        model = VAE(**SMALL, seed=0)
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=jit)
        history = model.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False).history
        runs.append((history["loss"][0], model.get_weights()))
    (loss_graph, w_graph), (loss_xla, w_xla) = runs
    assert np.isfinite(loss_xla) and loss_xla == pytest.approx(loss_graph, rel=1e-5)
    assert any(not np.allclose(a, b) for a, b in zip(start, w_xla))  # it did train
    for a, b in zip(w_graph, w_xla):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_float16_step_matches_the_float32_step(bars):
    """The loss is scaled before the gradient and the LossScaleOptimizer divides it out:
    one SGD step moves the weights as in float32 (same noise: the sampling layer is float32).
    Without ``scale_loss`` the step would be 16x too small."""
    x = bars(8)
    previous = keras.config.dtype_policy()
    deltas, init = {}, None
    try:
        for policy in ("float32", "mixed_float16"):
            keras.config.set_dtype_policy(policy)
            model = VAE(**SMALL, seed=0)
            init = model.get_weights() if init is None else init
            model.set_weights(init)
            optimizer = keras.optimizers.SGD(0.01)
            if policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(
                    optimizer, initial_scale=16.0, dynamic_growth_steps=10**6
                )
            model.compile(optimizer=optimizer)
            model.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False)
            deltas[policy] = [np.array(w) - w0 for w, w0 in zip(model.get_weights(), init)]
    finally:
        keras.config.set_dtype_policy(previous)
    assert_same_update(deltas["float32"], deltas["mixed_float16"], floor=1e-5, min_moved=8)  # every kernel


def test_mixed_float16_trains_with_float32_outputs(bars):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = VAE(**SMALL, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(bars(16), batch_size=8, epochs=2, verbose=0).history
        assert all(np.isfinite(v).all() for v in history.values())
        x = tf.constant(bars(2))
        z_mean, z_log_var = model.encoder(x)
        assert z_mean.dtype == z_log_var.dtype == "float32"
        assert model.decoder(z_mean).dtype == "float32"
        assert model.encoder.layers[1].compute_dtype == "float16"
        assert all(w.dtype == "float32" for w in model.weights if "float" in str(w.dtype))
        samples = model.generate(3, seed=0)
        assert samples.dtype == np.float32 and 0 <= samples.min() <= samples.max() <= 1
        assert np.isfinite(model.log_likelihood(bars(2), num_samples=5)).all()
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


def test_config_round_trip():
    model = VAE(**SMALL, beta=0.5, seed=3)
    config = model.get_config()
    clone = VAE.from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == model.count_params()
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(revived, VAE) and revived.get_config() == config


# --------------------------------------------------------------------------- #
# Data: binarization.
# --------------------------------------------------------------------------- #


def _epochs(ds, n=2):
    return [np.stack([np.asarray(e) for e in ds.as_numpy_iterator()]) for _ in range(n)]


def test_dynamic_binarization_is_fresh_each_epoch_and_reproducible():
    images = np.full((64, 8, 8, 1), 0.3, np.float32)
    ds = binarize(tf.data.Dataset.from_tensor_slices(images), seed=5)
    first, second = _epochs(ds)
    assert set(np.unique(first)) <= {0.0, 1.0}
    assert first.mean() == pytest.approx(0.3, abs=0.03)  # P(pixel = 1) = x
    assert not np.array_equal(first, second)
    again = _epochs(binarize(tf.data.Dataset.from_tensor_slices(images), seed=5))
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    other = _epochs(binarize(tf.data.Dataset.from_tensor_slices(images), seed=6), 1)[0]
    assert not np.array_equal(first, other)


def test_fixed_binarization_is_the_same_every_time_and_keeps_labels():
    images = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    labels = np.arange(20)
    base = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = binarize(base, seed=0, dynamic=False)
    first, second = ([e for e in ds.as_numpy_iterator()] for _ in range(2))
    for (a, la), (b, lb), y in zip(first, second, labels):
        np.testing.assert_array_equal(a, b)
        assert la == lb == y
        assert set(np.unique(a)) <= {0.0, 1.0}
    pixels = np.stack([a for a, _ in first])
    assert 0.2 < pixels.mean() < 0.8
    assert np.all(pixels[images == 0] == 0)
    # Images binarized before batching do not depend on the batch size.
    b4 = np.concatenate([a for a, _ in ds.batch(4).as_numpy_iterator()])
    np.testing.assert_array_equal(b4, pixels)


def test_binarized_pixels_follow_the_grey_level():
    grey = np.linspace(0, 1, 11, dtype=np.float32).reshape(1, 1, 11, 1)
    images = np.tile(grey, (2000, 1, 1, 1))
    ds = binarize(tf.data.Dataset.from_tensor_slices(images), seed=1, dynamic=False)
    mean = np.stack(list(ds.as_numpy_iterator())).mean(axis=0).ravel()
    np.testing.assert_allclose(mean, grey.ravel(), atol=0.04)


# --------------------------------------------------------------------------- #
# Bad inputs: fast, clear errors naming the argument.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kwargs, error, match",
    BAD_IMAGE_MODEL_ARGUMENTS
    + [
        (dict(beta=-1.0), ValueError, "beta must be >= 0.0, got -1.0"),
        (dict(beta="1"), TypeError, "beta must be a number"),
        (dict(dense_units=-1), ValueError, "dense_units must be >= 0"),
        (dict(filters=(8, 0)), ValueError, "filters must hold ints >= 1"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        VAE(**kwargs)


@pytest.fixture(scope="module")
def small_model():
    model = VAE(**SMALL, seed=0)
    model.compile(optimizer="adam")
    return model


def test_wrong_image_shape_is_rejected(small_model):
    with pytest.raises(ValueError, match=r"image_shape=\(16, 16, 1\)"):  # when fit traces the step
        small_model.fit(np.zeros((4, 28, 28, 1), np.float32), verbose=0)
    with pytest.raises(ValueError, match="image_shape"):
        small_model.fit(tf.data.Dataset.from_tensor_slices(np.zeros((4, 16, 16, 3))).batch(2))
    with pytest.raises(ValueError, match="image_shape"):
        small_model.check_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((4, 16, 16, 3))).batch(2))
    with pytest.raises(ValueError, match="image_shape"):
        small_model.elbo(np.zeros((4, 16, 16), np.float32))
    # After a first fit, Keras retraces with relaxed shapes: the step checks them when it runs.
    trained = VAE(**SMALL, seed=0)
    trained.compile(optimizer="adam")
    trained.fit(np.zeros((4, 16, 16, 1), np.float32), verbose=0)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=r"image_shape=\(16, 16, 1\)"):
        trained.fit(np.zeros((4, 32, 32, 1), np.float32), verbose=0)
    assert int(trained.optimizer.iterations) == 1


def test_values_outside_unit_interval_are_rejected(small_model, bars):
    raw = np.full((4, 16, 16, 1), 255.0, np.float32)
    # fit checks arrays whole before training, and a dataset batch by batch in its pipeline...
    with pytest.raises(ValueError, match=r"x: pixel values must lie in \[0, 1\], got min 255"):
        small_model.fit(raw, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)batch \(counted from 0\).*outside \[0, 1\]"):
        small_model.fit(tf.data.Dataset.from_tensor_slices((raw, np.zeros(4))).batch(2), verbose=0)
    # ... evaluate checks them in the graph: the first bad batch fails its step ...
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):
        small_model.evaluate(raw, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):  # at the end of the first epoch
        small_model.fit(bars(4), validation_data=(raw,), verbose=0)
    # ... and changes nothing.
    fresh = VAE(**SMALL, seed=0)
    fresh.compile(optimizer="adam")
    before = fresh.get_weights()
    with pytest.raises(tf.errors.InvalidArgumentError):
        fresh.fit(tf.data.Dataset.from_tensor_slices(raw).batch(2), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), before))
    assert int(fresh.optimizer.iterations) == 0
    # The Python entry points check at once.
    with pytest.raises(ValueError, match=r"x: pixel values must lie in \[0, 1\], got min -1, max -1"):
        small_model.log_likelihood(-raw / 255.0, num_samples=2)
    with pytest.raises(ValueError, match=r"dataset: pixel values must lie in \[0, 1\]"):
        small_model.check_dataset(tf.data.Dataset.from_tensor_slices((raw, np.zeros(4))).batch(2))


def test_bad_num_samples_and_num_images(small_model, bars):
    x = bars(2)
    with pytest.raises(ValueError, match="num_samples"):
        small_model.log_likelihood(x, num_samples=0)
    with pytest.raises(ValueError, match="num_samples"):
        small_model.elbo(x, num_samples=-1)
    with pytest.raises(TypeError, match="num_samples"):
        small_model.log_likelihood(x, num_samples=2.0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        small_model.log_likelihood(x, chunk_size=0)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        small_model.generate(0)
    with pytest.raises(TypeError, match="num_images must be an int"):
        small_model.generate(2.0)
    with pytest.raises(ValueError, match="unconditional"):
        small_model.generate(2, labels=[0, 1])
    with pytest.raises(TypeError, match="seed must be an int"):
        small_model.generate(2, seed="0")
    with pytest.raises(TypeError, match="dataset"):
        binarize(np.zeros((2, 4, 4, 1)))
    with pytest.raises(TypeError, match="seed must be an int"):
        binarize(tf.data.Dataset.from_tensor_slices(x), seed=1.5)


def test_check_dataset_reads_each_dataset_once(small_model, bars):
    """The first-batch check runs once per dataset object, and a failing dataset fails every time."""
    good, reads = counting_dataset(bars(4).reshape(2, 2, 16, 16, 1))
    assert small_model.check_dataset(good) is good
    small_model.check_dataset(good)
    assert len(reads) == 1
    again, reads_again = counting_dataset(bars(4).reshape(2, 2, 16, 16, 1))  # a new dataset is read
    small_model.check_dataset(again)
    assert len(reads_again) == 1
    bad = tf.data.Dataset.from_tensor_slices(np.full((4, 16, 16, 1), 255.0, np.float32)).batch(2)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            small_model.check_dataset(bad)
