"""The ring-of-Gaussians toy of chapter 01: data, the mode-coverage metric, and the
mechanics of :class:`RingGAN` (packing, one D and one G update per step)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from aigc_tf.gan.ring import RingGAN, mode_centres, mode_coverage, ring_dataset, ring_of_gaussians, train_ring_gan


def test_ring_data_lies_on_its_modes():
    x = ring_of_gaussians(4000, seed=0, modes=8, radius=2.0, std=0.02)
    assert x.shape == (4000, 2) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(mode_centres(8, 2.0), axis=1), 2.0, rtol=1e-6)
    np.testing.assert_array_equal(ring_of_gaussians(10, seed=3), ring_of_gaussians(10, seed=3))
    d = np.linalg.norm(x[:, None] - mode_centres(8, 2.0)[None], axis=-1).min(axis=1)
    # the distance to the nearest centre of a 2-D Gaussian is Rayleigh(std): mean std sqrt(pi / 2)
    assert d.mean() == pytest.approx(0.02 * np.sqrt(np.pi / 2), rel=0.05)


def test_mode_coverage_on_constructed_sets():
    full = mode_coverage(ring_of_gaussians(2000, seed=1))
    assert full["modes_hit"] == 8 and full["high_quality"] > 0.98  # 3 std holds 98.9 % of a 2-D Gaussian
    assert min(full["counts"]) > 150
    one = mode_coverage(np.tile(mode_centres()[3], (500, 1)) + 0.01)
    assert one["modes_hit"] == 1 and one["high_quality"] == 1.0 and one["counts"][3] == 500
    assert one["modes_reached"] == 1 and one["nearest"][3] == 500
    off = mode_coverage(np.zeros((100, 2)))  # the centre of the ring: no mode within 3 std
    assert off["modes_hit"] == 0 and off["high_quality"] == 0.0
    # spread around the ring but far from every centre: all modes reached, none hit
    angles = np.linspace(0, 2 * np.pi, 800, endpoint=False)
    blurred = mode_coverage(1.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1))
    assert blurred["modes_reached"] == 8 and blurred["modes_hit"] == 0 and sum(blurred["nearest"]) == 800
    few = np.concatenate([ring_of_gaussians(1000, seed=2)[:5], np.tile(mode_centres()[0], (100, 1))])
    assert mode_coverage(few, min_count=20)["modes_hit"] == 1  # a handful of stray samples is not a mode
    with pytest.raises(ValueError, match="samples"):
        mode_coverage(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="num_std"):
        mode_coverage(np.zeros((3, 2)), num_std=0)


def test_ring_gan_packs_and_updates_each_network_in_its_own_step():
    keras.utils.set_random_seed(0)
    model = RingGAN(latent_dim=4, width=8, depth=1, pack=4, seed=0)
    model.compile()
    assert model.discriminator.inputs[0].shape[-1] == 8  # 4 points of 2 coordinates
    assert model(np.zeros((3, 4), "float32")).shape == (3, 2)
    g0 = [w.numpy().copy() for w in model.generator.weights]
    d0 = [w.numpy().copy() for w in model.discriminator.weights]
    logs = model.fit(ring_dataset(16, seed=0), epochs=1, steps_per_epoch=3, verbose=0).history
    assert set(logs) == {"d_loss", "g_loss"} and all(np.isfinite(v[0]) for v in logs.values())
    assert int(model.d_optimizer.iterations) == 3 and int(model.g_optimizer.iterations) == 3
    assert all(not np.allclose(a, b.numpy()) for a, b in zip(g0, model.generator.weights))
    assert all(not np.allclose(a, b.numpy()) for a, b in zip(d0, model.discriminator.weights))
    samples = model.generate(10, seed=1)
    np.testing.assert_array_equal(samples, model.generate(10, seed=1))
    assert samples.shape == (10, 2)
    with pytest.raises(ValueError, match="pack"):
        RingGAN(pack=0)


def test_ring_gan_config_round_trip():
    model = RingGAN(latent_dim=3, width=5, depth=2, pack=2, seed=7)
    clone = RingGAN.from_config(model.get_config())
    assert (clone.latent_dim, clone.width, clone.depth, clone.pack, clone.seed) == (3, 5, 2, 2, 7)


def test_train_ring_gan_is_seeded():
    a = train_ring_gan(pack=2, steps=5, batch_size=32, seed=0, latent_dim=4, width=8, depth=1).generate(20)
    b = train_ring_gan(pack=2, steps=5, batch_size=32, seed=0, latent_dim=4, width=8, depth=1).generate(20)
    np.testing.assert_allclose(a, b, atol=1e-6)
