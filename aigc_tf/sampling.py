"""Decoding: turn next-token logits into tokens.

Shared by every language model of the course (the character RNN, the
Transformer). A model only has to provide next-token logits; these functions
decide which token comes next.

* :func:`top_k_filter` / :func:`top_p_filter` remove unlikely tokens by setting
  their logits to ``-inf`` (probability 0 after the softmax).
* :func:`sample_next` divides the logits by a temperature, applies the filters
  and draws one token per row (``top_k=1`` is greedy decoding).
* :func:`beam_search` keeps the ``num_beams`` most likely continuations,
  for any model exposing a one-token ``step_fn``.

Everything works on **logits** (unnormalised log-probabilities) in float32:
``keras.random.categorical`` expects logits, and a temperature divides logits,
not probabilities (dividing probabilities by T and renormalising changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["top_k_filter", "top_p_filter", "sample_next", "beam_search", "check_sampling_args"]

NEG_INF = float("-inf")


def _as_logits(logits: Any, name: str = "logits") -> Any:
    """float32 tensor of rank 1 (V,) or 2 (B, V); anything else is a clear error."""
    logits = ops.convert_to_tensor(logits)
    rank = len(logits.shape)
    if rank not in (1, 2):
        raise ValueError(f"{name} must have shape (vocab,) or (batch, vocab); got shape {tuple(logits.shape)}.")
    if logits.shape[-1] is not None and logits.shape[-1] < 1:
        raise ValueError(f"{name} has an empty vocabulary axis: shape {tuple(logits.shape)}.")
    if "int" in str(logits.dtype) or "bool" in str(logits.dtype):
        raise TypeError(f"{name} must be floating point (logits); got dtype {logits.dtype}.")
    return ops.cast(logits, "float32")  # float16 logits lose too much in softmax/cumsum


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_sampling_args(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    vocab_size: int | None = None,
) -> None:
    """Validate decoding arguments in plain Python, before any tensor work.

    Raises:
        ValueError: ``temperature <= 0``, ``top_k < 1`` or ``> vocab_size``,
            ``top_p`` outside (0, 1].
        TypeError: arguments of the wrong type.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)):
        raise TypeError(f"temperature must be a number > 0; got {temperature!r}.")
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(
            f"temperature must be a finite number > 0; got {temperature!r}. (For greedy decoding use top_k=1.)"
        )
    if top_k is not None:
        if not _is_int(top_k):
            raise TypeError(f"top_k must be an int or None; got {top_k!r}.")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1; got {top_k}.")
        if vocab_size is not None and top_k > vocab_size:
            raise ValueError(f"top_k must be <= the vocabulary size {vocab_size}; got {top_k}.")
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating)):
            raise TypeError(f"top_p must be a number in (0, 1] or None; got {top_p!r}.")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1]; got {top_p}.")


def top_k_filter(logits: Any, k: int) -> Any:
    """Keep the ``k`` largest logits of each row; set the others to ``-inf``.

    Ties with the k-th largest value are all kept (as nanoGPT does), so a row
    can keep more than ``k`` entries only when logits are exactly equal.

    Args:
        logits: shape (V,) or (B, V).
        k: number of tokens to keep, ``1 <= k <= V``.

    Returns:
        float32 logits, same shape.
    """
    logits = _as_logits(logits)
    check_sampling_args(top_k=k, vocab_size=logits.shape[-1])
    kth_largest = ops.top_k(logits, k)[0][..., -1:]
    return ops.where(logits < kth_largest, NEG_INF, logits)


