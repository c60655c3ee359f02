"""The sizes of the side experiments, per profile: not kinds of :func:`aigc_tf.recipes.get_recipe`
(no dataset on disk or no checkpoints of their own), but sizes all the same, so they live with the recipes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aigc_tf.config import PROFILES, get_profile
from aigc_tf.validation import check_choice

__all__ = ["pretrained_settings", "recipe_variants", "ring_gan_settings", "variant_overrides"]


# Chapter 06: fine-tuning the course's pretrained model on the held-out speaker (the same
# wall time for every method; LoRA, rank 8 on the attention's Dense layers, ~2 % of the
# parameters, learns at a higher rate than full fine-tuning, as usual for LoRA), and
# characters vs BPE (two small GPTs trained for the same time, scored per character).
_CHAPTER06_COMMON = dict(
    rank=8,
    full_learning_rate=3e-4,
    lora_learning_rate=2e-3,
    scratch_learning_rate=1e-3,
    bpe_vocab_size=512,
    compare_model=dict(num_layers=4, num_heads=4, embed_dim=128),
    compare_learning_rate=1e-3,
)
_CHAPTER06 = {
    "smoke": dict(
        seconds=4.0,
        compare_seconds=4.0,
        batch_size=4,
        seq_len=32,
        bpe_seq_len=16,
        checkpoint_every=10,
        compare_model=dict(num_layers=1, num_heads=2, embed_dim=16),
        new_tokens=60,
    ),
    "cpu": dict(
        seconds=90.0,
        compare_seconds=75.0,
        batch_size=16,
        seq_len=128,
        bpe_seq_len=48,
        checkpoint_every=50,
        new_tokens=300,
    ),
    "gpu": dict(
        seconds=300.0,
        compare_seconds=300.0,
        batch_size=32,
        seq_len=128,
        bpe_seq_len=48,
        checkpoint_every=100,
        new_tokens=400,
    ),
}


def pretrained_settings(profile: str | None = None) -> dict[str, Any]:
    """Chapter 06's sizes at ``profile``: fine-tuning budget, batch, rank and learning rates;
    the character-vs-BPE comparison's budget, model and vocabulary.

    Returns:
        A new dict (``seconds``, ``batch_size``, ``seq_len``, ``checkpoint_every``, ``rank``,
        ``full_learning_rate``, ``lora_learning_rate``, ``scratch_learning_rate``,
        ``compare_seconds``, ``compare_model``, ``compare_learning_rate``, ``bpe_vocab_size``,
        ``bpe_seq_len``, ``new_tokens``).
    """
    profile = check_choice("profile", profile if profile is not None else get_profile(), PROFILES)
    return {**_CHAPTER06_COMMON, **_CHAPTER06[profile]}


# --------------------------------------------------------------------------- #
# The 2-D ring-of-Gaussians toy of chapter 01 (mode collapse): not a KIND (no dataset
# on disk, no checkpoints), just its sizes per profile, in the one place sizes live.
# --------------------------------------------------------------------------- #

_RING_COMMON = dict(
    modes=8, radius=2.0, std=0.02, latent_dim=256, width=128, depth=2, learning_rate=1e-4, d_learning_rate=1e-3
)
_RING = {
    "smoke": dict(steps=30, batch_size=64, num_samples=500),
    "cpu": dict(steps=4000, batch_size=512, num_samples=2000),
    "gpu": dict(steps=4000, batch_size=512, num_samples=2000),
}


def ring_gan_settings(profile: str | None = None) -> dict[str, Any]:
    """The ring toy's settings at ``profile``: :func:`aigc_tf.gan.ring.train_ring_gan` arguments plus ``num_samples``.

    Both networks are MLPs; G learns at ``learning_rate``, D ten times faster
    (``d_learning_rate``): the plain GAN collapses onto few modes in ``steps`` steps.

    Args:
        profile: ``smoke``, ``cpu`` or ``gpu``; default ``$AIGC_PROFILE`` or by hardware.

    Returns:
        A new dict (``modes``, ``radius``, ``std``, ``latent_dim``, ``width``, ``depth``,
        ``learning_rate``, ``d_learning_rate``, ``steps``, ``batch_size``, ``num_samples``).
    """
    profile = check_choice("profile", profile if profile is not None else get_profile(), PROFILES)
    return {**_RING_COMMON, **_RING[profile]}


# Named variants: ``aigc-tf train gpt --recipe pretrain`` (overrides per profile, merged
# into the kind's recipe). ``pretrain`` trains the course's pretrained model (chapter 06):
# a deeper, wider GPT with a longer context and dropout, 45 minutes on a CPU, on the
# training split without one speaker (aigc_tf.text.HELD_OUT_SPEAKER), scored on
# nanoGPT's whole validation split.
_PRETRAIN_DATA = dict(held_out_speaker="DUKE VINCENTIO", val_chars=None)
_VARIANTS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "gpt": {
        "pretrain": {
            "smoke": dict(data=dict(_PRETRAIN_DATA, val_chars=5_000)),
            "cpu": dict(
                model=dict(num_layers=6, num_heads=6, embed_dim=192, max_len=128, dropout=0.1),
                batch_size=16,
                budgets=dict(main=45 * 60, benchmark=45 * 60),
                data=dict(_PRETRAIN_DATA, seq_len=128),
            ),
            "gpu": dict(budgets=dict(main=20 * 60, benchmark=20 * 60), data=_PRETRAIN_DATA),
        }
    }
}


def recipe_variants(kind: str) -> tuple[str, ...]:
    """The named variants of ``kind``'s recipe (``("pretrain",)`` for ``gpt``)."""
    from aigc_tf.recipes import KINDS

    check_choice("kind", kind, KINDS)
    return tuple(_VARIANTS.get(kind, {}))


def variant_overrides(kind: str, name: str, profile: str | None = None) -> dict[str, Any]:
    """The overrides that turn ``kind``'s recipe at ``profile`` into its variant ``name``.

    Raises:
        ValueError: ``name`` is not one of :func:`recipe_variants` for ``kind``.
    """
    check_choice("name", name, recipe_variants(kind))
    profile = check_choice("profile", profile if profile is not None else get_profile(), PROFILES)
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in _VARIANTS[kind][name][profile].items()}
