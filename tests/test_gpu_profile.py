"""The gpu profile's code path, on a CPU: every recipe at its gpu sizes trains two steps and samples.

Colab learners run the ``gpu`` profile, which CI (no GPU) never trains. Here each recipe is
built at the gpu profile's sizes (networks, context, data settings, compile flags) and
trained by :func:`aigc_tf.training.train_recipe` under ``AIGC_MAX_STEPS=2``, on the shipped
data; only the batch is cut to 2 examples, which changes no shape but the batch axis. Then
a small sample of each, through the same ``generate`` a notebook calls.
"""

import keras
import numpy as np
import pytest

from aigc_tf.recipes import CONDITIONAL, GANS, KINDS, LANGUAGE_MODELS, get_recipe
from aigc_tf.training import text_data, train_recipe, training_dataset


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_every_recipe_trains_and_samples_at_the_gpu_profile(kind, monkeypatch):
    monkeypatch.setenv("AIGC_MAX_STEPS", "2")
    keras.utils.set_random_seed(0)
    per_call = 2 if "steps_per_execution" in get_recipe(kind, "gpu").compile else 1
    recipe = get_recipe(kind, "gpu", batch_size=2, compile={"steps_per_execution": per_call} if per_call > 1 else {})
    assert recipe.model == get_recipe(kind, "gpu").model  # the gpu sizes, unchanged
    text = text_data(recipe) if kind in LANGUAGE_MODELS else None
    model = recipe.build_model(tokenizer=text.tokenizer if text else None, seed=0)
    recipe.compile_model(model)
    if kind == "clustered-gan":
        model.fit_clusters(training_dataset(recipe.replace(batch_size=500), model).take(2), iterations=2)
    result = train_recipe(recipe, model, training_dataset(recipe, model, text=text))
    assert result["steps"] == 2  # the cap, not the gpu budget of minutes
    history = result["history"]
    assert all(np.isfinite(v).all() for v in history.values()), history
    if kind in LANGUAGE_MODELS:
        out = model.generate("ROMEO:", 8, seed=0, top_k=10)
        assert isinstance(out, str) and len(out) == len("ROMEO:") + 8
        assert getattr(model, "max_len", None) == recipe.model.get("max_len")  # GPT: the gpu context, 256
    else:
        labels = 3 if kind in CONDITIONAL else None
        images = model.generate(4, seed=0, labels=labels)
        assert images.shape == (4, 28, 28, 1) and np.isfinite(images).all()
        low, high = model.value_range
        assert images.min() >= low and images.max() <= high
        if kind in GANS:
            kept = model.generate_rejection(4, seed=0, labels=labels, burn_in=16)
            assert kept.shape == (4, 28, 28, 1)
