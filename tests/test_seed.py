"""set_seed makes runs repeatable (checked in fresh interpreters: op determinism is global)."""

import pytest
from subprocess_utils import run_python_json

import aigc_tf

RUN = r"""
import json, random, sys
import numpy as np
import aigc_tf
aigc_tf.set_seed(int(sys.argv[1]))
import keras, tensorflow as tf
out = {
    "python": random.random(),
    "numpy": float(np.random.rand()),
    "tf": float(tf.random.uniform(())),
    "keras": float(keras.random.normal(())),
}
# A small model with dropout and a shuffled fit: initialisation, dropout masks
# and the shuffle order all come from the seeded generators.
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dropout(0.5), keras.layers.Dense(1)])
model.compile("adam", "mse")
x = np.linspace(-1, 1, 256 * 8, dtype="float32").reshape(256, 8)
y = (x.sum(axis=1, keepdims=True) ** 2).astype("float32")
history = model.fit(x, y, batch_size=32, epochs=2, shuffle=True, verbose=0)
out["loss"] = history.history["loss"]
out["weights"] = float(sum(np.abs(w).sum() for w in model.get_weights()))
print(json.dumps(out))
"""


def test_same_seed_same_run_different_seed_different_run():
    first, second, other = (run_python_json(RUN, str(seed)) for seed in (7, 7, 8))
    for key in first:  # bit-identical, training included
        assert first[key] == second[key], f"{key}: {first[key]} vs {second[key]} with the same seed"
        assert first[key] != other[key], f"{key}: seeds 7 and 8 gave the same {first[key]}"


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_bad_seed_is_rejected(bad, error):
    with pytest.raises(error, match="seed must be"):
        aigc_tf.set_seed(bad)
