"""Sample-quality metrics for image generators, usable offline (``aigc_tf.metrics``).

Distances between two sets of feature vectors (rows = samples):

* :func:`frechet_distance` — the Fréchet distance between Gaussians fitted to
  the two sets (Heusel et al., 2017):
  ``FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
* :func:`kernel_distance` — KID (Bińkowski et al., 2018): the unbiased estimate
  of the squared MMD with the polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,
  averaged over random subsets. Unlike FID it has no bias from the sample size
  (its expectation is 0 when both sets come from the same distribution).

Features come from a small CNN classifier per dataset (MNIST, Fashion-MNIST)
whose weights ship with the package (``aigc_tf/weights``; trained by
``scripts/train_classifiers.py``). FID/KID on these features is a
**classifier FID**: a good, cheap CPU metric to compare models of this course
with each other, *not* comparable with the Inception FID quoted in papers.
The same classifier scores samples directly:

* :func:`recognisable_rate` — share of samples classified with confidence >= 0.9;
* :func:`class_coverage` — how evenly the predicted classes are spread (mode
  collapse shows as low normalised entropy and a large max/min class share).

Standard Inception FID (:func:`aigc_tf.metrics.inception.inception_fid`) is
offered when the InceptionV3 ImageNet weights can be loaded (e.g. on Colab).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from scipy import linalg

from aigc_tf.images import to_unit_range
from aigc_tf.validation import check_finite, check_int

CLASSIFIER_DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist")
FEATURE_LAYER = "features"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


# --------------------------------------------------------------------------- #
# Distances between feature sets.
# --------------------------------------------------------------------------- #


def _as_features(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a (num_samples >= 2, dim) array, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf.")
    return arr


def _check_pair(features_a: Any, features_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}.")
    return a, b


def frechet_distance_from_moments(mu_a, sigma_a, mu_b, sigma_b, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b).

    Args:
        mu_a, mu_b: ``(d,)`` means.
        sigma_a, sigma_b: ``(d, d)`` covariance matrices.
        eps: diagonal offset used only when ``sqrtm`` of the product is not finite
            (a singular product, e.g. fewer samples than dimensions).

    Returns:
        ``||mu_a - mu_b||^2 + Tr(sigma_a) + Tr(sigma_b) - 2 Tr((sigma_a sigma_b)^(1/2))``,
        clipped at 0 (round-off can push identical sets slightly below).
    """
    mu_a, mu_b = check_finite("mu_a", mu_a), check_finite("mu_b", mu_b)
    sigma_a, sigma_b = check_finite("sigma_a", sigma_a), check_finite("sigma_b", sigma_b)
    d = mu_a.shape[0] if mu_a.ndim == 1 else None
    if d is None or mu_b.shape != (d,) or sigma_a.shape != (d, d) or sigma_b.shape != (d, d):
        raise ValueError(
            "frechet_distance_from_moments needs means (d,) and covariances (d, d) of one d; got "
            f"mu_a {mu_a.shape}, sigma_a {sigma_a.shape}, mu_b {mu_b.shape}, sigma_b {sigma_b.shape}."
        )
    diff = mu_a - mu_b
    with warnings.catch_warnings():
        # A singular product (rank-deficient features, e.g. dead ReLUs on poor
        # samples) makes sqrtm warn; the square root is still finite and accurate
        # enough, and the non-finite case is handled below.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma_a @ sigma_b)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(len(sigma_a)) * eps
            covmean = linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    # The product of two PSD matrices has real, non-negative eigenvalues; round-off
    # leaves tiny imaginary parts (and tiny negative eigenvalues), which we drop.
    # A large one means the covariances are not valid (e.g. not PSD): say so, as
    # the reference FID code does, rather than return a silently wrong number.
    imaginary = float(np.max(np.abs(np.imag(covmean)), initial=0.0))
    if imaginary > 1e-3 * max(1.0, float(np.max(np.abs(np.real(covmean)), initial=0.0))):
        warnings.warn(
            f"frechet_distance: sqrtm(sigma_a @ sigma_b) has an imaginary part of {imaginary:.3g}; "
            "the covariances may not be positive semi-definite, so the distance is unreliable.",
            RuntimeWarning,
            stacklevel=2,
        )
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    Args:
        features_a: ``(n_a, d)`` features of one sample set.
        features_b: ``(n_b, d)`` features of the other.

    Returns:
        The distance (>= 0; 0 for identical sets). It is biased upwards for small
        sets: compare values computed with the same numbers of samples.
    """
    a, b = _check_pair(features_a, features_b)
    return frechet_distance_from_moments(
        a.mean(0),
        np.cov(a, rowvar=False).reshape(a.shape[1], -1),
        b.mean(0),
        np.cov(b, rowvar=False).reshape(b.shape[1], -1),
    )


def polynomial_mmd2_unbiased(
    a: np.ndarray, b: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased MMD^2 with the kernel ``k(x, y) = (gamma x.y + coef0)^degree``.

    MMD^2_u = sum_{i != j} k(a_i, a_j) / (m(m-1)) + sum_{i != j} k(b_i, b_j) / (n(n-1))
              - 2 sum_{i, j} k(a_i, b_j) / (m n).

    Args:
        a: ``(m, d)`` features, m >= 2.
        b: ``(n, d)`` features, n >= 2.
        degree, gamma, coef0: kernel parameters (``gamma=None``: 1 / d).

    Returns:
        The estimate (can be slightly negative: it is unbiased, not clipped).
    """
    m, n, d = len(a), len(b), a.shape[1]
    gamma = 1.0 / d if gamma is None else gamma
    k_aa = (gamma * a @ a.T + coef0) ** degree
    k_bb = (gamma * b @ b.T + coef0) ** degree
    k_ab = (gamma * a @ b.T + coef0) ** degree
    # Drop the diagonal (k(x, x)): it is what makes the plain V-statistic biased.
    term_aa = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    term_bb = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(term_aa + term_bb - 2.0 * k_ab.mean())


