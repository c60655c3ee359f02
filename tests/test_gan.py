"""Tests for aigc_tf.gan: loss maths against hand computation, the two-step
update (isolation, exact SGD step), noise and seeds, XLA, mixed precision, the
metrics contract, bad inputs, and a short behavioural training run.

Save/load and MirroredStrategy run in fresh processes: see test_gan_subprocess.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special
from step_utils import assert_same_update

from aigc_tf.gan import (
    DCGAN,
    ClusteredGAN,
    ConditionalGAN,
    discriminator_loss,
    generator_loss,
    minimax_generator_loss,
    rejection_acceptance,
)

SMALL = dict(latent_dim=8, image_shape=(16, 16, 1), generator_filters=(16, 8), discriminator_filters=(8, 16))


def blobs(n: int, seed: int = 0) -> np.ndarray:
    """Images in [-1, 1]: a bright square on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 16, 16, 1), -1.0, np.float32)
    for i, (r, c) in enumerate(rng.integers(0, 12, (n, 2))):
        x[i, r : r + 4, c : c + 4] = 1.0
    return x


def fixed_latents(model, z: np.ndarray) -> None:
    """Replace the model's noise with a fixed array (first `batch` rows), for hand checks."""
    table = tf.constant(z)
    model._latents = lambda batch, *rows: table[:batch]


def trainable(net) -> list[np.ndarray]:
    return [np.array(v) for v in net.trainable_variables]


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
# Networks and shapes.
# --------------------------------------------------------------------------- #


def test_shapes_and_output_range():
    model = DCGAN(**SMALL, seed=0)
    z = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    images = model(z)
    assert images.shape == (5, 16, 16, 1)
    assert model.discriminator(images).shape == (5, 1)
    out = model.generate(7, seed=1)
    assert out.shape == (7, 16, 16, 1) and out.dtype == np.float32
    assert out.min() >= -1 and out.max() <= 1
    default = DCGAN()
    assert default.generate(2, seed=0).shape == (2, 28, 28, 1)
    assert isinstance(default.generator, keras.Model) and isinstance(default.discriminator, keras.Model)
    cgan = ConditionalGAN(num_classes=3, **SMALL)
    assert cgan.generate([0, 2, 1, 1], seed=0).shape == (4, 16, 16, 1)
    assert cgan.discriminator([np.array(images), np.array([0, 1, 2, 0, 1])]).shape == (5, 1)


# --------------------------------------------------------------------------- #
# The training step.
# --------------------------------------------------------------------------- #


def test_train_step_is_an_exact_d_step_then_g_step():
    """One SGD step reproduced by hand: D on (real, G(z1)); then G through the *updated* D."""
    keras.utils.set_random_seed(1)
    lr_d, lr_g = 0.05, 0.1
    model = DCGAN(**SMALL, dropout=0.0, label_smoothing=0.1, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(lr_d), g_optimizer=keras.optimizers.SGD(lr_g))
    real = tf.constant(blobs(6))
    z = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    fixed_latents(model, z)
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


def test_averaged_generator_follows_the_ema_formula_and_generates():
    """ema_t = d_t ema_{t-1} + (1 - d_t) w_t with d_t = min(d, (1 + t) / (10 + t)), for
    weights and BatchNorm statistics; generate() runs G with exactly those values."""
    model = DCGAN(**SMALL, ema_decay=0.9, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.5))
    z = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    # Before training the average is G itself.
    np.testing.assert_array_equal(model.generate_from_latents(z), model.generate_from_latents(z, average=False))
    ema = [np.array(v) for v in model.ema_weights]
    assert len(ema) == len(_all_g_variables(model)) > len(model.generator.trainable_variables)
    for t in (1, 2, 3):
        model.train_step(tf.constant(blobs(8, seed=t)))
        assert int(model.g_optimizer.iterations) == t
        d = min(0.9, (1 + t) / (10 + t))
        assert float(model.ema_decay_at(t)) == pytest.approx(d)
        ema = [d * e + (1 - d) * np.array(v) for e, v in zip(ema, _all_g_variables(model))]
        for got, want in zip(model.ema_weights, ema):
            np.testing.assert_allclose(np.array(got), want, rtol=1e-5, atol=1e-6)
    assert float(model.ema_decay_at(10_000)) == pytest.approx(0.9)
    # The averaged weights differ from G's, and generate() uses them.
    raw = model.generate_from_latents(z, average=False)
    averaged = model.generate_from_latents(z)
    assert not np.allclose(raw, averaged, atol=1e-4)
    np.testing.assert_allclose(raw, model.generator(z, training=False), atol=1e-6)
    saved = [np.array(v) for v in _all_g_variables(model)]
    for v, e in zip(_all_g_variables(model), model.ema_weights):
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
    for t in (1, 10, 100, 8989, 8990, 50_000):
        assert float(model.ema_decay_at(t)) == pytest.approx(min(0.999, (1 + t) / (10 + t)), rel=1e-6)
    assert float(model.ema_decay_at(1)) == pytest.approx(2 / 11)
    assert float(model.ema_decay_at(8989)) < 0.999 and float(model.ema_decay_at(8991)) == pytest.approx(0.999)


def test_no_averaging_when_ema_decay_is_zero():
    model = DCGAN(**SMALL, ema_decay=0.0, seed=0)
    model.compile()
    model.train_step(tf.constant(blobs(8)))
    assert model.ema_weights == []
    z = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.generate_from_latents(z), model.generate_from_latents(z, average=False))
    np.testing.assert_allclose(model.generate_from_latents(z), model.generator(z, training=False), atol=1e-6)


@pytest.mark.parametrize("frozen", ["g", "d"])
def test_each_step_updates_only_its_own_network(frozen):
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


def test_d_step_and_g_step_touch_only_their_own_network():
    """The D step changes no variable of G, BatchNorm statistics included; the G step no weight of D."""
    model = DCGAN(**SMALL, dropout=0.3, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(0.1), g_optimizer=keras.optimizers.SGD(0.1))
    real = tf.constant(blobs(8))
    z = np.random.default_rng(2).normal(size=(8, 8)).astype(np.float32)
    fixed_latents(model, z)
    G, D = model.generator, model.discriminator
    assert len(G.non_trainable_weights) == 4  # two BatchNorms: moving mean and variance each
    values = lambda net: [np.array(v) for v in net.weights]  # noqa: E731
    g0, d0 = values(G), values(D)
    G_ref = keras.models.clone_model(G)
    G_ref.set_weights(G.get_weights())

    model._discriminator_step(real, None, (8, 0))
    assert all(np.array_equal(a, b) for a, b in zip(g0, values(G)))  # nothing of G moved
    assert not all(np.array_equal(a, b) for a, b in zip(d0, values(D)))
    d1 = values(D)
    model._generator_step(8, None, (8, 0))
    assert all(np.array_equal(a, b) for a, b in zip(d1, values(D)))  # nothing of D moved
    # G's BatchNorm statistics moved once, by the G step's own training-mode pass.
    G_ref(z, training=True)
    for a, b in zip(G.non_trainable_weights, G_ref.non_trainable_weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)
    assert not all(np.array_equal(a, np.array(b)) for a, b in zip(g0[-4:], G.non_trainable_weights))


def test_training_flag_reaches_dropout_and_batchnorm():
    model = DCGAN(**SMALL, dropout=0.5, seed=0)
    model.compile()
    bn = [layer for layer in model.generator.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    mean0 = np.array(bn.moving_mean)
    real = tf.constant(blobs(8))
    z = np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32)
    fixed_latents(model, z)
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


def test_fit_draws_fresh_noise_every_step():
    model = DCGAN(**SMALL, seed=3)
    model.compile()
    z1, z2 = np.array(model._latents(4, (4, 0))), np.array(model._latents(4, (4, 0)))
    assert not np.allclose(z1, z2)
    state0 = np.array(model.seed_generator.state)
    model.fit(blobs(12), batch_size=4, epochs=1, verbose=0)  # 3 compiled steps
    state1 = np.array(model.seed_generator.state)
    assert not np.array_equal(state0, state1)  # the graph advanced the model's generator
    # Two draws per step (D step and G step), each a different z: 2 + 3 x 2 draws in all.
    fresh = DCGAN(**SMALL, seed=3)
    draws = {tuple(np.round(np.array(fresh._latents(4, (4, 0)))[0], 5)) for _ in range(8)}
    assert len(draws) == 8
    assert np.array_equal(np.array(fresh.seed_generator.state), state1)
    # evaluate() draws from its own stream: the training noise does not shift.
    model.evaluate(blobs(8), batch_size=4, verbose=0)
    assert np.array_equal(np.array(model.seed_generator.state), state1)
    assert not np.array_equal(np.array(model.eval_seed_generator.state), np.array(fresh.eval_seed_generator.state))


