"""Denoising diffusion models (Ho et al., 2020), sampled with DDPM or DDIM (Song et al., 2021), with
classifier-free guidance (Ho & Salimans, 2022).

The model, top to bottom:

    forward process   q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)      a fixed schedule of noise
    network           eps_theta(x_t, t[, y])                                   a U-Net predicts the noise
    training          min E_{x0, t, eps} ||eps - eps_theta(x_t, t)||^2         the ELBO, reweighted
    reverse process   x_{t-1} = posterior mean at x0_hat (+ noise)             DDPM, or DDIM's fewer steps

:class:`NoiseSchedule` holds the forward process's closed forms, :class:`UNet` the
network, :class:`DiffusionModel` training and sampling; the step functions
(:func:`ddpm_step`, :func:`ddim_step`, :func:`guided_epsilon`) are public so the
chapter can show each one and the tests can check them against the closed forms.
"""

from aigc_tf.diffusion.model import DiffusionModel
from aigc_tf.diffusion.sampling import SAMPLERS, ddim_step, ddpm_step, guided_epsilon, predicted_x0, slerp
from aigc_tf.diffusion.schedule import SCHEDULE_KINDS, NoiseSchedule
from aigc_tf.diffusion.unet import ResBlock, SelfAttention, UNet, timestep_embedding

__all__ = [
    "SAMPLERS",
    "SCHEDULE_KINDS",
    "DiffusionModel",
    "NoiseSchedule",
    "ResBlock",
    "SelfAttention",
    "UNet",
    "ddim_step",
    "ddpm_step",
    "guided_epsilon",
    "predicted_x0",
    "slerp",
    "timestep_embedding",
]
