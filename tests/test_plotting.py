"""Image grids, history plots and flow diagrams."""

import numpy as np
import pytest

from aigc_tf.plotting import flow_diagram, image_grid, plot_history, tile_images


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
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert set(lines) == {"loss", "val_loss"}
    assert lines["val_loss"].get_linestyle() == "--" and lines["val_loss"].get_color() == lines["loss"].get_color()
    np.testing.assert_array_equal(lines["loss"].get_xdata(), [1, 2, 3])
    with pytest.raises(KeyError, match="'nope' is not in the history"):
        plot_history({"loss": [1]}, keys=["nope"])

    fig = flow_diagram(["a", "b", "c"], feedback="again")
    assert [t.get_text() for t in fig.axes[0].texts if t.get_text()] == ["a", "b", "c", "again"]


def test_generator_loss_gradient_curves_and_point_scatter():
    import matplotlib

    matplotlib.use("Agg")
    from aigc_tf.gan.toy import generator_loss_gradients, logit_of_score
    from aigc_tf.plotting import plot_generator_loss_gradients, plot_points

    d = np.linspace(0.05, 0.95, 7)
    ax = plot_generator_loss_gradients(generator_loss_gradients(logit_of_score(d[::-1])), title="g")
    (ns, mm) = ax.get_lines()[:2]
    np.testing.assert_allclose(ns.get_xdata(), d, atol=1e-9)  # drawn in order of D
    np.testing.assert_allclose(ns.get_ydata(), d - 1, atol=1e-6)  # -(1 - D)
    np.testing.assert_allclose(mm.get_ydata(), -d, atol=1e-6)  # -D
    ax = plot_points(np.zeros((5, 2)), centres=np.ones((2, 2)), limit=2.0, title="p")
    assert ax.get_xlim() == (-2.0, 2.0) and len(ax.collections) == 2
    with pytest.raises(ValueError, match="points"):
        plot_points(np.zeros((5, 3)))
