"""Classic autoregression, AR(p): the simplest autoregressive generator.

An AR(p) model predicts the next value of a series as a linear function of the
``p`` previous values::

    x[t] = c + phi[0] * x[t-1] + phi[1] * x[t-2] + ... + phi[p-1] * x[t-p] + noise

Convention used everywhere in this module (the order matters):

* a *series* or *history* is ordered **oldest → newest** (``history[-1]`` is
  the most recent value), exactly as the data arrives in time;
* ``phi[0]`` multiplies the **most recent** value, ``phi[1]`` the one before it,
  and so on.

Example: with ``c = 30`` and ``phi = (0.5, 0.3)``, if the last value is 110 and
the one before it 100, the history is ``[..., 100, 110]`` and the prediction is
``30 + 0.5 * 110 + 0.3 * 100 = 115``.

A character RNN (``aigc_tf.rnn``) keeps the same recipe — predict the next
element from the past, append it, repeat — but replaces the linear map by a
neural network and the real-valued prediction by a probability distribution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aigc_tf.validation import check_float, check_int

__all__ = ["ar_residuals", "ar_root_modulus", "autocorrelation", "fit_ar", "forecast_ar", "predict_ar", "sample_ar"]


def _as_series(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Convert ``values`` to a finite 1-D float64 array or raise a clear error."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 1-D sequence of numbers; got {type(values).__name__}.") from e
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D (oldest → newest); got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        bad = np.flatnonzero(~np.isfinite(x))
        raise ValueError(
            f"{name} contains NaN or infinite values at positions {bad[:10].tolist()}; "
            "drop or impute them before fitting."
        )
    return x


def _check_params(c: float, phi: Sequence[float] | np.ndarray) -> tuple[float, np.ndarray]:
    phi = _as_series(phi, "phi")
    if phi.size < 1:
        raise ValueError("phi must hold at least one coefficient (p >= 1).")
    return check_float("c", c), phi


def _lag_matrix(x: np.ndarray, p: int) -> np.ndarray:
    """Rows ``[x[t-1], x[t-2], ..., x[t-p]]`` for ``t = p .. len(x)-1``, shape (n-p, p)."""
    n = len(x)
    # Column j holds lag j+1: x[p-1-j : n-1-j].
    return np.stack([x[p - 1 - j : n - 1 - j] for j in range(p)], axis=1)


def fit_ar(series: Sequence[float] | np.ndarray, p: int) -> tuple[float, np.ndarray]:
    """Fit an AR(p) model by ordinary least squares.

    Solves ``min ||X @ [c, phi] - y||²`` where each row of ``X`` is
    ``[1, x[t-1], ..., x[t-p]]`` and ``y = x[t]``, with ``numpy.linalg.lstsq``.

    Args:
        series: observed values, shape (n,), ordered oldest → newest.
        p: the order (number of lags), an int >= 1.

    Returns:
        ``(c, phi)``: the intercept (float) and the coefficients, shape (p,),
        ``phi[0]`` multiplying the most recent value.

    Raises:
        ValueError: if ``p < 1``, the series has NaN/inf, or it is too short:
            ``n - p`` equations are needed for ``p + 1`` unknowns, so
            ``n >= 2p + 1``.
    """
    p = check_int("p", p, minimum=1)  # the AR order
    x = _as_series(series, "series")
    if len(x) < 2 * p + 1:
        raise ValueError(
            f"series has {len(x)} values; fitting AR({p}) needs at least 2p + 1 = {2 * p + 1} "
            f"(n - p = {len(x) - p} equations for p + 1 = {p + 1} unknowns)."
        )
    X = np.concatenate([np.ones((len(x) - p, 1)), _lag_matrix(x, p)], axis=1)
    y = x[p:]
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return float(coef[0]), coef[1:]


def predict_ar(history: Sequence[float] | np.ndarray, c: float, phi: Sequence[float] | np.ndarray) -> float:
    """One-step prediction ``c + sum_j phi[j] * history[-1 - j]``.

    Args:
        history: past values, shape (n,) with ``n >= p``, ordered oldest → newest
            (``history[-1]`` is the most recent value).
        c: intercept.
        phi: coefficients, shape (p,); ``phi[0]`` multiplies ``history[-1]``.

    Returns:
        The predicted next value (float).

    Raises:
        ValueError: NaN/inf values, or fewer than ``p`` values of history.
    """
    c, phi = _check_params(c, phi)
    x = _as_series(history, "history")
    p = len(phi)
    if len(x) < p:
        raise ValueError(f"history has {len(x)} values; AR({p}) needs at least p = {p}.")
    recent_first = x[::-1][:p]  # [x[t-1], x[t-2], ..., x[t-p]]
    return float(c + recent_first @ phi)


def forecast_ar(
    history: Sequence[float] | np.ndarray,
    c: float,
    phi: Sequence[float] | np.ndarray,
    steps: int,
) -> np.ndarray:
    """Forecast ``steps`` values by feeding each prediction back as history.

    This is autoregressive generation: the model only ever predicts one step,
    and its own output becomes the input of the next step.

    Args:
        history: past values, shape (n,) with ``n >= p``, oldest → newest.
        c: intercept.
        phi: coefficients, shape (p,); ``phi[0]`` multiplies the most recent value.
        steps: number of future values, an int >= 0.

    Returns:
        The forecasts, shape (steps,), oldest → newest.
    """
    steps = check_int("steps", steps, minimum=0)
    c, phi = _check_params(c, phi)
    window = list(_as_series(history, "history"))
    if len(window) < len(phi):
        raise ValueError(f"history has {len(window)} values; AR({len(phi)}) needs at least p = {len(phi)}.")
    return _roll(window, c, phi, np.zeros(steps))


def _roll(window: list, c: float, phi: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Feed each prediction plus ``noise[i]`` back as history; a clear error if it overflows."""
    p = len(phi)
    out = np.empty(len(noise))
    with np.errstate(over="ignore", invalid="ignore"):
        for i, eps in enumerate(noise):
            out[i] = c + np.asarray(window[::-1][:p]) @ phi + eps
            if not np.isfinite(out[i]):
                raise ValueError(
                    f"the forecast overflowed at step {i}: phi={phi.tolist()} is explosive (the largest "
                    f"root of its characteristic polynomial has modulus {ar_root_modulus(phi):.3g} > 1), so "
                    "forecasts grow without bound. Forecast fewer steps, or fit a stationary model."
                )
            window.append(out[i])
    return out


