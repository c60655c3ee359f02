"""Every experiment's setup, per run profile, in one place.

A :class:`Recipe` says what a chapter trains at a profile: the model's size, the
optimizer, the batch, the data and the time budgets. Notebooks, benchmarks and
the command line all read the same recipe, so a number in ``benchmarks/RESULTS.md``
and a plot in a notebook come from the same setup::

    >>> r = get_recipe("dcgan", "cpu")
    >>> r.model["generator_filters"], r.batch_size, r.optimizer["learning_rate"]
    ((64, 32), 64, 0.0005)
    >>> get_recipe("dcgan", "cpu", batch_size=128).batch_size  # an override, still one place
    128

Profiles change sizes and budgets, never the code path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aigc_tf.config import PROFILES, get_profile
from aigc_tf.validation import check_choice

__all__ = ["KINDS", "Recipe", "get_recipe"]


@dataclass(frozen=True)
class Recipe:
    """One experiment at one profile.

    Attributes:
        kind: the model family (one of :data:`KINDS`).
        profile: ``smoke``, ``cpu`` or ``gpu``.
        model: keyword arguments of the model's constructor.
        optimizer: ``{"name": "adam" | "adamw", "learning_rate": ..., ...}``; the other
            keys are the Keras optimizer's arguments (``exclude_from_weight_decay``
            lists variable names that AdamW leaves alone).
        batch_size: examples per step.
        dataset: the dataset's name (``mnist``, ``fashion_mnist``, ``tiny_shakespeare``).
        train_split: the TFDS split trained on.
        steps_per_epoch: steps between epoch ends (logs, callbacks, checkpoints).
        budgets: seconds of training by purpose: ``main`` (the chapter's run),
            ``short`` (its smaller side runs), ``benchmark`` (the quality benchmark).
        schedule: the learning-rate schedule over the budget, as
            :class:`aigc_tf.callbacks.TimeBudget` arguments (empty: constant).
        compile: extra ``compile`` arguments (``jit_compile``, ``steps_per_execution``).
        data: data-pipeline settings (``seq_len``, ``stride``, ``val_chars``, ``binarize``).
        evaluation: evaluation sizes (``num_samples``, ``test_split``, ``num_importance_samples``, …).
        benchmark: the benchmark scripts' sizes (``throughput_steps``, ``rounds``, ``num_samples``,
            ``trial_steps``): they time and score what the chapter trains.
    """

    kind: str
    profile: str
    model: Mapping[str, Any]
    optimizer: Mapping[str, Any]
    batch_size: int
    dataset: str
    train_split: str = "train"
    steps_per_epoch: int = 100
    budgets: Mapping[str, float] = field(default_factory=dict)
    schedule: Mapping[str, Any] = field(default_factory=dict)
    compile: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    benchmark: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("model", "optimizer", "budgets", "schedule", "compile", "data", "evaluation", "benchmark"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def seconds(self) -> float:
        """The main training budget in seconds."""
        return float(self.budgets["main"])

    def budget(self, purpose: str = "main") -> float:
        """Seconds of training for ``purpose`` (``main``, ``short`` or ``benchmark``)."""
        check_choice("purpose", purpose, tuple(self.budgets))
        return float(self.budgets[purpose])

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed; ``model=`` and the other mappings are merged, not replaced."""
        merged = {}
        for name, value in changes.items():
            current = getattr(self, name)
            merged[name] = {**current, **value} if isinstance(current, Mapping) else value
        return dataclasses.replace(self, **merged)

    def build_optimizer(self, learning_rate: Any = None):
        """A fresh Keras optimizer as the recipe describes (one per call: GANs need two).

        Args:
            learning_rate: replaces the recipe's (e.g. a schedule for a step budget).
        """
        import keras

        settings = dict(self.optimizer)
        if learning_rate is not None:
            settings["learning_rate"] = learning_rate
        name = settings.pop("name")
        exclude = settings.pop("exclude_from_weight_decay", None)
        cls = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}[name]
        optimizer = cls(**settings)
        if exclude:
            optimizer.exclude_from_weight_decay(var_names=list(exclude))
        return optimizer

    def build_model(self, *, tokenizer=None, seed: int | None = 0):
        """The model the recipe trains (uncompiled). Language models need their ``tokenizer``."""
        cls = model_class(self.kind)
        kwargs = dict(self.model)
        if self.kind in LANGUAGE_MODELS:
            if tokenizer is None:
                raise ValueError(f"tokenizer: the {self.kind!r} recipe builds a language model and needs one.")
            return cls(tokenizer.vocab_size, tokenizer=tokenizer, seed=seed, **kwargs)
        return cls(**kwargs, seed=seed)

    def compile_model(self, model, *, learning_rate: Any = None, **flags: Any) -> None:
        """Compile ``model`` with the recipe's optimizer(s), loss and compile flags.

        Args:
            model: from :meth:`build_model`.
            learning_rate: replaces the recipe's learning rate (a float or a schedule).
            **flags: ``compile`` arguments that replace the recipe's (e.g. ``jit_compile=False``
                for a short run, where compiling with XLA costs more than it saves).
        """
        flags = {**self.compile, **flags}
        if self.kind in GANS:
            model.compile(
                d_optimizer=self.build_optimizer(learning_rate),
                g_optimizer=self.build_optimizer(learning_rate),
                **flags,
            )
        elif self.kind in LANGUAGE_MODELS:
            import keras

            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            model.compile(optimizer=self.build_optimizer(learning_rate), loss=loss, **flags)
            if self.optimizer.get("exclude_from_weight_decay"):  # saved with the model, so a resumed run decays alike
                model.exclude_from_weight_decay(self.optimizer["exclude_from_weight_decay"])
        else:
            model.compile(optimizer=self.build_optimizer(learning_rate), **flags)

    def time_budget(self, purpose: str = "main", *, verbose: bool = False):
        """A :class:`aigc_tf.callbacks.TimeBudget` for ``purpose`` with the recipe's schedule."""
        from aigc_tf.callbacks import TimeBudget

        return TimeBudget(self.budget(purpose), verbose=verbose, **dict(self.schedule))

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for ``run.json``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


