"""Numerical checks of the formulas shown in notebooks/01_gan.ipynb, each through the
package's code: the optimal discriminator D* = p_data / (p_data + p_g), the value of
the game at D* (-log 4 + 2 JSD), the gradients of the two generator losses, the
EMA schedule of the averaged generator, and the acceptance of discriminator
rejection sampling.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops
from scipy import integrate, optimize, stats
from scipy.spatial.distance import jensenshannon

from aigc_tf.ema import ExponentialMovingAverage
from aigc_tf.gan import discriminator_loss, rejection_acceptance, rejection_sample
from aigc_tf.gan.toy import fit_quadratic_discriminator, generator_loss_gradients, logit_of_score, quadratic_logit

# Two discrete distributions on 6 points (p_data puts no mass nowhere: every ratio is finite).
P_DATA = np.array([0.05, 0.10, 0.30, 0.25, 0.20, 0.10])
P_G = np.array([0.30, 0.25, 0.15, 0.10, 0.10, 0.10])


def expected_d_loss(logits: np.ndarray, p: np.ndarray = P_DATA, q: np.ndarray = P_G) -> float:
    """E_p[-log D] + E_q[-log(1 - D)] with the package's per-example loss, D = sigma(logits) per point."""
    lg = np.asarray(logits, np.float32)
    real = ops.convert_to_numpy(discriminator_loss(lg, np.full_like(lg, -80.0)))  # fake term ~ 0
    fake = ops.convert_to_numpy(discriminator_loss(np.full_like(lg, 80.0), lg))  # real term ~ 0
    return float(np.sum(p * real + q * fake))


# --------------------------------------------------------------------------- #
# D* and the value of the game.
# --------------------------------------------------------------------------- #


def test_minimising_the_package_d_loss_gives_d_star():
    """argmin over D of the package's D loss is p_data / (p_data + p_g), point by point."""
    # The loss is a sum of one term per point: minimise each over its logit (a 1-D search).
    logits = []
    for p, q in zip(P_DATA, P_G):
        one = optimize.minimize_scalar(
            lambda lg, p=p, q=q: expected_d_loss(np.array([lg]), np.array([p]), np.array([q])),
            bounds=(-10, 10),
            method="bounded",
            options={"xatol": 1e-6},
        )
        logits.append(one.x)
    logits = np.array(logits)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), P_DATA / (P_DATA + P_G), atol=2e-3)
    # its logit is the log density ratio
    np.testing.assert_allclose(logits, np.log(P_DATA / P_G), atol=2e-2)


def test_quadratic_discriminator_learns_the_gaussian_log_ratio():
    """For N(2, 0.5^2) vs N(0, 1), log p_data / p_g = (log 2 - 8) + 8 x - 1.5 x^2."""
    rng = np.random.default_rng(0)
    real = stats.norm(2.0, 0.5).rvs(20_000, random_state=rng)
    fake = stats.norm(0.0, 1.0).rvs(20_000, random_state=rng)
    w = ops.convert_to_numpy(fit_quadratic_discriminator(real, fake, steps=1000, learning_rate=0.2))
    np.testing.assert_allclose(w, [np.log(2) - 8, 8, -1.5], atol=0.4)
    x = np.linspace(0.5, 3.0, 6).astype("float32")
    d_star = stats.norm(2, 0.5).pdf(x) / (stats.norm(2, 0.5).pdf(x) + stats.norm(0, 1).pdf(x))
    np.testing.assert_allclose(1 / (1 + np.exp(-ops.convert_to_numpy(quadratic_logit(w, x)))), d_star, atol=0.05)


def test_value_at_d_star_is_minus_log_4_plus_twice_the_jsd_discrete():
    """V(D*, G) = -(expected D loss at D*) = -log 4 + 2 JSD(p_data || p_g) (natural log)."""
    value = -expected_d_loss(np.log(P_DATA / P_G))
    jsd = jensenshannon(P_DATA, P_G) ** 2  # scipy returns the square root of the JSD
    assert value == pytest.approx(-np.log(4) + 2 * jsd, abs=1e-5)
    # equal distributions: D* = 1/2 everywhere and V = -log 4
    assert -expected_d_loss(np.zeros(6), P_DATA, P_DATA) == pytest.approx(-np.log(4), abs=1e-6)


def test_value_at_d_star_is_minus_log_4_plus_twice_the_jsd_gaussian():
    p, q = stats.norm(2.0, 0.5), stats.norm(0.0, 1.0)
    xs = np.linspace(-12, 14, 200_001)
    lg = (p.logpdf(xs) - q.logpdf(xs)).astype("float32")
    real = ops.convert_to_numpy(discriminator_loss(lg, np.full_like(lg, -80.0)))
    fake = ops.convert_to_numpy(discriminator_loss(np.full_like(lg, 80.0), lg))
    value = -integrate.trapezoid(p.pdf(xs) * real + q.pdf(xs) * fake, xs)
    m = 0.5 * (p.pdf(xs) + q.pdf(xs))
    kl = [integrate.trapezoid(d.pdf(xs) * (d.logpdf(xs) - np.log(m)), xs) for d in (p, q)]
    assert value == pytest.approx(-np.log(4) + kl[0] + kl[1], abs=1e-3)  # 2 JSD = KL(p||m) + KL(q||m)


