"""Test-wide settings: never touch the network, keep TensorFlow quiet."""

import os

os.environ.setdefault("AIGC_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no display in CI


# --------------------------------------------------------------------------- #
# Image data shared by the GAN and VAE tests (fixtures hand out the makers).
# --------------------------------------------------------------------------- #

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def make_blobs(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 16, 16, 1)`` images in [-1, 1]: a bright 4x4 square on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 16, 16, 1), -1.0, np.float32)
    for i, (r, c) in enumerate(rng.integers(0, 12, (n, 2))):
        x[i, r : r + 4, c : c + 4] = 1.0
    return x


def make_bars(n: int, shape=(16, 16, 1), seed: int = 0) -> np.ndarray:
    """Binary images of one horizontal or vertical bar: structured, easy to learn."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    p = np.full((n, h, w, c), 0.05, np.float32)
    for i in range(n):
        pos = rng.integers(0, h - 3)
        if rng.random() < 0.5:
            p[i, pos : pos + 3] = 0.95
        else:
            p[i, :, pos : pos + 3] = 0.95
    return (rng.random(p.shape) < p).astype(np.float32)


@pytest.fixture(scope="session")
def blobs():
    """``blobs(n, seed=0)``: GAN training images in [-1, 1] (:func:`make_blobs`)."""
    return make_blobs


@pytest.fixture(scope="session")
def bars():
    """``bars(n, shape=(16, 16, 1), seed=0)``: binary VAE training images (:func:`make_bars`)."""
    return make_bars
