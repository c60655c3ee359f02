"""Tests for aigc_tf.gan: loss maths against hand computation, the two-step
update (isolation, exact SGD step), noise and seeds, XLA, mixed precision, the
metrics contract, bad inputs, k-means conditioning, rejection sampling, and a
short behavioural training run.

Hand checks fix the training noise through the public hook ``model.noise_fn``.
Save/load and MirroredStrategy run in fresh processes: see test_gan_subprocess.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats
from step_utils import BAD_IMAGE_MODEL_ARGUMENTS, assert_same_update, counting_dataset, fixed_noise

from aigc_tf.gan import (
    DCGAN,
    ClusteredGAN,
    ConditionalGAN,
    bce_from_logits,
    discriminator_loss,
    generator_loss,
    minimax_generator_loss,
    rejection_acceptance,
    rejection_sample,
)
from aigc_tf.images import Images

SMALL = dict(latent_dim=8, image_shape=(16, 16, 1), generator_filters=(16, 8), discriminator_filters=(8, 16))


def trainable(net) -> list[np.ndarray]:
    return [np.array(v) for v in net.trainable_variables]


def latents(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


# --------------------------------------------------------------------------- #
# Loss maths.
# --------------------------------------------------------------------------- #


def test_losses_match_hand_values():
    real = np.array([[2.0], [-1.0], [0.0]], np.float32)
    fake = np.array([[-3.0], [0.5], [0.0]], np.float32)
    sig = special.expit
    expected_d = -np.log(sig(real)) - np.log(1 - sig(fake))
    np.testing.assert_allclose(discriminator_loss(real, fake), expected_d.ravel(), rtol=1e-6)
    assert float(discriminator_loss(real, fake)[2]) == pytest.approx(2 * np.log(2))  # D(x) = 1/2 everywhere
    # One-sided smoothing: real target 0.9, fake target stays 0.
    smooth = -(0.9 * np.log(sig(real)) + 0.1 * np.log(1 - sig(real))) - np.log(1 - sig(fake))
    np.testing.assert_allclose(discriminator_loss(real, fake, 0.1), smooth.ravel(), rtol=1e-6)
    np.testing.assert_allclose(generator_loss(fake), -np.log(sig(fake)).ravel(), rtol=1e-6)
    np.testing.assert_allclose(minimax_generator_loss(fake), np.log(1 - sig(fake)).ravel(), rtol=1e-6)


def test_losses_are_finite_for_extreme_logits():
    big = np.array([[-200.0], [200.0]], np.float32)
    d = np.array(discriminator_loss(big, -big))
    g = np.array(generator_loss(big))
    assert np.all(np.isfinite(d)) and np.all(np.isfinite(g))
    assert g[0] == pytest.approx(200.0) and g[1] == pytest.approx(0.0, abs=1e-6)


def test_non_saturating_gradient_survives_when_d_rejects_fakes():
    logits = tf.constant([[-20.0], [-8.0], [0.0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ns = tf.reduce_sum(generator_loss(logits))
        mm = tf.reduce_sum(minimax_generator_loss(logits))
    g_ns = tape.gradient(ns, logits).numpy().ravel()
    g_mm = tape.gradient(mm, logits).numpy().ravel()
    np.testing.assert_allclose(g_ns, -(1 - special.expit([-20.0, -8.0, 0.0])), rtol=1e-6)
    assert abs(g_ns[0]) == pytest.approx(1.0, abs=1e-6)  # full signal
    assert abs(g_mm[0]) < 1e-8  # the minimax loss saturates
    assert g_mm[2] == pytest.approx(-0.5) and g_ns[2] == pytest.approx(-0.5)  # equal at D = 1/2


# --------------------------------------------------------------------------- #
# Networks, shapes and the declared range.
# --------------------------------------------------------------------------- #


def test_shapes_and_output_range():
    model = DCGAN(**SMALL, seed=0)
    images = model(latents(5, 0))
    assert images.shape == (5, 16, 16, 1)
    assert model.discriminator(images).shape == (5, 1)
    out = model.generate(7, seed=1)
    assert out.shape == (7, 16, 16, 1) and out.dtype == np.float32
    assert out.min() >= -1 and out.max() <= 1
    # Samples carry the model's range, so plotting and metrics need not be told.
    assert model.value_range == (-1.0, 1.0)
    assert isinstance(out, Images) and out.value_range == model.value_range
    assert model.generate_from_latents(latents(2, 0)).value_range == (-1.0, 1.0)
    default = DCGAN()
    assert default.generate(2, seed=0).shape == (2, 28, 28, 1)
    assert isinstance(default.generator, keras.Model) and isinstance(default.discriminator, keras.Model)
    cgan = ConditionalGAN(num_classes=3, **SMALL)
    samples = cgan.generate(4, seed=0, labels=[0, 2, 1, 1])
    assert samples.shape == (4, 16, 16, 1) and samples.value_range == (-1.0, 1.0)
    assert cgan.discriminator([np.array(images), np.array([0, 1, 2, 0, 1])]).shape == (5, 1)


def test_config_round_trip_keeps_each_models_arguments():
    for model, extra in (
        (DCGAN(**SMALL, label_smoothing=0.1, seed=3), {}),
        (ConditionalGAN(4, **SMALL, label_dim=5, seed=3), {"num_classes": 4, "label_dim": 5}),
        (ClusteredGAN(3, **SMALL, seed=3), {"num_clusters": 3, "label_dim": 32}),
    ):
        config = model.get_config()
        assert {k: config[k] for k in extra} == extra
        assert "num_classes" not in config or isinstance(model, ConditionalGAN)
        clone = type(model).from_config(config)
        assert clone.get_config() == config and clone.count_params() == model.count_params()


# --------------------------------------------------------------------------- #
# The training step.
# --------------------------------------------------------------------------- #


def test_train_step_is_an_exact_d_step_then_g_step(blobs):
    """One SGD step reproduced by hand: D on (real, G(z1)); then G through the *updated* D."""
    keras.utils.set_random_seed(1)
    lr_d, lr_g = 0.05, 0.1
    model = DCGAN(**SMALL, dropout=0.0, label_smoothing=0.1, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(lr_d), g_optimizer=keras.optimizers.SGD(lr_g))
    real = tf.constant(blobs(6))
    z = latents(6, 0)
    model.noise_fn = fixed_noise(z)
    G, D = model.generator, model.discriminator
    g0, d0 = trainable(G), trainable(D)

    # By hand, on copies of the networks.
    G_ref, D_ref = keras.models.clone_model(G), keras.models.clone_model(D)
    G_ref.set_weights(G.get_weights())
    D_ref.set_weights(D.get_weights())
    fake = G_ref(z, training=True)
    with tf.GradientTape() as tape:
        real_logits, fake_logits = D_ref(real, training=True), D_ref(fake, training=True)
        d_per_example = -(
            0.9 * tf.math.log_sigmoid(real_logits) + 0.1 * tf.math.log_sigmoid(-real_logits)
        ) - tf.math.log_sigmoid(-fake_logits)
        d_loss = tf.reduce_mean(d_per_example)
    for v, g in zip(D_ref.trainable_variables, tape.gradient(d_loss, D_ref.trainable_variables)):
        v.assign_sub(lr_d * g)
    with tf.GradientTape() as tape:
        g_loss = tf.reduce_mean(-tf.math.log_sigmoid(D_ref(G_ref(z, training=True), training=True)))
    for v, g in zip(G_ref.trainable_variables, tape.gradient(g_loss, G_ref.trainable_variables)):
        v.assign_sub(lr_g * g)

    logs = model.train_step(real)
    assert float(logs["d_loss"]) == pytest.approx(float(d_loss), rel=1e-5)
    assert float(logs["g_loss"]) == pytest.approx(float(g_loss), rel=1e-5)
    for a, b in zip(trainable(D), D_ref.trainable_variables):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(trainable(G), G_ref.trainable_variables):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The trackers: D accuracy and mean sigmoid scores of that same D step.
    expected_acc = np.mean(np.r_[np.ravel(real_logits) > 0, np.ravel(fake_logits) < 0])
    assert float(logs["d_accuracy"]) == pytest.approx(expected_acc)
    assert float(logs["real_score"]) == pytest.approx(float(tf.reduce_mean(tf.sigmoid(real_logits))), rel=1e-5)
    assert float(logs["fake_score"]) == pytest.approx(float(tf.reduce_mean(tf.sigmoid(fake_logits))), rel=1e-5)
    assert not any(np.allclose(a, b) for a, b in zip(g0, trainable(G)) if a.size > 1)
    assert not any(np.allclose(a, b) for a, b in zip(d0, trainable(D)) if a.size > 1)


def _all_g_variables(model) -> list:
    return model.generator.trainable_variables + model.generator.non_trainable_variables


def test_averaged_generator_follows_the_ema_formula_and_generates(blobs):
    """ema_t = d_t ema_{t-1} + (1 - d_t) w_t with d_t = min(d, (1 + t) / (10 + t)), for
    weights and BatchNorm statistics; generate() runs G with exactly those values."""
    model = DCGAN(**SMALL, ema_decay=0.9, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.5))
    z = latents(4, 0)
    average = model.generator_average
    # Before training the average is G itself.
    np.testing.assert_array_equal(model.generate_from_latents(z), model.generate_from_latents(z, average=False))
    ema = [np.array(v) for v in average.averages]
    assert len(ema) == len(_all_g_variables(model)) > len(model.generator.trainable_variables)
    for t in (1, 2, 3):
        model.train_step(tf.constant(blobs(8, seed=t)))
        assert int(model.g_optimizer.iterations) == t
        d = min(0.9, (1 + t) / (10 + t))
        assert float(average.decay_at(t)) == pytest.approx(d)
        ema = [d * e + (1 - d) * np.array(v) for e, v in zip(ema, _all_g_variables(model))]
        for got, want in zip(average.averages, ema):
            np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)
    assert float(average.decay_at(10_000)) == pytest.approx(0.9)
    # The averaged weights differ from G's, and generate() uses them.
    raw = model.generate_from_latents(z, average=False)
    averaged = model.generate_from_latents(z)
    assert not np.allclose(raw, averaged, atol=1e-4)
    np.testing.assert_allclose(raw, model.generator(z, training=False), atol=1e-6)
    saved = [np.array(v) for v in _all_g_variables(model)]
    for v, e in zip(_all_g_variables(model), average.averages):
        v.assign(e)
    np.testing.assert_allclose(averaged, model.generator(z, training=False), atol=1e-5)
    for v, w in zip(_all_g_variables(model), saved):
        v.assign(w)
    np.testing.assert_array_equal(
        model.generate(3, seed=1, average=False),
        model.generate_from_latents(model.sample_latents(3, seed=1), average=False),
    )


def test_default_averaging_schedule_is_the_one_notebook_01_states():
    """d_t = min(0.999, (1 + t) / (10 + t)): 2/11 at the first step, 0.999 from t = 8,990 on."""
    model = DCGAN(**SMALL)
    assert model.ema_decay == 0.999
    decay_at = model.generator_average.decay_at
    for t in (1, 10, 100, 8989, 8990, 50_000):
        assert float(decay_at(t)) == pytest.approx(min(0.999, (1 + t) / (10 + t)), rel=1e-6)
    assert float(decay_at(1)) == pytest.approx(2 / 11)
    assert float(decay_at(8989)) < 0.999 and float(decay_at(8991)) == pytest.approx(0.999)


def test_no_averaging_when_ema_decay_is_zero(blobs):
    model = DCGAN(**SMALL, ema_decay=0.0, seed=0)
    model.compile()
    model.train_step(tf.constant(blobs(8)))
    assert model.generator_average is None
    z = latents(3, 1)
    np.testing.assert_array_equal(model.generate_from_latents(z), model.generate_from_latents(z, average=False))
    np.testing.assert_allclose(model.generate_from_latents(z), model.generator(z, training=False), atol=1e-6)


@pytest.mark.parametrize("frozen", ["g", "d"])
def test_each_step_updates_only_its_own_network(frozen, blobs):
    """With one optimizer's learning rate at 0, that network's weights do not move."""
    model = DCGAN(**SMALL, seed=0)
    zero, some = keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.1)
    model.compile(
        d_optimizer=zero if frozen == "d" else some,
        g_optimizer=zero if frozen == "g" else some,
    )
    g0, d0 = trainable(model.generator), trainable(model.discriminator)
    model.train_step(tf.constant(blobs(8)))
    g1, d1 = trainable(model.generator), trainable(model.discriminator)
    same_g = all(np.array_equal(a, b) for a, b in zip(g0, g1))
    same_d = all(np.array_equal(a, b) for a, b in zip(d0, d1))
    assert (same_g, same_d) == ((True, False) if frozen == "g" else (False, True))


def test_g_batchnorm_statistics_move_once_per_step_by_the_g_steps_pass(blobs):
    """The D step runs G in training mode but statelessly: after a whole step, G's BatchNorm
    statistics are those of ONE training-mode pass (the G step's), not two."""
    model = DCGAN(**SMALL, dropout=0.3, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
    z = latents(8, 2)
    model.noise_fn = fixed_noise(z)  # the D step and the G step see the same z
    G = model.generator
    assert len(G.non_trainable_weights) == 4  # two BatchNorms: moving mean and variance each
    G_ref = keras.models.clone_model(G)
    G_ref.set_weights(G.get_weights())
    before = [np.array(v) for v in G.non_trainable_weights]

    model.train_step(tf.constant(blobs(8)))
    G_ref(z, training=True)  # one pass, with G's weights before the update (as in the G step)
    for a, b in zip(G.non_trainable_weights, G_ref.non_trainable_weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)
    assert not all(np.array_equal(a, np.array(b)) for a, b in zip(before, G.non_trainable_weights))
    G_ref(z, training=True)  # a second pass, as a stateful D step would have added, moves them again
    assert not np.allclose(np.array(G.non_trainable_weights[0]), np.array(G_ref.non_trainable_weights[0]))


def test_training_flag_reaches_dropout_and_batchnorm(blobs):
    model = DCGAN(**SMALL, dropout=0.5, seed=0)
    model.compile()
    bn = [layer for layer in model.generator.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    mean0 = np.array(bn.moving_mean)
    real = tf.constant(blobs(8))
    z = latents(8, 1)
    model.noise_fn = fixed_noise(z)
    D = model.discriminator
    d_inference = discriminator_loss(D(real, training=False), D(model.generator(z, training=True), training=False))
    logs = model.train_step(real)
    assert not np.allclose(bn.moving_mean, mean0)  # G ran with training=True
    # D ran with dropout active: its training loss is not the inference-mode loss.
    assert float(logs["d_loss"]) != pytest.approx(float(np.mean(d_inference)), rel=1e-3)
    # test_step runs in inference mode: deterministic and equal to the hand value.
    model.reset_metrics()
    fake = model.generator(z, training=False)
    expected = discriminator_loss(D(real, training=False), D(fake, training=False))
    logs = model.test_step(real)
    assert float(logs["d_loss"]) == pytest.approx(float(np.mean(expected)), rel=1e-5)


def test_fit_draws_fresh_noise_twice_every_step(blobs):
    """The D step and the G step each draw a new z from the model's training stream."""
    model = DCGAN(**SMALL, seed=3)
    model.compile(run_eagerly=True)  # so the noise hook sees the values
    drawn = []

    def recording(shape, seed):
        drawn.append(np.array(keras.random.normal(shape, seed=seed)))
        return drawn[-1]

    model.noise_fn = recording
    model.fit(blobs(12), batch_size=4, epochs=1, verbose=0)  # 3 steps
    assert len(drawn) == 6 and all(z.shape == (4, 8) for z in drawn)
    assert len({tuple(np.round(z[0], 5)) for z in drawn}) == 6  # six different draws

    compiled = DCGAN(**SMALL, seed=3)
    compiled.compile()
    state0 = np.array(compiled.noise_seed_generator.state)
    compiled.fit(blobs(12), batch_size=4, epochs=1, verbose=0)
    state1 = np.array(compiled.noise_seed_generator.state)
    np.testing.assert_array_equal(state1 - state0, [0, 6])  # the graph advanced the stream twice a step
    # evaluate() draws from its own stream: the training noise does not shift.
    eval0 = np.array(compiled.eval_seed_generator.state)
    compiled.evaluate(blobs(8), batch_size=4, verbose=0)
    np.testing.assert_array_equal(np.array(compiled.noise_seed_generator.state), state1)
    np.testing.assert_array_equal(np.array(compiled.eval_seed_generator.state) - eval0, [0, 2])


def test_seeded_runs_repeat_and_generate_is_deterministic(blobs):
    def run(seed):
        keras.utils.set_random_seed(seed)
        model = DCGAN(**SMALL, seed=seed)
        model.compile()
        history = model.fit(blobs(16), batch_size=8, epochs=2, verbose=0, shuffle=False).history
        return model, history

    m1, h1 = run(5)
    m2, h2 = run(5)
    m3, h3 = run(6)
    assert h1 == h2 and h1 != h3
    np.testing.assert_array_equal(m1.generate(4, seed=0), m2.generate(4, seed=0))
    np.testing.assert_array_equal(m1.generate(4, seed=0), m1.generate(4, seed=0))
    assert not np.allclose(m1.generate(4, seed=0), m1.generate(4, seed=1))
    assert not np.allclose(m1.generate(4), m1.generate(4))  # seed=None: a fresh stream
    # generate's latents are NumPy's default_rng(seed): the same on any device.
    np.testing.assert_array_equal(
        m1.sample_latents(3, seed=7), np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    )


def test_conditional_labels_change_the_images(blobs):
    keras.utils.set_random_seed(0)
    model = ConditionalGAN(num_classes=4, **SMALL, seed=0)
    model.compile()
    images, labels = blobs(16), np.arange(16) % 4
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    z = model.sample_latents(4, seed=0)
    a = model.generate_from_latents(z, np.zeros(4, int))
    b = model.generate_from_latents(z, np.ones(4, int))
    assert np.abs(a - b).mean() > 1e-3
    np.testing.assert_array_equal(
        model.generate(4, seed=2, labels=[0, 1, 2, 3]), model.generate(4, 2, labels=[0, 1, 2, 3])
    )
    # One int is broadcast to every image; generate(n, seed, labels) is G(z, labels) on sample_latents(n, seed).
    np.testing.assert_array_equal(model.generate(3, seed=1, labels=2), model.generate(3, seed=1, labels=[2, 2, 2]))
    np.testing.assert_array_equal(
        model.generate(3, seed=1, labels=[1, 0, 3]),
        model.generate_from_latents(model.sample_latents(3, seed=1), [1, 0, 3]),
    )
    # The discriminator scores the same image differently under different labels.
    scores = model.discriminator_logits(np.repeat(images[:1], 4, 0), np.arange(4))
    assert np.ptp(scores) > 0


def test_conditional_fit_on_a_labelled_dataset_and_evaluate(blobs):
    model = ConditionalGAN(num_classes=4, **SMALL, seed=0)
    model.compile()
    ds = tf.data.Dataset.from_tensor_slices((blobs(16), np.arange(16) % 4)).batch(8)
    history = model.fit(model.check_dataset(ds), epochs=2, verbose=0).history
    assert set(history) == {"d_loss", "g_loss", "d_accuracy", "real_score", "fake_score"}
    assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in history.values())
    logs = model.evaluate(ds, verbose=0, return_dict=True)
    assert set(logs) == set(history)


# --------------------------------------------------------------------------- #
# The metrics contract.
# --------------------------------------------------------------------------- #


def test_evaluate_reports_the_mean_over_all_images_and_resets(blobs):
    model = DCGAN(**SMALL, seed=0)
    model.compile()
    x = blobs(10)
    z = latents(10, 2)
    model.noise_fn = fixed_noise(z)  # batch b uses z[:b]
    D, G = model.discriminator, model.generator
    per_example = []
    for start in (0, 4, 8):  # batches of 4, 4 and a short last one of 2
        xb = x[start : start + 4]
        fake = G(z[: len(xb)], training=False)
        per_example.append(np.array(discriminator_loss(D(xb, training=False), D(fake, training=False))))
    expected = np.concatenate(per_example).mean()  # not the mean of the 3 batch means
    for _ in range(2):  # evaluate twice: trackers are reset in between
        logs = model.evaluate(x, batch_size=4, verbose=0, return_dict=True)
        assert logs["d_loss"] == pytest.approx(expected, rel=1e-5)
    batch_means = np.mean([p.mean() for p in per_example])
    assert abs(expected - batch_means) > 1e-6  # the two averages differ here


def test_history_holds_epoch_means_reset_each_epoch(blobs):
    model = DCGAN(**SMALL, dropout=0.0, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(0.0), g_optimizer=keras.optimizers.SGD(0.0))
    x = blobs(16)
    z = latents(4, 3)
    model.noise_fn = fixed_noise(z)
    # No learning, fixed noise, no dropout: each batch's per-example values are computable
    # by hand. Epoch 1 sees batches 1-2 of a repeating dataset, epoch 2 batches 3-4, so
    # trackers that were not reset would report a mean over all four in epoch 2.
    G, D = model.generator, model.discriminator
    fake_logits = np.ravel(D(G(z, training=True), training=True))
    real_logits = [np.ravel(D(x[i : i + 4], training=True)) for i in range(0, 16, 4)]
    d_vals = [np.array(discriminator_loss(r[:, None], fake_logits[:, None])) for r in real_logits]
    g_val = np.array(generator_loss(fake_logits))
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4).repeat()
    history = model.fit(ds, steps_per_epoch=2, epochs=2, verbose=0).history
    for epoch in range(2):
        batches = slice(2 * epoch, 2 * epoch + 2)
        real = np.concatenate(real_logits[batches])
        assert history["d_loss"][epoch] == pytest.approx(np.concatenate(d_vals[batches]).mean(), rel=1e-5)
        assert history["g_loss"][epoch] == pytest.approx(g_val.mean(), rel=1e-5)
        correct = np.r_[real > 0, fake_logits < 0, fake_logits < 0]  # each batch's fakes are the same
        assert history["d_accuracy"][epoch] == pytest.approx(correct.mean(), rel=1e-6)
        assert history["real_score"][epoch] == pytest.approx(special.expit(real).mean(), rel=1e-5)
        assert history["fake_score"][epoch] == pytest.approx(special.expit(fake_logits).mean(), rel=1e-5)
    running = np.concatenate(d_vals).mean()
    assert abs(history["d_loss"][1] - running) > 1e-3  # so the check above can tell them apart


# --------------------------------------------------------------------------- #
# XLA and mixed precision.
# --------------------------------------------------------------------------- #


def test_xla_step_matches_the_graph_step(blobs):
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = ConditionalGAN(num_classes=3, **SMALL, dropout=0.0, seed=0)
        model.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        model.noise_fn = fixed_noise(latents(8, 0))
        history = model.fit(blobs(16), np.arange(16) % 3, batch_size=8, epochs=2, verbose=0, shuffle=False).history
        results.append((history, model.generator.get_weights()))
    (h0, w0), (h1, w1) = results
    for key in h0:
        np.testing.assert_allclose(h0[key], h1[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_mixed_float16_step_matches_the_float32_step(blobs):
    """Loss scaling is applied and undone: one SGD step moves the weights as in float32.

    Both losses are multiplied by the scale before the gradient (``scale_loss``) and
    the LossScaleOptimizer divides it out; without the first, this step would be
    16x too small. A fixed scale of 16 keeps float16 gradients far from overflow.
    """
    x = tf.constant(blobs(8))
    z = latents(8, 4)
    previous = keras.config.dtype_policy()
    deltas, init = {}, None
    try:
        for policy in ("float32", "mixed_float16"):
            keras.config.set_dtype_policy(policy)
            model = DCGAN(**SMALL, dropout=0.0, ema_decay=0.0, seed=0)
            init = model.get_weights() if init is None else init
            model.set_weights(init)
            if policy == "float32":
                model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
            else:
                scaled = lambda: keras.optimizers.LossScaleOptimizer(  # noqa: E731
                    keras.optimizers.SGD(0.1), initial_scale=16.0, dynamic_growth_steps=10**6
                )
                model.compile(d_optimizer=scaled(), g_optimizer=scaled())
            model.noise_fn = fixed_noise(z)
            model.train_step(x)
            deltas[policy] = [np.array(w) - w0 for w, w0 in zip(model.get_weights(), init)]
    finally:
        keras.config.set_dtype_policy(previous)
    assert_same_update(deltas["float32"], deltas["mixed_float16"], floor=1e-4, min_moved=6)  # G's and D's kernels


def three_groups(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images in [-1, 1] from three well-separated groups (a square in one of three rows), and the group ids."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % 3
    x = np.full((n, 16, 16, 1), -1.0, np.float32)
    for i, g in enumerate(group):
        x[i, 2 + 5 * g : 6 + 5 * g, 3:8] = 1.0
    return np.clip(x + 0.05 * rng.standard_normal(x.shape).astype(np.float32), -1.0, 1.0), group


def test_mixed_float16_trains_with_float32_outputs_and_scaled_losses(blobs):
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = DCGAN(**SMALL, seed=0)
        model.compile()
        assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        history = model.fit(blobs(16), batch_size=8, epochs=1, verbose=0).history
        assert all(np.isfinite(v[0]) for v in history.values())
        assert int(model.d_optimizer.iterations) == 2 and int(model.g_optimizer.iterations) == 2
        images = model.generate(3, seed=0)
        assert images.dtype == np.float32
        z = model.sample_latents(3, seed=0)
        assert model.generator(z).dtype == "float32"
        assert model.discriminator(model.generator(z)).dtype == "float32"
        assert model.generator.layers[1].compute_dtype == "float16"  # the body runs in half precision
        clustered = ClusteredGAN(3, **SMALL, seed=0)  # the nearest-centroid step runs in float32
        x, _ = three_groups(16)
        ids = clustered.fit_clusters(x)
        assert clustered.centroids.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(clustered.nearest_cluster(x)), ids)
        clustered.compile(jit_compile=True)
        history = clustered.fit(x, batch_size=8, epochs=1, verbose=0).history
        assert all(np.isfinite(v[0]) for v in history.values())
        assert clustered.generate(3, seed=0).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy(policy)


# --------------------------------------------------------------------------- #
# Bad input: fast, clear errors (TypeError for a type, ValueError for a value).
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kwargs, error, match",
    BAD_IMAGE_MODEL_ARGUMENTS
    + [
        (dict(generator_filters=()), TypeError, "generator_filters must be a non-empty sequence"),
        (dict(dropout=1.0), ValueError, r"dropout must be in \[0.0, 1.0\), got 1.0"),
        (dict(dropout="0.1"), TypeError, "dropout must be a number"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(ema_decay=1.0), ValueError, r"ema_decay must be in \[0.0, 1.0\)"),
        (dict(ema_decay=-0.5), ValueError, "ema_decay"),
        (dict(num_classes=3), TypeError, "unexpected keyword argument 'num_classes'"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DCGAN(**kwargs)


def test_bad_generation_requests():
    model = DCGAN(**SMALL)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        model.generate(0)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        model.generate(-2)
    with pytest.raises(TypeError, match="num_images"):
        model.generate(2.0)
    with pytest.raises(ValueError, match="DCGAN is unconditional"):
        model.generate(2, labels=[0, 1])
    with pytest.raises(ValueError, match="DCGAN is unconditional"):
        model.generate_rejection(2, labels=1)
    cgan = ConditionalGAN(num_classes=4, **SMALL)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        cgan.generate(2, labels=[0, 4])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        cgan.generate(1, labels=[-1])
    with pytest.raises(ValueError, match="labels must have 3 entries"):
        cgan.generate(3, labels=[0, 1])
    with pytest.raises(TypeError, match="labels must be an array of integer class ids"):
        cgan.generate(2, labels=["a", "b"])
    with pytest.raises(ValueError, match="needs labels"):
        cgan.generate(2)
    with pytest.raises(ValueError, match="needs labels"):
        cgan.generate_rejection(2)
    with pytest.raises(ValueError, match="needs one class id per latent"):
        cgan.generate_from_latents(latents(2, 0))
    with pytest.raises(ValueError, match=r"labels must have 2 entries"):
        cgan.generate_from_latents(latents(2, 0), [0, 1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalGAN(num_classes=1)
    with pytest.raises(ValueError, match=r"z must have shape \(N >= 1, 8\)"):
        model.generate_from_latents(np.zeros((2, 3)))


def test_wrong_images_are_rejected_before_training(blobs):
    model = DCGAN(**SMALL)
    model.compile()
    with pytest.raises(ValueError, match="channel count 1"):  # the trace-time check in train_step
        model.fit(np.zeros((8, 16, 16, 3), np.float32), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 1\)"):
        model.fit(tf.data.Dataset.from_tensor_slices(np.zeros((8, 28, 28, 1), np.float32)).batch(4), verbose=0)
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 1\)"):
        model.evaluate(np.zeros((8, 16, 16), np.float32), verbose=0)
    with pytest.raises(ValueError, match="channel count 1"):
        model.train_step(tf.zeros((2, 16, 16, 3)))
    assert int(model.d_optimizer.iterations) == 0  # nothing was trained
    # After a first fit, Keras retraces with relaxed shapes: the step checks them when it runs.
    trained = DCGAN(**SMALL)
    trained.compile()
    trained.fit(blobs(8), batch_size=4, verbose=0)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=r"\(batch, 16, 16, 1\)"):
        trained.fit(np.zeros((8, 32, 32, 1), np.float32), batch_size=4, verbose=0)
    assert int(trained.d_optimizer.iterations) == 2
    with pytest.raises(ValueError, match="compile"):
        DCGAN(**SMALL).fit(blobs(4), verbose=0)
    with pytest.raises(ValueError, match="d_optimizer and g_optimizer"):
        model.compile(loss="mse")
    opt = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="two different"):
        model.compile(d_optimizer=opt, g_optimizer=opt)
    # check_dataset: the element spec, and the first batch's pixels against value_range.
    with pytest.raises(TypeError, match="dataset must be a tf.data.Dataset"):
        model.check_dataset(blobs(4))
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 1\)"):
        model.check_dataset(tf.data.Dataset.from_tensor_slices(np.zeros((4, 16, 16, 3), np.float32)).batch(2))
    raw = tf.data.Dataset.from_tensor_slices(255 * (blobs(4) + 1) / 2).batch(2)
    with pytest.raises(ValueError, match=r"pixel values must lie in \[-1, 1\], got min 0, max 255"):
        model.check_dataset(raw)
    good = tf.data.Dataset.from_tensor_slices(blobs(4)).batch(2)
    assert model.check_dataset(good) is good


def test_conditional_gan_rejects_bad_labels(blobs):
    model = ConditionalGAN(num_classes=4, **SMALL)
    model.compile()
    x = blobs(8)
    with pytest.raises(ValueError, match="needs labels"):  # traced: the batch has no labels
        model.fit(x, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)
    # A label out of range: arrays are checked whole before fit, datasets in the step (a graph
    # assertion: not the opaque embedding error).
    with pytest.raises(ValueError, match=r"y \(labels\) must lie in \[0, 4\), got values in \[4, 11\]"):
        model.fit(x, np.arange(4, 12), batch_size=4, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must lie in \[0, 4\)"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, np.arange(8) + 1)).batch(8), verbose=0)
    assert int(model.d_optimizer.iterations) == 0
    # check_dataset: structure and dtype from the spec, the first batch's labels read in Python.
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        model.check_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4))
    with pytest.raises(TypeError, match="labels must be integers, got dtype float32"):
        model.check_dataset(tf.data.Dataset.from_tensor_slices((x, np.zeros(8, np.float32))).batch(4))
    bad = tf.data.Dataset.from_tensor_slices((x, np.arange(8) + 1)).batch(8)
    for _ in range(2):  # a failing dataset is not remembered as checked
        with pytest.raises(ValueError, match=r"dataset: labels must lie in \[0, 4\), got values in \[1, 8\]"):
            model.check_dataset(bad)
    good, reads = counting_dataset(x.reshape(4, 2, 16, 16, 1), (np.arange(8) % 4).reshape(4, 2))
    model.check_dataset(good)
    model.check_dataset(good)
    assert len(reads) == 1  # the first batch is read once per dataset, not at every call
    model.fit(model.check_dataset(good), verbose=0)
    assert int(model.d_optimizer.iterations) == 4


@pytest.mark.parametrize("jit", [False, True])
def test_check_dataset_catches_a_bad_label_in_a_later_batch(jit, blobs):
    """check_dataset reads only the first batch; later ones are checked in the input pipeline,
    which also holds under XLA (that drops graph assertions and would clamp the lookup)."""
    model = ConditionalGAN(num_classes=4, **SMALL, seed=0)
    model.compile(jit_compile=jit)
    labels = np.arange(16) % 4
    labels[13] = 7
    later = tf.data.Dataset.from_tensor_slices((blobs(16), labels)).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"dataset: labels must lie in \[0, 4\)"):
        model.fit(model.check_dataset(later), verbose=0)
    negative = tf.data.Dataset.from_tensor_slices((blobs(8), np.r_[np.arange(4) % 4, [0, 1, -1, 2]])).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must lie in"):
        model.fit(model.check_dataset(negative), verbose=0)
    if not jit:  # without XLA the step's own assertion catches it too
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must lie in \[0, 4\)"):
            model.fit(later, verbose=0)


def test_predict_points_to_generate(blobs):
    model = DCGAN(**SMALL)
    model.compile()
    with pytest.raises(NotImplementedError, match="generate"):
        model.predict(blobs(2), verbose=0)


# --------------------------------------------------------------------------- #
# ClusteredGAN: k-means clusters as labels.
# --------------------------------------------------------------------------- #


def test_fit_clusters_is_scipy_kmeans_and_finds_the_groups():
    from scipy.cluster.vq import kmeans2

    x, group = three_groups(31)
    model = ClusteredGAN(3, **SMALL)
    ids = model.fit_clusters(x, seed=4)
    # Every cluster holds one group and every group one cluster.
    pairs = set(zip(ids.tolist(), group.tolist()))
    assert len(pairs) == 3 and len({i for i, _ in pairs}) == 3
    np.testing.assert_allclose(model.cluster_weights, np.bincount(ids, minlength=3) / 31)
    assert model.cluster_purity(x, group) == 1.0
    assert model.cluster_purity(x, np.arange(31) % 2) == pytest.approx((5 + 6 + 5) / 31)  # majority per cluster
    np.testing.assert_allclose(np.sort(model.cluster_weights), [10 / 31, 10 / 31, 11 / 31], rtol=1e-6)
    centroids, _ = kmeans2(x.reshape(31, -1).astype(np.float64), 3, iter=20, seed=4, minit="++")
    np.testing.assert_allclose(model.centroids, centroids, atol=1e-5)
    # The centroid of a group is its mean image.
    for k in range(3):
        np.testing.assert_allclose(np.asarray(model.centroids)[k], x[ids == k].reshape(-1, 256).mean(0), atol=1e-5)
    # A dataset of (images, labels) batches gives the same clusters (labels unused).
    ds = tf.data.Dataset.from_tensor_slices((x, group)).batch(8)
    again = ClusteredGAN(3, **SMALL)
    np.testing.assert_array_equal(again.fit_clusters(ds, seed=4), ids)
    assert again.cluster_purity(ds) == 1.0


def test_nearest_cluster_matches_scipy_vq():
    from scipy.cluster.vq import vq

    rng = np.random.default_rng(0)
    model = ClusteredGAN(7, **SMALL)
    centroids = rng.uniform(-1, 1, (7, 256)).astype(np.float32)
    model.centroids.assign(centroids)
    x = rng.uniform(-1, 1, (50, 16, 16, 1)).astype(np.float32)
    expected, _ = vq(x.reshape(50, -1).astype(np.float64), centroids.astype(np.float64))
    np.testing.assert_array_equal(np.asarray(model.nearest_cluster(x)), expected)


def test_clustered_step_is_the_conditional_step_on_nearest_centroid_ids():
    """One ClusteredGAN step equals one ConditionalGAN step fed the nearest-centroid ids as labels."""
    x, _ = three_groups(6)
    z = latents(6, 1)
    clustered = ClusteredGAN(3, **SMALL, dropout=0.0, seed=0)
    ids = clustered.fit_clusters(x)
    conditional = ConditionalGAN(3, **SMALL, dropout=0.0, seed=0)
    other = ConditionalGAN(3, **SMALL, dropout=0.0, seed=0)
    for model in (clustered, conditional, other):
        model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.1))
        model.noise_fn = fixed_noise(z)
    for model in (conditional, other):
        model.generator.set_weights(clustered.generator.get_weights())
        model.discriminator.set_weights(clustered.discriminator.get_weights())
    logs_c = clustered.train_step(tf.constant(x))
    logs_k = conditional.train_step((tf.constant(x), tf.constant(ids)))
    for key in ("d_loss", "g_loss", "d_accuracy"):
        assert float(logs_c[key]) == pytest.approx(float(logs_k[key]), rel=1e-5)
    for a, b in zip(
        clustered.generator.get_weights() + clustered.discriminator.get_weights(),
        conditional.generator.get_weights() + conditional.discriminator.get_weights(),
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # With other (wrong) ids the step differs: the ids do reach the networks.
    logs_other = other.train_step((tf.constant(x), tf.constant((ids + 1) % 3)))
    assert float(logs_other["d_loss"]) != pytest.approx(float(logs_k["d_loss"]), rel=1e-4)
    # Labels in the data are ignored: the step takes its ids from the centroids.
    np.testing.assert_array_equal(np.asarray(clustered.labels_for((x, (ids + 1) % 3))), ids)


def test_clustered_gan_samples_clusters_by_their_shares():
    model = ClusteredGAN(4, **SMALL, seed=0)
    model.centroids.assign(np.ones((4, 256), np.float32))
    shares = np.array([0.6, 0.3, 0.1, 0.0], np.float32)
    model.cluster_weights.assign(shares)
    n = 20_000
    for seed in (0, None):
        ids = model.sample_labels(n, seed=seed)
        assert ids.dtype == np.int32 and ids.shape == (n,)
        freq = np.bincount(ids, minlength=4) / n
        # 4 binomial standard deviations at most (0.0035 for p = 0.3), and never an empty cluster.
        np.testing.assert_allclose(freq, shares, atol=4 * np.sqrt(0.25 / n))
        assert freq[3] == 0
    np.testing.assert_array_equal(model.sample_labels(50, seed=3), model.sample_labels(50, seed=3))
    a, b = model.generate(6, seed=2), model.generate(6, seed=2)
    assert a.shape == (6, 16, 16, 1) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, b)
    # generate(n, seed) is G(z, k) with the sampled ids and the same z as sample_latents(n, seed).
    ids = model.sample_labels(6, seed=2)
    np.testing.assert_allclose(a, model.generate_from_latents(model.sample_latents(6, seed=2), ids), atol=1e-6)
    # Given cluster ids replace the draw.
    np.testing.assert_array_equal(model.generate(6, seed=2, labels=ids), a)
    assert not np.allclose(model.generate(6, seed=2, labels=(ids + 1) % 3), a)


