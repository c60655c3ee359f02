"""Recipes: one place for each experiment's setup per profile."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from aigc_tf.recipes import KINDS, Recipe, get_recipe
from aigc_tf.training import step_schedule


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_every_recipe_is_complete(kind, profile):
    r = get_recipe(kind, profile)
    assert isinstance(r, Recipe) and r.kind == kind and r.profile == profile
    assert r.batch_size >= 1 and r.seconds > 0 and r.steps_per_epoch >= 1
    assert r.optimizer["name"] in ("adam", "adamw") and r.optimizer["learning_rate"] > 0
    assert isinstance(r.build_optimizer(), keras.optimizers.Optimizer)


def test_profiles_change_sizes_not_the_model():
    smoke, gpu = get_recipe("gpt", "smoke"), get_recipe("gpt", "gpu")
    assert set(smoke.model) == set(gpu.model)
    assert smoke.model["embed_dim"] < gpu.model["embed_dim"]


def test_the_active_profile_is_the_default(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "cpu")
    assert get_recipe("vae").profile == "cpu"


def test_overrides_merge_mappings_and_recipes_are_immutable():
    r = get_recipe("dcgan", "cpu", model={"dropout": 0.3}, batch_size=128)
    assert r.model["dropout"] == 0.3 and r.model["generator_filters"] == (64, 32) and r.batch_size == 128
    assert get_recipe("dcgan", "cpu").model["dropout"] == 0.0  # the table itself is unchanged
    with pytest.raises(TypeError):
        r.model["dropout"] = 0.5
    with pytest.raises(ValueError, match=r"unknown recipe fields \['colour'\]"):
        get_recipe("dcgan", "cpu", colour="red")
    with pytest.raises(ValueError, match=r"kind must be one of 'dcgan'"):
        get_recipe("diffusion-xl")
    with pytest.raises(ValueError, match="purpose must be one of"):
        r.budget("forever")


def test_adamw_leaves_norms_and_biases_undecayed():
    opt = get_recipe("gpt", "cpu").build_optimizer()
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(0.1)
    assert opt.global_clipnorm == 1.0


def test_both_language_models_clip_the_global_gradient_norm():
    # One norm over all gradients (clipnorm would clip every weight's gradient on its own).
    for kind in ("char-rnn", "gpt"):
        for profile in ("smoke", "cpu", "gpu"):
            opt = get_recipe(kind, profile).build_optimizer()
            assert opt.global_clipnorm == 1.0 and opt.clipnorm is None, (kind, profile)
    # What that means: two gradients of norms 3 and 4 (global 5) are both scaled by 1/5.
    w = [keras.Variable(np.zeros(1)), keras.Variable(np.zeros(1))]
    opt = keras.optimizers.SGD(1.0, global_clipnorm=1.0)
    opt.apply([np.array([3.0]), np.array([4.0])], w)
    np.testing.assert_allclose([float(v.numpy()[0]) for v in w], [-0.6, -0.8], atol=1e-6)


def test_the_conditional_recipes_add_their_label_counts():
    assert get_recipe("cgan", "cpu").model["num_classes"] == 10
    assert get_recipe("clustered-gan", "cpu").model["num_clusters"] == 50


def test_step_schedule_is_the_time_budget_cosine():
    """The step-budget schedule equals TimeBudget's curve at the same fraction of the budget."""
    from aigc_tf.callbacks import TimeBudget

    r = get_recipe("vae", "cpu")
    schedule = step_schedule(r, 1000)
    budget = TimeBudget(1000.0, peak_lr=r.schedule["peak_lr"], final_fraction=r.schedule["final_fraction"])
    for step in (0, 250, 500, 999, 1000):
        assert float(schedule(step)) == pytest.approx(budget.learning_rate(step / 1000), rel=1e-6)
    assert step_schedule(get_recipe("dcgan", "cpu"), 100) is None  # a constant learning rate


def test_as_dict_is_plain_json():
    import json

    d = get_recipe("gpt", "smoke").as_dict()
    assert json.loads(json.dumps(d)) == d and d["model"]["num_layers"] == 2
    assert np.isclose(d["optimizer"]["weight_decay"], 0.1)


