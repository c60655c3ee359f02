"""Tests for aigc_tf.metrics: FID and KID against independent computations and
closed forms, the shipped classifiers, and the sample scores built on them; the
language-model metrics (loss, bits per character, perplexity)."""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import linalg

from aigc_tf import metrics
from aigc_tf.data import load_images
from aigc_tf.images import as_images
from aigc_tf.metrics import (
    bits_per_char,
    class_coverage,
    classifier_outputs,
    evaluate_loss,
    frechet_distance,
    frechet_distance_from_moments,
    kernel_distance,
    perplexity,
    polynomial_mmd2_unbiased,
    recognisable_rate,
)

# --------------------------------------------------------------------------- #
# Fréchet distance.
# --------------------------------------------------------------------------- #


def fid_by_eigenvalues(a: np.ndarray, b: np.ndarray) -> float:
    """Independent FID: Tr((S_a S_b)^1/2) = sum sqrt(eig(S_a^1/2 S_b S_a^1/2)), a symmetric PSD matrix."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = linalg.eigvalsh(root_a @ s_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def test_fid_matches_an_independent_eigenvalue_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))
    b = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(fid_by_eigenvalues(a, b), rel=1e-8)


def test_fid_of_identical_sets_is_zero():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a.copy()) >= 0.0  # clipped, never negative round-off


def test_fid_closed_form_for_gaussians():
    # Same covariance: FD = ||mu_a - mu_b||^2 exactly.
    cov = np.array([[2.0, 0.3], [0.3, 1.0]])
    assert frechet_distance_from_moments([0, 0], cov, [3, 4], cov) == pytest.approx(25.0, abs=1e-9)
    # Diagonal covariances: FD = ||delta||^2 + sum (sigma_a - sigma_b)^2.
    fd = frechet_distance_from_moments([1, 0], np.diag([1.0, 4.0]), [0, 0], np.diag([9.0, 1.0]))
    assert fd == pytest.approx(1.0 + (1 - 3) ** 2 + (2 - 1) ** 2, abs=1e-9)


def test_fid_on_samples_of_shifted_gaussians_approaches_the_closed_form():
    rng = np.random.default_rng(2)
    shift = np.array([1.0, -2.0, 0.5])
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2.0 + shift
    expected = shift @ shift + 3 * (1.0 - 2.0) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_fid_handles_singular_covariances():
    # Fewer samples than dimensions: singular covariances, sqrtm needs the offset path.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(10, 32))
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


def test_fid_rejects_bad_input():
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="num_samples >= 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


# --------------------------------------------------------------------------- #
# Kernel distance (KID).
# --------------------------------------------------------------------------- #


def mmd2_by_loops(a: np.ndarray, b: np.ndarray) -> float:
    """Direct O(n^2) unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
    d = a.shape[1]

    def k(x, y):
        return (float(x @ y) / d + 1.0) ** 3

    m, n = len(a), len(b)
    aa = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    bb = sum(k(b[i], b[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    ab = sum(k(a[i], b[j]) for i in range(m) for j in range(n)) / (m * n)
    return aa + bb - 2 * ab


def test_kid_matches_a_direct_loop_computation():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(25, 5)), rng.normal(size=(30, 5)) + 0.3
    assert polynomial_mmd2_unbiased(a, b) == pytest.approx(mmd2_by_loops(a, b), rel=1e-10)
    # Sets smaller than subset_size are used whole, once.
    assert kernel_distance(a, b) == pytest.approx(mmd2_by_loops(a, b), rel=1e-10)


def test_kid_is_unbiased_for_the_same_distribution():
    rng = np.random.default_rng(5)
    values, biased = [], []
    for _ in range(200):
        a, b = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
        values.append(kernel_distance(a, b))
        kaa, kbb, kab = ((x @ y.T / 4 + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
        biased.append(kaa.mean() + kbb.mean() - 2 * kab.mean())  # V-statistic, with the diagonal
    values = np.array(values)
    stderr = values.std() / np.sqrt(len(values))
    assert abs(values.mean()) < 3 * stderr  # zero in expectation (it can go negative)
    assert (values < 0).any()
    assert np.mean(biased) > 10 * stderr  # the biased estimator is clearly positive


def test_kid_grows_with_the_shift_and_subsets_average():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(600, 4))
    near, far = rng.normal(size=(600, 4)) + 0.2, rng.normal(size=(600, 4)) + 1.0
    assert 0 < kernel_distance(a, near, subset_size=200) < kernel_distance(a, far, subset_size=200)
    mean, std = kernel_distance(a, far, num_subsets=5, subset_size=100, seed=3, return_std=True)
    sub = np.random.default_rng(3)
    expected = [
        polynomial_mmd2_unbiased(a[sub.choice(600, 100, replace=False)], far[sub.choice(600, 100, replace=False)])
        for _ in range(5)
    ]
    assert mean == pytest.approx(np.mean(expected)) and std == pytest.approx(np.std(expected))


def test_kid_rejects_bad_arguments():
    a = np.zeros((10, 3))
    with pytest.raises(ValueError, match="num_subsets"):
        kernel_distance(a, a, num_subsets=0)
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(a, a, subset_size=1)


# --------------------------------------------------------------------------- #
# Scores of predictions.
# --------------------------------------------------------------------------- #


def test_recognisable_rate_and_coverage_by_hand():
    probs = np.array([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8]])
    assert recognisable_rate(probs) == pytest.approx(0.5)
    assert recognisable_rate(probs, threshold=0.8) == pytest.approx(0.75)
    cov = class_coverage(probs)
    assert cov["histogram"] == pytest.approx([0.5, 0.5])  # argmax ties go to class 0
    assert cov["entropy"] == pytest.approx(1.0)
    even = class_coverage(np.arange(100) % 10)
    assert even["entropy"] == pytest.approx(1.0) and even["min_share"] == even["max_share"] == 0.1
    collapsed = class_coverage(np.ones(100, int))
    assert collapsed["entropy"] == 0.0 and collapsed["classes_present"] == 1 and collapsed["max_share"] == 1.0
    skewed = class_coverage(np.r_[np.zeros(90, int), np.arange(10)])
    assert skewed["entropy"] == pytest.approx(-(0.91 * np.log(0.91) + 9 * 0.01 * np.log(0.01)) / np.log(10))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        class_coverage(np.array([0, 10]))
    with pytest.raises(ValueError, match="threshold"):
        recognisable_rate(probs, threshold=0)


# --------------------------------------------------------------------------- #
# The shipped classifiers.
# --------------------------------------------------------------------------- #


def _arrays(name, split, n=None):
    images, labels = [], []
    for x, y in load_images(name, split, batch_size=2000, with_labels=True):
        images.append(x.numpy())
        labels.append(y.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    return (images[:n], labels[:n]) if n else (images, labels)


@pytest.fixture(scope="module")
def mnist_test():
    return _arrays("mnist", "test")


def test_weights_are_small_and_in_the_package():
    for dataset in metrics.CLASSIFIER_DATASETS:
        path = metrics.classifier_weights_path(dataset)
        assert path.exists() and path.stat().st_size < 1_000_000
        assert path.parent.parent.name == "aigc_tf"


def test_mnist_classifier_reaches_98_percent(mnist_test):
    images, labels = mnist_test
    assert len(images) == 10_000
    features, probs = classifier_outputs(images, "mnist")
    assert features.shape == (10_000, 128) and probs.shape == (10_000, 10)
    assert np.mean(probs.argmax(1) == labels) >= 0.98
    # Real digits are recognisable and cover the classes evenly.
    assert recognisable_rate(probs) > 0.95
    assert class_coverage(probs)["entropy"] > 0.99


def test_fashion_classifier_is_accurate():
    images, labels = _arrays("fashion_mnist", "test", n=3000)
    _, probs = classifier_outputs(images, "fashion_mnist")
    assert np.mean(probs.argmax(1) == labels) >= 0.84  # 86.7% on the full test split


def test_coverage_detects_a_collapsed_sample_set(mnist_test):
    images, labels = mnist_test
    _, p_all = classifier_outputs(images[:2000], "mnist")
    _, p_ones = classifier_outputs(images[labels == 1][:500], "mnist")
    full, collapsed = class_coverage(p_all), class_coverage(p_ones)
    assert full["classes_present"] == 10 and full["entropy"] > 0.95
    assert collapsed["entropy"] < 0.2 and collapsed["max_share"] > 0.95


def test_classifier_fid_orders_sets_sensibly(mnist_test):
    images, labels = mnist_test
    # samples declare [-1, 1] as a tanh generator's do; the plain reference array is read as [0, 1]
    real_a, real_b = as_images(images[:2000] * 2 - 1, (-1, 1)), images[2000:4000]
    noise = as_images(np.random.default_rng(0).uniform(-1, 1, size=(2000, 28, 28, 1)), (-1, 1))
    ones = as_images(images[labels == 1][:1000] * 2 - 1, (-1, 1))
    real = metrics.evaluate_samples(real_a, real_b)
    bad = metrics.evaluate_samples(noise, real_b)
    collapsed = metrics.evaluate_samples(ones, real_b)
    assert real["classifier_fid"] < 0.1 * min(collapsed["classifier_fid"], bad["classifier_fid"])
    assert real["classifier_kid"] < 0.1 * min(collapsed["classifier_kid"], bad["classifier_kid"])
    assert real["recognisable_rate"] > 0.95 > bad["recognisable_rate"]
    assert collapsed["coverage"]["classes_present"] <= 3


def test_classifier_inputs_are_checked():
    with pytest.raises(ValueError, match="value_range"):
        classifier_outputs(np.full((2, 28, 28, 1), -1.0, np.float32), "mnist")  # default range is [0, 1]
    with pytest.raises(ValueError, match=r"\(N, 28, 28, 1\)"):
        classifier_outputs(np.zeros((2, 32, 32, 1), np.float32), "mnist")
    with pytest.raises(ValueError, match="dataset"):
        metrics.load_classifier("cifar10")


# --------------------------------------------------------------------------- #
# Inception FID: only its offline failure path is testable here.
# --------------------------------------------------------------------------- #


def test_inception_fid_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached weights
    with pytest.raises(RuntimeError, match="InceptionV3 ImageNet weights"):
        metrics.inception_fid(np.zeros((2, 28, 28, 1)), np.zeros((2, 28, 28, 1)))


def test_inception_download_failure_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_OFFLINE", "0")
    monkeypatch.delenv("CI", raising=False)  # CI=true also means offline

    def no_network(**kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "InceptionV3", no_network)
    with pytest.raises(RuntimeError, match="could not load InceptionV3.*no network"):
        metrics.load_inception()


# --------------------------------------------------------------------------- #
# Known cases in closed form, and the protocol around the feature extractors.
# --------------------------------------------------------------------------- #


def cubic_kernel_mean(mu_x: np.ndarray, mu_y: np.ndarray) -> float:
    """E[(x.y / d + 1)^3] for independent x ~ N(mu_x, I), y ~ N(mu_y, I) in d dimensions.

    With s = x.y and c = mu_x.mu_y:  E[s] = c,  E[s^2] = c^2 + |mu_x|^2 + |mu_y|^2 + d,
    E[s^3] = c^3 + 3c(|mu_x|^2 + |mu_y|^2) + 3(d + 2)c  (Isserlis' theorem), and
    E[(s/d + 1)^3] = E[s^3]/d^3 + 3E[s^2]/d^2 + 3E[s]/d + 1.
    """
    d = len(mu_x)
    c, nx, ny = mu_x @ mu_y, mu_x @ mu_x, mu_y @ mu_y
    s1, s2 = c, c**2 + nx + ny + d
    s3 = c**3 + 3 * c * (nx + ny) + 3 * (d + 2) * c
    return s3 / d**3 + 3 * s2 / d**2 + 3 * s1 / d + 1


def test_kid_matches_the_closed_form_for_shifted_gaussians():
    d = 4
    mu_a, mu_b = np.zeros(d), np.full(d, 0.5)
    # MMD^2 = E k(a, a') + E k(b, b') - 2 E k(a, b); KID is unbiased for it.
    exact = cubic_kernel_mean(mu_a, mu_a) + cubic_kernel_mean(mu_b, mu_b) - 2 * cubic_kernel_mean(mu_a, mu_b)
    assert exact > 0.1
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(20_000, d)) + mu_a, rng.normal(size=(20_000, d)) + mu_b
    mean, std = kernel_distance(a, b, num_subsets=40, subset_size=1000, seed=1, return_std=True)
    assert mean == pytest.approx(exact, abs=4 * std / np.sqrt(40))
    assert std > 0
    # Monte Carlo check of the kernel means themselves (the test's own algebra).
    x, y = rng.normal(size=(400_000, d)), rng.normal(size=(400_000, d)) + mu_b
    mc = ((np.sum(x * y, axis=1) / d + 1) ** 3).mean()
    assert mc == pytest.approx(cubic_kernel_mean(np.zeros(d), mu_b), rel=0.01)


def test_kid_and_fid_of_a_set_against_itself_are_near_zero():
    a = np.random.default_rng(8).normal(size=(500, 6))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # Against itself the unbiased estimate is not exactly 0 but
    # -2 (mean of K's diagonal - mean of all of K) / (n - 1): slightly negative, shrinking like 1/n.
    for n in (100, 500):
        k = (a[:n] @ a[:n].T / 6 + 1) ** 3
        expected = -2 * (np.diag(k).mean() - k.mean()) / (n - 1)
        assert kernel_distance(a[:n], a[:n]) == pytest.approx(expected, rel=1e-9)
        assert -0.2 < expected < 0
    assert abs(kernel_distance(a, a)) < abs(kernel_distance(a[:100], a[:100])) / 3


def test_frechet_distance_warns_on_invalid_covariances():
    mu = np.zeros(2)
    not_psd = np.diag([1.0, -1.0])  # sqrtm(diag(1, -1)) = diag(1, i): a large imaginary part
    with pytest.warns(RuntimeWarning, match="imaginary part"):
        metrics.frechet_distance_from_moments(mu, not_psd, mu, np.eye(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid covariances: no warning
        rng = np.random.default_rng(9)
        metrics.frechet_distance(rng.normal(size=(50, 3)), rng.normal(size=(60, 3)))


def test_inception_features_follow_the_documented_protocol():
    """Grey images -> 3 identical channels, 299x299, [0, 255] -> preprocess_input -> [-1, 1]."""
    seen = []

    def stub(batch, training=False):
        seen.append(np.asarray(batch))
        return tf.reduce_mean(batch, axis=(1, 2))  # (n, 3) "features"

    images = np.zeros((5, 28, 28, 1), np.float32)
    images[:, :14] = 1.0  # top half white, bottom half black, in [0, 1]
    features = metrics.inception_features(images, batch_size=2, model=stub)
    assert [s.shape for s in seen] == [(2, 299, 299, 3), (2, 299, 299, 3), (1, 299, 299, 3)]
    x = np.concatenate(seen)
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(1.0)  # white -> 1, black -> -1
    assert x[0, 10, 150, 0] == pytest.approx(1.0) and x[0, 290, 150, 0] == pytest.approx(-1.0)
    assert features.shape == (5, 3)
    # value_range: the same images given in [-1, 1] give the same network input.
    seen.clear()
    metrics.inception_features(images * 2 - 1, value_range=(-1, 1), batch_size=5, model=stub)
    np.testing.assert_allclose(seen[0], x, atol=1e-5)


def test_classifier_is_built_in_float32_under_a_mixed_policy():
    previous = keras.config.dtype_policy()
    metrics.load_classifier.cache_clear()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = metrics.load_classifier("mnist")
        assert all(layer.compute_dtype == "float32" for layer in model.layers)
    finally:
        keras.config.set_dtype_policy(previous)
        metrics.load_classifier.cache_clear()
    assert keras.config.dtype_policy().name == previous.name


# --------------------------------------------------------------------------- #
# Language-model metrics: nats, bits per character, perplexity.
# --------------------------------------------------------------------------- #


def test_text_metric_helpers():
    assert bits_per_char(math.log(65), 1) == pytest.approx(math.log2(65))
    assert bits_per_char(1.75, 1) == pytest.approx(2.5247, abs=1e-4)
    assert bits_per_char(10 * 1.75, 10) == pytest.approx(2.5247, abs=1e-4)  # total nats over the characters
    assert perplexity(math.log(65)) == pytest.approx(65.0)
    with pytest.raises(ValueError, match="num_chars"):
        bits_per_char(1.0, 0)
    with pytest.raises(TypeError, match="num_chars"):
        bits_per_char(1.0, 2.5)
    with pytest.raises(ValueError, match="total_nats"):
        bits_per_char(-1.0, 3)


def test_evaluate_loss_weights_batches_by_size(tiny_rnn, tokenizer):
    model = tiny_rnn(num_layers=1)
    rng = np.random.default_rng(3)
    x, y = (rng.integers(0, tokenizer.vocab_size, (5, 6)).astype("int32") for _ in range(2))
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)  # batches of 3 and 2
    logits = np.asarray(model(x)).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, y[..., None], -1).mean()
    result = evaluate_loss(model, ds)
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["num_tokens"] == result["num_chars"] == 30  # a character tokenizer: one character per token
    assert result["bits_per_char"] == pytest.approx(expected / math.log(2), rel=1e-5)
    assert result["total_nats"] == pytest.approx(30 * expected, rel=1e-5)
    with pytest.raises(ValueError, match="empty"):
        evaluate_loss(model, ds.take(0))


class PairTokenizer:
    """Each token is two characters: 'aa', 'ab', ... (stands for a sub-word tokenizer)."""

    vocab_size = 4
    pieces = ("aa", "ab", "ba", "bb")

    def decode(self, ids):
        ids = np.asarray(ids)
        return ["".join(self.pieces[i] for i in row) for row in ids] if ids.ndim == 2 else self.decode(ids[None])[0]


def test_bits_per_char_is_per_character_whatever_the_tokenizer():
    inputs = keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Embedding(4, 4)(inputs))  # ids -> logits
    model.tokenizer = PairTokenizer()
    x = np.random.default_rng(0).integers(0, 4, (6, 5)).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, x[:, ::-1].copy())).batch(4)
    result = evaluate_loss(model, ds)
    assert result["num_tokens"] == 30 and result["num_chars"] == 60
    assert result["bits_per_char"] == pytest.approx(result["loss"] / 2 / math.log(2), rel=1e-6)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]), rel=1e-6)  # per token
    explicit = evaluate_loss(model, ds, num_chars=90)
    assert explicit["bits_per_char"] == pytest.approx(result["total_nats"] / 90 / math.log(2), rel=1e-6)