def test_clustered_gan_rejects_bad_use(blobs):
    with pytest.raises(ValueError, match="num_clusters must be >= 2"):
        ClusteredGAN(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_classes'"):
        ClusteredGAN(3, num_classes=3)
    model = ClusteredGAN(3, **SMALL)
    model.compile()
    with pytest.raises(RuntimeError, match="fit_clusters"):
        model.fit(blobs(8), batch_size=4, verbose=0)
    with pytest.raises(RuntimeError, match="fit_clusters"):
        model.generate(2)
    with pytest.raises(ValueError, match="at least num_clusters=3 images"):
        model.fit_clusters(blobs(2))
    with pytest.raises(ValueError, match="channel count 1"):
        model.fit_clusters(np.zeros((8, 16, 16, 3), np.float32))
    with pytest.raises(TypeError, match="iterations must be an int"):
        model.fit_clusters(blobs(8), iterations=2.5)
    model.fit_clusters(blobs(12))
    with pytest.raises(ValueError, match="channel count 1"):
        model.fit(np.zeros((8, 16, 16, 3), np.float32), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        model.generate(0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.generate(2, labels=[0, 3])
    assert int(model.d_optimizer.iterations) == 0


# --------------------------------------------------------------------------- #
# Behaviour: a short training run improves the classifier FID.
# --------------------------------------------------------------------------- #


@pytest.mark.slow
def test_short_mnist_training_lowers_classifier_fid():
    from aigc_tf.data import load_images
    from aigc_tf.metrics import classifier_outputs, frechet_distance

    keras.utils.set_random_seed(0)
    train = load_images("mnist", "train[:6144]", batch_size=64, value_range=(-1, 1), seed=0, drop_remainder=True)
    test = np.concatenate([x.numpy() for x in load_images("mnist", "test[:2000]", batch_size=1000)])
    ref, _ = classifier_outputs(test, "mnist")
    model = DCGAN(latent_dim=64, generator_filters=(64, 32), discriminator_filters=(32, 64), seed=0)
    model.compile(jit_compile=True)

    def fid():
        feats, _ = classifier_outputs(model.generate(2000, seed=0), "mnist", value_range=(-1, 1))
        return frechet_distance(feats, ref)

    before = fid()
    model.fit(model.check_dataset(train), epochs=3, verbose=0)  # 288 steps
    after = fid()
    assert after < 0.6 * before, (before, after)  # 0.50 when written


# --------------------------------------------------------------------------- #
# The game's theory, through the package's losses (notebook 01 section 1).
# Toy: p_g = N(0, 1), p_data = N(2, 0.5^2).
# --------------------------------------------------------------------------- #


def toy_log_ratio(x):
    """log p_data(x) - log p_g(x) for the toy, in closed form: (log 2 - 8) + 8x - 1.5x^2."""
    return np.log(2) - 8 + 8 * x - 1.5 * x**2


def test_the_expected_d_loss_is_minimal_at_the_log_density_ratio():
    """For fixed x, E loss = p_data(x) softplus(-l) + p_g(x) softplus(l) is minimal at the logit
    l*(x) = log p_data(x) / p_g(x), i.e. sigmoid(l*) = D*(x) = p_data / (p_data + p_g); for the
    toy that logit is the quadratic notebook 01 fits."""
    xs = np.linspace(-3, 5, 9)
    p_data, p_g = stats.norm.pdf(xs, 2.0, 0.5), stats.norm.pdf(xs, 0.0, 1.0)
    np.testing.assert_allclose(np.log(p_data / p_g), toy_log_ratio(xs), atol=1e-9)
    grid = np.linspace(-30, 30, 60001).astype(np.float32)
    # discriminator_loss(real, fake) with the same logit l, the other side switched off.
    real_part = np.array(discriminator_loss(grid[:, None], np.full((len(grid), 1), -1e4, np.float32)))
    fake_part = np.array(discriminator_loss(np.full((len(grid), 1), 1e4, np.float32), grid[:, None]))
    for x, pd, pg in zip(xs, p_data, p_g):
        best = grid[np.argmin(pd * real_part + pg * fake_part)]
        assert special.expit(best) == pytest.approx(pd / (pd + pg), abs=1e-3)
        if abs(toy_log_ratio(x)) < 25:  # inside the grid
            assert best == pytest.approx(toy_log_ratio(x), abs=2e-3)


def test_the_expected_d_loss_at_the_optimum_is_log_4_minus_twice_the_jensen_shannon_divergence():
    """min_D E[discriminator_loss] = -max_D V(D, G) = log 4 - 2 JSD(p_data || p_g), by quadrature;
    any other logit does worse."""
    x = np.linspace(-12, 14, 260_001)
    p_data, p_g = stats.norm.pdf(x, 2.0, 0.5), stats.norm.pdf(x, 0.0, 1.0)

    def expected_loss(logits):
        real = np.array(bce_from_logits(1.0, logits.astype(np.float32)), np.float64)
        fake = np.array(bce_from_logits(0.0, logits.astype(np.float32)), np.float64)
        return np.trapezoid(p_data * real + p_g * fake, x)

    m = 0.5 * (p_data + p_g)
    with np.errstate(divide="ignore", invalid="ignore"):  # p = 0 far in the tails: 0 log 0 = 0
        jsd = sum(0.5 * np.trapezoid(np.where(p > 0, p * np.log(p / m), 0.0), x) for p in (p_data, p_g))
    assert 0 < jsd < np.log(2)
    optimum = expected_loss(toy_log_ratio(x))
    assert optimum == pytest.approx(np.log(4) - 2 * jsd, abs=1e-5)
    for shift in (-0.5, 0.5):
        assert expected_loss(toy_log_ratio(x) + shift) > optimum + 1e-3


# --------------------------------------------------------------------------- #
# Discriminator rejection sampling.
# --------------------------------------------------------------------------- #


def test_rejection_acceptance_hand_values():
    logits = np.array([-3.0, 0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(rejection_acceptance(logits, 1.0), [np.exp(-4), np.exp(-1), 1, 1, 1])
    assert rejection_acceptance(np.zeros((2, 3)), 0.0).shape == (2, 3)


def test_rejection_with_the_optimal_discriminator_recovers_p_data():
    """Notebook 01's toy, with D*'s logit the exact log ratio, largest at x = 8/3 where it is
    log 2 + 8/3. With that bound the kept proposals follow p_data, at a rate of e^-bound."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400_000)
    logit = toy_log_ratio(x)
    bound = np.log(2) + 8 / 3
    assert logit.max() <= bound
    kept = x[rng.random(len(x)) < rejection_acceptance(logit, bound)]
    rate = len(kept) / len(x)
    assert rate == pytest.approx(np.exp(-bound), abs=4 * np.sqrt(rate / len(x)))
    assert stats.kstest(kept, stats.norm(2.0, 0.5).cdf).pvalue > 0.01
    assert stats.kstest(kept, stats.norm(0.0, 1.0).cdf).pvalue < 1e-6
    # A bound below the largest ratio clips it: more samples kept, and no longer p_data.
    clipped = x[rng.random(len(x)) < rejection_acceptance(logit, bound - 3)]
    assert len(clipped) > 4 * len(kept)
    assert stats.kstest(clipped, stats.norm(2.0, 0.5).cdf).pvalue < 1e-6
    assert 0 < kept.mean() - clipped.mean()


def test_rejection_sample_over_stand_in_callables():
    """The sampler alone: the toy's proposals (x ~ N(0, 1), one per row) scored by the exact log
    ratio come out as p_data; a label written into each proposal stays with its slot."""
    propose = lambda rng, count, labels: rng.standard_normal((count, 1)).astype(np.float32)  # noqa: E731
    score = lambda x, labels: toy_log_ratio(x[:, 0])  # noqa: E731
    out = rejection_sample(propose, score, 3000, seed=0, bound=np.log(2) + 8 / 3)
    assert out.shape == (3000, 1) and out.dtype == np.float32
    assert stats.kstest(out[:, 0], stats.norm(2.0, 0.5).cdf).pvalue > 0.01
    # Every first proposal kept: the first rows of propose(default_rng(seed), ...).
    first = rejection_sample(propose, score, 7, seed=3, bound=-1e9)
    np.testing.assert_array_equal(first, np.random.default_rng(3).standard_normal((7, 1)).astype(np.float32))

    # Slot bookkeeping: each proposal carries its label in its value (plus jitter so scores vary).
    def labelled(rng, count, labels):
        return (0.3 * np.asarray(labels, np.float32) + 0.01 * rng.standard_normal(count))[:, None].astype(np.float32)

    labels = np.repeat(np.array([0, 1, 2, 2, 1, 0, 0]), 40)
    out = rejection_sample(labelled, lambda x, _: x[:, 0] * 10, len(labels), seed=4, labels=labels, burn_in=300)
    np.testing.assert_array_equal(np.round(out[:, 0] / 0.3), labels)
    with pytest.raises(RuntimeError, match="max_rounds=2"):
        rejection_sample(propose, score, 5, seed=0, bound=1e9, max_rounds=2, strict=True)
    # Not strict: the open slots keep their best-scoring proposal, with a warning and the count.
    report = {}
    with pytest.warns(RuntimeWarning, match="5 of 5 images still rejected after max_rounds=2"):
        kept = rejection_sample(propose, score, 5, seed=0, bound=1e9, max_rounds=2, stats=report)
    assert report["fallback"] == 5 and report["rounds"] == 2 and report["acceptance"] == 0.0
    # A class D scores far lower everywhere is not rejected whole: each label gets its own bound.
    low_class = lambda x, labels: x[:, 0] * 10 - 60.0 * (np.asarray(labels) == 2)  # noqa: E731
    report = {}
    out = rejection_sample(labelled, low_class, len(labels), seed=5, labels=labels, percentile=50, stats=report)
    np.testing.assert_array_equal(np.round(out[:, 0] / 0.3), labels)
    assert report["fallback"] == 0 and report["bounds"][2] < report["bounds"][0] - 50
    assert 0.05 < report["acceptance"] < 1.0
    assert kept.shape[0] == 5 and np.isfinite(kept).all()
    with pytest.raises(ValueError, match="percentile must be in"):
        rejection_sample(propose, score, 5, seed=0, percentile=101)
    with pytest.raises(TypeError, match="seed must be an int"):
        rejection_sample(propose, score, 5, seed=None)


def test_generate_rejection_keeps_what_d_rates_higher():
    keras.utils.set_random_seed(0)
    model = DCGAN(**SMALL, seed=0)
    # An untrained D's logits are all near 0, so it keeps almost everything; scaled up it
    # is decisive (if arbitrary), and what it keeps must score higher.
    logit = model.discriminator.get_layer("logit")
    kernel, bias = logit.get_weights()
    logit.set_weights([300 * kernel, bias])
    plain_logits = model.discriminator_logits(model.generate(300, seed=1))
    # A spread of distinct logits (not a few repeated values): half the proposals lie below the
    # median bound, so rejection has something to reject, whatever the platform's initial weights.
    assert np.std(plain_logits) > 0.5 and len(np.unique(plain_logits)) > 250
    a = model.generate_rejection(300, seed=1, percentile=50, burn_in=500)
    assert a.shape == (300, 16, 16, 1) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    assert a.value_range == (-1.0, 1.0)
    np.testing.assert_array_equal(a, model.generate_rejection(300, seed=1, percentile=50, burn_in=500))
    assert not np.array_equal(a, model.generate_rejection(300, seed=2, percentile=50, burn_in=500))
    plain = model.generate(300, seed=1)
    # The kept images score higher under D than plain samples (the same D, the same stream), and a
    # fixed bound at the plain samples' median keeps a set whose median is above it.
    assert model.discriminator_logits(a).mean() > model.discriminator_logits(plain).mean()
    median = float(np.median(model.discriminator_logits(plain)))
    kept = model.discriminator_logits(model.generate_rejection(300, seed=4, bound=median))
    assert np.median(kept) > median
    logits = model.discriminator_logits(plain)
    np.testing.assert_allclose(logits, model.discriminator(plain, training=False).numpy()[:, 0], atol=1e-6)
    # A bound below every logit accepts every first proposal: exactly generate(n, seed).
    np.testing.assert_array_equal(model.generate_rejection(40, seed=3, bound=-1e9), model.generate(40, seed=3))
    with pytest.raises(RuntimeError, match="max_rounds=2"):
        model.generate_rejection(5, seed=0, bound=1e9, max_rounds=2, strict=True)
    with pytest.warns(RuntimeWarning, match="still rejected"):
        fallback = model.generate_rejection(5, seed=0, bound=1e9, max_rounds=2)
    assert fallback.shape == (5, 16, 16, 1) and fallback.value_range == (-1.0, 1.0)
    with pytest.raises(ValueError, match="percentile must be in"):
        model.generate_rejection(5, percentile=101)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        model.generate_rejection(0)
    with pytest.raises(TypeError, match="seed must be an int"):
        model.generate_rejection(5, seed="a")
    with pytest.raises(ValueError, match="channel count 1"):
        model.discriminator_logits(np.zeros((2, 16, 16, 3), np.float32))
    assert model.generate_rejection(3).shape == (3, 16, 16, 1)  # seed=None: the model's stream


def test_conditional_generate_rejection_keeps_the_requested_labels(blobs):
    model = ConditionalGAN(3, **SMALL, seed=0)
    labels = np.array([0, 1, 2, 2, 1, 0, 0])
    np.testing.assert_array_equal(
        model.generate_rejection(7, seed=4, labels=labels, bound=-1e9), model.generate(7, seed=4, labels=labels)
    )
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.generate_rejection(2, labels=np.array([0, 3]))
    kept = model.generate_rejection(21, seed=4, labels=np.repeat(labels, 3), percentile=95, burn_in=300)
    assert kept.shape == (21, 16, 16, 1)

    clustered = ClusteredGAN(3, **SMALL, seed=0)
    with pytest.raises(RuntimeError, match="fit_clusters"):
        clustered.generate_rejection(4)
    clustered.fit_clusters(blobs(12))
    np.testing.assert_array_equal(clustered.generate_rejection(9, seed=5, bound=-1e9), clustered.generate(9, seed=5))
    assert clustered.generate_rejection(9, seed=5, percentile=80, burn_in=300).shape == (9, 16, 16, 1)


def test_quadratic_discriminator_reaches_the_optimal_logit():
    """Chapter 01's toy: for N(2, 0.5^2) vs N(0, 1), log D*/(1 - D*) = (log 2 - 8) + 8x - 1.5x^2."""
    from scipy import stats

    from aigc_tf.gan.toy import fit_quadratic_discriminator, quadratic_logit

    rng = np.random.default_rng(0)
    real = stats.norm(2.0, 0.5).rvs(20_000, random_state=rng)
    fake = stats.norm(0.0, 1.0).rvs(20_000, random_state=rng)
    w = fit_quadratic_discriminator(real, fake, steps=1000, learning_rate=0.2)
    np.testing.assert_allclose(np.asarray(w), [np.log(2) - 8, 8, -1.5], atol=0.4)
    x = np.float32(1.0)
    assert float(quadratic_logit(w, x)) == pytest.approx(float(np.sum(np.asarray(w))), rel=1e-6)
    with pytest.raises(TypeError, match="steps must be an int"):
        fit_quadratic_discriminator(real, fake, steps=1.5)
