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
import tempfile
import time
from _harness import add_common_arguments, compare_train_steps, ratio_summary, row, run_modes
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.callbacks import TimeBudget
from aigc_tf.config import get_profile
from aigc_tf.data import load_images
from aigc_tf.gan import DCGAN, make_discriminator, make_generator
from aigc_tf.metrics import classifier_outputs, evaluate_samples
from aigc_tf.recipes import Recipe, get_recipe

#: How aigc_tf trains (quality run, notebook): XLA, and several steps per call
#: into TensorFlow so the Python loop's per-step overhead is paid less often.
FAST_COMPILE = dict(jit_compile=True, steps_per_execution=20)


def describe(size: dict) -> str:
    g = "-".join(map(str, size["generator_filters"]))
    d = "-".join(map(str, size["discriminator_filters"]))
    return f"G {g}, D {d}, latent {size['latent_dim']}"


def adam(learning_rate: float) -> keras.optimizers.Adam:
    """One player's optimizer at a given learning rate: Adam with beta_1 = 0.5, as in DCGAN (the trials)."""
    return keras.optimizers.Adam(learning_rate, beta_1=0.5)


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


def plain_gan(latent_dim: int, generator_filters, discriminator_filters, dropout: float) -> PlainGAN:
    """The guide's GAN around the package's own networks: the same architecture by construction."""
    return PlainGAN(
        make_discriminator((28, 28, 1), discriminator_filters, dropout),
        make_generator(latent_dim, (28, 28, 1), generator_filters),
        latent_dim,
    )


# --------------------------------------------------------------------------- #
# Throughput.
# --------------------------------------------------------------------------- #


