"""The forward (noising) process of a diffusion model: a schedule of betas and its closed forms.

Index ``t = 0 … T − 1`` of every array is the paper's step ``t + 1``; ``x_0`` is the data.

    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I),   alpha_t = 1 - beta_t
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),  abar_t = prod_{s <= t} alpha_s
    q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, beta~_t I)  (t >= 1), with abar_{-1} = 1:

        c0_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t),
        ct_t = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t),
        beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t).

At ``t = 0`` the same formulas give ``c0 = 1, ct = 0, beta~ = 0``: the last step lands on x_0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aigc_tf.validation import check_choice, check_int

__all__ = ["SCHEDULE_KINDS", "NoiseSchedule"]

SCHEDULE_KINDS = ("linear", "cosine")


class NoiseSchedule:
    """The betas of a diffusion model and the closed forms they give (NumPy, float64).

    ``linear``: beta from 1e-4 to 0.02 over the steps (Ho et al., 2020, scaled to
    ``num_steps`` as in their 1,000-step setting). ``cosine``: abar_t =
    f(t) / f(0), f(t) = cos(((t / T) + s) / (1 + s) * pi / 2)^2, s = 0.008, betas
    clipped at 0.999 (Nichol & Dhariwal, 2021).

    Example:
        >>> s = NoiseSchedule(1000, "cosine")
        >>> s.alpha_bars.shape, bool(s.alpha_bars[-1] < 1e-4)
        ((1000,), True)

    Args:
        num_steps: T, >= 2.
        kind: ``"linear"`` or ``"cosine"``.
    """

    def __init__(self, num_steps: int = 1000, kind: str = "linear") -> None:
        self.num_steps = check_int("num_steps", num_steps, minimum=2)
        self.kind = check_choice("kind", kind, SCHEDULE_KINDS)
        T = self.num_steps
        if self.kind == "linear":
            # DDPM's 1e-4 .. 0.02 is for T = 1000; other T keep the same total noise.
            scale = 1000.0 / T
            self.betas = np.linspace(scale * 1e-4, min(scale * 0.02, 0.999), T, dtype=np.float64)
        else:
            s = 0.008
            f = np.cos((np.arange(T + 1, dtype=np.float64) / T + s) / (1 + s) * np.pi / 2) ** 2
            self.betas = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
        self.alphas = 1.0 - self.betas
        self.alpha_bars = np.cumprod(self.alphas)
        #: abar_{t-1}, with abar_{-1} = 1 (no noise before the first step).
        self.alpha_bars_prev = np.concatenate([[1.0], self.alpha_bars[:-1]])

    def __repr__(self) -> str:
        return f"NoiseSchedule(num_steps={self.num_steps}, kind={self.kind!r})"

    def check_t(self, t: Any) -> np.ndarray:
        """``t`` as an int array of step indices, checked to lie in [0, T) (``TypeError``/``ValueError``)."""
        t = np.asarray(t)
        if not np.issubdtype(t.dtype, np.integer):
            raise TypeError(f"t must be integer step indices, got dtype {t.dtype}.")
        if t.size and (t.min() < 0 or t.max() >= self.num_steps):
            raise ValueError(f"t must lie in [0, {self.num_steps}) (num_steps), got [{t.min()}, {t.max()}].")
        return t

    @staticmethod
    def _broadcast(values: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Per-example values ``(N,)`` shaped ``(N, 1, 1, …)`` to multiply an ``(N, …)`` batch."""
        return values.reshape(values.shape + (1,) * (x.ndim - values.ndim))

    def q_sample(self, x0: Any, t: Any, noise: Any) -> np.ndarray:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, a sample of q(x_t | x_0).

        Args:
            x0: ``(N, …)`` data.
            t: one int or ``(N,)`` int indices in [0, T).
            noise: standard normal noise shaped like ``x0``.

        Returns:
            ``(N, …)`` array of ``x0``'s dtype (float32 for float32 input).
        """
        x0 = np.asarray(x0)
        noise = np.asarray(noise)
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {x0.shape}, got {noise.shape}.")
        t = self.check_t(t)
        a = self._broadcast(np.sqrt(self.alpha_bars[t]), x0)
        b = self._broadcast(np.sqrt(1.0 - self.alpha_bars[t]), x0)
        return (a * x0 + b * noise).astype(np.result_type(x0.dtype, np.float32))

    def posterior_mean_coefs(self, t: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(c0, ct)``: the mean of q(x_{t-1} | x_t, x_0) is ``c0 * x0 + ct * x_t``.

        Args:
            t: int or int array of indices in [0, T).

        Returns:
            Two float64 arrays shaped like ``t``.
        """
        t = self.check_t(t)
        one_minus = 1.0 - self.alpha_bars[t]
        c0 = np.sqrt(self.alpha_bars_prev[t]) * self.betas[t] / one_minus
        ct = np.sqrt(self.alphas[t]) * (1.0 - self.alpha_bars_prev[t]) / one_minus
        return c0, ct

    def posterior_variance(self, t: Any) -> np.ndarray:
        """beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t), the variance of q(x_{t-1} | x_t, x_0)."""
        t = self.check_t(t)
        return self.betas[t] * (1.0 - self.alpha_bars_prev[t]) / (1.0 - self.alpha_bars[t])

    def timesteps(self, steps: int) -> np.ndarray:
        """``steps`` indices evenly spaced over [0, T − 1] (``linspace``, rounded), increasing; DDIM's τ.

        Raises:
            ValueError: if ``steps`` is not in [1, T].
        """
        steps = check_int("steps", steps, minimum=1, maximum=self.num_steps)
        if steps == 1:
            return np.array([self.num_steps - 1])
        return np.round(np.linspace(0, self.num_steps - 1, steps)).astype(np.int64)

    def get_config(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps, "kind": self.kind}