def test_fit_for_time_trains_for_the_recipes_short_budget(capsys):
    from aigc_tf.training import fit_for_time

    recipe = get_recipe("vae", "smoke", model={"image_shape": (8, 8, 1), "filters": (4,), "dense_units": 8})
    model = recipe.build_model(seed=0)
    x = (np.random.default_rng(0).random((256, 8, 8, 1)) < 0.3).astype("float32")
    import tensorflow as tf

    history, seconds = fit_for_time(
        recipe,
        model,
        tf.data.Dataset.from_tensor_slices(x).batch(recipe.batch_size),
        "short",
        examples_per_epoch=256,
        jit_compile=False,
    )
    assert seconds >= recipe.budget("short") and len(history["loss"]) >= 1
    assert model.jit_compile is False  # the override replaced the recipe's flag
    out = capsys.readouterr().out
    steps = int(model.optimizer.iterations)
    assert out.startswith(f"{steps:,} steps ({steps * recipe.batch_size / 256:.1f} epochs) in ")
    assert "last epoch:" in out and f"loss {history['loss'][-1]:.1f}" in out
    assert history["step"][-1] == steps and history["seconds"][-1] == seconds


def test_consecutive_time_budgets_each_train_past_the_first_call(capsys):
    # Notebook 02 trains several fresh models one after the other (main, 2-D, beta, Fashion-MNIST), with
    # steps_per_execution=20: each run must get its own clock and train well past one call of 20 steps.
    import tensorflow as tf

    from aigc_tf.training import fit_for_time

    recipe = get_recipe("vae", "smoke", model={"image_shape": (8, 8, 1), "filters": (4,), "dense_units": 8})
    # A budget longer than tracing the step, and 32 batches per epoch (more than one call of 20 steps).
    recipe = recipe.replace(budgets={"short": 4}, batch_size=8)
    per_call = recipe.compile.get("steps_per_execution", 1)
    x = (np.random.default_rng(0).random((256, 8, 8, 1)) < 0.3).astype("float32")
    steps = []
    for seed in range(3):
        model = recipe.build_model(seed=seed)
        log, seconds = fit_for_time(
            recipe, model, tf.data.Dataset.from_tensor_slices(x).batch(recipe.batch_size), "short", jit_compile=False
        )
        assert seconds >= recipe.budget("short")
        steps.append(int(model.optimizer.iterations))
    assert per_call == 20 and min(steps) > 3 * per_call, steps


def test_ring_gan_settings_are_train_ring_gan_arguments():
    import inspect

    from aigc_tf.gan.ring import train_ring_gan
    from aigc_tf.recipes import ring_gan_settings

    accepted = set(inspect.signature(train_ring_gan).parameters) | {"latent_dim", "width", "depth", "num_samples"}
    for profile in ("smoke", "cpu", "gpu"):
        settings = ring_gan_settings(profile)
        assert set(settings) <= accepted and settings["d_learning_rate"] > settings["learning_rate"]
    assert ring_gan_settings("smoke")["steps"] < ring_gan_settings("cpu")["steps"]
    with pytest.raises(ValueError, match="profile"):
        ring_gan_settings("tpu")


def test_fit_variants_trains_each_override_from_the_same_seed(capsys):
    import tensorflow as tf

    from aigc_tf.training import fit_variants

    recipe = get_recipe("vae", "smoke", model={"image_shape": (8, 8, 1), "filters": (4,), "dense_units": 8})
    recipe = recipe.replace(budgets={"short": 1}, batch_size=8)
    x = (np.random.default_rng(0).random((64, 8, 8, 1)) < 0.3).astype("float32")
    data = tf.data.Dataset.from_tensor_slices(x).batch(8)
    models = fit_variants(recipe, {b: {"model": {"beta": b}} for b in (0.5, 2.0)}, data, seed=3, jit_compile=False)
    assert list(models) == [0.5, 2.0] and [m.beta for m in models.values()] == [0.5, 2.0]
    assert all(int(m.optimizer.iterations) > 0 for m in models.values())
    import keras

    fresh = []
    for b in (0.5, 2.0):  # what fit_variants starts each variant from
        keras.utils.set_random_seed(3)
        fresh.append(recipe.replace(model={"beta": b}).build_model(seed=3))
    np.testing.assert_array_equal(fresh[0].weights[0].numpy(), fresh[1].weights[0].numpy())  # same start
    assert "0.5: " in capsys.readouterr().out