def test_seeded_runs_repeat_and_generate_is_deterministic():
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


def test_conditional_labels_change_the_images():
    keras.utils.set_random_seed(0)
    model = ConditionalGAN(num_classes=4, **SMALL, seed=0)
    model.compile()
    images, labels = blobs(16), np.arange(16) % 4
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)
    z = model.sample_latents(4, seed=0)
    a = model.generate_from_latents(z, np.zeros(4, int))
    b = model.generate_from_latents(z, np.ones(4, int))
    assert np.abs(a - b).mean() > 1e-3
    np.testing.assert_array_equal(model.generate([0, 1, 2, 3], seed=2), model.generate([0, 1, 2, 3], seed=2))
    # The discriminator scores the same image differently under different labels.
    scores = model.discriminator([np.repeat(images[:1], 4, 0), np.arange(4)])
    assert np.ptp(np.array(scores)) > 0


def test_conditional_fit_on_a_labelled_dataset_and_evaluate():
    model = ConditionalGAN(num_classes=4, **SMALL, seed=0)
    model.compile()
    ds = tf.data.Dataset.from_tensor_slices((blobs(16), np.arange(16) % 4)).batch(8)
    history = model.fit(ds, epochs=2, verbose=0).history
    assert set(history) == {"d_loss", "g_loss", "d_accuracy", "real_score", "fake_score"}
    assert all(len(v) == 2 and np.all(np.isfinite(v)) for v in history.values())
    logs = model.evaluate(ds, verbose=0, return_dict=True)
    assert set(logs) == set(history)


# --------------------------------------------------------------------------- #
# The metrics contract.
# --------------------------------------------------------------------------- #


def test_evaluate_reports_the_mean_over_all_images_and_resets():
    model = DCGAN(**SMALL, seed=0)
    model.compile()
    x = blobs(10)
    z = np.random.default_rng(2).normal(size=(10, 8)).astype(np.float32)
    fixed_latents(model, z)  # batch b uses z[:b]
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


def test_history_holds_epoch_means_reset_each_epoch():
    model = DCGAN(**SMALL, dropout=0.0, seed=0)
    model.compile(d_optimizer=keras.optimizers.SGD(0.0), g_optimizer=keras.optimizers.SGD(0.0))
    x = blobs(16)
    z = np.random.default_rng(3).normal(size=(4, 8)).astype(np.float32)
    fixed_latents(model, z)
    # No learning, fixed noise, no dropout: each batch's per-example losses are computable
    # by hand. Epoch 1 sees batches 1-2 of a repeating dataset, epoch 2 batches 3-4, so
    # trackers that were not reset would report a mean over all four in epoch 2.
    G, D = model.generator, model.discriminator
    fake = G(z, training=True)
    d_vals = [
        np.array(discriminator_loss(D(x[i : i + 4], training=True), D(fake, training=True))) for i in range(0, 16, 4)
    ]
    g_val = np.array(generator_loss(D(fake, training=True)))
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4).repeat()
    history = model.fit(ds, steps_per_epoch=2, epochs=2, verbose=0).history
    for epoch in range(2):
        expected = np.concatenate(d_vals[2 * epoch : 2 * epoch + 2]).mean()
        assert history["d_loss"][epoch] == pytest.approx(expected, rel=1e-5)
        assert history["g_loss"][epoch] == pytest.approx(g_val.mean(), rel=1e-5)
    running = np.concatenate(d_vals).mean()
    assert abs(history["d_loss"][1] - running) > 1e-3  # so the check above can tell them apart
    assert 0 <= history["d_accuracy"][0] <= 1
    assert 0 < history["real_score"][0] < 1 and 0 < history["fake_score"][0] < 1


