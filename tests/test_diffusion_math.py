"""The maths of aigc_tf.diffusion against independent computations.

* the forward process: the closed-form marginal against the steps run one by one, and
  the schedules against their formulas;
* the posterior q(x_{t-1} | x_t, x_0) against the Gaussian product, completed by hand;
* the samplers with the exact score of Gaussian data (no network: ``eps_fn``): DDPM and
  DDIM reproduce the data's moments, classifier-free guidance mixes the predictions as
  eps_u + w (eps_c - eps_u), DDIM is deterministic and invertible, eta = 1 is DDPM;
* guidance on the real (untrained, perturbed) network; training and the weights' average.

The exact score of N(mu, s^2): x_t ~ N(sqrt(abar) mu, abar s^2 + 1 - abar) and
E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar). With it every
sampler step is affine in x_t, so the distribution each sampler produces is Gaussian with
moments given by a scalar recursion (:func:`sampler_moments`). Those moments are not
exactly (mu, s^2): a finite step misses the part c0^2 Var(x0 | x_t) of the true reverse
variance (about 7 % of s^2 for DDPM with T = 200, 20 % for 50 DDIM steps at eta = 1).
So the Monte-Carlo checks compare the samples with the recursion at 5 standard errors
(tight: it catches a wrong coefficient, step order or noise), and a separate check
bounds the recursion's distance to (mu, s^2), which shrinks as the steps get finer.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from aigc_tf.diffusion import DiffusionModel, NoiseSchedule, ddim_step, ddpm_step, guided_epsilon, slerp

KINDS = ("linear", "cosine")
T_SMALL = 200  # the samplers' schedule: DDPM's 200 steps stay fast
MU, S = 0.3, 0.5  # the Gaussian data N(MU, S^2), per pixel
N_IMAGES = 4000  # x 16 pixels: 64,000 independent scalars
SIGMAS = 5.0  # Monte-Carlo tolerance, in standard errors
TINY = dict(image_shape=(4, 4, 1), base_filters=4, channel_mults=(1,), attention=False, ema_decay=0.0, seed=0)


def tiny_model(kind: str = "linear", num_steps: int = T_SMALL, **overrides) -> DiffusionModel:
    """A 4x4 model; with ``eps_fn`` it is only the container of the schedule and the loop."""
    kw = dict(TINY, sampling_jit_compile=False) | overrides
    return DiffusionModel(schedule=NoiseSchedule(num_steps, kind), **kw)


def independent_alpha_bars(schedule: NoiseSchedule) -> np.ndarray:
    return np.cumprod(1.0 - schedule.betas)


def gaussian_eps(alpha_bars: np.ndarray, mean, s: float = S):
    """The exact eps of N(mean, s^2 I); ``mean`` a scalar or one value per image ``(N,)``."""

    def eps(x, t):
        a = alpha_bars[t].reshape(-1, 1, 1, 1)
        m = np.reshape(mean, (-1, 1, 1, 1))
        return np.sqrt(1 - a) * (x - np.sqrt(a) * m) / (a * s**2 + 1 - a)

    return eps


def mixture_eps(alpha_bars: np.ndarray, mu: float, s: float):
    """eps_fn of the mixture 1/2 N(-mu 1, s^2 I) + 1/2 N(+mu 1, s^2 I), one class per image:
    labels pick the component (conditional), ``None`` weighs them by their responsibilities."""
    means = np.array([-mu, mu])

    def component_eps(x, t, k):
        return gaussian_eps(alpha_bars, means[k], s)(x, t)

    def eps_fn(x, t, labels):
        if labels is not None:
            return component_eps(x, t, np.asarray(labels))
        a = alpha_bars[t].reshape(-1, 1, 1, 1)
        v = a * s**2 + 1 - a
        log_r = np.stack([-np.sum((x - np.sqrt(a) * m) ** 2 / (2 * v), axis=(1, 2, 3)) for m in means], -1)
        r = np.exp(log_r - log_r.max(-1, keepdims=True))
        r /= r.sum(-1, keepdims=True)
        eps = [component_eps(x, t, np.full(len(x), k)) for k in range(2)]
        return r[:, 0, None, None, None] * eps[0] + r[:, 1, None, None, None] * eps[1]

    return eps_fn


def sampler_moments(alpha_bars, times, sampler: str, eta: float, mu: float, s: float) -> tuple[float, float]:
    """The mean and variance of a pixel after the reverse process from x_T ~ N(0, 1) with the
    exact eps of N(mu, s^2): every step is x' = A x + B + sigma z (papers' formulas, scalars)."""
    m, v = 0.0, 1.0
    for i in reversed(range(len(times))):
        a_t = alpha_bars[times[i]]
        a_s = alpha_bars[times[i - 1]] if i > 0 else 1.0
        k = np.sqrt(1 - a_t) / (a_t * s**2 + 1 - a_t)  # eps = k x - k sqrt(a_t) mu
        p, q = (1 - np.sqrt(1 - a_t) * k) / np.sqrt(a_t), np.sqrt(1 - a_t) * k * mu  # x0_hat = p x + q
        if sampler == "ddpm":  # Ho et al. (2020), eq. 7: the posterior at x0_hat, variance beta~
            beta = 1 - a_t / a_s
            c0, ct = np.sqrt(a_s) * beta / (1 - a_t), np.sqrt(1 - beta) * (1 - a_s) / (1 - a_t)
            A, B, var = c0 * p + ct, c0 * q, beta * (1 - a_s) / (1 - a_t)
        else:  # Song et al. (2021), eq. 12 and 16
            var = eta**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s)
            d = np.sqrt(1 - a_s - var)
            A, B = np.sqrt(a_s) * p + d * k, np.sqrt(a_s) * q - d * k * np.sqrt(a_t) * mu
        m, v = A * m + B, A**2 * v + var
    return m, v


def assert_moments(x: np.ndarray, mean: float, var: float, what: str = "") -> None:
    """Sample mean and variance of independent scalars ``x`` within 5 standard errors of a Gaussian's."""
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    se_mean, se_var = np.sqrt(var / n), var * np.sqrt(2 / (n - 1))
    assert abs(x.mean() - mean) < SIGMAS * se_mean, f"{what}: mean {x.mean():.5f} vs {mean:.5f} (se {se_mean:.1e})"
    assert abs(x.var(ddof=1) - var) < SIGMAS * se_var, f"{what}: var {x.var(ddof=1):.5f} vs {var:.5f} (se {se_var:.1e})"


