"""VAE benchmarks.

Two measurements, each in one process:

* ``--throughput`` (default): train-step throughput (images/s) of
  :class:`aigc_tf.vae.VAE` vs a plain, idiomatic Keras VAE of the same
  architecture written the keras-io way (encoder returning ``(z_mean,
  z_log_var, z)``, sigmoid decoder, ``keras.losses.binary_crossentropy`` on
  probabilities, losses averaged per step, default ``compile``). Same data
  (pre-binarized batches in memory), same process, runs interleaved, best of 5.
  Both models do the same arithmetic, so the ratio comes from how aigc_tf
  compiles the step (``FAST_COMPILE``: XLA and 20 steps per call); the row
  also gives the ratio with equal flags.
* ``--quality``: dynamic-binarization MNIST (the offline copy through
  :func:`aigc_tf.data.load_images`), trained for the profile's time budget
  (``cpu``: 9 minutes on 2 cores), then the test ELBO and the importance-weighted
  log-likelihood (k samples, default 100 on ``cpu``) on the full 10,000-image
  test set with a fixed, seeded binarization. Target at the ``cpu`` profile:
  log-likelihood >= -95 nats (literature, IWAE paper, 1-layer VAE: -86.76).

Sizes, optimizer and budgets come from the ``vae`` recipe (:mod:`aigc_tf.recipes`), the
same the notebook trains. Rows are appended to ``benchmarks/RESULTS.md`` (``--results`` to
change, ``--no-results`` to only print).

Usage::

    python benchmarks/bench_vae.py                       # throughput
    AIGC_PROFILE=cpu python benchmarks/bench_vae.py --quality
"""

from __future__ import annotations

import argparse
import time
from _harness import add_common_arguments, compare_train_steps, ratio_summary, row, run_modes

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.config import get_profile
from aigc_tf.data import load_images
from aigc_tf.recipes import Recipe, get_recipe
from aigc_tf.vae import VAE, binarize, make_decoder, make_encoder

#: How aigc_tf trains (the recipe's compile flags): XLA, and 20 steps per call into
#: TensorFlow so the Python loop's per-step overhead is paid less often.
FAST_COMPILE = dict(get_recipe("vae", "cpu").compile)


def describe(size: dict) -> str:
    return f"conv {'-'.join(map(str, size['filters']))} + dense {size['dense_units']}, latent {size['latent_dim']}"


# --------------------------------------------------------------------------- #
# The baseline: a plain Keras VAE, the way the keras-io example writes one.
# --------------------------------------------------------------------------- #


