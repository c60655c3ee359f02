"""DCGAN (Radford et al., 2015), a conditional GAN (Mirza & Osindero, 2014), and
a GAN conditioned on k-means clusters of the training images (no labels needed).

The game, with D returning a *logit* l = D(x) and sigma the sigmoid:

    D maximises  E_x[log sigma(D(x))] + E_z[log(1 - sigma(D(G(z))))]
    G (minimax)  minimises  E_z[log(1 - sigma(D(G(z))))]       (saturates)
    G (non-saturating, used here)  minimises  E_z[-log sigma(D(G(z)))]

Both G objectives have the same fixed point, but early in training D rejects
fakes (l << 0): then d/dl log(1 - sigma(l)) = -sigma(l) ~ 0 (no signal), while
d/dl -log sigma(l) = -(1 - sigma(l)) ~ -1 (full signal). All losses are binary
cross-entropies computed from logits (``softplus``), exact and overflow-free.

One training step (:meth:`DCGAN.train_step`):

1. D step: fresh z, fakes G(z); D loss on the real batch (target 1, or
   ``1 - label_smoothing``) plus the fake batch (target 0); gradient w.r.t. D's
   weights only. G runs in training mode (batch statistics) but statelessly, so
   this step leaves every variable of G as it was, BatchNorm statistics included.
2. G step: new z; G loss = BCE(1, D(G(z))); gradient w.r.t. G's weights only;
   D's variables are not touched.
3. Weight averaging: an exponential moving average of G's weights is updated
   (Yazici et al., 2019, "The unusual effectiveness of averaging in GAN
   training"; Karras et al., 2018). The averaged generator is the one
   :meth:`DCGAN.generate` samples from: the raw G jitters around the
   equilibrium as D and G chase each other, the average sits nearer its centre
   and draws cleaner samples.

Sampling with the discriminator (:meth:`DCGAN.generate_rejection`; Azadi et
al., 2019, "Discriminator rejection sampling"): at D's optimum its logit is
log p_data(x) / p_g(x), so keeping each G(z) with probability
exp(min(0, D(G(z)) - bound)) turns samples of p_g into samples of p_data, as far
as D is optimal (:func:`rejection_acceptance`).

Images live in [-1, 1] (tanh output): load data with
``aigc_tf.data.load_images(..., value_range=(-1, 1))``, and show samples with
``aigc_tf.plotting.to_unit_range``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.images import batch_rows, check_first_batch, images_of
from aigc_tf.validation import check_image_shape

# --------------------------------------------------------------------------- #
# Losses, as plain functions of logits (per example, no reduction).
# --------------------------------------------------------------------------- #


def bce_from_logits(target: float, logits):
    """Binary cross-entropy of ``sigmoid(logits)`` against a constant target.

    BCE(t, l) = t softplus(-l) + (1 - t) softplus(l)
              = -t log sigma(l) - (1 - t) log(1 - sigma(l)).

    Args:
        target: the label in [0, 1] (the same for the whole batch).
        logits: ``(batch, ...)`` logits; computed in float32.

    Returns:
        Same shape as ``logits``, float32.
    """
    logits = ops.cast(logits, "float32")
    return target * ops.softplus(-logits) + (1.0 - target) * ops.softplus(logits)


def discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Per-example D loss: BCE(1 - label_smoothing, D(x)) + BCE(0, D(G(z))).

    Label smoothing is one-sided (only real targets move), as in Salimans et al.
    (2016); ``keras.losses.BinaryCrossentropy(label_smoothing=...)`` would also
    move the fake targets to ``label_smoothing / 2``.

    Args:
        real_logits: ``(batch, 1)`` or ``(batch,)`` D logits on real images.
        fake_logits: same shape, D logits on generated images.
        label_smoothing: in [0, 1).

    Returns:
        ``(batch,)`` float32.
    """
    real = bce_from_logits(1.0 - label_smoothing, real_logits)
    fake = bce_from_logits(0.0, fake_logits)
    return ops.reshape(real + fake, (-1,))


def generator_loss(fake_logits):
    """Per-example non-saturating G loss: BCE(1, D(G(z))) = -log sigma(l) = softplus(-l).

    Args:
        fake_logits: ``(batch, 1)`` or ``(batch,)`` D logits on generated images.

    Returns:
        ``(batch,)`` float32.
    """
    return ops.reshape(bce_from_logits(1.0, fake_logits), (-1,))


def minimax_generator_loss(fake_logits):
    """Per-example *saturating* G loss of the original minimax game, for comparison.

    log(1 - sigma(l)) = -softplus(l). Its gradient -sigma(l) vanishes when D
    confidently rejects the fakes (l << 0), i.e. exactly at the start of training.

    Args:
        fake_logits: ``(batch, 1)`` or ``(batch,)`` D logits on generated images.

    Returns:
        ``(batch,)`` float32.
    """
    return ops.reshape(-ops.softplus(ops.cast(fake_logits, "float32")), (-1,))


def rejection_acceptance(logits, bound: float) -> np.ndarray:
    """Acceptance probability of discriminator rejection sampling (Azadi et al., 2019).

    At the optimum D*(x) = p_data / (p_data + p_g), so D's logit is the log density
    ratio: l(x) = log p_data(x) - log p_g(x). Rejection sampling from the proposal
    p_g with envelope constant e^bound >= max_x p_data(x) / p_g(x) accepts x with
    probability p_data(x) / (e^bound p_g(x)) = exp(l(x) - bound), and the accepted
    samples follow p_data exactly. With a bound below the largest logit the ratio
    is clipped at 1 (the samples above it are all kept): a trade between the
    acceptance rate and how closely the samples follow the ratio.

    Args:
        logits: D's logits l(x), any shape.
        bound: the log envelope constant.

    Returns:
        float64 array shaped like ``logits``: min(1, exp(l - bound)).
    """
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(np.minimum(logits - float(bound), 0.0))


