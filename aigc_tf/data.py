"""Datasets for the course, online or offline, through tensorflow-datasets.

Where the data come from (checked in this order):

1. ``AIGC_DATA_DIR=/path``: a TFDS ``data_dir`` you prepared yourself; read
   only, nothing is downloaded.
2. ``AIGC_OFFLINE=1`` (or ``CI=true``): the copies shipped in the repository's
   ``data/`` folder (MNIST 23,797 train + 10,000 test images, Fashion-MNIST
   8,517 + 6,978, tiny Shakespeare complete; see ``data/README.md``).
3. Otherwise TFDS's own cache (``~/tensorflow_datasets``) if the dataset is
   already there, else TFDS's normal download when its server answers, else
   the shipped copy (with a note saying so).

Whatever the source, the code that reads is TFDS's ``builder.as_dataset``, the
same as ``tfds.load``. Anything that cannot be had fails at once with a clear
error, never with TFDS's minutes-long download retries.

Splits use TFDS's syntax, so profiles can take a slice: ``"train[:2000]"``,
``"train[:10%]"``, ``"validation+test"``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import tensorflow as tf

from aigc_tf.config import is_offline
from aigc_tf.validation import check_optional_int, check_value_range

#: The repository's ``data/`` folder (a TFDS data_dir).
SHIPPED_DATA_DIR = Path(__file__).resolve().parent.parent / "data"

IMAGE_DATASETS = ("mnist", "fashion_mnist")
TEXT_DATASETS = ("tiny_shakespeare",)

# The host each TFDS builder downloads from: probed (2 s) before a download so
# an offline machine falls back at once instead of retrying for minutes.
_DOWNLOAD_HOSTS = {
    "mnist": "storage.googleapis.com",
    "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    "tiny_shakespeare": "raw.githubusercontent.com",
}

# Versions of the shipped copies: read by version so a newer TFDS (whose
# default version may move on) still finds them.
SHIPPED_VERSIONS = {"mnist": "3.0.1", "fashion_mnist": "3.0.1", "tiny_shakespeare": "1.0.0"}


def import_tfds():
    """Import ``tensorflow_datasets``, failing clearly when it loads only in part.

    TFDS swallows an error inside its own import (a protobuf runtime older than the
    generated code of tensorflow-metadata, say) and leaves a module without
    ``builder``: that would surface later as an ``AttributeError`` from deep inside.

    Raises:
        ImportError: naming the conflict and its fix (``python -m aigc_tf.doctor --fix``).
    """
    import tensorflow_datasets as tfds

    from aigc_tf.doctor import EnvironmentProblem, tfds_problem

    problem = tfds_problem(tfds)
    if problem:
        raise EnvironmentProblem(problem)
    return tfds


def _host_reachable(host: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _is_prepared(name: str, data_dir: Path) -> bool:
    """A prepared TFDS folder holds ``<name>/<version>/dataset_info.json``."""
    return any((data_dir / name).glob("*/dataset_info.json"))


def _how_to_get(name: str) -> str:
    return (
        f"To get '{name}': run online (TFDS downloads it), or set AIGC_OFFLINE=1 to use the "
        f"copy shipped in the repository's data/ folder (clone the repository: "
        f"a pip install without it has no data/), or set AIGC_DATA_DIR to a TFDS data_dir "
        f"that holds it (rebuild the shipped copy with scripts/build_offline_data.py)."
    )


def data_source(name: str) -> tuple[Path, bool]:
    """Where ``name`` will be read from: ``(data_dir, download)``.

    Raises:
        FileNotFoundError: if the chosen source does not hold the dataset and
            nothing may be downloaded.
    """
    tfds = import_tfds()

    explicit = os.environ.get("AIGC_DATA_DIR")
    if explicit:
        data_dir = Path(explicit).expanduser()
        if not _is_prepared(name, data_dir):
            raise FileNotFoundError(
                f"AIGC_DATA_DIR={explicit} has no prepared '{name}' "
                f"(expected {data_dir / name}/<version>/dataset_info.json). {_how_to_get(name)}"
            )
        return data_dir, False
    if is_offline():
        if not _is_prepared(name, SHIPPED_DATA_DIR):
            raise FileNotFoundError(
                f"offline mode: the shipped copy of '{name}' is missing from "
                f"{SHIPPED_DATA_DIR / name}. {_how_to_get(name)}"
            )
        return SHIPPED_DATA_DIR, False
    tfds_home = Path(tfds.core.constants.DATA_DIR).expanduser()
    if _is_prepared(name, tfds_home):
        return tfds_home, False
    if _host_reachable(_DOWNLOAD_HOSTS[name]):
        return tfds_home, True
    if _is_prepared(name, SHIPPED_DATA_DIR):
        print(f"[aigc_tf] offline: reading the shipped copy of '{name}' from {SHIPPED_DATA_DIR}")
        return SHIPPED_DATA_DIR, False
    raise FileNotFoundError(
        f"'{name}' is neither downloadable (no network) nor shipped at {SHIPPED_DATA_DIR / name}. {_how_to_get(name)}"
    )


_VERIFIED: set[tuple[str, str]] = set()  # (data_dir, dataset) whose files passed verify_shipped


def verify_shipped(name: str, data_dir: Path = SHIPPED_DATA_DIR) -> None:
    """Check the shipped copy of ``name`` against ``data/SHA256SUMS`` (once per process; ~20 ms).

    A shard cut short by an interrupted copy, or a ``dataset_info.json`` edited by
    hand, would otherwise fail deep inside TFDS — or at the first batch, without
    the file's name.

    Raises:
        FileNotFoundError: naming a listed file that is missing.
        ValueError: naming a file whose SHA-256 differs from the listed one.
    """
    if (str(data_dir), name) in _VERIFIED:
        return
    sums = data_dir / "SHA256SUMS"
    if not sums.is_file():
        raise FileNotFoundError(f"{sums} is missing: the shipped data cannot be checked. {_how_to_get(name)}")
    fix = "Restore it with `git checkout data/` (or rebuild it with scripts/build_offline_data.py)."
    for line in sums.read_text().splitlines():
        digest, _, relative = line.strip().partition("  ")
        if not relative.startswith(f"{name}/"):
            continue
        path = data_dir / relative
        if not path.is_file():
            raise FileNotFoundError(f"the shipped file {path} is missing. {fix}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"the shipped file {path} is damaged (its SHA-256 differs from {sums}). {fix}")
    _VERIFIED.add((str(data_dir), name))


def _builder(name: str, allowed: tuple[str, ...]):
    """A prepared TFDS builder for ``name`` (downloading it if that is the source)."""
    tfds = import_tfds()

    if name not in allowed:
        raise ValueError(f"name={name!r} is not available; expected one of {', '.join(allowed)}.")
    data_dir, download = data_source(name)
    versioned = name
    if data_dir == SHIPPED_DATA_DIR:
        verify_shipped(name, data_dir)
        versioned = f"{name}:{SHIPPED_VERSIONS[name]}"
    try:
        builder = tfds.builder(versioned, data_dir=os.fspath(data_dir))
    except Exception as error:  # a damaged dataset_info.json: protobuf's ParseError, JSON errors
        raise ValueError(
            f"the prepared '{name}' in {data_dir} cannot be read ({type(error).__name__}: {error}); "
            f"delete {data_dir / name} to download it again. {_how_to_get(name)}"
        ) from error
    if download:
        builder.download_and_prepare()
    missing = [str(p) for split in builder.info.splits.values() for p in split.filepaths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"the prepared '{name}' in {data_dir} lacks {len(missing)} file(s), e.g. {missing[0]}; "
            f"delete {data_dir / name} to download it again. {_how_to_get(name)}"
        )
    return builder


def _check_split(builder, split: str) -> int:
    """Number of examples in ``split``; a clear ValueError for a bad split or slice."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a str such as 'train' or 'train[:1000]', got {split!r}.")
    available = ", ".join(f"{k} ({v.num_examples:,})" for k, v in builder.info.splits.items())
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError, AssertionError) as err:
        raise ValueError(
            f"split={split!r} is not available for '{builder.name}' in {builder.data_dir}: "
            f"{err}. Available splits: {available}."
        ) from None
    if count <= 0:  # TFDS counts train[500:100] as -400
        unit = (
            " (each of its splits is one text: slice the returned string instead)"
            if builder.name in TEXT_DATASETS
            else ""
        )
        raise ValueError(
            f"split={split!r} selects no examples of '{builder.name}'{unit}. Available splits: {available}."
        )
    return count