def ddim_reference(x, eps, a_t, a_s):
    """DDIM's deterministic step written out (Song et al., 2021, eq. 12 with sigma = 0)."""
    x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    return np.sqrt(a_s) * x0 + np.sqrt(1 - a_s) * eps


# --------------------------------------------------------------------------- #
# 1. The forward process and the schedules.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
def test_q_sample_is_the_forward_steps_applied_one_by_one(kind):
    """x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) z, step by step from x0, has the moments of
    q_sample's closed form (and of N(sqrt(abar) x0, 1 - abar), abar a product computed here)."""
    schedule = NoiseSchedule(1000, kind)
    rng = np.random.default_rng(0)
    n, x0_value = 20_000, 0.8
    x0 = np.full((n, 1), x0_value)
    abar = independent_alpha_bars(schedule)
    checked = (0, 9, 99, 499, 999)
    x = x0.copy()
    for t in range(1000):  # index t is the paper's step t + 1
        x = np.sqrt(1 - schedule.betas[t]) * x + np.sqrt(schedule.betas[t]) * rng.standard_normal(x.shape)
        if t not in checked:
            continue
        closed = schedule.q_sample(x0, np.full(n, t), rng.standard_normal(x0.shape))
        assert closed.shape == x0.shape
        mean, var = np.sqrt(abar[t]) * x0_value, 1 - abar[t]
        assert_moments(x, mean, var, f"{kind} steps, t={t}")
        assert_moments(closed, mean, var, f"{kind} q_sample, t={t}")
        se_diff = np.sqrt(2 * var / n)
        assert abs(x.mean() - closed.mean()) < SIGMAS * se_diff
        assert abs(x.var() - closed.var()) < SIGMAS * var * np.sqrt(4 / n)
    # and exactly, with a given noise: the closed form itself
    noise = rng.standard_normal((5, 2, 2, 1))
    data = rng.uniform(-1, 1, (5, 2, 2, 1))
    t = np.array([0, 1, 10, 500, 999])
    expected = np.sqrt(abar[t])[:, None, None, None] * data + np.sqrt(1 - abar[t])[:, None, None, None] * noise
    np.testing.assert_allclose(schedule.q_sample(data, t, noise), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_alpha_bars_decrease_strictly_to_about_zero(kind):
    schedule = NoiseSchedule(1000, kind)
    abar = schedule.alpha_bars
    assert np.all(np.diff(abar) < 0)
    assert 0 < abar[-1] < 1e-3
    assert abar[0] < 1
    np.testing.assert_allclose(abar, independent_alpha_bars(schedule), rtol=1e-12)
    np.testing.assert_allclose(schedule.alpha_bars_prev, np.concatenate([[1.0], abar[:-1]]), rtol=1e-12)


def test_linear_betas_run_from_1e4_to_002_evenly():
    betas = NoiseSchedule(1000, "linear").betas
    assert betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4, rel=1e-9)
    assert betas[-1] == pytest.approx(0.02, rel=1e-9)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-6)


