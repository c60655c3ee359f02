"""The noise predictor eps_theta(x_t, t[, y]): a small U-Net for 28x28 images.

Top to bottom, as in Ho et al. (2020), sized for MNIST on a CPU:

    t  -> sinusoidal embedding -> MLP ------------------------------+ (+ class embedding)
    x_t -> conv -> [ResBlock x n -> down] per level -> ResBlock, (attention), ResBlock
        -> [concat skip -> ResBlock x n -> up] per level, reversed -> GroupNorm, swish, conv -> eps

Every ResBlock scales and shifts its normalised features by the embedding
("scale-shift norm", Dhariwal & Nichol, 2021), so each layer knows how noisy its
input is (and, when conditional, which class to make): added *before* a GroupNorm,
as in the first DDPM, a per-channel constant would be mostly removed again by the
normalisation, and conditioning is weak in a narrow network. The class
embedding has ``num_classes + 1`` rows: the last is the learned "no label" token of
classifier-free guidance (Ho & Salimans, 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import layers, ops

from aigc_tf.validation import check_bool, check_int, check_int_tuple, check_rate

__all__ = ["ResBlock", "SelfAttention", "UNet", "timestep_embedding"]


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal embedding of integer steps ``t (N,)`` -> ``(N, dim)`` float32 (Vaswani et al., 2017).

    Half the features are ``cos(t * f_k)``, half ``sin(t * f_k)``, with frequencies
    ``f_k = max_period ** (-k / (dim / 2))``: nearby steps get nearby embeddings.
    """
    half = dim // 2
    frequencies = ops.exp(-math.log(max_period) * ops.arange(half, dtype="float32") / half)
    angles = ops.cast(ops.reshape(t, (-1, 1)), "float32") * frequencies[None]
    return ops.concatenate([ops.cos(angles), ops.sin(angles)], axis=-1)


