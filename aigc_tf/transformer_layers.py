"""The building blocks of the course's GPT, written from scratch: its config, attention and block.

The attention is written with ``keras.ops`` (it is the lesson)::

    Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V,   M[i, j] = 0 if j <= i else -inf

The causal mask ``M`` stops position i from seeing positions after it, so one
forward pass trains all T next-token predictions at once. A block is
pre-layer-norm, as in GPT-2 / nanoGPT::

    x = x + CausalSelfAttention(LayerNorm(x))
    x = x + MLP(LayerNorm(x))

The sizes live in one :class:`GPTConfig` (as in nanoGPT's ``model.py``),
validated once; every layer is built from it. :mod:`aigc_tf.transformer`
assembles the model (and re-exports these names).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
from keras import layers, ops

from aigc_tf.validation import check_bool, check_int, check_rate, check_seed

__all__ = [
    "GPTConfig",
    "CausalSelfAttention",
    "TransformerBlock",
    "INIT_STD",
    "LayerCache",
    "build_once",
    "gelu_tanh",
    "normal",
]

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
        gelu_approximate: the MLP's GELU in its tanh approximation,
            ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``, as GPT-2 (and
            KerasHub's ``GPT2Backbone``) uses; False (default) is the exact
            ``x·Φ(x)``. The weights are the same either way.

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
    gelu_approximate: bool = False

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
        set_field("gelu_approximate", check_bool("gelu_approximate", self.gelu_approximate))

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


def build_once(layer: layers.Layer, input_shape: tuple) -> None:
    """Build a sub-layer unless a call already did (building twice would add its weights twice)."""
    if not layer.built:
        layer.build(input_shape)


@keras.saving.register_keras_serializable(package="aigc_tf")
def gelu_tanh(x: Any) -> Any:
    """GELU in GPT-2's tanh approximation (``keras.activations.gelu(x, approximate=True)``)."""
    return keras.activations.gelu(x, approximate=True)


def normal(std: float = INIT_STD) -> keras.initializers.Initializer:
    """The N(0, std²) initializer of GPT-2's weights."""
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
            3 * config.embed_dim, use_bias=config.use_bias, kernel_initializer=normal(INIT_STD), name="qkv"
        )
        self.proj = layers.Dense(
            config.embed_dim,
            use_bias=config.use_bias,
            kernel_initializer=normal(config.residual_init_std),
            name="proj",
        )
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: tuple) -> None:
        build_once(self.qkv, input_shape)
        build_once(self.proj, tuple(input_shape[:-1]) + (self.config.embed_dim,))
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
            ``dropout``, ``mlp_ratio``, ``use_bias``, ``gelu_approximate``). The two projections
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
            hidden,
            activation=gelu_tanh if config.gelu_approximate else "gelu",
            use_bias=config.use_bias,
            kernel_initializer=normal(INIT_STD),
            name="fc",
        )
        self.fc_proj = layers.Dense(
            config.embed_dim,
            use_bias=config.use_bias,
            kernel_initializer=normal(config.residual_init_std),
            name="fc_proj",
        )
        self.seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

    def build(self, input_shape: tuple) -> None:
        for layer in (self.ln1, self.attn, self.ln2, self.fc):
            build_once(layer, input_shape)
        build_once(self.fc_proj, tuple(input_shape[:-1]) + (self.config.mlp_ratio * self.config.embed_dim,))
        self.built = True

    def call(self, x: Any, training: bool = False, **attention_options: Any) -> Any:
        """x (B, T, E) → (B, T, E).

        ``attention_options`` (``cache``, ``cache_index``,
        ``return_attention_scores``) go to :class:`CausalSelfAttention`; its
        extra outputs (the updated cache, the weights) follow ``x`` as there.
        """
        out = self.attn(self.ln1(x), training=training, **attention_options)
        if not isinstance(out, tuple):
            out = (out,)
        x = x + out[0]
        h = self.fc_proj(self.fc(self.ln2(x)))
        if training and self.config.dropout > 0:
            h = keras.random.dropout(h, self.config.dropout, seed=self.seed_generator)
        x = x + h
        return x if len(out) == 1 else (x,) + out[1:]