class PlainSampling(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps


class PlainVAE(keras.Model):
    """keras-io's VAE: the encoder also returns z, the decoder ends in a sigmoid, losses averaged per step."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {m.name: m.result() for m in self.metrics}


def plain_vae(latent_dim: int, filters: tuple[int, ...], dense_units: int, **_) -> PlainVAE:
    """The keras-io VAE around the package's own encoder and decoder: the same layers by construction.

    Its encoder adds the sampling layer to the package's ``(z_mean, z_log_var)``; its
    decoder adds a sigmoid to the package's logits (keras-io's last layer has
    ``activation="sigmoid"``; as a separate layer it is the same arithmetic).
    """
    shape = (28, 28, 1)
    base_encoder = make_encoder(shape, latent_dim, filters, dense_units)
    image = keras.Input(shape)
    z_mean, z_log_var = base_encoder(image)
    encoder = keras.Model(image, [z_mean, z_log_var, PlainSampling()([z_mean, z_log_var])])
    base_decoder = make_decoder(shape, latent_dim, filters, dense_units)
    latent = keras.Input((latent_dim,))
    decoder = keras.Model(latent, keras.layers.Activation("sigmoid")(base_decoder(latent)))
    return PlainVAE(encoder, decoder)


# --------------------------------------------------------------------------- #
# Throughput.
# --------------------------------------------------------------------------- #


def bench_throughput(recipe: Recipe, batch: int = 128) -> list[str]:
    """Images/s of the train step, aigc_tf VAE vs the plain Keras VAE (same layers, same optimizer)."""
    steps, rounds, size = recipe.benchmark["throughput_steps"], recipe.benchmark["rounds"], dict(recipe.model)
    rng = np.random.default_rng(0)
    x = (rng.random((steps * batch, 28, 28, 1)) < 0.13).astype("float32")  # MNIST-like density
    data = tf.data.Dataset.from_tensor_slices(x).batch(batch).cache()
    list(data)  # fill the cache before timing

    def make(kind: str, flags: dict) -> keras.Model:
        keras.utils.set_random_seed(0)
        model = VAE(**size, seed=0) if kind == "aigc_tf" else plain_vae(**size)
        model.compile(optimizer=recipe.build_optimizer(), **flags)
        return model

    # The baseline is timed as written (default compile: jit_compile="auto", which
    # is no XLA on a CPU) and with aigc_tf's flags, so the table also shows how much
    # of the ratio is the flags and how much is the model.
    configs = {
        "aigc_tf VAE, FAST_COMPILE": ("aigc_tf", FAST_COMPILE),
        "aigc_tf VAE, default compile": ("aigc_tf", {}),
        "plain Keras VAE, default compile": ("plain", {}),
        "plain Keras VAE, FAST_COMPILE": ("plain", FAST_COMPILE),
    }
    models = {name: make(*cfg) for name, cfg in configs.items()}
    result = compare_train_steps(models, data, steps=steps, batch=batch, rounds=rounds)
    return [
        row(
            f"VAE train step, images/s ({describe(size)}, batch {batch}, {steps} steps, best of {rounds}, interleaved)",
            recipe.profile,
            result.total_seconds,
            ratio_summary(
                result,
                "aigc_tf VAE, FAST_COMPILE",
                "plain Keras VAE, default compile",
                ("XLA + 20 steps/call", "plain Keras VAE, FAST_COMPILE"),
                "aigc_tf VAE, default compile",
            ),
        )
    ]


# --------------------------------------------------------------------------- #
# Quality.
# --------------------------------------------------------------------------- #


def bench_quality(recipe: Recipe) -> list[str]:
    """Test ELBO and IW log-likelihood (nats) on dynamically binarized MNIST, the recipe's budget."""
    keras.utils.set_random_seed(0)
    size, profile = dict(recipe.model), recipe.profile
    k = recipe.benchmark["num_importance_samples"]

    # Protocol: a fresh Bernoulli sample of every training image each epoch; one
    # fixed, seeded sample of the test set (binarized before batching).
    train = binarize(load_images(recipe.dataset, recipe.train_split, shuffle=True, seed=0), seed=0)
    train = train.batch(recipe.batch_size).prefetch(tf.data.AUTOTUNE)
    test = binarize(load_images(recipe.dataset, recipe.evaluation["test_split"]), seed=0, dynamic=False)
    x_test = np.concatenate(list(test.batch(1000).as_numpy_iterator()))

    model = recipe.build_model(seed=0)
    recipe.compile_model(model)
    start = time.perf_counter()
    history = model.fit(train, epochs=10**6, verbose=0, callbacks=[recipe.time_budget("benchmark")])
    train_seconds = time.perf_counter() - start
    epochs = len(history.history["loss"])

    start = time.perf_counter()
    elbo = model.elbo(x_test, seed=0)
    ll = model.log_likelihood(x_test, num_samples=k, seed=0)
    eval_seconds = time.perf_counter() - start
    print(f"  evaluation on {len(x_test)} test images: {eval_seconds:.0f} s")

    name = (
        f"VAE quality, MNIST dynamic binarization ({describe(size)}; {epochs} epochs of the "
        f"23,797-image offline train set; {len(x_test):,} test images)"
    )
    target = {"smoke": "smoke run, no target", "cpu": "target >= -95", "gpu": "target >= -90"}[profile]
    return [
        row(
            name,
            profile,
            train_seconds,
            f"test IW log-likelihood (k={k}) **{ll.mean():.2f}** nats, test ELBO {elbo.mean():.2f} nats "
            f"({target}; IWAE paper 1-layer VAE -86.76); eval {eval_seconds:.0f} s",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--throughput", action="store_true", help="train-step throughput vs a plain Keras VAE")
    parser.add_argument("--quality", action="store_true", help="time-budgeted training, test ELBO and IW bound")
    parser.add_argument("--num-samples", type=int, default=None, help="k of the IW bound (default: the recipe's)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    recipe = get_recipe("vae", args.profile or get_profile())
    if args.num_samples:
        recipe = recipe.replace(benchmark={"num_importance_samples": args.num_samples})
    modes = {"throughput": lambda: bench_throughput(recipe), "quality": lambda: bench_quality(recipe)}
    run_modes("bench_vae.py", args, modes, default=["throughput"])


if __name__ == "__main__":
    main()
