"""Small plotting helpers shared by every chapter (matplotlib only)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aigc_tf.images import to_unit_range
from aigc_tf.validation import check_int, check_optional_int


def tile_images(images: Any, ncols: int | None = None, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile a batch of images into one image, row by row.

    Args:
        images: array ``(n, h, w)`` or ``(n, h, w, c)`` with c in {1, 3}.
        ncols: images per row (default: about sqrt(n)).
        pad: pixels of ``pad_value`` between images.

    Returns:
        ``(rows*(h+pad)-pad, ncols*(w+pad)-pad)`` for grey images, with a
        trailing channel axis of 3 for colour.
    """
    ncols = check_optional_int("ncols", ncols, minimum=1)
    pad = check_int("pad", pad, minimum=0)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"images must be shaped (n, h, w[, 1 or 3]), got {images.shape}.")
    n, h, w = images.shape[:3]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad) + images.shape[3:], pad_value, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return grid


def write_gif(frames: Sequence[np.ndarray], path, *, frame_duration: float = 0.5, scale: int = 2):
    """Write image grids (uint8, or floats in [0, 1]) as a looping GIF, each pixel ``scale`` x ``scale``.

    Args:
        frames: grids of one shape, ``(h, w)`` or ``(h, w, 3)`` (e.g. from :func:`tile_images`).
        path: the ``.gif`` to write (its folder is created).
        frame_duration: seconds per frame.
        scale: nearest-neighbour upscaling, so 28-pixel digits stay readable in a browser.

    Returns:
        The path written, as a ``Path``.
    """
    from pathlib import Path

    import imageio.v3 as iio

    if not len(frames):
        raise ValueError("frames is empty: no frame to write.")
    scale = check_int("scale", scale, minimum=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    as_uint8 = [f if f.dtype == np.uint8 else np.round(np.clip(f, 0, 1) * 255).astype(np.uint8) for f in frames]
    big = [np.kron(f, np.ones((scale, scale) + (1,) * (f.ndim - 2), np.uint8)) for f in as_uint8]
    iio.imwrite(path, np.stack(big), duration=int(frame_duration * 1000), loop=0)
    return path


def image_grid(
    images: Any,
    ncols: int | None = None,
    *,
    value_range: tuple[float, float] | None = None,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    ax=None,
    figsize: float = 6.0,
):
    """Show a batch of images as one grid.

    Args:
        images: ``(n, h, w[, c])`` array or tensor.
        ncols: images per row.
        value_range: the range the pixels are in; default: the range the array
            declares (a model's samples carry it), else ``(0, 1)``.
        title: axes title.
        row_labels: one label per row, written on the left (e.g. class names).
        ax: draw into this axes (default: a new figure).
        figsize: width of a new figure in inches.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    grid = tile_images(to_unit_range(images, value_range), ncols)
    if ax is None:
        height = figsize * grid.shape[0] / grid.shape[1]
        fig, ax = plt.subplots(figsize=(figsize, max(height, 1.0)))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if row_labels is not None:
        h = images.shape[1]
        ax.set_yticks([r * (h + 1) + h / 2 for r in range(len(row_labels))], list(row_labels))
    if title:
        ax.set_title(title)
    return ax.figure


def plot_history(
    history: Any, keys: Sequence[str] | None = None, *, ax=None, title: str | None = None, ylabel: str = "loss"
):
    """Plot per-epoch curves from a Keras ``History`` (or its ``.history`` dict).

    ``val_*`` curves are drawn dashed in the colour of their training curve,
    so over-fitting is visible at a glance.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    logs: Mapping[str, Sequence[float]] = getattr(history, "history", history)
    if keys is None:
        keys = [k for k in logs if not k.startswith("val_")]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        if key not in logs:
            raise KeyError(f"{key!r} is not in the history; it has {sorted(logs)}.")
        epochs = np.arange(1, len(logs[key]) + 1)
        (line,) = ax.plot(epochs, logs[key], marker="o", ms=3, label=key)
        if f"val_{key}" in logs:
            ax.plot(epochs, logs[f"val_{key}"], "--", color=line.get_color(), marker="o", ms=3, label=f"val_{key}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax.figure


def flow_diagram(stages: Sequence[str], *, feedback: str | None = None, title: str | None = None, ax=None):
    """Draw ``stages`` as boxes joined by arrows, with an optional feedback arrow.

    Used for pipelines such as data → train → generate → evaluate, where the
    evaluation feeds back into the next round of training.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(2.6 * len(stages), 2.4))
    xs = np.arange(len(stages)) * 3.0
    for i, (x, text) in enumerate(zip(xs, stages)):
        ax.text(
            x,
            0,
            text,
            ha="center",
            va="center",
            fontsize=10,
            wrap=True,
            bbox=dict(boxstyle="round,pad=0.5", fc=plt.cm.Pastel1(i % 9), ec="0.3"),
        )
        if i:
            ax.annotate("", xy=(x - 1.15, 0), xytext=(xs[i - 1] + 1.15, 0), arrowprops=dict(arrowstyle="->", lw=1.5))
    if feedback:
        ax.annotate(
            "",
            xy=(xs[1], -0.35),
            xytext=(xs[-1], -0.35),
            arrowprops=dict(arrowstyle="->", lw=1.2, ls="--", connectionstyle="arc3,rad=-0.25"),
        )
        ax.text((xs[1] + xs[-1]) / 2, -1.35, feedback, ha="center", va="center", fontsize=9, style="italic")
    ax.set_xlim(xs[0] - 1.5, xs[-1] + 1.5)
    ax.set_ylim(-1.6, 0.7)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_generator_loss_gradients(gradients: Mapping[str, Any], *, ax=None, title: str | None = None):
    """The two generator losses' gradients dL/dl against D(G(z)) (curves).

    Args:
        gradients: the dict of :func:`aigc_tf.gan.toy.generator_loss_gradients`
            (keys ``score``, ``non_saturating``, ``minimax``).
        ax: matplotlib axes (default: a new figure).
        title: the axes' title.

    Returns:
        The axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    order = np.argsort(np.asarray(gradients["score"]))
    d = np.asarray(gradients["score"])[order]
    ax.plot(d, np.asarray(gradients["non_saturating"])[order], label=r"non-saturating $-\log D$: $-(1 - D)$")
    ax.plot(d, np.asarray(gradients["minimax"])[order], label=r"minimax $\log(1 - D)$: $-D$")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="D(G(z))", ylabel="dL/dl (l: D's logit)", xlim=(0, 1), title=title)
    ax.legend()
    return ax


def plot_points(
    points: Any, *, centres: Any = None, ax=None, title: str | None = None, limit: float | None = None, **scatter: Any
):
    """A scatter plot of 2-D points, optionally with mode centres marked.

    Args:
        points: ``(N, 2)`` array.
        centres: ``(K, 2)`` array drawn as crosses, or ``None``.
        ax: matplotlib axes (default: a new figure).
        title: the axes' title.
        limit: show ``[-limit, limit]`` on both axes (default: matplotlib's choice).
        **scatter: extra ``ax.scatter`` arguments.

    Returns:
        The axes.
    """
    import matplotlib.pyplot as plt

    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points: expected an (N, 2) array, got shape {points.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(points[:, 0], points[:, 1], **{"s": 3, "alpha": 0.4, **scatter})
    if centres is not None:
        centres = np.asarray(centres)
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", color="k", s=40)
    if limit is not None:
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit))
    ax.set_aspect("equal")
    ax.set_title(title)
    return ax