# --------------------------------------------------------------------------- #
# XLA and mixed precision.
# --------------------------------------------------------------------------- #


def test_xla_step_matches_the_graph_step():
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = ConditionalGAN(num_classes=3, **SMALL, dropout=0.0, seed=0)
        model.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        fixed_latents(model, np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32))
        history = model.fit(blobs(16), np.arange(16) % 3, batch_size=8, epochs=2, verbose=0, shuffle=False).history
        results.append((history, model.generator.get_weights()))
    (h0, w0), (h1, w1) = results
    for key in h0:
        np.testing.assert_allclose(h0[key], h1[key], rtol=1e-4, atol=1e-5)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_mixed_float16_step_matches_the_float32_step():
    """Loss scaling is applied and undone: one SGD step moves the weights as in float32.

    Both losses are multiplied by the scale before the gradient (``scale_loss``) and
    the LossScaleOptimizer divides it out; without the first, this step would be
    16x too small. A fixed scale of 16 keeps float16 gradients far from overflow.
    """
    x = tf.constant(blobs(8))
    z = np.random.default_rng(4).normal(size=(8, 8)).astype(np.float32)
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
            fixed_latents(model, z)
            model.train_step(x)
            deltas[policy] = [np.array(w) - w0 for w, w0 in zip(model.get_weights(), init)]
    finally:
        keras.config.set_dtype_policy(previous)
    moved = assert_same_update(deltas["float32"], deltas["mixed_float16"], floor=1e-4)
    assert moved >= 6  # G's and D's kernels at least


def test_mixed_float16_trains_with_float32_outputs_and_scaled_losses():
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
# Bad input.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(latent_dim=0), ValueError, "latent_dim must be > 0"),
        (dict(latent_dim=-3), ValueError, "latent_dim must be > 0"),
        (dict(latent_dim=2.5), TypeError, "latent_dim must be an int"),
        (dict(image_shape=(30, 30, 1)), ValueError, "divisible by 4"),
        (dict(image_shape=(28, 28)), ValueError, r"\(H, W, C\)"),
        (dict(dropout=1.0), ValueError, "dropout"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(ema_decay=1.0), ValueError, r"ema_decay must be a float in \[0, 1\)"),
        (dict(ema_decay=-0.5), ValueError, "ema_decay"),
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
    cgan = ConditionalGAN(num_classes=4, **SMALL)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        cgan.generate([0, 4])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        cgan.generate([-1])
    with pytest.raises(ValueError, match="non-empty"):
        cgan.generate([])
    with pytest.raises(ValueError, match="num_classes"):
        ConditionalGAN(num_classes=1)


def test_wrong_images_are_rejected_before_training():
    model = DCGAN(**SMALL)
    model.compile()
    with pytest.raises(ValueError, match="channel count 1"):
        model.fit(np.zeros((8, 16, 16, 3), np.float32), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 1\)"):
        model.fit(tf.data.Dataset.from_tensor_slices(np.zeros((8, 28, 28, 1), np.float32)).batch(4), verbose=0)
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 1\)"):
        model.evaluate(np.zeros((8, 16, 16), np.float32), verbose=0)
    with pytest.raises(ValueError, match="channel count 1"):  # the trace-time check in train_step
        model.train_step(tf.zeros((2, 16, 16, 3)))
    assert int(model.d_optimizer.iterations) == 0  # nothing was trained
    with pytest.raises(RuntimeError, match="compile"):
        DCGAN(**SMALL).fit(blobs(4), verbose=0)
    with pytest.raises(ValueError, match="d_optimizer and g_optimizer"):
        model.compile(loss="mse")
    opt = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="two different"):
        model.compile(d_optimizer=opt, g_optimizer=opt)


