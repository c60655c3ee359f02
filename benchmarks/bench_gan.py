"""GAN benchmarks.

Three measurements, each in one process:

* ``--throughput``: train-step throughput (images/s) of :class:`aigc_tf.gan.DCGAN`
  vs a plain, idiomatic Keras GAN of the *same* generator and discriminator,
  written the way the Keras guide "Customizing what happens in fit()" writes one
  (real and fake images concatenated into one D batch, noisy labels,
  ``keras.losses.BinaryCrossentropy(from_logits=True)``, "misleading" labels for
  G, default ``compile``). The plain step passes ``training=True`` to both
  networks so the two models do the same arithmetic. Same in-memory batches,
  same process, runs interleaved, best of ``repeats``; the row also gives the
  ratio with equal compile flags.
* ``--quality``: DCGAN on the offline MNIST train split for the profile's wall
  budget (``cpu``: 8 minutes, half-width networks, batch 64, Adam 5e-4, no dropout in D,
  default compile: XLA makes this step slower on a CPU), then ``--samples`` generated images (10,000 at
  ``cpu``) scored against the 10,000-image test set with the shipped MNIST
  classifier (:mod:`aigc_tf.metrics`): classifier FID and KID (*not*
  comparable with Inception FID), recognisable rate (share classified with
  confidence >= 0.9; target >= 90%) and class coverage (all 10 digits present).
  The floor is the same scores for 10,000 real *train* images against the test set.
  ``--conditional`` runs the same measurement for :class:`aigc_tf.gan.ConditionalGAN`
  (10,000 samples, the ten digits in turn) and adds the share classified as the requested digit;
  ``--clustered`` runs it for :class:`aigc_tf.gan.ClusteredGAN` (k-means on the pixels, 50 clusters,
  no labels; the k-means time is reported and counts towards the profile's 10 minutes).
* ``--trials``: training recipes for the cpu-profile DCGAN (learning rates, D dropout, D width)
  compared at a fixed number of steps (3,000 at ``cpu``).

Rows are appended to ``benchmarks/RESULTS.md`` (``--results`` to change,
``--no-results`` to only print).

Usage::

    AIGC_PROFILE=cpu python benchmarks/bench_gan.py               # throughput and DCGAN quality
    AIGC_PROFILE=cpu python benchmarks/bench_gan.py --quality --conditional
    AIGC_PROFILE=cpu python benchmarks/bench_gan.py --quality --clustered
    AIGC_PROFILE=cpu python benchmarks/bench_gan.py --trials
    AIGC_PROFILE=smoke python benchmarks/bench_gan.py --no-results  # a quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("AIGC_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

from aigc_tf.callbacks import TimeBudget  # noqa: E402
from aigc_tf.config import get_profile, pick  # noqa: E402
from aigc_tf.data import load_images  # noqa: E402
from aigc_tf.gan import DCGAN, ClusteredGAN, ConditionalGAN, make_discriminator, make_generator  # noqa: E402
from aigc_tf.metrics import classifier_outputs, evaluate_samples  # noqa: E402

HEADER = "| benchmark | machine | profile | time | metric |\n|---|---|---|---|---|\n"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

#: How aigc_tf trains (quality run, notebook): XLA, and several steps per call
#: into TensorFlow so the Python loop's per-step overhead is paid less often.
FAST_COMPILE = dict(jit_compile=True, steps_per_execution=20)


def machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"{os.cpu_count()} CPU cores{', ' + str(len(gpus)) + ' GPU' if gpus else ', no GPU'}, {platform.machine()}"


def row(benchmark: str, profile: str, seconds: float, metric: str) -> str:
    return f"| {benchmark} | {machine()} | {profile} | {seconds:.1f} s | {metric} |\n"


def adam(learning_rate: float) -> keras.optimizers.Adam:
    """One player's optimizer: Adam with beta_1 = 0.5, as in DCGAN."""
    return keras.optimizers.Adam(learning_rate, beta_1=0.5)


def model_size(profile: str) -> dict:
    """The DCGAN trained at each profile (the throughput run times exactly this)."""
    return pick(
        # Half the default channels on a CPU: ~4x less work per image, so ~4x more
        # steps in the budget, which matters more for a GAN than the width here.
        smoke=dict(latent_dim=128, generator_filters=(64, 32), discriminator_filters=(32, 64)),
        cpu=dict(latent_dim=128, generator_filters=(64, 32), discriminator_filters=(32, 64)),
        gpu=dict(latent_dim=128, generator_filters=(256, 128), discriminator_filters=(64, 128)),
        profile=profile,
    )


