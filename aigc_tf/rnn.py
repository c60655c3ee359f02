"""A character-level recurrent language model (char-RNN) with LSTM or GRU cells.

The model reads characters one at a time and, at every position, outputs
logits for the next character::

    ids (B, T) → Embedding → [LSTM|GRU] × num_layers → Dense → logits (B, T, V)

Training is ordinary next-character classification (``fit`` on
``(inputs, targets)`` windows from :func:`aigc_tf.text.make_char_dataset`,
loss ``SparseCategoricalCrossentropy(from_logits=True)``).

Generation is autoregressive, like :func:`aigc_tf.autoregressive.forecast_ar`:
predict, sample, feed the sample back. Because an RNN summarises the past in
its recurrent state, each new character costs **one** step: read the prompt
once, then carry the state (the RNN analogue of a Transformer's KV cache).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from aigc_tf import sampling
from aigc_tf.text import CharTokenizer

__all__ = ["CharRNN", "bits_per_char", "perplexity", "evaluate_loss"]

State = list  # per layer: [h, c] (LSTM) or [h] (GRU), each (B, units)


@keras.saving.register_keras_serializable(package="aigc_tf")
class CharRNN(keras.Model):
    """Character-level language model: embedding, stacked LSTM/GRU, linear head.

    Example:
        >>> tok = CharTokenizer.from_text(text)
        >>> model = CharRNN(tok.vocab_size, tokenizer=tok)
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit(make_char_dataset(tok.encode(text), 100, 64), epochs=1)
        >>> model.generate("ROMEO:", 200, temperature=0.8)

    Args:
        vocab_size: number of distinct characters V.
        embedding_dim: size of the character embedding.
        units: hidden size of each recurrent layer.
        num_layers: number of stacked recurrent layers.
        cell: ``"lstm"`` or ``"gru"``.
        dropout: dropout rate applied to the output of every recurrent layer
            during training (between layers and before the head), in [0, 1).
            Recurrent (state-to-state) dropout is not used: it would disable
            the fast cuDNN kernels on a GPU.
        tokenizer: optional :class:`~aigc_tf.text.CharTokenizer`; saved with
            the model, and lets :meth:`generate` take and return strings.
        seed: seed for the model's own random generators (dropout, sampling).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        units: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        tokenizer: CharTokenizer | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("vocab_size", vocab_size),
            ("embedding_dim", embedding_dim),
            ("units", units),
            ("num_layers", num_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru'; got {cell!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}.")
        if tokenizer is not None:
            if not isinstance(tokenizer, CharTokenizer):
                raise TypeError(f"tokenizer must be a CharTokenizer or None; got {type(tokenizer).__name__}.")
            if tokenizer.vocab_size != vocab_size:
                raise ValueError(
                    f"tokenizer has {tokenizer.vocab_size} characters but vocab_size={vocab_size}; they must match."
                )
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.cell = cell
        self.dropout = float(dropout)
        self.tokenizer = tokenizer
        self.seed = seed

        self.embedding = layers.Embedding(self.vocab_size, self.embedding_dim, name="embedding")
        rnn_class = layers.LSTM if cell == "lstm" else layers.GRU
        self.rnns = [
            rnn_class(self.units, return_sequences=True, return_state=True, name=f"{cell}_{i}")
            for i in range(self.num_layers)
        ]
        # float32 head: under mixed_float16 the logits (and so the loss and the
        # softmax used for sampling) stay in full precision.
        self.head = layers.Dense(self.vocab_size, dtype="float32", name="logits")
        # Model-owned randomness: one stream for dropout, one for sampling, so
        # generating text does not shift the dropout masks of later training.
        self.dropout_seed = keras.random.SeedGenerator(seed)
        self.sampling_seed = keras.random.SeedGenerator(None if seed is None else seed + 1)

    # ----------------------------------------------------------------- forward

    def call(
        self,
        ids: Any,
        training: bool = False,
        initial_state: list[State] | None = None,
        return_state: bool = False,
    ) -> Any:
        """Next-character logits at every position.

        Args:
            ids: int token ids, shape (B, T).
            training: enables dropout.
            initial_state: recurrent state to start from, one entry per layer
                (``[h, c]`` for LSTM, ``[h]`` for GRU, each (B, units)); zeros if None.
            return_state: also return the state after the last position.

        Returns:
            float32 logits (B, T, V); with ``return_state``, ``(logits, state)``.
        """
        x = self.embedding(ids)
        states = []
        for i, rnn in enumerate(self.rnns):
            outputs = rnn(x, initial_state=None if initial_state is None else initial_state[i], training=training)
            x, layer_state = outputs[0], list(outputs[1:])
            states.append(layer_state)
            if training and self.dropout > 0:
                x = keras.random.dropout(x, self.dropout, seed=self.dropout_seed)
        logits = self.head(x)
        return (logits, states) if return_state else logits

    # ----------------------------------------------- one-step interface (compiled)

    @tf.function(reduce_retracing=True)
    def read_prompt(self, ids: Any) -> tuple[Any, list[State]]:
        """Read a prompt once; return the next-character logits and the state.

        Args:
            ids: int32 (B, T), T >= 1.

        Returns:
            ``(logits, state)``: logits (B, V) for the character after the
            prompt, and the recurrent state after it.
        """
        logits, state = self(ids, training=False, return_state=True)
        return logits[:, -1, :], state

    @tf.function(reduce_retracing=True)
    def step(self, ids: Any, state: list[State]) -> tuple[Any, list[State]]:
        """Feed one character per sequence and advance the state by one step.

        This is the ``step_fn`` of :func:`aigc_tf.sampling.beam_search`.

        Args:
            ids: int32 (B,), the latest character of each sequence.
            state: the state from :meth:`read_prompt` or a previous :meth:`step`.

        Returns:
            ``(logits, state)``: next-character logits (B, V) and the new state.
        """
        return self._one_step(ids, state)

    def _one_step(self, ids, state):
        logits, state = self(ids[:, None], training=False, initial_state=state, return_state=True)
        return logits[:, -1, :], state

    @tf.function(reduce_retracing=True)
    def _sample_and_step(self, logits, state, temperature, top_k, top_p):
        # Sampling and the RNN step in one compiled call: one dispatch per character.
        next_ids = sampling._sample(logits, temperature, top_k, top_p, seed=self.sampling_seed)
        logits, state = self._one_step(next_ids, state)
        return next_ids, logits, state

    @tf.function(reduce_retracing=True)
    def _sample_only(self, logits, temperature, top_k, top_p):
        return sampling._sample(logits, temperature, top_k, top_p, seed=self.sampling_seed)

    # ------------------------------------------------------------- generation

    def _prompt_to_ids(self, prompt: Any) -> tuple[np.ndarray, bool, bool]:
        """(ids (B, T) int32, was_1d, was_str) with clear errors for bad prompts."""
        as_str = isinstance(prompt, str)
        if as_str:
            if self.tokenizer is None:
                raise TypeError("prompt is a str but the model has no tokenizer; pass ids or attach a tokenizer.")
            prompt = self.tokenizer.encode(prompt)  # unknown characters → ValueError listing them
        ids = np.asarray(prompt)
        if ids.ndim not in (1, 2):
            raise ValueError(f"prompt_ids must have shape (T,) or (B, T); got {ids.shape}.")
        if ids.shape[-1] < 1 or ids.size == 0:
            raise ValueError(f"prompt_ids must contain at least one id per sequence; got shape {ids.shape}.")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"prompt_ids must be integers; got dtype {ids.dtype}.")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"prompt_ids must be in [0, {self.vocab_size}); got min {ids.min()}, max {ids.max()}.")
        was_1d = ids.ndim == 1
        return (ids[None, :] if was_1d else ids).astype(np.int32), was_1d, as_str

    def _format_output(self, ids: np.ndarray, was_1d: bool, as_str: bool) -> Any:
        out = ids[0] if was_1d else ids
        return self.tokenizer.decode(out) if as_str else out

    def generate(
        self,
        prompt_ids: Any,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        carry_state: bool = True,
    ) -> Any:
        """Continue a prompt by sampling ``max_new_tokens`` characters.

        Args:
            prompt_ids: ids (T,) or (B, T); or a str if a tokenizer is attached.
            max_new_tokens: characters to add, >= 0.
            temperature, top_k, top_p: see :func:`aigc_tf.sampling.sample_next`
                (``top_k=1`` is greedy).
            seed: makes the draw reproducible (resets the model's sampling
                generator); None continues its stream.
            carry_state: True (default) reads the prompt once and then runs one
                RNN step per new character. False re-reads the whole text at
                every step — same result, quadratic cost; kept to measure the
                difference.

        Returns:
            The prompt followed by the new ids, int32 (T + max_new_tokens,) for
            1-D input or (B, T + max_new_tokens) for 2-D input; a str for str input.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0; got {max_new_tokens!r}.")
        sampling.check_sampling_args(temperature, top_k, top_p, vocab_size=self.vocab_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None; got {seed!r}.")
        ids, was_1d, as_str = self._prompt_to_ids(prompt_ids)
        if max_new_tokens == 0:
            return self._format_output(ids, was_1d, as_str)
        if seed is not None:
            self.sampling_seed.state.assign(ops.convert_to_tensor([int(seed), 0], dtype=self.sampling_seed.state.dtype))

        # Tensors (not Python floats) so a new temperature does not retrace.
        temp = tf.constant(temperature, tf.float32)
        p = None if top_p is None else tf.constant(top_p, tf.float32)
        k = None if top_k is None else int(top_k)
        new = []
        if carry_state:
            logits, state = self.read_prompt(tf.constant(ids))
            for _ in range(max_new_tokens - 1):
                next_ids, logits, state = self._sample_and_step(logits, state, temp, k, p)
                new.append(next_ids)
            new.append(self._sample_only(logits, temp, k, p))
            new = np.stack([t.numpy() for t in new], axis=1)
        else:
            text = ids
            for _ in range(max_new_tokens):
                logits, _ = self.read_prompt(tf.constant(text))
                next_ids = self._sample_only(logits, temp, k, p).numpy()
                text = np.concatenate([text, next_ids[:, None]], axis=1)
            new = text[:, ids.shape[1] :]
        return self._format_output(np.concatenate([ids, new.astype(np.int32)], axis=1), was_1d, as_str)

    def beam_search(self, prompt_ids: Any, max_new_tokens: int, num_beams: int = 4) -> Any:
        """The most likely continuation found by beam search (see :func:`aigc_tf.sampling.beam_search`).

        Args:
            prompt_ids: ids (T,) or (B, T); or a str if a tokenizer is attached.
            max_new_tokens: characters to add, >= 1.
            num_beams: beams kept per sequence (1 = greedy decoding).

        Returns:
            The prompt followed by the best beam, same shapes/types as :meth:`generate`.
        """
        ids, was_1d, as_str = self._prompt_to_ids(prompt_ids)
        logits, state = self.read_prompt(tf.constant(ids))
        sequences, _ = sampling.beam_search(self.step, logits, state, max_new_tokens, num_beams)
        best = np.asarray(sequences)[:, 0, :]
        return self._format_output(np.concatenate([ids, best.astype(np.int32)], axis=1), was_1d, as_str)

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "embedding_dim": self.embedding_dim,
                "units": self.units,
                "num_layers": self.num_layers,
                "cell": self.cell,
                "dropout": self.dropout,
                "tokenizer": None if self.tokenizer is None else keras.saving.serialize_keras_object(self.tokenizer),
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> CharRNN:
        config = dict(config)
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


# ------------------------------------------------------------------- metrics


def bits_per_char(nats_per_char: float) -> float:
    """Cross-entropy in bits per character: ``nats / ln 2``.

    A uniform guess over V characters scores ``log2 V`` (6.02 bits for 65 characters).
    """
    return float(nats_per_char) / math.log(2.0)


def perplexity(nats_per_char: float) -> float:
    """``exp(loss)``: the model is as unsure as a uniform choice among this many characters."""
    return math.exp(float(nats_per_char))


def evaluate_loss(model: keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Mean next-character cross-entropy over a dataset, with derived metrics.

    Averages over every target character (a last, smaller batch is weighted
    by its size), independently of how the model was compiled.

    Args:
        model: maps ids (B, T) to logits (B, T, V).
        dataset: ``(inputs, targets)`` batches, e.g. from
            :func:`aigc_tf.text.make_char_dataset` with ``shuffle=False``.

    Returns:
        ``{"loss": nats/char, "bits_per_char": ..., "perplexity": ...}``.
    """

    # Compiled once per batch shape: eagerly, the forward pass is ~10x slower.
    @tf.function(reduce_retracing=True)
    def batch_loss(inputs, targets):
        logits = model(inputs, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return ops.sum(losses), ops.size(losses)

    total, count = 0.0, 0
    for inputs, targets in dataset:
        batch_total, batch_count = batch_loss(inputs, targets)
        total += float(batch_total)
        count += int(batch_count)
    if count == 0:
        raise ValueError("dataset is empty; nothing to evaluate.")
    loss = total / count
    return {"loss": loss, "bits_per_char": bits_per_char(loss), "perplexity": perplexity(loss)}
