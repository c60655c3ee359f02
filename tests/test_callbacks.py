"""Callbacks: the sample grid / GIF and the time budget (with a fake clock: no wall-clock asserts)."""

import math

import keras
import numpy as np
import pytest

from aigc_tf.callbacks import SampleGridCallback, TimeBudget, training_optimizers


class FakeClock:
    """Advances ``tick`` seconds every time it is read: a run of N batches lasts about 2N ticks."""

    def __init__(self, tick: float):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_sample_grid_callback_records_frames_and_writes_a_gif(tmp_path):
    import imageio.v3 as iio

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4 * 4)])
    model.compile("sgd", "mse")
    fixed = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    # Frames show the model's output for the same inputs: they change as the weights do.
    sample_fn = lambda m: m.predict(fixed, verbose=0).reshape(6, 4, 4, 1)  # noqa: E731
    gif = tmp_path / "progress.gif"
    cb = SampleGridCallback(sample_fn, every=2, value_range=(-3, 3), ncols=3, gif_path=gif)
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
    model.fit(x, np.ones((32, 16), "float32"), epochs=4, verbose=0, callbacks=[cb])

    assert cb.epochs == [0, 2, 4]
    assert all(f.dtype == np.uint8 and f.shape == (2 * 5 - 1, 3 * 5 - 1) for f in cb.frames)
    assert not np.array_equal(cb.frames[0], cb.frames[-1])
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 3 and frames.shape[1:3] == (2 * 9, 2 * 14)  # 2x upscaled
    np.testing.assert_array_equal(
        frames[0][..., 0] if frames.ndim == 4 else frames[0], np.kron(cb.frames[0], np.ones((2, 2), np.uint8))
    )
    with pytest.raises(ValueError, match="every"):
        SampleGridCallback(sample_fn, every=0)


def test_time_budget_learning_rate_is_the_cosine():
    budget = TimeBudget(1.0, peak_lr=0.1, final_fraction=0.05, verbose=False)
    for s in (0.0, 0.25, 0.5, 1.0):  # eta(s) = peak * (f + (1 - f) * (1 + cos(pi s)) / 2)
        assert budget.learning_rate(s) == pytest.approx(0.1 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s))))
    assert budget.learning_rate(3.0) == pytest.approx(0.005)  # clipped past the budget
    with pytest.raises(ValueError, match="seconds must be > 0.0, got 0.0"):
        TimeBudget(0)
    with pytest.raises(ValueError, match="final_fraction must be in"):
        TimeBudget(1, final_fraction=2.0)


def test_time_budget_stops_on_the_clock_and_follows_the_cosine_per_step():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    clock = FakeClock(0.01)
    budget = TimeBudget(1.0, peak_lr=0.1, final_fraction=0.05, verbose=False, clock=clock)
    rates = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs=None: rates.append(float(model.optimizer.learning_rate))
    )
    history = model.fit(x, x[:, :1], batch_size=8, epochs=10**6, verbose=0, callbacks=[budget, record])
    epochs = len(history.history["loss"])
    assert 1 < epochs < 10**6 and budget.log["seconds"][-1] > 1.0
    # Whole epochs of 8 steps, but the last one ends on the clock, mid-epoch.
    assert budget.log["step"][:-1] == [8 * (e + 1) for e in range(epochs - 1)]
    assert 8 * (epochs - 1) < budget.log["step"][-1] <= 8 * epochs
    assert budget.log["loss"] == pytest.approx(history.history["loss"])
    # One rate per step, falling along the cosine from the peak to the floor.
    assert len(rates) == budget.log["step"][-1] and all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[0] == pytest.approx(0.1, rel=0.01) and rates[-1] == pytest.approx(0.005, rel=0.1)


def test_a_resumed_budget_carries_on_from_the_time_spent():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.ones((16, 4), "float32")
    fresh = TimeBudget(1.0, peak_lr=0.1, verbose=False, clock=FakeClock(0.01))
    resumed = TimeBudget(1.0, peak_lr=0.1, verbose=False, spent=0.9, clock=FakeClock(0.01))
    steps = {}
    for name, budget in (("fresh", fresh), ("resumed", resumed)):
        model.optimizer.iterations.assign(0)
        first = []
        record = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda b, logs=None, first=first: first.append(float(model.optimizer.learning_rate))
        )
        model.fit(x, x[:, :1], batch_size=8, epochs=10**6, verbose=0, callbacks=[budget, record])
        steps[name] = (budget.log["step"][-1], first[0])
    assert steps["resumed"][0] < steps["fresh"][0] / 5  # only the last tenth of the budget was left
    assert steps["fresh"][1] == pytest.approx(0.1, rel=0.01)
    # the curve carries on from 90 % of the budget (a few ticks in), not from the peak
    assert fresh.learning_rate(0.95) < steps["resumed"][1] <= fresh.learning_rate(0.9)


def test_time_budget_schedules_both_optimizers_of_a_gan_and_counts_its_steps():
    from aigc_tf.gan import DCGAN

    gan = DCGAN(latent_dim=4, image_shape=(8, 8, 1), generator_filters=(8, 4), discriminator_filters=(4,), seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    assert training_optimizers(gan) == [gan.d_optimizer, gan.g_optimizer]
    budget = TimeBudget(1.0, peak_lr=0.01, final_fraction=0.1, verbose=False, clock=FakeClock(0.02))
    x = np.random.default_rng(0).uniform(-1, 1, size=(32, 8, 8, 1)).astype("float32")
    gan.fit(x, batch_size=8, epochs=10**6, verbose=0, callbacks=[budget])
    assert budget.optimizers() == [gan.d_optimizer, gan.g_optimizer]
    assert budget.log["step"][-1] == int(gan.g_optimizer.iterations) == int(gan.d_optimizer.iterations) > 8
    for optimizer in (gan.d_optimizer, gan.g_optimizer):  # both followed the cosine to near its end
        assert float(optimizer.learning_rate) == pytest.approx(0.001, rel=0.25)
