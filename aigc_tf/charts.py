"""Chart helpers of chapters 02-04: curves, kept-mass bars, labelled heat maps (matplotlib only).

Image grids and training histories are in :mod:`aigc_tf.plotting`. Every
function draws one figure (or into ``ax``) and returns the ``Figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "plot_autocorrelation",
    "plot_curves",
    "plot_heatmap",
    "plot_kept_mass",
    "plot_rate_distortion",
    "visible_chars",
]

_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def _axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def visible_chars(text: str | Sequence[str]) -> list[str]:
    """Characters as tick labels: space, newline and tab become ``␣``, ``⏎``, ``⇥``."""
    return [_VISIBLE.get(c, c) for c in text]


def plot_curves(
    x: Sequence[float] | None,
    curves: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logx: bool = False,
    logy: bool = False,
    hlines: Mapping[str, float] | None = None,
    ax=None,
):
    """Several curves over the same x, with optional labelled horizontal reference lines.

    Args:
        x: the shared x values, shape (n,) (None if every curve brings its own).
        curves: label -> y values of shape (n,), or an ``(x, y)`` pair for a curve with its own x.
        xlabel, ylabel, title: axis labels and title.
        logx, logy: logarithmic axes.
        hlines: label -> y of a dotted reference line.
        ax: draw into this axes (default: a new figure).

    Returns:
        The matplotlib ``Figure``.
    """
    if not curves:
        raise ValueError("curves must hold at least one curve.")
    ax = _axes(ax, (6.5, 3.5))
    for label, y in curves.items():
        # A curve with its own x: an (x, y) pair.
        cx, y = y if isinstance(y, tuple) and len(y) == 2 else (x, y)
        if cx is None:
            raise ValueError(f"curve {label!r} has no x: pass x, or the curve as an (x, y) pair.")
        cx, y = np.asarray(cx, float), np.asarray(y, float)
        if y.shape != cx.shape:
            raise ValueError(f"curve {label!r} has shape {y.shape}, its x has {cx.shape}.")
        ax.plot(cx, y, marker="o", ms=4, label=label)
    for i, (label, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="0.4", ls=[":", "-.", "--"][i % 3], lw=1, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


def plot_rate_distortion(rates: Mapping[Any, float], distortions: Mapping[Any, float], *, ax=None, title=None):
    """β runs on the rate (KL) - distortion (-log p(x|z)) plane, with lines of equal ELBO.

    Args:
        rates: label (e.g. β) -> test KL in nats.
        distortions: label -> test reconstruction term -log p(x|z) in nats.
        ax, title: as usual.

    Returns:
        The matplotlib ``Figure``. A line ``rate + distortion = const`` is a
        line of equal ELBO (β = 1): points further down-left have a better bound.
    """
    if set(rates) != set(distortions) or not rates:
        raise ValueError(
            f"rates and distortions need the same non-empty keys; got {list(rates)} and {list(distortions)}."
        )
    ax = _axes(ax, (5.5, 4))
    r = np.array([rates[k] for k in rates], float)
    d = np.array([distortions[k] for k in rates], float)
    ax.plot(r, d, "o-", color="C0")
    for key, ri, di in zip(rates, r, d):
        ax.annotate(f"β = {key}", (ri, di), textcoords="offset points", xytext=(6, 4), fontsize=9)
    span = np.linspace(0, r.max() * 1.2, 50)
    for total in np.unique(np.round(r + d)):
        ax.plot(span, total - span, ":", color="0.7", lw=0.8)
    ax.set(
        xlabel="rate: KL(q(z|x) || p(z)) (nats)",
        ylabel="distortion: -log p(x|z) (nats)",
        xlim=(0, r.max() * 1.2),
        ylim=(d.min() * 0.9, d.max() * 1.1),
    )
    ax.set_title(title or "rate against distortion (dotted: equal ELBO)")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_autocorrelation(acfs: Mapping[str, Sequence[float]], num_values: int, *, ax=None, title=None):
    """Autocorrelation bars per lag for several series, with the white-noise band ±2/sqrt(n).

    Args:
        acfs: label -> autocorrelations at lags 1..L (e.g. :func:`aigc_tf.autoregressive.autocorrelation`).
        num_values: length n of the series (sets the band).

    Returns:
        The matplotlib ``Figure``.
    """
    if not acfs:
        raise ValueError("acfs must hold at least one series.")
    ax = _axes(ax, (7, 3))
    width = 0.8 / len(acfs)
    for i, (label, acf) in enumerate(acfs.items()):
        lags = np.arange(1, len(acf) + 1)
        ax.bar(lags + (i - (len(acfs) - 1) / 2) * width, acf, width=width, label=label)
    band = 2 / np.sqrt(num_values)
    ax.axhspan(-band, band, color="0.85", zorder=0, label="±2/√n (white noise)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="lag k", ylabel="corr(r_t, r_{t-k})", title=title or "residual autocorrelation")
    ax.legend(fontsize=8)
    return ax.figure


def plot_kept_mass(
    probs: Sequence[float],
    kept: Mapping[str, Sequence[bool]],
    labels: Sequence[str],
    *,
    num_shown: int = 20,
    ax=None,
    title=None,
):
    """Bar chart of the most likely tokens, coloured by which filter keeps them, with each filter's kept mass.

    Args:
        probs: the next-token probabilities, shape (V,).
        kept: filter name (e.g. "top-k = 5") -> boolean mask (V,) of the tokens it keeps.
        labels: V token labels (see :func:`visible_chars`).
        num_shown: how many of the most likely tokens to draw.

    Returns:
        The matplotlib ``Figure``.
    """
    probs = np.asarray(probs, float)
    if len(labels) != len(probs):
        raise ValueError(f"labels has {len(labels)} entries, probs {len(probs)}.")
    order = np.argsort(-probs)[:num_shown]
    ax = _axes(ax, (9, 3.2))
    width = 0.8 / len(kept)
    for i, (name, mask) in enumerate(kept.items()):
        mask = np.asarray(mask, bool)
        heights = np.where(mask[order], probs[order], 0.0)
        ax.bar(
            np.arange(len(order)) + (i - (len(kept) - 1) / 2) * width,
            heights,
            width=width,
            label=f"{name}: keeps {mask.sum()} tokens, mass {probs[mask].sum():.2f}",
        )
    ax.bar(np.arange(len(order)), probs[order], width=0.9, fill=False, edgecolor="0.5", label="full distribution")
    ax.set_xticks(range(len(order)), [labels[i] for i in order])
    ax.set(ylabel="probability", title=title or "the tokens each filter keeps")
    ax.legend(fontsize=8)
    return ax.figure


def plot_heatmap(
    weights: Any,
    *,
    rows: Sequence[str] | None = None,
    cols: Sequence[str] | None = None,
    ax=None,
    title=None,
    vmin=0.0,
    vmax=1.0,
    cmap="viridis",
    colorbar=False,
    fontsize=7,
):
    """A matrix as an image with labelled rows and columns (attention weights, a mask).

    Args:
        weights: (R, C) array; -inf entries (a mask) are drawn as ``vmin``.
        rows, cols: tick labels (e.g. query and key characters); None: no ticks.
        vmin, vmax, cmap: colour scale.
        colorbar: add a colour bar.

    Returns:
        The matplotlib ``Figure``.
    """
    w = np.asarray(weights, float)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D matrix, got shape {w.shape}.")
    ax = _axes(ax, (4, 4))
    image = ax.imshow(np.where(np.isneginf(w), vmin, w), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for labels, set_ticks, n in ((rows, ax.set_yticks, w.shape[0]), (cols, ax.set_xticks, w.shape[1])):
        if labels is None:
            set_ticks([])
        else:
            if len(labels) != n:
                raise ValueError(f"{n} tick labels needed, got {len(labels)}.")
            set_ticks(range(n), list(labels), fontsize=fontsize)
    if colorbar:
        ax.figure.colorbar(image, ax=ax)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure
