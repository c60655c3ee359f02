"""Train a recipe: its data, a budget in steps or seconds, and checkpoints that resume exactly.

This is what ``aigc-tf train`` runs, and what a notebook can call instead of
writing a training loop. A run is ``fit`` in rounds of ``checkpoint_every`` steps;
after each round the model (weights and optimizer state), the state of its random
streams and the step count are saved, and the data pipeline is deterministic
given the seed, so a run killed and resumed ends with the same weights and
optimizer state as one that never stopped (with a step budget; a wall-clock
budget resumes with the time that was left).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from aigc_tf.callbacks import TimeBudget, training_optimizers
from aigc_tf.config import max_steps, runs_dir
from aigc_tf.recipes import CONDITIONAL, GANS, LANGUAGE_MODELS, Recipe
from aigc_tf.streams import random_variables
from aigc_tf.validation import check_int, check_optional_int

__all__ = [
    "TextData",
    "load_checkpoint",
    "random_state",
    "restore_checkpoint",
    "restore_random_state",
    "save_checkpoint",
    "step_schedule",
    "text_data",
    "text_windows",
    "train_recipe",
    "training_dataset",
]

CHECKPOINT = "checkpoint.keras"
PROGRESS = "checkpoint.json"


# --------------------------------------------------------------------------- #
# Data.
# --------------------------------------------------------------------------- #


@dataclass
class TextData:
    """The nanoGPT split of a text dataset and its character tokenizer."""

    train_text: str
    val_text: str
    tokenizer: Any


def text_data(recipe: Recipe) -> TextData:
    """The recipe's text split, with a character tokenizer over train + validation (as nanoGPT).

    With ``data["held_out_speaker"]`` (the ``pretrain`` recipe) the training text loses
    that speaker's speeches (:func:`aigc_tf.text.course_text_splits`); the validation
    text stays nanoGPT's whole split, so the loss compares with nanoGPT's.
    """
    from aigc_tf.text import CharTokenizer, nanogpt_split, remove_speaker

    train_text, val_text = nanogpt_split(recipe.dataset)
    tokenizer = CharTokenizer.from_text(train_text + val_text)
    if recipe.data.get("held_out_speaker"):
        train_text = remove_speaker(train_text, recipe.data["held_out_speaker"])
    return TextData(train_text, val_text, tokenizer)


def _position_stream(count: int, batch_size: int, seed: int, start: int, fetch):
    """Batches ``start, start + 1, …`` of an endless stream where batch b is a pure function of (seed, b).

    Epoch e visits the ``count`` examples in the order of a permutation seeded by
    ``(seed, e)``; ``fetch(indices, b)`` turns a batch of example indices into the
    batch. Because nothing depends on how many iterators came before, starting at
    ``start`` gives exactly the batches an uninterrupted run sees from there, at once
    (the skipped batches are never computed).
    """
    import tensorflow as tf

    per_epoch = count // batch_size  # whole batches per epoch: static shapes

    def epoch_batches(epoch):
        keys = tf.random.stateless_uniform([count], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        order = tf.cast(tf.argsort(keys)[: per_epoch * batch_size], tf.int64)
        order = tf.reshape(order, (per_epoch, batch_size))
        return tf.data.Dataset.from_tensor_slices((epoch * per_epoch + tf.range(per_epoch, dtype=tf.int64), order))

    ds = tf.data.Dataset.range(start // per_epoch, 2**62).flat_map(epoch_batches).skip(start % per_epoch)
    return ds.map(lambda b, idx: fetch(idx, b), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def text_windows(ids, seq_len: int, batch_size: int, *, stride: int | None = None, seed: int = 0, start: int = 0):
    """Endless ``(inputs, targets)`` batches of ``seq_len``-token windows of ``ids``, from batch ``start``.

    Windows start every ``stride`` tokens (default ``seq_len``: no overlap); targets are
    the inputs shifted by one. Batch b depends only on ``(seed, b)``, so a resumed run
    asks for ``start = steps done`` and sees what an uninterrupted run would.

    Raises:
        ValueError: ``ids`` is shorter than one window plus its target.
    """
    import tensorflow as tf

    seq_len = check_int("seq_len", seq_len, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    stride = check_int("stride", stride or seq_len, minimum=1)
    ids = tf.constant(np.asarray(ids, np.int32))
    count = (int(ids.shape[0]) - seq_len - 1) // stride + 1  # window starts, as make_char_dataset
    if count < batch_size:
        raise ValueError(
            f"ids: {int(ids.shape[0])} tokens give {max(count, 0)} windows of {seq_len} + 1, "
            f"fewer than one batch of {batch_size}."
        )

    def windows(idx, b):
        chunk = tf.gather(ids, idx[:, None] * stride + tf.range(seq_len + 1, dtype=tf.int64)[None])
        return chunk[:, :-1], chunk[:, 1:]

    return _position_stream(count, batch_size, seed, start, windows)


def training_dataset(recipe: Recipe, model, *, seed: int = 0, start: int = 0, text: TextData | None = None):
    """The batches ``model`` trains on, endless, from batch ``start``; batch b depends only on (seed, b).

    Images come in the model's ``value_range`` (with labels for a conditional GAN;
    Bernoulli-binarized with a fresh sample each time for the VAE); text as
    ``(inputs, targets)`` windows of ``seq_len`` characters. A resumed run asks for
    ``start = steps done`` and continues with exactly the batches it would have seen.
    """
    import tensorflow as tf

    seed = check_int("seed", seed, minimum=0)
    start = check_int("start", start, minimum=0)
    if recipe.kind in LANGUAGE_MODELS:
        text = text or text_data(recipe)
        ids = text.tokenizer.encode(text.train_text)
        seq_len = int(recipe.data["seq_len"])
        return text_windows(ids, seq_len, recipe.batch_size, stride=recipe.data.get("stride"), seed=seed, start=start)

    from aigc_tf.data import load_images

    pairs = load_images(recipe.dataset, recipe.train_split, batch_size=10_000, with_labels=True, shuffle=False)
    images, labels = (np.concatenate(parts) for parts in zip(*pairs.as_numpy_iterator()))
    pixels = tf.constant(np.round(images * 255).astype(np.uint8))  # exact: the loader divides uint8 by 255
    labels = tf.constant(labels.astype(np.int32))
    low, high = (0.0, 1.0) if recipe.data.get("binarize") else tuple(model.value_range)

    def batch(idx, b):
        x = tf.cast(tf.gather(pixels, idx), tf.float32) / 255.0
        if recipe.data.get("binarize"):  # a fresh Bernoulli sample of every image, seeded by (seed, batch)
            u = tf.random.stateless_uniform(tf.shape(x), seed=tf.stack([tf.cast(seed, tf.int64) + 1, b]))
            return tf.cast(u < x, tf.float32)
        x = x * (high - low) + low
        return (x, tf.gather(labels, idx)) if recipe.kind in CONDITIONAL else x

    return _position_stream(len(images), recipe.batch_size, seed, start, batch)


# --------------------------------------------------------------------------- #
# Checkpoints: the .keras file (weights, optimizer, random streams) and the progress.
# --------------------------------------------------------------------------- #


def random_state(model) -> list[np.ndarray]:
    """The current state of every random stream (``SeedGenerator``) of ``model``, in a fixed order."""
    return [np.asarray(v.numpy()) for v in random_variables(model)]


def restore_random_state(model, state: list[np.ndarray]) -> None:
    """Set ``model``'s random streams to ``state`` (from :func:`random_state` of the same architecture)."""
    variables = random_variables(model)
    if len(variables) != len(state):
        raise ValueError(f"state: the model has {len(variables)} random streams, the state holds {len(state)}.")
    for variable, value in zip(variables, state):
        variable.assign(value)


