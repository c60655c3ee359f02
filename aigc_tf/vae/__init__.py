"""Variational autoencoder (Kingma & Welling, 2013) with a hand-written ELBO.

The model, top to bottom:

    q(z | x) = N(z; mu(x), diag(exp(log_var(x))))     the encoder
    p(z)     = N(z; 0, I)                             the prior
    p(x | z) = prod_pixels Bernoulli(x; sigmoid(f(z)))  the decoder, f = logits

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))  <=  log p(x)

Training maximises the ELBO, i.e. minimises, per example,

    loss(x) = BCE_logits(x, f(z)) summed over ALL pixels and channels   (-log p(x|z))
              + beta * KL                                             (closed form)

with one reparameterised sample z = mu + exp(log_var / 2) * eps, eps ~ N(0, I).
The sum over pixels matters: averaging the cross-entropy over pixels shrinks the
reconstruction term 784x against the KL and gives blurry samples.

Evaluation reports nats per image: :meth:`VAE.elbo` and the tighter
importance-weighted bound of Burda et al. (2015), :meth:`VAE.log_likelihood`,

    log p(x) >= log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),  z_i ~ q(z | x),

which approaches log p(x) as k grows. Literature numbers on MNIST use *dynamic
binarization* (:func:`binarize`): a fresh Bernoulli sample of each training image
every epoch, and one fixed, seeded sample of the test set.
"""

from aigc_tf.vae.binarize import binarize
from aigc_tf.vae.diagnostics import importance_bounds, latent_summary, reparameterization_gradients
from aigc_tf.vae.elbo import bernoulli_log_likelihood, gaussian_log_density, kl_divergence, log_mean_exp
from aigc_tf.vae.model import VAE
from aigc_tf.vae.networks import Sampling, make_decoder, make_encoder

__all__ = [
    "VAE",
    "Sampling",
    "binarize",
    "bernoulli_log_likelihood",
    "gaussian_log_density",
    "importance_bounds",
    "latent_summary",
    "kl_divergence",
    "log_mean_exp",
    "make_decoder",
    "make_encoder",
    "reparameterization_gradients",
]