def test_cosine_betas_are_nichol_and_dhariwals_formula():
    """abar(t) = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) pi/2)^2, beta_t = min(1 - abar(t)/abar(t-1), 0.999)."""
    T, s = 1000, 0.008
    f = [np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2 for t in range(T + 1)]
    abar = [f[t] / f[0] for t in range(T + 1)]
    expected = np.array([min(1 - abar[t] / abar[t - 1], 0.999) for t in range(1, T + 1)])
    betas = NoiseSchedule(T, "cosine").betas
    assert betas.max() <= 0.999
    assert betas[-1] == pytest.approx(0.999)  # the clip is active at the very end
    np.testing.assert_allclose(betas, expected, rtol=1e-9, atol=1e-12)
    # the unclipped steps follow abar(t) itself
    np.testing.assert_allclose(np.cumprod(1 - betas)[:900], abar[1:901], rtol=1e-9)


# --------------------------------------------------------------------------- #
# 2. The posterior q(x_{t-1} | x_t, x_0).
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_is_the_product_of_the_two_gaussians(kind):
    """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0): completing the square in x_{t-1},
    precision 1/(1 - abar_{t-1}) + alpha_t/beta_t, mean var (sqrt(abar_{t-1}) x0 / (1 - abar_{t-1})
    + sqrt(alpha_t) x_t / beta_t). The mean's coefficients are the mean at (x0, x_t) = (1, 0), (0, 1)."""
    schedule = NoiseSchedule(1000, kind)
    betas = schedule.betas
    abar = independent_alpha_bars(schedule)
    for t in (1, 2, 10, 100, 500, 998, 999):
        beta, alpha, abar_prev = betas[t], 1 - betas[t], abar[t - 1]
        var1 = 1 - abar_prev  # q(x_{t-1} | x0) = N(sqrt(abar_{t-1}) x0, var1)
        var = 1 / (1 / var1 + alpha / beta)

        def mean(x0, x_t, var=var, abar_prev=abar_prev, var1=var1, alpha=alpha, beta=beta):
            return var * (np.sqrt(abar_prev) * x0 / var1 + np.sqrt(alpha) * x_t / beta)

        c0, ct = schedule.posterior_mean_coefs(t)
        assert c0 == pytest.approx(mean(1.0, 0.0), rel=1e-9)
        assert ct == pytest.approx(mean(0.0, 1.0), rel=1e-9)
        assert schedule.posterior_variance(t) == pytest.approx(var, rel=1e-9)
        # and on arbitrary points (the mean is linear in both)
        assert c0 * 0.7 + ct * -1.3 == pytest.approx(mean(0.7, -1.3), rel=1e-9)
    # arrays of t broadcast the same values
    t = np.array([1, 10, 999])
    c0, ct = schedule.posterior_mean_coefs(t)
    assert c0.shape == ct.shape == schedule.posterior_variance(t).shape == (3,)
    np.testing.assert_allclose(c0, [schedule.posterior_mean_coefs(int(i))[0] for i in t])


@pytest.mark.parametrize("kind", KINDS)
def test_posterior_at_the_first_step_lands_on_x0(kind):
    schedule = NoiseSchedule(1000, kind)
    c0, ct = schedule.posterior_mean_coefs(0)
    assert c0 == pytest.approx(1.0, rel=1e-9)
    assert ct == 0.0
    assert schedule.posterior_variance(0) == 0.0


# --------------------------------------------------------------------------- #
# 3. The samplers with the exact score.
# --------------------------------------------------------------------------- #

