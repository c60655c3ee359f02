"""AR(p): least-squares fit, one-step prediction, forecasting, input checks."""

import numpy as np
import pytest

from aigc_tf.autoregressive import ar_residuals, fit_ar, forecast_ar, predict_ar


def simulate_ar(c, phi, n, noise=1.0, seed=0, burn_in=200):
    rng = np.random.default_rng(seed)
    p = len(phi)
    x = np.zeros(n + burn_in)
    for t in range(p, n + burn_in):
        x[t] = c + sum(phi[j] * x[t - 1 - j] for j in range(p)) + noise * rng.normal()
    return x[burn_in:]


def test_hand_example_order_matters():
    # Last value 110, the one before it 100: history is oldest -> newest.
    assert predict_ar([100.0, 110.0], 30.0, (0.5, 0.3)) == pytest.approx(115.0)
    # The same numbers in the other order are a different history.
    assert predict_ar([110.0, 100.0], 30.0, (0.5, 0.3)) == pytest.approx(113.0)
    # Only the last p values are used.
    assert predict_ar([1e6, 100.0, 110.0], 30.0, (0.5, 0.3)) == pytest.approx(115.0)


def test_fit_recovers_known_ar2():
    c, phi = 2.0, np.array([0.6, -0.3])
    x = simulate_ar(c, phi, n=20_000, seed=1)
    c_hat, phi_hat = fit_ar(x, 2)
    assert phi_hat.shape == (2,)
    np.testing.assert_allclose(phi_hat, phi, atol=0.03)
    assert c_hat == pytest.approx(c, abs=0.1)
    # Residuals of the fitted model are the innovations: variance ~ 1, no lag-1 correlation.
    r = ar_residuals(x, c_hat, phi_hat)
    assert r.shape == (len(x) - 2,)
    assert np.var(r) == pytest.approx(1.0, rel=0.05)
    assert abs(np.corrcoef(r[1:], r[:-1])[0, 1]) < 0.03


def test_fit_exact_on_noiseless_series():
    x = np.zeros(40)
    x[:2] = [1.0, 3.0]  # a start away from the fixed point keeps the system well conditioned
    for t in range(2, len(x)):
        x[t] = 5.0 + 0.5 * x[t - 1] + 0.3 * x[t - 2]
    c_hat, phi_hat = fit_ar(x, 2)
    assert c_hat == pytest.approx(5.0, abs=1e-6)
    np.testing.assert_allclose(phi_hat, [0.5, 0.3], atol=1e-8)
    np.testing.assert_allclose(ar_residuals(x, c_hat, phi_hat), 0.0, atol=1e-6)


def test_forecast_feeds_predictions_back():
    c, phi = 30.0, (0.5, 0.3)
    f = forecast_ar([100.0, 110.0], c, phi, steps=3)
    assert f.shape == (3,)
    x1 = 30 + 0.5 * 110 + 0.3 * 100
    x2 = 30 + 0.5 * x1 + 0.3 * 110
    x3 = 30 + 0.5 * x2 + 0.3 * x1
    np.testing.assert_allclose(f, [x1, x2, x3])
    # A stationary AR(p) forecast converges to the mean c / (1 - sum(phi)).
    long = forecast_ar([100.0, 110.0], c, phi, steps=300)
    assert long[-1] == pytest.approx(c / (1 - sum(phi)), rel=1e-6)
    assert forecast_ar([1.0, 2.0], c, phi, steps=0).shape == (0,)


@pytest.mark.parametrize("p, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_order(p, error):
    with pytest.raises(error, match="p must be"):
        fit_ar(np.arange(20.0), p)


def test_too_short_series():
    with pytest.raises(ValueError, match="at least"):
        fit_ar([1.0, 2.0, 3.0], 2)  # needs 2p + 1 = 5
    fit_ar([1.0, 2.0, 4.0, 3.0, 5.0], 2)  # exactly enough
    with pytest.raises(ValueError, match="history"):
        predict_ar([1.0], 0.0, [0.5, 0.3])


def test_nan_and_shape_errors():
    x = np.arange(20.0)
    x[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_ar(x, 2)
    with pytest.raises(ValueError, match="NaN"):
        predict_ar([1.0, np.inf], 0.0, [0.5, 0.3])
    with pytest.raises(ValueError, match="1-D"):
        fit_ar(np.ones((10, 2)), 1)
    with pytest.raises(ValueError, match="steps"):
        forecast_ar([1.0, 2.0], 0.0, [0.5], steps=-1)
    with pytest.raises(TypeError, match="steps"):
        forecast_ar([1.0, 2.0], 0.0, [0.5], steps=2.0)
    with pytest.raises(ValueError, match="c must be finite"):
        predict_ar([1.0, 2.0], float("nan"), [0.5])