def test_conditional_gan_rejects_bad_labels_in_fit():
    model = ConditionalGAN(num_classes=4, **SMALL)
    model.compile()
    x = blobs(8)
    with pytest.raises(ValueError, match="needs labels"):
        model.fit(x, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.fit(x, np.arange(8), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, np.arange(8) + 1)).batch(8), verbose=0)
    with pytest.raises(ValueError, match=r"\(images, labels\)"):
        model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0)
    with pytest.raises(ValueError, match="8 images but 7 labels"):
        model.fit(x, np.arange(7) % 4, batch_size=4, verbose=0)
    bad = tf.data.Dataset.from_tensor_slices((x, np.arange(8) + 1)).batch(8)
    for _ in range(2):  # a failing dataset is not remembered as checked
        with pytest.raises(ValueError, match=r"\[0, 4\)"):
            model.fit(bad, verbose=0)
    good = tf.data.Dataset.from_tensor_slices((x, np.arange(8) % 4)).batch(8)
    model.fit(good, verbose=0)
    assert good in model._labels_checked and bad not in model._labels_checked  # read once, not at every fit


@pytest.mark.parametrize("jit", [False, True])
def test_conditional_gan_catches_a_bad_label_in_a_later_batch(jit):
    """Only the first batch is read in Python; later ones are checked in the input pipeline
    (without it XLA would clamp the embedding lookup and train on silently)."""
    model = ConditionalGAN(num_classes=4, **SMALL, seed=0)
    model.compile(jit_compile=jit)
    labels = np.arange(16) % 4
    labels[13] = 7
    later = tf.data.Dataset.from_tensor_slices((blobs(16), labels)).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"x: labels must lie in \[0, 4\)"):
        model.fit(later, verbose=0)
    negative = tf.data.Dataset.from_tensor_slices((blobs(8), np.r_[np.arange(4) % 4, [0, 1, -1, 2]])).batch(4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels must lie in"):
        model.fit(negative, verbose=0)


def test_predict_points_to_generate():
    model = DCGAN(**SMALL)
    model.compile()
    with pytest.raises(NotImplementedError, match="generate"):
        model.predict(blobs(2), verbose=0)


# --------------------------------------------------------------------------- #
# ClusteredGAN: k-means clusters as labels.
# --------------------------------------------------------------------------- #


def three_groups(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images in [-1, 1] from three well-separated groups (a square in one of three rows), and the group ids."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % 3
    x = np.full((n, 16, 16, 1), -1.0, np.float32)
    for i, g in enumerate(group):
        x[i, 2 + 5 * g : 6 + 5 * g, 3:8] = 1.0
    return x + 0.05 * rng.standard_normal(x.shape).astype(np.float32), group


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
    z = np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)
    clustered = ClusteredGAN(3, **SMALL, dropout=0.0, seed=0)
    ids = clustered.fit_clusters(x)
    conditional = ConditionalGAN(3, **SMALL, dropout=0.0, seed=0)
    for model in (clustered, conditional):
        model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.1))
        fixed_latents(model, z)
    conditional.generator.set_weights(clustered.generator.get_weights())
    conditional.discriminator.set_weights(clustered.discriminator.get_weights())
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
    other = ConditionalGAN(3, **SMALL, dropout=0.0, seed=0)
    other.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.1))
    fixed_latents(other, z)
    other.generator.set_weights(conditional.generator.get_weights())
    other.discriminator.set_weights(conditional.discriminator.get_weights())
    assert float(other.train_step((tf.constant(x), tf.constant((ids + 1) % 3)))["d_loss"]) != pytest.approx(
        float(logs_k["d_loss"]), rel=1e-4
    )


def test_clustered_gan_samples_clusters_by_their_shares():
    model = ClusteredGAN(4, **SMALL, seed=0)
    model.centroids.assign(np.ones((4, 256), np.float32))
    shares = np.array([0.6, 0.3, 0.1, 0.0], np.float32)
    model.cluster_weights.assign(shares)
    n = 20_000
    for seed in (0, None):
        ids = model.sample_clusters(n, seed=seed)
        assert ids.dtype == np.int32 and ids.shape == (n,)
        freq = np.bincount(ids, minlength=4) / n
        # 4 binomial standard deviations at most (0.0035 for p = 0.3), and never an empty cluster.
        np.testing.assert_allclose(freq, shares, atol=4 * np.sqrt(0.25 / n))
        assert freq[3] == 0
    np.testing.assert_array_equal(model.sample_clusters(50, seed=3), model.sample_clusters(50, seed=3))
    a, b = model.generate(6, seed=2), model.generate(6, seed=2)
    assert a.shape == (6, 16, 16, 1) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, b)
    # generate(n, seed) is G(z, k) with the sampled ids and the same z as sample_latents(n, seed).
    ids = model.sample_clusters(6, seed=2)
    np.testing.assert_allclose(a, model.generate_from_latents(model.sample_latents(6, seed=2), ids), atol=1e-6)