def bench_throughput(recipe: Recipe, batch: int = 128) -> list[str]:
    """Images/s of the train step, aigc_tf DCGAN vs the plain Keras GAN (the recipe's networks and optimizer)."""
    steps, rounds = recipe.benchmark["throughput_steps"], recipe.benchmark["rounds"]
    size = dict(recipe.model)
    rng = np.random.default_rng(0)
    x = np.where(rng.random((steps * batch, 28, 28, 1)) < 0.13, 1.0, -1.0).astype("float32")  # MNIST-like ink
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True).cache()
    list(data)  # fill the cache before timing

    def make(kind: str, flags: dict) -> keras.Model:
        keras.utils.set_random_seed(0)
        if kind == "aigc_tf":
            model = DCGAN(**size, seed=0)
            model.compile(d_optimizer=recipe.build_optimizer(), g_optimizer=recipe.build_optimizer(), **flags)
        else:
            model = plain_gan(**size)
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
            model.compile(recipe.build_optimizer(), recipe.build_optimizer(), loss, **flags)
        return model

    configs = {
        "aigc_tf DCGAN, FAST_COMPILE": ("aigc_tf", FAST_COMPILE),
        "aigc_tf DCGAN, default compile": ("aigc_tf", {}),
        "plain Keras GAN, default compile": ("plain", {}),
        "plain Keras GAN, FAST_COMPILE": ("plain", FAST_COMPILE),
    }
    models = {name: make(*cfg) for name, cfg in configs.items()}
    result = compare_train_steps(models, data, steps=steps, batch=batch, rounds=rounds)
    return [
        row(
            f"GAN train step, images/s ({describe(size)}, D dropout {size['dropout']}, batch {batch}, {steps} steps, "
            f"best of {rounds}, interleaved)",
            recipe.profile,
            result.total_seconds,
            ratio_summary(
                result,
                "aigc_tf DCGAN, FAST_COMPILE",
                "plain Keras GAN, default compile",
                ("XLA + 20 steps/call", "plain Keras GAN, FAST_COMPILE"),
                "aigc_tf DCGAN, default compile",
            ),
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


def bench_quality(recipe: Recipe, final_lr_fraction: float = 1.0) -> list[str]:
    """Time-budgeted DCGAN (or ConditionalGAN, or ClusteredGAN) on MNIST, scored with the shipped classifier.

    ``recipe`` (kind ``dcgan``, ``cgan`` or ``clustered-gan``) gives the networks, optimizer, batch,
    budget (``budgets["benchmark"]``) and sample count. The conditional model is asked for the ten
    digits in turn (``n / 10`` of each), and the row also gives the share of samples the classifier
    reads as the requested digit. The clustered model first runs k-means on the training pixels
    (timed); its row gives the clusters' purity against the true labels, which the model never sees.
    """
    keras.utils.set_random_seed(0)
    profile, size = recipe.profile, dict(recipe.model)
    conditional, clustered = recipe.kind == "cgan", recipe.kind == "clustered-gan"
    budget, batch = recipe.budget("benchmark"), recipe.batch_size
    learning_rate, dropout = recipe.optimizer["learning_rate"], size["dropout"]
    n, test_split = recipe.benchmark["num_samples"], recipe.evaluation["test_split"]
    num_clusters = size.get("num_clusters", 0)

    train = load_images(
        "mnist", "train", batch_size=batch, value_range=(-1, 1), seed=0, drop_remainder=True, with_labels=conditional
    )
    test = _images(test_split)
    test_labels = np.concatenate(
        [y for _, y in load_images("mnist", test_split, batch_size=2000, with_labels=True).as_numpy_iterator()]
    )
    floor_real = _images(f"train[:{len(test)}]")

    def balanced_fid(images) -> float:  # FID against the test images subsampled to an equal count per digit
        return evaluate_samples(images, test, "mnist", reference_labels=test_labels, balanced=True)["classifier_fid"]

    cluster_note, kmeans_seconds = "", 0.0
    model = recipe.build_model(seed=0)
    if clustered:
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
    recipe.compile_model(model)  # default compile: XLA makes this step slower on a CPU
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
    # Save the trained model before anything can fail in the evaluation: minutes of training are not lost.
    saved = Path(tempfile.mkdtemp(prefix="bench_gan-")) / "model.keras"
    model.save(saved)
    print(f"  trained model saved to {saved}", flush=True)

    start = time.perf_counter()
    requested = np.arange(n) % 10
    labels = requested if conditional else None  # ClusteredGAN draws the clusters by their shares
    samples = model.generate(n, seed=0, labels=labels)  # samples carry their range, (-1, 1)
    gen = evaluate_samples(samples, test, "mnist")
    print(f"  averaged G: {_scores(gen)}", flush=True)  # each result as soon as it is known
    raw = evaluate_samples(model.generate(n, seed=0, labels=labels, average=False), test, "mnist")
    print(f"  raw G:      {_scores(raw)}", flush=True)
    # Discriminator rejection sampling from the averaged generator (bound: D's 95th percentile, per class).
    drs_start = time.perf_counter()
    drs_stats = {}
    drs_samples = model.generate_rejection(n, seed=0, labels=labels, stats=drs_stats)
    drs_seconds = time.perf_counter() - drs_start
    drs = evaluate_samples(drs_samples, test, "mnist")
    print(f"  + rejection sampling (acceptance {100 * drs_stats['acceptance']:.1f}%): {_scores(drs)}", flush=True)
    gen_balanced, drs_balanced = balanced_fid(samples), balanced_fid(drs_samples)
    balanced_size = 10 * int(np.bincount(test_labels).min())
    print(f"  classifier FID vs the class-balanced test subset: {gen_balanced:.2f}, rejection {drs_balanced:.2f}")
    as_requested = ""
    if conditional:
        _, probs = classifier_outputs(samples, "mnist")
        as_requested = f"classified as the requested digit {100 * np.mean(probs.argmax(1) == requested):.1f}%; "
    floor = evaluate_samples(floor_real, test, "mnist")  # plain [0, 1] arrays
    eval_seconds = time.perf_counter() - start
    print(f"  floor:      {_scores(floor)}\n  evaluation: {eval_seconds:.0f} s")

    target = "smoke run, no target" if profile == "smoke" else "target: recognisable >= 90%, 10/10 classes"
    decay_note = f" with a cosine to {final_lr_fraction:g}x over the budget" if final_lr_fraction < 1 else ""
    kind = "ConditionalGAN" if conditional else f"ClusteredGAN ({num_clusters} clusters)" if clustered else "DCGAN"
    return [
        row(
            f"{kind} quality, MNIST ({describe(size)}, D dropout {dropout}, Adam {learning_rate:g}{decay_note}; "
            f"{steps} steps = {epochs} epochs of batch {batch} on the 23,797-image offline train set; "
            f"{n:,} samples vs {len(test):,} test images, shipped MNIST classifier)",
            profile,
            train_seconds,
            f"{cluster_note}{as_requested}averaged generator (EMA {model.ema_decay}): {_scores(gen)} ({target}); "
            f"raw generator: classifier FID {raw['classifier_fid']:.2f}, "
            f"recognisable {100 * raw['recognisable_rate']:.1f}%, {raw['coverage']['classes_present']}/10 classes; "
            f"averaged generator with discriminator rejection sampling (bound at D's 95th percentile"
            f"{' per class' if labels is not None else ''}, acceptance {100 * drs_stats['acceptance']:.1f}%, "
            f"{drs_stats['fallback']} fallbacks, {drs_seconds:.0f} s for {n:,}): {_scores(drs)}; "
            f"reference: the full test set (unbalanced) for every score above; classifier FID vs its "
            f"class-balanced subset ({balanced_size:,} images, equal count per digit): averaged generator "
            f"{gen_balanced:.2f}, with rejection sampling {drs_balanced:.2f}; "
            f"floor, {len(floor_real):,} real train images vs test: "
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


def bench_trials(recipe: Recipe) -> list[str]:
    """Training recipes for the cpu-profile DCGAN compared at a fixed number of steps (default compile)."""
    steps, n, profile = recipe.benchmark["trial_steps"], recipe.benchmark["trial_samples"], recipe.profile
    test = _images(f"test[:{n}]")
    rows = []
    for name, dropout, (lr_d, lr_g), d_filters in TRIALS:
        keras.utils.set_random_seed(0)
        train = load_images("mnist", "train", batch_size=64, value_range=(-1, 1), seed=0, drop_remainder=True).repeat()
        size = {**recipe.model, "discriminator_filters": d_filters, "dropout": dropout}
        model = DCGAN(**size, seed=0)
        model.compile(d_optimizer=adam(lr_d), g_optimizer=adam(lr_g))
        start = time.perf_counter()
        model.fit(train, steps_per_epoch=steps // 3, epochs=3, verbose=0)
        seconds = time.perf_counter() - start
        avg = evaluate_samples(model.generate(n, seed=0), test, "mnist")
        raw = evaluate_samples(model.generate(n, seed=0, average=False), test, "mnist")
        raw_rate = 100 * raw["recognisable_rate"]
        print(f"  {name}: {seconds:.0f} s; averaged {_scores(avg)}; raw recognisable {raw_rate:.1f}%")
        rows.append(
            row(
                f"DCGAN recipe trial, {name} ({describe(size)}; "
                f"{int(model.g_optimizer.iterations)} steps of batch 64; {n:,} samples vs {n:,} test images)",
                profile,
                seconds,
                f"{1000 * seconds / steps:.0f} ms/step; averaged G: classifier FID {avg['classifier_fid']:.1f}, "
                f"recognisable {100 * avg['recognisable_rate']:.1f}%, {avg['coverage']['classes_present']}/10 classes; "
                f"raw G: FID {raw['classifier_fid']:.1f}, recognisable {100 * raw['recognisable_rate']:.1f}%",
            )
        )
    return rows


def quality_recipe(args: argparse.Namespace, profile: str) -> Recipe:
    """The chapter's recipe of the model asked for, with the command line's overrides."""
    kind = "cgan" if args.conditional else "clustered-gan" if args.clustered else "dcgan"
    overrides: dict = {"model": {}, "benchmark": {}}
    if args.generator_filters:
        overrides["model"]["generator_filters"] = args.generator_filters
    if args.dropout is not None:
        overrides["model"]["dropout"] = args.dropout
    if args.lr:
        overrides["optimizer"] = {"learning_rate": args.lr}
    if args.batch:
        overrides["batch_size"] = args.batch
    if args.budget:
        overrides["budgets"] = {"benchmark": args.budget}
    if args.samples:
        overrides["benchmark"]["num_samples"] = args.samples
    return get_recipe(kind, profile, **overrides)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--throughput", action="store_true", help="train-step throughput vs a plain Keras GAN")
    parser.add_argument("--quality", action="store_true", help="time-budgeted MNIST training, classifier FID/KID etc.")
    parser.add_argument("--trials", action="store_true", help="training recipes compared at a fixed step count")
    parser.add_argument("--samples", type=int, default=None, help="generated images scored (default: the recipe's)")
    parser.add_argument("--budget", type=float, default=None, help="training seconds (default: the recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="quality run's Adam learning rate")
    parser.add_argument("--dropout", type=float, default=None, help="quality run's D dropout")
    parser.add_argument("--conditional", action="store_true", help="quality run: ConditionalGAN instead of DCGAN")
    parser.add_argument("--clustered", action="store_true", help="quality run: ClusteredGAN (k-means clusters)")
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
        help="quality run's generator channels, e.g. 128,64",
    )
    parser.add_argument("--batch", type=int, default=None, help="quality run's batch size")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    profile = args.profile or get_profile()
    modes = {
        "throughput": lambda: bench_throughput(get_recipe("dcgan", profile)),
        "trials": lambda: bench_trials(get_recipe("dcgan", profile)),
        "quality": lambda: bench_quality(quality_recipe(args, profile), args.final_lr_fraction),
    }
    run_modes("bench_gan.py", args, modes, default=["throughput", "quality"])


if __name__ == "__main__":
    main()
