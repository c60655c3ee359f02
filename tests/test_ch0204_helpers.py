"""Package helpers behind chapters 02-04: the VAE's estimator checks, AR sampling and autocorrelation,
the text metrics of generated samples, and the chart helpers."""

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import LM_TEXT

from aigc_tf.autoregressive import autocorrelation, forecast_ar, predict_ar, sample_ar
from aigc_tf.charts import (
    plot_autocorrelation,
    plot_curves,
    plot_heatmap,
    plot_kept_mass,
    plot_rate_distortion,
    visible_chars,
)
from aigc_tf.metrics import continuation_nats_per_char, repeated_share
from aigc_tf.vae import VAE, importance_bounds, latent_summary, log_mean_exp, reparameterization_gradients

# ---------------------------------------------------------------- VAE


def test_reparameterization_gradients_estimate_the_exact_ones():
    out = reparameterization_gradients(1.5, 0.5, num_samples=200_000, seed=0)
    assert out["mean"] == pytest.approx(1.5, abs=0.01)
    assert out["variance"] == pytest.approx(0.25, abs=0.01)
    assert out["grad_mu"] == pytest.approx(3.0, abs=0.02)  # 2 mu
    assert out["grad_sigma"] == pytest.approx(1.0, abs=0.02)  # 2 sigma
    assert reparameterization_gradients(1.5, 0.5, num_samples=1000, seed=1) == reparameterization_gradients(
        1.5, 0.5, num_samples=1000, seed=1
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"mu": "a"}, TypeError, "mu"),
        ({"num_samples": 1}, ValueError, "num_samples"),
    ],
)
def test_reparameterization_gradients_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        reparameterization_gradients(**({"mu": 0.0, "sigma": 1.0} | kwargs))


@pytest.fixture(scope="module")
def small_vae_and_images():
    keras.utils.set_random_seed(0)
    vae = VAE(latent_dim=3, filters=(4,), dense_units=0, seed=0)
    x = (np.random.default_rng(0).random((12, 28, 28, 1)) < 0.3).astype("float32")
    return vae, x


def test_importance_bounds_share_their_draws(small_vae_and_images):
    vae, x = small_vae_and_images
    b = importance_bounds(vae, x, ks=(1, 2, 4), batch_size=5, seed=0)
    assert set(b) == {"elbo", "kl_closed_form", "kl_monte_carlo", 1, 2, 4}
    assert all(v.shape == (12,) for v in b.values())
    # L_1 is the ELBO of the same draw with the KL estimated by Monte Carlo instead of in closed form.
    np.testing.assert_allclose(b[1], b["elbo"] + b["kl_closed_form"] - b["kl_monte_carlo"], atol=1e-3)
    # The same seed and draw shape give VAE.log_likelihood's numbers.
    np.testing.assert_allclose(b[4], vae.log_likelihood(x, 4, batch_size=5, chunk_size=4, seed=0), atol=1e-3)
    # Nested draws: L_2 is the log-mean-exp of L_1's weight and the next one.
    again = importance_bounds(vae, x, ks=(2,), batch_size=5, seed=0)
    np.testing.assert_allclose(again[2], b[2])
    with pytest.raises(TypeError, match="ks"):
        importance_bounds(vae, x, ks=4)
    with pytest.raises(ValueError, match="ks"):
        importance_bounds(vae, x, ks=(0,))


def test_log_mean_exp_of_two_weights():
    a = np.array([[-100.0], [-102.0]])
    assert float(log_mean_exp(a, axis=0)[0]) == pytest.approx(-100 + np.log((1 + np.exp(-2)) / 2))


def test_latent_summary_of_the_prior_and_of_separated_clusters():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((20_000, 2))
    s = latent_summary(z, rng.integers(0, 3, len(z)))
    assert s["inside"] == pytest.approx(1 - np.exp(-2), abs=0.01)  # chi-square with 2 dof
    assert s["centre_norm"] < 0.05 and np.allclose(s["std"], 1, atol=0.03)
    labels = np.repeat([0, 1], 100)
    clusters = np.concatenate([rng.normal(-5, 0.1, (100, 2)), rng.normal(5, 0.1, (100, 2))])
    s = latent_summary(clusters, labels)
    assert s["separation"] == {0: 1.0, 1: 1.0} and s["inside"] == 0.0
    with pytest.raises(ValueError, match="labels"):
        latent_summary(z, labels)


# ---------------------------------------------------------------- AR


