"""The VAE model: training on the exact ELBO, the bounds in nats, encode/decode/generate."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.data_checks import CheckedFit, checked_pixels
from aigc_tf.images import (
    Images,
    as_images,
    batch_rows,
    check_image_batch,
    check_image_dataset,
    checked_images,
    images_of,
)
from aigc_tf.streams import SavedRandomState, from_config_under_policy
from aigc_tf.vae.elbo import bernoulli_log_likelihood, gaussian_log_density, kl_divergence, log_mean_exp
from aigc_tf.vae.networks import Sampling, make_decoder, make_encoder
from aigc_tf.validation import check_finite, check_float, check_image_shape, check_int, check_int_tuple, check_seed

__all__ = ["VAE"]


@keras.saving.register_keras_serializable(package="aigc_tf")
class VAE(SavedRandomState, CheckedFit, keras.Model):
    """Convolutional VAE with a Bernoulli decoder, trained on the exact ELBO.

    Example:
        >>> vae = VAE(latent_dim=16)
        >>> vae.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> vae.fit(binarize(train_images).batch(128), epochs=10)  # doctest: +SKIP
        >>> vae.log_likelihood(x_test, num_samples=1000).mean()     # doctest: +SKIP

    ``fit`` accepts images in [0, 1] (``value_range``) or ``(images, labels)``
    (labels are ignored); history keys are ``loss`` (= ``reconstruction_loss +
    beta * kl_loss``), ``reconstruction_loss`` and ``kl_loss``, all per-image means
    in nats. ``fit`` checks the image shape when it traces the step and the pixel
    range at every step (except under XLA, which drops graph assertions);
    :meth:`check_dataset` reads a dataset's first batch before training.

    The default size (convs 16-32, Dense 256, about 0.8M parameters) was chosen
    for quality per CPU-second; the measurements, and the faster CPU compile
    (``jit_compile=True, steps_per_execution=20``), are in ``benchmarks/RESULTS.md``.

    Random streams: ``noise_seed_generator`` (seed ``s``, owned by the ``Sampling``
    layer) draws the training noise (and that of ``evaluate()``);
    ``sample_seed_generator`` (``s + 1``) serves :meth:`generate`, :meth:`elbo` and
    :meth:`log_likelihood` with ``seed=None``, so they do not shift the training noise.

    Args:
        latent_dim: size of z, >= 1.
        image_shape: ``(H, W, C)``; H and W divisible by ``2 ** len(filters)``.
        beta: weight of the KL term (1: the ELBO; beta-VAE otherwise), >= 0.
        filters: channels of the encoder's stride-2 convolutions.
        dense_units: hidden Dense width on each side (0: none).
        seed: seed of the model's noise generators (``None``: from the global
            seed, see ``keras.utils.set_random_seed``).
        **kwargs: passed to ``keras.Model`` (e.g. ``name``).
    """

    #: The pixel range of the images the model reads and returns (Bernoulli probabilities).
    value_range: tuple[float, float] = (0.0, 1.0)

    # ---- training data, checked batch by batch (see aigc_tf.data_checks) -------------

    def checked_batches(self, dataset, name):
        return checked_pixels(dataset, self.value_range, name)

    def check_arrays(self, x, y):
        check_image_batch("x", images_of(x), self.image_shape, self.value_range)

    def __init__(
        self,
        latent_dim: int = 16,
        image_shape: Sequence[int] = (28, 28, 1),
        beta: float = 1.0,
        filters: Sequence[int] = (16, 32),
        dense_units: int = 256,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        image_shape = check_image_shape(image_shape)
        latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        beta = check_float("beta", beta, low=0.0)
        filters = check_int_tuple("filters", filters)
        dense_units = check_int("dense_units", dense_units, minimum=0)
        seed = check_seed(seed)
        scale = 2 ** len(filters)
        if image_shape[0] % scale or image_shape[1] % scale:
            raise ValueError(
                f"image_shape={image_shape}: height and width must be divisible by "
                f"{scale} (one halving per entry of filters={filters})."
            )

        self.latent_dim = latent_dim
        self.image_shape = image_shape
        self.beta = beta
        self.filters = filters
        self.dense_units = dense_units
        self.seed = seed

        self.encoder = make_encoder(image_shape, self.latent_dim, filters, self.dense_units)
        # float32 under mixed_float16 too: exp(log_var / 2) * eps stays precise.
        self.sampling = Sampling(seed=seed, dtype="float32", name="sampling")
        self.decoder = make_decoder(image_shape, self.latent_dim, filters, self.dense_units)
        # A second stream for generation and the bounds, so that calling
        # elbo()/generate() does not shift the training noise.
        self.sample_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self._checked_datasets = weakref.WeakSet()  # datasets whose first batch passed check_dataset
        self.build((None, *image_shape))

    @property
    def noise_seed_generator(self) -> keras.random.SeedGenerator:
        """The training noise stream (the ``Sampling`` layer's)."""
        return self.sampling.seed_generator

    def build(self, input_shape) -> None:
        # Encoder and decoder are functional models, built on creation.
        self.sampling.build([(None, self.latent_dim)] * 2)
        self.built = True

    # ---- forward pass and the loss ------------------------------------------

    def call(self, x, training: bool = False):
        """Encode, sample z, decode.

        Args:
            x: ``(batch, H, W, C)`` images in [0, 1].
            training: passed to the encoder and decoder.

        Returns:
            ``(batch, H, W, C)`` Bernoulli logits of p(x | z), z ~ q(z | x).
        """
        z_mean, z_log_var = self.encoder(x, training=training)
        z = self.sampling((z_mean, z_log_var))
        return self.decoder(z, training=training)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """``keras.Model.compile``, then the optimizer's variables are built.

        They exist before the first step is traced, so a fit that fails on bad
        input leaves nothing half-made for the next one (a step traced later must
        not create variables), and on load they exist before the saved values are read.
        """
        super().compile(*args, **kwargs)
        self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(**keras.saving.deserialize_keras_object(config))

    def per_example_losses(self, x, training: bool = False):
        """The negative ELBO, term by term, for each image (one z sample).

        Args:
            x: ``(batch, H, W, C)`` images in [0, 1].
            training: passed to the encoder and decoder.

        Returns:
            ``(reconstruction, kl)``, each ``(batch,)`` float32 in nats:
            ``-log p(x | z)`` summed over pixels and channels, and the closed-form KL.
        """
        return self._elbo_terms(x, training, batch_rows(x))

    def _elbo_terms(self, x, training: bool, rows):
        """:meth:`per_example_losses` with ``rows = batch_rows(x)`` given (one gather per step)."""
        z_mean, z_log_var = self.encoder(x, training=training)
        global_batch, offset = rows
        z = self.sampling((z_mean, z_log_var), offset=offset, global_batch=global_batch)
        logits = self.decoder(z, training=training)
        reconstruction = -bernoulli_log_likelihood(x, logits)
        kl = kl_divergence(ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32"))
        return reconstruction, kl

    def _update_trackers(self, reconstruction, kl, loss):
        # Per-example vectors, unscaled: a Mean tracker adds their sum and count,
        # and metric variables are summed over replicas, so the reported value is
        # the exact mean over all images seen (also under MirroredStrategy and
        # with a short last batch).
        self.loss_tracker.update_state(loss)
        self.reconstruction_loss_tracker.update_state(reconstruction)
        self.kl_loss_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x = self._checked_images(data)
        # Every op of the step waits for the pixel check: a bad batch changes nothing.
        with tf.control_dependencies([x]):
            rows = batch_rows(x)
            with tf.GradientTape() as tape:
                reconstruction, kl = self._elbo_terms(x, True, rows)
                loss = reconstruction + self.beta * kl
                # Average over the GLOBAL batch: replica gradients are summed across
                # devices, so each replica divides by the global batch size. A plain
                # mean would take num_replicas times too large a step.
                scaled = ops.sum(loss) / ops.cast(rows[0], loss.dtype)
                # Identity in float32; multiplies by the loss scale under mixed_float16.
                scaled = self.optimizer.scale_loss(scaled)
            grads = tape.gradient(scaled, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            return self._update_trackers(reconstruction, kl, loss)

    def test_step(self, data):
        x = self._checked_images(data)
        reconstruction, kl = self.per_example_losses(x, training=False)
        return self._update_trackers(reconstruction, kl, reconstruction + self.beta * kl)

    def _checked_images(self, data):
        """The images of a batch: shape checked when traced, pixels in [0, 1] checked in the graph."""
        x = checked_images(images_of(data), self.image_shape)
        message = (
            "images: pixel values must lie in [0, 1] for the Bernoulli likelihood "
            "(divide 0..255 images by 255, or load them with value_range=(0, 1))."
        )
        checks = [
            tf.debugging.assert_greater_equal(x, tf.cast(0, x.dtype), message=message),
            tf.debugging.assert_less_equal(x, tf.cast(1, x.dtype), message=message),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(x)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listing the trackers makes Keras reset them every epoch and report them.
        return [self.loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def check_dataset(self, dataset: tf.data.Dataset, name: str = "dataset") -> tf.data.Dataset:
        """Check a training dataset before ``fit``: its element shapes, and its first batch's pixels in [0, 1].

        The first batch is read once per dataset object.

        Returns:
            ``dataset``, to train on.

        Raises:
            TypeError: if ``dataset`` is not a ``tf.data.Dataset``.
            ValueError: for a wrong image shape or pixels outside [0, 1].
        """
        check_image_dataset(name, dataset, self.image_shape, self.value_range, self._checked_datasets)
        return dataset

    # ---- evaluation in nats ----------------------------------------------------

    def elbo(self, x, *, num_samples: int = 1, batch_size: int = 500, seed: int | None = None) -> np.ndarray:
        """Per-example ELBO in nats (a lower bound on log p(x), so negative).

        ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), the expectation estimated
        with ``num_samples`` draws of z, the KL in closed form. Uses the ``beta=1``
        bound whatever ``beta`` the model was trained with.

        Args:
            x: ``(N, H, W, C)`` array/tensor in [0, 1], or a ``tf.data.Dataset``
                of such batches (or of ``(images, labels)``).
            num_samples: z samples per image, >= 1.
            batch_size: images per forward pass (arrays only).
            seed: seed for reproducible noise (``None``: the model's generator).

        Returns:
            ``(N,)`` float64 array.
        """
        num_samples = check_int("num_samples", num_samples, minimum=1)
        generator = self._eval_generator(seed)
        out = []
        for xb in self._batches(x, batch_size):
            z_mean, z_log_var = self._encode_batch(xb)
            total = 0.0
            for _ in range(num_samples):
                eps = keras.random.normal(ops.shape(z_mean), seed=generator)
                total += self._elbo_fn(xb, z_mean, z_log_var, eps).numpy().astype(np.float64)
            out.append(total / num_samples)
        return np.concatenate(out)

    def log_likelihood(
        self,
        x,
        num_samples: int = 1000,
        *,
        batch_size: int = 100,
        chunk_size: int = 50,
        seed: int | None = None,
    ) -> np.ndarray:
        """Importance-weighted estimate of log p(x) per example (IWAE bound), nats.

        log p(x) >= log (1/k) sum_i w_i,  w_i = p(x|z_i) p(z_i) / q(z_i|x),
        z_i ~ q(z|x). The bound tightens as k grows; log-mean-exp is taken by
        :func:`log_mean_exp` (the w_i are around e^-100, which underflows float32).
        The k samples are decoded in chunks of ``chunk_size``, so the decoder sees
        ``chunk_size x batch_size`` images per call.

        Args:
            x: ``(N, H, W, C)`` array/tensor in [0, 1] or a ``tf.data.Dataset``.
            num_samples: k >= 1. Larger k gives a higher (tighter) bound at k
                decoder passes per image; the IWAE paper reports k = 5000, so
                quote k next to the number.
            batch_size: images per forward pass (arrays only).
            chunk_size: samples of z decoded per call.
            seed: seed for reproducible noise (``None``: the model's generator).

        Returns:
            ``(N,)`` float64 array.
        """
        num_samples = check_int("num_samples", num_samples, minimum=1)
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
        generator = self._eval_generator(seed)
        out = []
        for xb in self._batches(x, batch_size):
            z_mean, z_log_var = self._encode_batch(xb)
            log_w = []
            for start in range(0, num_samples, chunk_size):
                k = min(chunk_size, num_samples - start)
                eps = keras.random.normal((k, *ops.shape(z_mean)), seed=generator)
                log_w.append(self._log_weights_fn(xb, z_mean, z_log_var, eps).numpy())
            out.append(log_mean_exp(np.concatenate(log_w, axis=0), axis=0))  # (k, batch) -> (batch,)
        return np.concatenate(out)

    @tf.function(reduce_retracing=True)
    def _encode_batch(self, x):
        z_mean, z_log_var = self.encoder(x, training=False)
        return ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32")

    @tf.function(reduce_retracing=True)
    def _elbo_fn(self, x, z_mean, z_log_var, eps):
        z = z_mean + ops.exp(0.5 * z_log_var) * eps
        logits = self.decoder(z, training=False)
        return bernoulli_log_likelihood(x, logits) - kl_divergence(z_mean, z_log_var)

    @tf.function(reduce_retracing=True)
    def _log_weights_fn(self, x, z_mean, z_log_var, eps):
        """log w for eps of shape (k, batch, latent): log p(x|z) + log p(z) - log q(z|x)."""
        k, batch = ops.shape(eps)[0], ops.shape(eps)[1]
        z = z_mean[None] + ops.exp(0.5 * z_log_var)[None] * eps  # (k, batch, latent)
        logits = self.decoder(ops.reshape(z, (-1, self.latent_dim)), training=False)
        logits = ops.reshape(logits, (k, batch, *self.image_shape))
        log_px_z = bernoulli_log_likelihood(x[None], logits)  # (k, batch)
        log_pz = gaussian_log_density(z, 0.0, 0.0)
        log_qz_x = gaussian_log_density(z, z_mean[None], z_log_var[None])
        return log_px_z + log_pz - log_qz_x

    # ---- encode / decode / generate -------------------------------------------

    def encode(self, x, *, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """Parameters of q(z | x).

        Args:
            x: ``(N, H, W, C)`` in [0, 1] (array, tensor or dataset).
            batch_size: images per forward pass (arrays only).

        Returns:
            ``(z_mean, z_log_var)``, each ``(N, latent_dim)`` float32 arrays.
        """
        parts = [self._encode_batch(xb) for xb in self._batches(x, batch_size)]
        return (
            np.concatenate([m.numpy() for m, _ in parts]),
            np.concatenate([v.numpy() for _, v in parts]),
        )

    def decode(self, z) -> Images:
        """Pixel probabilities sigmoid(decoder(z)).

        Args:
            z: ``(N, latent_dim)`` latent codes.

        Returns:
            ``(N, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in [0, 1].
        """
        z = check_finite("z", z).astype(np.float32)  # NaN codes would decode to grey images
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}) (latent_dim), got {z.shape}.")
        logits = self.decoder.predict_on_batch(z) if len(z) else np.zeros((0, *self.image_shape))
        return as_images(ops.convert_to_numpy(ops.sigmoid(ops.cast(logits, "float32"))), self.value_range)

    def reconstruct(self, x, *, batch_size: int = 500) -> Images:
        """Decode the posterior mean: sigmoid(decoder(mu(x))), pixel probabilities.

        Args:
            x: ``(N, H, W, C)`` in [0, 1].
            batch_size: images per forward pass (arrays only).

        Returns:
            ``(N, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in [0, 1].
        """
        z_mean, _ = self.encode(x, batch_size=batch_size)
        return self.decode(z_mean)

    def generate(self, num_images: int, seed: int | None = None, *, labels=None) -> Images:
        """Sample z ~ N(0, I) and return the decoder's pixel probabilities.

        Args:
            num_images: number of images, >= 1.
            seed: seed for reproducible samples (``None``: the model's sampling stream).
            labels: must be ``None``: the VAE is unconditional (the argument is there so
                every image model has the same ``generate`` signature).

        Returns:
            ``(num_images, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in [0, 1].
        """
        num_images = check_int("num_images", num_images, minimum=1)
        if labels is not None:
            raise ValueError(f"labels: the VAE is unconditional, labels must be None, got {np.asarray(labels).shape}.")
        z = keras.random.normal((num_images, self.latent_dim), seed=self._eval_generator(seed))
        return self.decode(ops.convert_to_numpy(z))

    def _eval_generator(self, seed: int | None) -> keras.random.SeedGenerator:
        if check_seed(seed) is None:
            return self.sample_seed_generator
        return keras.random.SeedGenerator(seed)

    def _batches(self, x, batch_size: int):
        """Yield float32 image batches from an array/tensor or a dataset, checked."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if isinstance(x, tf.data.Dataset):
            self.check_dataset(x, "x")
            for element in x:
                xb = np.asarray(images_of(element))
                xb = xb[None] if xb.ndim == 3 else xb  # an unbatched dataset
                yield tf.convert_to_tensor(check_image_batch("x", xb, self.image_shape, self.value_range))
            return
        x = check_image_batch("x", x, self.image_shape, self.value_range)
        for start in range(0, len(x), batch_size):
            yield tf.convert_to_tensor(x[start : start + batch_size])

    # ---- serialization -----------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "image_shape": list(self.image_shape),
            "beta": self.beta,
            "filters": list(self.filters),
            "dense_units": self.dense_units,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        return from_config_under_policy(cls, config)