GANS = ("dcgan", "cgan", "clustered-gan")
DIFFUSION = ("diffusion", "cdiffusion")
LANGUAGE_MODELS = ("char-rnn", "gpt")
#: Image models trained with labels from the data.
CONDITIONAL = ("cgan", "cdiffusion")
KINDS: tuple[str, ...] = (*GANS, "vae", *DIFFUSION, *LANGUAGE_MODELS)


def model_class(kind: str):
    """The model class a kind trains."""
    check_choice("kind", kind, KINDS)
    if kind in GANS:
        from aigc_tf import gan

        return {"dcgan": gan.DCGAN, "cgan": gan.ConditionalGAN, "clustered-gan": gan.ClusteredGAN}[kind]
    if kind == "vae":
        from aigc_tf.vae import VAE

        return VAE
    if kind in DIFFUSION:
        from aigc_tf.diffusion import DiffusionModel

        return DiffusionModel
    if kind == "char-rnn":
        from aigc_tf.rnn import CharRNN

        return CharRNN
    from aigc_tf.transformer import GPT

    return GPT


# --------------------------------------------------------------------------- #
# The recipes. Each entry: the settings shared by all profiles, then per profile.
# --------------------------------------------------------------------------- #

# DCGAN on MNIST. On a CPU: half-width networks (about 4x less work per image, so
# about 4x more steps in the budget, which matters more for a GAN than the width),
# no dropout in D and a higher learning rate: in 3,000-step trials this recipe got
# furthest (see benchmarks/RESULTS.md, "DCGAN recipe trial").
_GAN_CPU = dict(latent_dim=128, generator_filters=(64, 32), discriminator_filters=(32, 64), dropout=0.0)
_GAN = {
    "common": dict(dataset="mnist", schedule={}),
    "smoke": dict(
        model=_GAN_CPU,
        optimizer=dict(name="adam", learning_rate=5e-4, beta_1=0.5),
        batch_size=64,
        train_split="train[:1024]",
        steps_per_epoch=10,
        budgets=dict(main=6, short=4, benchmark=20),
        evaluation=dict(num_samples=500, test_split="test[:1000]", grid_every=1, inception_samples=50),
        benchmark=dict(throughput_steps=20, rounds=2, num_samples=1000, trial_steps=30, trial_samples=500),
    ),
    "cpu": dict(
        model=_GAN_CPU,
        optimizer=dict(name="adam", learning_rate=5e-4, beta_1=0.5),
        batch_size=64,
        steps_per_epoch=100,
        budgets=dict(main=210, short=120, benchmark=8 * 60),
        evaluation=dict(num_samples=10_000, test_split="test", grid_every=4, inception_samples=500),
        benchmark=dict(throughput_steps=60, rounds=5, num_samples=10_000, trial_steps=3000, trial_samples=5000),
    ),
    "gpu": dict(
        model=dict(latent_dim=128, generator_filters=(128, 64), discriminator_filters=(64, 128), dropout=0.3),
        optimizer=dict(name="adam", learning_rate=2e-4, beta_1=0.5),  # the DCGAN paper's
        batch_size=128,
        steps_per_epoch=200,
        budgets=dict(main=12 * 60, short=5 * 60, benchmark=5 * 60),
        evaluation=dict(num_samples=10_000, test_split="test", grid_every=4, inception_samples=10_000),
        benchmark=dict(throughput_steps=400, rounds=5, num_samples=10_000, trial_steps=3000, trial_samples=5000),
    ),
}

