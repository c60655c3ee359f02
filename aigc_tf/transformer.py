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
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from aigc_tf import sampling
from aigc_tf.rnn import CharRNN
from aigc_tf.text import CharTokenizer

__all__ = ["CausalSelfAttention", "TransformerBlock", "GPT"]

# Per layer: (keys, values), each (B, num_heads, max_len, head_dim).
LayerCache = tuple


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}.")
    return float(value)


def _build_once(layer: layers.Layer, input_shape: tuple) -> None:
    """Build a sub-layer unless a call already did (building twice would add its weights twice)."""
    if not layer.built:
        layer.build(input_shape)


def _normal(std: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=std)


@keras.saving.register_keras_serializable(package="aigc_tf")
class CausalSelfAttention(layers.Layer):
    """Multi-head causal self-attention with an optional key/value cache.

    One ``Dense`` computes queries, keys and values for all heads at once
    (``E → 3E``); each is split into ``num_heads`` heads of size
    ``head_dim = E / num_heads``; every head attends with the scaled
    dot product; the heads are concatenated back to ``E`` and projected.

    Args:
        embed_dim: model width E (input and output size).
        num_heads: number of heads H; must divide ``embed_dim``.
        dropout: dropout rate on the attention weights and on the output
            (training only).
        use_bias: biases in the two projections.
        init_std: standard deviation of the query/key/value kernel initializer.
        output_init_std: standard deviation of the output projection's
            initializer (defaults to ``init_std``; GPT-2 scales it down with depth).
        seed: seed of the layer's dropout generator.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        use_bias: bool = True,
        init_std: float = 0.02,
        output_init_std: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.embed_dim = _check_int("embed_dim", embed_dim)
        self.num_heads = _check_int("num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}): "
                "each head gets embed_dim / num_heads features."
            )
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = _check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self.init_std = float(init_std)
        self.output_init_std = None if output_init_std is None else float(output_init_std)
        self.seed = seed
        out_std = self.init_std if self.output_init_std is None else self.output_init_std
        self.qkv = layers.Dense(
            3 * self.embed_dim, use_bias=self.use_bias, kernel_initializer=_normal(self.init_std), name="qkv"
        )
        self.proj = layers.Dense(
            self.embed_dim, use_bias=self.use_bias, kernel_initializer=_normal(out_std), name="proj"
        )
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        _build_once(self.qkv, input_shape)
        _build_once(self.proj, tuple(input_shape[:-1]) + (self.embed_dim,))
        self.built = True

    def _split_heads(self, x: Any, batch: Any, length: Any) -> Any:
        """(B, T, E) → (B, H, T, head_dim)."""
        return ops.transpose(ops.reshape(x, (batch, length, self.num_heads, self.head_dim)), (0, 2, 1, 3))

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
        q = self._split_heads(q, batch, length) * ops.cast(1.0 / math.sqrt(self.head_dim), q.dtype)
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
        if training and self.dropout > 0:
            dropped = keras.random.dropout(weights, self.dropout, seed=self.seed_generator)
        y = ops.matmul(ops.cast(dropped, v.dtype), v)  # (B, H, T, head_dim)
        y = ops.reshape(ops.transpose(y, (0, 2, 1, 3)), (batch, length, self.embed_dim))  # merge heads
        y = self.proj(y)
        if training and self.dropout > 0:
            y = keras.random.dropout(y, self.dropout, seed=self.seed_generator)

        outputs = (y,)
        if cache is not None:
            outputs += (cache,)
        if return_attention_scores:
            outputs += (weights,)
        return outputs[0] if len(outputs) == 1 else outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            dropout=self.dropout,
            use_bias=self.use_bias,
            init_std=self.init_std,
            output_init_std=self.output_init_std,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="aigc_tf")
class TransformerBlock(layers.Layer):
    """Pre-layer-norm Transformer block: attention and an MLP, each on a residual path.

    ``x = x + attn(ln1(x))``; ``x = x + mlp(ln2(x))`` with
    ``mlp = Dense(mlp_ratio·E, gelu) → Dense(E) → dropout``.

    Args:
        embed_dim, num_heads, dropout, use_bias, init_std, seed: as for
            :class:`CausalSelfAttention`.
        mlp_ratio: hidden width of the MLP as a multiple of ``embed_dim``.
        output_init_std: initializer std of the two projections that write
            into the residual stream (attention output, MLP output).
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        mlp_ratio: int = 4,
        use_bias: bool = True,
        init_std: float = 0.02,
        output_init_std: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.embed_dim = _check_int("embed_dim", embed_dim)
        self.num_heads = _check_int("num_heads", num_heads)
        self.dropout = _check_rate("dropout", dropout)
        self.mlp_ratio = _check_int("mlp_ratio", mlp_ratio)
        self.use_bias = bool(use_bias)
        self.init_std = float(init_std)
        self.output_init_std = None if output_init_std is None else float(output_init_std)
        self.seed = seed
        out_std = self.init_std if self.output_init_std is None else self.output_init_std
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, center=self.use_bias, name="ln1")
        self.attn = CausalSelfAttention(embed_dim, num_heads, dropout, use_bias, init_std, out_std, seed, name="attn")
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, center=self.use_bias, name="ln2")
        self.fc = layers.Dense(
            self.mlp_ratio * self.embed_dim,
            activation="gelu",
            use_bias=self.use_bias,
            kernel_initializer=_normal(self.init_std),
            name="fc",
        )
        self.fc_proj = layers.Dense(
            self.embed_dim, use_bias=self.use_bias, kernel_initializer=_normal(out_std), name="fc_proj"
        )
        self.seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

    def build(self, input_shape: tuple) -> None:
        for layer in (self.ln1, self.attn, self.ln2, self.fc):
            _build_once(layer, input_shape)
        _build_once(self.fc_proj, tuple(input_shape[:-1]) + (self.mlp_ratio * self.embed_dim,))
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
        if training and self.dropout > 0:
            h = keras.random.dropout(h, self.dropout, seed=self.seed_generator)
        x = x + h
        return x if len(out) == 1 else (x,) + out[1:]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            dropout=self.dropout,
            mlp_ratio=self.mlp_ratio,
            use_bias=self.use_bias,
            init_std=self.init_std,
            output_init_std=self.output_init_std,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="aigc_tf")
