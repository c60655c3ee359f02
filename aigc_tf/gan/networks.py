"""The DCGAN networks (Radford et al., 2015), unconditional or class-conditional."""

from __future__ import annotations

from collections.abc import Sequence

import keras

__all__ = ["make_discriminator", "make_generator"]


def make_generator(
    latent_dim: int,
    image_shape: tuple[int, int, int],
    filters: Sequence[int],
    num_classes: int = 0,
    label_dim: int = 32,
) -> keras.Model:
    """DCGAN generator: z (+ label) -> Dense -> [ConvT stride 2 -> BN -> LeakyReLU] x n -> tanh.

    A Dense layer makes an ``(H / 2^n, W / 2^n, filters[0])`` map; each of the
    n = ``len(filters)`` stride-2 transposed convs doubles the resolution; the
    last one emits the image channels with tanh (float32 under ``mixed_float16``).
    BatchNorm is ``synchronized``: under ``MirroredStrategy`` its batch statistics
    cover the global batch, so a multi-device step equals a single-device one.

    Args:
        latent_dim: size of z.
        image_shape: ``(H, W, C)``; H and W divisible by ``2 ** len(filters)``.
        filters: channels of the Dense map and the hidden transposed convs,
            e.g. ``(128, 64)`` for 7x7x128 -> 14x14x64 -> 28x28xC.
        num_classes: > 0 for a conditional generator; it then takes
            ``[z, labels]`` with int labels ``(batch,)`` embedded in ``label_dim`` dims.
        label_dim: size of the label embedding.

    Returns:
        A functional ``keras.Model`` named ``"generator"``: ``(batch, latent_dim)``
        (and ``(batch,)`` labels) -> ``(batch, H, W, C)`` in [-1, 1].
    """
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    z = keras.Input((latent_dim,), name="z")
    inputs = [z]
    h = z
    if num_classes:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs.append(labels)
        h = keras.layers.Concatenate()([z, keras.layers.Embedding(num_classes, label_dim)(labels)])
    h = keras.layers.Dense((height // scale) * (width // scale) * filters[0], use_bias=False)(h)
    h = keras.layers.BatchNormalization(synchronized=True)(h)
    h = keras.layers.LeakyReLU(0.2)(h)
    h = keras.layers.Reshape((height // scale, width // scale, filters[0]))(h)
    for f in filters[1:]:
        h = keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization(synchronized=True)(h)
        h = keras.layers.LeakyReLU(0.2)(h)
    image = keras.layers.Conv2DTranspose(
        channels, 4, strides=2, padding="same", activation="tanh", dtype="float32", name="image"
    )(h)
    return keras.Model(inputs if num_classes else z, image, name="generator")


def make_discriminator(
    image_shape: tuple[int, int, int],
    filters: Sequence[int],
    dropout: float = 0.3,
    num_classes: int = 0,
) -> keras.Model:
    """DCGAN discriminator: [Conv stride 2 -> LeakyReLU -> Dropout] x n -> Dense(1) logit.

    No BatchNorm (real and fake batches pass separately, and a BN critic would
    couple the examples of a batch); a linear last layer, because the losses take
    logits. A conditional D receives the label as one extra image channel (a
    learned ``H x W`` embedding per class), so every conv sees it.

    Args:
        image_shape: ``(H, W, C)``.
        filters: channels of the stride-2 convs, e.g. ``(64, 128)``.
        dropout: dropout rate after each conv (active only with ``training=True``).
        num_classes: > 0 for a conditional D taking ``[images, labels]``.

    Returns:
        A functional ``keras.Model`` named ``"discriminator"``: ``(batch, H, W, C)``
        (and ``(batch,)`` labels) -> ``(batch, 1)`` float32 logits.
    """
    height, width, _ = image_shape
    x = keras.Input(image_shape, name="image")
    inputs = [x]
    h = x
    if num_classes:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs.append(labels)
        plane = keras.layers.Embedding(num_classes, height * width)(labels)
        plane = keras.layers.Reshape((height, width, 1))(plane)
        h = keras.layers.Concatenate()([x, plane])
    for f in filters:
        h = keras.layers.Conv2D(f, 4, strides=2, padding="same")(h)
        h = keras.layers.LeakyReLU(0.2)(h)
        if dropout:
            h = keras.layers.Dropout(dropout)(h)
    h = keras.layers.Flatten()(h)
    logit = keras.layers.Dense(1, dtype="float32", name="logit")(h)
    return keras.Model(inputs if num_classes else x, logit, name="discriminator")
