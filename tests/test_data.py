"""Offline data: counts, shapes, ranges, labels, equivalence with tfds.load, fast failures."""

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from aigc_tf import data

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data"

# Per-class label counts: the official MNIST test set (all 10,000 images are
# shipped), and the first N labels of the official label files for the subsets.
LABEL_COUNTS = {
    ("mnist", "test"): [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    ("mnist", "train"): [2361, 2706, 2326, 2466, 2330, 2118, 2353, 2470, 2275, 2392],
    ("fashion_mnist", "train"): [794, 894, 865, 860, 817, 841, 866, 870, 851, 859],
    ("fashion_mnist", "test"): [688, 677, 724, 708, 710, 700, 690, 691, 707, 683],
}


def all_batches(ds):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize(
    "name, split, count",
    [
        ("mnist", "train", 23_797),
        ("mnist", "test", 10_000),
        ("fashion_mnist", "train", 8_517),
        ("fashion_mnist", "test", 6_978),
    ],
)
def test_shipped_image_splits(name, split, count):
    x, y = all_batches(data.load_images(name, split, batch_size=4096, with_labels=True))
    assert x.shape == (count, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (count,) and np.issubdtype(y.dtype, np.integer)
    assert np.bincount(y, minlength=10).tolist() == LABEL_COUNTS[name, split]
    assert x.min() == 0.0 and x.max() == 1.0
    # 8-bit pixels scaled by 1/255: every value is a multiple of 1/255.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)


def test_same_images_as_unchanged_tfds_load():
    """The shipped folder is plain TFDS: tfds.load reads it, and load_images only rescales."""
    ours = next(iter(data.load_images("fashion_mnist", "test", batch_size=500, with_labels=True, shuffle=False)))
    raw = next(
        iter(
            tfds.load(
                "fashion_mnist",
                split="test",
                data_dir=str(data.SHIPPED_DATA_DIR),
                download=False,
                as_supervised=True,
                batch_size=500,
            )
        )
    )
    np.testing.assert_array_equal(ours[0].numpy(), raw[0].numpy().astype(np.float32) / 255.0)
    np.testing.assert_array_equal(ours[1].numpy(), raw[1].numpy())


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 255.0), (0.25, 0.5)])
def test_value_range_is_an_affine_map_of_the_pixels(value_range):
    unit = next(iter(data.load_images("mnist", "test[:64]", batch_size=64))).numpy()
    scaled = next(iter(data.load_images("mnist", "test[:64]", batch_size=64, value_range=value_range))).numpy()
    low, high = value_range
    np.testing.assert_allclose(scaled, low + unit * (high - low), rtol=1e-6, atol=1e-5)
    assert scaled.min() == pytest.approx(low) and scaled.max() == pytest.approx(high)


def test_unbatched_and_batched_shapes():
    single = next(iter(data.load_images("mnist", "test")))
    assert single.shape == (28, 28, 1) and single.dtype == tf.float32
    image, label = next(iter(data.load_images("mnist", "test", with_labels=True)))
    assert image.shape == (28, 28, 1) and label.shape == ()
    sizes = [int(b.shape[0]) for b in data.load_images("mnist", "test[:100]", batch_size=32)]
    assert sizes == [32, 32, 32, 4]
    sizes = [int(b.shape[0]) for b in data.load_images("mnist", "test[:100]", batch_size=32, drop_remainder=True)]
    assert sizes == [32, 32, 32]


def test_shuffling_reshuffles_each_epoch_and_respects_the_seed():
    def epochs(ds, n=2):
        return [np.concatenate([y.numpy() for _, y in ds]) for _ in range(n)]

    ds = data.load_images("mnist", "train[:500]", batch_size=100, with_labels=True, seed=1)
    first, second = epochs(ds)
    assert not np.array_equal(first, second)  # a new order every epoch...
    assert sorted(first) == sorted(second)  # ...of the same examples
    again = epochs(data.load_images("mnist", "train[:500]", batch_size=100, with_labels=True, seed=1))
    np.testing.assert_array_equal(first, again[0])
    # Test splits are not shuffled by default.
    test_a, test_b = epochs(data.load_images("mnist", "test[:500]", batch_size=100, with_labels=True))
    np.testing.assert_array_equal(test_a, test_b)


def test_text_splits_are_nanogpts_90_10_split():
    train = data.load_text("tiny_shakespeare", "train")
    validation = data.load_text(split="validation")
    test = data.load_text(split="test")
    assert (len(train), len(validation), len(test)) == (1_003_854, 55_770, 55_770)
    assert data.load_text(split="validation+test") == validation + test
    full = train + validation + test
    # sha256 of the complete input.txt of karpathy/char-rnn (see data/README.md)
    assert (
        hashlib.sha256(full.encode()).hexdigest() == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    )
    assert train.startswith("First Citizen:") and len(set(full)) == 65


