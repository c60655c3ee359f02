"""Keras callbacks shared by the generative chapters."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from aigc_tf.config import max_steps
from aigc_tf.images import to_unit_range
from aigc_tf.plotting import tile_images, write_gif
from aigc_tf.validation import check_float, check_int, check_optional_int, check_writable_file


class SampleGridCallback(keras.callbacks.Callback):
    """Record a grid of samples after every ``every`` epochs; write a GIF at the end.

    Use a fixed seed in ``sample_fn`` so each frame shows the *same* latent
    points: the GIF then shows how the model's mapping improves, not noise.

    Example:
        >>> cb = SampleGridCallback(lambda m: m.generate(64, seed=0), gif_path="progress.gif")
        >>> model.fit(ds, epochs=10, callbacks=[cb])  # doctest: +SKIP

    Args:
        sample_fn: ``sample_fn(model)`` → images ``(n, h, w[, c])``.
        every: record a frame every ``every`` epochs (the first frame is
            taken before training, as epoch 0).
        value_range: the range ``sample_fn`` returns pixels in (default: the one
            the images declare, as the models' :class:`~aigc_tf.images.Images` do, else [0, 1]).
        ncols: images per row in a frame.
        gif_path: if given, the GIF written at the end of training.
        frame_duration: seconds per GIF frame.
    """

    def __init__(
        self,
        sample_fn: Callable[[keras.Model], Any],
        *,
        every: int = 1,
        value_range: tuple[float, float] | None = None,
        ncols: int | None = None,
        gif_path: str | Path | None = None,
        frame_duration: float = 0.5,
    ):
        super().__init__()
        if not callable(sample_fn):
            raise TypeError(f"sample_fn must be a function of the model (model -> images), got {sample_fn!r}.")
        self.sample_fn = sample_fn
        self.every = check_int("every", every, minimum=1)
        self.value_range = value_range
        self.ncols = check_optional_int("ncols", ncols, minimum=1)
        self.gif_path = None if gif_path is None else check_writable_file("gif_path", gif_path)
        self.frame_duration = frame_duration
        self.frames: list[np.ndarray] = []  # uint8 grids
        self.epochs: list[int] = []

    def _record(self, epoch: int) -> None:
        images = to_unit_range(self.sample_fn(self.model), self.value_range)
        grid = tile_images(images, self.ncols)
        self.frames.append(np.round(grid * 255).astype(np.uint8))
        self.epochs.append(epoch)

    def on_train_begin(self, logs=None):
        if self.gif_path is not None:  # fail now, not after the training
            check_writable_file("gif_path", self.gif_path)
        if not self.frames:
            self._record(0)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self._record(epoch + 1)

    def on_train_end(self, logs=None):
        if self.gif_path is None:
            return
        try:
            self.save_gif(self.gif_path)
        except OSError as error:  # the disk filled up, say: keep the trained model and its History
            warnings.warn(f"gif_path: the GIF could not be written to {self.gif_path} ({error}).", stacklevel=2)

    def save_gif(self, path: str | Path) -> Path:
        """Write the recorded frames as a looping GIF and return its path."""
        if not self.frames:
            raise ValueError("no frames recorded yet: call fit() first.")
        return write_gif(self.frames, path, frame_duration=self.frame_duration)


def training_optimizers(model: keras.Model) -> list:
    """The optimizers ``fit`` steps: the model's ``training_optimizers()`` when it defines them
    (the GANs: D's, then G's), else its ``optimizer``. The last one counts the steps."""
    listed = getattr(model, "training_optimizers", None)
    return list(listed()) if callable(listed) else [model.optimizer]


class TimeBudget(keras.callbacks.Callback):
    """Train for a wall-clock budget instead of a number of epochs.

    With ``peak_lr`` it also sets the learning rate before every step along a
    cosine over the *time* used, :math:`\\eta(s) = \\eta_{max}(f + (1-f)\\tfrac12(1+\\cos \\pi s))`
    with ``s`` the fraction of the budget spent and ``f = final_fraction``, so
    a run ends at a small learning rate whatever the machine's speed — the fair
    way to compare models "at equal wall time". Pair it with
    ``fit(..., epochs=<large>, steps_per_epoch=<a round>)``.

    A model with several optimizers lists them in a ``training_optimizers()``
    method (the GANs: D's and G's); each gets the schedule.

    At every epoch end it records ``seconds``, ``step`` (optimizer iterations)
    and the epoch logs in :attr:`log` (a dict of lists) and, with ``verbose``,
    prints them.

    Args:
        seconds: the training budget.
        peak_lr: the learning rate at the start (``None``: leave it alone).
        final_fraction: the learning rate at the end, as a fraction of ``peak_lr``.
        verbose: print one line per epoch.
        spent: seconds of the budget already used (a resumed run carries on along the same curve).
        clock: the clock to read (seconds); tests pass a fake one.
    """

    def __init__(
        self,
        seconds: float,
        peak_lr: float | None = None,
        final_fraction: float = 0.05,
        verbose: bool = True,
        *,
        spent: float = 0.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        super().__init__()
        self.seconds = check_float("seconds", seconds, low=0.0, low_inclusive=False)
        self.spent = check_float("spent", spent, low=0.0)
        self.clock = clock
        self.peak_lr = None if peak_lr is None else check_float("peak_lr", peak_lr, low=0.0, low_inclusive=False)
        self.final_fraction = check_float("final_fraction", final_fraction, low=0.0, high=1.0)
        self.verbose = verbose
        self.log: dict[str, list[float]] = {}
        self.start: float | None = None
        self.max_steps = max_steps()  # $AIGC_MAX_STEPS: a quick check of a profile's code path

    def learning_rate(self, progress: float) -> float:
        """The scheduled learning rate after ``progress`` (0..1) of the budget."""
        progress = min(max(progress, 0.0), 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak_lr * (self.final_fraction + (1.0 - self.final_fraction) * cosine)

    def elapsed(self) -> float:
        """Seconds of the budget used so far (``spent`` included)."""
        return self.spent + self.clock() - self.start

    def on_train_begin(self, logs=None):
        self.start = self.clock()

    def optimizers(self) -> list:
        """The optimizers the schedule drives: see :func:`training_optimizers`."""
        return training_optimizers(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        if self.peak_lr is not None:
            lr = self.learning_rate(self.elapsed() / self.seconds)
            for optimizer in self.optimizers():
                optimizer.learning_rate.assign(lr)

    def on_train_batch_end(self, batch, logs=None):
        if self.elapsed() > self.seconds:
            self.model.stop_training = True
        elif self.max_steps is not None and int(self.optimizers()[-1].iterations.numpy()) >= self.max_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        record = {"seconds": self.elapsed(), "step": int(self.optimizers()[-1].iterations.numpy())}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        for key, value in record.items():
            self.log.setdefault(key, []).append(value)
        if self.verbose:
            metrics = "  ".join(
                f"{k} {v:.3f}" for k, v in record.items() if k not in ("seconds", "step", "learning_rate")
            )
            print(f"{record['seconds']:6.0f} s  step {record['step']:6d}  {metrics}", flush=True)
