"""The VAE's networks: the reparameterised ``Sampling`` layer, the encoder and the decoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["Sampling", "make_decoder", "make_encoder"]


@keras.saving.register_keras_serializable(package="aigc_tf")
class Sampling(keras.layers.Layer):
    """The reparameterisation trick: z = mu + exp(log_var / 2) * eps, eps ~ N(0, I).

    The randomness sits in eps only, so gradients flow to mu and log_var.
    eps comes from a ``SeedGenerator`` this layer owns: its state advances on every
    call, inside ``fit`` too (a plain ``seed=int`` would give the same noise every step).

    Under ``MirroredStrategy`` every replica reads the same generator state and
    would draw the *same* eps for its share of the batch. Passing ``offset`` and
    ``global_batch`` (from ``batch_rows``) makes each replica draw the noise of
    the whole global batch and keep its own rows: the replicas' noise is
    independent and a step equals the single-device step on the same global batch,
    also when the replicas' shares differ in size.
    """

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        """Args:
        seed: seed of the noise generator (``None``: drawn from the global seed).
        """
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, offset=0, global_batch=None):
        """Args:
            inputs: ``(z_mean, z_log_var)``, each ``(batch, latent_dim)``.
            offset: this replica's first row in the global batch (int or scalar tensor).
            global_batch: rows of noise to draw (``None``: this batch's size).

        Returns:
            ``(batch, latent_dim)`` sample z.
        """
        z_mean, z_log_var = inputs
        # ops.shape, not .shape: the batch size is unknown (None) while tracing.
        batch, latent = ops.shape(z_mean)[0], ops.shape(z_mean)[1]
        if global_batch is None:
            eps = keras.random.normal((batch, latent), dtype=z_mean.dtype, seed=self.seed_generator)
        else:
            eps = keras.random.normal((global_batch, latent), dtype=z_mean.dtype, seed=self.seed_generator)
            eps = ops.slice(eps, (offset, 0), (batch, latent))
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


def make_encoder(
    image_shape: tuple[int, int, int],
    latent_dim: int,
    filters: Sequence[int],
    dense_units: int,
) -> keras.Model:
    """Conv encoder x -> (z_mean, z_log_var).

    Each conv halves the resolution (stride 2), so the cost is dominated by the
    first layer; the two heads are float32 so that exp(log_var) and the KL are
    computed in full precision under ``mixed_float16``.

    Args:
        image_shape: ``(H, W, C)``.
        latent_dim: size of z.
        filters: channels of the stride-2 3x3 convolutions, e.g. ``(32, 64)``.
        dense_units: width of a hidden Dense layer after the convs (0: none).

    Returns:
        A functional ``keras.Model`` named ``"encoder"``.
    """
    x = keras.Input(image_shape, name="image")
    h = x
    for f in filters:
        h = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Flatten()(h)
    if dense_units:
        h = keras.layers.Dense(dense_units, activation="relu")(h)
    z_mean = keras.layers.Dense(latent_dim, dtype="float32", name="z_mean")(h)
    z_log_var = keras.layers.Dense(latent_dim, dtype="float32", name="z_log_var")(h)
    return keras.Model(x, [z_mean, z_log_var], name="encoder")


def make_decoder(
    image_shape: tuple[int, int, int],
    latent_dim: int,
    filters: Sequence[int],
    dense_units: int,
) -> keras.Model:
    """Deconv decoder z -> Bernoulli logits, the mirror image of :func:`make_encoder`.

    Dense to an ``(H / 2^n, W / 2^n, filters[-1])`` map, then stride-2 transposed
    convs back up; the last one emits the C logit channels directly (a float32
    layer, so logits stay float32 under ``mixed_float16``). No sigmoid: the loss
    takes logits, which is exact and numerically stable.

    Args:
        image_shape: ``(H, W, C)``.
        latent_dim: size of z.
        filters: the encoder's conv channels (used in reverse).
        dense_units: width of a hidden Dense layer before the map (0: none).

    Returns:
        A functional ``keras.Model`` named ``"decoder"``, output ``(batch, H, W, C)``.
    """
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    z = keras.Input((latent_dim,), name="z")
    h = z
    if dense_units:
        h = keras.layers.Dense(dense_units, activation="relu")(h)
    h = keras.layers.Dense((height // scale) * (width // scale) * filters[-1], activation="relu")(h)
    h = keras.layers.Reshape((height // scale, width // scale, filters[-1]))(h)
    for f in list(filters[:-1])[::-1]:
        h = keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation="relu")(h)
    logits = keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same", dtype="float32", name="logits")(h)
    return keras.Model(z, logits, name="decoder")