def kernel_distance(
    features_a: Any,
    features_b: Any,
    *,
    num_subsets: int = 10,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
    return_std: bool = False,
) -> float | tuple[float, float]:
    """Kernel Inception Distance (KID) formula on arbitrary features.

    The unbiased polynomial-kernel MMD^2 (:func:`polynomial_mmd2_unbiased`,
    ``k(x, y) = (x.y / d + 1)^3``) averaged over ``num_subsets`` random subsets
    of ``subset_size`` rows from each set, drawn without replacement (the
    O(n^2) kernel matrices stay small). When both sets have at most
    ``subset_size`` rows, the whole sets are used once.

    Args:
        features_a: ``(n_a, d)`` features, n_a >= 2.
        features_b: ``(n_b, d)`` features, n_b >= 2.
        num_subsets: number of subset pairs averaged, >= 1.
        subset_size: rows per subset (capped at the smaller set's size), >= 2.
        degree: polynomial degree (3 in the KID paper).
        seed: seed of the subset draws.
        return_std: also return the standard deviation over subsets.

    Returns:
        The mean MMD^2 (and its std over subsets if ``return_std``). Values are
        raw, not multiplied by 1000 as some papers print them.
    """
    a, b = _check_pair(features_a, features_b)
    if int(num_subsets) < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}.")
    if int(subset_size) < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}.")
    size = min(int(subset_size), len(a), len(b))
    if len(a) <= subset_size and len(b) <= subset_size:
        values = [polynomial_mmd2_unbiased(a, b, degree)]
    else:
        rng = np.random.default_rng(seed)
        values = [
            polynomial_mmd2_unbiased(
                a[rng.choice(len(a), size, replace=False)],
                b[rng.choice(len(b), size, replace=False)],
                degree,
            )
            for _ in range(int(num_subsets))
        ]
    mean = float(np.mean(values))
    return (mean, float(np.std(values))) if return_std else mean


# --------------------------------------------------------------------------- #
# Scores of class predictions.
# --------------------------------------------------------------------------- #


def recognisable_rate(probabilities: Any, threshold: float = 0.9) -> float:
    """Share of samples whose top class probability is at least ``threshold``.

    Args:
        probabilities: ``(N, num_classes)`` classifier probabilities.
        threshold: confidence needed to count as recognisable, in (0, 1].

    Returns:
        A fraction in [0, 1].
    """
    probs = check_finite("probabilities", probabilities)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"probabilities must be (N >= 1, num_classes), got shape {probs.shape}.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
    return float(np.mean(probs.max(axis=1) >= threshold))


