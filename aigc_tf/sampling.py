"""Decoding: turn next-token logits into tokens.

Shared by every language model of the course (the character RNN, the
Transformer). A model only has to provide next-token logits; these functions
decide which token comes next.

* :func:`top_k_filter` / :func:`top_p_filter` remove unlikely tokens by setting
  their logits to ``-inf`` (probability 0 after the softmax).
* :func:`sample` divides the logits by a temperature, applies the filters
  and draws one token per row (``top_k=1`` is greedy decoding);
  ``sample_next`` is another name for it.
* :func:`sample_loop` draws a whole continuation from any model exposing a
  one-token ``step_fn``; :func:`beam_search` keeps the ``num_beams`` most
  likely continuations instead, over the same ``step_fn``.
* A *logits processor* ``processor(logits, tokens, length) -> logits`` edits
  the logits before each choice, seeing the tokens so far. :class:`NoRepeatNGram`
  is one: it bans any token that would repeat an n-gram of the text.

Everything works on **logits** (unnormalised log-probabilities) in float32:
``keras.random.categorical`` expects logits, and a temperature divides logits,
not probabilities (dividing probabilities by T and renormalising changes nothing).

The step-function protocol, used by both :func:`sample_loop` and :func:`beam_search`:

``step_fn(token_ids, state) -> (logits, new_state)``
    ``token_ids`` int32 (N,), the token just chosen for each of N sequences;
    ``state`` a tensor or nested structure (list/tuple/dict) of tensors whose
    leading axis is N (RNN: the recurrent state; Transformer: a KV cache, or
    the ids so far), or None; returns the next-token logits (N, V) and the
    updated state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.ngrams import NoRepeatNGram
from aigc_tf.validation import check_float, check_int, check_optional_int, check_probability

__all__ = [
    "InvalidLogitsError",
    "LogitsProcessor",
    "NoRepeatNGram",
    "beam_search",
    "beam_search_loop",
    "check_sampling_args",
    "sample",
    "sample_loop",
    "sample_next",
    "top_k_filter",
    "top_p_filter",
]

NEG_INF = float("-inf")
POS_INF = float("inf")


class InvalidLogitsError(ValueError):
    """A row of logits has no finite maximum (every entry ``-inf``, or a NaN): no token can be drawn.

    A model whose weights have diverged gives NaN logits; a logits processor that bans
    every token gives a row of ``-inf``. Decoding stops with this error instead of
    returning an id outside the vocabulary.
    """


INVALID_LOGITS_REASON = (
    "no finite maximum (every entry -inf, or a NaN): there is no token to draw. NaN logits come from "
    "a model whose weights diverged; a row of -inf from logits processors that banned every token"
)


def _sanitise(logits: Any) -> tuple[Any, Any]:
    """Define the draw for every row of (B, V) float32 logits.

    ``+inf`` entries share the row's mass equally (a limit of ever larger logits);
    a row with a NaN or no entry above ``-inf`` is *invalid*: it is replaced by
    zeros, so a compiled loop can carry on with an in-vocabulary placeholder
    while the caller is told.

    Returns:
        ``(logits, invalid)``: the defined logits (B, V) and a bool (B,) mask.
    """
    positive = ops.equal(logits, POS_INF)
    logits = ops.where(ops.any(positive, axis=-1, keepdims=True), ops.where(positive, 0.0, NEG_INF), logits)
    invalid = ops.logical_or(ops.any(ops.isnan(logits), axis=-1), ops.all(ops.equal(logits, NEG_INF), axis=-1))
    return ops.where(invalid[:, None], 0.0, logits), invalid


def _raise_if_invalid(invalid: Any, where: str) -> None:
    """Eagerly: raise :class:`InvalidLogitsError` naming the rows (inside a graph this cannot raise)."""
    if tf.executing_eagerly():
        rows = np.flatnonzero(np.asarray(invalid))
        if rows.size:
            raise InvalidLogitsError(f"{where}: row(s) {rows.tolist()} of the logits have {INVALID_LOGITS_REASON}.")


StepFn = Callable[[Any, Any], tuple[Any, Any]]


class LogitsProcessor(Protocol):
    """Edits next-token logits before a token is chosen, seeing the tokens so far.

    ``processor(logits, tokens, length) -> logits``: ``logits`` float32 (N, V);
    ``tokens`` int32 (N, C) whose first ``length`` columns are the text so far
    (prompt and generated tokens; the rest is padding); ``length`` an int32
    scalar, the position the next token will take. It must be traceable
    (``keras.ops`` only) so the compiled decoding loops can run it, and
    hashable (compiled loops are cached per processor).
    """

    def __call__(self, logits: Any, tokens: Any, length: Any) -> Any: ...


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


def check_sampling_args(
    temperature: Any = 1.0,
    top_k: int | None = None,
    top_p: Any = None,
    vocab_size: int | None = None,
) -> None:
    """Validate decoding arguments in plain Python, before any tensor work.

    ``temperature`` and ``top_p`` may also be tensors (inside ``tf.function``);
    those are not checked. ``top_k`` is always a Python int: it sets a static shape.

    Raises:
        ValueError: ``temperature <= 0``, ``top_k < 1`` or ``> vocab_size``,
            ``top_p`` outside (0, 1].
        TypeError: arguments of the wrong type.
    """
    if not ops.is_tensor(temperature):
        check_float("temperature", temperature, low=0.0, low_inclusive=False)
    top_k = check_optional_int("top_k", top_k, minimum=1)
    if top_k is not None and vocab_size is not None and top_k > vocab_size:
        raise ValueError(f"top_k must be <= the vocabulary size {vocab_size}, got {top_k}.")
    if top_p is not None and not ops.is_tensor(top_p):
        check_probability("top_p", top_p)


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


def top_p_filter(logits: Any, p: Any) -> Any:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches ``p``.

    Tokens are sorted by probability; a token is kept if the probability of
    the tokens *before* it is still below ``p``. That keeps the token that
    crosses ``p``, always keeps the most likely token, and keeps everything
    for ``p = 1``. Entries already at ``-inf`` (say, after :func:`top_k_filter`)
    have probability 0, so applying top-p after top-k renormalises over the
    top-k tokens.

    Args:
        logits: shape (V,) or (B, V).
        p: probability mass to keep, ``0 < p <= 1`` (a float, or a scalar tensor).

    Returns:
        float32 logits, same shape, excluded entries ``-inf``.
    """
    logits = _as_logits(logits)
    check_sampling_args(top_p=p)
    sorted_logits = ops.top_k(logits, logits.shape[-1])[0]  # descending
    probs = ops.softmax(sorted_logits, axis=-1)
    mass_before = ops.cumsum(probs, axis=-1) - probs  # exclusive cumulative sum
    # p = 1 keeps everything explicitly: round-off could otherwise make the
    # mass before a tiny tail token reach 1.0 and drop it.
    keep = ops.logical_or(mass_before < p, ops.cast(p, "float32") >= 1.0)
    n_keep = ops.sum(ops.cast(keep, "int32"), axis=-1, keepdims=True)  # >= 1: mass before the top token is 0
    threshold = ops.take_along_axis(sorted_logits, n_keep - 1, axis=-1)  # smallest kept logit
    return ops.where(logits < threshold, NEG_INF, logits)


