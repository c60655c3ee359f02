"""Train the small CNN classifiers that aigc_tf.metrics uses as feature extractors.

    python scripts/train_classifiers.py            # both datasets
    python scripts/train_classifiers.py --dataset mnist --epochs 6

Trains :func:`aigc_tf.metrics.make_classifier` on the offline MNIST and
Fashion-MNIST train splits (``AIGC_OFFLINE=1`` copies in ``data/``), reports
test accuracy, saves ``aigc_tf/weights/<dataset>_classifier.weights.h5`` and
writes the accuracies into the ``train_classifiers.py`` section of
``benchmarks/RESULTS.md``. Seeded: a re-run on the same machine and library
versions gives the same weights.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("AIGC_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402

import aigc_tf  # noqa: E402
from aigc_tf.data import load_images  # noqa: E402
from aigc_tf.metrics import classifier_weights_path, make_classifier  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## train_classifiers.py"
EPOCHS = {"mnist": 5, "fashion_mnist": 10}


def train(dataset: str, epochs: int, batch_size: int = 128, seed: int = 0) -> dict:
    """Train, evaluate on the test split and save the weights; returns a result row."""
    aigc_tf.set_seed(seed, deterministic=False)
    train_ds = load_images(dataset, "train", batch_size=batch_size, with_labels=True, shuffle=True, seed=seed)
    test_ds = load_images(dataset, "test", batch_size=1000, with_labels=True)
    model = make_classifier()
    steps = sum(1 for _ in train_ds) * epochs
    model.compile(
        # Cosine decay to 0: the last epochs fine-tune, a few tenths of a percent
        # of accuracy over a constant rate at no cost.
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=True,
    )
    start = time.perf_counter()
    model.fit(train_ds, epochs=epochs, verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(test_ds, verbose=0)
    path = classifier_weights_path(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A compiled model's weights file also holds the Adam slots (3x the size):
    # save an uncompiled copy, the weights only.
    bare = make_classifier()
    bare.set_weights(model.get_weights())
    bare.save_weights(path)
    size_kb = path.stat().st_size / 1024
    print(f"{dataset}: test accuracy {accuracy:.4f}, {seconds:.0f} s, {path.name} {size_kb:.0f} KB")
    return {
        "dataset": dataset,
        "accuracy": accuracy,
        "seconds": seconds,
        "epochs": epochs,
        "params": model.count_params(),
        "size_kb": size_kb,
        "n_train": sum(int(x.shape[0]) for x, _ in train_ds),
        "n_test": sum(int(x.shape[0]) for x, _ in test_ds),
    }


def write_results(rows: list[dict]) -> None:
    """Replace (or append) this script's section of RESULTS.md, leaving the others alone."""
    machine = f"{os.cpu_count()} CPU cores, no GPU, {platform.machine()}"
    lines = [
        f"{SECTION} ({datetime.date.today()}, TF {aigc_tf.config.import_tensorflow().__version__}, "
        f"Keras {keras.__version__})",
        "",
        "Feature extractors for the classifier FID/KID in `aigc_tf.metrics` "
        "(offline train splits; weights in `aigc_tf/weights/`).",
        "",
        "| benchmark | machine | profile | time | metric |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| CNN classifier, {r['dataset']} ({r['params']:,} params, {r['epochs']} epochs on "
            f"{r['n_train']:,} train images) | {machine} | cpu | {r['seconds']:.0f} s | "
            f"test accuracy **{100 * r['accuracy']:.2f}%** on {r['n_test']:,} test images |"
        )
    section = "\n".join(lines) + "\n"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        # Keep rows of a dataset not re-trained in this run.
        old = pattern.search(text).group(0)
        kept = [
            ln
            for ln in old.splitlines()
            if ln.startswith("| CNN classifier, ") and not any(f"classifier, {r['dataset']} (" in ln for r in rows)
        ]
        if kept:
            section = section.rstrip("\n") + "\n" + "\n".join(kept) + "\n"
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(EPOCHS), action="append")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    rows = [train(d, args.epochs or EPOCHS[d]) for d in (args.dataset or list(EPOCHS))]
    write_results(rows)


if __name__ == "__main__":
    main()