def describe(size: dict) -> str:
    g = "-".join(map(str, size["generator_filters"]))
    d = "-".join(map(str, size["discriminator_filters"]))
    return f"G {g}, D {d}, latent {size['latent_dim']}"


# --------------------------------------------------------------------------- #
# The baseline: a plain Keras GAN, the way the Keras guide writes one.
# --------------------------------------------------------------------------- #


class PlainGAN(keras.Model):
    """The Keras guide's GAN, with training=True added (same arithmetic as DCGAN)."""

    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.seed_generator = keras.random.SeedGenerator(1337)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(self, d_optimizer, g_optimizer, loss_fn, **kwargs):
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn

    def train_step(self, real_images):
        batch_size = ops.shape(real_images)[0]
        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        generated = self.generator(z, training=True)
        combined = ops.concatenate([generated, real_images], axis=0)
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(ops.shape(labels), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            predictions = self.discriminator(combined, training=True)
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        z = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        misleading_labels = ops.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            predictions = self.discriminator(self.generator(z, training=True), training=True)
            g_loss = self.loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}


def plain_gan(latent_dim: int, generator_filters, discriminator_filters) -> PlainGAN:
    return PlainGAN(
        make_discriminator((28, 28, 1), discriminator_filters),
        make_generator(latent_dim, (28, 28, 1), generator_filters),
        latent_dim,
    )


# --------------------------------------------------------------------------- #
# Throughput.
# --------------------------------------------------------------------------- #