def sample(
    logits: Any,
    *,
    temperature: Any = 1.0,
    top_k: int | None = None,
    top_p: Any = None,
    seed: int | keras.random.SeedGenerator | None = None,
) -> Any:
    """Draw the next token for each row of logits.

    Order of operations: divide by ``temperature`` → keep the top ``k`` →
    keep the nucleus of mass ``p`` (over what top-k left) → sample from the
    softmax of what remains. ``top_k=1`` returns the argmax (greedy decoding);
    temperature → 0 approaches it too.

    Safe inside ``tf.function`` (and XLA): ``temperature`` and ``top_p`` may
    be scalar tensors there (a new value then does not retrace); Python
    values are checked first.

    Args:
        logits: next-token logits, shape (V,) or (B, V).
        temperature: > 0; < 1 sharpens the distribution, > 1 flattens it.
        top_k: keep only the k most likely tokens (1 <= k <= V), or None.
        top_p: keep the smallest set of tokens with mass >= p (0 < p <= 1), or None.
        seed: an int (the same draw every call: stateless), a
            ``keras.random.SeedGenerator`` (a reproducible stream), or None
            (Keras' global generator).

    ``+inf`` logits share their row's mass equally. A row with no finite maximum
    (all ``-inf``, or a NaN) raises :class:`InvalidLogitsError`; inside ``tf.function``,
    where nothing can raise, it draws an in-vocabulary placeholder (``sample_loop``
    reports such steps).

    Returns:
        int32 token ids: shape () for (V,) logits, (B,) for (B, V) logits.
    """
    logits = _as_logits(logits)
    check_sampling_args(temperature, top_k, top_p, vocab_size=logits.shape[-1])
    single = len(logits.shape) == 1
    if single:
        logits = logits[None, :]
    ids, invalid = _draw(logits, temperature, top_k, top_p, seed)
    _raise_if_invalid(invalid, "sample")
    return ids[0] if single else ids


