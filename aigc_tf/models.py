"""Every model of the course in one import; importing it registers their classes with Keras.

``keras.models.load_model("model.keras")`` needs the class of the saved model to be
registered, which importing its module does. ``import aigc_tf.models`` (or importing
the class itself, ``from aigc_tf.gan import DCGAN``) before loading is enough::

    import keras
    import aigc_tf.models  # noqa: F401

    model = keras.models.load_model("runs/gpt/checkpoint.keras")
"""

from __future__ import annotations

from aigc_tf.config import import_tensorflow

import_tensorflow()  # first, so TensorFlow's start-up chatter stays quiet

from aigc_tf.gan import DCGAN, GAN, ClusteredGAN, ConditionalGAN  # noqa: E402
from aigc_tf.lm import LanguageModel  # noqa: E402
from aigc_tf.rnn import CharRNN  # noqa: E402
from aigc_tf.text import CharTokenizer  # noqa: E402
from aigc_tf.transformer import GPT  # noqa: E402
from aigc_tf.vae import VAE  # noqa: E402

__all__ = ["DCGAN", "GAN", "GPT", "VAE", "CharRNN", "CharTokenizer", "ClusteredGAN", "ConditionalGAN", "LanguageModel"]
