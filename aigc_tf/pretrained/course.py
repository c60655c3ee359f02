"""The course's own pretrained model: a character GPT shipped inside the package.

It was trained by ``scripts/train_course_gpt.sh`` (``aigc-tf train gpt --recipe pretrain``)
on tiny Shakespeare's training split without one speaker's speeches
(:data:`aigc_tf.text.HELD_OUT_SPEAKER`), so chapter 06 can fine-tune it on text it never
saw. It works offline: the weights are in ``aigc_tf/weights/course_gpt.npz``, stored in
float16 (half the size; the validation loss moves by less than 0.001 nats/char, as the
export records), and come back as float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COURSE_GPT", "course_gpt_info", "export_course_gpt", "load_course_gpt"]

COURSE_GPT = Path(__file__).resolve().parent.parent / "weights" / "course_gpt.npz"


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"path: {str(path)!r} does not exist; the course model is made by scripts/train_course_gpt.sh."
        )
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        weights = {k: saved[k] for k in saved.files if k != "meta"}
    return meta, weights


def course_gpt_info(path: str | Path = COURSE_GPT) -> dict[str, Any]:
    """How the course model was made: its config, the command, steps, time, validation loss, machine.

    Returns:
        The metadata stored with the weights (``config``, ``training``, ``validation`` …).
    """
    return _read(Path(path))[0]


def load_course_gpt(path: str | Path = COURSE_GPT, *, seed: int | None = 0) -> Any:
    """The course's pretrained character GPT (float32, with its tokenizer), loaded offline.

    Args:
        path: the ``.npz`` written by :func:`export_course_gpt` (default: the shipped one).
        seed: the model's sampling and dropout seed.

    Returns:
        An :class:`aigc_tf.transformer.GPT`, built, uncompiled.
    """
    from aigc_tf.text import CharTokenizer
    from aigc_tf.transformer import GPT

    meta, weights = _read(Path(path))
    tokenizer = CharTokenizer(meta["vocab"])
    model = GPT(tokenizer=tokenizer, seed=seed, **meta["config"])
    model(np.zeros((1, 2), "int32"))
    variables = model.trainable_variables
    if len(variables) != len(weights):
        raise ValueError(f"path: {str(path)!r} holds {len(weights)} arrays, the model has {len(variables)} weights.")
    for i, variable in enumerate(variables):
        variable.assign(weights[f"w{i}"].astype(np.float32))
    return model


def export_course_gpt(model: Any, path: str | Path = COURSE_GPT, **info: Any) -> Path:
    """Write ``model``'s weights in float16 with its config, tokenizer and ``info`` (JSON values)."""
    config = {k: v for k, v in model.config.to_dict().items() if k != "vocab_size"}
    config["vocab_size"] = model.vocab_size
    meta = dict(info, config=config, vocab=model.tokenizer.vocab)
    arrays = {f"w{i}": np.asarray(v).astype(np.float16) for i, v in enumerate(model.trainable_variables)}
    path = Path(path)
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)
    return path
