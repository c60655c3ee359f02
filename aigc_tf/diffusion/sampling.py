"""The reverse process: from noise to images, step by step (DDPM, DDIM), with guidance.

Every sampler here works from the noise prediction eps(x_t, t):

    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)                    the denoised guess

    DDPM (Ho et al., 2020), every step t = T-1 … 0, z ~ N(0, I):
        x_{t-1} = c0_t x0_hat + ct_t x_t + sqrt(beta~_t) z                   (posterior mean + noise)

    DDIM (Song et al., 2021), on a sub-sequence tau of the steps, s the step before t:
        sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
        x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z  (eta = 0: deterministic)

    classifier-free guidance (Ho & Salimans, 2022), weight w:
        eps = eps_u + w (eps_c - eps_u)        w = 0: unconditional, w = 1: conditional

The step functions are NumPy and float32 whatever the network's precision; the
network (or any ``eps_fn``) only supplies eps. :class:`DiffusionSampling` is the
sampling half of :class:`~aigc_tf.diffusion.DiffusionModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf.diffusion.schedule import NoiseSchedule
from aigc_tf.images import Images, as_images, check_image_batch
from aigc_tf.validation import check_bool, check_choice, check_finite, check_float, check_int, check_labels, check_seed

__all__ = [
    "SAMPLERS",
    "DiffusionSampling",
    "ddim_step",
    "ddpm_step",
    "guided_epsilon",
    "predicted_x0",
    "slerp",
]

SAMPLERS = ("ddpm", "ddim")
#: DDIM's number of steps when ``steps`` is not given.
DEFAULT_DDIM_STEPS = 50


def predicted_x0(x_t: np.ndarray, eps: np.ndarray, alpha_bar: float) -> np.ndarray:
    """x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar): the data that x_t and eps imply."""
    return ((x_t - np.sqrt(1.0 - alpha_bar) * eps) / np.sqrt(alpha_bar)).astype(np.float32)


def _clipped(x0: np.ndarray, clip_range: tuple[float, float] | None) -> np.ndarray:
    return x0 if clip_range is None else np.clip(x0, *clip_range)


def ddpm_step(
    schedule: NoiseSchedule,
    x_t: np.ndarray,
    eps: np.ndarray,
    t: int,
    noise: np.ndarray,
    clip_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """One ancestral step x_t -> x_{t-1}: the posterior mean at x0_hat plus sqrt(beta~_t) noise.

    Args:
        schedule: the noise schedule.
        x_t: ``(N, …)`` float32.
        eps: the predicted noise, shaped like ``x_t``.
        t: the step index in [0, T).
        noise: standard normal, shaped like ``x_t`` (unused at t = 0, where beta~ = 0).
        clip_range: clip x0_hat to this range first (``None``: no clipping).
    """
    x0 = _clipped(predicted_x0(x_t, eps, schedule.alpha_bars[t]), clip_range)
    c0, ct = schedule.posterior_mean_coefs(t)
    sigma = np.sqrt(schedule.posterior_variance(t))
    return (c0 * x0 + ct * x_t + sigma * noise).astype(np.float32)


def ddim_step(
    x_t: np.ndarray,
    eps: np.ndarray,
    alpha_bar: float,
    alpha_bar_prev: float,
    eta: float = 0.0,
    noise: np.ndarray | None = None,
    clip_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """One DDIM step from abar_t to abar_s (s before t; abar_s = 1 lands on x0_hat).

    Args:
        x_t: ``(N, …)`` float32.
        eps: the predicted noise.
        alpha_bar, alpha_bar_prev: abar_t and abar_s.
        eta: 0 (deterministic) … 1 (DDPM's variance when s = t - 1).
        noise: standard normal, needed when ``eta > 0``.
        clip_range: clip x0_hat to this range and use the noise it implies,
            (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t) (``None``: no clipping).
    """
    x0 = predicted_x0(x_t, eps, alpha_bar)
    if clip_range is not None and alpha_bar < 1.0:
        # The noise that the *clipped* x0_hat implies: the step stays on the line between
        # the two, instead of pairing a clipped image with the unclipped noise.
        x0 = np.clip(x0, *clip_range)
        eps = ((x_t - np.sqrt(alpha_bar) * x0) / np.sqrt(1.0 - alpha_bar)).astype(np.float32)
    sigma = 0.0
    if eta > 0:
        sigma = eta * np.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))
    x = np.sqrt(alpha_bar_prev) * x0 + np.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        x = x + sigma * noise
    return x.astype(np.float32)


def guided_epsilon(eps_uncond: np.ndarray, eps_cond: np.ndarray, guidance: float) -> np.ndarray:
    """Classifier-free guidance: eps_u + w (eps_c - eps_u)."""
    return (eps_uncond + guidance * (eps_cond - eps_uncond)).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, fractions: Any) -> np.ndarray:
    """Spherical interpolation between two noise arrays, one row per fraction in [0, 1].

    Gaussian noise lives near a sphere; the straight line between two draws passes
    inside it (too little noise), the arc stays on it.

    Returns:
        ``(len(fractions), *a.shape)`` float32.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}.")
    fractions = check_finite("fractions", np.atleast_1d(fractions))
    cos = np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    if theta < 1e-6:
        return np.stack([(1 - f) * a + f * b for f in fractions]).astype(np.float32)
    rows = [(np.sin((1 - f) * theta) * a + np.sin(f * theta) * b) / np.sin(theta) for f in fractions]
    return np.stack(rows).astype(np.float32)