def test_sample_ar_is_the_loop_it_replaces():
    history = [150.0, 150.0]
    expected, window, rng = [], list(history), np.random.default_rng(3)
    for _ in range(20):
        window.append(predict_ar(window, 30.0, (0.5, 0.3)) + 5.0 * rng.normal())
        expected.append(window[-1])
    np.testing.assert_allclose(sample_ar(history, 30.0, (0.5, 0.3), 5.0, 20, seed=3), expected)
    np.testing.assert_allclose(
        sample_ar(history, 30.0, (0.5, 0.3), 0.0, 20), forecast_ar(history, 30.0, (0.5, 0.3), 20)
    )
    with pytest.raises(ValueError, match="sigma"):
        sample_ar(history, 30.0, (0.5, 0.3), -1.0, 5)
    with pytest.raises(TypeError, match="sigma"):
        sample_ar(history, 30.0, (0.5, 0.3), "5", 5)
    with pytest.raises(ValueError, match="history"):
        sample_ar([1.0], 30.0, (0.5, 0.3), 1.0, 5)


def test_autocorrelation_of_ar1_and_white_noise():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(20_000)
    x = np.zeros_like(noise)
    for t in range(1, len(x)):
        x[t] = 0.8 * x[t - 1] + noise[t]
    acf = autocorrelation(x, 3)
    np.testing.assert_allclose(acf, [0.8, 0.64, 0.512], atol=0.02)  # phi^k
    assert np.all(np.abs(autocorrelation(noise, 5)) < 2 / np.sqrt(len(noise)) * 1.5)
    assert autocorrelation(noise, 1)[0] == pytest.approx(np.corrcoef(noise[1:], noise[:-1])[0, 1])
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(noise[:3], 2)


# ---------------------------------------------------------------- text metrics


def test_repeated_share():
    assert repeated_share("abcabcabc", 3) == pytest.approx(4 / 7)
    assert repeated_share("abcdefgh", 3) == 0.0
    assert repeated_share("PROMPTaaaa", 2, skip=6) == pytest.approx(2 / 3)  # "aa" again at 1 and 2
    with pytest.raises(ValueError, match="n=5"):
        repeated_share("abc", 5)
    with pytest.raises(TypeError, match="text"):
        repeated_share(123)


def brute_nats(model, text, prompt):
    ids = model.tokenizer.encode(text)
    context = model.context_length or len(ids)
    total = 0.0
    for t in range(len(prompt), len(ids)):
        logits = np.asarray(model(ids[None, max(0, t - context) : t]))[0, -1]
        total -= float(keras.ops.log_softmax(logits)[ids[t]])
    return total / (len(text) - len(prompt))


@pytest.mark.parametrize("kind", ["rnn", "gpt"])
def test_continuation_nats_per_char_reads_the_context_generation_read(kind, tiny_rnn, tiny_gpt):
    model = {"rnn": tiny_rnn, "gpt": tiny_gpt}[kind]()
    text = LM_TEXT[:30]  # longer than the tiny GPT's context of 8: its window slides
    for prompt in (text[:3], text[:12]):
        assert continuation_nats_per_char(model, text, prompt) == pytest.approx(
            brute_nats(model, text, prompt), rel=1e-4
        )
    with pytest.raises(ValueError, match="prefix"):
        continuation_nats_per_char(model, text, "xyz")
    with pytest.raises(TypeError, match="str"):
        continuation_nats_per_char(model, text, 3)


# ---------------------------------------------------------------- charts


def test_charts_draw_and_check_their_input():
    figures = [
        plot_curves([1, 10, 100], {"L_k": [-3, -2, -1.5]}, xlabel="k", ylabel="nats", logx=True, hlines={"ELBO": -3.1}),
        plot_rate_distortion({0.25: 37.0, 1.0: 25.0, 4.0: 7.0}, {0.25: 78.0, 1.0: 72.0, 4.0: 130.0}),
        plot_autocorrelation({"AR(1)": [-0.2, 0.1], "AR(2)": [0.0, 0.01]}, num_values=900),
        plot_kept_mass([0.5, 0.3, 0.2], {"top-k = 1": [True, False, False]}, ["a", "b", "c"]),
        plot_heatmap(np.tril(np.ones((3, 3))), rows=visible_chars("a b"), cols=visible_chars("a\nb")),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures)
    assert visible_chars(" \n") == ["␣", "⏎"]
    plot_curves(None, {"a": ([1, 2], [3, 4]), "b": ([1, 5, 9], [1, 2, 3])}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="shape"):
        plot_curves([1, 2], {"a": [1, 2, 3]}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="no x"):
        plot_curves(None, {"a": [1, 2, 3]}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError, match="keys"):
        plot_rate_distortion({1: 1.0}, {2: 1.0})
    with pytest.raises(ValueError, match="labels"):
        plot_heatmap(np.ones((2, 2)), rows=["a"])
    plt.close("all")
