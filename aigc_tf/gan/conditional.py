"""GANs conditioned on labels: from the data (:class:`ConditionalGAN`, Mirza &
Osindero, 2014) or from k-means clusters of the images (:class:`ClusteredGAN`).

Both are a :class:`~aigc_tf.gan.GAN` with conditional networks: G embeds the
label and concatenates it to z, D gets it as an extra image channel. In a
training step the fakes take the labels of the real batch, so D judges image
*and* label agreement. The two classes differ only in where the labels come
from (:meth:`~aigc_tf.gan.GAN.labels_for`, :meth:`~aigc_tf.gan.GAN.sample_labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.data_checks import batch_labels, check_label_spec, checked_labels
from aigc_tf.gan.clusters import cluster_purity, kmeans, nearest_centroid
from aigc_tf.gan.dcgan import GAN, GANConfig
from aigc_tf.images import check_image_dataset, images_of, materialise_images
from aigc_tf.validation import check_int, check_labels, check_seed

__all__ = ["ClusteredGAN", "ConditionalGAN"]


@keras.saving.register_keras_serializable(package="aigc_tf")
class ConditionalGAN(GAN):
    """Class-conditional DCGAN: G(z, y) and D(x, y), trained on ``(images, labels)``.

    Same losses, trackers, compile, save/load and checks as :class:`~aigc_tf.gan.DCGAN`;
    :meth:`generate` needs ``labels``.

    Example:
        >>> cgan = ConditionalGAN(num_classes=10)
        >>> cgan.compile()
        >>> ds = load_images("mnist", batch_size=128, value_range=(-1, 1), with_labels=True)
        >>> cgan.fit(cgan.check_dataset(ds), epochs=5)                   # doctest: +SKIP
        >>> cgan.generate(80, seed=0, labels=np.repeat(np.arange(10), 8))  # 8 of each digit

    Args:
        num_classes: number of classes, >= 2; labels are ints in [0, num_classes).
        latent_dim, image_shape, **kwargs: as for :class:`~aigc_tf.gan.DCGAN`.
        label_dim: size of the generator's label embedding.
    """

    def __init__(
        self,
        num_classes: int = 10,
        latent_dim: int = 128,
        image_shape: Sequence[int] = (28, 28, 1),
        label_dim: int = 32,
        **kwargs: Any,
    ) -> None:
        num_classes = check_int("num_classes", num_classes, minimum=2)
        fields = dict(num_classes=num_classes, latent_dim=latent_dim, image_shape=image_shape, label_dim=label_dim)
        super().__init__(GANConfig.from_kwargs(type(self).__name__, kwargs, **fields), **kwargs)

    # ---- training data, checked batch by batch (see aigc_tf.data_checks) -------------

    def checked_batches(self, dataset, name):
        check_label_spec(dataset, self.num_classes, name)
        return super().checked_batches(dataset, name)

    def check_arrays(self, x, y):
        super().check_arrays(x, y)
        if isinstance(x, (tuple, list)) or y is None:
            return  # labels_for names what is missing
        check_labels("y (labels)", y, self.num_classes, size=len(images_of(x)))

    def labels_for(self, data):
        """The labels of the batch ``(images, labels)``, checked in the graph.

        A label outside [0, num_classes) fails the step with an
        ``InvalidArgumentError``, except under XLA, which drops graph assertions
        (and would clamp the embedding lookup): :meth:`check_dataset` guards a
        dataset in its input pipeline, outside the compiled step.
        """
        return batch_labels(data, self.num_classes, type(self).__name__)

    def sample_labels(self, num_images: int, seed: int | None = None) -> np.ndarray:
        """A conditional GAN draws no labels of its own: ``generate`` needs them given."""
        raise ValueError(
            f"labels: {type(self).__name__}.generate needs labels (one class id per image, or one int for all)."
        )

    def check_dataset(self, dataset: tf.data.Dataset, name: str = "dataset") -> tf.data.Dataset:
        """Check a dataset of ``(images, labels)`` before ``fit``, and guard its later batches.

        The element spec and the first batch (pixel range, labels in
        [0, num_classes)) are checked at once; the returned dataset also checks the
        labels of every later batch as it is read, in ``tf.data`` and outside the
        compiled step, so a bad label fails (``InvalidArgumentError``) under XLA too.

        Returns:
            The dataset to train on, with the label check in its pipeline.

        Raises:
            TypeError: if ``dataset`` is not a ``tf.data.Dataset`` or its labels are not integers.
            ValueError: for a wrong structure or shape, pixels out of range or bad labels.
        """
        spec = getattr(dataset, "element_spec", None)
        if spec is not None and (not isinstance(spec, (tuple, list)) or len(spec) < 2):
            raise ValueError(f"{name}: {type(self).__name__} needs a dataset of (images, labels), got {spec}.")
        if spec is not None and not spec[1].dtype.is_integer:
            raise TypeError(f"{name}: labels must be integers, got dtype {spec[1].dtype.name}.")
        num_classes = self.num_classes
        check_image_dataset(
            name,
            dataset,
            self.image_shape,
            self.value_range,
            self._checked_datasets,
            lambda element: check_labels(f"{name}: labels", np.asarray(element[1]).reshape(-1), num_classes),
        )
        return checked_labels(dataset, num_classes, name)


@keras.saving.register_keras_serializable(package="aigc_tf")
class ClusteredGAN(GAN):
    """A conditional GAN on k-means clusters of the training images: no labels needed.

    An unconditional DCGAN maps one continuous z space onto all digits at once;
    in a short run many samples land between the digits or come out malformed.
    A conditional GAN draws far cleaner digits but needs labels. Clustering the
    training images first (k-means on the pixels, :meth:`fit_clusters`) gives
    labels for free: the networks are a conditional GAN's, conditioned on the
    cluster ids, in the spirit of Sage et al. (2018), "Logo synthesis and
    manipulation with clustered generative adversarial networks", and Liu et al.
    (2020), "Diverse image generation via self-conditioned GANs".

    The model samples the mixture

        p(x) = sum_k pi_k p_G(x | k),   pi_k = share of training images in cluster k,

    so :meth:`generate` draws the cluster ids by their shares unless ``labels``
    (cluster ids) are given. During training each real image is assigned to its
    nearest centroid inside the step (``fit`` takes images; labels in the data
    are ignored), and the fakes take the cluster ids of the real batch.

    Example:
        >>> gan = ClusteredGAN(num_clusters=50)
        >>> ds = load_images("mnist", batch_size=64, value_range=(-1, 1))
        >>> gan.fit_clusters(ds)                       # doctest: +SKIP
        >>> gan.compile()
        >>> gan.fit(ds, epochs=5)                      # doctest: +SKIP
        >>> images = gan.generate(64, seed=0)          # (64, 28, 28, 1) in [-1, 1]

    Args:
        num_clusters: k of k-means, >= 2. More clusters are purer (each holds
            fewer kinds of digit) but hold fewer images each.
        latent_dim, image_shape, **kwargs: as for :class:`ConditionalGAN`
            (``label_dim`` sizes the generator's cluster embedding).
    """

    def __init__(
        self, num_clusters: int = 50, latent_dim: int = 128, image_shape: Sequence[int] = (28, 28, 1), **kwargs: Any
    ) -> None:
        num_classes = check_int("num_clusters", num_clusters, minimum=2)  # one class per cluster
        fields = dict(num_classes=num_classes, latent_dim=latent_dim, image_shape=image_shape)
        super().__init__(GANConfig.from_kwargs(type(self).__name__, kwargs, **fields), **kwargs)
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
        """k-means on the pixels of the training images (:func:`~aigc_tf.gan.clusters.kmeans`).

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
        x = materialise_images(images, self.image_shape, "images")
        centroids, ids = kmeans(x, self.num_clusters, iterations=iterations, seed=seed)
        self.centroids.assign(centroids)
        self.cluster_weights.assign((np.bincount(ids, minlength=self.num_clusters) / len(ids)).astype(np.float32))
        return ids

    def nearest_cluster(self, images):
        """Id of the nearest centroid for each image: ``(batch, H, W, C)`` (training range) -> ``(batch,)`` int32."""
        return nearest_centroid(images, self.centroids)

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
            ids = np.asarray(self.nearest_cluster(images))
        return cluster_purity(ids, labels)

    def _require_clusters(self) -> None:
        # Read outside any graph being traced (a trace-time check in train_step).
        with tf.init_scope():
            fitted = bool(np.any(ops.convert_to_numpy(self.cluster_weights) > 0))
        if not fitted:
            raise RuntimeError("call ClusteredGAN.fit_clusters(images) before fit() or generate().")

    # ---- where the labels come from: the clusters ------------------------------------

    def labels_for(self, data):
        """The nearest centroid of each image of the batch (labels in ``data``, if any, are ignored)."""
        self._require_clusters()
        return self.nearest_cluster(images_of(data))

    def sample_labels(self, num_images: int, seed: int | None = None) -> np.ndarray:
        """Cluster ids k ~ pi (the training shares), as an int32 ``(num_images,)`` array.

        An int ``seed`` uses NumPy's ``default_rng((seed, 1))`` (a stream apart from
        the one :meth:`sample_latents` uses for z); ``None`` draws from the model's
        sampling stream.
        """
        num_images = check_int("num_images", num_images, minimum=1)
        seed = check_seed(seed)
        self._require_clusters()
        weights = np.asarray(self.cluster_weights, np.float64)
        if seed is None:
            logits = ops.log(ops.convert_to_tensor(weights[None, :], "float32"))
            ids = keras.random.categorical(logits, num_images, seed=self.sample_seed_generator)
            return ops.convert_to_numpy(ids)[0].astype(np.int32)
        rng = np.random.default_rng((seed, 1))
        return rng.choice(self.num_clusters, size=num_images, p=weights / weights.sum()).astype(np.int32)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["num_clusters"] = config.pop("num_classes")
        return config