class GPT(keras.Model):
    """A GPT-style character language model (decoder-only Transformer).

    Example:
        >>> tok = CharTokenizer.from_text(text)
        >>> model = GPT(tok.vocab_size, max_len=64, num_layers=4, num_heads=4, embed_dim=128, tokenizer=tok)
        >>> model.compile(keras.optimizers.AdamW(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit(make_char_dataset(tok.encode(text), 64, 12), epochs=1)
        >>> model.generate("ROMEO:", 200, temperature=0.8, top_k=20)

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
        tokenizer: optional :class:`~aigc_tf.text.CharTokenizer`; saved with
            the model, and lets :meth:`generate` take and return strings.
        seed: seed for the model's random generators (initial weights are
            drawn from Keras' global seed; dropout and sampling from these).
    """

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
        tokenizer: CharTokenizer | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.vocab_size = _check_int("vocab_size", vocab_size)
        self.max_len = _check_int("max_len", max_len)
        self.num_layers = _check_int("num_layers", num_layers)
        self.num_heads = _check_int("num_heads", num_heads)
        self.embed_dim = _check_int("embed_dim", embed_dim)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads}): "
                "each head gets embed_dim / num_heads features."
            )
        self.dropout = _check_rate("dropout", dropout)
        self.mlp_ratio = _check_int("mlp_ratio", mlp_ratio)
        self.use_bias = bool(use_bias)
        self.tie_weights = bool(tie_weights)
        if tokenizer is not None:
            if not isinstance(tokenizer, CharTokenizer):
                raise TypeError(f"tokenizer must be a CharTokenizer or None; got {type(tokenizer).__name__}.")
            if tokenizer.vocab_size != vocab_size:
                raise ValueError(
                    f"tokenizer has {tokenizer.vocab_size} characters but vocab_size={vocab_size}; they must match."
                )
        self.tokenizer = tokenizer
        self.seed = seed

        # GPT-2 initialisation: N(0, 0.02) everywhere, and the projections that
        # add into the residual stream scaled by 1/√(2L) so its variance does not grow with depth.
        std = 0.02
        self.token_embedding = layers.Embedding(
            self.vocab_size, self.embed_dim, embeddings_initializer=_normal(std), name="token_embedding"
        )
        self.position_embedding = layers.Embedding(
            self.max_len, self.embed_dim, embeddings_initializer=_normal(std), name="position_embedding"
        )
        self.blocks = [
            TransformerBlock(
                self.embed_dim,
                self.num_heads,
                self.dropout,
                self.mlp_ratio,
                self.use_bias,
                std,
                std / math.sqrt(2 * self.num_layers),
                None if seed is None else seed + 10 * (i + 1),
                name=f"block_{i}",
            )
            for i in range(self.num_layers)
        ]
        self.ln_f = layers.LayerNormalization(epsilon=1e-5, center=self.use_bias, name="ln_f")
        # float32 head: under mixed_float16 the logits (loss, softmax for sampling) stay in full precision.
        self.head = (
            None
            if self.tie_weights
            else layers.Dense(
                self.vocab_size, use_bias=False, kernel_initializer=_normal(std), dtype="float32", name="head"
            )
        )
        # Model-owned randomness: one stream for dropout, one for sampling.
        self.dropout_seed = keras.random.SeedGenerator(seed)
        self.sampling_seed = keras.random.SeedGenerator(None if seed is None else seed + 1)
        self._compiled_functions: dict = {}  # see _compiled

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

    # ------------------------------------------------- cached decoding (compiled)

    def _empty_cache(self, batch: int) -> list[LayerCache]:
        dtype = self.blocks[0].attn.compute_dtype
        shape = (batch, self.num_heads, self.max_len, self.embed_dim // self.num_heads)
        return [(ops.zeros(shape, dtype), ops.zeros(shape, dtype)) for _ in self.blocks]

    @tf.function(reduce_retracing=True)
    def read_prompt(self, ids: Any) -> tuple[Any, dict]:
        """Process a prompt once: next-token logits and the decoding state.

        Args:
            ids: int32 (B, T), 1 <= T <= ``max_len`` (:meth:`generate` crops longer prompts).

        Returns:
            ``(logits, state)``: logits (B, V) for the token after the prompt;
            ``state`` a dict with ``"cache"`` (per block ``(keys, values)``,
            each (B, H, max_len, head_dim)), ``"ids"`` (B, max_len) the
            context left-aligned and zero-padded, ``"length"`` (B,) its length.
        """
        length = ops.shape(ids)[1]
        return self._read_padded(ops.pad(ids, [[0, 0], [0, self.max_len - length]]), length)

    def _read_padded(self, context: Any, length: Any) -> tuple[Any, dict]:
        """read_prompt on a prompt zero-padded to max_len (one compiled shape for every prompt length).

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

    @tf.function(reduce_retracing=True)
    def step(self, token: Any, state: dict) -> tuple[Any, dict]:
        """Feed one token per sequence (``step_fn`` of :func:`aigc_tf.sampling.beam_search`).

        Args:
            token: int32 (B,), the latest token of each sequence.
            state: from :meth:`read_prompt` or a previous :meth:`step`.

        Returns:
            ``(logits, state)``: next-token logits (B, V) and the new state.
        """
        return self._step(token, state)

    def _generate_cached(self, context, length, num_tokens, temperature, top_p, *, buffer_size, top_k):
        """Read the prompt, then sample ``num_tokens`` tokens in one compiled loop.

        ``context`` (B, max_len) is the prompt zero-padded, ``length`` its
        length. The tokens go into a (B, buffer_size) buffer, buffer_size >=
        num_tokens, so that one compiled program serves every prompt length
        and every number of new tokens up to ``buffer_size``.
        """
        logits, state = self._read_padded(context, length)
        tokens = ops.zeros((ops.shape(context)[0], buffer_size), "int32")

        def body(i, logits, state, tokens):
            token = sampling._sample(logits, temperature, top_k, top_p, seed=self.sampling_seed)
            tokens = ops.slice_update(tokens, [0, i], token[:, None])
            logits, state = self._step(token, state)  # (the last step's logits are not used)
            return i + 1, logits, state, tokens

        loop_vars = (ops.zeros((), "int32"), logits, state, tokens)
        return ops.while_loop(lambda i, *_: i < num_tokens, body, loop_vars)[3]

    def _compiled(self, key: tuple, python_function: Any, jit_compile: bool = False) -> Any:
        """One ``tf.function`` per decoding setting (sampler, XLA, buffer size), traced once each.

        ``top_k`` and the buffer size fix static shapes, so each setting is its
        own compiled program; keeping them apart avoids retracing one function
        back and forth when settings alternate. (``python_function`` is a
        ``functools.partial``: TensorFlow then counts the traces of each
        setting separately and does not report the first trace of every new
        setting as excessive retracing.)
        """
        if key not in self._compiled_functions:
            self._compiled_functions[key] = tf.function(python_function, reduce_retracing=True, jit_compile=jit_compile)
        return self._compiled_functions[key]

    # ---------------------------------------------- uncached decoding (reference)

    @tf.function(reduce_retracing=True)
    def _last_logits(self, ids: Any) -> Any:
        return self(ids, training=False)[:, -1, :]

    def _sample_only(self, logits, temperature, top_p, *, top_k):
        return sampling._sample(logits, temperature, top_k, top_p, seed=self.sampling_seed)

    # ------------------------------------------------------------- generation

    def generate(
        self,
        prompt_ids: Any,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        use_cache: bool = True,
        num_beams: int = 1,
        jit_compile: bool = True,
    ) -> Any:
        """Continue a prompt by sampling ``max_new_tokens`` tokens.

        Args:
            prompt_ids: ids (T,) or (B, T); or a str if a tokenizer is attached.
            max_new_tokens: tokens to add, >= 0.
            temperature, top_k, top_p: see :func:`aigc_tf.sampling.sample_next`
                (``top_k=1`` is greedy).
            seed: makes the draw reproducible (resets the model's sampling
                generator); None continues its stream. The same seed gives
                the same text with and without the cache (the draws may
                differ between XLA and non-XLA runs).
            use_cache: True (default) processes the prompt once and then one
                position per new token, all in one compiled loop. False re-runs
                the model on the whole (cropped) context for every new token,
                like nanoGPT; same tokens, kept to measure the difference.
            num_beams: > 1 runs :meth:`beam_search` instead of sampling
                (then ``temperature``, ``top_k``, ``top_p``, ``seed`` must stay at their defaults).
            jit_compile: compile the cached loop with XLA (a compile per new
                prompt shape / length, then the fastest loop on CPU).

        Returns:
            The prompt followed by the new ids, int32 (T + max_new_tokens,) for
            1-D input or (B, T + max_new_tokens) for 2-D input; a str for str input.
            Only the last ``max_len`` tokens are ever read by the model.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0; got {max_new_tokens!r}.")
        sampling.check_sampling_args(temperature, top_k, top_p, vocab_size=self.vocab_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"seed must be an int or None; got {seed!r}.")
        num_beams = _check_int("num_beams", num_beams)
        if num_beams > 1:
            if temperature != 1.0 or top_k is not None or top_p is not None or seed is not None:
                raise ValueError(
                    "num_beams > 1 runs beam search, which does not sample: "
                    "leave temperature, top_k, top_p and seed at their defaults."
                )
            if max_new_tokens == 0:
                return self.generate(prompt_ids, 0)
            return self.beam_search(prompt_ids, max_new_tokens, num_beams, use_cache=use_cache)
        # Same rank rules and error messages as the char-RNN.
        ids, was_1d, as_str = CharRNN._prompt_to_ids(self, prompt_ids)
        if max_new_tokens == 0:
            return CharRNN._format_output(self, ids, was_1d, as_str)
        if seed is not None:
            self.sampling_seed.state.assign(ops.convert_to_tensor([int(seed), 0], dtype=self.sampling_seed.state.dtype))

        # Tensors (not Python floats) so a new temperature does not retrace.
        temp = tf.constant(temperature, tf.float32)
        p = None if top_p is None else tf.constant(top_p, tf.float32)
        k = None if top_k is None else int(top_k)
        if use_cache:
            context = ids[:, -self.max_len :]  # the model reads at most max_len tokens
            padded = np.pad(context, [(0, 0), (0, self.max_len - context.shape[1])])
            buffer_size = 16
            while buffer_size < max_new_tokens:  # powers of two: few distinct compiled shapes
                buffer_size *= 2
            key = ("generate", bool(jit_compile), k, p is None, buffer_size)
            loop = self._compiled(
                key,
                functools.partial(self._generate_cached, buffer_size=buffer_size, top_k=k),
                jit_compile=bool(jit_compile),
            )
            new = loop(
                tf.constant(padded),
                tf.constant(context.shape[1], tf.int32),
                tf.constant(int(max_new_tokens), tf.int32),
                temp,
                p,
            )
            new = new.numpy()[:, :max_new_tokens]
        else:
            sample = self._compiled(("sample", k, p is None), functools.partial(self._sample_only, top_k=k))
            text = ids
            for _ in range(max_new_tokens):
                logits = self._last_logits(tf.constant(text[:, -self.max_len :]))
                next_ids = sample(logits, temp, p).numpy()
                text = np.concatenate([text, next_ids[:, None].astype(np.int32)], axis=1)
            new = text[:, ids.shape[1] :]
        return CharRNN._format_output(self, np.concatenate([ids, new.astype(np.int32)], axis=1), was_1d, as_str)

    def beam_search(self, prompt_ids: Any, max_new_tokens: int, num_beams: int = 4, use_cache: bool = True) -> Any:
        """The most likely continuation found by beam search (see :func:`aigc_tf.sampling.beam_search`).

        Args:
            prompt_ids: ids (T,) or (B, T); or a str if a tokenizer is attached.
            max_new_tokens: tokens to add, >= 1.
            num_beams: beams kept per sequence (1 = greedy decoding).
            use_cache: step with the KV cache (True) or re-run the context (False).

        Returns:
            The prompt followed by the best beam, same shapes/types as :meth:`generate`.
        """
        ids, was_1d, as_str = CharRNN._prompt_to_ids(self, prompt_ids)
        context = tf.constant(ids[:, -self.max_len :])
        if use_cache:
            logits, state = self.read_prompt(context)
            step_fn = self.step
        else:
            logits, state = self._last_logits(context), tf.constant(ids)

            def step_fn(token, text):
                text = ops.concatenate([text, ops.cast(token, "int32")[:, None]], axis=1)
                return self._last_logits(text[:, -self.max_len :]), text

        sequences, _ = sampling.beam_search(step_fn, logits, state, max_new_tokens, num_beams)
        best = np.asarray(sequences)[:, 0, :]
        return CharRNN._format_output(self, np.concatenate([ids, best.astype(np.int32)], axis=1), was_1d, as_str)

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            max_len=self.max_len,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            embed_dim=self.embed_dim,
            dropout=self.dropout,
            mlp_ratio=self.mlp_ratio,
            use_bias=self.use_bias,
            tie_weights=self.tie_weights,
            tokenizer=None if self.tokenizer is None else keras.saving.serialize_keras_object(self.tokenizer),
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> GPT:
        config = dict(config)
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)