def class_coverage(predictions: Any, num_classes: int | None = None) -> dict[str, Any]:
    """How evenly samples spread over the classes (mode collapse shows here).

    Args:
        predictions: ``(N, num_classes)`` probabilities (their argmax is used) or
            ``(N,)`` integer class labels.
        num_classes: number of classes (default: the probabilities' width, or 10
            for labels).

    Returns:
        A dict with ``histogram`` (share of samples per class, sums to 1),
        ``entropy`` (entropy of that histogram divided by log(num_classes):
        1 = perfectly even, 0 = a single class), ``classes_present`` (classes with
        at least one sample), ``max_share`` and ``min_share`` (of the largest and
        smallest class; an even spread over 10 classes gives 0.1 and 0.1).
    """
    pred = np.asarray(predictions)
    if pred.ndim == 2:
        check_finite("predictions", pred)  # NaN would argmax to class 0
        num_classes = num_classes or pred.shape[1]
        labels = pred.argmax(axis=1)
    elif pred.ndim == 1:
        num_classes = num_classes or 10
        labels = pred.astype(np.int64)
    else:
        raise ValueError(f"predictions must be (N, classes) or (N,), got shape {pred.shape}.")
    if len(labels) == 0:
        raise ValueError("predictions is empty.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}].")
    share = np.bincount(labels, minlength=num_classes) / len(labels)
    nonzero = share[share > 0]
    # + 0.0 turns the -0.0 of a single class into 0.0
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(num_classes)) + 0.0 if num_classes > 1 else 1.0
    return {
        "histogram": share.tolist(),
        "entropy": entropy,
        "classes_present": int((share > 0).sum()),
        "max_share": float(share.max()),
        "min_share": float(share.min()),
    }


# --------------------------------------------------------------------------- #
# The classifier used as an offline feature extractor.
# --------------------------------------------------------------------------- #


def make_classifier(
    num_classes: int = 10, image_shape: Sequence[int] = (28, 28, 1), feature_dim: int = 128
) -> keras.Model:
    """Small CNN for 28x28 grey images; its ``features`` layer feeds FID/KID.

    Three 3x3 convs (32, 64, 64 channels), each followed by 2x2 max-pooling
    (28 → 14 → 7 → 3), then Dense(``feature_dim``, relu) named ``"features"``,
    dropout and the softmax head. About 131k parameters (≈ 0.5 MB of float32
    weights) and 6 MFLOP per image: cheap enough to score 10k samples in seconds.
    Input: ``(batch, 28, 28, 1)`` in [0, 1]. Output: ``(batch, num_classes)`` probabilities.
    """
    x = keras.Input(tuple(image_shape), name="image")
    h = x
    for filters in (32, 64, 64):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(feature_dim, activation="relu", name=FEATURE_LAYER)(h)
    h = keras.layers.Dropout(0.3)(h)
    probs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(h)
    return keras.Model(x, probs, name="classifier")


def classifier_weights_path(dataset: str) -> Path:
    """Path of the shipped classifier weights for ``dataset``."""
    if dataset not in CLASSIFIER_DATASETS:
        raise ValueError(f"dataset must be one of {CLASSIFIER_DATASETS}, got {dataset!r}.")
    return WEIGHTS_DIR / f"{dataset}_classifier.weights.h5"


@functools.cache
def load_classifier(dataset: str = "mnist") -> keras.Model:
    """The shipped, trained classifier for ``"mnist"`` or ``"fashion_mnist"`` (cached).

    Raises:
        FileNotFoundError: if the weights file is missing (run
            ``python scripts/train_classifiers.py``).
    """
    path = classifier_weights_path(dataset)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the classifier weights ship with the package; "
            "re-create them with `python scripts/train_classifiers.py`."
        )
    # Built in float32 whatever the global policy: the model is cached for the
    # process, and features made under mixed_float16 would stay half precision.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        model = make_classifier()
    finally:
        keras.config.set_dtype_policy(previous)
    model.load_weights(path)
    return model


def _to_unit_images(images: Any, value_range: tuple[float, float] | None) -> np.ndarray:
    arr = to_unit_range(images, value_range, strict=True)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[1:] != (28, 28, 1):
        raise ValueError(f"images must be shaped (N, 28, 28, 1), got {arr.shape}.")
    return arr


@functools.cache
def _feature_model(dataset: str) -> keras.Model:
    clf = load_classifier(dataset)
    return keras.Model(clf.input, [clf.get_layer(FEATURE_LAYER).output, clf.output])