# VAE on dynamically binarized MNIST: Adam 1e-3 with a cosine over the budget down
# to 5 %, XLA and 20 steps per compiled call.
_VAE_SMALL = dict(latent_dim=16, filters=(16, 32), dense_units=256)
_VAE = {
    "common": dict(
        dataset="mnist",
        optimizer=dict(name="adam", learning_rate=1e-3),
        batch_size=128,
        schedule=dict(peak_lr=1e-3, final_fraction=0.05),
        compile=dict(jit_compile=True, steps_per_execution=20),
        data=dict(binarize=True),
    ),
    "smoke": dict(
        model=_VAE_SMALL,
        train_split="train[:2048]",
        steps_per_epoch=10,
        budgets=dict(main=3, short=1, benchmark=20),
        evaluation=dict(num_samples=500, num_importance_samples=10, test_split="test[:500]", num_quick=100),
        benchmark=dict(throughput_steps=20, rounds=2, num_importance_samples=10),
    ),
    "cpu": dict(
        model=_VAE_SMALL,
        steps_per_epoch=100,
        budgets=dict(main=300, short=35, benchmark=9 * 60),
        evaluation=dict(num_samples=10_000, num_importance_samples=200, test_split="test", num_quick=500),
        benchmark=dict(throughput_steps=60, rounds=5, num_importance_samples=100),
    ),
    "gpu": dict(
        model=dict(latent_dim=32, filters=(32, 64), dense_units=512),
        steps_per_epoch=200,
        budgets=dict(main=15 * 60, short=3 * 60, benchmark=5 * 60),
        evaluation=dict(num_samples=10_000, num_importance_samples=5000, test_split="test", num_quick=1000),
        benchmark=dict(throughput_steps=400, rounds=5, num_importance_samples=5000),
    ),
}


# Diffusion on MNIST in [-1, 1]: a U-Net of 16-32-64 channels (attention at 7x7) on a CPU,
# the linear 1,000-step schedule, Adam 1e-3 with a cosine over the budget, XLA, 10 steps
# per compiled call; samples from the weights' moving average with DDIM.
def _diffusion_evaluation(num_samples: int, steps: int, split: str, *, notebook: int, guidance: int) -> dict:
    """Sample counts: scored (``num_samples``), per point of notebook 05's sweeps, per guidance weight."""
    grid_every = 1 if num_samples < 1000 else 2
    return dict(num_samples=num_samples, sampling_steps=steps, test_split=split, grid_every=grid_every,
                notebook_samples=notebook, guidance_samples=guidance)  # fmt: skip


_DIFFUSION = {
    "common": dict(
        dataset="mnist",
        optimizer=dict(name="adam", learning_rate=1e-3),
        schedule=dict(peak_lr=1e-3, final_fraction=0.05),
        compile=dict(jit_compile=True, steps_per_execution=10),
    ),
    "smoke": dict(
        model=dict(base_filters=8, channel_mults=(1, 2), attention=False, ema_decay=0.99),
        batch_size=32,
        train_split="train[:1024]",
        steps_per_epoch=10,
        budgets=dict(main=6, short=3, benchmark=20),
        evaluation=_diffusion_evaluation(200, 10, "test[:1000]", notebook=20, guidance=20),
        benchmark=dict(throughput_steps=20, rounds=2, step_counts=(5, 10), num_timed=50),
    ),
    "cpu": dict(
        model=dict(base_filters=16, channel_mults=(1, 2, 4), attention=True, ema_decay=0.999),
        batch_size=64,
        steps_per_epoch=200,
        budgets=dict(main=300, short=120, benchmark=10 * 60),
        evaluation=_diffusion_evaluation(10_000, 20, "test", notebook=200, guidance=500),
        benchmark=dict(throughput_steps=50, rounds=3, step_counts=(10, 20, 50, 100), num_timed=500),
    ),
    "gpu": dict(
        model=dict(base_filters=64, channel_mults=(1, 2, 2), num_res_blocks=2, attention=True, ema_decay=0.9995),
        optimizer=dict(name="adam", learning_rate=2e-4),
        schedule=dict(peak_lr=2e-4, final_fraction=0.1),
        batch_size=128,
        steps_per_epoch=500,
        budgets=dict(main=20 * 60, short=5 * 60, benchmark=30 * 60),
        evaluation=_diffusion_evaluation(10_000, 50, "test", notebook=1000, guidance=2000),
        benchmark=dict(throughput_steps=200, rounds=3, step_counts=(10, 20, 50, 100), num_timed=1000),
    ),
}