def bench_throughput(profile: str, batch: int = 128) -> list[str]:
    """Images/s of the train step, aigc_tf DCGAN vs the plain Keras GAN."""
    steps = pick(smoke=20, cpu=60, gpu=400, profile=profile)
    repeats = pick(smoke=2, cpu=5, gpu=5, profile=profile)
    size = model_size(profile)
    rng = np.random.default_rng(0)
    x = np.where(rng.random((steps * batch, 28, 28, 1)) < 0.13, 1.0, -1.0).astype("float32")  # MNIST-like ink
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).cache()
    list(data)  # fill the cache before timing

    def make(kind: str, flags: dict) -> keras.Model:
        keras.utils.set_random_seed(0)
        if kind == "aigc_tf":
            model = DCGAN(**size, seed=0)
            model.compile(d_optimizer=adam(2e-4), g_optimizer=adam(2e-4), **flags)
        else:
            model = plain_gan(**size)
            model.compile(adam(2e-4), adam(2e-4), keras.losses.BinaryCrossentropy(from_logits=True), **flags)
        model.fit(data.take(20), epochs=1, verbose=0)  # trace/compile outside the timing
        return model

    configs = {
        "aigc_tf DCGAN, FAST_COMPILE": ("aigc_tf", FAST_COMPILE),
        "aigc_tf DCGAN, default compile": ("aigc_tf", {}),
        "plain Keras GAN, default compile": ("plain", {}),
        "plain Keras GAN, FAST_COMPILE": ("plain", FAST_COMPILE),
    }
    models = {name: make(*cfg) for name, cfg in configs.items()}
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu_times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):  # interleaved, best of `repeats`: on a shared machine
        for name, model in models.items():  # the fastest run is the least disturbed
            start, cpu_start = time.perf_counter(), time.process_time()
            model.fit(data, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    rate = {name: steps * batch / min(t) for name, t in times.items()}
    # CPU seconds used by the process: insensitive to waiting for a core a
    # neighbour holds, so it compares the models' work on a busy machine.
    cpu_rate = {name: steps * batch / min(t) for name, t in cpu_times.items()}
    for name in configs:
        print(
            f"  {name:36s} {rate[name]:8,.0f} images/s  {cpu_rate[name]:8,.0f} images/CPU-s  "
            f"(wall: {', '.join(f'{t:.2f}' for t in times[name])} s)"
        )
    total = sum(sum(t) for t in times.values())
    ours, base = rate["aigc_tf DCGAN, FAST_COMPILE"], rate["plain Keras GAN, default compile"]
    same_fast = ours / rate["plain Keras GAN, FAST_COMPILE"]
    same_default = rate["aigc_tf DCGAN, default compile"] / base
    cpu_ratio = cpu_rate["aigc_tf DCGAN, FAST_COMPILE"] / cpu_rate["plain Keras GAN, default compile"]
    return [
        row(
            f"GAN train step ({describe(size)}, batch {batch}, {steps} steps, best of {repeats})",
            profile,
            total,
            f"aigc_tf (jit_compile=True, steps_per_execution=20) {ours:,.0f} img/s vs plain Keras GAN "
            f"(default compile) {base:,.0f} img/s: **{ours / base:.2f}x** (target >= 1.3x); "
            f"same flags on both: {same_fast:.2f}x (XLA + 20 steps/call), {same_default:.2f}x (default compile); "
            f"images per CPU-second: {cpu_ratio:.2f}x",
        )
    ]


# --------------------------------------------------------------------------- #
# Quality.
# --------------------------------------------------------------------------- #


def _images(split: str, value_range=(0.0, 1.0)) -> np.ndarray:
    return np.concatenate(
        list(load_images("mnist", split, batch_size=2000, value_range=value_range).as_numpy_iterator())
    )


def _scores(s: dict) -> str:
    cov = s["coverage"]
    return (
        f"classifier FID **{s['classifier_fid']:.2f}**, KID {s['classifier_kid']:.4f}, "
        f"recognisable {100 * s['recognisable_rate']:.1f}%, {cov['classes_present']}/10 classes, "
        f"coverage entropy {cov['entropy']:.3f}, class share {100 * cov['min_share']:.1f}-{100 * cov['max_share']:.1f}%"
    )


def bench_quality(
    profile: str,
    num_samples: int | None = None,
    budget: float | None = None,
    batch: int | None = None,
    learning_rate: float | None = None,
    dropout: float | None = None,
    final_lr_fraction: float = 1.0,
    conditional: bool = False,
    clustered: bool = False,
    num_clusters: int = 50,
    generator_filters: tuple[int, ...] | None = None,
) -> list[str]:
    """Time-budgeted DCGAN (or ConditionalGAN, or ClusteredGAN) on MNIST, scored with the shipped classifier.

    The conditional model is asked for the ten digits in turn (``n / 10`` of each), and the
    row also gives the share of samples the classifier reads as the requested digit. The
    clustered model first runs k-means on the training pixels (timed); its row gives the
    clusters' purity against the true labels, which the model never sees. ``generator_filters``
    overrides the profile's generator width.
    """
    keras.utils.set_random_seed(0)
    size = model_size(profile)
    if generator_filters:
        size = {**size, "generator_filters": tuple(generator_filters)}
    budget = budget or pick(smoke=20, cpu=8 * 60, gpu=5 * 60, profile=profile)  # seconds of training
    # A short CPU budget: a higher learning rate and no dropout in D got furthest in 3,000-step trials
    # (recognisable 60% vs 48% for the DCGAN defaults, lr 2e-4 and dropout 0.3; see RESULTS.md).
    learning_rate = learning_rate or pick(smoke=5e-4, cpu=5e-4, gpu=2e-4, profile=profile)
    dropout = pick(smoke=0.0, cpu=0.0, gpu=0.3, profile=profile) if dropout is None else dropout
    n = num_samples or pick(smoke=1000, cpu=10_000, gpu=10_000, profile=profile)
    test_split = pick(smoke="test[:1000]", cpu="test", gpu="test", profile=profile)
    batch = batch or pick(smoke=64, cpu=64, gpu=128, profile=profile)

    train = load_images(
        "mnist", "train", batch_size=batch, value_range=(-1, 1), seed=0, drop_remainder=True, with_labels=conditional
    )
    test = _images(test_split)
    floor_real = _images(f"train[:{len(test)}]")

    cluster_note, kmeans_seconds = "", 0.0
    if conditional:
        model = ConditionalGAN(10, **size, dropout=dropout, seed=0)
    elif clustered:
        model = ClusteredGAN(num_clusters, **size, dropout=dropout, seed=0)
        start = time.perf_counter()
        model.fit_clusters(train)
        kmeans_seconds = time.perf_counter() - start
        # For the record only: the model never sees the labels.
        purity = model.cluster_purity(
            load_images("mnist", "train", batch_size=2000, value_range=(-1, 1), with_labels=True)
        )
        cluster_note = (
            f"k-means {kmeans_seconds:.0f} s ({num_clusters} clusters on the pixels, purity "
            f"{100 * purity:.1f}% against the unused labels); "
        )
        print(f"  {cluster_note}")
    else:
        model = DCGAN(**size, dropout=dropout, seed=0)
    model.compile(d_optimizer=adam(learning_rate), g_optimizer=adam(learning_rate))  # default compile: no XLA on a CPU
    # Constant learning rates, as in DCGAN, unless final_lr_fraction < 1 asks for a cosine down to that fraction.
    decay = final_lr_fraction < 1.0
    budget_cb = TimeBudget(
        budget, peak_lr=learning_rate if decay else None, final_fraction=final_lr_fraction, verbose=False
    )
    start = time.perf_counter()
    history = model.fit(train, epochs=10**6, verbose=0, callbacks=[budget_cb]).history
    train_seconds = time.perf_counter() - start + kmeans_seconds
    epochs, steps = len(history["d_loss"]), int(model.g_optimizer.iterations)
    for e in range(epochs):
        print("  epoch", e + 1, "  ".join(f"{k} {v[e]:.3f}" for k, v in history.items()))

    start = time.perf_counter()
    requested = np.arange(n) % 10
    what = requested if conditional else n  # ClusteredGAN.generate(n) draws the clusters by their shares
    samples = model.generate(what, seed=0)
    gen = evaluate_samples(samples, test, "mnist", value_range=(-1, 1))
    raw = evaluate_samples(model.generate(what, seed=0, average=False), test, "mnist", value_range=(-1, 1))
    # Discriminator rejection sampling from the averaged generator (bound: D's 95th percentile).
    drs_start = time.perf_counter()
    drs_samples = model.generate_rejection(what, seed=0)
    drs_seconds = time.perf_counter() - drs_start
    drs = evaluate_samples(drs_samples, test, "mnist", value_range=(-1, 1))
    as_requested = ""
    if conditional:
        _, probs = classifier_outputs(samples, "mnist", value_range=(-1, 1))
        as_requested = f"classified as the requested digit {100 * np.mean(probs.argmax(1) == requested):.1f}%; "
    floor = evaluate_samples(floor_real, test, "mnist", value_range=(0, 1))
    eval_seconds = time.perf_counter() - start
    print(
        f"  averaged G: {_scores(gen)}\n  raw G:      {_scores(raw)}\n"
        f"  averaged G + rejection sampling ({drs_seconds:.0f} s): {_scores(drs)}\n  floor:      {_scores(floor)}\n"
        f"  evaluation: {eval_seconds:.0f} s"
    )

    target = pick(
        smoke="smoke run, no target",
        cpu="target: recognisable >= 90%, 10/10 classes",
        gpu="target: recognisable >= 90%, 10/10 classes",
        profile=profile,
    )
    kind = "ConditionalGAN" if conditional else f"ClusteredGAN ({num_clusters} clusters)" if clustered else "DCGAN"
    return [
        row(
            f"{kind} quality, MNIST ({describe(size)}, D dropout {dropout}, Adam {learning_rate:g}"
            f"{f' with a cosine to {final_lr_fraction:g}x over the budget' if final_lr_fraction < 1 else ''}; {steps} steps = {epochs} epochs of batch {batch} on the "
            f"23,797-image offline train set; {n:,} samples vs {len(test):,} test images, shipped MNIST classifier)",
            profile,
            train_seconds,
            f"{cluster_note}{as_requested}averaged generator (EMA {model.ema_decay}): {_scores(gen)} ({target}); raw generator: "
            f"classifier FID {raw['classifier_fid']:.2f}, recognisable {100 * raw['recognisable_rate']:.1f}%, "
            f"{raw['coverage']['classes_present']}/10 classes; averaged generator with discriminator rejection sampling "
            f"(bound at D's 95th percentile, {drs_seconds:.0f} s for {n:,}): {_scores(drs)}; floor, {len(floor_real):,} real train images vs test: "
            f"classifier FID {floor['classifier_fid']:.2f}, KID {floor['classifier_kid']:.4f}, "
            f"recognisable {100 * floor['recognisable_rate']:.1f}%; eval {eval_seconds:.0f} s",
        )
    ]


# Recipe trials at a fixed number of steps: (name, D dropout, (D lr, G lr), discriminator_filters).
TRIALS = [
    ("DCGAN defaults (lr 2e-4, D dropout 0.3)", 0.3, (2e-4, 2e-4), (32, 64)),
    ("lr 5e-4", 0.3, (5e-4, 5e-4), (32, 64)),
    ("D dropout 0", 0.0, (2e-4, 2e-4), (32, 64)),
    ("two time scales (D 4e-4, G 1e-4)", 0.3, (4e-4, 1e-4), (32, 64)),
    ("lr 5e-4, D dropout 0", 0.0, (5e-4, 5e-4), (32, 64)),
    ("lr 1e-3", 0.3, (1e-3, 1e-3), (32, 64)),
    ("lr 5e-4, D twice as wide (64-128)", 0.3, (5e-4, 5e-4), (64, 128)),
]


def bench_trials(profile: str, steps: int | None = None) -> list[str]:
    """Training recipes for the cpu-profile DCGAN compared at a fixed number of steps (default compile)."""
    steps = steps or pick(smoke=30, cpu=3000, gpu=3000, profile=profile)
    n = pick(smoke=500, cpu=5000, gpu=5000, profile=profile)
    test = _images(f"test[:{n}]")
    size = model_size(profile)
    rows = []
    for name, dropout, (lr_d, lr_g), d_filters in TRIALS:
        keras.utils.set_random_seed(0)
        train = load_images("mnist", "train", batch_size=64, value_range=(-1, 1), seed=0, drop_remainder=True).repeat()
        model = DCGAN(**{**size, "discriminator_filters": d_filters}, dropout=dropout, seed=0)
        model.compile(d_optimizer=adam(lr_d), g_optimizer=adam(lr_g))
        start = time.perf_counter()
        model.fit(train, steps_per_epoch=steps // 3, epochs=3, verbose=0)
        seconds = time.perf_counter() - start
        avg = evaluate_samples(model.generate(n, seed=0), test, "mnist", value_range=(-1, 1))
        raw = evaluate_samples(model.generate(n, seed=0, average=False), test, "mnist", value_range=(-1, 1))
        print(
            f"  {name}: {seconds:.0f} s; averaged {_scores(avg)}; raw recognisable {100 * raw['recognisable_rate']:.1f}%"
        )
        rows.append(
            row(
                f"DCGAN recipe trial, {name} ({describe({**size, 'discriminator_filters': d_filters})}; "
                f"{int(model.g_optimizer.iterations)} steps of batch 64; {n:,} samples vs {n:,} test images)",
                profile,
                seconds,
                f"{1000 * seconds / steps:.0f} ms/step; averaged G: classifier FID {avg['classifier_fid']:.1f}, "
                f"recognisable {100 * avg['recognisable_rate']:.1f}%, {avg['coverage']['classes_present']}/10 classes; "
                f"raw G: FID {raw['classifier_fid']:.1f}, recognisable {100 * raw['recognisable_rate']:.1f}%",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--throughput", action="store_true", help="train-step throughput vs a plain Keras GAN")
    parser.add_argument("--quality", action="store_true", help="time-budgeted MNIST training, classifier FID/KID etc.")
    parser.add_argument("--trials", action="store_true", help="training recipes compared at a fixed step count")
    parser.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $AIGC_PROFILE or by hardware)")
    parser.add_argument("--samples", type=int, default=None, help="generated images scored (default by profile)")
    parser.add_argument("--budget", type=float, default=None, help="training seconds (default by profile: 20/480/300)")
    parser.add_argument("--lr", type=float, default=None, help="quality run's Adam learning rate (default by profile)")
    parser.add_argument("--dropout", type=float, default=None, help="quality run's D dropout (default by profile)")
    parser.add_argument("--conditional", action="store_true", help="quality run: ConditionalGAN instead of DCGAN")
    parser.add_argument(
        "--clustered",
        action="store_true",
        help="quality run: ClusteredGAN (k-means clusters, no labels) instead of DCGAN",
    )
    parser.add_argument(
        "--final-lr-fraction",
        type=float,
        default=1.0,
        help="quality run: decay the learning rate along a cosine to this fraction (1: constant)",
    )
    parser.add_argument(
        "--generator-filters",
        type=lambda s: tuple(int(f) for f in s.split(",")),
        default=None,
        help="quality run's generator channels, e.g. 128,64 (default by profile)",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="quality run's batch size (default by profile: 64/64/128)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the rows are appended to")
    parser.add_argument("--no-results", action="store_true", help="print the rows only")
    args = parser.parse_args(argv)
    profile = args.profile or get_profile()
    if not (args.throughput or args.quality or args.trials):
        args.throughput = args.quality = True

    rows: list[str] = []
    if args.throughput:
        rows += bench_throughput(profile)
    if args.trials:
        rows += bench_trials(profile)
    if args.quality:
        rows += bench_quality(
            profile,
            args.samples,
            args.budget,
            args.batch,
            args.lr,
            args.dropout,
            args.final_lr_fraction,
            args.conditional,
            args.clustered,
            generator_filters=args.generator_filters,
        )
    table = HEADER + "".join(rows)
    print(table)
    if not args.no_results:
        new_file = not args.results.exists() or not args.results.read_text().strip()
        with args.results.open("a") as f:
            if new_file:
                f.write("# Benchmark results\n\n")
            load = os.getloadavg()[0]
            f.write(
                f"\n## bench_gan.py ({time.strftime('%Y-%m-%d')}, TF {tf.__version__}, Keras {keras.__version__}, "
                f"1-min load average {load:.1f} at the end)\n\n"
            )
            f.write(table)


if __name__ == "__main__":
    main()