def info(name: str):
    """TFDS's ``DatasetInfo`` for ``name`` (splits and counts, features, citation)."""
    return _builder(name, IMAGE_DATASETS + TEXT_DATASETS).info


def load_images(
    name: str,
    split: str = "train",
    *,
    batch_size: int | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    with_labels: bool = False,
    shuffle: bool | None = None,
    seed: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """MNIST or Fashion-MNIST as a ready-to-train ``tf.data.Dataset``.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        split: a TFDS split, e.g. ``"train"``, ``"test"``, ``"train[:5000]"``.
        batch_size: batch the examples (``None``: single examples).
        value_range: pixels are scaled linearly from [0, 255] to this range,
            e.g. ``(-1.0, 1.0)`` for a tanh generator.
        with_labels: yield ``(image, label)`` with ``label`` an int64 scalar.
        shuffle: reshuffle every epoch; default: True for splits starting with
            ``"train"``, False otherwise.
        seed: shuffle seed, for a repeatable order.
        drop_remainder: drop a last, smaller batch (static batch shapes for XLA
            or several replicas).

    Returns:
        A dataset of float32 images shaped ``(28, 28, 1)`` (or
        ``(batch, 28, 28, 1)``), cached in memory and prefetched.
    """
    low, high = check_value_range(value_range)
    check_optional_int("batch_size", batch_size, minimum=1)
    builder = _builder(name, IMAGE_DATASETS)
    num_examples = _check_split(builder, split)
    if shuffle is None:
        shuffle = split.startswith("train")

    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    ds = ds.cache()  # decoded uint8 images: ~0.8 kB each, cheap to keep in memory
    if shuffle:
        ds = ds.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def to_float(image, label):
        # Divide first: for the default (0, 1) the pixels are exactly uint8 / 255.
        image = tf.cast(image, tf.float32) / 255.0 * (high - low) + low
        return (image, label) if with_labels else image

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    ds.value_range = (low, high)  # declared, as models declare theirs (see aigc_tf.images)
    return ds


def load_text(name: str = "tiny_shakespeare", split: str = "train") -> str:
    """The text of a split (or of several: ``"validation+test"``) as one ``str``.

    tiny Shakespeare's TFDS splits are the first 90 % (train), the next 5 %
    (validation) and the last 5 % (test) of the 1,115,394-character file, so
    ``"validation+test"`` is exactly nanoGPT's validation text.
    """
    builder = _builder(name, TEXT_DATASETS)
    _check_split(builder, split)
    ds = builder.as_dataset(split=split, shuffle_files=False)
    return "".join(example["text"].decode("utf-8") for example in ds.as_numpy_iterator())


__all__ = [
    "IMAGE_DATASETS",
    "SHIPPED_DATA_DIR",
    "TEXT_DATASETS",
    "data_source",
    "info",
    "is_offline",
    "load_images",
    "load_text",
    "verify_shipped",
]
