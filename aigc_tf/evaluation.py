"""Each chapter's metrics for a trained run, and a table of several runs.

* GANs and diffusion models: classifier FID and KID, recognisable rate and classes
  present, for samples against the test images (the shipped classifier of the
  dataset); conditional models also the share read as the requested class.
* VAE: test ELBO and importance-weighted log-likelihood (nats, fixed binarization).
* Language models: validation loss (nats per character), bits per character, perplexity.

This is what ``aigc-tf evaluate`` prints; the sizes come from the run's recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aigc_tf.recipes import CONDITIONAL, DIFFUSION, GANS, LANGUAGE_MODELS, get_recipe

__all__ = ["evaluate_model", "evaluate_run", "markdown_table"]


def _test_images(recipe, num: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from aigc_tf.data import load_images

    split = recipe.evaluation.get("test_split", "test")
    ds = load_images(recipe.dataset, split, batch_size=2000, with_labels=True, shuffle=False)
    images, labels = zip(*ds.as_numpy_iterator())
    images, labels = np.concatenate(images), np.concatenate(labels)
    return (images[:num], labels[:num]) if num else (images, labels)


def evaluate_model(model, recipe, *, num_samples: int | None = None, seed: int = 0, text=None) -> dict[str, float]:
    """The chapter's metrics of ``model`` trained with ``recipe``.

    Args:
        model: a trained model of ``recipe.kind``.
        recipe: its recipe (dataset, evaluation sizes).
        num_samples: generated images scored (GANs) or test images (VAE); default: the recipe's.
        seed: seed of the samples and of the Monte Carlo estimates.
        text: the run's :class:`aigc_tf.training.TextData` (language models; default: loaded).

    Returns:
        A flat dict of metric name → value.
    """
    n = num_samples or int(recipe.evaluation.get("num_samples", 10_000))
    if recipe.kind in GANS or recipe.kind in DIFFUSION:
        from aigc_tf.metrics import classifier_outputs, evaluate_samples

        reference, reference_labels = _test_images(recipe)
        labels = np.arange(n) % 10 if recipe.kind in CONDITIONAL else None
        options = {"steps": int(recipe.evaluation["sampling_steps"])} if recipe.kind in DIFFUSION else {}
        samples = model.generate(n, seed, labels=labels, **options)
        scores = evaluate_samples(samples, reference, recipe.dataset)
        result = {
            "classifier FID": scores["classifier_fid"],
            "classifier KID": scores["classifier_kid"],
            "recognisable %": 100 * scores["recognisable_rate"],
            "classes present": scores["coverage"]["classes_present"],
        }
        if labels is not None:  # classes drawn equally often: also compare with a class-balanced reference
            balanced = evaluate_samples(
                samples, reference, recipe.dataset, reference_labels=reference_labels, balanced=True
            )
            result["classifier FID, balanced reference"] = balanced["classifier_fid"]
            _, probabilities = classifier_outputs(samples, recipe.dataset)
            result["read as requested %"] = 100 * float(np.mean(probabilities.argmax(1) == labels))
        return result
    if recipe.kind == "vae":
        import tensorflow as tf

        from aigc_tf.vae import binarize

        images, _ = _test_images(recipe, n)
        fixed = binarize(tf.data.Dataset.from_tensor_slices(images), seed=seed, dynamic=False)
        x = np.stack(list(fixed.as_numpy_iterator()))
        k = int(recipe.evaluation.get("num_importance_samples", 100))
        return {
            "test ELBO (nats)": float(model.elbo(x, seed=seed).mean()),
            f"log-likelihood, k={k} (nats)": float(model.log_likelihood(x, num_samples=k, seed=seed).mean()),
        }
    if recipe.kind in LANGUAGE_MODELS:
        from aigc_tf.metrics import evaluate_loss
        from aigc_tf.text import make_char_dataset

        if text is None:
            from aigc_tf.training import text_data

            text = text_data(recipe)
        val_chars = recipe.data.get("val_chars")
        ids = text.tokenizer.encode(text.val_text[:val_chars])
        val = make_char_dataset(ids, int(recipe.data["seq_len"]), 64, shuffle=False, drop_remainder=False)
        scores = evaluate_loss(model, val)
        return {
            "val loss (nats/char)": scores["loss"],
            "bits/char": scores["bits_per_char"],
            "perplexity": scores["perplexity"],
        }
    raise ValueError(f"recipe.kind: no evaluation for {recipe.kind!r}.")  # pragma: no cover


def evaluate_run(folder: str | Path, run: dict[str, Any], *, num_samples: int | None = None) -> dict[str, Any]:
    """The metrics of the run in ``folder`` (``run`` is its ``run.json``), as one table row."""
    from aigc_tf.training import load_checkpoint

    recipe = get_recipe(run["kind"], run["profile"], **run.get("overrides", {}))
    model, progress = load_checkpoint(folder)
    row = {"run": str(folder), "kind": run["kind"], "profile": run["profile"], "steps": progress["step"]}
    row.update(evaluate_model(model, recipe, num_samples=num_samples))
    return row


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows (dicts) as one markdown table; a metric a run does not have shows as ``–``."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[c]) if c in row else "–" for c in columns) + " |")
    return "\n".join(lines)
