"""A small GPT (decoder-only Transformer) for character-level text, written from scratch.

The model maps token ids to next-token logits at every position::

    ids (B, T) → token embedding + position embedding → [TransformerBlock] × L
        → LayerNorm → logits (B, T, V)

    TransformerBlock (pre-layer-norm, as in GPT-2 / nanoGPT):
        x = x + CausalSelfAttention(LayerNorm(x))
        x = x + MLP(LayerNorm(x))

The attention is written with ``keras.ops`` (it is the lesson)::

    Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V,   M[i, j] = 0 if j <= i else -inf

The causal mask ``M`` stops position i from seeing positions after it, so one
forward pass trains all T next-token predictions at once.

Generation is autoregressive. Without a cache every new token re-runs the
model on the whole context (as nanoGPT's ``generate`` does). With the
**KV cache** each layer keeps the keys and values of the positions already
seen; the prompt is processed once, and each new token costs one position.
The context is at most ``max_len`` tokens: past that it is cropped to the
last ``max_len`` tokens. With learned absolute positions a crop shifts the
position of every kept token, so all cached keys become stale: from then on
each new token re-runs the window (and refills the cache). Both paths give
the same tokens.

The sizes live in one :class:`GPTConfig` (as in nanoGPT's ``model.py``); the
attention and the blocks are built from it. ``GPT(vocab_size, max_len=...,
...)`` takes the same fields as keywords, ``GPT.from_config_object(config)``
takes a config. Prompts, seeds and ``generate`` come from
:class:`aigc_tf.lm.LanguageModel`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
from keras import layers, ops

from aigc_tf.lm import LanguageModel, Tokenizer
from aigc_tf.validation import check_bool, check_int, check_rate, check_seed

__all__ = ["GPTConfig", "CausalSelfAttention", "TransformerBlock", "GPT"]

LayerCache = tuple[Any, Any]  # one block's (keys, values), each (B, num_heads, max_len, head_dim)

INIT_STD = 0.02  # GPT-2's initialisation: N(0, 0.02) for every weight matrix and embedding


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """The sizes of a GPT, validated once; the defaults are nanoGPT's "baby GPT" for Shakespeare.

    Args:
        vocab_size: number of distinct tokens V.
        max_len: context length: the largest number of positions the model
            reads at once (size of the position embedding).
        num_layers: number of Transformer blocks L.
        num_heads: attention heads per block; must divide ``embed_dim``.
        embed_dim: model width E.
        dropout: dropout rate (embeddings, attention weights, residual
            branches), in [0, 1); training only.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        use_bias: biases in the Dense and LayerNorm layers (nanoGPT's
            Shakespeare runs use none).
        tie_weights: compute the logits with the token embedding matrix
            (``logits = h · Wₑᵀ``) instead of a separate output layer.

    Raises:
        TypeError: a field of the wrong type (``num_layers=2.0``).
        ValueError: a value out of range, or ``embed_dim`` not divisible by ``num_heads``.
    """

    vocab_size: int = 65
    max_len: int = 256
    num_layers: int = 6
    num_heads: int = 6
    embed_dim: int = 384
    dropout: float = 0.0
    mlp_ratio: int = 4
    use_bias: bool = True
    tie_weights: bool = True

    def __post_init__(self) -> None:
        def set_field(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # the dataclass is frozen

        for name in ("vocab_size", "max_len", "num_layers", "num_heads", "embed_dim", "mlp_ratio"):
            set_field(name, check_int(name, getattr(self, name), minimum=1))
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}): "
                "each head gets embed_dim / num_heads features."
            )
        set_field("dropout", check_rate("dropout", self.dropout))
        set_field("use_bias", check_bool("use_bias", self.use_bias))
        set_field("tie_weights", check_bool("tie_weights", self.tie_weights))

    @property
    def head_dim(self) -> int:
        """Features per head, ``embed_dim / num_heads``."""
        return self.embed_dim // self.num_heads

    @property
    def residual_init_std(self) -> float:
        """Initial std of the projections that add into the residual stream: ``0.02 / √(2L)``.

        GPT-2 scales them down so the variance of the residual stream does not grow with depth.
        """
        return INIT_STD / math.sqrt(2 * self.num_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build_once(layer: layers.Layer, input_shape: tuple) -> None:
    """Build a sub-layer unless a call already did (building twice would add its weights twice)."""
    if not layer.built:
        layer.build(input_shape)


def _normal(std: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)


class _ConfiguredLayer(layers.Layer):
    """A layer built from a :class:`GPTConfig`; its Keras config is that config and a seed."""

    def __init__(self, config: GPTConfig | dict, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = GPTConfig(**config)
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}.")
        self.config = config
        self.seed = check_seed(seed)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(config=self.config.to_dict(), seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="aigc_tf")
class CausalSelfAttention(_ConfiguredLayer):
    """Multi-head causal self-attention with an optional key/value cache.

    One ``Dense`` computes queries, keys and values for all heads at once
    (``E → 3E``); each is split into ``num_heads`` heads of size
    ``head_dim = E / num_heads``; every head attends with the scaled
    dot product; the heads are concatenated back to ``E`` and projected.

    Example:
        >>> attn = CausalSelfAttention(GPTConfig(embed_dim=16, num_heads=2))
        >>> y = attn(x)  # x (B, T, 16) -> y (B, T, 16)

    Args:
        config: a :class:`GPTConfig`; the layer reads ``embed_dim``,
            ``num_heads``, ``dropout`` (attention weights and output, training
            only) and ``use_bias``. Kernels start at N(0, 0.02), the output
            projection at ``config.residual_init_std``.
        seed: seed of the layer's dropout generator.
    """

    def __init__(self, config: GPTConfig | dict, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        config = self.config
        self.qkv = layers.Dense(
            3 * config.embed_dim, use_bias=config.use_bias, kernel_initializer=_normal(INIT_STD), name="qkv"
        )
        self.proj = layers.Dense(
            config.embed_dim,
            use_bias=config.use_bias,
            kernel_initializer=_normal(config.residual_init_std),
            name="proj",
        )
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        _build_once(self.qkv, input_shape)
        _build_once(self.proj, tuple(input_shape[:-1]) + (self.config.embed_dim,))
        self.built = True

    def _split_heads(self, x: Any, batch: Any, length: Any) -> Any:
        """(B, T, E) → (B, H, T, head_dim)."""
        return ops.transpose(ops.reshape(x, (batch, length, self.config.num_heads, self.config.head_dim)), (0, 2, 1, 3))

    def call(
        self,
        x: Any,
        training: bool = False,
        cache: LayerCache | None = None,
        cache_index: Any = None,
        return_attention_scores: bool = False,
    ) -> Any:
        """Attend from every position to itself and the positions before it.

        Args:
            x: (B, T, E).
            training: enables dropout.
            cache: optional ``(keys, values)``, each (B, H, S, head_dim) with
                S >= ``cache_index + T``. The new keys/values are written at
                positions ``cache_index .. cache_index + T - 1`` and the
                queries attend to every cached position up to their own.
            cache_index: int scalar (tensor), absolute position of ``x[:, 0]``.
            return_attention_scores: also return the attention weights.

        Returns:
            ``y`` (B, T, E); then ``cache`` (updated) if a cache was given;
            then the weights (B, H, T, S) (S = T without a cache) if asked.
        """
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        q, k, v = ops.split(self.qkv(x), 3, axis=-1)  # each (B, T, E)
        q = self._split_heads(q, batch, length) * ops.cast(1.0 / math.sqrt(self.config.head_dim), q.dtype)
        k = self._split_heads(k, batch, length)
        v = self._split_heads(v, batch, length)

        offset = 0
        if cache is not None:
            if cache_index is None:
                raise ValueError("cache_index is required together with cache.")
            zero = ops.zeros((), "int32")
            start = [zero, zero, ops.cast(cache_index, "int32"), zero]
            k = ops.slice_update(cache[0], start, ops.cast(k, cache[0].dtype))
            v = ops.slice_update(cache[1], start, ops.cast(v, cache[1].dtype))
            cache = (k, v)
            offset = ops.cast(cache_index, "int32")

        # Scores (B, H, T, S): how well query i matches key j, scaled by 1/√d so
        # their spread does not grow with the head size (softmax stays soft).
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        # Causal mask: query i sits at absolute position offset + i and may see key j iff j <= offset + i.
        query_pos = ops.arange(length, dtype="int32") + offset
        key_pos = ops.arange(ops.shape(k)[2], dtype="int32")
        allowed = query_pos[:, None] >= key_pos[None, :]  # (T, S)
        # Softmax in float32 (also under mixed_float16): -inf gives weight exactly 0.
        scores = ops.where(allowed, ops.cast(scores, "float32"), float("-inf"))
        weights = ops.softmax(scores, axis=-1)
        dropped = weights
        if training and self.config.dropout > 0:
            dropped = keras.random.dropout(weights, self.config.dropout, seed=self.seed_generator)
        y = ops.matmul(ops.cast(dropped, v.dtype), v)  # (B, H, T, head_dim)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (batch, length, self.config.embed_dim))  # merge heads
        y = self.proj(y)
        if training and self.config.dropout > 0:
            y = keras.random.dropout(y, self.config.dropout, seed=self.seed_generator)

        outputs = (y,)
        if cache is not None:
            outputs += (cache,)
        if return_attention_scores:
            outputs += (weights,)
        return outputs[0] if len(outputs) == 1 else outputs


@keras.saving.register_keras_serializable(package="aigc_tf")
class TransformerBlock(_ConfiguredLayer):
    """Pre-layer-norm Transformer block: attention and an MLP, each on a residual path.

    ``x = x + attn(ln1(x))``; ``x = x + mlp(ln2(x))`` with
    ``mlp = Dense(mlp_ratio·E, gelu) → Dense(E) → dropout``.

    Args:
        config: a :class:`GPTConfig` (``embed_dim``, ``num_heads``,
            ``dropout``, ``mlp_ratio``, ``use_bias``). The two projections
            that write into the residual stream (attention output, MLP output)
            start at ``config.residual_init_std``.
        seed: seed of the block's dropout generators (the attention gets
            ``seed``, the MLP ``seed + 1``).
    """

    def __init__(self, config: GPTConfig | dict, seed: int | None = None, **kwargs: Any):
        super().__init__(config, seed, **kwargs)
        config = self.config
        hidden = config.mlp_ratio * config.embed_dim
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, center=config.use_bias, name="ln1")
        self.attn = CausalSelfAttention(config, seed, name="attn")
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, center=config.use_bias, name="ln2")
        self.fc = layers.Dense(
            hidden, activation="gelu", use_bias=config.use_bias, kernel_initializer=_normal(INIT_STD), name="fc"
        )
        self.fc_proj = layers.Dense(
            config.embed_dim,
            use_bias=config.use_bias,
            kernel_initializer=_normal(config.residual_init_std),
            name="fc_proj",
        )
        self.seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

    def build(self, input_shape: tuple) -> None:
        for layer in (self.ln1, self.attn, self.ln2, self.fc):
            _build_once(layer, input_shape)
        _build_once(self.fc_proj, tuple(input_shape[:-1]) + (self.config.mlp_ratio * self.config.embed_dim,))
        self.built = True

    def call(
        self,
        x: Any,
        training: bool = False,
        cache: LayerCache | None = None,
        cache_index: Any = None,
        return_attention_scores: bool = False,
    ) -> Any:
        """x (B, T, E) → (B, T, E); ``cache`` / attention weights as in :class:`CausalSelfAttention`."""
        out = self.attn(
            self.ln1(x),
            training=training,
            cache=cache,
            cache_index=cache_index,
            return_attention_scores=return_attention_scores,
        )
        if not isinstance(out, tuple):
            out = (out,)
        x = x + out[0]
        h = self.fc_proj(self.fc(self.ln2(x)))
        if training and self.config.dropout > 0:
            h = keras.random.dropout(h, self.config.dropout, seed=self.seed_generator)
        x = x + h
        return x if len(out) == 1 else (x,) + out[1:]


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
            mlp_ratio, use_bias, tie_weights: the fields of :class:`GPTConfig`
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
        )
        super().__init__(config.vocab_size, tokenizer=tokenizer, seed=seed, **kwargs)
        self.config = config
        E = config.embed_dim
        self.token_embedding = layers.Embedding(
            config.vocab_size, E, embeddings_initializer=_normal(INIT_STD), name="token_embedding"
        )
        self.position_embedding = layers.Embedding(
            config.max_len, E, embeddings_initializer=_normal(INIT_STD), name="position_embedding"
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
                config.vocab_size, use_bias=False, kernel_initializer=_normal(INIT_STD), dtype="float32", name="head"
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
    context_length = max_len

    def build(self, input_shape: tuple = (None, None)) -> None:
        hidden = tuple(input_shape[:2]) + (self.embed_dim,)
        _build_once(self.token_embedding, input_shape)
        _build_once(self.position_embedding, (None,))
        for block in self.blocks:
            _build_once(block, hidden)
        _build_once(self.ln_f, hidden)
        if self.head is not None:
            _build_once(self.head, hidden)
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