# Character LSTM on tiny Shakespeare (nanoGPT's split). ~9 minutes on 2 cores is ~5
# epochs for 384 units: a smaller, better-trained model beats a bigger, under-trained one.
_RNN_CPU = dict(
    model=dict(embedding_dim=64, units=384, num_layers=1, dropout=0.0),
    # global_clipnorm: the norm of ALL gradients together is clipped to 1 (as for the GPT);
    # clipnorm would clip each weight's gradient separately.
    optimizer=dict(name="adam", learning_rate=3e-3, global_clipnorm=1.0),
    batch_size=64,
    steps_per_epoch=100,
    budgets=dict(main=390, benchmark=9 * 60),
    schedule=dict(peak_lr=3e-3, final_fraction=0.05),
    data=dict(seq_len=100, stride=None, val_chars=None),
    evaluation=dict(num_sample_chars=300, num_beam_chars=200),
    benchmark=dict(throughput_steps=20, rounds=3, new_chars=500),
)
_RNN = {
    "common": dict(dataset="tiny_shakespeare"),
    "cpu": _RNN_CPU,
    "smoke": {  # the cpu recipe, tiny
        **_RNN_CPU,
        "model": dict(embedding_dim=16, units=32, num_layers=1, dropout=0.0),
        "batch_size": 16,
        "steps_per_epoch": 10,
        "budgets": dict(main=12, benchmark=30),
        "data": dict(seq_len=32, stride=None, val_chars=20_000),
        "evaluation": dict(num_sample_chars=120, num_beam_chars=80),
        "benchmark": dict(throughput_steps=5, rounds=2, new_chars=100),
    },
    "gpu": {  # wider, two layers with dropout, a lower peak learning rate, longer
        **_RNN_CPU,
        "model": dict(embedding_dim=128, units=512, num_layers=2, dropout=0.2),
        "optimizer": dict(name="adam", learning_rate=2e-3, global_clipnorm=1.0),
        "batch_size": 128,
        "steps_per_epoch": 200,
        "budgets": dict(main=20 * 60, benchmark=20 * 60),
        "schedule": dict(peak_lr=2e-3, final_fraction=0.05),
        "evaluation": dict(num_sample_chars=400, num_beam_chars=200),
    },
}

# Character GPT: nanoGPT's CPU configuration on a CPU, its "baby GPT" on a GPU;
# AdamW as nanoGPT (weight decay on the matrices only), XLA, 50 steps per call.
_ADAMW = dict(
    name="adamw",
    learning_rate=1e-3,
    beta_1=0.9,
    beta_2=0.99,
    weight_decay=0.1,
    global_clipnorm=1.0,
    exclude_from_weight_decay=("gamma", "beta", "bias"),
)
_GPT = {
    "common": dict(
        dataset="tiny_shakespeare",
        optimizer=_ADAMW,
        schedule=dict(peak_lr=1e-3, final_fraction=0.1),
        compile=dict(jit_compile=True, steps_per_execution=50),
    ),
    "smoke": dict(
        model=dict(num_layers=2, num_heads=2, embed_dim=32, max_len=32, dropout=0.0, use_bias=False, tie_weights=True),
        batch_size=12,
        steps_per_epoch=50,
        budgets=dict(main=10, benchmark=60),
        data=dict(seq_len=32, stride=1, val_chars=5_000),
        evaluation=dict(num_sample_chars=60, num_beam_chars=40, num_timed=48),
    ),
    "cpu": dict(
        model=dict(num_layers=4, num_heads=4, embed_dim=128, max_len=64, dropout=0.0, use_bias=False, tie_weights=True),
        batch_size=12,
        steps_per_epoch=500,
        budgets=dict(main=330, benchmark=504.5),  # nanoGPT's 10,000 iterations took 504.5 s
        data=dict(seq_len=64, stride=1, val_chars=30_000),
        evaluation=dict(num_sample_chars=300, num_beam_chars=150, num_timed=256),
    ),
    "gpu": dict(
        model=dict(
            num_layers=6, num_heads=6, embed_dim=384, max_len=256, dropout=0.2, use_bias=False, tie_weights=True
        ),
        batch_size=64,
        steps_per_epoch=250,
        budgets=dict(main=600, benchmark=600),
        data=dict(seq_len=256, stride=1, val_chars=None),
        evaluation=dict(num_sample_chars=400, num_beam_chars=200, num_timed=256),
    ),
}


