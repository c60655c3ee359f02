"""Mode collapse on a 2-D toy: a GAN on a ring of Gaussians, and packing as the fix.

The data (:func:`ring_of_gaussians`) is a mixture of ``modes`` narrow Gaussians
whose centres sit evenly on a circle. A plain GAN with small MLPs tends to put
all its samples on one or a few of them and to hop between modes as D learns
to reject the current one: nothing in the generator's loss asks for diversity.

The fix is **packing** (PacGAN, Lin et al., 2018): D judges ``pack`` samples at
once, concatenated into one input, all real or all fake. A generator that
collapses produces packs of near-identical points, which real packs (points
from different modes) never are, so D can reject collapse itself and G is pushed
to spread its samples. ``pack=1`` is the plain GAN; the losses, optimizers and
networks are otherwise identical. A minibatch standard-deviation feature in D
(:class:`MinibatchStdDev`, Karras et al., 2018; ``minibatch_std=4``) is the other
option here.

With D ten times faster than G (chapter 01's setting, ``aigc_tf.recipes.ring_gan_settings``)
the plain GAN collapsed onto one mode in every trial run; packing (``pack=4``) spread the
samples over most modes in both trial seeds, the minibatch-std feature in one of two.

:func:`mode_coverage` scores a sample set: how many modes are hit and the share
of high-quality samples (within ``3 std`` of a mode centre).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.gan.losses import discriminator_loss, generator_loss
from aigc_tf.validation import check_float, check_int, check_seed

__all__ = ["MinibatchStdDev", "RingGAN", "mode_centres", "mode_coverage", "ring_dataset", "ring_of_gaussians"]


def mode_centres(modes: int = 8, radius: float = 2.0) -> np.ndarray:
    """The centres of the ring's modes: ``radius (cos 2 pi k / modes, sin 2 pi k / modes)``.

    Args:
        modes: number of Gaussians (>= 1).
        radius: radius of the circle (> 0).

    Returns:
        ``(modes, 2)`` float32 array.
    """
    modes = check_int("modes", modes, minimum=1)
    radius = check_float("radius", radius, low=0.0, low_inclusive=False)
    angles = 2 * np.pi * np.arange(modes) / modes
    return (radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)).astype("float32")


def ring_of_gaussians(
    n: int, seed: int | None = 0, *, modes: int = 8, radius: float = 2.0, std: float = 0.02
) -> np.ndarray:
    """``n`` points of an equal-weight mixture of Gaussians centred on a ring.

    Args:
        n: number of points (>= 1).
        seed: NumPy seed (``None``: fresh randomness).
        modes: number of mixture components, evenly spaced on the circle.
        radius: radius of the circle.
        std: standard deviation of each (isotropic) component (> 0).

    Returns:
        ``(n, 2)`` float32 array.
    """
    n = check_int("n", n, minimum=1)
    std = check_float("std", std, low=0.0, low_inclusive=False)
    centres = mode_centres(modes, radius)
    rng = np.random.default_rng(check_seed(seed))
    which = rng.integers(0, len(centres), size=n)
    return (centres[which] + std * rng.standard_normal((n, 2))).astype("float32")


def ring_dataset(batch_size: int, seed: int = 0, *, modes: int = 8, radius: float = 2.0, std: float = 0.02):
    """An endless ``tf.data.Dataset`` of ``(batch_size, 2)`` batches of :func:`ring_of_gaussians`.

    Args:
        batch_size: points per batch (>= 1).
        seed: seed of the stream (reproducible).
        modes, radius, std: see :func:`ring_of_gaussians`.

    Returns:
        A dataset of float32 batches, repeating a pool of 64 distinct batches' worth of points
        reshuffled every pass.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    pool = ring_of_gaussians(64 * batch_size, seed, modes=modes, radius=radius, std=std)
    return (
        tf.data.Dataset.from_tensor_slices(pool)
        .shuffle(len(pool), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )


def mode_coverage(
    samples: Any,
    *,
    modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    num_std: float = 3.0,
    min_count: int = 1,
) -> dict[str, Any]:
    """How many modes of the ring a sample set hits, and how many samples are good.

    A sample is *high quality* when it lies within ``num_std * std`` of its nearest mode
    centre; a mode is *hit* when at least ``min_count`` high-quality samples are nearest to it,
    and *reached* when at least ``min_count`` samples of any quality are nearest to it (a
    collapsed generator reaches few modes; a spread-out but imprecise one reaches many and
    hits few).

    Args:
        samples: ``(N, 2)`` points.
        modes, radius, std: the ring (see :func:`ring_of_gaussians`).
        num_std: the quality radius in units of ``std``.
        min_count: high-quality samples a mode needs to count as hit (>= 1).

    Returns:
        ``{"modes_hit": int, "modes_reached": int, "high_quality": float (share of samples),
        "counts": list[int], "nearest": list[int]}``: ``counts[k]`` the high-quality samples at
        mode ``k``, ``nearest[k]`` all samples whose nearest mode is ``k``.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(f"samples: expected a non-empty (N, 2) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("samples: contains NaN or infinite values")
    num_std = check_float("num_std", num_std, low=0.0, low_inclusive=False)
    min_count = check_int("min_count", min_count, minimum=1)
    std = check_float("std", std, low=0.0, low_inclusive=False)
    centres = mode_centres(modes, radius).astype(np.float64)
    distances = np.linalg.norm(x[:, None, :] - centres[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    good = distances[np.arange(len(x)), nearest] <= num_std * std
    counts = np.bincount(nearest[good], minlength=len(centres))
    near = np.bincount(nearest, minlength=len(centres))
    return {
        "modes_hit": int(np.sum(counts >= min_count)),
        "modes_reached": int(np.sum(near >= min_count)),
        "high_quality": float(good.mean()),
        "counts": counts.tolist(),
        "nearest": near.tolist(),
    }


@keras.saving.register_keras_serializable(package="aigc_tf")
class MinibatchStdDev(keras.layers.Layer):
    """Append the minibatch standard deviation as one more feature (Karras et al., 2018).

    The batch is split into groups of ``group_size`` examples; within each group the
    standard deviation of every feature across the examples is averaged over the features,
    and that number is appended to each example of the group. Samples of a collapsed
    generator are alike, so their groups have a small value that real groups never have.

    Args:
        group_size: examples per group (the batch size must be a multiple of it).

    Call: ``(B, F) -> (B, F + 1)``.
    """

    def __init__(self, group_size: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group_size = check_int("group_size", group_size, minimum=2)

    def call(self, x):
        features = ops.shape(x)[-1]
        groups = ops.reshape(x, (-1, self.group_size, features))
        std = ops.sqrt(ops.var(groups, axis=1) + 1e-8)  # (B / g, F)
        stat = ops.mean(std, axis=-1, keepdims=True)  # (B / g, 1)
        stat = ops.reshape(ops.repeat(stat[:, None, :], self.group_size, axis=1), (-1, 1))
        return ops.concatenate([x, stat], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "group_size": self.group_size}


def _mlp(inputs: int, outputs: int, width: int, depth: int, name: str, minibatch_std: int = 0) -> keras.Model:
    x = inp = keras.Input((inputs,))
    for i in range(depth):
        x = keras.layers.Dense(width, activation="relu", name=f"{name}_dense_{i}")(x)
        if i == 0 and minibatch_std:
            x = MinibatchStdDev(minibatch_std, name=f"{name}_minibatch_std")(x)
    out = keras.layers.Dense(outputs, name=f"{name}_out")(x)
    return keras.Model(inp, out, name=name)


@keras.saving.register_keras_serializable(package="aigc_tf")
class RingGAN(keras.Model):
    """A GAN of two MLPs for 2-D points; ``pack > 1`` makes it a PacGAN.

    Generator: ``z (latent_dim) -> depth x Dense(width, relu) -> Dense(2)``. Discriminator:
    ``pack points (2 pack) -> depth x Dense(width, relu) -> Dense(1)`` (a logit). A batch of B
    points is judged as ``B / pack`` packs (B must be a multiple of ``pack``). Losses: the
    package's :func:`discriminator_loss` and non-saturating :func:`generator_loss`; one D step,
    then one G step on fresh noise, each on its own network's weights.

    Args:
        latent_dim: size of z.
        width: units per hidden layer (both networks).
        depth: hidden layers (both networks).
        pack: points per discriminator input (1: a plain GAN).
        minibatch_std: group size of a :class:`MinibatchStdDev` feature after D's first hidden
            layer (0: none).
        seed: seed of the model's noise stream.

    Call: ``model(z)`` returns ``(N, 2)`` points for ``z`` of shape ``(N, latent_dim)``.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        width: int = 128,
        depth: int = 2,
        pack: int = 1,
        minibatch_std: int = 0,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.depth = check_int("depth", depth, minimum=1)
        self.pack = check_int("pack", pack, minimum=1)
        self.minibatch_std = check_int("minibatch_std", minibatch_std, minimum=0)
        if self.minibatch_std == 1:
            raise ValueError("minibatch_std: a group needs at least 2 examples (0 turns the feature off), got 1")
        self.seed = check_int("seed", seed, minimum=0)
        self.generator = _mlp(self.latent_dim, 2, self.width, self.depth, "generator")
        self.discriminator = _mlp(2 * self.pack, 1, self.width, self.depth, "discriminator", self.minibatch_std)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (the networks are rebuilt from them)."""
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "width": self.width,
            "depth": self.depth,
            "pack": self.pack,
            "minibatch_std": self.minibatch_std,
            "seed": self.seed,
        }

    @property
    def metrics(self) -> list:
        """The two loss trackers (reset at every epoch)."""
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs: Any) -> None:
        """Set one optimizer per network (default: Adam(1e-3, beta_1=0.5) each)."""
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(1e-3, beta_1=0.5)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(1e-3, beta_1=0.5)

    def call(self, z, training: bool = False):
        """``G(z)``: ``(N, latent_dim) -> (N, 2)``."""
        return self.generator(z, training=training)

    def _packed_logits(self, points):
        return self.discriminator(ops.reshape(points, (-1, 2 * self.pack)), training=True)

    def train_step(self, data):
        """One D step and one G step; ``data`` is a ``(B, 2)`` batch of real points."""
        real = ops.cast(data, "float32")
        batch = ops.shape(real)[0]
        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            fake = self.generator(z, training=True)
            d_loss = ops.mean(discriminator_loss(self._packed_logits(real), self._packed_logits(fake)))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
        z = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            g_loss = ops.mean(generator_loss(self._packed_logits(self.generator(z, training=True))))
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply(tape.gradient(g_loss, g_vars), g_vars)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {m.name: m.result() for m in self.metrics}

    def generate(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` points ``G(z)``, ``z ~ N(0, I)`` drawn with NumPy ``seed``: ``(n, 2)`` float32."""
        n = check_int("n", n, minimum=1)
        z = np.random.default_rng(check_seed(seed)).standard_normal((n, self.latent_dim)).astype("float32")
        return ops.convert_to_numpy(self.generator(z, training=False))


def train_ring_gan(
    *,
    pack: int = 1,
    steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    d_learning_rate: float | None = None,
    seed: int = 0,
    modes: int = 8,
    radius: float = 2.0,
    std: float = 0.02,
    **model_kwargs: Any,
) -> RingGAN:
    """Build, compile and train a :class:`RingGAN` on the ring for ``steps`` steps.

    Args:
        pack: points per discriminator input (1: plain GAN, 2 or more: PacGAN).
        steps: training steps (one D and one G update each).
        batch_size: points per step (rounded down to a multiple of ``pack``).
        learning_rate: Adam's learning rate of G (and of D unless ``d_learning_rate``); ``beta_1 = 0.5``.
        d_learning_rate: D's learning rate (default: ``learning_rate``).
        seed: seeds the weights, the noise and the data.
        modes, radius, std: the ring.
        **model_kwargs: further :class:`RingGAN` arguments (``latent_dim``, ``width``, ``depth``).

    Returns:
        The trained model.
    """
    steps = check_int("steps", steps, minimum=1)
    pack = check_int("pack", pack, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=pack) // pack * pack
    learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    if d_learning_rate is None:
        d_learning_rate = learning_rate
    d_learning_rate = check_float("d_learning_rate", d_learning_rate, low=0.0, low_inclusive=False)
    keras.utils.set_random_seed(seed)
    model = RingGAN(pack=pack, seed=seed, **model_kwargs)
    model.compile(
        d_optimizer=keras.optimizers.Adam(d_learning_rate, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
    )
    data = ring_dataset(batch_size, seed, modes=modes, radius=radius, std=std)
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)  # an endless stream
    return model