def save_checkpoint(model, folder: str | Path, **progress: Any) -> Path:
    """Save weights, optimizer state, random streams and ``progress`` (JSON values) into ``folder``.

    The random streams travel in the ``.keras`` file (see :class:`aigc_tf.streams.SavedRandomState`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Write next to the final names, then rename: a kill mid-save leaves the last good checkpoint.
    model.save(folder / f"tmp-{CHECKPOINT}")
    (folder / f"tmp-{PROGRESS}").write_text(json.dumps(progress, indent=2))
    for name in (CHECKPOINT, PROGRESS):
        (folder / f"tmp-{name}").replace(folder / name)
    return folder / CHECKPOINT


def load_checkpoint(folder: str | Path) -> tuple[keras.Model, dict[str, Any]]:
    """The model saved by :func:`save_checkpoint` (compiled, random streams restored) and its progress."""
    folder = Path(folder)
    if not (folder / CHECKPOINT).exists():
        raise FileNotFoundError(f"folder: no checkpoint in {str(folder)!r} (expected {CHECKPOINT}).")
    from aigc_tf.models import load_model  # importing it registers the model classes

    model = load_model(folder / CHECKPOINT)
    return model, json.loads((folder / PROGRESS).read_text())


def restore_checkpoint(model, folder: str | Path) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` of the same architecture into ``model``, in place.

    Weights, optimizer state (slots and iterations) and random streams become the saved
    ones, so ``fit`` carries on where the saved run stopped. ``model`` must be built and
    compiled (its optimizers are built here if they are not yet).

    Returns:
        The checkpoint's progress (``step``, ``seconds``, ...).
    """
    folder = Path(folder)
    if not (folder / CHECKPOINT).exists():
        raise FileNotFoundError(f"folder: no checkpoint in {str(folder)!r} (expected {CHECKPOINT}).")
    for optimizer in training_optimizers(model):
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
    model.load_weights(folder / CHECKPOINT)  # the random streams too (SavedRandomState)
    return json.loads((folder / PROGRESS).read_text())


