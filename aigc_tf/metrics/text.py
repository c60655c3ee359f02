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

__all__ = [
    "bits_per_char",
    "continuation_nats_per_char",
    "distinct_n",
    "evaluate_loss",
    "perplexity",
    "repeated_share",
    "text_loss",
]


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


def continuation_nats_per_char(model: keras.Model, text: str, prompt: str) -> float:
    """How surprised ``model`` is by a continuation: ``-sum log p(x_t | x_<t) / characters``.

    Only the characters after ``prompt`` are scored; each prediction reads at
    most ``model.context_length`` tokens back (all of them for a model with no
    limit), as generation did. A typical sample scores about the validation
    loss; beam search scores far lower (it seeks likely text).

    Args:
        model: a language model with a ``tokenizer`` (e.g. ``CharRNN``, ``GPT``).
        text: the prompt followed by the continuation.
        prompt: the prompt, a prefix of ``text`` (at least one character).

    Returns:
        Nats per character of the continuation, a float.
    """
    if not isinstance(text, str) or not isinstance(prompt, str):
        raise TypeError(f"text and prompt must be str, got {type(text).__name__} and {type(prompt).__name__}.")
    if not prompt or not text.startswith(prompt) or len(text) == len(prompt):
        raise ValueError(
            f"prompt must be a non-empty proper prefix of text; got prompt of {len(prompt)} characters "
            f"and text of {len(text)} starting with {text[: len(prompt)]!r}."
        )
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise TypeError(f"model {type(model).__name__} has no tokenizer: pass a language model with one.")
    ids = np.asarray(tokenizer.encode(text), np.int32)
    start = len(tokenizer.encode(prompt))
    context = getattr(model, "context_length", None) or len(ids)
    # Targets t = start .. n-1. Those with t <= context come from one causal pass on the first tokens.
    head = min(len(ids) - 1, context)
    log_probs = ops.convert_to_numpy(ops.log_softmax(model(ids[None, :head], training=False)[0], axis=-1))
    nats = [-log_probs[t - 1, ids[t]] for t in range(start, head + 1)]
    # Later targets read the context tokens just before them: one window each, batched.
    later = np.arange(max(start, head + 1), len(ids))
    if len(later):
        windows = np.stack([ids[t - context : t] for t in later])
        logits = model(windows, training=False)[:, -1, :]
        log_probs = ops.convert_to_numpy(ops.log_softmax(logits, axis=-1))
        nats += list(-log_probs[np.arange(len(later)), ids[later]])
    return float(np.sum(nats)) / (len(text) - len(prompt))


def repeated_share(text: str, n: int = 10, *, skip: int = 0) -> float:
    """Share of the ``n``-character substrings of ``text[skip:]`` that already occurred before in it.

    A crude repetition rate: 0 for text that never repeats itself, close to 1
    for a loop. An occurrence counts if it starts earlier (it may overlap).

    Args:
        text: the text.
        n: substring length, >= 1.
        skip: characters to leave out at the start (the prompt), >= 0.

    Returns:
        A share in [0, 1].
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}.")
    n = check_int("n", n, minimum=1)
    skip = check_int("skip", skip, minimum=0)
    new = text[skip:]
    if len(new) < n:
        raise ValueError(f"text[skip:] has {len(new)} characters, fewer than n={n}.")
    grams = [new[i : i + n] for i in range(len(new) - n + 1)]
    return sum(gram in new[: i + n - 1] for i, gram in enumerate(grams)) / len(grams)


def text_loss(model: keras.Model, text: str, *, seq_len: int | None = None, batch_size: int = 64) -> dict[str, float]:
    """A language model's loss on a whole text, per token and per character.

    The text is cut into consecutive windows of ``seq_len`` tokens (default: the
    model's context), each predicting its next tokens; nats per character is the
    total over the characters the targets cover, so a character model and a BPE
    model compare on the same text.

    Args:
        model: a language model with a ``tokenizer``.
        text: the text to score (at least ``seq_len + 1`` tokens).
        seq_len: window length; default ``model.context_length`` (or 256 without one).
        batch_size: windows per batch.

    Returns:
        :func:`evaluate_loss`'s dict plus ``"nats_per_char"``.
    """
    from aigc_tf.text import make_char_dataset

    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("model: text_loss needs a model with a tokenizer (model.tokenizer is None).")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}.")
    seq_len = int(seq_len or getattr(model, "context_length", None) or 256)
    ids = tokenizer.encode(text)
    if len(ids) < seq_len + 1:
        seq_len = len(ids) - 1
        if seq_len < 1:
            raise ValueError(f"text: {len(ids)} tokens is too short to score (at least 2 are needed).")
    scores = evaluate_loss(model, make_char_dataset(ids, seq_len, batch_size, shuffle=False, drop_remainder=False))
    return {**scores, "nats_per_char": scores["total_nats"] / scores["num_chars"]}


def _units(text: str, unit: str) -> list[str]:
    return text.split() if unit == "word" else list(text)


def distinct_n(samples: str | list[str], n: int = 2, *, unit: str = "word") -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams / all n-grams, pooled over the samples.

    1.0 when no n-gram occurs twice; near 0 for text that loops. Higher means more
    diverse (it says nothing about quality: random characters score 1).

    Args:
        samples: a text or a list of texts (n-grams never cross two samples).
        n: n-gram length, >= 1.
        unit: ``"word"`` (whitespace-separated) or ``"char"``.

    Returns:
        A share in [0, 1].

    Raises:
        ValueError: no sample has ``n`` units.
    """
    from aigc_tf.validation import check_choice

    if isinstance(samples, str):
        samples = [samples]
    if not isinstance(samples, (list, tuple)) or not all(isinstance(s, str) for s in samples):
        raise TypeError("samples must be a str or a list of str.")
    n = check_int("n", n, minimum=1)
    unit = check_choice("unit", unit, ("word", "char"))
    grams = []
    for sample in samples:
        units = _units(sample, unit)
        grams += [tuple(units[i : i + n]) for i in range(len(units) - n + 1)]
    if not grams:
        raise ValueError(f"samples: no sample has {n} {unit}s, so there is no {n}-gram to count.")
    return len(set(grams)) / len(grams)
