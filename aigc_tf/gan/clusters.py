"""k-means on image pixels: the labels a :class:`~aigc_tf.gan.ClusteredGAN` conditions on."""

from __future__ import annotations

import numpy as np
from keras import ops

from aigc_tf.validation import check_int

__all__ = ["cluster_purity", "kmeans", "nearest_centroid"]


def kmeans(images: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the pixels (``scipy.cluster.vq.kmeans2``, k-means++ start).

    Args:
        images: ``(N, ...)`` array, N >= k.
        k: the number of clusters.
        iterations: k-means iterations, >= 1.
        seed: seed of the k-means++ start.

    Returns:
        ``(centroids, ids)``: ``(k, pixels)`` float32 centroids and the ``(N,)``
        int32 id of each image's nearest final centroid.
    """
    from scipy.cluster.vq import kmeans2, vq

    iterations = check_int("iterations", iterations, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    if len(images) < k:
        raise ValueError(f"images: k-means needs at least num_clusters={k} images, got {len(images)}.")
    flat = np.asarray(images).reshape(len(images), -1).astype(np.float64)
    centroids, _ = kmeans2(flat, k, iter=iterations, seed=seed, minit="++")
    ids, _ = vq(flat, centroids)  # the final assignment, to the final centroids
    return centroids.astype(np.float32), ids.astype(np.int32)


def nearest_centroid(images, centroids):
    """Id of the nearest centroid (squared Euclidean distance) for each image, as a tensor op.

    Args:
        images: ``(batch, ...)`` tensor or array.
        centroids: ``(k, pixels)`` tensor, array or variable.

    Returns:
        ``(batch,)`` int32 tensor.
    """
    flat = ops.reshape(ops.cast(images, "float32"), (ops.shape(images)[0], -1))
    c = ops.convert_to_tensor(centroids)
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every c.
    distances = ops.sum(ops.square(c), axis=1)[None, :] - 2.0 * ops.matmul(flat, ops.transpose(c))
    return ops.cast(ops.argmin(distances, axis=1), "int32")


def cluster_purity(ids, labels) -> float:
    """Share of items whose cluster's most common label is their own label (1.0: one class per cluster)."""
    ids, labels = np.asarray(ids), np.asarray(labels)
    return float(sum(np.bincount(labels[ids == k]).max() for k in np.unique(ids)) / len(ids))