SAMPLER_RUNS = [
    ("ddpm", dict(sampler="ddpm"), 0.10),
    ("ddim-50-eta0", dict(sampler="ddim", steps=50, eta=0.0), 0.12),
    ("ddim-50-eta1", dict(sampler="ddim", steps=50, eta=1.0), 0.25),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name, kwargs, bias_bound", SAMPLER_RUNS, ids=[r[0] for r in SAMPLER_RUNS])
def test_samplers_with_the_exact_score_reproduce_gaussian_data(kind, name, kwargs, bias_bound):
    """generate(eps_fn=exact eps of N(mu, s^2)) gives samples with the moments the sampler's
    steps imply (5 standard errors), and those are near (mu, s^2): the steps' discretisation
    only shrinks the variance a little (relative ``bias_bound``)."""
    model = tiny_model(kind)
    abar = independent_alpha_bars(model.schedule)
    eps = gaussian_eps(abar, MU)
    calls = []

    def eps_fn(x, t, labels):
        assert x.dtype == np.float32 and x.shape == (N_IMAGES, 4, 4, 1)
        assert t.shape == (N_IMAGES,) and np.issubdtype(t.dtype, np.integer) and len(set(t)) == 1
        assert labels is None
        calls.append(int(t[0]))
        return eps(x, t)

    x = np.asarray(model.generate(N_IMAGES, seed=1, eps_fn=eps_fn, clip_x0=False, batch_size=N_IMAGES, **kwargs))
    assert x.shape == (N_IMAGES, 4, 4, 1) and x.dtype == np.float32
    times = np.arange(T_SMALL) if kwargs["sampler"] == "ddpm" else np.round(np.linspace(0, T_SMALL - 1, 50))
    times = times.astype(int)
    assert calls == list(times[::-1])  # from t = T-1 down to 0, one call per step
    mean, var = sampler_moments(abar, times, kwargs["sampler"], kwargs.get("eta", 1.0), MU, S)
    assert_moments(x, mean, var, f"{kind} {name}")
    assert mean == pytest.approx(MU, abs=0.01)
    assert 1 - bias_bound < var / S**2 <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_the_samplers_discretisation_error_vanishes_with_finer_steps(kind):
    """The recursion of the previous test converges to (mu, s^2): the variance's gap shrinks like
    1/T (x ~4.5 from T = 200 to 1000), to 2 % of s^2 for DDPM and 1 % for DDIM at T = 1000."""
    coarse, fine = NoiseSchedule(200, kind), NoiseSchedule(1000, kind)
    gaps = {}
    for name, schedule, sampler, eta in (
        ("ddpm-200", coarse, "ddpm", 1.0),
        ("ddpm-1000", fine, "ddpm", 1.0),
        ("ddim-200", coarse, "ddim", 0.0),
        ("ddim-1000", fine, "ddim", 0.0),
        ("ddim-1000-eta1", fine, "ddim", 1.0),
    ):
        mean, var = sampler_moments(
            independent_alpha_bars(schedule), np.arange(schedule.num_steps), sampler, eta, MU, S
        )
        assert mean == pytest.approx(MU, abs=0.005)
        gaps[name] = abs(var / S**2 - 1)
    assert gaps["ddpm-1000"] < gaps["ddpm-200"] / 3 and gaps["ddpm-1000"] < 0.02
    assert gaps["ddim-1000"] < gaps["ddim-200"] / 3 and gaps["ddim-1000"] < 0.01
    assert gaps["ddim-1000-eta1"] == pytest.approx(gaps["ddpm-1000"], rel=1e-6)  # eta = 1 is DDPM


MIX_MU, MIX_S = 0.6, 0.5  # modes 1.2 apart: an image's pixel mean (sd 0.125) tells its class


@pytest.mark.parametrize("kind", KINDS)
def test_guidance_one_samples_each_class_and_zero_the_mixture(kind):
    """Two classes N(-mu, s^2) and N(+mu, s^2): guidance=1 with labels gives each class's moments
    (50 DDIM steps, against the recursion); guidance=0 (the responsibility-weighted eps) gives
    the mixture: half the images in each mode, mean 0, variance s^2 + mu^2. The unconditional
    run takes 200 steps: with 50, the bimodal image means shrink towards 0 by a few per cent."""
    model = tiny_model(kind, num_classes=2)
    abar = independent_alpha_bars(model.schedule)
    eps_fn = mixture_eps(abar, MIX_MU, MIX_S)
    times = np.round(np.linspace(0, T_SMALL - 1, 50)).astype(int)
    run = dict(eta=0.0, clip_x0=False, eps_fn=eps_fn, batch_size=N_IMAGES)
    labels = np.arange(N_IMAGES) % 2

    x = np.asarray(model.generate(N_IMAGES, seed=2, labels=labels, guidance=1.0, steps=50, **run))
    for k, sign in ((0, -1), (1, 1)):
        mean, var = sampler_moments(abar, times, "ddim", 0.0, sign * MIX_MU, MIX_S)
        assert_moments(x[labels == k], mean, var, f"class {k}")
        assert mean == pytest.approx(sign * MIX_MU, abs=0.01)

    x = np.asarray(model.generate(N_IMAGES, seed=3, guidance=0.0, steps=T_SMALL, **run))  # labels=None
    image_means = x.mean(axis=(1, 2, 3))
    plus = image_means > 0
    assert abs(plus.mean() - 0.5) < SIGMAS * np.sqrt(0.25 / N_IMAGES)
    assert np.all(np.abs(np.abs(image_means) - MIX_MU) < 6 * MIX_S / 4)  # two modes, nothing between
    # the pixels of one image share the class: the mean's error is that of the image means
    assert abs(x.mean()) < SIGMAS * image_means.std() / np.sqrt(N_IMAGES)
    assert x.var() == pytest.approx(MIX_S**2 + MIX_MU**2, rel=0.04)
    for mode, sign in ((plus, 1), (~plus, -1)):
        assert x[mode].mean() == pytest.approx(sign * MIX_MU, abs=0.02)
        assert x[mode].var() == pytest.approx(MIX_S**2, rel=0.05)


def test_guided_epsilon_is_eps_u_plus_w_times_the_difference():
    rng = np.random.default_rng(0)
    eu, ec = rng.standard_normal((2, 3, 4, 4, 1))
    for w in (0.0, 1.0, 2.5):
        np.testing.assert_allclose(guided_epsilon(eu, ec, w), eu + w * (ec - eu), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(guided_epsilon(eu, ec, 0.0), eu, rtol=1e-6)
    np.testing.assert_allclose(guided_epsilon(eu, ec, 1.0), ec, rtol=1e-6)


def test_guidance_w_mixes_the_two_predictions_at_every_step():
    """guidance=2.5: every step asks eps_fn for the unconditional and the conditional eps at the
    same (x_t, t) and steps with eps_u + 2.5 (eps_c - eps_u): the same images as guidance=1 with
    that combination done by hand, and as a DDIM loop written out here."""
    model = tiny_model("cosine", num_classes=2)
    abar = independent_alpha_bars(model.schedule)
    eps_fn = mixture_eps(abar, MIX_MU, MIX_S)
    w, steps, n = 2.5, 10, 64
    labels = np.arange(n) % 2
    calls = []

    def recording(x, t, y):
        calls.append((x.copy(), t.copy(), None if y is None else y.copy()))
        return eps_fn(x, t, y)

    def combined(x, t, y):  # in float32, as the sampler combines them
        eu, ec = (np.asarray(eps_fn(x, t, labels), np.float32) for labels in (None, y))
        return eu + np.float32(w) * (ec - eu)

    x_T = np.random.default_rng(5).standard_normal((n, 4, 4, 1)).astype(np.float32)
    run = dict(labels=labels, steps=steps, clip_x0=False)
    guided = np.asarray(model.generate_from_noise(x_T, guidance=w, eps_fn=recording, **run))
    by_hand = np.asarray(model.generate_from_noise(x_T, guidance=1.0, eps_fn=combined, **run))
    np.testing.assert_allclose(guided, by_hand, rtol=1e-6, atol=1e-6)

    times = np.round(np.linspace(0, T_SMALL - 1, steps)).astype(int)
    assert len(calls) == 2 * steps
    x = x_T.astype(np.float64)
    for i in reversed(range(steps)):
        (xu, tu, yu), (xc, tc, yc) = calls[2 * (steps - 1 - i)], calls[2 * (steps - 1 - i) + 1]
        assert sorted([yu is None, yc is None]) == [False, True]  # one unconditional, one conditional call
        if yu is not None:
            (xu, tu, yu), (xc, tc, yc) = (xc, tc, yc), (xu, tu, yu)
        np.testing.assert_array_equal(yc, labels)
        np.testing.assert_array_equal(xu, xc)
        assert set(tu) == set(tc) == {times[i]}
        np.testing.assert_allclose(xu, x, rtol=1e-3, atol=1e-3)  # the loop is where ours is (float32 vs 64)
        eu, ec = eps_fn(x, tu, None), eps_fn(x, tu, labels)
        x = ddim_reference(x, eu + w * (ec - eu), abar[times[i]], abar[times[i - 1]] if i > 0 else 1.0)
    np.testing.assert_allclose(guided, x, rtol=1e-3, atol=1e-3)
    # the guidance made a difference: it pushes each class beyond its mean
    plain = np.asarray(model.generate_from_noise(x_T, guidance=1.0, eps_fn=eps_fn, **run))
    assert np.abs(guided - plain).max() > 0.1
    assert np.mean(guided[labels == 1]) > np.mean(plain[labels == 1]) > 0


# --------------------------------------------------------------------------- #
# 4. DDIM: determinism, inversion, eta = 1 as DDPM.
# --------------------------------------------------------------------------- #


def test_ddim_eta_zero_is_deterministic_in_the_seed():
    model = tiny_model()
    eps = gaussian_eps(independent_alpha_bars(model.schedule), MU)
    eps_fn = lambda x, t, y: eps(x, t)
    run = dict(steps=20, eta=0.0, eps_fn=eps_fn, clip_x0=False)
    a, b = model.generate(32, seed=7, **run), model.generate(32, seed=7, **run)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c = model.generate(32, seed=8, **run)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0.1
    # eta = 0 from given x_T ignores the seed: the path is a function of x_T alone
    x_T = np.random.default_rng(0).standard_normal((8, 4, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(model.generate_from_noise(x_T, seed=1, **run)),
        np.asarray(model.generate_from_noise(x_T, seed=2, **run)),
    )
    # with eta > 0 the seed picks the step noise
    noisy = dict(run, eta=1.0)
    assert (
        np.abs(np.asarray(model.generate(8, seed=7, **noisy)) - np.asarray(model.generate(8, seed=7, **run))).max() > 0
    )
    np.testing.assert_array_equal(np.asarray(model.generate(8, seed=7, **noisy)), model.generate(8, seed=7, **noisy))


def test_ddim_inversion_reconstructs_the_images_better_with_more_steps():
    """ddim_invert then generate_from_noise (eta 0, no clip) with the exact eps: the round trip's
    error is the ODE's discretisation error, first order in the step (x ~10 from 20 to 200 steps)."""
    model = tiny_model()
    eps = gaussian_eps(independent_alpha_bars(model.schedule), MU)
    eps_fn = lambda x, t, y: eps(x, t)
    images = np.clip(MU + S * np.random.default_rng(0).standard_normal((200, 4, 4, 1)), -1, 1).astype(np.float32)
    errors = {}
    for steps in (20, 200):
        x_T = model.ddim_invert(images, steps, eps_fn=eps_fn)
        assert x_T.shape == images.shape and x_T.dtype == np.float32
        assert 0.7 < x_T.std() < 1.3  # mapped to noise, not left at the data
        back = np.asarray(model.generate_from_noise(x_T, steps=steps, clip_x0=False, eps_fn=eps_fn))
        errors[steps] = np.sqrt(np.mean((back - images) ** 2))
    assert errors[200] < 0.02
    assert errors[200] < errors[20] / 5


@pytest.mark.parametrize("kind", KINDS)
def test_ddim_eta_one_over_consecutive_steps_is_the_ddpm_step(kind):
    """With s = t - 1, ddim_step(eta=1) adds sqrt(beta~_t) noise (its noise part is
    sqrt(posterior_variance(t)) * z) around ddpm_step's posterior mean, for any (x_t, eps)."""
    schedule = NoiseSchedule(1000, kind)
    abar = schedule.alpha_bars
    rng = np.random.default_rng(0)
    x_t, eps, z = rng.standard_normal((3, 16, 4, 4, 1)).astype(np.float32)
    zeros = np.zeros_like(x_t)
    for t in (1, 5, 100, 500, 990):
        noisy = ddim_step(x_t, eps, abar[t], abar[t - 1], eta=1.0, noise=z)
        mean = ddim_step(x_t, eps, abar[t], abar[t - 1], eta=1.0, noise=zeros)
        sigma = np.sqrt(schedule.posterior_variance(t))
        np.testing.assert_allclose(noisy - mean, sigma * z, rtol=1e-4, atol=1e-5)
        ddpm_mean = ddpm_step(schedule, x_t, eps, t, zeros, clip_range=None)
        np.testing.assert_allclose(mean, ddpm_mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ddpm_step(schedule, x_t, eps, t, z) - ddpm_mean, sigma * z, rtol=1e-4, atol=1e-5)
        # eta = 0 keeps the mean's x0 part and puts the rest of the variance in eps
        x0_hat = (x_t - np.sqrt(1 - abar[t]) * eps) / np.sqrt(abar[t])
        expected = np.sqrt(abar[t - 1]) * x0_hat + np.sqrt(1 - abar[t - 1]) * eps
        np.testing.assert_allclose(ddim_step(x_t, eps, abar[t], abar[t - 1]), expected, rtol=1e-4, atol=1e-4)
    # the last step (abar_s = 1) lands on x0_hat, as DDPM's t = 0 does
    x0_hat = (x_t - np.sqrt(1 - abar[0]) * eps) / np.sqrt(abar[0])
    np.testing.assert_allclose(ddim_step(x_t, eps, abar[0], 1.0, eta=1.0, noise=z), x0_hat, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ddpm_step(schedule, x_t, eps, 0, z), x0_hat, rtol=1e-5, atol=1e-5)


def test_ddim_with_all_steps_and_eta_one_is_ddpm():
    """generate(sampler='ddim', steps=T, eta=1) draws the same step noise as DDPM and gives its images."""
    model = tiny_model("linear")
    eps = gaussian_eps(independent_alpha_bars(model.schedule), MU)
    run = dict(seed=4, eps_fn=lambda x, t, y: eps(x, t), clip_x0=False)
    ddpm = np.asarray(model.generate(64, sampler="ddpm", **run))
    ddim = np.asarray(model.generate(64, sampler="ddim", steps=T_SMALL, eta=1.0, **run))
    np.testing.assert_allclose(ddim, ddpm, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- #
# 5. Guidance on the real network.
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def perturbed_conditional_model():
    """An untrained conditional 4x4 model with every weight random (the U-Net's zero-initialised
    convolutions would otherwise predict eps = 0 whatever the class)."""
    model = tiny_model("linear", num_classes=2)
    rng = np.random.default_rng(0)
    model.unet.set_weights([rng.normal(0.0, 0.3, w.shape).astype(w.dtype) for w in model.unet.get_weights()])
    return model


def test_predict_x0_guidance_one_is_conditional_and_zero_unconditional(perturbed_conditional_model):
    model = perturbed_conditional_model
    rng = np.random.default_rng(1)
    n = 16
    t = rng.integers(0, 150, n)
    x_t = model.schedule.q_sample(rng.uniform(-1, 1, (n, 4, 4, 1)), t, rng.standard_normal((n, 4, 4, 1)))
    labels = np.arange(n) % 2
    abar = independent_alpha_bars(model.schedule)[t].reshape(-1, 1, 1, 1)

    def net(y):
        return np.asarray(model.unet([x_t, t.astype(np.int32), y.astype(np.int32)], training=False))

    eps_c, eps_u = net(labels), net(np.full(n, 2))  # class id 2 = num_classes: "no label"
    assert np.abs(eps_c - eps_u).max() > 1e-2  # the class embedding reaches the output
    assert np.abs(net(1 - labels) - eps_c).max() > 1e-2
    x0_of = lambda eps: (x_t - np.sqrt(1 - abar) * eps) / np.sqrt(abar)
    tol = dict(rtol=1e-4, atol=1e-4)
    cond = np.asarray(model.predict_x0(x_t, t, labels, guidance=1.0))
    uncond = np.asarray(model.predict_x0(x_t, t, None))
    np.testing.assert_allclose(cond, x0_of(eps_c), **tol)
    np.testing.assert_allclose(uncond, x0_of(eps_u), **tol)
    np.testing.assert_allclose(np.asarray(model.predict_x0(x_t, t, labels, guidance=0.0)), uncond, **tol)
    guided = np.asarray(model.predict_x0(x_t, t, labels, guidance=2.5))  # one batched pass of both halves
    np.testing.assert_allclose(guided, x0_of(eps_u + 2.5 * (eps_c - eps_u)), **tol)
    assert np.abs(cond - uncond).max() > 1e-2


def test_generate_with_the_network_is_generate_with_its_eps(perturbed_conditional_model):
    """generate(guidance=w) on the network equals generate(eps_fn=the network called by hand):
    w = 1 the conditional pass, w = 0 the "no label" pass, w = 2.5 their combination."""
    model = perturbed_conditional_model
    labels = np.array([0, 1, 1, 0, 1, 0])

    def network_eps(x, t, y):
        y = np.full(len(x), 2) if y is None else y
        return np.asarray(model.unet([x, t.astype(np.int32), np.asarray(y, np.int32)], training=False))

    run = dict(seed=0, steps=4, clip_x0=False, labels=labels)
    results = {}
    for w in (1.0, 0.0, 2.5):
        net = np.asarray(model.generate(6, guidance=w, **run))
        by_hand = np.asarray(model.generate(6, guidance=w, eps_fn=network_eps, **run))
        np.testing.assert_allclose(net, by_hand, rtol=1e-4, atol=1e-4)
        results[w] = net
    np.testing.assert_allclose(results[0.0], np.asarray(model.generate(6, **dict(run, labels=None), guidance=0.0)))
    assert np.abs(results[1.0] - results[0.0]).max() > 1e-2
    assert np.abs(results[2.5] - results[1.0]).max() > 1e-2


# --------------------------------------------------------------------------- #
# 6. Training and the average of the weights.
# --------------------------------------------------------------------------- #


def test_training_lowers_the_loss_and_the_average_follows_the_ema_formula():
    rng = np.random.default_rng(0)
    images = np.broadcast_to(rng.uniform(-1, 1, (64, 1, 1, 1)), (64, 8, 8, 1)).astype(np.float32)
    decay = 0.9
    model = DiffusionModel(
        image_shape=(8, 8, 1),
        base_filters=8,
        channel_mults=(1,),
        attention=False,
        schedule=NoiseSchedule(T_SMALL, "linear"),
        ema_decay=decay,
        seed=0,
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    average = model.unet_average
    # the warm-up: d_t = min(d, (1 + t) / (10 + t))
    for step in (0, 1, 2, 10, 80, 81, 1000):
        assert float(average.decay_at(step)) == pytest.approx(min(decay, (1 + step) / (10 + step)), rel=1e-6)
    assert len(average.averages) == len(model.unet.trainable_variables) + len(model.unet.non_trainable_variables)
    old = [np.array(a) for a in average.averages]
    for a, v in zip(old, model.unet.trainable_variables):
        np.testing.assert_array_equal(a, np.array(v))  # the averages start at the weights

    for step in (1, 2):
        model.fit(images[:16], batch_size=16, epochs=1, verbose=0)  # one step
        assert int(model.optimizer.iterations) == step
        d = float(average.decay_at(step))
        assert d == pytest.approx((1 + step) / (10 + step))
        new = [np.array(v) for v in model.unet.trainable_variables]
        assert any(np.abs(n - o).max() > 0 for n, o in zip(new, old))  # the step moved the weights
        for a, o, n in zip(average.averages, old, new):
            np.testing.assert_allclose(np.array(a), d * o + (1 - d) * n, rtol=1e-5, atol=1e-7)
        old = [np.array(a) for a in average.averages]

    losses = model.fit(images, batch_size=16, epochs=6, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


# --------------------------------------------------------------------------- #
# 7. slerp and the DDIM timesteps.
# --------------------------------------------------------------------------- #


def test_slerp_ends_at_its_inputs_and_stays_on_the_sphere():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 4, 1))
    ends = slerp(a, b, [0.0, 1.0])
    assert ends.shape == (2, 4, 4, 1) and ends.dtype == np.float32
    np.testing.assert_allclose(ends[0], a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ends[1], b, rtol=1e-5, atol=1e-6)
    # two orthogonal vectors of norm 3: the arc keeps the norm, the midpoint bisects the angle
    u, v = np.zeros(16), np.zeros(16)
    u[0], v[5] = 3.0, 3.0
    path = slerp(u, v, np.linspace(0, 1, 11))
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(path[5], (u + v) / np.sqrt(2), rtol=1e-6, atol=1e-6)
    angles = np.arctan2(path[:, 5], path[:, 0])
    np.testing.assert_allclose(angles, np.linspace(0, np.pi / 2, 11), atol=1e-6)  # even in angle
    assert np.linalg.norm((u + v) / 2) < 3.0 - 0.5  # the straight line would not


@pytest.mark.parametrize("T", (10, 200, 1000))
def test_timesteps_are_evenly_spaced_from_zero_to_the_last_step(T):
    schedule = NoiseSchedule(T, "linear")
    np.testing.assert_array_equal(schedule.timesteps(1), [T - 1])
    np.testing.assert_array_equal(schedule.timesteps(T), np.arange(T))
    for steps in {2, 3, 7, T // 2, T - 1, T} - {0, 1}:
        times = schedule.timesteps(steps)
        assert len(times) == steps == len(np.unique(times))
        assert np.issubdtype(times.dtype, np.integer)
        assert times[0] == 0 and times[-1] == T - 1
        gaps = np.diff(times)
        assert np.all(gaps > 0)
        assert gaps.max() - gaps.min() <= 1  # even, up to the rounding
        np.testing.assert_allclose(times, np.linspace(0, T - 1, steps), atol=0.5)


def test_ddim_clipping_uses_the_noise_the_clipped_x0_implies():
    """With clipping, a DDIM step is the one the clipped x0_hat and *its* noise make (no class reversal
    under strong guidance); where nothing is clipped it is the plain step."""
    from aigc_tf.diffusion import ddim_step, predicted_x0

    rng = np.random.default_rng(0)
    x_t = rng.standard_normal((64, 4, 4, 1)).astype(np.float32)
    eps = (3 * rng.standard_normal(x_t.shape)).astype(np.float32)  # far from x_t: x0_hat leaves [-1, 1]
    a_t, a_s = 0.05, 0.3
    x0 = predicted_x0(x_t, eps, a_t)
    assert np.abs(x0).max() > 1
    stepped = ddim_step(x_t, eps, a_t, a_s, clip_range=(-1.0, 1.0))
    x0_clipped = np.clip(x0, -1, 1)
    implied = (x_t - np.sqrt(a_t) * x0_clipped) / np.sqrt(1 - a_t)
    np.testing.assert_allclose(stepped, np.sqrt(a_s) * x0_clipped + np.sqrt(1 - a_s) * implied, atol=1e-5)
    # The step keeps the x0_hat it clipped: x0_hat of the new point, with the implied noise, is the clipped one.
    np.testing.assert_allclose(predicted_x0(stepped, implied, a_s), x0_clipped, atol=1e-4)
    small = (0.1 * eps).astype(np.float32)
    inside = ddim_step(x_t * 0.1, small * 0.1, 0.9, 0.95, clip_range=(-1.0, 1.0))
    np.testing.assert_allclose(inside, ddim_step(x_t * 0.1, small * 0.1, 0.9, 0.95), atol=1e-6)