#: The name this function had first; kept as an alias of :func:`sample`.
sample_next = sample


def _draw(logits: Any, temperature: Any, top_k: int | None, top_p: Any, seed: Any) -> tuple[Any, Any]:
    """The body of :func:`sample` for checked (B, V) float32 logits: ``(ids (B,), invalid rows (B,))``."""
    logits, invalid = _sanitise(logits)
    if top_k == 1:  # greedy: exact argmax, no randomness
        return ops.cast(ops.argmax(logits, axis=-1), "int32"), invalid
    logits = logits / ops.cast(temperature, "float32")
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return keras.random.categorical(logits, 1, dtype="int32", seed=seed)[:, 0], invalid


def _is_python_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def sample_loop(
    step_fn: StepFn,
    logits: Any,
    state: Any,
    tokens: Any,
    length: Any,
    num_tokens: Any,
    *,
    temperature: Any = 1.0,
    top_k: int | None = None,
    top_p: Any = None,
    seed: int | keras.random.SeedGenerator | None = None,
    logits_processors: Sequence[LogitsProcessor] = (),
    return_invalid: bool = False,
) -> Any:
    """Sample ``num_tokens`` tokens autoregressively: choose a token, feed it back, repeat.

    Token ``i`` is written at ``tokens[:, length + i]``: each one is chosen
    from the current logits (after the logits processors, then as
    :func:`sample` does), and ``step_fn`` turns it into the next logits. The
    last token needs no step, so ``step_fn`` runs ``num_tokens - 1`` times.

    The same code serves both ways of running:

    * called **eagerly**, it is a Python loop: ``step_fn`` may then change the
      shape of its state (say, the whole text so far, re-read at every step),
      and ``length``/``num_tokens`` are Python ints;
    * called inside ``tf.function`` (with or without XLA), it is one
      ``while_loop``: the state keeps its shapes, and ``length``,
      ``num_tokens``, ``temperature`` and ``top_p`` may be tensors.

    With the same seed generator state both give the same tokens (XLA draws
    different random numbers than the graph for the same seed; greedy
    decoding agrees everywhere).

    Args:
        step_fn: ``step_fn(token_ids, state) -> (logits, state)`` (see the module docstring).
        logits: next-token logits after reading the prompt, (B, V).
        state: the state after reading the prompt (or None).
        tokens: int32 (B, C): the prompt in its first ``length`` columns, room
            for ``num_tokens`` more (``length + num_tokens <= C``). The logits
            processors see it.
        length: the prompt length.
        num_tokens: how many tokens to draw, >= 1.
        temperature, top_k, top_p: as for :func:`sample`.
        seed: a ``keras.random.SeedGenerator`` (one draw per token from its
            stream), an int (eagerly only: a fresh generator with that seed),
            or None (Keras' global generator).
        logits_processors: :class:`LogitsProcessor` callables applied in order
            before every choice.
        return_invalid: also return the first new token whose logits had a row with no
            finite maximum (see :func:`sample`), -1 if none: inside ``tf.function``
            the loop cannot raise, so its caller does. Eagerly, without it, such a
            token raises :class:`InvalidLogitsError` at once.

    Returns:
        ``tokens`` with the new ids at ``[:, length : length + num_tokens]``, int32 (B, C);
        with ``return_invalid``, ``(tokens, first_invalid)`` (an int32 scalar).
    """
    eager = tf.executing_eagerly()
    if _is_python_int(seed):
        if not eager:
            raise TypeError("sample_loop inside tf.function needs seed=keras.random.SeedGenerator(...) or None.")
        seed = keras.random.SeedGenerator(int(seed))
    logits = _as_logits(logits, "logits")
    if len(logits.shape) != 2:
        raise ValueError(f"logits must have shape (batch, vocab); got {tuple(logits.shape)}.")
    check_sampling_args(temperature, top_k, top_p, vocab_size=logits.shape[-1])
    tokens = ops.cast(tokens, "int32")
    if _is_python_int(num_tokens):
        num_tokens = check_int("num_tokens", num_tokens, minimum=1)
        capacity = tokens.shape[1]
        if _is_python_int(length) and capacity is not None and length + num_tokens > capacity:
            raise ValueError(f"tokens has {capacity} columns; length + num_tokens = {length + num_tokens} do not fit.")
    processors = tuple(logits_processors)
    stateless = state is None
    length = ops.cast(length, "int32")

    def choose(i: Any, logits: Any, tokens: Any, bad: Any) -> tuple[Any, Any, Any]:  # token i: process, draw, write
        position = length + i
        for processor in processors:
            logits = processor(logits, tokens, position)
        token, invalid = _draw(logits, temperature, top_k, top_p, seed)
        if eager and not return_invalid:
            _raise_if_invalid(invalid, f"sample_loop, new token {i}")
        bad = ops.where(ops.logical_and(bad < 0, ops.any(invalid)), i, bad)  # the first invalid step
        return token, ops.slice_update(tokens, [0, position], token[:, None]), bad

    def body(i: Any, logits: Any, state: Any, tokens: Any, bad: Any) -> tuple[Any, Any, Any, Any, Any]:
        token, tokens, bad = choose(i, logits, tokens, bad)
        logits, state = step_fn(token, None if stateless else state)
        return i + 1, ops.cast(logits, "float32"), () if stateless else state, tokens, bad

    carried = () if stateless else state  # a while_loop carries tensors only
    bad = ops.full((), -1, "int32")
    if eager:
        for i in range(int(num_tokens) - 1):
            _, logits, carried, tokens, bad = body(i, logits, carried, tokens, bad)
        i = int(num_tokens) - 1
    else:
        i, logits, _, tokens, bad = ops.while_loop(
            lambda i, *_: i < num_tokens - 1, body, (ops.zeros((), "int32"), logits, carried, tokens, bad)
        )
    _, tokens, bad = choose(i, logits, tokens, bad)
    return (tokens, bad) if return_invalid else tokens


