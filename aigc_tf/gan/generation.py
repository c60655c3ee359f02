"""Sampling from a trained GAN: plain, from given latents, and with rejection by D.

:class:`GenerationMixin` is the sampling half of :class:`~aigc_tf.gan.GAN`
(the training half is in :mod:`aigc_tf.gan.dcgan`). Every method takes the
same ``(num_images, seed=None, *, labels=None, ...)`` arguments in every GAN;
the labels given are checked once, and when none are given they come from the
model's :meth:`~aigc_tf.gan.GAN.sample_labels`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.gan.rejection import rejection_sample
from aigc_tf.images import Images, as_images, check_image_batch
from aigc_tf.validation import check_int, check_labels, check_seed

__all__ = ["GenerationMixin"]


class GenerationMixin:
    """Sampling methods of a GAN (mixed into :class:`~aigc_tf.gan.GAN`).

    They read the model's ``generator``, ``discriminator``, ``generator_average``
    (or ``None``), ``latent_dim``, ``image_shape``, ``num_classes`` (0:
    unconditional), ``value_range``, ``sample_seed_generator`` and its
    ``sample_labels(num_images, seed)``.
    """

    def sample_latents(self, num_images: int, seed: int | None = None) -> np.ndarray:
        """z ~ N(0, I) as a float32 ``(num_images, latent_dim)`` array.

        With an int ``seed`` the draw uses NumPy's ``default_rng(seed)``: the same on
        every machine, with or without XLA. ``seed=None`` draws from the model's
        sampling stream (different at each call).
        """
        num_images = check_int("num_images", num_images, minimum=1)
        if check_seed(seed) is None:
            z = keras.random.normal((num_images, self.latent_dim), seed=self.sample_seed_generator)
            return ops.convert_to_numpy(z).astype(np.float32)
        return np.random.default_rng(seed).standard_normal((num_images, self.latent_dim)).astype(np.float32)

    def generate(self, num_images: int, seed: int | None = None, *, labels=None, average: bool = True) -> Images:
        """Sample ``num_images`` images (same ``seed`` -> same images).

        Args:
            num_images: >= 1.
            seed: int for reproducible samples (``None``: the model's sampling stream).
            labels: class ids, ``(num_images,)`` ints or one int for all; required by
                a :class:`~aigc_tf.gan.ConditionalGAN`, drawn by cluster share when
                omitted for a :class:`~aigc_tf.gan.ClusteredGAN`, rejected by a DCGAN.
            average: sample from the averaged generator (default, when
                ``ema_decay > 0``) or, with ``False``, from the raw one.

        Returns:
            ``(num_images, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in [-1, 1].
        """
        num_images = check_int("num_images", num_images, minimum=1)
        labels = self._generation_labels(labels, num_images, check_seed(seed))
        return as_images(self._generate(self.sample_latents(num_images, seed), labels, average), self.value_range)

    def generate_from_latents(self, z, labels=None, *, batch_size: int = 1000, average: bool = True) -> Images:
        """Run the generator in inference mode on given latents (e.g. an interpolation path).

        Args:
            z: ``(N, latent_dim)`` latents.
            labels: ``(N,)`` class ids (or one int), for a conditional model only.
            batch_size: images per forward pass.
            average: use the averaged weights (when ``ema_decay > 0``); ``False``
                runs the raw generator, the one being trained.

        Returns:
            ``(N, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in [-1, 1].
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim or len(z) == 0:
            raise ValueError(f"z must have shape (N >= 1, {self.latent_dim}) (latent_dim), got {z.shape}.")
        if labels is None and self.num_classes:
            raise ValueError(f"labels: {type(self).__name__}.generate_from_latents needs one class id per latent.")
        labels = self._given_labels(labels, len(z))
        batch_size = check_int("batch_size", batch_size, minimum=1)
        return as_images(self._generate(z, labels, average, batch_size), self.value_range)

    def generate_rejection(
        self,
        num_images: int,
        seed: int | None = None,
        *,
        labels=None,
        percentile: float = 95.0,
        bound: float | None = None,
        average: bool = True,
        burn_in: int = 2000,
        max_rounds: int = 100,
        strict: bool = False,
        stats: dict | None = None,
    ) -> Images:
        """Sample ``num_images`` images, keeping those D finds realistic (discriminator rejection sampling).

        Each proposal x = G(z) is kept with probability
        :func:`~aigc_tf.gan.rejection_acceptance` ``(D(x), bound)``; a rejected slot
        gets a fresh z (and keeps its label) until it is filled. If D were optimal,
        the kept images would follow p_data instead of p_g. D judges the images of
        the averaged generator here, while it was trained against the raw one: a
        close but not exact match, so this is a correction, not a cure.

        Args:
            num_images, seed, labels, average: as for :meth:`generate`. Proposals that
                are all accepted give exactly ``generate(num_images, seed, labels=...)``.
            percentile: the bound is this percentile of D's logits on ``burn_in``
                proposals (100: the largest, as in the paper).
            bound: a fixed log bound instead.
            burn_in: proposals scored to set the bound (with labels, shared among them:
                each class gets its own bound).
            max_rounds: rounds of at least 1,000 proposals; then the slots still open
                keep their best-scoring proposal, with a ``RuntimeWarning``.
            strict: raise a ``RuntimeError`` after ``max_rounds`` instead.
            stats: a dict to fill with the acceptance rate and the rest (see
                :func:`~aigc_tf.gan.rejection.rejection_sample`).

        Returns:
            ``(num_images, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in [-1, 1].
        """
        num_images = check_int("num_images", num_images, minimum=1)
        seed = self._resolve_seed(seed)
        labels = self._generation_labels(labels, num_images, seed)

        def propose(rng, count, slot_labels):
            return self._generate(
                rng.standard_normal((count, self.latent_dim)).astype(np.float32), slot_labels, average
            )

        options = dict(
            percentile=percentile, bound=bound, burn_in=burn_in, max_rounds=max_rounds, strict=strict, stats=stats
        )
        images = rejection_sample(propose, self._logits, num_images, seed=seed, labels=labels, **options)
        return as_images(images, self.value_range)

    def discriminator_logits(self, images, labels=None, *, batch_size: int = 1000) -> np.ndarray:
        """D's logits ``(N,)`` for images in [-1, 1] (inference mode): log p_data / p_g at D's optimum."""
        images = check_image_batch("images", images, self.image_shape)
        if labels is None and self.num_classes:
            raise ValueError(f"labels: {type(self).__name__}.discriminator_logits needs one class id per image.")
        labels = self._given_labels(labels, len(images))
        return self._logits(images, labels, check_int("batch_size", batch_size, minimum=1))

    def _generation_labels(self, labels, num_images: int, seed: int | None):
        """The given labels, checked, or :meth:`sample_labels`' when there are none."""
        return self.sample_labels(num_images, seed) if labels is None else self._given_labels(labels, num_images)

    def _given_labels(self, labels, num_images: int) -> np.ndarray | None:
        if labels is None:
            return None
        if not self.num_classes:
            raise ValueError(
                f"labels: {type(self).__name__} is unconditional, labels must be None "
                f"(see ConditionalGAN), got {np.asarray(labels).shape} labels."
            )
        return check_labels("labels", labels, self.num_classes, size=num_images)

    def _resolve_seed(self, seed) -> int:
        """An int seed; ``None`` draws one from the model's sampling stream."""
        if check_seed(seed) is None:
            return int(ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=self.sample_seed_generator)))
        return int(seed)

    def _generate(self, z: np.ndarray, labels, average: bool, batch_size: int = 1000) -> np.ndarray:
        return self._batched(lambda inputs: self._generate_fn(inputs, average), z, labels, batch_size)

    def _logits(self, images: np.ndarray, labels, batch_size: int = 1000) -> np.ndarray:
        return self._batched(self._logits_fn, images, labels, batch_size)[:, 0]

    def _batched(self, fn, x: np.ndarray, labels, batch_size: int) -> np.ndarray:
        """``fn`` on ``x`` (with ``labels``, if any) in batches, as one float32 array."""
        out = []
        for start in range(0, len(x), batch_size):
            xb = tf.convert_to_tensor(x[start : start + batch_size])
            if labels is None:
                out.append(fn(xb))
            else:
                out.append(fn([xb, tf.convert_to_tensor(labels[start : start + batch_size], tf.int32)]))
        return np.concatenate([ops.convert_to_numpy(ops.cast(o, "float32")) for o in out])

    @tf.function(reduce_retracing=True)
    def _generate_fn(self, inputs, average: bool):
        if average and self.generator_average is not None:
            return self.generator_average.stateless_call(inputs, training=False)
        return self.generator(inputs, training=False)

    @tf.function(reduce_retracing=True)
    def _logits_fn(self, inputs):
        return self.discriminator(inputs, training=False)