_TABLE: dict[str, dict[str, dict[str, Any]]] = {
    "dcgan": _GAN,
    "cgan": {**_GAN, "common": {**_GAN["common"], "extra_model": dict(num_classes=10)}},
    "clustered-gan": {**_GAN, "common": {**_GAN["common"], "extra_model": dict(num_clusters=50)}},
    "vae": _VAE,
    "diffusion": _DIFFUSION,
    "cdiffusion": {**_DIFFUSION, "common": {**_DIFFUSION["common"], "extra_model": dict(num_classes=10)}},
    "char-rnn": _RNN,
    "gpt": _GPT,
}


def get_recipe(kind: str, profile: str | None = None, **overrides: Any) -> Recipe:
    """The recipe of ``kind`` at ``profile`` (default: the active profile), with ``overrides``.

    Args:
        kind: one of :data:`KINDS` (``dcgan``, ``cgan``, ``clustered-gan``, ``vae``, ``diffusion``,
            ``cdiffusion``, ``char-rnn``, ``gpt``).
        profile: ``smoke``, ``cpu`` or ``gpu``; default ``$AIGC_PROFILE`` or by hardware.
        **overrides: fields to change; mappings (``model=``, ``budgets=`` …) are merged.

    Raises:
        ValueError: for an unknown kind, profile or field.
    """
    check_choice("kind", kind, KINDS)
    profile = check_choice("profile", profile if profile is not None else get_profile(), PROFILES)
    entry = _TABLE[kind]
    settings = {**entry["common"], **entry[profile]}
    extra_model = settings.pop("extra_model", {})
    settings["model"] = {**extra_model, **settings["model"]}
    recipe = Recipe(kind=kind, profile=profile, **settings)
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Recipe)})
    if unknown:
        raise ValueError(f"overrides: unknown recipe fields {unknown}; expected some of {_field_names()}.")
    return recipe.replace(**overrides) if overrides else recipe


def _field_names() -> str:
    return ", ".join(f.name for f in dataclasses.fields(Recipe) if f.name not in ("kind", "profile"))


def parameter_count(recipe: Recipe, *, vocab_size: int | None = None) -> int:
    """Trainable parameters of the model ``recipe`` builds (a language model's with ``vocab_size``).

    Args:
        recipe: the recipe.
        vocab_size: the tokenizer's size for a language model (default: the characters
            of the recipe's text, as :func:`aigc_tf.training.text_data` builds them).
    """
    import numpy as np

    tokenizer = None
    if recipe.kind in LANGUAGE_MODELS:
        from aigc_tf.text import CharTokenizer

        if vocab_size is None:
            from aigc_tf.training import text_data

            tokenizer = text_data(recipe).tokenizer
        else:
            tokenizer = CharTokenizer([chr(32 + i) for i in range(vocab_size)])
    model = recipe.build_model(tokenizer=tokenizer, seed=0)
    if recipe.kind in LANGUAGE_MODELS:
        model(np.zeros((1, 2), "int32"))  # subclassed: the weights exist once it has been called
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def print_parameter_counts(kinds: tuple[str, ...] | list[str]) -> dict[str, dict[str, int]]:
    """Print (and return) each kind's trainable parameters at every profile, for a notebook's setup cell."""
    import keras

    counts = {}
    for kind in kinds:
        counts[kind] = {p: parameter_count(get_recipe(kind, p)) for p in PROFILES}
        keras.backend.clear_session()  # the throw-away models leave no names behind
    width = max(len(k) for k in kinds)
    print(f"{'parameters':>{width + 10}}  " + "  ".join(f"{p:>10}" for p in PROFILES))
    for kind, by_profile in counts.items():
        print(f"{kind:>{width + 10}}  " + "  ".join(f"{by_profile[p]:>10,}" for p in PROFILES))
    return counts


__all__ += ["parameter_count", "print_parameter_counts"]


# noqa: E402 below: the side sizes and the named variants, kept in their own module.
from aigc_tf.recipes.side import (  # noqa: E402
    pretrained_settings,
    recipe_variants,
    ring_gan_settings,
    variant_overrides,
)

__all__ += ["pretrained_settings", "recipe_variants", "ring_gan_settings", "variant_overrides"]
