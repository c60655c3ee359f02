"""Language-model metrics: cross-entropy in nats, bits per character, perplexity.

The loss of a language model is the mean cross-entropy ``-log p(x_t | x_<t)``
per token, in nats. Two derived numbers are common:

* **bits per character**: the total cross-entropy of a text in bits divided
  by its number of *characters*. Per character, whatever the tokenizer: a
  model whose tokens are longer than one character is not flattered by a
  larger loss per token, so character and sub-word models compare directly.
* **perplexity**: ``exp(loss)``, the number of equally likely tokens the
  model is as unsure as.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.validation import check_float, check_int

__all__ = ["bits_per_char", "evaluate_loss", "perplexity"]


def bits_per_char(total_nats: float, num_chars: int) -> float:
    """Cross-entropy in bits per character: ``total_nats / num_chars / ln 2``.

    Args:
        total_nats: the summed cross-entropy of a text, in nats.
        num_chars: the number of characters of that text (not of tokens).
            For a character-level loss (nats per character), pass
            ``num_chars=1``: ``bits_per_char(loss, 1) = loss / ln 2``.

    A uniform guess over V characters scores ``log2 V`` (6.02 bits for 65 characters).
    """
    total_nats = check_float("total_nats", total_nats, low=0.0)
    num_chars = check_int("num_chars", num_chars, minimum=1)
    return total_nats / num_chars / math.log(2.0)


def perplexity(nats_per_token: float) -> float:
    """``exp(loss)``: the model is as unsure as a uniform choice among this many tokens."""
    return math.exp(check_float("nats_per_token", nats_per_token, low=0.0))


def _characters(tokenizer: Any, targets: np.ndarray) -> int:
    """How many characters the target ids of a batch decode to."""
    decoded = tokenizer.decode(targets)
    return sum(len(text) for text in ([decoded] if isinstance(decoded, str) else decoded))


def evaluate_loss(model: keras.Model, dataset: tf.data.Dataset, *, num_chars: int | None = None) -> dict[str, float]:
    """Mean next-token cross-entropy over a dataset, with derived metrics.

    Averages over every target token (a last, smaller batch is weighted by
    its size), independently of how the model was compiled.

    Args:
        model: maps ids (B, T) to logits (B, T, V).
        dataset: ``(inputs, targets)`` batches, e.g. from
            :func:`aigc_tf.text.make_char_dataset` with ``shuffle=False``.
        num_chars: the number of characters the targets cover, for
            ``bits_per_char``. None: decode the targets with ``model.tokenizer``
            and count them, or, for a model without one, one character per token.

    Returns:
        ``{"loss": nats/token, "bits_per_char": ..., "perplexity": ...,
        "total_nats": ..., "num_tokens": ..., "num_chars": ...}``.
    """

    # Compiled once per batch shape: eagerly, the forward pass is ~10x slower.
    @tf.function(reduce_retracing=True)
    def batch_loss(inputs, targets):
        logits = model(inputs, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return ops.sum(losses), ops.size(losses)

    tokenizer = getattr(model, "tokenizer", None) if num_chars is None else None
    total, count, chars = 0.0, 0, 0
    for inputs, targets in dataset:
        batch_total, batch_count = batch_loss(inputs, targets)
        total += float(batch_total)
        count += int(batch_count)
        if tokenizer is not None:
            chars += _characters(tokenizer, np.asarray(targets))
    if count == 0:
        raise ValueError("dataset is empty; nothing to evaluate.")
    if num_chars is None:
        num_chars = chars if tokenizer is not None else count
    loss = total / count
    return {
        "loss": loss,
        "bits_per_char": bits_per_char(total, num_chars),
        "perplexity": perplexity(loss),
        "total_nats": total,
        "num_tokens": count,
        "num_chars": int(num_chars),
    }