# --------------------------------------------------------------------------- #
# The gradients of the two generator losses.
# --------------------------------------------------------------------------- #


def test_generator_loss_gradients_match_the_closed_forms():
    """d/dl log(1 - sigma(l)) = -sigma(l);  d/dl -log sigma(l) = -(1 - sigma(l))."""
    lg = np.array([-30.0, -10.0, -2.0, 0.0, 1.5, 10.0, 30.0])
    g = generator_loss_gradients(lg)
    d = 1 / (1 + np.exp(-lg))
    np.testing.assert_allclose(g["score"], d)
    np.testing.assert_allclose(g["minimax"], -d, atol=1e-6)
    np.testing.assert_allclose(g["non_saturating"], -(1 - d), atol=1e-6)
    # where D rejects the fakes (l << 0) the minimax gradient vanishes, the non-saturating one does not
    assert abs(g["minimax"][0]) < 1e-12 and g["non_saturating"][0] == pytest.approx(-1.0)
    # the gradients are equal only at D = 1/2
    np.testing.assert_allclose(g["minimax"][3], g["non_saturating"][3])


def test_gradients_as_a_function_of_d():
    d = np.linspace(0.01, 0.99, 25)
    g = generator_loss_gradients(logit_of_score(d))
    np.testing.assert_allclose(g["score"], d, atol=1e-6)
    np.testing.assert_allclose(g["minimax"], -d, atol=1e-6)
    np.testing.assert_allclose(g["non_saturating"], d - 1, atol=1e-6)
    with pytest.raises(ValueError, match="scores"):
        logit_of_score([0.0, 0.5])
    with pytest.raises(ValueError, match="logits"):
        generator_loss_gradients([np.nan])


# --------------------------------------------------------------------------- #
# The EMA of the generator's weights.
# --------------------------------------------------------------------------- #


def test_ema_schedule_and_recursion():
    """d_t = min(decay, (1 + t) / (10 + t)); avg_t = d_t avg_{t-1} + (1 - d_t) w_t."""
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    owner = keras.layers.Layer()
    ema = ExponentialMovingAverage(owner, net, decay=0.9)
    for t in (1, 5, 50, 1000):
        assert float(ema.decay_at(t)) == pytest.approx(min(0.9, (1 + t) / (10 + t)), rel=1e-6)
    plain = ExponentialMovingAverage(keras.layers.Layer(), net, decay=0.9, warmup=False)
    assert float(plain.decay_at(1)) == pytest.approx(0.9)

    kernel = net.trainable_variables[0]
    expected = kernel.numpy().astype(np.float64)
    rng = np.random.default_rng(1)
    for t in range(1, 31):
        kernel.assign(rng.standard_normal(kernel.shape).astype("float32"))
        ema.update(t)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * kernel.numpy()
    np.testing.assert_allclose(ema.averages[0].numpy(), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- #
# Discriminator rejection sampling.
# --------------------------------------------------------------------------- #


def test_rejection_acceptance_is_the_clipped_density_ratio():
    """a(x) = min(1, exp(l(x) - b)) (Azadi et al., 2019)."""
    lg = np.array([-3.0, 0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(rejection_acceptance(lg, 2.0), np.minimum(1, np.exp(lg - 2.0)))
    per_label = np.array([0.0, 0.0, 0.0, 10.0, 10.0])  # one bound per logit broadcasts
    np.testing.assert_allclose(rejection_acceptance(lg, per_label), np.exp(np.minimum(lg - per_label, 0)))


def test_rejection_with_d_star_recovers_p_data_and_keeps_e_to_the_minus_b():
    """With l = log p/q and e^b = max p/q: kept ~ p_data exactly, acceptance = e^-b."""
    lg = np.log(P_DATA / P_G)
    b = lg.max()
    a = rejection_acceptance(lg, b)
    kept = P_G * a
    np.testing.assert_allclose(kept / kept.sum(), P_DATA, atol=1e-12)  # closed form
    assert kept.sum() == pytest.approx(np.exp(-b))

    # and by sampling, through the package's sampler with stand-in proposal and score
    def propose(rng, count, _labels):
        return rng.choice(len(P_G), size=count, p=P_G).astype("float32")

    def score(x, _labels):
        return lg[x.astype(int)]

    info = {}
    out = rejection_sample(propose, score, 20_000, seed=0, bound=float(b), stats=info)
    shares = np.bincount(out.astype(int), minlength=len(P_DATA)) / len(out)
    np.testing.assert_allclose(shares, P_DATA, atol=0.01)
    assert info["acceptance"] == pytest.approx(np.exp(-b), rel=0.05)