class DiffusionSampling:
    """The sampling methods of a diffusion model (mixed into :class:`~aigc_tf.diffusion.DiffusionModel`).

    They read the model's ``schedule``, ``unet``, ``unet_average`` (or ``None``),
    ``image_shape``, ``num_classes`` (``None``: unconditional), ``value_range`` and
    ``sample_seed_generator``.
    """

    # ---- the arguments, checked once -------------------------------------------------

    def _sampler_settings(self, sampler, steps, eta, guidance, clip_x0, eps_fn) -> dict[str, Any]:
        sampler = check_choice("sampler", sampler, SAMPLERS)
        T = self.schedule.num_steps
        if sampler == "ddpm":
            if steps is not None and check_int("steps", steps, minimum=1, maximum=T) != T:
                raise ValueError(
                    f"steps={steps}: sampler='ddpm' runs all {T} steps of the schedule; "
                    "use sampler='ddim' for fewer steps."
                )
            times = np.arange(T)
        else:
            times = self.schedule.timesteps(DEFAULT_DDIM_STEPS if steps is None else steps)
        eta = check_float("eta", eta, low=0.0, high=1.0)
        guidance = check_float("guidance", guidance, low=0.0)
        if self.num_classes is None and guidance != 1.0:
            raise ValueError(f"guidance={guidance}: the model is unconditional; guidance needs num_classes.")
        if eps_fn is not None and not callable(eps_fn):
            raise TypeError(f"eps_fn must be callable as eps_fn(x_t, t, labels), got {type(eps_fn).__name__}.")
        clip_range = tuple(self.value_range) if check_bool("clip_x0", clip_x0) else None
        return dict(sampler=sampler, times=times, eta=eta, guidance=guidance, clip_range=clip_range, eps_fn=eps_fn)

    def _sampling_labels(self, labels, num_images: int, guidance: float) -> np.ndarray | None:
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(
                    f"labels: the model is unconditional (num_classes=None), labels must be None, "
                    f"got {np.asarray(labels).shape} labels."
                )
            return None
        if labels is None:
            if guidance != 0.0:
                raise ValueError(
                    "labels: a conditional DiffusionModel needs labels (one class id per image, or one int "
                    "for all), unless guidance=0 (unconditional samples)."
                )
            return None
        return check_labels("labels", labels, self.num_classes, size=num_images)

    def _resolve_seed(self, seed) -> int:
        """An int seed; ``None`` draws one from the model's sampling stream."""
        if check_seed(seed) is None:
            return int(ops.convert_to_numpy(keras.random.randint((), 0, 2**31 - 1, seed=self.sample_seed_generator)))
        return int(seed)

    # ---- public sampling ---------------------------------------------------------------

    def generate(
        self,
        num_images: int,
        seed: int | None = None,
        *,
        labels=None,
        steps: int | None = None,
        sampler: str = "ddim",
        eta: float = 0.0,
        guidance: float = 1.0,
        clip_x0: bool = True,
        eps_fn: Callable | None = None,
        verbose: bool = False,
        average: bool = True,
        batch_size: int = 500,
        trajectory: list | None = None,
    ) -> Images:
        """Sample ``num_images`` images by running the reverse process from x_T ~ N(0, I).

        Args:
            num_images: >= 1.
            seed: int for reproducible samples (the same seed and ``batch_size`` give the
                same images); ``None``: the model's sampling stream.
            labels: ``(num_images,)`` class ids or one int, for a conditional model (needed
                unless ``guidance=0``); ``None`` for an unconditional one.
            steps: DDIM's number of steps, evenly spaced over the T (default 50); DDPM
                always runs all T, so only ``None`` or T is accepted there.
            sampler: ``"ddim"`` or ``"ddpm"`` (ancestral, variance beta~_t).
            eta: DDIM's noise, 0 (deterministic) … 1 (DDPM's variance).
            guidance: classifier-free guidance weight w >= 0 (0: unconditional, 1:
                conditional, > 1: stronger conditioning, less diversity).
            clip_x0: clip each step's x0_hat to ``value_range``.
            eps_fn: ``eps_fn(x_t, t, labels) -> eps`` in place of the network (NumPy in
                and out; ``labels=None`` asks for the unconditional prediction).
            verbose: show a progress bar.
            average: use the moving average of the weights (when ``ema_decay > 0``).
            batch_size: images denoised together.
            trajectory: a list to append ``(t, x_t, x0_hat)`` to after every step (the
                first batch's images), e.g. for an animation of the reverse process.

        Returns:
            ``(num_images, H, W, C)`` float32 :class:`~aigc_tf.images.Images` in ``value_range``.
        """
        num_images = check_int("num_images", num_images, minimum=1)
        settings = self._sampler_settings(sampler, steps, eta, guidance, clip_x0, eps_fn)
        labels = self._sampling_labels(labels, num_images, settings["guidance"])
        batch_size = check_int("batch_size", batch_size, minimum=1)
        seed = self._resolve_seed(seed)
        noise = [
            np.random.default_rng([seed, start]).standard_normal(
                (min(batch_size, num_images - start), *self.image_shape)
            )
            for start in range(0, num_images, batch_size)
        ]
        x_T = np.concatenate(noise).astype(np.float32)
        return self._reverse(
            x_T, labels, settings, seed, check_bool("verbose", verbose), average, batch_size, trajectory
        )

    def generate_from_noise(
        self,
        x_T,
        *,
        labels=None,
        steps: int | None = None,
        sampler: str = "ddim",
        eta: float = 0.0,
        guidance: float = 1.0,
        clip_x0: bool = True,
        eps_fn: Callable | None = None,
        seed: int | None = None,
        verbose: bool = False,
        average: bool = True,
        batch_size: int = 500,
        trajectory: list | None = None,
    ) -> Images:
        """Run the reverse process from given x_T (e.g. :meth:`ddim_invert`'s, or an interpolation path).

        Arguments as for :meth:`generate`; ``seed`` only matters when the sampler adds
        noise (DDPM, or DDIM with ``eta > 0``).

        Returns:
            ``(N, H, W, C)`` float32 :class:`~aigc_tf.images.Images`.
        """
        x_T = check_finite("x_T", x_T).astype(np.float32)
        if x_T.ndim != 4 or tuple(x_T.shape[1:]) != tuple(self.image_shape) or not len(x_T):
            raise ValueError(f"x_T must have shape (N >= 1, {', '.join(map(str, self.image_shape))}), got {x_T.shape}.")
        settings = self._sampler_settings(sampler, steps, eta, guidance, clip_x0, eps_fn)
        labels = self._sampling_labels(labels, len(x_T), settings["guidance"])
        batch_size = check_int("batch_size", batch_size, minimum=1)
        seed = self._resolve_seed(seed)
        return self._reverse(
            x_T, labels, settings, seed, check_bool("verbose", verbose), average, batch_size, trajectory
        )

    def ddim_invert(
        self,
        images,
        steps: int = DEFAULT_DDIM_STEPS,
        *,
        labels=None,
        guidance: float = 1.0,
        eps_fn: Callable | None = None,
        average: bool = True,
        batch_size: int = 500,
    ) -> np.ndarray:
        """Map images to the x_T that deterministic DDIM (eta = 0, no clipping) would turn back into them.

        Runs the DDIM update forwards, x_s -> x_t with eps(x_s, t): the ODE the sampler
        solves, integrated the other way. ``generate_from_noise(x_T, steps=steps,
        clip_x0=False)`` then reconstructs the images up to the discretisation error.

        Args:
            images: ``(N, H, W, C)`` in ``value_range``.
            steps: DDIM steps (as for sampling), in [1, T].
            labels, guidance, eps_fn, average, batch_size: as for :meth:`generate`.

        Returns:
            ``(N, H, W, C)`` float32 x_T.
        """
        images = check_image_batch("images", images, self.image_shape, tuple(self.value_range))
        if not len(images):
            raise ValueError("images is empty: nothing to invert.")
        settings = self._sampler_settings("ddim", steps, 0.0, guidance, False, eps_fn)
        labels = self._sampling_labels(labels, len(images), settings["guidance"])
        batch_size = check_int("batch_size", batch_size, minimum=1)
        times, abar = settings["times"], self.schedule.alpha_bars
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].copy()
            y = None if labels is None else labels[start : start + batch_size]
            previous = 1.0  # abar before the first step: the data
            for t in times:
                eps = self._epsilon(x, int(t), y, settings, average)
                x = ddim_step(x, eps, previous, abar[t])  # the same update, from abar_s up to abar_t
                previous = abar[t]
            out.append(x)
        return np.concatenate(out)

    def predict_x0(self, x_t, t, labels=None, *, guidance: float = 1.0, average: bool = True) -> Images:
        """The network's denoised guess x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), unclipped.

        Args:
            x_t: ``(N, H, W, C)`` noisy images (e.g. ``schedule.q_sample(x0, t, noise)``).
            t: one int or ``(N,)`` step indices in [0, T).
            labels: class ids for a conditional model (``None``: unconditional prediction).
            guidance: as for :meth:`generate` (used when ``labels`` are given).
            average: use the averaged weights.

        Returns:
            ``(N, H, W, C)`` float32 :class:`~aigc_tf.images.Images`.
        """
        x_t = check_finite("x_t", x_t).astype(np.float32)
        if x_t.ndim != 4 or tuple(x_t.shape[1:]) != tuple(self.image_shape):
            raise ValueError(f"x_t must have shape (N, {', '.join(map(str, self.image_shape))}), got {x_t.shape}.")
        t = np.broadcast_to(self.schedule.check_t(t), (len(x_t),))
        if labels is None:
            settings = dict(guidance=1.0, eps_fn=None)
        else:
            settings = dict(guidance=check_float("guidance", guidance, low=0.0), eps_fn=None)
            labels = self._sampling_labels(labels, len(x_t), 1.0)
        chunks = range(0, len(x_t), 500)
        eps = np.concatenate(
            [
                self._epsilon_at(
                    x_t[i : i + 500], t[i : i + 500], None if labels is None else labels[i : i + 500], settings, average
                )
                for i in chunks
            ]
        )
        abar = self.schedule.alpha_bars[t].reshape(-1, 1, 1, 1)
        x0 = (x_t - np.sqrt(1.0 - abar) * eps) / np.sqrt(abar)
        return as_images(x0, tuple(self.value_range))

    # ---- the loop ----------------------------------------------------------------------

    def _reverse(self, x_T, labels, settings, seed, verbose, average, batch_size, trajectory=None) -> Images:
        if trajectory is not None and not isinstance(trajectory, list):
            raise TypeError(f"trajectory must be a list (or None), got {type(trajectory).__name__}.")
        times = settings["times"]
        progress = keras.utils.Progbar(len(times) * -(-len(x_T) // batch_size)) if verbose else None
        out = []
        for start in range(0, len(x_T), batch_size):
            rng = np.random.default_rng([seed, start, 1])  # the step noise, apart from x_T's draw
            x = x_T[start : start + batch_size].copy()
            y = None if labels is None else labels[start : start + batch_size]
            for i in reversed(range(len(times))):
                t = int(times[i])
                x_in = x
                eps = self._epsilon(x, t, y, settings, average)
                if settings["sampler"] == "ddpm":
                    noise = rng.standard_normal(x.shape).astype(np.float32) if t > 0 else np.zeros_like(x)
                    x = ddpm_step(self.schedule, x, eps, t, noise, settings["clip_range"])
                else:
                    abar_prev = self.schedule.alpha_bars[times[i - 1]] if i > 0 else 1.0
                    noise = rng.standard_normal(x.shape).astype(np.float32) if settings["eta"] > 0 else None
                    x = ddim_step(
                        x, eps, self.schedule.alpha_bars[t], abar_prev, settings["eta"], noise, settings["clip_range"]
                    )
                if trajectory is not None and start == 0:
                    trajectory.append((t, x_in, predicted_x0(x_in, eps, self.schedule.alpha_bars[t])))
                if progress is not None:
                    progress.add(1)
            out.append(x)
        return as_images(np.concatenate(out), tuple(self.value_range))

    def _epsilon(self, x, t: int, labels, settings, average: bool) -> np.ndarray:
        return self._epsilon_at(x, np.full((len(x),), t, np.int32), labels, settings, average)

    def _epsilon_at(self, x, t: np.ndarray, labels, settings, average: bool) -> np.ndarray:
        """eps at (x, t) with guidance: only the passes the weight needs (w = 0: one, w = 1: one, else two)."""
        w, eps_fn = settings["guidance"], settings["eps_fn"]
        if eps_fn is not None:

            def predict(y):
                return np.asarray(eps_fn(x, t, y), dtype=np.float32)

        else:

            def predict(y):
                return self._network_eps(x, t, y, average)

        if labels is None or w == 0.0:
            return predict(None)
        if w == 1.0:
            return predict(labels)
        if eps_fn is not None:
            return guided_epsilon(predict(None), predict(labels), w)
        both = self._network_eps(
            np.concatenate([x, x]), np.concatenate([t, t]), np.concatenate([np.full_like(labels, -1), labels]), average
        )
        return guided_epsilon(both[: len(x)], both[len(x) :], w)

    def _network_eps(self, x, t, labels, average: bool) -> np.ndarray:
        inputs = [tf.convert_to_tensor(x), tf.convert_to_tensor(np.asarray(t, np.int32))]
        if self.num_classes is not None:
            ids = np.full((len(x),), self.num_classes, np.int32) if labels is None else np.asarray(labels, np.int32)
            ids = np.where(ids < 0, self.num_classes, ids)  # -1: "no label" (the guidance's unconditional half)
            inputs.append(tf.convert_to_tensor(ids))
        use_average = average and self.unet_average is not None
        fn = self._eps_xla if self.sampling_jit_compile else self._eps_graph
        return ops.convert_to_numpy(fn(inputs, use_average)).astype(np.float32)

    @tf.function(reduce_retracing=True)
    def _eps_graph(self, inputs, average: bool):
        return self._eps_call(inputs, average)

    @tf.function(reduce_retracing=True, jit_compile=True)
    def _eps_xla(self, inputs, average: bool):
        return self._eps_call(inputs, average)

    def _eps_call(self, inputs, average: bool):
        if average:
            return ops.cast(self.unet_average.stateless_call(inputs, training=False), "float32")
        return ops.cast(self.unet(inputs, training=False), "float32")
