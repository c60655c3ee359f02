"""aigc_tf: generative AI with Keras 3 and TensorFlow — the course's package.

Models live one family per module (``aigc_tf.gan``, ``aigc_tf.vae``, ...);
shared pieces live once: :mod:`aigc_tf.config` (run profiles),
:mod:`aigc_tf.data` (offline-capable loaders), :mod:`aigc_tf.plotting`,
:mod:`aigc_tf.callbacks`.
"""

from __future__ import annotations

import os
import random

__version__ = "0.1.0"

# TensorFlow's C++ start-up logs (CUDA probing on CPU-only machines, CPU
# feature notes) drown notebook output; set TF_CPP_MIN_LOG_LEVEL=0 to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Where the course lives. Notebook badges and install cells are generated from
#: this one constant by ``scripts/sync_notebook_headers.py``: change it here
#: (for a fork, say) and re-run that script.
REPO_URL = "https://github.com/aigc-tf/aigc-tf"


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras so a run can be repeated.

    Args:
        seed: a non-negative integer.
        deterministic: also ask TensorFlow for deterministic kernels
            (``tf.config.experimental.enable_op_determinism``). On a CPU this
            makes repeated runs bit-identical; on a GPU some ops get slower,
            and Keras then stops choosing XLA automatically (``jit_compile="auto"``).
    """
    from aigc_tf.validation import check_int

    seed = check_int("seed", seed, minimum=0)
    import keras
    import numpy as np

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)  # also seeds TensorFlow's global generator
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# Importing the model modules registers their classes with Keras, so that
# `keras.models.load_model("x.keras")` works after a plain `import aigc_tf`.
from aigc_tf.config import import_tensorflow  # noqa: E402

import_tensorflow()  # first, so TensorFlow's start-up chatter stays quiet
from aigc_tf import gan, rnn, text, transformer, vae  # noqa: E402,F401

__all__ = ["REPO_URL", "__version__", "set_seed"]
