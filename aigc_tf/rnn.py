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

from typing import Any

import keras
from keras import layers

from aigc_tf.lm import LanguageModel, Tokenizer
from aigc_tf.validation import check_choice, check_int, check_rate

__all__ = ["CharRNN"]

State = list[Any]  # one layer's state: [h, c] (LSTM) or [h] (GRU), each (B, units)


@keras.saving.register_keras_serializable(package="aigc_tf")
class CharRNN(LanguageModel):
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
        tokenizer: optional :class:`~aigc_tf.lm.Tokenizer` (e.g. a
            :class:`~aigc_tf.text.CharTokenizer`); saved with the model, and
            lets :meth:`generate` take and return strings.
        seed: seed for the model's own random generators (dropout, sampling).

    Generation (:meth:`~aigc_tf.lm.LanguageModel.generate`) reads the prompt
    once and then carries the recurrent state, one RNN step per character
    (``use_cache=True``); ``use_cache=False`` re-reads the whole text for every
    character instead.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        units: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        tokenizer: Tokenizer | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(vocab_size, tokenizer=tokenizer, seed=seed, **kwargs)
        self.embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
        self.units = check_int("units", units, minimum=1)
        self.num_layers = check_int("num_layers", num_layers, minimum=1)
        self.cell = check_choice("cell", cell, ("lstm", "gru"))
        self.dropout = check_rate("dropout", dropout)

        self.embedding = layers.Embedding(self.vocab_size, self.embedding_dim, name="embedding")
        rnn_class = layers.LSTM if cell == "lstm" else layers.GRU
        self.rnns = [
            rnn_class(self.units, return_sequences=True, return_state=True, name=f"{cell}_{i}")
            for i in range(self.num_layers)
        ]
        # float32 head: under mixed_float16 the logits (and so the loss and the
        # softmax used for sampling) stay in full precision.
        self.head = layers.Dense(self.vocab_size, dtype="float32", name="logits")

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

    # ------------------------------------------------- decoding hooks (lm.LanguageModel)

    def _read_prompt(self, ids: Any) -> tuple[Any, list[State]]:
        logits, state = self(ids, training=False, return_state=True)
        return logits[:, -1, :], state

    def _step(self, token: Any, state: list[State]) -> tuple[Any, list[State]]:
        logits, state = self(token[:, None], training=False, initial_state=state, return_state=True)
        return logits[:, -1, :], state

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            embedding_dim=self.embedding_dim,
            units=self.units,
            num_layers=self.num_layers,
            cell=self.cell,
            dropout=self.dropout,
        )
        return config