def beam_search(
    step_fn: StepFn,
    initial_logits: Any,
    initial_state: Any,
    max_new_tokens: int,
    num_beams: int = 4,
    *,
    prompt_ids: Any = None,
    logits_processors: Sequence[LogitsProcessor] = (),
) -> tuple[Any, Any]:
    """Beam search over any autoregressive model that can take one step.

    Keeps, for every batch row, the ``num_beams`` continuations with the
    highest total log-probability ``sum_t log p(x_t | x_<t)``. Beam search
    looks for the *most likely* text, which for language models tends to be
    dull and repetitive; sampling (:func:`sample_loop`) gives livelier text.
    The model is seen only through ``step_fn`` (see the module docstring).

    Args:
        step_fn: ``step_fn(token_ids, state) -> (logits, state)``.
        initial_logits: next-token logits after reading the prompt, (B, V).
        initial_state: the state after reading the prompt, leading axis B
            (or None if ``step_fn`` needs none).
        max_new_tokens: number of tokens to generate, >= 1.
        num_beams: beams per batch row, >= 1 (1 = greedy decoding).
        prompt_ids: int (B, P), the prompt; the logits processors see it
            followed by each beam's tokens (without it, only the beam's tokens).
        logits_processors: applied to every beam's log-probabilities before
            the beams are ranked (a banned token gets ``-inf``; the scores stay
            the model's log-probabilities, as in Hugging Face's beam search).

    Returns:
        ``(sequences, scores)``: int32 (B, num_beams, max_new_tokens), best
        beam first, and their total log-probabilities (B, num_beams),
        descending. If ``num_beams`` exceeds the number of allowed
        continuations, the extra beams have score ``-inf``.
    """
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    K = check_int("num_beams", num_beams, minimum=1)
    logits = _as_logits(initial_logits, "initial_logits")
    if len(logits.shape) != 2:
        raise ValueError(f"initial_logits must have shape (batch, vocab); got {tuple(logits.shape)}.")
    batch, vocab = int(logits.shape[0]), int(logits.shape[1])
    processors = tuple(logits_processors)

    def for_each_beam(t: Any) -> Any:  # (B, ...) -> (B*K, ...), row b*K + k
        return ops.repeat(t, K, axis=0)

    def reorder(state: Any, rows: Any) -> Any:
        if state is None:
            return None
        return keras.tree.map_structure(lambda t: ops.take(t, rows, axis=0), state)

    state = None if initial_state is None else keras.tree.map_structure(for_each_beam, initial_state)
    logits = for_each_beam(logits)
    prompt = ops.zeros((batch * K, 0), "int32") if prompt_ids is None else for_each_beam(ops.cast(prompt_ids, "int32"))
    # All K beams start as the same (empty) continuation: only beam 0 is live,
    # otherwise the first step would pick the same token K times.
    scores = ops.convert_to_tensor(np.tile([[0.0] + [NEG_INF] * (K - 1)], (batch, 1)).astype("float32"))
    sequences = ops.zeros((batch, K, 0), dtype="int32")
    row_offset = ops.arange(batch, dtype="int32")[:, None] * K

    for step in range(max_new_tokens):
        defined, invalid = _sanitise(ops.cast(logits, "float32"))  # +inf entries share the mass
        log_probs = ops.log_softmax(defined, axis=-1)
        if processors:
            history = ops.concatenate([prompt, ops.reshape(sequences, (batch * K, step))], axis=1)
            for processor in processors:
                log_probs = processor(log_probs, history, history.shape[1])
            invalid = ops.logical_or(invalid, ops.all(ops.equal(log_probs, NEG_INF), axis=-1))
        live = ops.reshape(scores > NEG_INF, (-1,))  # a dead beam's logits do not matter
        _raise_if_invalid(ops.logical_and(invalid, live), f"beam_search, new token {step}")
        candidates = ops.reshape(scores[:, :, None] + ops.reshape(log_probs, (batch, K, vocab)), (batch, K * vocab))
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