def classifier_outputs(
    images: Any,
    dataset: str = "mnist",
    *,
    value_range: tuple[float, float] | None = None,
    batch_size: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and class probabilities of the shipped classifier.

    Args:
        images: ``(N, 28, 28, 1)`` (or ``(N, 28, 28)``) images in ``value_range``.
        dataset: which classifier, ``"mnist"`` or ``"fashion_mnist"``.
        value_range: the range the pixels are in; default: the range the array
            declares (a model's samples carry it), else ``(0, 1)``.
        batch_size: images per forward pass.

    Returns:
        ``(features (N, 128), probabilities (N, 10))`` float32 arrays.
    """
    x = _to_unit_images(images, value_range)
    check_finite("images", x)  # NaN pixels would read as "0 % recognisable, all class 0"
    model = _feature_model(dataset)
    feats, probs = [], []
    for start in range(0, len(x), int(batch_size)):
        f, p = model(x[start : start + int(batch_size)], training=False)
        feats.append(np.asarray(f))
        probs.append(np.asarray(p))
    return np.concatenate(feats), np.concatenate(probs)


def balanced_indices(labels: Any, *, per_class: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced subset: the same number of examples of every class present.

    A generator asked for every class equally often (a conditional GAN with uniform labels)
    should be compared with a reference that has the classes in equal shares too; the MNIST
    test set does not (its classes hold 8.9 % to 11.4 % of the images).

    Args:
        labels: ``(M,)`` integer class labels of the reference images.
        per_class: examples kept per class (default: the smallest class's count; at most that).
        seed: NumPy seed of the random choice within each class.

    Returns:
        ``(per_class * classes,)`` sorted int64 indices into ``labels``.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels: expected a non-empty 1-D integer array, got {y.dtype} of shape {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    smallest = int(counts.min())
    if per_class is None:
        per_class = smallest
    per_class = check_int("per_class", per_class, minimum=1)
    if per_class > smallest:
        raise ValueError(f"per_class: {per_class} is more than the smallest class holds ({smallest})")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in classes]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def balanced_reference(images: Any, labels: Any, *, per_class: int | None = None, seed: int = 0) -> Any:
    """The images of :func:`balanced_indices`: an equal number per class (pixel range kept).

    Args:
        images: ``(M, ...)`` reference images (an :class:`aigc_tf.images.Images` keeps its range).
        labels: ``(M,)`` their integer labels.
        per_class: examples per class (default: the smallest class's count).
        seed: seed of the choice.

    Returns:
        ``images[balanced_indices(labels)]``.
    """
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
    return images[balanced_indices(labels, per_class=per_class, seed=seed)]


def evaluate_samples(
    samples: Any,
    reference: Any,
    dataset: str = "mnist",
    *,
    value_range: tuple[float, float] | None = None,
    reference_range: tuple[float, float] | None = None,
    kid_subsets: int = 10,
    kid_subset_size: int = 1000,
    reference_labels: Any = None,
    balanced: bool = False,
) -> dict[str, Any]:
    """All classifier-based scores of a sample set against reference images.

    Args:
        samples: ``(N, 28, 28, 1)`` generated images in ``value_range``.
        reference: ``(M, 28, 28, 1)`` real images (e.g. the test set) in ``reference_range``.
        dataset: which shipped classifier to use.
        value_range, reference_range: pixel ranges of the two sets; default: the
            range each array declares (see :class:`aigc_tf.images.Images`), else ``(0, 1)``.
        kid_subsets, kid_subset_size: see :func:`kernel_distance`.
        reference_labels: ``(M,)`` labels of ``reference``; needed when ``balanced``.
        balanced: score against a class-balanced subset of the reference
            (:func:`balanced_reference`, seed 0) instead of all of it.

    Returns:
        ``{"classifier_fid", "classifier_kid", "recognisable_rate", "coverage", "reference_size"}``
        (coverage is the dict of :func:`class_coverage`; reference_size the images compared with).
    """
    if not isinstance(balanced, bool):
        raise TypeError(f"balanced: expected a bool, got {type(balanced).__name__} {balanced!r}")
    if balanced:
        if reference_labels is None:
            raise ValueError("reference_labels: needed with balanced=True, got None")
        reference = balanced_reference(reference, reference_labels)
    f_s, p_s = classifier_outputs(samples, dataset, value_range=value_range)
    f_r, _ = classifier_outputs(reference, dataset, value_range=reference_range)
    return {
        "classifier_fid": frechet_distance(f_s, f_r),
        "classifier_kid": kernel_distance(f_s, f_r, num_subsets=kid_subsets, subset_size=kid_subset_size),
        "recognisable_rate": recognisable_rate(p_s),
        "coverage": class_coverage(p_s),
        "reference_size": len(f_r),
    }


__all__ = [
    "CLASSIFIER_DATASETS",
    "balanced_indices",
    "balanced_reference",
    "FEATURE_LAYER",
    "WEIGHTS_DIR",
    "class_coverage",
    "classifier_weights_path",
    "classifier_outputs",
    "evaluate_samples",
    "frechet_distance",
    "frechet_distance_from_moments",
    "kernel_distance",
    "load_classifier",
    "make_classifier",
    "polynomial_mmd2_unbiased",
    "recognisable_rate",
]
