"""The GAN game as a Keras model (:class:`GAN`), and the unconditional :class:`DCGAN`.

:class:`GAN` holds everything the three GANs share: the two networks built from
a :class:`GANConfig`, the two-optimizer training step, the averaged generator,
sampling (plain, from given latents, with rejection) and serialization. Its
subclasses differ only in where the labels come from: none (:class:`DCGAN`),
the data (:class:`~aigc_tf.gan.ConditionalGAN`) or k-means clusters of the
images (:class:`~aigc_tf.gan.ClusteredGAN`).

Random streams (each a ``keras.random.SeedGenerator`` owned by the model):

* ``noise_seed_generator`` (seed ``s``): the latents of every training step;
* ``sample_seed_generator`` (``s + 1``): :meth:`GAN.generate` and friends with ``seed=None``,
  so sampling between epochs does not shift the training noise;
* ``eval_seed_generator`` (``s + 2``): the latents of ``evaluate()`` / ``validation_data``.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.data_checks import CheckedFit, checked_pixels, warn_unit_range
from aigc_tf.ema import ExponentialMovingAverage
from aigc_tf.gan.generation import GenerationMixin
from aigc_tf.gan.losses import discriminator_loss, generator_loss
from aigc_tf.gan.networks import make_discriminator, make_generator
from aigc_tf.images import (
    batch_rows,
    check_image_batch,
    check_image_dataset,
    checked_images,
    images_of,
)
from aigc_tf.streams import SavedRandomState, from_config_under_policy
from aigc_tf.validation import (
    check_float,
    check_image_shape,
    check_int,
    check_int_tuple,
    check_rate,
    check_seed,
)

__all__ = ["DCGAN", "GAN", "GANConfig"]


@dataclasses.dataclass
class GANConfig:
    """The constants of a GAN, checked on creation (``TypeError`` for a type, ``ValueError`` for a value).

    Attributes:
        latent_dim: size of z, >= 1.
        image_shape: ``(H, W, C)``; H and W divisible by ``2 ** len(generator_filters)``.
        generator_filters: see :func:`~aigc_tf.gan.make_generator`.
        discriminator_filters: see :func:`~aigc_tf.gan.make_discriminator`.
        dropout: D's dropout rate, in [0, 1).
        label_smoothing: one-sided smoothing of D's real targets, in [0, 1).
        ema_decay: decay d of the moving average of G's weights, in [0, 1); 0
            turns averaging off. Step t uses min(d, (1 + t) / (10 + t)), see
            :class:`~aigc_tf.ema.ExponentialMovingAverage`.
        seed: seed of the model's random streams (``None``: from the global seed).
        num_classes: 0 for an unconditional GAN, else >= 2 classes (or clusters).
        label_dim: size of the generator's label embedding (conditional GANs).
    """

    latent_dim: int = 128
    image_shape: Sequence[int] = (28, 28, 1)
    generator_filters: Sequence[int] = (128, 64)
    discriminator_filters: Sequence[int] = (64, 128)
    dropout: float = 0.3
    label_smoothing: float = 0.0
    ema_decay: float = 0.999
    seed: int | None = None
    num_classes: int = 0
    label_dim: int = 32

    def __post_init__(self) -> None:
        self.latent_dim = check_int("latent_dim", self.latent_dim, minimum=1)
        self.image_shape = check_image_shape(self.image_shape)
        self.generator_filters = check_int_tuple("generator_filters", self.generator_filters)
        self.discriminator_filters = check_int_tuple("discriminator_filters", self.discriminator_filters)
        scale = 2 ** len(self.generator_filters)
        if self.image_shape[0] % scale or self.image_shape[1] % scale:
            raise ValueError(
                f"image_shape={self.image_shape}: height and width must be divisible by {scale} "
                f"(one doubling per entry of generator_filters={self.generator_filters})."
            )
        self.dropout = check_rate("dropout", self.dropout)
        self.label_smoothing = check_rate("label_smoothing", self.label_smoothing)
        self.ema_decay = check_float("ema_decay", self.ema_decay, low=0.0, high=1.0, high_inclusive=False)
        self.seed = check_seed(self.seed)
        self.num_classes = check_int("num_classes", self.num_classes, minimum=0)
        if self.num_classes == 1:
            raise ValueError("num_classes must be 0 (unconditional) or >= 2, got 1.")
        self.label_dim = check_int("label_dim", self.label_dim, minimum=1 if self.num_classes else 0)

    @classmethod
    def from_kwargs(cls, owner: str, kwargs: dict[str, Any], **fixed: Any) -> GANConfig:
        """The config of ``fixed`` plus the config fields found in ``kwargs`` (popped; the rest is for Keras).

        Raises:
            TypeError: if ``kwargs`` also names one of the ``fixed`` fields.
        """
        for name in fixed:
            if name in kwargs:
                raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}.")
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**fixed, **{name: kwargs.pop(name) for name in list(kwargs) if name in names})


class GAN(SavedRandomState, CheckedFit, GenerationMixin, keras.Model):
    """A generator G and a discriminator D trained against each other; the base of the three GANs.

    Build one of :class:`DCGAN`, :class:`~aigc_tf.gan.ConditionalGAN` or
    :class:`~aigc_tf.gan.ClusteredGAN`. A subclass says where its labels come
    from, and nothing else: :meth:`labels_for` (the labels of a training batch)
    and :meth:`sample_labels` (the labels of :meth:`generate` when none are given).

    ``fit`` takes images ``(batch, H, W, C)`` in [-1, 1] (``value_range``), or
    ``(images, labels)``. History keys, all epoch means over every image seen:
    ``d_loss``, ``g_loss``, ``d_accuracy`` (share of real and fake images D
    classifies correctly), ``real_score`` and ``fake_score`` (mean sigma(D(.)) on
    real and on fake images, at the D step). At the game's equilibrium both
    scores approach 0.5 and ``d_loss`` approaches 2 log 2 = 1.386.

    :meth:`generate` samples from the moving average of G's weights
    (``generator_average``, see ``ema_decay``); ``average=False`` and ``model(z)``
    run the raw generator.

    ``noise_fn(shape, seed)`` draws the latents of ``train_step`` and
    ``test_step`` (default ``keras.random.normal``); set it before training to
    train on known noise (a test, an ablation).

    Args:
        config: the model's constants.
        **kwargs: passed to ``keras.Model`` (e.g. ``name``).
    """

    #: The pixel range of the images G makes (tanh) and D expects.
    value_range: tuple[float, float] = (-1.0, 1.0)

    # ---- training data, checked batch by batch (see aigc_tf.data_checks) -------------

    def checked_batches(self, dataset, name):
        return checked_pixels(dataset, self.value_range, name)

    def check_arrays(self, x, y):
        images = check_image_batch("x", images_of(x), self.image_shape, self.value_range)
        if self.value_range[0] < 0 and np.min(images) >= 0:
            warn_unit_range("x", self.value_range)

    def __init__(self, config: GANConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for field in dataclasses.fields(config):
            setattr(self, field.name, getattr(config, field.name))
        self.generator = make_generator(
            self.latent_dim, self.image_shape, self.generator_filters, self.num_classes, self.label_dim
        )
        self.discriminator = make_discriminator(
            self.image_shape, self.discriminator_filters, self.dropout, self.num_classes
        )
        # The averaged generator: a second set of values for G's variables, run with
        # ``generator.stateless_call``: one architecture, two sets of weights.
        self.generator_average = (
            ExponentialMovingAverage(self, self.generator, self.ema_decay) if self.ema_decay else None
        )
        # A plain int seed in train_step would give the same z every step: the
        # streams are model-owned generators whose state advances at each draw.
        seed = self.seed
        self.noise_seed_generator = keras.random.SeedGenerator(seed)
        self.sample_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)
        self.eval_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 2)
        self.noise_fn = keras.random.normal

        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_accuracy_tracker = keras.metrics.Mean(name="d_accuracy")
        self.real_score_tracker = keras.metrics.Mean(name="real_score")
        self.fake_score_tracker = keras.metrics.Mean(name="fake_score")
        self.d_optimizer = None
        self.g_optimizer = None
        self._checked_datasets = weakref.WeakSet()  # datasets whose first batch passed check_dataset
        self.built = True  # G and D are functional models, built on creation

    def call(self, inputs, training: bool = False):
        """Images from latents: ``z (batch, latent_dim)``, or ``[z, labels (batch,)]`` if conditional.

        Returns:
            ``(batch, H, W, C)`` float32 images in [-1, 1].
        """
        return self.generator(inputs, training=training)

    # ---- where the labels come from (the subclasses' part) --------------------

    def labels_for(self, data):
        """The labels G and D are conditioned on for a training batch ``data`` (``None``: unconditional)."""
        return None

    def sample_labels(self, num_images: int, seed: int | None = None) -> np.ndarray | None:
        """The labels of :meth:`generate` when none are given (``None``: unconditional)."""
        return None

    # ---- compile ---------------------------------------------------------------

    def compile(
        self,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Set the two optimizers (default: Adam(2e-4, beta_1=0.5) each).

        When the networks were built under a ``mixed_float16`` policy (whatever the
        policy is when ``compile`` runs), each optimizer is wrapped in a
        ``keras.optimizers.LossScaleOptimizer`` (Keras does that only for
        ``model.optimizer``). Both optimizers are built here, so call ``compile``
        inside ``strategy.scope()`` when distributing.

        Args:
            d_optimizer: optimizer for the discriminator.
            g_optimizer: optimizer for the generator (must be a different object).
            **kwargs: passed to ``keras.Model.compile`` (e.g. ``jit_compile``,
                ``steps_per_execution``); ``loss``, ``optimizer`` and ``metrics``
                are not used by this model and are rejected.
        """
        for key in ("loss", "optimizer", "metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"{type(self).__name__}.compile() takes d_optimizer and g_optimizer; `{key}` is not used "
                    "(the losses are fixed: BCE from logits, non-saturating for G)."
                )
            kwargs.pop(key, None)
        d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        if d_optimizer is g_optimizer:
            raise ValueError("d_optimizer and g_optimizer must be two different optimizer objects.")
        # Loss scaling follows the policy the networks were *built* with, not the policy of the moment.
        layers = [*self.generator.layers, *self.discriminator.layers]
        if any(layer.compute_dtype == "float16" for layer in layers):
            d_optimizer, g_optimizer = _loss_scaled(d_optimizer), _loss_scaled(g_optimizer)
        super().compile(**kwargs)
        self._gan_compile_kwargs = {
            k: v for k, v in kwargs.items() if k in ("jit_compile", "steps_per_execution", "run_eagerly")
        }
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        # Build the slots now: under MirroredStrategy unbuilt Adam slots created
        # inside fit() fail, and on load the slots must exist before the saved
        # values are read.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def training_optimizers(self) -> list[keras.optimizers.Optimizer]:
        """The optimizers ``fit`` steps, D's then G's (for callbacks that schedule learning rates)."""
        return [self.d_optimizer, self.g_optimizer]

    def get_compile_config(self) -> dict[str, Any] | None:
        if self.d_optimizer is None:
            return None
        return {
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
            **self._gan_compile_kwargs,
        }

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = dict(config)
        d_optimizer = keras.saving.deserialize_keras_object(config.pop("d_optimizer"))
        g_optimizer = keras.saving.deserialize_keras_object(config.pop("g_optimizer"))
        self.compile(d_optimizer=d_optimizer, g_optimizer=g_optimizer, **config)

    # ---- training ----------------------------------------------------------------

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listing the trackers makes Keras reset them every epoch and report them.
        return [
            self.d_loss_tracker,
            self.g_loss_tracker,
            self.d_accuracy_tracker,
            self.real_score_tracker,
            self.fake_score_tracker,
        ]

    def train_step(self, data):
        real, labels = self._unpack(data)
        # Every op of the step waits for the batch's checks, so a bad batch fails the
        # step and changes nothing, the optimizers' step counts included.
        with tf.control_dependencies([real] if labels is None else [real, labels]):
            batch = ops.shape(real)[0]
            rows = batch_rows(real)  # (global batch size, this replica's first row)
            global_batch = ops.cast(rows[0], "float32")

            # 1. D step: the real batch (target 1) against fresh fakes (target 0). G runs
            # in training mode (batch statistics, as in the G step) but statelessly: its
            # BatchNorm moving averages are returned, not assigned, so this step changes
            # no variable of G.
            fake, _ = self.generator.stateless_call(
                [v.value for v in self.generator.trainable_variables],
                [v.value for v in self.generator.non_trainable_variables],
                self._g_inputs(self._latents(batch, rows), labels),
                training=True,
            )
            with tf.GradientTape() as tape:
                real_logits = self.discriminator(self._d_inputs(real, labels), training=True)
                fake_logits = self.discriminator(self._d_inputs(fake, labels), training=True)
                d_loss = discriminator_loss(real_logits, fake_logits, self.label_smoothing)
                # Replica gradients are summed: divide by the GLOBAL batch size.
                d_scaled = self.d_optimizer.scale_loss(ops.sum(d_loss) / global_batch)
            d_vars = self.discriminator.trainable_variables
            self.d_optimizer.apply(_densified(tape.gradient(d_scaled, d_vars)), d_vars)

            # 2. G step: new z, through the updated D; non-saturating loss BCE(1, D(G(z))).
            # D runs in training mode (fresh dropout masks) but has no BatchNorm, so none
            # of D's weights change here.
            z = self._latents(batch, rows)
            with tf.GradientTape() as tape:
                fake = self.generator(self._g_inputs(z, labels), training=True)
                g_loss = generator_loss(self.discriminator(self._d_inputs(fake, labels), training=True))
                g_scaled = self.g_optimizer.scale_loss(ops.sum(g_loss) / global_batch)
            g_vars = self.generator.trainable_variables
            self.g_optimizer.apply(_densified(tape.gradient(g_scaled, g_vars)), g_vars)

            # 3. The averaged generator moves towards the new G.
            if self.generator_average is not None:
                self.generator_average.update(self.g_optimizer.iterations)
            return self._update_trackers(d_loss, g_loss, real_logits, fake_logits)

    def test_step(self, data):
        """The same quantities as ``train_step``, with no update and ``training=False``."""
        real, labels = self._unpack(data)
        z = self._latents(ops.shape(real)[0], batch_rows(real), self.eval_seed_generator)
        fake = self.generator(self._g_inputs(z, labels), training=False)
        real_logits = self.discriminator(self._d_inputs(real, labels), training=False)
        fake_logits = self.discriminator(self._d_inputs(fake, labels), training=False)
        d_loss = discriminator_loss(real_logits, fake_logits, self.label_smoothing)
        return self._update_trackers(d_loss, generator_loss(fake_logits), real_logits, fake_logits)

    def predict_step(self, data):
        raise NotImplementedError(
            f"{type(self).__name__}.predict() is not defined (the model maps noise to images); use generate()."
        )

    def _unpack(self, data):
        """Images (shape-checked when traced) and labels of a batch."""
        images = checked_images(images_of(data), self.image_shape)
        return ops.cast(images, "float32"), self.labels_for(data)

    def _latents(self, batch_size, rows, seed_generator=None):
        """Fresh z for this replica's rows of the global batch.

        Every replica draws the *global* batch of noise from the (mirrored, hence
        identical) seed state and keeps its own rows; drawing only the local batch
        would hand every replica the same z.
        """
        global_batch, offset = rows
        z = self.noise_fn((global_batch, self.latent_dim), seed=seed_generator or self.noise_seed_generator)
        return z[offset : offset + batch_size]

    @staticmethod
    def _g_inputs(z, labels):
        return z if labels is None else [z, labels]

    @staticmethod
    def _d_inputs(images, labels):
        return images if labels is None else [images, labels]

    def _update_trackers(self, d_loss, g_loss, real_logits, fake_logits):
        # Per-example vectors, unscaled: Mean trackers add sums and counts that are
        # summed over replicas, so the epoch value is the exact mean over all images.
        real_logits = ops.reshape(ops.cast(real_logits, "float32"), (-1,))
        fake_logits = ops.reshape(ops.cast(fake_logits, "float32"), (-1,))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        correct = ops.concatenate([ops.cast(real_logits > 0, "float32"), ops.cast(fake_logits < 0, "float32")])
        self.d_accuracy_tracker.update_state(correct)
        self.real_score_tracker.update_state(ops.sigmoid(real_logits))
        self.fake_score_tracker.update_state(ops.sigmoid(fake_logits))
        return {m.name: m.result() for m in self.metrics}

    def check_dataset(self, dataset: tf.data.Dataset, name: str = "dataset") -> tf.data.Dataset:
        """Check a training dataset before ``fit``: its element shapes, and its first batch's pixels.

        ``fit`` itself checks shapes when it traces the step; this also reads the
        first batch (once per dataset object) and fails on pixels outside
        ``value_range`` (0..255 images, say).

        Returns:
            ``dataset``, to train on.

        Raises:
            TypeError: if ``dataset`` is not a ``tf.data.Dataset``.
            ValueError: for a wrong image shape or pixels out of range.
        """
        check_image_dataset(name, dataset, self.image_shape, self.value_range, self._checked_datasets)
        return dataset

    # ---- serialization -------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        config = {field.name: getattr(self, field.name) for field in dataclasses.fields(GANConfig)}
        return {**super().get_config(), **{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GAN:
        return from_config_under_policy(cls, config)


@keras.saving.register_keras_serializable(package="aigc_tf")
class DCGAN(GAN):
    """Deep convolutional GAN (Radford et al., 2015): unconditional, labels in the data are ignored.

    Example:
        >>> gan = DCGAN(latent_dim=128)
        >>> gan.compile()  # Adam(2e-4, beta_1=0.5) for D and for G
        >>> ds = load_images("mnist", batch_size=128, value_range=(-1, 1))
        >>> gan.fit(ds, epochs=5)                      # doctest: +SKIP
        >>> images = gan.generate(64, seed=0)          # (64, 28, 28, 1) in [-1, 1]

    Args:
        latent_dim: size of z.
        image_shape: ``(H, W, C)``.
        **kwargs: the other :class:`GANConfig` fields (``generator_filters``,
            ``discriminator_filters``, ``dropout``, ``label_smoothing``, ``ema_decay``,
            ``seed``) and ``keras.Model``'s (e.g. ``name``). See :class:`GAN` for
            training, history keys and sampling.
    """

    def __init__(self, latent_dim: int = 128, image_shape: Sequence[int] = (28, 28, 1), **kwargs: Any) -> None:
        fields = dict(num_classes=0, label_dim=0, latent_dim=latent_dim, image_shape=image_shape)
        super().__init__(GANConfig.from_kwargs(type(self).__name__, kwargs, **fields), **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["num_classes"], config["label_dim"]
        return config


def _densified(grads):
    """Embedding gradients come as IndexedSlices whose row count depends on the
    labels in the batch; MirroredStrategy's all-reduce needs equal shapes on every
    replica, so make them dense (the tables are tiny)."""
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def _loss_scaled(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)