def beam_search_loop(
    step_fn: StepFn,
    initial_logits: Any,
    initial_state: Any,
    tokens: Any,
    length: Any,
    num_tokens: Any,
    num_beams: int,
    *,
    logits_processors: Sequence[LogitsProcessor] = (),
) -> tuple[Any, Any, Any]:
    """:func:`beam_search` with fixed shapes, as one ``while_loop``: the form ``tf.function``/XLA compiles.

    The beams' texts live in a buffer like :func:`sample_loop`'s, so every step has the
    same shapes; the search itself is :func:`beam_search`'s (same ranking, same ties,
    the same tokens and scores — tested).

    Args:
        step_fn, initial_logits, initial_state: as for :func:`beam_search`; the state keeps its shapes.
        tokens: int32 (B, C): the prompt in its first ``length`` columns, room for ``num_tokens``
            more; the logits processors see it.
        length: the prompt length (int or int32 scalar).
        num_tokens: tokens to add, >= 1 (int or int32 scalar).
        num_beams: beams per row K (a Python int: it fixes shapes).
        logits_processors: applied to every beam's log-probabilities before ranking.

    Returns:
        ``(tokens, scores, first_invalid)``: int32 (B, K, C) with each beam's text (best first),
        their summed log-probabilities (B, K), and the first step whose logits had an
        invalid row among the live beams (-1 if none; the compiled loop cannot raise).
    """
    K = check_int("num_beams", num_beams, minimum=1)
    logits = _as_logits(initial_logits, "initial_logits")
    batch, vocab = int(logits.shape[0]), int(logits.shape[1])
    processors = tuple(logits_processors)
    length = ops.cast(length, "int32")

    def for_each_beam(t: Any) -> Any:  # (B, ...) -> (B*K, ...), row b*K + k
        return ops.repeat(t, K, axis=0)

    stateless = initial_state is None
    state = () if stateless else keras.tree.map_structure(for_each_beam, initial_state)
    logits = for_each_beam(logits)
    text = for_each_beam(ops.cast(tokens, "int32"))
    scores = ops.convert_to_tensor(np.tile([[0.0] + [NEG_INF] * (K - 1)], (batch, 1)).astype("float32"))
    row_offset = ops.arange(batch, dtype="int32")[:, None] * K

    def choose(i, logits, text, scores, bad):  # extend every beam by one token, keep the K best
        defined, invalid = _sanitise(ops.cast(logits, "float32"))
        log_probs = ops.log_softmax(defined, axis=-1)
        for processor in processors:
            log_probs = processor(log_probs, text, length + i)
        invalid = ops.logical_or(invalid, ops.all(ops.equal(log_probs, NEG_INF), axis=-1))
        live = ops.reshape(scores > NEG_INF, (-1,))
        bad = ops.where(ops.logical_and(bad < 0, ops.any(ops.logical_and(invalid, live))), i, bad)
        candidates = ops.reshape(scores[:, :, None] + ops.reshape(log_probs, (batch, K, vocab)), (batch, K * vocab))
        scores, flat = ops.top_k(candidates, K)
        flat = ops.cast(flat, "int32")
        rows = ops.reshape(row_offset + flat // vocab, (-1,))
        token = ops.reshape(flat % vocab, (-1,))
        text = ops.slice_update(ops.take(text, rows, axis=0), [0, length + i], token[:, None])
        return token, rows, text, scores, bad

    def body(i, logits, state, text, scores, bad):
        token, rows, text, scores, bad = choose(i, logits, text, scores, bad)
        if not stateless:
            state = keras.tree.map_structure(lambda t: ops.take(t, rows, axis=0), state)
        logits, state = step_fn(token, None if stateless else state)
        return i + 1, ops.cast(logits, "float32"), () if stateless else state, text, scores, bad

    bad = ops.full((), -1, "int32")
    i, logits, _, text, scores, bad = ops.while_loop(
        lambda i, *_: i < num_tokens - 1, body, (ops.zeros((), "int32"), logits, state, text, scores, bad)
    )
    _, _, text, scores, bad = choose(i, logits, text, scores, bad)
    return ops.reshape(text, (batch, K, -1)), scores, bad
