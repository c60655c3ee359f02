"""DCGAN (Radford et al., 2015), a conditional GAN (Mirza & Osindero, 2014), and
a GAN conditioned on k-means clusters of the training images (no labels needed).

The game, with D returning a *logit* l = D(x) and sigma the sigmoid:

    D maximises  E_x[log sigma(D(x))] + E_z[log(1 - sigma(D(G(z))))]
    G (minimax)  minimises  E_z[log(1 - sigma(D(G(z))))]       (saturates)
    G (non-saturating, used here)  minimises  E_z[-log sigma(D(G(z)))]

Both G objectives have the same fixed point, but early in training D rejects
fakes (l << 0): then d/dl log(1 - sigma(l)) = -sigma(l) ~ 0 (no signal), while
d/dl -log sigma(l) = -(1 - sigma(l)) ~ -1 (full signal). All losses are binary
cross-entropies computed from logits (``softplus``), exact and overflow-free.

One training step (:meth:`GAN.train_step`):

1. D step: fresh z, fakes G(z); D loss on the real batch (target 1, or
   ``1 - label_smoothing``) plus the fake batch (target 0); gradient w.r.t. D's
   weights only. G runs in training mode (batch statistics) but statelessly, so
   this step leaves every variable of G as it was, BatchNorm statistics included.
2. G step: new z; G loss = BCE(1, D(G(z))); gradient w.r.t. G's weights only;
   D's variables are not touched.
3. Weight averaging: an exponential moving average of G's weights is updated
   (Yazici et al., 2019, "The unusual effectiveness of averaging in GAN
   training"; Karras et al., 2018). The averaged generator is the one
   :meth:`GAN.generate` samples from: the raw G jitters around the
   equilibrium as D and G chase each other, the average sits nearer its centre
   and draws cleaner samples.

Sampling with the discriminator (:meth:`GAN.generate_rejection`; Azadi et
al., 2019, "Discriminator rejection sampling"): at D's optimum its logit is
log p_data(x) / p_g(x), so keeping each G(z) with probability
exp(min(0, D(G(z)) - bound)) turns samples of p_g into samples of p_data, as far
as D is optimal (:func:`rejection_acceptance`).

Images live in [-1, 1] (tanh output, ``model.value_range``): load data with
``aigc_tf.data.load_images(..., value_range=(-1, 1))``; samples come back as
:class:`aigc_tf.images.Images` that carry that range, so plotting and metrics
read it from them.

The package: :mod:`~aigc_tf.gan.losses` (the losses), :mod:`~aigc_tf.gan.networks`
(G and D), :mod:`~aigc_tf.gan.dcgan` (the shared :class:`GAN` model and
:class:`DCGAN`), :mod:`~aigc_tf.gan.conditional` (:class:`ConditionalGAN`,
:class:`ClusteredGAN`), :mod:`~aigc_tf.gan.clusters` (k-means) and
:mod:`~aigc_tf.gan.rejection` (rejection sampling over any proposal and score);
the toys of chapter 01: :mod:`~aigc_tf.gan.toy` (a 1-D quadratic discriminator, the
generator losses' gradients) and :mod:`~aigc_tf.gan.ring` (mode collapse on a 2-D ring of
Gaussians, packing and a minibatch-std feature as fixes, a mode-coverage metric).
"""

from aigc_tf.gan.conditional import ClusteredGAN, ConditionalGAN
from aigc_tf.gan.dcgan import DCGAN, GAN, GANConfig
from aigc_tf.gan.losses import bce_from_logits, discriminator_loss, generator_loss, minimax_generator_loss
from aigc_tf.gan.networks import make_discriminator, make_generator
from aigc_tf.gan.rejection import rejection_acceptance, rejection_sample

__all__ = [
    "DCGAN",
    "GAN",
    "ClusteredGAN",
    "ConditionalGAN",
    "GANConfig",
    "bce_from_logits",
    "discriminator_loss",
    "generator_loss",
    "make_discriminator",
    "make_generator",
    "minimax_generator_loss",
    "rejection_acceptance",
    "rejection_sample",
]