# --------------------------------------------------------------------------- #
# Training.
# --------------------------------------------------------------------------- #


def _iterations(model) -> int:
    return int(training_optimizers(model)[-1].iterations.numpy())


def step_schedule(recipe: Recipe, steps: int):
    """The recipe's cosine learning-rate schedule over ``steps`` optimizer steps (``None``: constant).

    The same curve as :class:`aigc_tf.callbacks.TimeBudget` draws over a time budget,
    ``peak (f + (1 - f) (1 + cos(pi s)) / 2)``, which is Keras's ``CosineDecay`` with
    ``alpha = f``; inside the optimizer it is saved and resumed with it.
    """
    if "peak_lr" not in recipe.schedule:
        return None
    return keras.optimizers.schedules.CosineDecay(
        float(recipe.schedule["peak_lr"]), decay_steps=steps, alpha=float(recipe.schedule.get("final_fraction", 0.05))
    )


class _StepsAndCheckpoints(keras.callbacks.Callback):
    """Stops ``fit`` at a step count and saves a checkpoint at every epoch end."""

    def __init__(self, *, steps: int | None, checkpoint_dir, elapsed):
        super().__init__()
        self.steps, self.checkpoint_dir, self.elapsed = steps, checkpoint_dir, elapsed

    def on_train_batch_end(self, batch, logs=None):
        if self.steps is not None and _iterations(self.model) >= self.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.checkpoint_dir is not None:
            save_checkpoint(self.model, self.checkpoint_dir, step=_iterations(self.model), seconds=self.elapsed())