def _groups(channels: int) -> int:
    """GroupNorm's group count: the largest of 8, 4, 2 that divides the channels leaving >= 2 per group, else 1.

    One channel per group would be instance normalisation, which removes every
    channel's spatial mean, the per-image brightness a denoiser needs.
    """
    return next((g for g in (8, 4, 2) if channels % g == 0 and channels // g >= 2), 1)


@keras.saving.register_keras_serializable(package="aigc_tf")
class ResBlock(layers.Layer):
    """GroupNorm, swish, conv; GroupNorm scaled and shifted by Dense(embedding); swish, dropout, conv; + skip.

    ``h = conv2(swish(GN(h) * (1 + scale) + shift))`` with ``(scale, shift)`` from the embedding.

    Args:
        filters: output channels.
        dropout: rate before the second convolution.

    Call arguments:
        inputs: ``(x, embedding)``: ``(N, H, W, C_in)`` and ``(N, E)``.

    Returns:
        ``(N, H, W, filters)``.
    """

    def __init__(self, filters: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = check_int("filters", filters, minimum=1)
        self.dropout_rate = check_rate("dropout", dropout)
        self.norm1 = layers.GroupNormalization(_groups(self.filters), name="norm1")
        self.conv1 = layers.Conv2D(self.filters, 3, padding="same", name="conv1")
        self.embed = layers.Dense(2 * self.filters, name="embed")  # scale and shift per channel
        self.norm2 = layers.GroupNormalization(_groups(self.filters), name="norm2")
        self.dropout = layers.Dropout(self.dropout_rate)
        # Zero-initialised: each block starts as the identity, which keeps the deep net trainable.
        self.conv2 = layers.Conv2D(self.filters, 3, padding="same", kernel_initializer="zeros", name="conv2")
        self.skip = None

    def build(self, input_shape) -> None:
        x_shape, e_shape = input_shape
        if x_shape[-1] != self.filters:
            self.skip = layers.Conv2D(self.filters, 1, name="skip")
            self.skip.build(x_shape)
        self.norm1.build(x_shape)
        self.conv1.build(x_shape)
        self.embed.build(e_shape)
        out_shape = (*x_shape[:-1], self.filters)
        self.norm2.build(out_shape)
        self.conv2.build(out_shape)

    def call(self, inputs, training: bool = False):
        x, embedding = inputs
        h = self.conv1(ops.silu(self.norm1(x)))
        e = self.embed(embedding)
        h = self.norm2(h) * (1.0 + e[:, None, None, : self.filters]) + e[:, None, None, self.filters :]
        h = self.conv2(self.dropout(ops.silu(h), training=training))
        return h + (x if self.skip is None else self.skip(x))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "dropout": self.dropout_rate}


@keras.saving.register_keras_serializable(package="aigc_tf")
class SelfAttention(layers.Layer):
    """Residual multi-head self-attention over the H*W positions of a feature map.

    Args:
        num_heads: attention heads; the channels must divide by it.

    Call arguments:
        x: ``(N, H, W, C)``.

    Returns:
        ``(N, H, W, C)``: ``x + attention(GroupNorm(x))``.
    """

    def __init__(self, num_heads: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.attention = None

    def build(self, input_shape) -> None:
        channels = int(input_shape[-1])
        if channels % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} must divide the channels ({channels}).")
        self.norm = layers.GroupNormalization(_groups(channels), name="norm")
        self.norm.build(input_shape)
        self.attention = layers.MultiHeadAttention(self.num_heads, channels // self.num_heads, name="attention")
        sequence = (input_shape[0], None, channels)
        self.attention.build(sequence, sequence)

    def call(self, x):
        shape = ops.shape(x)
        h = ops.reshape(self.norm(x), (shape[0], shape[1] * shape[2], shape[3]))
        return x + ops.reshape(self.attention(h, h), shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="aigc_tf")
class UNet(keras.Model):
    """eps_theta(x_t, t[, y]): predicts the noise in ``x_t``.

    Example:
        >>> unet = UNet(base_filters=16, channel_mults=(1, 2, 2), num_classes=10)
        >>> eps = unet([x_t, t, labels])  # doctest: +SKIP

    Args:
        image_shape: ``(H, W, C)``; H and W divisible by ``2 ** (len(channel_mults) - 1)``.
        base_filters: channels at full resolution.
        channel_mults: channels per level as multiples of ``base_filters``; each level
            after the first halves the resolution (``(1, 2, 2)``: 28, 14, 7).
        num_res_blocks: ResBlocks per level on each side.
        attention: self-attention in the middle (at the lowest resolution, 7x7).
        num_heads: its heads.
        dropout: ResBlock dropout.
        num_classes: ``None`` (unconditional) or the number of classes; the class
            embedding then has a last row for "no label" (id ``num_classes``).

    Call arguments:
        inputs: ``[x_t, t]`` or ``[x_t, t, labels]``: ``(N, H, W, C)`` images, ``(N,)`` int
            steps in [0, T), ``(N,)`` int labels in [0, num_classes] (``num_classes``: no label).

    Returns:
        ``(N, H, W, C)`` float32 predicted noise.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28, 1),
        base_filters: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention: bool = True,
        num_heads: int = 4,
        dropout: float = 0.0,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.base_filters = check_int("base_filters", base_filters, minimum=1)
        self.channel_mults = check_int_tuple("channel_mults", channel_mults)
        self.num_res_blocks = check_int("num_res_blocks", num_res_blocks, minimum=1)
        self.attention = check_bool("attention", attention)
        self.num_heads = check_int("num_heads", num_heads, minimum=1)
        self.dropout = check_rate("dropout", dropout)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, minimum=2)
        scale = 2 ** (len(self.channel_mults) - 1)
        if self.image_shape[0] % scale or self.image_shape[1] % scale:
            raise ValueError(
                f"image_shape={self.image_shape}: height and width must be divisible by {scale} "
                f"(one halving per level after the first, channel_mults={self.channel_mults})."
            )
        widths = [self.base_filters * m for m in self.channel_mults]
        self.embedding_dim = 4 * self.base_filters
        self.time_dense1 = layers.Dense(self.embedding_dim, name="time_dense1")
        self.time_dense2 = layers.Dense(self.embedding_dim, name="time_dense2")
        self.class_embedding = (
            None
            if self.num_classes is None
            else layers.Embedding(self.num_classes + 1, self.embedding_dim, name="class_embedding")
        )
        self.conv_in = layers.Conv2D(self.base_filters, 3, padding="same", name="conv_in")
        self.down_blocks, self.downsamples = [], []
        for level, width in enumerate(widths):
            self.down_blocks.append(
                [ResBlock(width, self.dropout, name=f"down{level}_{b}") for b in range(self.num_res_blocks)]
            )
            last = level == len(widths) - 1
            self.downsamples.append(
                None if last else layers.Conv2D(width, 3, strides=2, padding="same", name=f"downsample{level}")
            )
        self.mid1 = ResBlock(widths[-1], self.dropout, name="mid1")
        self.mid_attention = SelfAttention(self.num_heads, name="mid_attention") if self.attention else None
        self.mid2 = ResBlock(widths[-1], self.dropout, name="mid2")
        self.up_blocks, self.upsamples = [], []
        for level in reversed(range(len(widths))):
            self.up_blocks.append(
                [ResBlock(widths[level], self.dropout, name=f"up{level}_{b}") for b in range(self.num_res_blocks)]
            )
            self.upsamples.append(
                None
                if level == 0
                else [
                    layers.UpSampling2D(2, name=f"upsample{level}"),
                    layers.Conv2D(widths[level - 1], 3, padding="same", name=f"upsample{level}_conv"),
                ]
            )
        self.norm_out = layers.GroupNormalization(_groups(self.base_filters), name="norm_out")
        # float32 output: the loss and the sampler's arithmetic read eps in full precision.
        self.conv_out = layers.Conv2D(
            self.image_shape[-1], 3, padding="same", kernel_initializer="zeros", dtype="float32", name="conv_out"
        )

    def embed(self, t, labels=None):
        """The per-example embedding: MLP(sinusoid(t)) (+ class embedding), ``(N, 4 * base_filters)``."""
        e = timestep_embedding(t, self.embedding_dim)
        e = self.time_dense2(ops.silu(self.time_dense1(ops.cast(e, self.compute_dtype))))
        if self.class_embedding is not None:
            if labels is None:
                labels = ops.full(ops.shape(t), self.num_classes, dtype="int32")
            e = e + self.class_embedding(labels)
        return ops.silu(e)

    def call(self, inputs, training: bool = False):
        x, t, *rest = inputs
        e = self.embed(t, rest[0] if rest else None)
        h = self.conv_in(x)
        skips = []
        for blocks, downsample in zip(self.down_blocks, self.downsamples):
            for block in blocks:
                h = block((h, e), training=training)
            skips.append(h)
            if downsample is not None:
                h = downsample(h)
        h = self.mid1((h, e), training=training)
        if self.mid_attention is not None:
            h = self.mid_attention(h)
        h = self.mid2((h, e), training=training)
        for blocks, upsample in zip(self.up_blocks, self.upsamples):
            h = ops.concatenate([h, skips.pop()], axis=-1)
            for block in blocks:
                h = block((h, e), training=training)
            if upsample is not None:
                h = upsample[1](upsample[0](h))
        return self.conv_out(ops.silu(self.norm_out(h)))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "base_filters": self.base_filters,
            "channel_mults": list(self.channel_mults),
            "num_res_blocks": self.num_res_blocks,
            "attention": self.attention,
            "num_heads": self.num_heads,
            "dropout": self.dropout,
            "num_classes": self.num_classes,
        }