def ar_root_modulus(phi: Sequence[float] | np.ndarray) -> float:
    """The largest modulus of the roots of ``z^p - phi[0] z^(p-1) - ... - phi[p-1]``.

    Below 1 the AR(p) process is stationary and its forecasts settle at the mean;
    above 1 they grow without bound.
    """
    _, phi = _check_params(0.0, phi)
    return float(np.max(np.abs(np.roots(np.concatenate([[1.0], -phi]))))) if len(phi) else 0.0


def ar_residuals(series: Sequence[float] | np.ndarray, c: float, phi: Sequence[float] | np.ndarray) -> np.ndarray:
    """One-step-ahead residuals ``x[t] - prediction(x[:t])`` for ``t = p .. n-1``.

    For a good fit they look like white noise (no structure left to model).

    Args:
        series: observed values, shape (n,), oldest → newest, ``n > p``.
        c: intercept.
        phi: coefficients, shape (p,).

    Returns:
        Residuals, shape (n - p,).
    """
    c, phi = _check_params(c, phi)
    x = _as_series(series, "series")
    p = len(phi)
    if len(x) <= p:
        raise ValueError(f"series has {len(x)} values; residuals of AR({p}) need more than p = {p}.")
    return x[p:] - (c + _lag_matrix(x, p) @ phi)


def sample_ar(
    history: Sequence[float] | np.ndarray,
    c: float,
    phi: Sequence[float] | np.ndarray,
    sigma: float,
    steps: int,
    seed: int | None = None,
) -> np.ndarray:
    """Sample a continuation: each step draws ``prediction + sigma * N(0, 1)`` and feeds it back.

    :func:`forecast_ar` feeds back the expected value; this feeds back a
    sample, so the paths look like the data (the noise of step ``i`` is the
    ``i``-th draw of ``numpy.random.default_rng(seed).normal()``).

    Args:
        history: past values, shape (n,) with ``n >= p``, oldest → newest.
        c: intercept.
        phi: coefficients, shape (p,).
        sigma: noise standard deviation, >= 0 (0: the forecast).
        steps: number of new values, an int >= 0.
        seed: seed of the noise (None: fresh entropy).

    Returns:
        The sampled values, shape (steps,), oldest → newest.
    """
    steps = check_int("steps", steps, minimum=0)
    c, phi = _check_params(c, phi)
    sigma = check_float("sigma", sigma, low=0.0)
    window = list(_as_series(history, "history"))
    if len(window) < len(phi):
        raise ValueError(f"history has {len(window)} values; AR({len(phi)}) needs at least p = {len(phi)}.")
    rng = np.random.default_rng(seed)
    return _roll(window, c, phi, sigma * rng.normal(size=steps))


def autocorrelation(series: Sequence[float] | np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelations ``corr(x[t], x[t - k])`` for ``k = 1 .. max_lag``.

    For white noise (the residuals of a good fit) they scatter around 0 within
    about ``±2 / sqrt(n)``.

    Args:
        series: values, shape (n,), ``n > max_lag + 1``.
        max_lag: the largest lag, >= 1.

    Returns:
        Shape (max_lag,): entry ``k - 1`` is the Pearson correlation of
        ``x[k:]`` with ``x[:-k]``.
    """
    max_lag = check_int("max_lag", max_lag, minimum=1)
    x = _as_series(series, "series")
    if len(x) <= max_lag + 1:
        raise ValueError(f"series has {len(x)} values; lags up to max_lag={max_lag} need more than {max_lag + 1}.")
    return np.array([np.corrcoef(x[k:], x[:-k])[0, 1] for k in range(1, max_lag + 1)])