# --------------------------------------------------------------------------- #
# The networks.
# --------------------------------------------------------------------------- #


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


# --------------------------------------------------------------------------- #
# The models.
# --------------------------------------------------------------------------- #


@keras.saving.register_keras_serializable(package="aigc_tf")
class DCGAN(keras.Model):
    """Deep convolutional GAN with its own two-optimizer training step.

    Example:
        >>> gan = DCGAN(latent_dim=128)
        >>> gan.compile()  # Adam(2e-4, beta_1=0.5) for D and for G
        >>> ds = load_images("mnist", batch_size=128, value_range=(-1, 1))
        >>> gan.fit(ds, epochs=5)                      # doctest: +SKIP
        >>> images = gan.generate(64, seed=0)          # (64, 28, 28, 1) in [-1, 1]

    ``fit`` takes images ``(batch, H, W, C)`` in [-1, 1] (or ``(images, labels)``;
    labels are ignored). History keys, all epoch means over every image seen:
    ``d_loss``, ``g_loss``, ``d_accuracy`` (share of real and fake images D
    classifies correctly), ``real_score`` and ``fake_score`` (mean sigma(D(.)) on
    real and on fake images, at the D step). At the game's equilibrium both
    scores approach 0.5 and ``d_loss`` approaches 2 log 2 = 1.386.

    ``generate`` samples from the moving average of G's weights kept in
    ``ema_weights`` (see ``ema_decay``); ``generate(..., average=False)`` and
    ``model(z)`` run the raw generator.
    """

    def __init__(
        self,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (28, 28, 1),
        generator_filters: Sequence[int] = (128, 64),
        discriminator_filters: Sequence[int] = (64, 128),
        dropout: float = 0.3,
        label_smoothing: float = 0.0,
        ema_decay: float = 0.999,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Args:
        latent_dim: size of z, > 0.
        image_shape: ``(H, W, C)``; H and W divisible by ``2 ** len(generator_filters)``.
        generator_filters: see :func:`make_generator`.
        discriminator_filters: see :func:`make_discriminator`.
        dropout: D's dropout rate, in [0, 1).
        label_smoothing: one-sided smoothing of D's real targets, in [0, 1).
        ema_decay: decay d of the moving average of G's weights, in [0, 1);
            0 turns averaging off. Step t uses min(d, (1 + t) / (10 + t)), as
            ``tf.train.ExponentialMovingAverage(num_updates=t)`` does, so the
            average follows G closely early on instead of remembering the
            random initial weights.
        seed: seed of the model's noise generators (``None``: from the global seed).
        **kwargs: passed to ``keras.Model`` (e.g. ``name``).
        """
        super().__init__(**kwargs)
        image_shape = check_image_shape(image_shape)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)):
            raise TypeError(f"latent_dim must be an int, got {latent_dim!r}.")
        if latent_dim <= 0:
            raise ValueError(f"latent_dim must be > 0, got {latent_dim}.")
        generator_filters = _check_filters(generator_filters, "generator_filters")
        discriminator_filters = _check_filters(discriminator_filters, "discriminator_filters")
        scale = 2 ** len(generator_filters)
        if image_shape[0] % scale or image_shape[1] % scale:
            raise ValueError(
                f"image_shape={image_shape}: height and width must be divisible by {scale} "
                f"(one doubling per entry of generator_filters={generator_filters})."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
        if isinstance(ema_decay, bool) or not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be a float in [0, 1) (0: no averaging), got {ema_decay!r}.")

        self.latent_dim = int(latent_dim)
        self.image_shape = image_shape
        self.generator_filters = generator_filters
        self.discriminator_filters = discriminator_filters
        self.dropout = float(dropout)
        self.label_smoothing = float(label_smoothing)
        self.ema_decay = float(ema_decay)
        self.seed = seed

        self.generator = self._make_generator()
        self.discriminator = self._make_discriminator()
        # The averaged generator is a second set of values for G's variables
        # (trainable first, then BatchNorm's moving statistics), run with
        # ``generator.stateless_call``: one architecture, two sets of weights.
        self.ema_weights = []
        if self.ema_decay:
            for i, v in enumerate(self._generator_variables()):
                ema = self.add_weight(
                    shape=v.shape, dtype=v.dtype, initializer="zeros", trainable=False, name=f"ema_{i}"
                )
                ema.assign(v.value)
                self.ema_weights.append(ema)
        # Training noise: a model-owned generator whose state advances every step
        # (a plain int seed in train_step would give the same z every step).
        self.seed_generator = keras.random.SeedGenerator(seed)
        # A second stream for generate(seed=None), so sampling between epochs does
        # not shift the training noise.
        self.sample_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)
        # A third for evaluate() / validation_data, for the same reason.
        self.eval_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 2)

        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_accuracy_tracker = keras.metrics.Mean(name="d_accuracy")
        self.real_score_tracker = keras.metrics.Mean(name="real_score")
        self.fake_score_tracker = keras.metrics.Mean(name="fake_score")
        self.d_optimizer = None
        self.g_optimizer = None
        self.built = True  # G and D are functional models, built on creation

    # ---- networks (overridden by ConditionalGAN) -------------------------------

    num_classes = 0

    def _make_generator(self) -> keras.Model:
        return make_generator(self.latent_dim, self.image_shape, self.generator_filters)

    def _make_discriminator(self) -> keras.Model:
        return make_discriminator(self.image_shape, self.discriminator_filters, self.dropout)

    def _g_inputs(self, z, labels):
        return z

    def _d_inputs(self, images, labels):
        return images

    def call(self, z, training: bool = False):
        """Generate images from latents.

        Args:
            z: ``(batch, latent_dim)`` latent vectors.
            training: passed to the generator (BatchNorm mode).

        Returns:
            ``(batch, H, W, C)`` float32 images in [-1, 1].
        """
        return self.generator(z, training=training)

    # ---- compile ---------------------------------------------------------------

    def compile(
        self,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs: Any,
    ) -> None:
        """Set the two optimizers (default: Adam(2e-4, beta_1=0.5) each).

        Under a ``mixed_float16`` policy each optimizer is wrapped in a
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
                    f"DCGAN.compile() takes d_optimizer and g_optimizer; `{key}` is not used "
                    "(the losses are fixed: BCE from logits, non-saturating for G)."
                )
            kwargs.pop(key, None)
        d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        if d_optimizer is g_optimizer:
            raise ValueError("d_optimizer and g_optimizer must be two different optimizer objects.")
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            d_optimizer = _loss_scaled(d_optimizer)
            g_optimizer = _loss_scaled(g_optimizer)
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

    def _unpack(self, data):
        """Images and labels (None for DCGAN) of a training batch, shape-checked."""
        images = images_of(data)
        _check_static_shape(images, self.image_shape)
        return ops.cast(images, "float32"), None

    def _latents(self, batch_size, rows, seed_generator=None):
        """Fresh z for this replica's share of the global batch.

        Every replica draws the *global* batch of noise from the (mirrored, hence
        identical) seed state and keeps its own rows; drawing only the local
        batch would hand every replica the same z.

        Args:
            batch_size: this replica's batch size.
            rows: ``(global batch size, this replica's first row)``, from ``batch_rows``.
            seed_generator: the noise stream (default: the training one).
        """
        global_batch, offset = rows
        z = keras.random.normal((global_batch, self.latent_dim), seed=seed_generator or self.seed_generator)
        return z[offset : offset + batch_size]

    def train_step(self, data):
        real, labels = self._unpack(data)
        rows = batch_rows(real)
        d_loss, real_logits, fake_logits = self._discriminator_step(real, labels, rows)
        g_loss = self._generator_step(ops.shape(real)[0], labels, rows)
        self._update_ema()  # move the averaged generator towards the new G
        return self._update_trackers(d_loss, g_loss, real_logits, fake_logits)

    def _discriminator_step(self, real, labels, rows):
        """One update of D's weights on a real batch and fresh fakes; G is left unchanged."""
        z = self._latents(ops.shape(real)[0], rows)
        # G in training mode (batch statistics, as in the G step), run statelessly:
        # its BatchNorm moving averages are returned, not assigned, so this step
        # changes no variable of G.
        fake, _ = self.generator.stateless_call(
            [v.value for v in self.generator.trainable_variables],
            [v.value for v in self.generator.non_trainable_variables],
            self._g_inputs(z, labels),
            training=True,
        )
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(self._d_inputs(real, labels), training=True)
            fake_logits = self.discriminator(self._d_inputs(fake, labels), training=True)
            d_loss = discriminator_loss(real_logits, fake_logits, self.label_smoothing)
            # Replica gradients are summed: divide by the GLOBAL batch size.
            d_scaled = self.d_optimizer.scale_loss(ops.sum(d_loss) / ops.cast(rows[0], "float32"))
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply(_dense(tape.gradient(d_scaled, d_vars)), d_vars)
        return d_loss, real_logits, fake_logits

    def _generator_step(self, batch_size, labels, rows):
        """One update of G's weights on new noise; D's variables are left unchanged."""
        z = self._latents(batch_size, rows)
        # D runs in training mode (fresh dropout masks) but has no BatchNorm (see
        # make_discriminator), so none of D's weights change here.
        with tf.GradientTape() as tape:
            fake = self.generator(self._g_inputs(z, labels), training=True)
            g_logits = self.discriminator(self._d_inputs(fake, labels), training=True)
            g_loss = generator_loss(g_logits)
            g_scaled = self.g_optimizer.scale_loss(ops.sum(g_loss) / ops.cast(rows[0], "float32"))
        g_vars = self.generator.trainable_variables
        self.g_optimizer.apply(_dense(tape.gradient(g_scaled, g_vars)), g_vars)
        return g_loss

    def ema_decay_at(self, step):
        """The averaging decay used at G step ``step`` (1-based): min(d, (1 + t) / (10 + t))."""
        step = ops.cast(step, "float32")
        return ops.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))

    def _generator_variables(self) -> list:
        """G's variables in the order ``ema_weights`` mirrors them: trainable, then non-trainable."""
        return self.generator.trainable_variables + self.generator.non_trainable_variables

    def _update_ema(self) -> None:
        if not self.ema_decay:
            return
        decay = self.ema_decay_at(self.g_optimizer.iterations)
        for ema, v in zip(self.ema_weights, self._generator_variables()):
            ema.assign(decay * ema.value + (1.0 - decay) * ops.cast(v.value, ema.dtype))

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

    # ---- input checks at the Python entry points -------------------------------

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit`` after checking the image shape (and labels) of ``x``."""
        if self.d_optimizer is None:
            raise RuntimeError(f"call {type(self).__name__}.compile() before fit().")
        self._check_input(x, y, "x")
        x = self._guard_dataset(x, "x")
        if kwargs.get("validation_data") is not None:
            self._check_input(kwargs["validation_data"], None, "validation_data")
            kwargs["validation_data"] = self._guard_dataset(kwargs["validation_data"], "validation_data")
        return super().fit(x, y, *args, **kwargs)

    def _guard_dataset(self, x, name: str):
        """``x``, with checks on every batch added to a dataset's pipeline (none for DCGAN)."""
        return x

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.evaluate`` after checking the image shape (and labels) of ``x``."""
        if not kwargs.get("_use_cached_eval_dataset"):  # fit's validation: checked once
            self._check_input(x, y, "x")
        return super().evaluate(x, y, *args, **kwargs)

    def _check_input(self, x, y, name: str) -> None:
        """Static checks only (shapes, dtypes; labels of arrays): fast, no data pass."""
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            image_spec = spec[0] if isinstance(spec, (tuple, list)) else spec
            if not isinstance(image_spec, tf.TensorSpec) or image_spec.shape.rank not in (3, 4):
                raise ValueError(
                    f"{name}: expected a dataset of images shaped {self.image_shape} "
                    f"(or (images, labels)), got element_spec {spec}."
                )
            _check_shape(tuple(image_spec.shape), self.image_shape, name)
            self._check_label_spec(spec, name)
        elif isinstance(x, (tuple, list)) and x and y is None:
            self._check_input(x[0], x[1] if len(x) > 1 else None, name)
        elif x is not None and hasattr(x, "shape"):
            _check_shape(tuple(x.shape), self.image_shape, name)
            if len(x.shape) != 4:
                raise ValueError(f"{name}: expected a batch (N, {self.image_shape}), got {tuple(x.shape)}.")
            self._check_label_array(y, int(x.shape[0]), name)

    def _check_label_spec(self, spec, name: str) -> None:
        pass  # DCGAN ignores labels

    def _check_label_array(self, y, n: int, name: str) -> None:
        pass

    # ---- generation ----------------------------------------------------------------

    def sample_latents(self, num_images: int, seed: int | None = None) -> np.ndarray:
        """z ~ N(0, I) as a float32 ``(num_images, latent_dim)`` array.

        With an int ``seed`` the draw uses NumPy's ``default_rng(seed)``: the same on
        every machine, with or without XLA. ``seed=None`` draws from the model's
        sampling stream (different at each call).
        """
        num_images = _check_count(num_images, "num_images")
        if seed is None:
            z = keras.random.normal((num_images, self.latent_dim), seed=self.sample_seed_generator)
            return ops.convert_to_numpy(z).astype(np.float32)
        _check_seed(seed)
        rng = np.random.default_rng(int(seed))
        return rng.standard_normal((num_images, self.latent_dim)).astype(np.float32)

    def generate_from_latents(self, z, labels=None, *, batch_size: int = 1000, average: bool = True) -> np.ndarray:
        """Run the generator in inference mode on given latents.

        Args:
            z: ``(N, latent_dim)`` latents (e.g. an interpolation path).
            labels: only for :class:`ConditionalGAN`.
            batch_size: images per forward pass.
            average: use the averaged weights (when ``ema_decay > 0``); ``False``
                runs the raw generator, the one being trained.

        Returns:
            ``(N, H, W, C)`` float32 array in [-1, 1].
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) == 0:
            raise ValueError(f"z must have shape (N >= 1, {self.latent_dim}) (latent_dim), got {z.shape}.")
        if labels is not None and not self.num_classes:
            raise ValueError("DCGAN is unconditional: labels must be None (see ConditionalGAN).")
        return self._batched(lambda inputs: self._generate_fn(inputs, average), z, labels, batch_size)

    def _batched(self, fn, x: np.ndarray, labels, batch_size: int) -> np.ndarray:
        """``fn`` on ``x`` (with ``labels`` for a conditional model) in batches, as one float32 array."""
        out = []
        for start in range(0, len(x), int(batch_size)):
            xb = tf.convert_to_tensor(x[start : start + int(batch_size)])
            if self.num_classes:
                lb = tf.convert_to_tensor(labels[start : start + int(batch_size)], tf.int32)
                out.append(fn([xb, lb]))
            else:
                out.append(fn(xb))
        return np.concatenate([ops.convert_to_numpy(ops.cast(o, "float32")) for o in out])

    @tf.function(reduce_retracing=True)
    def _generate_fn(self, inputs, average: bool):
        if average and self.ema_decay:
            n = len(self.generator.trainable_variables)
            values = [ema.value for ema in self.ema_weights]
            images, _ = self.generator.stateless_call(values[:n], values[n:], inputs, training=False)
            return images
        return self.generator(inputs, training=False)

    def generate(self, num_images: int, seed: int | None = None, *, average: bool = True) -> np.ndarray:
        """Sample ``num_images`` images (same ``seed`` -> same images).

        Args:
            num_images: >= 1.
            seed: int for reproducible samples (``None``: the model's sampling stream).
            average: sample from the averaged generator (default, when
                ``ema_decay > 0``) or, with ``False``, from the raw one.

        Returns:
            ``(num_images, H, W, C)`` float32 array in [-1, 1]; map to [0, 1] for
            display with ``aigc_tf.plotting.to_unit_range``.
        """
        return self.generate_from_latents(self.sample_latents(num_images, seed), average=average)

    def generate_rejection(self, num_images: int, seed: int | None = None, **kwargs: Any) -> np.ndarray:
        """Sample ``num_images`` images, keeping those D finds realistic (discriminator rejection sampling).

        Each proposal x = G(z) is kept with probability :func:`rejection_acceptance`
        ``(D(x), bound)``; a rejected slot gets a fresh z until it is filled. If D
        were optimal, the kept images would follow p_data instead of p_g. D judges
        the images of the averaged generator here, while it was trained against the
        raw one: a close but not exact match, so this is a correction, not a cure.

        Args:
            num_images: >= 1.
            seed: int for reproducible samples (``None``: the model's sampling stream).
                Proposals that are all accepted give exactly ``generate(num_images, seed)``.
            **kwargs: ``percentile`` (default 95: the bound is this percentile of D's
                logits on ``burn_in`` proposals; 100 is the largest, as in the paper),
                ``bound`` (a fixed log bound instead), ``average``, ``burn_in`` (default
                2,000 proposals) and ``max_rounds`` (default 100 rounds of at least 1,000
                proposals; more raise a ``RuntimeError`` rather than loop on).

        Returns:
            ``(num_images, H, W, C)`` float32 array in [-1, 1].
        """
        return self._rejection_sample(_check_count(num_images, "num_images"), None, seed, **kwargs)

    def discriminator_logits(self, images, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """D's logits ``(N,)`` for images in [-1, 1] (inference mode): log p_data / p_g at D's optimum."""
        images = np.asarray(images, dtype=np.float32)
        _check_shape(tuple(images.shape), self.image_shape, "images")
        return self._batched(self._logits_fn, images, labels, batch_size)[:, 0]

    @tf.function(reduce_retracing=True)
    def _logits_fn(self, inputs):
        return self.discriminator(inputs, training=False)

    def _resolve_seed(self, seed) -> int:
        """An int seed; ``None`` draws one from the model's sampling stream."""
        if seed is None:
            return int(ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=self.sample_seed_generator)))
        _check_seed(seed)
        return int(seed)

    def _rejection_sample(
        self,
        n: int,
        labels,
        seed,
        *,
        percentile: float = 95.0,
        bound: float | None = None,
        average: bool = True,
        burn_in: int = 2000,
        max_rounds: int = 100,
    ) -> np.ndarray:
        """Discriminator rejection sampling of ``n`` images (with ``labels``, one per slot, if conditional)."""
        if bound is None and not 0.0 <= float(percentile) <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}.")
        burn_in = _check_count(burn_in, "burn_in")
        max_rounds = _check_count(max_rounds, "max_rounds")
        seed = self._resolve_seed(seed)
        z_rng = np.random.default_rng(seed)  # the stream sample_latents(n, seed) uses
        u_rng = np.random.default_rng((seed, 2))  # the accept/reject draws and the burn-in

        def propose(rng, count, slot_labels):
            z = rng.standard_normal((count, self.latent_dim)).astype(np.float32)
            images = self.generate_from_latents(z, slot_labels, average=average)
            return images, self.discriminator_logits(images, slot_labels)

        if bound is None:
            # The bound comes from a separate burn-in draw, so the first round's z
            # stream is the one generate(n, seed) uses.
            _, probe_logits = propose(u_rng, burn_in, None if labels is None else np.resize(labels, burn_in))
            bound = float(np.percentile(probe_logits, percentile))

        out = np.empty((n, *self.image_shape), np.float32)
        pending = np.arange(n)
        for _ in range(max_rounds):
            # One proposal per open slot, repeated so a round has >= 1,000 proposals:
            # the last few slots do not each need many rounds at a low acceptance rate.
            slots = np.tile(pending, -(-1000 // len(pending)))
            images, logits = propose(z_rng, len(slots), None if labels is None else labels[slots])
            keep = u_rng.random(len(slots)) < rejection_acceptance(logits, bound)
            filled, first = np.unique(slots[keep], return_index=True)  # each slot's first accepted proposal
            out[filled] = images[keep][first]
            pending = np.setdiff1d(pending, filled)
            if not len(pending):
                return out
        raise RuntimeError(
            f"discriminator rejection sampling: {len(pending)} of {n} images still rejected after "
            f"max_rounds={max_rounds} rounds (bound {bound:.2f}); lower `percentile` or `bound`, or raise max_rounds."
        )

    # ---- serialization -------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            "generator_filters": list(self.generator_filters),
            "discriminator_filters": list(self.discriminator_filters),
            "dropout": self.dropout,
            "label_smoothing": self.label_smoothing,
            "ema_decay": self.ema_decay,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DCGAN:
        return cls(**config)


@keras.saving.register_keras_serializable(package="aigc_tf")
class ConditionalGAN(DCGAN):
    """Class-conditional DCGAN: G(z, y) and D(x, y), trained on ``(images, labels)``.

    G embeds the label and concatenates it to z; D gets the label as an extra
    image channel. In a training step the fakes take the labels of the real
    batch, so D judges image *and* label agreement. Same losses, trackers,
    compile, save/load and checks as :class:`DCGAN`.

    Example:
        >>> cgan = ConditionalGAN(num_classes=10)
        >>> cgan.compile()
        >>> ds = load_images("mnist", batch_size=128, value_range=(-1, 1), with_labels=True)
        >>> cgan.fit(ds, epochs=5)                              # doctest: +SKIP
        >>> cgan.generate(np.repeat(np.arange(10), 8), seed=0)  # 8 of each digit
    """

    def __init__(
        self,
        num_classes: int = 10,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (28, 28, 1),
        label_dim: int = 32,
        **kwargs: Any,
    ) -> None:
        """Args:
        num_classes: number of classes, >= 2; labels are ints in [0, num_classes).
        latent_dim, image_shape, **kwargs: as for :class:`DCGAN`.
        label_dim: size of the generator's label embedding.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
        if int(label_dim) < 1:
            raise ValueError(f"label_dim must be >= 1, got {label_dim}.")
        self.num_classes = int(num_classes)
        self.label_dim = int(label_dim)
        super().__init__(latent_dim=latent_dim, image_shape=image_shape, **kwargs)
        self._labels_checked = weakref.WeakSet()  # datasets whose first batch of labels was read

    def _make_generator(self) -> keras.Model:
        return make_generator(
            self.latent_dim, self.image_shape, self.generator_filters, self.num_classes, self.label_dim
        )

    def _make_discriminator(self) -> keras.Model:
        return make_discriminator(self.image_shape, self.discriminator_filters, self.dropout, self.num_classes)

    def _g_inputs(self, z, labels):
        return [z, labels]

    def _d_inputs(self, images, labels):
        return [images, labels]

    def call(self, inputs, training: bool = False):
        """``[z (batch, latent_dim), labels (batch,)]`` -> ``(batch, H, W, C)`` in [-1, 1]."""
        return self.generator(inputs, training=training)

    def _unpack(self, data):
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError("ConditionalGAN trains on (images, labels) batches; got images only.")
        images, labels = data[0], data[1]
        _check_static_shape(images, self.image_shape)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return ops.cast(images, "float32"), labels

    def _check_label_spec(self, spec, name: str) -> None:
        if not isinstance(spec, (tuple, list)) or len(spec) < 2:
            raise ValueError(f"{name}: ConditionalGAN needs a dataset of (images, labels), got {spec}.")
        if not spec[1].dtype.is_integer:
            raise ValueError(f"{name}: labels must be integers, got dtype {spec[1].dtype.name}.")

    def _check_input(self, x, y, name: str) -> None:
        super()._check_input(x, y, name)
        if isinstance(x, tf.data.Dataset):
            check_first_batch(
                x, self._labels_checked, lambda element: _check_labels(np.asarray(element[1]), self.num_classes, name)
            )

    def _guard_dataset(self, x, name: str):
        """A dataset's labels checked batch by batch, in the input pipeline.

        The first batch is checked in Python before training (a ``ValueError``);
        this catches a bad label in a later batch, which would otherwise index
        the label embedding out of range (an opaque error without XLA, and a
        silently clamped lookup with it). The check runs in ``tf.data``, outside
        the compiled step, and raises ``tf.errors.InvalidArgumentError``.
        """
        if not isinstance(x, tf.data.Dataset):
            return x
        num_classes = self.num_classes
        message = f"{name}: labels must lie in [0, {num_classes}) (num_classes); a batch holds one outside it."

        def check(images, labels, *rest):
            checks = [
                tf.debugging.assert_non_negative(labels, message=message),
                tf.debugging.assert_less(labels, tf.cast(num_classes, labels.dtype), message=message),
            ]
            with tf.control_dependencies(checks):
                return (images, tf.identity(labels), *rest)

        return x.map(check)

    def _check_label_array(self, y, n: int, name: str) -> None:
        if y is None:
            raise ValueError(f"{name}: ConditionalGAN needs labels: fit(images, labels, ...).")
        y = np.asarray(y)
        if y.shape[0] != n:
            raise ValueError(f"{name}: {n} images but {y.shape[0]} labels.")
        _check_labels(y, self.num_classes, name)

    def generate(self, labels, seed: int | None = None, *, average: bool = True) -> np.ndarray:
        """One image per requested label (same ``labels`` and ``seed`` -> same images).

        Args:
            labels: ``(N,)`` ints in [0, num_classes), e.g. ``np.repeat(np.arange(10), 8)``.
            seed: int for reproducible samples (``None``: the model's sampling stream).
            average: the averaged generator (default) or, with ``False``, the raw one.

        Returns:
            ``(N, H, W, C)`` float32 array in [-1, 1].
        """
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-D array of class ids, got shape {labels.shape}.")
        _check_labels(labels, self.num_classes, "labels")
        return self.generate_from_latents(self.sample_latents(len(labels), seed), labels, average=average)

    def generate_rejection(self, labels, seed: int | None = None, **kwargs: Any) -> np.ndarray:
        """One image per requested label, by discriminator rejection sampling.

        As :meth:`DCGAN.generate_rejection`; D(x, y) judges each image with its own
        label, and a rejected slot is proposed again with the same label.
        """
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(f"labels must be a non-empty 1-D array of class ids, got shape {labels.shape}.")
        _check_labels(labels, self.num_classes, "labels")
        return self._rejection_sample(len(labels), labels.astype(np.int32), seed, **kwargs)

    def generate_from_latents(self, z, labels=None, *, batch_size: int = 1000, average: bool = True) -> np.ndarray:
        """Like :meth:`DCGAN.generate_from_latents`, with ``(N,)`` labels required."""
        if labels is None:
            raise ValueError("ConditionalGAN.generate_from_latents needs labels.")
        labels = np.asarray(labels)
        _check_labels(labels, self.num_classes, "labels")
        if labels.shape != (len(np.asarray(z)),):
            raise ValueError(f"labels must have shape ({len(np.asarray(z))},), got {labels.shape}.")
        return super().generate_from_latents(z, labels.astype(np.int32), batch_size=batch_size, average=average)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes, "label_dim": self.label_dim}


@keras.saving.register_keras_serializable(package="aigc_tf")
class ClusteredGAN(ConditionalGAN):
    """A conditional GAN on k-means clusters of the training images: no labels needed.

    An unconditional DCGAN maps one continuous z space onto all digits at once;
    in a short run many samples land between the digits or come out malformed.
    A conditional GAN draws far cleaner digits but needs labels. Clustering the
    training images first (k-means on the pixels, :meth:`fit_clusters`) gives
    labels for free: the model is a :class:`ConditionalGAN` on the cluster ids,
    in the spirit of Sage et al. (2018), "Logo synthesis and manipulation with
    clustered generative adversarial networks", and Liu et al. (2020),
    "Diverse image generation via self-conditioned GANs".

    The model is still unconditional: it samples the mixture

        p(x) = sum_k pi_k p_G(x | k),   pi_k = share of training images in cluster k,

    so :meth:`generate` takes a number of images, like :meth:`DCGAN.generate`.
    During training each real image is assigned to its nearest centroid inside
    the step (``fit`` takes images only), and the fakes take the cluster ids of
    the real batch, as in :class:`ConditionalGAN`.

    Example:
        >>> gan = ClusteredGAN(num_clusters=50)
        >>> ds = load_images("mnist", batch_size=64, value_range=(-1, 1))
        >>> gan.fit_clusters(ds)                       # doctest: +SKIP
        >>> gan.compile()
        >>> gan.fit(ds, epochs=5)                      # doctest: +SKIP
        >>> images = gan.generate(64, seed=0)          # (64, 28, 28, 1) in [-1, 1]
    """

    def __init__(
        self, num_clusters: int = 50, latent_dim: int = 128, image_shape: Sequence[int] = (28, 28, 1), **kwargs: Any
    ) -> None:
        """Args:
        num_clusters: k of k-means, >= 2. More clusters are purer (each holds
            fewer kinds of digit) but hold fewer images each.
        latent_dim, image_shape, **kwargs: as for :class:`ConditionalGAN`
            (``label_dim`` sizes the generator's cluster embedding).
        """
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) or num_clusters < 2:
            raise ValueError(f"num_clusters must be an int >= 2, got {num_clusters!r}.")
        super().__init__(num_classes=int(num_clusters), latent_dim=latent_dim, image_shape=image_shape, **kwargs)
        pixels = int(np.prod(self.image_shape))
        # Model weights, so they are saved, loaded and mirrored with the networks.
        self.centroids = self.add_weight(
            shape=(self.num_classes, pixels), initializer="zeros", trainable=False, name="centroids"
        )
        self.cluster_weights = self.add_weight(
            shape=(self.num_classes,), initializer="zeros", trainable=False, name="cluster_weights"
        )

    @property
    def num_clusters(self) -> int:
        return self.num_classes

    # ---- clustering --------------------------------------------------------------

    def fit_clusters(self, images, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
        """k-means on the pixels of the training images (``scipy.cluster.vq.kmeans2``, k-means++ start).

        Sets ``centroids`` and the mixture weights ``cluster_weights`` (pi_k, the
        share of images in each cluster).

        Args:
            images: ``(N, H, W, C)`` array in the training range ([-1, 1]), or a
                ``tf.data.Dataset`` of such batches (or of ``(images, labels)``;
                labels are not used). N >= ``num_clusters``.
            iterations: k-means iterations.
            seed: seed of the k-means++ start.

        Returns:
            ``(N,)`` int32 cluster id of each image (its nearest centroid).
        """
        from scipy.cluster.vq import kmeans2, vq

        x = _materialise_images(images, self.image_shape, "images")
        if len(x) < self.num_clusters:
            raise ValueError(f"images: k-means needs at least num_clusters={self.num_clusters} images, got {len(x)}.")
        if int(iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}.")
        flat = x.reshape(len(x), -1).astype(np.float64)
        centroids, _ = kmeans2(flat, self.num_clusters, iter=int(iterations), seed=int(seed), minit="++")
        ids, _ = vq(flat, centroids)  # the final assignment, to the final centroids
        self.centroids.assign(centroids.astype(np.float32))
        self.cluster_weights.assign((np.bincount(ids, minlength=self.num_clusters) / len(ids)).astype(np.float32))
        return ids.astype(np.int32)

    def nearest_cluster(self, images):
        """Id of the nearest centroid (squared Euclidean distance) for each image.

        Args:
            images: ``(batch, H, W, C)`` tensor or array, training range.

        Returns:
            ``(batch,)`` int32 tensor.
        """
        flat = ops.reshape(ops.cast(images, "float32"), (ops.shape(images)[0], -1))
        c = ops.convert_to_tensor(self.centroids)
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every c.
        distances = ops.sum(ops.square(c), axis=1)[None, :] - 2.0 * ops.matmul(flat, ops.transpose(c))
        return ops.cast(ops.argmin(distances, axis=1), "int32")

    def cluster_purity(self, images, labels=None) -> float:
        """Share of images whose cluster's most common label is their own label.

        The labels serve only this measurement (1.0: every cluster holds a single
        class); the model never trains on them.

        Args:
            images: ``(N, H, W, C)`` array (training range) with ``labels``, or a
                ``tf.data.Dataset`` of ``(images, labels)`` batches.
            labels: ``(N,)`` int class of each image (with an array).

        Returns:
            The purity, in [0, 1].
        """
        if isinstance(images, tf.data.Dataset):
            pairs = [(np.asarray(self.nearest_cluster(x)), np.asarray(y)) for x, y in images.as_numpy_iterator()]
            ids, labels = (np.concatenate(p) for p in zip(*pairs))
        else:
            ids, labels = np.asarray(self.nearest_cluster(images)), np.asarray(labels)
        return float(sum(np.bincount(labels[ids == k]).max() for k in np.unique(ids)) / len(ids))

    def _check_fitted(self) -> None:
        if not np.any(np.asarray(self.cluster_weights) > 0):
            raise RuntimeError("call ClusteredGAN.fit_clusters(images) before fit() or generate().")

    # ---- training: images only, cluster ids from the centroids --------------------

    def _unpack(self, data):
        images = images_of(data)
        _check_static_shape(images, self.image_shape)
        images = ops.cast(images, "float32")
        return images, self.nearest_cluster(images)

    def fit(self, x=None, y=None, *args, **kwargs):
        """``keras.Model.fit`` on images (labels, if any, are ignored) after ``fit_clusters``."""
        self._check_fitted()
        return super().fit(x, y, *args, **kwargs)

    def _check_input(self, x, y, name: str) -> None:
        DCGAN._check_input(self, x, y, name)  # images only, as for DCGAN

    def _check_label_spec(self, spec, name: str) -> None:
        pass

    def _check_label_array(self, y, n: int, name: str) -> None:
        pass

    def _guard_dataset(self, x, name: str):
        return x  # labels, if any, are ignored: the clusters are computed in the step

    # ---- generation ------------------------------------------------------------------

    def sample_clusters(self, num_images: int, seed: int | None = None) -> np.ndarray:
        """Cluster ids k ~ pi (the training shares), as an int32 ``(num_images,)`` array.

        An int ``seed`` uses NumPy's ``default_rng((seed, 1))`` (a stream apart from
        the one :meth:`sample_latents` uses for z); ``None`` draws from the model's
        sampling stream.
        """
        num_images = _check_count(num_images, "num_images")
        self._check_fitted()
        weights = np.asarray(self.cluster_weights, np.float64)
        if seed is None:
            logits = ops.log(ops.convert_to_tensor(weights[None, :], "float32"))
            ids = keras.random.categorical(logits, num_images, seed=self.sample_seed_generator)
            return ops.convert_to_numpy(ids)[0].astype(np.int32)
        _check_seed(seed)
        rng = np.random.default_rng((int(seed), 1))
        return rng.choice(self.num_clusters, size=num_images, p=weights / weights.sum()).astype(np.int32)

    def generate(self, num_images: int, seed: int | None = None, *, average: bool = True) -> np.ndarray:
        """Sample ``num_images`` images from the mixture: k ~ pi, z ~ N(0, I), x = G(z, k).

        Args:
            num_images: >= 1.
            seed: int for reproducible samples (``None``: the model's sampling stream).
            average: the averaged generator (default) or, with ``False``, the raw one.

        Returns:
            ``(num_images, H, W, C)`` float32 array in [-1, 1].
        """
        clusters = self.sample_clusters(num_images, seed)
        return self.generate_clusters(clusters, seed, average=average)

    def generate_clusters(self, clusters, seed: int | None = None, *, average: bool = True) -> np.ndarray:
        """One image per requested cluster id (``ConditionalGAN.generate`` on cluster ids)."""
        self._check_fitted()
        return ConditionalGAN.generate(self, clusters, seed, average=average)

    def generate_rejection(self, num_images: int, seed: int | None = None, **kwargs: Any) -> np.ndarray:
        """Mixture samples by discriminator rejection sampling: k ~ pi per slot, then as
        :meth:`ConditionalGAN.generate_rejection` on those cluster ids."""
        seed = self._resolve_seed(seed)
        return ConditionalGAN.generate_rejection(self, self.sample_clusters(num_images, seed), seed, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["num_clusters"] = config.pop("num_classes")
        return config


# --------------------------------------------------------------------------- #
# Helpers.
# --------------------------------------------------------------------------- #


def _dense(grads):
    """Embedding gradients come as IndexedSlices whose row count depends on the
    labels in the batch; MirroredStrategy's all-reduce needs equal shapes on every
    replica, so densify them (the tables are tiny)."""
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def _loss_scaled(optimizer):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def _check_filters(filters, name: str) -> tuple[int, ...]:
    filters = tuple(int(f) for f in filters)
    if not filters or min(filters) <= 0:
        raise ValueError(f"{name} must be non-empty positive ints, got {filters}.")
    return filters


def _check_shape(shape: tuple, image_shape: tuple[int, int, int], name: str) -> None:
    if len(shape) < 3 or tuple(shape[-3:]) != tuple(image_shape):
        raise ValueError(
            f"{name}: images must have shape (batch, {', '.join(map(str, image_shape))}) "
            f"(image_shape={tuple(image_shape)}; channel count {image_shape[-1]}), got {shape}."
        )


def _check_static_shape(images, image_shape) -> None:
    """Trace-time check: a wrong static shape fails at once with a clear message."""
    shape = tuple(images.shape)
    if len(shape) != 4 or any(s is not None and s != t for s, t in zip(shape[1:], image_shape)):
        raise ValueError(
            f"images must have shape (batch, {', '.join(map(str, image_shape))}) "
            f"(image_shape={tuple(image_shape)}; channel count {image_shape[-1]}), got {shape}."
        )


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"{name}: labels must be integer class ids, got dtype {labels.dtype}.")
    lo, hi = labels.min(), labels.max()
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}), got values in [{lo}, {hi}].")


def _materialise_images(images, image_shape, name: str) -> np.ndarray:
    """An array of images from an array or a ``tf.data.Dataset`` of batches (labels dropped)."""
    if isinstance(images, tf.data.Dataset):
        batches = [np.asarray(images_of(b)) for b in images.as_numpy_iterator()]
        if not batches:
            raise ValueError(f"{name}: the dataset is empty.")
        images = np.concatenate(batches)
    x = np.asarray(images, dtype=np.float32)
    _check_shape(tuple(x.shape), image_shape, name)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected a batch (N, {', '.join(map(str, image_shape))}), got {x.shape}.")
    return x


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")


def _check_count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 1, got {n!r}.")
    if n <= 0:
        raise ValueError(f"{name} must be >= 1, got {n}.")
    return int(n)


__all__ = [
    "ClusteredGAN",
    "ConditionalGAN",
    "DCGAN",
    "bce_from_logits",
    "discriminator_loss",
    "generator_loss",
    "make_discriminator",
    "make_generator",
    "minimax_generator_loss",
    "rejection_acceptance",
]
