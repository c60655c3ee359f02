"""Every model of the course in one import; importing it registers their classes with Keras.

``keras.models.load_model("model.keras")`` needs the class of the saved model to be
registered, which importing its module does. ``import aigc_tf.models`` (or importing
the class itself, ``from aigc_tf.gan import DCGAN``) before loading is enough::

    import keras
    import aigc_tf.models  # noqa: F401

    model = keras.models.load_model("runs/gpt/checkpoint.keras")

:func:`load_model` does the same and says what is wrong with a file Keras would
call "not found" (an empty or truncated ``.keras`` from an interrupted save).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from aigc_tf.config import import_tensorflow

import_tensorflow()  # first, so TensorFlow's start-up chatter stays quiet

from aigc_tf.diffusion import DiffusionModel  # noqa: E402
from aigc_tf.gan import DCGAN, GAN, ClusteredGAN, ConditionalGAN  # noqa: E402
from aigc_tf.lm import LanguageModel  # noqa: E402
from aigc_tf.rnn import CharRNN  # noqa: E402
from aigc_tf.text import CharTokenizer  # noqa: E402
from aigc_tf.transformer import GPT  # noqa: E402
from aigc_tf.vae import VAE  # noqa: E402


def load_model(path: str | Path, **kwargs: Any):
    """``keras.models.load_model(path, **kwargs)``, with a clear error for a damaged file.

    Raises:
        FileNotFoundError: if ``path`` does not exist or is a folder.
        ValueError: if the file is empty or not a complete ``.keras`` archive
            (a save that was interrupted), naming the file and its size.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file{' (it is a folder)' if path.is_dir() else ''}.")
    size = path.stat().st_size
    if path.suffix == ".keras":
        damaged = size == 0 or not zipfile.is_zipfile(path)
        if not damaged:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip() is not None or "config.json" not in archive.namelist()
        if damaged:
            raise ValueError(
                f"{path} ({size:,} bytes) is not a complete .keras file: it is empty or truncated, "
                "as a save interrupted part-way leaves it. Save the model again, or use an earlier checkpoint."
            )
    return keras.models.load_model(path, **kwargs)


__all__ = [
    "load_model",
    "DCGAN",
    "GAN",
    "GPT",
    "VAE",
    "CharRNN",
    "CharTokenizer",
    "DiffusionModel",
    "ClusteredGAN",
    "ConditionalGAN",
    "LanguageModel",
]
