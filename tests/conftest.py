"""Test-wide settings: never touch the network, keep TensorFlow quiet."""

import os

os.environ.setdefault("AIGC_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no display in CI
