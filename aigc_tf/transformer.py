"""A small GPT (decoder-only Transformer) for character-level text, written from scratch.

The model maps token ids to next-token logits at every position::

    ids (B, T) → token embedding + position embedding → [TransformerBlock] × L
        → LayerNorm → logits (B, T, V)

The blocks and their causal self-attention are in :mod:`aigc_tf.transformer_layers`
(importable from here too).

Generation is autoregressive. Without a cache every new token re-runs the
model on the whole context (as nanoGPT's ``generate`` does). With the
**KV cache** each layer keeps the keys and values of the positions already
seen; the prompt is processed once, and each new token costs one position.
The context is at most ``max_len`` tokens: past that it is cropped to the
last ``max_len`` tokens. With learned absolute positions a crop shifts the
position of every kept token, so all cached keys become stale: from then on
each new token re-runs the window (and refills the cache). Both paths give
the same tokens.

The sizes live in one :class:`GPTConfig` (as in nanoGPT's ``model.py``):
``GPT(vocab_size, max_len=..., ...)`` takes its fields as keywords,
``GPT.from_config_object(config)`` takes a config. Prompts, seeds and
``generate`` come from :class:`aigc_tf.lm.LanguageModel`.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from aigc_tf.lm import LanguageModel, Tokenizer
from aigc_tf.transformer_layers import (
    CausalSelfAttention,
    GPTConfig,
    LayerCache,
    TransformerBlock,
    build_once,
    normal,
)

__all__ = ["GPTConfig", "CausalSelfAttention", "TransformerBlock", "GPT"]


@keras.saving.register_keras_serializable(package="aigc_tf")
class GPT(LanguageModel):
    """A GPT-style character language model (decoder-only Transformer).

    Example:
        >>> tok = CharTokenizer.from_text(text)
        >>> model = GPT(tok.vocab_size, max_len=64, num_layers=4, num_heads=4, embed_dim=128, tokenizer=tok)
        >>> # or: GPT.from_config_object(GPTConfig(tok.vocab_size, max_len=64, ...), tokenizer=tok)
        >>> model.compile(keras.optimizers.AdamW(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit(make_char_dataset(tok.encode(text), 64, 12), epochs=1)
        >>> model.generate("ROMEO:", 200, temperature=0.8, top_k=20)

    Args:
        vocab_size, max_len, num_layers, num_heads, embed_dim, dropout,
            mlp_ratio, use_bias, tie_weights, gelu_approximate: the fields of :class:`GPTConfig`
            (validated there); ``model.config`` holds them.
        tokenizer: optional :class:`~aigc_tf.lm.Tokenizer`; saved with the
            model, and lets :meth:`generate` take and return strings.
        seed: seed for the model's random generators (initial weights are
            drawn from Keras' global seed; dropout and sampling from these).

    :meth:`~aigc_tf.lm.LanguageModel.generate` compiles its cached loop with
    XLA by default (``jit_compile=True``).
    """

    default_jit_compile = True

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        num_layers: int,
        num_heads: int,
        embed_dim: int,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
        use_bias: bool = True,
        tie_weights: bool = True,
        gelu_approximate: bool = False,
        tokenizer: Tokenizer | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        config = GPTConfig(
            vocab_size=vocab_size,
            max_len=max_len,
            num_layers=num_layers,
            num_heads=num_heads,
            embed_dim=embed_dim,
            dropout=dropout,
            mlp_ratio=mlp_ratio,
            use_bias=use_bias,
            tie_weights=tie_weights,
            gelu_approximate=gelu_approximate,
        )
        super().__init__(config.vocab_size, tokenizer=tokenizer, seed=seed, **kwargs)
        self.config = config
        E = config.embed_dim
        self.token_embedding = layers.Embedding(
            config.vocab_size, E, embeddings_initializer=normal(), name="token_embedding"
        )
        self.position_embedding = layers.Embedding(
            config.max_len, E, embeddings_initializer=normal(), name="position_embedding"
        )
        self.blocks = [
            TransformerBlock(config, None if seed is None else seed + 10 * (i + 1), name=f"block_{i}")
            for i in range(config.num_layers)
        ]
        self.ln_f = layers.LayerNormalization(epsilon=1e-5, center=config.use_bias, name="ln_f")
        # float32 head: under mixed_float16 the logits (loss, softmax for sampling) stay in full precision.
        self.head = (
            None
            if config.tie_weights
            else layers.Dense(
                config.vocab_size, use_bias=False, kernel_initializer=normal(), dtype="float32", name="head"
            )
        )

    @classmethod
    def from_config_object(cls, config: GPTConfig, *, tokenizer: Tokenizer | None = None, **kwargs: Any) -> GPT:
        """A GPT with the sizes of ``config``; ``kwargs`` (``seed``, ``name``, ...) as for the constructor."""
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}.")
        return cls(**config.to_dict(), tokenizer=tokenizer, **kwargs)

    # The config's fields, read-only (``model.max_len`` is ``model.config.max_len``).
    max_len = property(lambda self: self.config.max_len)
    num_layers = property(lambda self: self.config.num_layers)
    num_heads = property(lambda self: self.config.num_heads)
    embed_dim = property(lambda self: self.config.embed_dim)
    dropout = property(lambda self: self.config.dropout)
    mlp_ratio = property(lambda self: self.config.mlp_ratio)
    use_bias = property(lambda self: self.config.use_bias)
    tie_weights = property(lambda self: self.config.tie_weights)
    gelu_approximate = property(lambda self: self.config.gelu_approximate)
    context_length = max_len

    def build(self, input_shape: tuple = (None, None)) -> None:
        hidden = tuple(input_shape[:2]) + (self.embed_dim,)
        build_once(self.token_embedding, input_shape)
        build_once(self.position_embedding, (None,))
        for block in self.blocks:
            build_once(block, hidden)
        build_once(self.ln_f, hidden)
        if self.head is not None:
            build_once(self.head, hidden)
        self.built = True

    # ----------------------------------------------------------------- forward

    def _logits(self, x: Any) -> Any:
        """Final hidden states (B, T, E) → float32 logits (B, T, V)."""
        x = self.ln_f(x)
        if self.tie_weights:
            return ops.matmul(
                ops.cast(x, "float32"), ops.transpose(ops.cast(self.token_embedding.embeddings, "float32"))
            )
        return self.head(x)

    def call(self, ids: Any, training: bool = False, return_attention_scores: bool = False) -> Any:
        """Next-token logits at every position.

        Args:
            ids: int token ids (B, T), T <= ``max_len``.
            training: enables dropout.
            return_attention_scores: also return the attention weights of
                every block, a list of L tensors (B, H, T, T).

        Returns:
            float32 logits (B, T, V); with ``return_attention_scores``,
            ``(logits, weights)``.
        """
        length = ids.shape[1]
        if length is not None and length > self.max_len:
            raise ValueError(
                f"input has {length} positions but the model's context is max_len={self.max_len}; "
                f"crop the input (e.g. ids[:, -{self.max_len}:])."
            )
        positions = ops.arange(ops.shape(ids)[1], dtype="int32")
        x = self.token_embedding(ids) + self.position_embedding(positions)[None]
        if training and self.dropout > 0:
            x = keras.random.dropout(x, self.dropout, seed=self.dropout_seed)
        all_weights = []
        for block in self.blocks:
            out = block(x, training=training, return_attention_scores=return_attention_scores)
            if return_attention_scores:
                x, weights = out
                all_weights.append(weights)
            else:
                x = out
        logits = self._logits(x)
        return (logits, all_weights) if return_attention_scores else logits

    def call_with_cache(self, ids: Any, cache: list[LayerCache], cache_index: Any) -> tuple[Any, list[LayerCache]]:
        """Inference forward pass that reads and extends a KV cache.

        Args:
            ids: int32 (B, T): the tokens at positions
                ``cache_index .. cache_index + T - 1`` (the caller keeps
                ``cache_index + T <= max_len``).
            cache: per block ``(keys, values)``, each (B, H, max_len, head_dim),
                valid up to ``cache_index``.
            cache_index: int32 scalar tensor.

        Returns:
            ``(logits, cache)``: float32 logits (B, T, V) and the cache with
            these T positions written.
        """
        positions = ops.arange(ops.shape(ids)[1], dtype="int32") + ops.cast(cache_index, "int32")
        x = self.token_embedding(ids) + self.position_embedding(positions)[None]
        new_cache = []
        for block, layer_cache in zip(self.blocks, cache):
            x, layer_cache = block(x, training=False, cache=layer_cache, cache_index=cache_index)
            new_cache.append(layer_cache)
        return self._logits(x), new_cache

    # ------------------------------------------ decoding hooks (lm.LanguageModel)

    def _empty_cache(self, batch: int) -> list[LayerCache]:
        dtype = self.blocks[0].attn.compute_dtype
        shape = (batch, self.num_heads, self.max_len, self.embed_dim // self.num_heads)
        return [(ops.zeros(shape, dtype), ops.zeros(shape, dtype)) for _ in self.blocks]

    def _prompt_inputs(self, ids: Any) -> tuple[Any, Any]:
        """The last ``max_len`` tokens zero-padded to ``max_len``, and their number."""
        context = ids[:, -self.max_len :]  # the model reads at most max_len tokens
        length = ops.shape(context)[1]
        return ops.pad(context, [[0, 0], [0, self.max_len - length]]), length

    def _read_prompt(self, context: Any, length: Any) -> tuple[Any, dict]:
        """Process a prompt zero-padded to ``max_len`` (one compiled shape for every prompt length).

        Returns ``(logits, state)``: logits (B, V) for the token after the
        prompt; ``state`` a dict with ``"cache"`` (per block ``(keys, values)``,
        each (B, H, max_len, head_dim)), ``"ids"`` (B, max_len) the context
        left-aligned and zero-padded, ``"length"`` (B,) its length.

        Padding sits *after* the prompt, so the causal mask hides it from the
        prompt positions; its cache entries are overwritten as tokens arrive.
        """
        batch = ops.shape(context)[0]
        length = ops.cast(length, "int32")
        logits, cache = self.call_with_cache(context, self._empty_cache(batch), ops.zeros((), "int32"))
        last = ops.take(logits, ops.reshape(length - 1, (1,)), axis=1)[:, 0, :]
        return last, {"cache": cache, "ids": context, "length": ops.full((batch,), length, "int32")}

    def _step(self, token: Any, state: dict) -> tuple[Any, dict]:
        """Append one token per row; return the next-token logits (B, V) and the new state."""
        length = state["length"][0]  # the same for every row

        def one_position():  # the context still fits: run only the new position
            ids = ops.slice_update(state["ids"], [0, length], token[:, None])
            logits, cache = self.call_with_cache(token[:, None], state["cache"], length)
            return logits[:, -1, :], {"cache": cache, "ids": ids, "length": state["length"] + 1}

        def slide_window():  # context full: drop the oldest token; every position shifts, so re-run the window
            ids = ops.concatenate([state["ids"][:, 1:], token[:, None]], axis=1)
            logits, cache = self.call_with_cache(ids, state["cache"], ops.zeros((), "int32"))
            return logits[:, -1, :], {"cache": cache, "ids": ids, "length": state["length"]}

        return ops.cond(length < self.max_len, one_position, slide_window)

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(self.config.to_dict())
        return config