# --- failures: clear and fast ------------------------------------------------


def fails_fast(exc, match, fn, *args, **kwargs):
    start = time.perf_counter()
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)
    assert time.perf_counter() - start < 10


def test_unknown_names_and_splits():
    fails_fast(ValueError, r"name='cifar10'.*mnist, fashion_mnist", data.load_images, "cifar10")
    fails_fast(ValueError, r"name='mnist'.*tiny_shakespeare", data.load_text, "mnist")
    fails_fast(
        ValueError,
        r"split='validation'.*Available splits: train \(23,797\), test \(10,000\)",
        data.load_images,
        "mnist",
        "validation",
    )
    fails_fast(ValueError, r"split='train\[:50000\]'.*23797", data.load_images, "mnist", "train[:50000]")
    fails_fast(TypeError, r"split must be a str", data.load_images, "mnist", 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"value_range": (1.0, 0.0)},
            ValueError,
            r"value_range must be \(low, high\) with low < high, got \(1.0, 0.0\)",
        ),
        ({"value_range": (0.0,)}, ValueError, r"value_range must be a pair"),
        ({"value_range": "01"}, TypeError, r"value_range must be a pair"),
        ({"batch_size": 0}, ValueError, r"batch_size must be >= 1, got 0"),
        ({"batch_size": 2.5}, TypeError, r"batch_size must be an int, got 2.5 \(float\)"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    fails_fast(error, match, data.load_images, "mnist", "test", **kwargs)


def test_loaded_images_declare_their_range():
    ds = data.load_images("mnist", "test[:8]", batch_size=8, value_range=(-1, 1))
    assert ds.value_range == (-1.0, 1.0)
    x = next(iter(ds)).numpy()
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99


def test_missing_shipped_copy_fails_fast_with_how_to(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "SHIPPED_DATA_DIR", tmp_path)
    fails_fast(FileNotFoundError, r"offline mode.*'mnist' is missing.*AIGC_DATA_DIR", data.load_images, "mnist")


def test_explicit_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path))
    fails_fast(FileNotFoundError, r"AIGC_DATA_DIR=.*no prepared 'tiny_shakespeare'", data.load_text)
    monkeypatch.setenv("AIGC_DATA_DIR", str(data.SHIPPED_DATA_DIR))
    assert data.data_source("mnist") == (data.SHIPPED_DATA_DIR, False)


def test_online_source_selection(monkeypatch, tmp_path):
    """Not offline: TFDS's cache, else a download when the host answers, else the shipped copy."""
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("AIGC_DATA_DIR", raising=False)
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tmp_path))
    monkeypatch.setattr(data, "_host_reachable", lambda host, timeout=2.0: True)
    assert data.data_source("mnist") == (tmp_path, True)
    monkeypatch.setattr(data, "_host_reachable", lambda host, timeout=2.0: False)
    assert data.data_source("mnist") == (data.SHIPPED_DATA_DIR, False)
    assert len(data.load_text(split="test")) == 55_770  # the fallback really reads
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    (tmp_path / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
    assert data.data_source("mnist") == (tmp_path, False)  # already in TFDS's cache
    monkeypatch.setattr(data, "SHIPPED_DATA_DIR", tmp_path / "nothing")
    fails_fast(FileNotFoundError, "neither downloadable", data.data_source, "fashion_mnist")


def test_ci_means_offline(monkeypatch):
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    monkeypatch.setenv("CI", "true")
    assert data.is_offline()
    monkeypatch.setenv("CI", "false")
    assert not data.is_offline()


def test_unreachable_host_is_detected_quickly():
    start = time.perf_counter()
    assert not data._host_reachable("nonexistent.invalid", timeout=2.0)
    assert time.perf_counter() - start < 5


# --- the shipped files --------------------------------------------------------


def test_shipped_files_match_their_checksums_and_the_readme():
    sums = (data.SHIPPED_DATA_DIR / "SHA256SUMS").read_text().splitlines()
    readme = (data.SHIPPED_DATA_DIR / "README.md").read_text()
    assert len(sums) == 14
    for line in sums:
        digest, rel = line.split("  ")
        assert hashlib.sha256((data.SHIPPED_DATA_DIR / rel).read_bytes()).hexdigest() == digest, rel
        assert digest in readme, rel


@pytest.mark.slow
@pytest.mark.skipif(not RAW.is_dir(), reason="raw files (../shared/data) not present")
def test_rebuild_is_byte_for_byte():
    proc = subprocess.run(
        [sys.executable, "scripts/build_offline_data.py", "--raw", str(RAW), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "OK: 14 files rebuilt byte for byte" in proc.stdout