def top_p_filter(logits: Any, p: float) -> Any:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p``.

    Tokens are sorted by probability; a token is kept if the probability of
    the tokens *before* it is still below ``p``. That keeps the token that
    crosses ``p``, always keeps the most likely token, and keeps everything
    for ``p = 1``. Entries already at ``-inf`` (say, after :func:`top_k_filter`)
    have probability 0, so applying top-p after top-k renormalises over the
    top-k tokens.

    Args:
        logits: shape (V,) or (B, V).
        p: probability mass to keep, ``0 < p <= 1``.

    Returns:
        float32 logits, same shape, excluded entries ``-inf``.
    """
    logits = _as_logits(logits)
    check_sampling_args(top_p=p)
    return _top_p_tensor(logits, float(p))


def _sample(logits: Any, temperature: Any, top_k: int | None, top_p: Any | None, seed: Any) -> Any:
    """sample_next without argument checks, usable inside ``tf.function``.

    ``logits`` (B, V) float32; ``temperature``/``top_p`` may be tensors;
    ``top_k`` must be a Python int (it sets a static shape).
    """
    if top_k == 1:  # greedy: exact argmax, no randomness
        return ops.cast(ops.argmax(logits, axis=-1), "int32")
    logits = logits / ops.cast(temperature, "float32")
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = _top_p_tensor(logits, top_p)
    return keras.random.categorical(logits, 1, dtype="int32", seed=seed)[:, 0]


def _top_p_tensor(logits: Any, p: Any) -> Any:
    """top_p_filter body for a (possibly tensor) ``p``."""
    sorted_logits = ops.top_k(logits, logits.shape[-1])[0]  # descending
    probs = ops.softmax(sorted_logits, axis=-1)
    mass_before = ops.cumsum(probs, axis=-1) - probs  # exclusive cumulative sum
    # p = 1 keeps everything explicitly: round-off could otherwise make the
    # mass before a tiny tail token reach 1.0 and drop it.
    keep = ops.logical_or(mass_before < p, ops.cast(p, "float32") >= 1.0)
    n_keep = ops.sum(ops.cast(keep, "int32"), axis=-1, keepdims=True)  # >= 1: mass before the top token is 0
    threshold = ops.take_along_axis(sorted_logits, n_keep - 1, axis=-1)  # smallest kept logit
    return ops.where(logits < threshold, NEG_INF, logits)


def sample_next(
    logits: Any,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | keras.random.SeedGenerator | None = None,
) -> Any:
    """Draw the next token for each row of logits.

    Order of operations: divide by ``temperature`` → keep the top ``k`` →
    keep the nucleus of mass ``p`` (over what top-k left) → sample from the
    softmax of what remains. ``top_k=1`` returns the argmax (greedy decoding);
    temperature → 0 approaches it too.

    Args:
        logits: next-token logits, shape (V,) or (B, V).
        temperature: > 0; < 1 sharpens the distribution, > 1 flattens it.
        top_k: keep only the k most likely tokens (1 <= k <= V), or None.
        top_p: keep the smallest set of tokens with mass >= p (0 < p <= 1), or None.
        seed: an int (the same draw every call: stateless), a
            ``keras.random.SeedGenerator`` (a reproducible stream), or None
            (Keras' global generator).

    Returns:
        int32 token ids: shape () for (V,) logits, (B,) for (B, V) logits.
    """
    logits = _as_logits(logits)
    check_sampling_args(temperature, top_k, top_p, vocab_size=logits.shape[-1])
    single = len(logits.shape) == 1
    if single:
        logits = logits[None, :]
    ids = _sample(logits, float(temperature), top_k, top_p, seed)
    return ids[0] if single else ids


def beam_search(
    step_fn: Callable[[Any, Any], tuple[Any, Any]],
    initial_logits: Any,
    initial_state: Any,
    max_new_tokens: int,
    num_beams: int = 4,
) -> tuple[Any, Any]:
    """Beam search over any autoregressive model that can take one step.

    Keeps, for every batch row, the ``num_beams`` continuations with the
    highest total log-probability ``sum_t log p(x_t | x_<t)``. Beam search
    looks for the *most likely* text, which for language models tends to be
    dull and repetitive; sampling (:func:`sample_next`) gives livelier text.

    The model is seen only through ``step_fn``:

    ``step_fn(token_ids, state) -> (logits, new_state)``
        ``token_ids`` int32 (N,), the token just chosen for each of N
        sequences; ``state`` a tensor or nested structure (list/tuple/dict)
        of tensors whose leading axis is N (RNN: the recurrent state;
        Transformer: a KV cache, or the ids so far); returns the next-token
        logits (N, V) and the updated state.

    Args:
        step_fn: see above.
        initial_logits: next-token logits after reading the prompt, (B, V).
        initial_state: the state after reading the prompt, leading axis B
            (or None if ``step_fn`` needs none).
        max_new_tokens: number of tokens to generate, >= 1.
        num_beams: beams per batch row, >= 1 (1 = greedy decoding).

    Returns:
        ``(sequences, scores)``: int32 (B, num_beams, max_new_tokens), best
        beam first, and their total log-probabilities (B, num_beams),
        descending. If ``num_beams`` exceeds the number of distinct
        continuations, the extra beams have score ``-inf``.
    """
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1; got {max_new_tokens!r}.")
    if not _is_int(num_beams) or num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1; got {num_beams!r}.")
    logits = _as_logits(initial_logits, "initial_logits")
    if len(logits.shape) != 2:
        raise ValueError(f"initial_logits must have shape (batch, vocab); got {tuple(logits.shape)}.")
    batch, vocab = int(logits.shape[0]), int(logits.shape[1])
    K = int(num_beams)

    def for_each_beam(t: Any) -> Any:  # (B, ...) -> (B*K, ...), row b*K + k
        return ops.repeat(t, K, axis=0)

    def reorder(state: Any, rows: Any) -> Any:
        if state is None:
            return None
        return keras.tree.map_structure(lambda t: ops.take(t, rows, axis=0), state)

    state = None if initial_state is None else keras.tree.map_structure(for_each_beam, initial_state)
    logits = for_each_beam(logits)
    # All K beams start as the same (empty) continuation: only beam 0 is live,
    # otherwise the first step would pick the same token K times.
    scores = ops.convert_to_tensor(np.tile([[0.0] + [NEG_INF] * (K - 1)], (batch, 1)).astype("float32"))
    sequences = ops.zeros((batch, K, 0), dtype="int32")
    row_offset = ops.arange(batch, dtype="int32")[:, None] * K

    for step in range(max_new_tokens):
        log_probs = ops.reshape(ops.log_softmax(ops.cast(logits, "float32"), axis=-1), (batch, K, vocab))
        candidates = ops.reshape(scores[:, :, None] + log_probs, (batch, K * vocab))
        scores, flat = ops.top_k(candidates, K)  # (B, K), best first
        flat = ops.cast(flat, "int32")
        parent, token = flat // vocab, flat % vocab  # which beam it extends, which token
        rows = ops.reshape(row_offset + parent, (-1,))
        history = ops.take(ops.reshape(sequences, (batch * K, step)), rows, axis=0)
        sequences = ops.concatenate([ops.reshape(history, (batch, K, step)), token[:, :, None]], axis=2)
        if step < max_new_tokens - 1:  # the last token needs no further step
            state = reorder(state, rows)
            logits, state = step_fn(ops.reshape(token, (-1,)), state)
    return sequences, scores
