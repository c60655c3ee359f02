"""An exponential moving average of a network's weights (Polyak averaging).

Training moves the weights w_t in noisy steps; their average

    avg_t = d_t avg_{t-1} + (1 - d_t) w_t,   d_t = min(decay, (1 + t) / (10 + t)),

sits nearer the centre of where they wander and often samples better than the
raw weights: the GAN generators use it (Yazici et al., 2019, "The unusual
effectiveness of averaging in GAN training"; Karras et al., 2018), and diffusion
models do too. The warm-up term (1 + t) / (10 + t) is
``tf.train.ExponentialMovingAverage(num_updates=t)``'s: early on the average
follows the weights closely instead of remembering the random initial ones.

The averages are variables of the model that owns the network, so a ``.keras``
file saves and restores them with the rest of the model, and a strategy mirrors
them like any other weight.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from aigc_tf.validation import check_float

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """A second set of values for every variable of ``network``, updated by :meth:`update`.

    Example:
        >>> average = ExponentialMovingAverage(model, model.generator, decay=0.999)
        >>> # in train_step, after the optimizer step:
        >>> average.update(model.g_optimizer.iterations)        # doctest: +SKIP
        >>> images = average.stateless_call(z, training=False)  # doctest: +SKIP

    Args:
        owner: the layer or model that owns the averages (``owner.add_weight``);
            usually the model that trains ``network``.
        network: the network whose variables are averaged: its trainable
            variables first, then the non-trainable ones (BatchNorm statistics).
        decay: d in [0, 1). The averages start equal to the current weights.
        warmup: use min(d, (1 + t) / (10 + t)) at step t instead of d.
        name: prefix of the average variables' names (``{name}_{i}``).
    """

    def __init__(
        self,
        owner: keras.layers.Layer,
        network: keras.layers.Layer,
        decay: float = 0.999,
        *,
        warmup: bool = True,
        name: str = "ema",
    ) -> None:
        self.decay = check_float("decay", decay, low=0.0, high=1.0, high_inclusive=False)
        self.warmup = bool(warmup)
        self.network = network
        self.averages = []
        for i, variable in enumerate(self.variables):
            average = owner.add_weight(
                shape=variable.shape, dtype=variable.dtype, initializer="zeros", trainable=False, name=f"{name}_{i}"
            )
            average.assign(variable.value)
            self.averages.append(average)

    @property
    def variables(self) -> list:
        """The averaged variables, in the order of :attr:`averages`: trainable, then non-trainable."""
        return self.network.trainable_variables + self.network.non_trainable_variables

    def decay_at(self, step):
        """The decay used at update ``step`` (1-based): min(d, (1 + t) / (10 + t)), or d without warm-up."""
        if not self.warmup:
            return ops.convert_to_tensor(self.decay, "float32")
        step = ops.cast(step, "float32")
        return ops.minimum(self.decay, (1.0 + step) / (10.0 + step))

    def update(self, step) -> None:
        """avg <- d_t avg + (1 - d_t) w for every variable; ``step`` is t (e.g. the optimizer's iterations)."""
        decay = self.decay_at(step)
        for average, variable in zip(self.averages, self.variables):
            average.assign(decay * average.value + (1.0 - decay) * ops.cast(variable.value, average.dtype))

    def stateless_call(self, inputs, **kwargs: Any):
        """``network(inputs, **kwargs)`` with the averaged values in place of the weights (none is changed)."""
        n = len(self.network.trainable_variables)
        values = [average.value for average in self.averages]
        outputs, _ = self.network.stateless_call(values[:n], values[n:], inputs, **kwargs)
        return outputs