def test_clustered_gan_rejects_bad_use():
    with pytest.raises(ValueError, match="num_clusters must be an int >= 2"):
        ClusteredGAN(1)
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
    model.fit_clusters(blobs(12))
    with pytest.raises(ValueError, match="channel count 1"):
        model.fit(np.zeros((8, 16, 16, 3), np.float32), batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        model.generate(0)
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
    model.fit(train, epochs=3, verbose=0)  # 288 steps
    after = fid()
    assert after < 0.6 * before, (before, after)  # 0.50 when written


# --------------------------------------------------------------------------- #
# The game's theory (checked numerically; notebook 01 section 1).
# --------------------------------------------------------------------------- #


def test_optimal_discriminator_minimises_the_expected_d_loss_pointwise():
    """For fixed x, E loss = p_data(x) softplus(-l) + p_g(x) softplus(l) is minimal at
    sigmoid(l) = D*(x) = p_data(x) / (p_data(x) + p_g(x))."""
    from scipy import stats

    xs = np.linspace(-3, 5, 9)
    p_data, p_g = stats.norm.pdf(xs, 2.0, 0.5), stats.norm.pdf(xs, 0.0, 1.0)
    grid = np.linspace(-30, 30, 60001).astype(np.float32)
    for x, pd, pg in zip(xs, p_data, p_g):
        # discriminator_loss(real, fake) with the same logit l, weighted by the densities
        real_part = np.array(discriminator_loss(grid[:, None], np.full((len(grid), 1), -1e4, np.float32)))
        fake_part = np.array(discriminator_loss(np.full((len(grid), 1), 1e4, np.float32), grid[:, None]))
        best = grid[np.argmin(pd * real_part + pg * fake_part)]
        assert special.expit(best) == pytest.approx(pd / (pd + pg), abs=1e-3)


def test_game_value_at_the_optimal_discriminator_is_jensen_shannon():
    """max_D V(D, G) = -log 4 + 2 JSD(p_data || p_g), by quadrature on a 1-D toy."""
    from scipy import integrate, stats

    p_data, p_g = stats.norm(2.0, 0.5).pdf, stats.norm(0.0, 1.0).pdf

    def d_star(x):
        return p_data(x) / (p_data(x) + p_g(x))

    value = integrate.quad(
        lambda x: p_data(x) * np.log(d_star(x)) + p_g(x) * np.log(1 - d_star(x)), -12, 14, limit=200
    )[0]
    m = lambda x: 0.5 * (p_data(x) + p_g(x))  # noqa: E731
    kl = lambda p, x: p(x) * np.log(p(x) / m(x))  # noqa: E731
    jsd = (
        0.5 * integrate.quad(lambda x: kl(p_data, x), -12, 14, limit=200)[0]
        + 0.5 * integrate.quad(lambda x: kl(p_g, x), -12, 14, limit=200)[0]
    )
    assert value == pytest.approx(-np.log(4) + 2 * jsd, abs=1e-6)
    assert 0 < jsd < np.log(2)


def test_toy_log_density_ratio_is_the_quadratic_used_in_notebook_01():
    """log N(x; 2, 0.5^2) - log N(x; 0, 1) = (log 2 - 8) + 8 x - 1.5 x^2: a logit
    quadratic in x represents D* exactly."""
    from scipy import stats

    x = np.linspace(-3, 5, 17)
    ratio = stats.norm.logpdf(x, 2.0, 0.5) - stats.norm.logpdf(x, 0.0, 1.0)
    np.testing.assert_allclose(ratio, np.log(2) - 8 + 8 * x - 1.5 * x**2, atol=1e-10)


# --------------------------------------------------------------------------- #
# Discriminator rejection sampling.
# --------------------------------------------------------------------------- #


def test_rejection_acceptance_hand_values():
    logits = np.array([-3.0, 0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(rejection_acceptance(logits, 1.0), [np.exp(-4), np.exp(-1), 1, 1, 1])
    assert rejection_acceptance(np.zeros((2, 3)), 0.0).shape == (2, 3)


def test_rejection_with_the_optimal_discriminator_recovers_p_data():
    """Notebook 01's toy: p_g = N(0, 1), p_data = N(2, 0.5^2), D*'s logit is the exact
    log ratio (log 2 - 8) + 8x - 1.5x^2, largest at x = 8/3 where it is log 2 + 8/3.
    With that bound the kept proposals follow p_data, at a rate of e^-bound."""
    from scipy import stats

    rng = np.random.default_rng(0)
    x = rng.standard_normal(400_000)
    logit = np.log(2) - 8 + 8 * x - 1.5 * x**2
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


def test_generate_rejection_keeps_what_d_rates_higher():
    model = DCGAN(**SMALL, seed=0)
    a = model.generate_rejection(300, seed=1, percentile=50, burn_in=500)
    assert a.shape == (300, 16, 16, 1) and a.dtype == np.float32 and np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, model.generate_rejection(300, seed=1, percentile=50, burn_in=500))
    assert not np.array_equal(a, model.generate_rejection(300, seed=2, percentile=50, burn_in=500))
    plain = model.generate(300, seed=1)
    # The kept images score higher under D than plain samples (the same D, the same stream).
    assert model.discriminator_logits(a).mean() > model.discriminator_logits(plain).mean()
    logits = model.discriminator_logits(plain)
    np.testing.assert_allclose(logits, model.discriminator(plain, training=False).numpy()[:, 0], atol=1e-6)
    # A bound below every logit accepts every first proposal: exactly generate(n, seed).
    np.testing.assert_array_equal(model.generate_rejection(40, seed=3, bound=-1e9), model.generate(40, seed=3))
    with pytest.raises(RuntimeError, match="max_rounds=2"):
        model.generate_rejection(5, seed=0, bound=1e9, max_rounds=2)
    with pytest.raises(ValueError, match="percentile must be in"):
        model.generate_rejection(5, percentile=101)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        model.generate_rejection(0)
    with pytest.raises(TypeError, match="seed must be an int"):
        model.generate_rejection(5, seed="a")
    with pytest.raises(ValueError, match="channel count 1"):
        model.discriminator_logits(np.zeros((2, 16, 16, 3), np.float32))
    assert model.generate_rejection(3).shape == (3, 16, 16, 1)  # seed=None: the model's stream


def test_conditional_generate_rejection_keeps_the_requested_labels():
    model = ConditionalGAN(3, **SMALL, seed=0)
    labels = np.array([0, 1, 2, 2, 1, 0, 0])
    np.testing.assert_array_equal(model.generate_rejection(labels, seed=4, bound=-1e9), model.generate(labels, seed=4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.generate_rejection(np.array([0, 3]))

    # Slot bookkeeping: a stand-in generator writes each proposal's label into its pixels
    # (plus a little z-dependent jitter so D's logits vary), so every kept image must carry
    # its own slot's label, whatever round filled it.
    def labelled_images(z, labels=None, **kwargs):
        value = 0.3 * np.asarray(labels, np.float32) + 0.01 * np.asarray(z)[:, 0]
        return np.broadcast_to(value[:, None, None, None], (len(z), 16, 16, 1)).astype(np.float32)

    model.generate_from_latents = labelled_images
    many = np.repeat(labels, 40)
    out = model.generate_rejection(many, seed=4, percentile=95, burn_in=300)
    np.testing.assert_array_equal(np.round(out.mean(axis=(1, 2, 3)) / 0.3), many)

    clustered = ClusteredGAN(3, **SMALL, seed=0)
    with pytest.raises(RuntimeError, match="fit_clusters"):
        clustered.generate_rejection(4)
    clustered.fit_clusters(blobs(12))
    np.testing.assert_array_equal(clustered.generate_rejection(9, seed=5, bound=-1e9), clustered.generate(9, seed=5))
    assert clustered.generate_rejection(9, seed=5, percentile=80, burn_in=300).shape == (9, 16, 16, 1)
