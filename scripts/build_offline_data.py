#!/usr/bin/env python
"""Rebuild the offline datasets in ``data/`` from the raw files, byte for byte.

The raw files (official IDX archives, some only as a byte prefix of the
official ``.gz``, and tiny Shakespeare's ``input.txt``) are described, with
their origin and checksums, in ``data/README.md``. This script

1. checks every raw file against its sha256,
2. decodes the IDX archives (a truncated gzip stream is fine: it decodes to a
   prefix of the data, i.e. the first N official images),
3. runs tensorflow-datasets' *own* ``mnist`` / ``fashion_mnist`` /
   ``tiny_shakespeare`` builders on them, without any download, and
4. writes ``<out>/<name>/<version>/`` exactly as ``tfds.load`` expects it.

Usage::

    python scripts/build_offline_data.py --raw ../shared/data --out data

Re-running it reproduces the shipped files byte for byte (``--check`` compares
the sha256 of every file against ``data/SHA256SUMS`` instead of writing).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

# The raw inputs: path under --raw -> sha256. See data/README.md for origin.
RAW_FILES = {
    "mnist/train-images-idx3-ubyte.gz.part": "f6db78e3722613e100ab6d068139a930679901e3845bb815f18ee276b166b866",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "fashion_mnist/train-images-idx3-ubyte.gz.part": "7988dad197e0b7826e2ecff2b0e4f4703ef66eb289a4e8316299f385536982d6",
    "fashion_mnist/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "fashion_mnist/t10k-images-idx3-ubyte.gz.part": "6bed1ef94b0384773722458e4a5a7d381960684b7d78ee3aef2bea1457d58575",
    "fashion_mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "tiny_shakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
}

# Every complete image the raw files hold (the .part files limit the counts).
IMAGE_SPLITS = {
    "mnist": {"train": 23_797, "test": 10_000},
    "fashion_mnist": {"train": 8_517, "test": 6_978},
}
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_raw(raw: Path, name: str) -> Path:
    """A raw file may be complete (``x.gz``) or a prefix (``x.gz.part``)."""
    for candidate in (raw / name, raw / (name + ".part")):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"raw file {raw / name}[.part] not found")


def gunzip_prefix(src: Path, dst: Path) -> int:
    """Decompress a gzip file that may be cut off; return the bytes written."""
    data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(src.read_bytes())
    dst.write_bytes(data)
    return len(data)


def deterministic_serialization() -> None:
    """Make TFDS write each tf.train.Example with its feature map in sorted order.

    Protobuf serialises map fields in an order that changes from process to
    process ("image" before "label" in one run, after it in the next), so
    without this the records would hold the same data in different bytes.
    """
    from tensorflow_datasets.core import example_serializer

    def serialize_example(self, example):
        return self.get_tf_example(example).SerializeToString(deterministic=True)

    example_serializer.ExampleSerializer.serialize_example = serialize_example


def verify_raw(raw: Path) -> None:
    for rel, expected in RAW_FILES.items():
        path = raw / rel
        if not path.exists():
            sys.exit(f"missing raw file: {path}")
        if sha256(path) != expected:
            sys.exit(f"checksum mismatch: {path}")


def build_images(name: str, raw: Path, out: Path, work: Path) -> None:
    """Run TFDS's own MNIST/Fashion-MNIST builder on (prefixes of) the IDX files."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    paths = {}
    for split, (images, labels) in IDX_NAMES.items():
        for kind, fname in (("data", images), ("labels", labels)):
            dst = work / name / fname.removesuffix(".gz")
            dst.parent.mkdir(parents=True, exist_ok=True)
            gunzip_prefix(find_raw(raw / name, fname), dst)
            paths[f"{split}_{kind}"] = os.fspath(dst)

    def split_generators(self, dl_manager):  # replaces the downloading version
        return [
            tfds.core.SplitGenerator(
                name=split,
                gen_kwargs=dict(
                    num_examples=count,
                    data_path=paths[f"{split}_data"],
                    label_path=paths[f"{split}_labels"],
                ),
            )
            for split, count in IMAGE_SPLITS[name].items()
        ]

    original = tfds_mnist.MNIST._split_generators
    tfds_mnist.MNIST._split_generators = split_generators  # FashionMNIST inherits it
    try:
        tfds.builder(name, data_dir=os.fspath(work / "tfds")).download_and_prepare()
    finally:
        tfds_mnist.MNIST._split_generators = original
    copy_prepared(name, work / "tfds", out)


def build_text(raw: Path, out: Path, work: Path) -> None:
    """TFDS's tiny_shakespeare builder accepts the raw file as its manual download."""
    import tensorflow_datasets as tfds

    manual = raw / "tiny_shakespeare"
    builder = tfds.builder("tiny_shakespeare", data_dir=os.fspath(work / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    copy_prepared("tiny_shakespeare", work / "tfds", out)


def copy_prepared(name: str, tfds_dir: Path, out: Path) -> None:
    """Ship only ``<name>/<version>/`` (TFDS's download cache is not needed)."""
    (version_dir,) = [p for p in (tfds_dir / name).iterdir() if p.is_dir()]
    dst = out / name / version_dir.name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(version_dir, dst)


def checksums(out: Path) -> dict[str, str]:
    """sha256 of every prepared file under ``out`` (the README's table)."""
    return {
        p.relative_to(out).as_posix(): sha256(p)
        for name in ("mnist", "fashion_mnist", "tiny_shakespeare")
        for p in sorted((out / name).rglob("*"))
        if p.is_file()
    }


def main(argv: list[str] | None = None) -> int:
    deterministic_serialization()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--raw",
        type=Path,
        default=Path(__file__).resolve().parents[1].parent / "shared" / "data",
        help="folder with the raw files (default: ../shared/data)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "data",
        help="TFDS data_dir to write (default: data/)",
    )
    parser.add_argument(
        "--check", action="store_true", help="rebuild into a temporary folder and compare with <out>/SHA256SUMS"
    )
    args = parser.parse_args(argv)

    verify_raw(args.raw)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        target = tmp / "out" if args.check else args.out
        target.mkdir(parents=True, exist_ok=True)
        for name in IMAGE_SPLITS:
            build_images(name, args.raw, target, tmp / "work")
        build_text(args.raw, target, tmp / "work")
        sums = checksums(target)
    lines = "".join(f"{digest}  {path}\n" for path, digest in sums.items())
    sums_file = args.out / "SHA256SUMS"
    if args.check:
        if sums_file.read_text() != lines:
            print("MISMATCH: rebuilt data differ from", sums_file)
            return 1
        print(f"OK: {len(sums)} files rebuilt byte for byte")
        return 0
    sums_file.write_text(lines)
    print(f"wrote {len(sums)} files under {args.out} and {sums_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