# --------------------------------------------------------------------------- #
# A class-balanced reference.
# --------------------------------------------------------------------------- #


def test_balanced_indices_keep_the_same_count_of_every_class():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 9)
    idx = metrics.balanced_indices(labels, seed=1)
    assert np.array_equal(np.bincount(labels[idx]), [3, 3, 3])
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    assert np.array_equal(np.bincount(labels[metrics.balanced_indices(labels, per_class=2)]), [2, 2, 2])
    assert np.array_equal(metrics.balanced_indices(labels, seed=1), idx)  # seeded
    with pytest.raises(ValueError, match="per_class"):
        metrics.balanced_indices(labels, per_class=4)
    with pytest.raises(ValueError, match="labels"):
        metrics.balanced_indices(np.array([0.5, 1.0]))


def test_balanced_reference_removes_the_class_imbalance_bias(mnist_test):
    images, labels = mnist_test
    # a reference dominated by 1s, and samples with every digit equally often
    skewed = np.concatenate([np.flatnonzero(labels == 1)[:600], np.flatnonzero(labels != 1)[:900]])
    ref, ref_labels = images[skewed], labels[skewed]
    samples = metrics.balanced_reference(images[2000:], labels[2000:], per_class=80)
    plain = metrics.evaluate_samples(samples, ref)
    fair = metrics.evaluate_samples(samples, ref, reference_labels=ref_labels, balanced=True)
    per_class = np.bincount(ref_labels).min()
    assert fair["reference_size"] == 10 * per_class and plain["reference_size"] == len(ref)
    assert fair["classifier_fid"] < 0.5 * plain["classifier_fid"]
    with pytest.raises(ValueError, match="reference_labels"):
        metrics.evaluate_samples(samples, ref, balanced=True)
    with pytest.raises(TypeError, match="balanced"):
        metrics.evaluate_samples(samples, ref, reference_labels=ref_labels, balanced="yes")
