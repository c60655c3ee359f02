"""Image grids, history plots and the sample-grid/GIF callback."""

import keras
import numpy as np
import pytest

from aigc_tf.callbacks import SampleGridCallback
from aigc_tf.plotting import flow_diagram, image_grid, plot_history, tile_images, to_unit_range


def test_to_unit_range_is_the_affine_map_and_clips():
    x = np.array([-1.0, 0.0, 1.0, 3.0])
    np.testing.assert_allclose(to_unit_range(x, (-1, 1)), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(to_unit_range(x, (0, 2)), [0.0, 0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="value_range"):
        to_unit_range(x, (1, 1))


def test_tile_images_places_image_i_at_row_i_div_ncols():
    images = np.stack([np.full((3, 2, 1), i, np.float32) for i in range(5)])
    grid = tile_images(images, ncols=2, pad=1, pad_value=-1)
    assert grid.shape == (3 * 4 - 1, 2 * 3 - 1)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(grid[r * 4 : r * 4 + 3, c * 3 : c * 3 + 2], i)
    assert (grid[3, :] == -1).all() and (grid[:, 2] == -1).all()  # padding rows/cols
    np.testing.assert_array_equal(grid[8:11, 3:5], -1)  # empty sixth cell
    colour = tile_images(np.zeros((4, 5, 5, 3)), ncols=2)
    assert colour.shape == (11, 11, 3)
    with pytest.raises(ValueError, match=r"\(n, h, w"):
        tile_images(np.zeros((4, 5, 5, 2)))


def test_image_grid_and_history_plots():
    fig = image_grid(
        np.random.default_rng(0).uniform(-1, 1, (20, 28, 28, 1)),
        ncols=10,
        value_range=(-1, 1),
        row_labels=["a", "b"],
        title="t",
    )
    ax = fig.axes[0]
    assert ax.get_title() == "t" and [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    data = ax.images[0].get_array()
    assert data.shape == (2 * 29 - 1, 10 * 29 - 1) and 0 <= data.min() and data.max() <= 1

    fig = plot_history({"loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2.0], "acc": [0.1, 0.5, 0.9]}, keys=["loss"])
    lines = {l.get_label(): l for l in fig.axes[0].lines}
    assert set(lines) == {"loss", "val_loss"}
    assert lines["val_loss"].get_linestyle() == "--" and lines["val_loss"].get_color() == lines["loss"].get_color()
    np.testing.assert_array_equal(lines["loss"].get_xdata(), [1, 2, 3])
    with pytest.raises(KeyError, match="'nope' is not in the history"):
        plot_history({"loss": [1]}, keys=["nope"])

    fig = flow_diagram(["a", "b", "c"], feedback="again")
    assert [t.get_text() for t in fig.axes[0].texts if t.get_text()] == ["a", "b", "c", "again"]


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


def test_time_budget_stops_on_time_and_decays_the_learning_rate():
    from aigc_tf.callbacks import TimeBudget

    budget = TimeBudget(1.0, peak_lr=0.1, final_fraction=0.05, verbose=False)
    # eta(s) = peak * (f + (1 - f) * (1 + cos(pi s)) / 2)
    assert budget.learning_rate(0.0) == pytest.approx(0.1)
    assert budget.learning_rate(0.5) == pytest.approx(0.1 * (0.05 + 0.95 * 0.5))
    assert budget.learning_rate(1.0) == pytest.approx(0.005)
    assert budget.learning_rate(3.0) == pytest.approx(0.005)  # clipped past the budget

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    history = model.fit(x, x[:, :1], batch_size=8, epochs=10**6, verbose=0, callbacks=[budget])
    epochs = len(history.history["loss"])
    assert 1 <= epochs < 10**6 and budget.log["seconds"][-1] >= 1.0
    # Whole epochs of 8 steps, but the last one ends on the clock, mid-epoch.
    assert budget.log["step"][:-1] == [8 * (e + 1) for e in range(epochs - 1)]
    assert 8 * (epochs - 1) < budget.log["step"][-1] <= 8 * epochs
    assert budget.log["loss"] == pytest.approx(history.history["loss"])
    assert float(model.optimizer.learning_rate) < 0.02  # decayed to near the end of the cosine
    with pytest.raises(ValueError, match="seconds"):
        TimeBudget(0)


def test_time_budget_schedules_both_optimizers_of_a_gan_and_counts_its_steps():
    from aigc_tf.callbacks import TimeBudget
    from aigc_tf.gan import DCGAN

    gan = DCGAN(latent_dim=4, image_shape=(8, 8, 1), generator_filters=(8, 4), discriminator_filters=(4,), seed=0)
    gan.compile(d_optimizer=keras.optimizers.Adam(1e-3), g_optimizer=keras.optimizers.Adam(1e-3))
    budget = TimeBudget(1.5, peak_lr=0.01, final_fraction=0.1, verbose=False)
    x = np.random.default_rng(0).uniform(-1, 1, size=(32, 8, 8, 1)).astype("float32")
    gan.fit(x, batch_size=8, epochs=1, verbose=0)  # trace the step outside the budget
    gan.fit(x, batch_size=8, epochs=10**6, verbose=0, callbacks=[budget])
    assert budget.optimizers() == [gan.d_optimizer, gan.g_optimizer]
    assert budget.log["step"][-1] == int(gan.g_optimizer.iterations) > 8
    for optimizer in (gan.d_optimizer, gan.g_optimizer):  # both followed the cosine to near its end
        assert 0.001 <= float(optimizer.learning_rate) < 0.003
