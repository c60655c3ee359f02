"""The diffusion model: eps-prediction training on the noised data, an averaged U-Net for sampling."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.data_checks import (
    CheckedFit,
    batch_labels,
    check_label_spec,
    checked_labels,
    checked_pixels,
    warn_unit_range,
)
from aigc_tf.diffusion.sampling import DiffusionSampling
from aigc_tf.diffusion.schedule import NoiseSchedule
from aigc_tf.diffusion.unet import UNet
from aigc_tf.ema import ExponentialMovingAverage
from aigc_tf.images import batch_rows, check_image_batch, check_image_dataset, checked_images, images_of
from aigc_tf.streams import SavedRandomState, from_config_under_policy
from aigc_tf.validation import (
    check_bool,
    check_float,
    check_image_shape,
    check_int,
    check_labels,
    check_rate,
    check_seed,
)

__all__ = ["DiffusionModel"]


@keras.saving.register_keras_serializable(package="aigc_tf")
class DiffusionModel(SavedRandomState, CheckedFit, DiffusionSampling, keras.Model):
    """A denoising diffusion model (Ho et al., 2020) with DDPM and DDIM sampling and classifier-free guidance.

    Training draws, for every image x0 of a batch, a step t ~ U{0, …, T-1} and noise
    eps ~ N(0, I), forms x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and minimises
    ||eps - eps_theta(x_t, t[, y])||^2 (the pixel mean; history key ``loss``). When
    conditional, each label is replaced by the "no label" token with probability
    ``label_dropout``, so one network learns both eps(x_t, t, y) and eps(x_t, t).

    Example:
        >>> model = DiffusionModel(num_classes=10, base_filters=16)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> ds = load_images("mnist", batch_size=64, value_range=(-1, 1), with_labels=True)
        >>> model.fit(ds, epochs=5)                                        # doctest: +SKIP
        >>> model.generate(10, seed=0, labels=np.arange(10), guidance=2.0)  # doctest: +SKIP

    Random streams (model-owned ``SeedGenerator``s): ``noise_seed_generator`` (seed
    ``s``) for the steps, noise and label dropout of training; ``sample_seed_generator``
    (``s + 1``) for :meth:`generate` with ``seed=None``; ``eval_seed_generator``
    (``s + 2``) for ``evaluate()``.

    Args:
        image_shape: ``(H, W, C)``.
        num_classes: ``None`` (unconditional) or >= 2 classes.
        schedule: a :class:`NoiseSchedule` (default: linear, 1,000 steps).
        base_filters, channel_mults, num_res_blocks, attention, num_heads, dropout: the
            :class:`~aigc_tf.diffusion.UNet`'s size.
        label_dropout: probability of training on "no label", in [0, 1).
        ema_decay: decay of the weights' moving average used for sampling, in [0, 1)
            (0: none); warm-up as in :class:`~aigc_tf.ema.ExponentialMovingAverage`.
        sampling_jit_compile: compile the sampler's network call with XLA.
        seed: seed of the random streams (``None``: from the global seed).
        **kwargs: passed to ``keras.Model`` (e.g. ``name``).
    """

    #: The pixel range the model trains on and samples in.
    value_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(
        self,
        image_shape: Sequence[int] = (28, 28, 1),
        *,
        num_classes: int | None = None,
        schedule: NoiseSchedule | None = None,
        base_filters: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention: bool = True,
        num_heads: int = 4,
        dropout: float = 0.0,
        label_dropout: float = 0.1,
        ema_decay: float = 0.999,
        sampling_jit_compile: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image_shape = check_image_shape(image_shape)
        self.num_classes = None if num_classes is None else check_int("num_classes", num_classes, minimum=2)
        if schedule is None:
            schedule = NoiseSchedule()
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}.")
        self.schedule = schedule
        self.label_dropout = check_rate("label_dropout", label_dropout)
        self.ema_decay = check_float("ema_decay", ema_decay, low=0.0, high=1.0, high_inclusive=False)
        self.sampling_jit_compile = check_bool("sampling_jit_compile", sampling_jit_compile)
        self.seed = check_seed(seed)
        self.unet = UNet(
            self.image_shape,
            base_filters=base_filters,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            attention=attention,
            num_heads=num_heads,
            dropout=dropout,
            num_classes=self.num_classes,
            name="unet",
        )
        self.unet(self._dummy_inputs())  # subclassed: build the weights now, before the average copies them
        self.unet_average = ExponentialMovingAverage(self, self.unet, self.ema_decay) if self.ema_decay else None

        seed = self.seed
        self.noise_seed_generator = keras.random.SeedGenerator(seed)
        self.sample_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)
        self.eval_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 2)
        # The schedule's columns that training reads, float32 (gathered by t inside the step).
        self._sqrt_alpha_bars = np.sqrt(schedule.alpha_bars).astype(np.float32)
        self._sqrt_one_minus_alpha_bars = np.sqrt(1.0 - schedule.alpha_bars).astype(np.float32)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._checked_datasets = weakref.WeakSet()
        self.built = True

    def _dummy_inputs(self) -> list:
        inputs = [np.zeros((1, *self.image_shape), np.float32), np.zeros((1,), np.int32)]
        return inputs + ([np.zeros((1,), np.int32)] if self.num_classes is not None else [])

    def call(self, inputs, training: bool = False):
        """The raw network's noise prediction: ``[x_t, t]`` or ``[x_t, t, labels]`` -> ``(N, H, W, C)`` float32."""
        return self.unet(inputs, training=training)

    # ---- training data, checked batch by batch (see aigc_tf.data_checks) ---------------

    def checked_batches(self, dataset, name):
        if self.num_classes is not None:
            check_label_spec(dataset, self.num_classes, name)
            spec = dataset.element_spec
            if not isinstance(spec, (tuple, list)) or len(spec) < 2:
                raise ValueError(self._needs_labels_message())
            dataset = checked_labels(dataset, self.num_classes, name)
        return checked_pixels(dataset, self.value_range, name)

    def check_arrays(self, x, y):
        images = check_image_batch("x", images_of(x), self.image_shape, self.value_range)
        if np.min(images) >= 0:
            warn_unit_range("x", self.value_range)
        if self.num_classes is not None:
            labels = x[1] if isinstance(x, (tuple, list)) and len(x) > 1 else y
            if labels is None:
                raise ValueError(self._needs_labels_message())
            check_labels("y (labels)", labels, self.num_classes, size=len(images))

    def _needs_labels_message(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}) needs labels: train on (images, labels) "
            "batches (fit(images, labels) or a dataset of pairs); got images only."
        )

    def check_dataset(self, dataset: tf.data.Dataset, name: str = "dataset") -> tf.data.Dataset:
        """Check a training dataset's element shapes and first batch before ``fit`` (once per dataset).

        Returns:
            ``dataset``, to train on.

        Raises:
            TypeError: if ``dataset`` is not a ``tf.data.Dataset``, or its labels are not integers.
            ValueError: for a wrong image shape, pixels outside [-1, 1], missing or bad labels.
        """
        check_image_dataset(name, dataset, self.image_shape, self.value_range, self._checked_datasets)
        if self.num_classes is not None:
            self.checked_batches(dataset, name)  # the spec checks
            for element in dataset.take(1):
                check_labels(f"{name}: labels", np.asarray(element[1]).reshape(-1), self.num_classes)
        return dataset

    # ---- compile -------------------------------------------------------------------------

    def compile(self, optimizer: Any = None, **kwargs: Any) -> None:
        """``keras.Model.compile`` (default optimizer Adam(2e-4)); the optimizer's slots are built at once.

        The loss is fixed (the eps MSE): ``loss`` and ``metrics`` are rejected. Under
        ``mixed_float16`` Keras wraps the optimizer in a ``LossScaleOptimizer``.
        """
        for key in ("loss", "metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(f"{type(self).__name__}.compile(): `{key}` is not used (the loss is the eps MSE).")
            kwargs.pop(key, None)
        super().compile(optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(2e-4), **kwargs)
        self.optimizer.build(self.unet.trainable_variables)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker]

    # ---- the loss ------------------------------------------------------------------------

    def _unpack(self, data):
        images = ops.cast(checked_images(images_of(data), self.image_shape), "float32")
        if self.num_classes is None:
            return images, None
        return images, batch_labels(data, self.num_classes, f"{type(self).__name__}(num_classes={self.num_classes})")

    def per_example_losses(self, x0, labels=None, *, seed_generator=None, training: bool = False, rows=None):
        """The eps MSE of each image at a random step (and, if training, with label dropout).

        Every replica draws the steps and noise of the *global* batch from the same
        stream state and keeps its own rows, so a step on two devices equals one on one.

        Args:
            x0: ``(N, H, W, C)`` float32 images in [-1, 1].
            labels: ``(N,)`` int class ids (conditional models).
            seed_generator: the stream (default ``noise_seed_generator``).
            training: passed to the network; also turns label dropout on.
            rows: ``batch_rows(x0)``, if already known.

        Returns:
            ``(N,)`` float32: mean over pixels of (eps_theta - eps)^2.
        """
        seed = seed_generator or self.noise_seed_generator
        batch = ops.shape(x0)[0]
        global_batch, offset = rows if rows is not None else batch_rows(x0)
        mine = slice(offset, offset + batch)
        t = keras.random.randint((global_batch,), 0, self.schedule.num_steps, seed=seed, dtype="int32")[mine]
        noise = keras.random.normal((global_batch, *self.image_shape), seed=seed)[mine]
        x_t = (
            ops.take(self._sqrt_alpha_bars, t)[:, None, None, None] * x0
            + ops.take(self._sqrt_one_minus_alpha_bars, t)[:, None, None, None] * noise
        )
        inputs = [x_t, t]
        if self.num_classes is not None:
            if training and self.label_dropout > 0:
                drop = keras.random.uniform((global_batch,), seed=seed)[mine] < self.label_dropout
                labels = ops.where(drop, self.num_classes, labels)
            inputs.append(labels)
        eps = ops.cast(self.unet(inputs, training=training), "float32")
        return ops.mean(ops.square(eps - noise), axis=(1, 2, 3))

    def train_step(self, data):
        x0, labels = self._unpack(data)
        with tf.control_dependencies([x0] if labels is None else [x0, labels]):
            rows = batch_rows(x0)
            with tf.GradientTape() as tape:
                loss = self.per_example_losses(x0, labels, training=True, rows=rows)
                # Replica gradients are summed: divide by the GLOBAL batch size.
                scaled = self.optimizer.scale_loss(ops.sum(loss) / ops.cast(rows[0], "float32"))
            variables = self.unet.trainable_variables
            self.optimizer.apply(tape.gradient(scaled, variables), variables)
            if self.unet_average is not None:
                self.unet_average.update(self.optimizer.iterations)
            self.loss_tracker.update_state(loss)
            return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x0, labels = self._unpack(data)
        loss = self.per_example_losses(x0, labels, seed_generator=self.eval_seed_generator)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def predict_step(self, data):
        raise NotImplementedError(
            f"{type(self).__name__}.predict() is not defined (the model maps noise to images); "
            "use generate() or predict_x0()."
        )

    # ---- serialization -------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        unet = self.unet
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "schedule": self.schedule.get_config(),
            "base_filters": unet.base_filters,
            "channel_mults": list(unet.channel_mults),
            "num_res_blocks": unet.num_res_blocks,
            "attention": unet.attention,
            "num_heads": unet.num_heads,
            "dropout": unet.dropout,
            "label_dropout": self.label_dropout,
            "ema_decay": self.ema_decay,
            "sampling_jit_compile": self.sampling_jit_compile,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DiffusionModel:
        config = dict(config)
        if isinstance(config.get("schedule"), dict):
            config["schedule"] = NoiseSchedule(**config["schedule"])
        return from_config_under_policy(cls, config)