def train_recipe(
    recipe: Recipe,
    model,
    dataset,
    *,
    steps: int | None = None,
    seconds: float | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    callbacks: list | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train a compiled ``model`` on ``dataset`` for a step or a time budget, checkpointing as it goes.

    Steps already taken (the optimizer's iterations, e.g. after :func:`load_checkpoint`)
    count towards the budget and the data continue where they stopped, so a resumed
    run takes the same batches as an uninterrupted one. With ``steps_per_execution``
    above 1, ``steps`` must be a multiple of it and epochs are rounded up to one.

    Args:
        recipe: the recipe (``steps_per_epoch``, schedule, budgets).
        model: a compiled model (see :meth:`Recipe.compile_model`; for a step budget, build
            its optimizer over :func:`step_schedule` to get the recipe's learning-rate curve).
        dataset: endless training batches, or ``start -> batches from batch start`` (see
            :func:`training_dataset`); a plain dataset is skipped past the steps already done.
        steps: total optimizer steps to reach.
        seconds: a wall-clock budget instead (default: the recipe's main budget); time
            already spent by a resumed run counts, and the learning rate follows the
            recipe's cosine over the time.
        checkpoint_dir: save a checkpoint here every ``checkpoint_every`` steps.
        checkpoint_every: steps per epoch of ``fit`` (default: the recipe's ``steps_per_epoch``).
        callbacks: more Keras callbacks for ``fit``.
        verbose: ``fit``'s verbosity.

    Returns:
        ``{"steps": total steps, "seconds": total seconds, "history": fit's history}``.
    """
    steps = check_optional_int("steps", steps, minimum=1)
    every = check_int("checkpoint_every", checkpoint_every or recipe.steps_per_epoch, minimum=1)
    # One compiled call runs `steps_per_execution` steps: budgets and epochs are counted in whole calls.
    per_call = int(getattr(model, "steps_per_execution", 1) or 1)
    if steps is not None and steps % per_call:
        raise ValueError(
            f"steps must be a multiple of the model's steps_per_execution ({per_call}), got {steps}; "
            f"e.g. {-(-steps // per_call) * per_call}."
        )
    every = -(-every // per_call) * per_call
    cap = max_steps()  # $AIGC_MAX_STEPS, in whole compiled calls
    if cap is not None:
        cap = -(-cap // per_call) * per_call
        steps = cap if steps is None else min(steps, cap)
    if steps is None and seconds is None:
        seconds = recipe.seconds
    done = _iterations(model)
    data = dataset(done) if callable(dataset) else (dataset.skip(done) if done else dataset)
    spent = 0.0
    if checkpoint_dir is not None and (Path(checkpoint_dir) / PROGRESS).exists():
        spent = float(json.loads((Path(checkpoint_dir) / PROGRESS).read_text()).get("seconds", 0.0))
    if (steps is not None and done >= steps) or (seconds is not None and spent >= seconds):
        return {"steps": done, "seconds": spent, "history": {}}
    epochs = 10**6 if steps is None else -(-(steps - done) // every)
    if steps is None:  # the time budget and its learning-rate curve, carried on from `spent`
        budget = TimeBudget(seconds, verbose=False, spent=spent, **dict(recipe.schedule))
        elapsed = budget.elapsed
    else:
        budget, start = None, time.perf_counter()
        elapsed = lambda: spent + time.perf_counter() - start  # noqa: E731
    stepper = _StepsAndCheckpoints(steps=steps, checkpoint_dir=checkpoint_dir, elapsed=elapsed)
    history = model.fit(
        data,
        steps_per_epoch=every,
        epochs=epochs,
        verbose=verbose,
        shuffle=False,
        callbacks=[c for c in (budget, stepper) if c is not None] + list(callbacks or []),
    ).history
    return {"steps": _iterations(model), "seconds": elapsed(), "history": history}


def prepare(recipe: Recipe, model, dataset) -> None:
    """One-off work before training: the clustered GAN's k-means on the training images."""
    if recipe.kind == "clustered-gan":
        model.fit_clusters(dataset.take(max(1, 60_000 // recipe.batch_size)))


def describe_kind(kind: str) -> str:
    """A one-line description of a kind (for ``aigc-tf train --help``)."""
    return {
        "dcgan": "DCGAN on MNIST",
        "cgan": "conditional GAN on MNIST (digit labels)",
        "clustered-gan": "GAN conditioned on k-means clusters of MNIST (no labels)",
        "vae": "convolutional VAE on binarized MNIST",
        "diffusion": "diffusion model (U-Net, DDPM/DDIM) on MNIST",
        "cdiffusion": "diffusion model with classifier-free guidance on MNIST (digit labels)",
        "char-rnn": "character LSTM on tiny Shakespeare",
        "gpt": "character GPT on tiny Shakespeare",
    }[kind]


__all__ += ["GANS", "LANGUAGE_MODELS", "describe_kind", "prepare"]


class _SessionSaver(keras.callbacks.Callback):
    """Saves the run (model, random streams, the budget's time and log) at most every ``every_seconds``."""

    def __init__(self, folder: Path, budget: TimeBudget, fingerprint: str, every_seconds: float):
        super().__init__()
        self.folder, self.budget, self.fingerprint, self.every = folder, budget, fingerprint, every_seconds
        self.last = time.perf_counter()

    def save(self) -> None:
        step = _iterations(self.model)
        save_checkpoint(
            self.model,
            self.folder,
            step=step,
            seconds=self.budget.elapsed(),
            log=self.budget.log,
            fingerprint=self.fingerprint,
        )
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.last >= self.every:
            self.save()

    def on_train_end(self, logs=None):
        self.save()


def _fingerprint(model, budget: TimeBudget) -> str:
    import hashlib

    config = {k: v for k, v in model.get_config().items() if k != "name"}  # Keras numbers names: gpt, gpt_1, ...
    setup = json.dumps([type(model).__name__, config, budget.seconds], sort_keys=True, default=str)
    return hashlib.sha256(setup.encode()).hexdigest()[:16]


def fit_resumable(
    model,
    data,
    budget: TimeBudget,
    *,
    run: str | None = None,
    directory: str | Path | None = None,
    callbacks: list | None = None,
    every_seconds: float = 60.0,
    verbose: bool = True,
    **fit_kwargs: Any,
) -> dict[str, list[float]]:
    """``model.fit`` for ``budget``'s time, kept across a lost session (a Colab disconnect).

    With a runs folder (``directory``, default :func:`aigc_tf.config.runs_dir`:
    ``$AIGC_RUNS_DIR``, or Google Drive when it is mounted on Colab) and a ``run`` name,
    the run is saved into ``<folder>/<run>`` every ``every_seconds`` and at its end.
    Called again with a model of the same setup (class, configuration, budget), it
    first loads what was saved (weights, optimizer state, random streams, the time
    spent and the budget's log) and trains only for the time that is left: nothing
    when the run had finished. The data start a fresh pass. Without a folder it is
    plain ``fit``.

    Args:
        model: a built, compiled model.
        data: endless training batches (``fit_kwargs`` may give ``steps_per_epoch``,
            ``validation_data``).
        budget: the :class:`~aigc_tf.callbacks.TimeBudget` (its learning-rate curve
            carries on from the time already spent).
        run: the run's folder name, e.g. ``"01-dcgan"`` (None: nothing is saved).
        directory: the runs folder (default :func:`~aigc_tf.config.runs_dir`).
        callbacks: more Keras callbacks.
        every_seconds: the least time between two saves.
        verbose: say when a run resumes or starts afresh.

    Returns:
        The budget's log over the whole run (``seconds``, ``step`` and the epoch logs, per epoch).
    """
    root = runs_dir() if directory is None else Path(directory)
    folder = None if run is None or root is None else root / run
    extra = []
    if folder is not None:
        fingerprint = _fingerprint(model, budget)
        progress = json.loads((folder / PROGRESS).read_text()) if (folder / PROGRESS).exists() else None
        if progress is not None and progress.get("fingerprint") == fingerprint:
            restore_checkpoint(model, folder)
            budget.spent, budget.log = float(progress["seconds"]), {k: list(v) for k, v in progress["log"].items()}
            if verbose:
                print(
                    f"[aigc_tf] resuming {run!r} at step {progress['step']:,} ({budget.spent:.0f} s of "
                    f"{budget.seconds:.0f} s done), from {folder}"
                )
        elif progress is not None and verbose:
            print(f"[aigc_tf] {folder} holds a run of another setup: starting afresh (it will be replaced)")
        extra.append(_SessionSaver(folder, budget, fingerprint, every_seconds))
    if budget.spent < budget.seconds:
        fit_kwargs = {"epochs": 10**6, "verbose": 0, "shuffle": False, **fit_kwargs}
        model.fit(data, callbacks=[budget, *(callbacks or []), *extra], **fit_kwargs)
    return budget.log


def fit_for_time(
    recipe: Recipe,
    model,
    dataset,
    purpose: str = "main",
    *,
    examples_per_epoch: int | None = None,
    run: str | None = None,
    verbose: bool = True,
    **compile_flags: Any,
):
    """Compile ``model`` with the recipe and fit it for the recipe's ``purpose`` budget (a notebook's run).

    The learning rate follows the recipe's cosine over the time (``TimeBudget``).

    Args:
        recipe, model, dataset: what to train, on what (epochs of ``dataset``, batched by the
            recipe's ``batch_size``).
        purpose: ``main`` or ``short`` (see :meth:`Recipe.budget`).
        examples_per_epoch: the training set's size, to report epochs.
        run: keep the run across a lost session under this name (see :func:`fit_resumable`).
        verbose: print one line: steps, epochs, seconds, the last epoch's metrics.
        **compile_flags: replace the recipe's ``compile`` arguments (e.g. ``jit_compile=False``).

    Returns:
        ``(log, seconds)``: the budget's per-epoch log (``seconds``, ``step`` and the epoch
        metrics) and the seconds trained.
    """
    recipe.compile_model(model, **compile_flags)
    budget = recipe.time_budget(purpose)
    log = fit_resumable(model, dataset, budget, run=run, verbose=verbose)
    steps, seconds = log["step"][-1], log["seconds"][-1]
    if verbose:
        epochs = f" ({steps * recipe.batch_size / examples_per_epoch:.1f} epochs)" if examples_per_epoch else ""
        last = ", ".join(f"{k} {v[-1]:.1f}" for k, v in log.items() if k not in ("seconds", "step", "learning_rate"))
        print(f"{steps:,} steps{epochs} in {seconds:.0f} s; last epoch: {last}")
    return log, seconds


def fit_variants(
    recipe: Recipe,
    variants: dict[Any, dict[str, Any]],
    dataset,
    purpose: str = "short",
    *,
    seed: int = 0,
    run: str | None = None,
    **fit_kwargs: Any,
) -> dict[Any, Any]:
    """Train one model per recipe variant, each from the same seed and for the same budget (an ablation).

    Args:
        recipe: the base recipe.
        variants: name -> overrides for :meth:`Recipe.replace` (e.g. ``{1.0: {"model": {"beta": 1.0}}}``).
        dataset, purpose: what to train on and which budget (see :func:`fit_for_time`).
        seed: the same initial weights' seed for every variant, so only the override differs.
        run: keep each run across a lost session as ``f"{run}-{name}"``.
        **fit_kwargs: passed to :func:`fit_for_time` (``examples_per_epoch``, compile flags).

    Returns:
        name -> the trained model, in the order of ``variants``.
    """
    models = {}
    for name, overrides in variants.items():
        keras.utils.set_random_seed(seed)
        models[name] = recipe.replace(**overrides).build_model(seed=seed)
        if fit_kwargs.get("verbose", True):
            print(f"{name}: ", end="")
        fit_for_time(recipe, models[name], dataset, purpose, run=run and f"{run}-{name}", **fit_kwargs)
    return models


__all__ += ["fit_for_time", "fit_resumable", "fit_variants"]
