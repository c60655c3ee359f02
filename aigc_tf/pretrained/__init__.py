"""Pretrained language models: GPT-2 from KerasHub, the course's own model, fine-tuning.

* :func:`load_gpt2` — KerasHub's ``GPT2CausalLM`` from a preset (needs the network
  once; offline it fails within seconds and says what to do instead);
* :func:`gpt_from_keras_hub` — GPT-2's weights inside the course's own
  :class:`aigc_tf.transformer.GPT` (what nanoGPT's ``from_pretrained`` does);
* :func:`load_course_gpt` — the character GPT shipped with the package, pretrained on
  tiny Shakespeare without one speaker (:func:`aigc_tf.text.course_text_splits`);
* :func:`fine_tune` — full or LoRA fine-tuning of any course language model.
"""

from aigc_tf.pretrained.course import load_course_gpt
from aigc_tf.pretrained.fine_tuning import fine_tune

_GPT2 = ("PretrainedUnavailableError", "gpt_from_keras_hub", "load_gpt2")


def __getattr__(name: str):  # the GPT-2 bridge loads on first use (it imports KerasHub)
    if name in _GPT2:
        from aigc_tf.pretrained import gpt2

        return getattr(gpt2, name)
    raise AttributeError(f"module 'aigc_tf.pretrained' has no attribute {name!r}")


__all__ = ["PretrainedUnavailableError", "fine_tune", "gpt_from_keras_hub", "load_course_gpt", "load_gpt2"]
