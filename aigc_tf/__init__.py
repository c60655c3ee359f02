"""aigc_tf: generative AI with Keras 3 and TensorFlow — the course's package.

Models live one family per module (``aigc_tf.gan``, ``aigc_tf.vae``, ...;
``aigc_tf.models`` gathers them); shared pieces live once: :mod:`aigc_tf.config`
(run profiles), :mod:`aigc_tf.recipes`, :mod:`aigc_tf.data` (offline-capable
loaders), :mod:`aigc_tf.plotting`, :mod:`aigc_tf.callbacks`. ``python -m aigc_tf.doctor``
checks the environment.
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


# Submodules load on first use (`aigc_tf.gan`, ...), so `import aigc_tf` imports neither
# TensorFlow nor TFDS: `python -m aigc_tf.doctor` must run when they cannot be imported.
# `import aigc_tf.models` registers every model class with Keras (for `keras.models.load_model`).
_SUBMODULES = frozenset(
    "autoregressive bpe callbacks cli config data diffusion doctor ema evaluation gan images lm metrics models "
    "plotting pretrained recipes rnn sampling text training transformer transformer_layers vae validation".split()
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"aigc_tf.{name}")
    raise AttributeError(f"module 'aigc_tf' has no attribute {name!r}")


__all__ = ["REPO_URL", "__version__", "set_seed"]
