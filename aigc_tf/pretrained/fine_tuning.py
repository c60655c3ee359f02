"""Fine-tuning a pretrained language model on new text: all its weights, or LoRA.

Full fine-tuning trains every weight. **LoRA** (Hu et al., 2021) freezes them and
learns a low-rank change of some Dense kernels instead::

    W' = W + (alpha / r) · A B,   A (d_in, r), B (r, d_out), B = 0 at the start

so at the start the model is exactly the pretrained one, and only
``r (d_in + d_out)`` numbers per adapted layer train. It uses Keras's own LoRA
(``Dense.enable_lora(rank)``). Keras merges ``A B`` into the kernel when it saves a
``.keras`` file, so that file holds the merged, plain model. A run with a
``checkpoint_dir`` saves its trainable variables (LoRA: only ``A`` and ``B``), the
optimizer's state and the random streams after every round, and the same call resumes
from there (given the same pretrained model), ending where an uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from aigc_tf.validation import check_choice, check_float, check_int, check_seed

__all__ = ["FineTuneResult", "LORA_LAYERS", "enable_lora", "fine_tune"]

#: The Dense layers of a course GPT block that LoRA adapts by default: the attention's
#: fused query/key/value and output projections (the LoRA paper's choice). The MLP's are
#: ``"fc"`` and ``"fc_proj"``.
LORA_LAYERS = ("qkv", "proj")
CHECKPOINT = "fine_tune.npz"


@dataclasses.dataclass
class FineTuneResult:
    """What :func:`fine_tune` did.

    Attributes:
        method: ``"full"`` or ``"lora"``.
        steps: optimizer steps taken in total (a resumed run counts the earlier ones).
        seconds: training time in total, without the XLA compile of the first round.
        trainable_params: parameters that trained.
        total_params: parameters of the model (LoRA's ``A`` and ``B`` included).
        losses: the mean training loss of every round.
        compile_seconds: this call's estimate of that compile (first round minus a typical round).
    """

    method: str
    steps: int
    seconds: float
    trainable_params: int
    total_params: int
    losses: list[float]
    compile_seconds: float = 0.0

    @property
    def trainable_fraction(self) -> float:
        """``trainable_params / total_params``."""
        return self.trainable_params / self.total_params


def _count(variables: list) -> int:
    return int(sum(np.prod(v.shape) for v in variables))


def enable_lora(model: keras.Model, rank: int = 8, *, layers: tuple[str, ...] = LORA_LAYERS, seed: int = 0) -> int:
    """Freeze ``model`` and give the named Dense layers of every block LoRA matrices of ``rank``.

    Args:
        model: a course GPT (blocks in ``model.blocks``), built.
        rank: the rank r of ``A B``.
        layers: which Dense layers of a block (``qkv``, ``proj``, ``fc``, ``fc_proj``).
        seed: seed of ``A``'s initialiser (``B`` starts at zero).

    Returns:
        The number of trainable parameters (the LoRA matrices).
    """
    rank = check_int("rank", rank, minimum=1)
    blocks = getattr(model, "blocks", None)
    if not blocks:
        raise TypeError(f"model: LoRA needs a course GPT (with .blocks), got {type(model).__name__}.")
    known = ("qkv", "proj", "fc", "fc_proj")
    for name in layers:
        check_choice("layers", name, known)
    for variable in model.variables:  # everything frozen; enable_lora then adds trainable A, B
        if variable.trainable:
            variable.trainable = False
    for i, block in enumerate(blocks):
        for name in layers:
            dense = block.attn.qkv if name == "qkv" else block.attn.proj if name == "proj" else getattr(block, name)
            if dense.lora_enabled:  # a second call (e.g. fine_tune after enable_lora) keeps the matrices
                if dense.lora_rank != rank:
                    raise ValueError(f"rank: {dense.path} already has LoRA of rank {dense.lora_rank}, not {rank}.")
                for variable in (dense.lora_kernel_a, dense.lora_kernel_b):
                    variable.trainable = True
                continue
            dense.enable_lora(rank, a_initializer=keras.initializers.HeUniform(seed=seed + 100 * i + known.index(name)))
    if hasattr(model, "reset_compiled"):
        model.reset_compiled()  # compiled decoding programs know only the old kernels
    return _count(model.trainable_variables)


class _Checkpointer(keras.callbacks.Callback):
    """After every round: record the loss, save the checkpoint (if a folder is given), stop when time is up.

    The clock counts training, not the one-off XLA compile of the first round: once two
    rounds have run, the compile is estimated as the first round's time minus a typical
    round's, so methods that compile for different lengths get the same training time.
    """

    def __init__(self, path, meta, losses, spent, *, seconds=None, verbose=False):
        super().__init__()
        self.path, self.meta, self.losses = path, meta, losses
        self.spent, self.seconds, self.verbose = spent, seconds, verbose
        self.started = time.perf_counter()
        self.rounds: list[float] = []  # wall seconds of each round of this call
        self.round_start = self.started
        self.trained = spent  # training seconds at the end of the last round (fit's own wind-down not counted)

    @property
    def compile_seconds(self) -> float:
        if len(self.rounds) < 2:
            return 0.0
        return max(0.0, self.rounds[0] - float(np.median(self.rounds[1:])))

    def elapsed(self) -> float:
        """Training seconds so far (earlier calls included), the first round's compile left out."""
        return self.spent + time.perf_counter() - self.started - self.compile_seconds

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.round_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.rounds.append(time.perf_counter() - self.round_start)
        self.trained = self.elapsed()
        self.losses.append(float((logs or {}).get("loss", np.nan)))
        if self.path is not None:
            _save(self.path, self.model, dict(self.meta, seconds=self.trained, losses=self.losses))
        if self.verbose:
            print(f"step {int(self.model.optimizer.iterations.numpy()):,}: loss {self.losses[-1]:.3f}")
        # At least two rounds per call: the second tells how much of the first was compiling.
        if self.seconds is not None and len(self.rounds) >= 2 and self.trained >= self.seconds:
            self.model.stop_training = True


def _save(path: Path, model: keras.Model, meta: dict) -> None:
    from aigc_tf.training import random_state

    arrays = {f"trainable_{i}": np.asarray(v) for i, v in enumerate(model.trainable_variables)}
    arrays.update({f"optimizer_{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    arrays.update({f"random_{i}": v for i, v in enumerate(random_state(model))})
    meta = dict(meta, step=int(model.optimizer.iterations.numpy()))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("tmp-" + path.name)
    with open(tmp, "wb") as f:  # write, then rename: a kill mid-save keeps the last checkpoint
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def _restore(path: Path, model: keras.Model, meta: dict) -> dict:
    from aigc_tf.training import restore_random_state

    with np.load(path) as saved:
        stored = json.loads(str(saved["meta"]))
        for key in ("method", "rank", "layers", "batch_size", "seq_len", "seed"):
            if stored.get(key) != meta.get(key):
                raise ValueError(
                    f"checkpoint_dir: {str(path)!r} is a run with {key}={stored.get(key)!r}, "
                    f"this call asks for {meta.get(key)!r}; use another folder or the same settings."
                )
        model.optimizer.build(model.trainable_variables)
        for prefix, variables in (("trainable", model.trainable_variables), ("optimizer", model.optimizer.variables)):
            for i, variable in enumerate(variables):
                variable.assign(saved[f"{prefix}_{i}"])
        restore_random_state(model, [saved[k] for k in sorted(saved.files) if k.startswith("random_")])
    return stored


def fine_tune(
    model: keras.Model,
    text: str,
    *,
    method: str = "full",
    rank: int = 8,
    steps: int | None = None,
    seconds: float | None = None,
    learning_rate: float | None = None,
    batch_size: int = 16,
    seq_len: int | None = None,
    lora_layers: tuple[str, ...] = LORA_LAYERS,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 50,
    weight_decay: float = 0.0,
    callbacks: list[keras.callbacks.Callback] = (),
    verbose: bool = False,
) -> FineTuneResult:
    """Fine-tune a language model on ``text``, in place: every weight, or LoRA.

    Example:
        >>> model = load_course_gpt()
        >>> result = fine_tune(model, splits.speaker_train, method="lora", rank=8, seconds=90)
        >>> result.trainable_fraction  # about 2 %
        >>> model.save("duke.keras")   # LoRA merged into the kernels: a plain GPT

    Args:
        model: a course language model with a tokenizer (LoRA: a :class:`~aigc_tf.transformer.GPT`).
        text: the new text (encoded with ``model.tokenizer``).
        method: ``"full"`` (all weights) or ``"lora"`` (frozen weights, rank-``rank`` updates of
            ``lora_layers`` in every block).
        rank: LoRA's rank.
        steps: a step budget (a multiple of ``checkpoint_every``); the learning rate follows a
            cosine from ``learning_rate`` to a tenth of it.
        seconds: a time budget instead (checked after every round of ``checkpoint_every``
            steps; the first round's XLA compile does not count); the learning rate stays
            constant. Exactly one of ``steps``, ``seconds``.
        learning_rate: AdamW's; default 3e-4 (full) or 2e-3 (LoRA), the recipes'
            (:func:`aigc_tf.recipes.pretrained_settings`).
        batch_size, seq_len: windows per step and their length (default: the model's context).
        lora_layers: which Dense layers LoRA adapts (see :data:`LORA_LAYERS`).
        seed: seeds the LoRA initialisation and the order of the windows.
        checkpoint_dir: save a checkpoint there after every round, and resume from it if
            it holds one (the same ``model`` before fine-tuning must be passed again).
        checkpoint_every: steps per round (one compiled call of that many steps).
        weight_decay: AdamW's decoupled weight decay.
        callbacks: more Keras callbacks for ``fit`` (they run after the round's checkpoint).
        verbose: print one line per round.

    Returns:
        A :class:`FineTuneResult`.
    """
    from aigc_tf.lm import LanguageModel
    from aigc_tf.training import text_windows

    if not isinstance(model, LanguageModel):
        raise TypeError(
            f"model must be a course language model (aigc_tf.lm.LanguageModel), got {type(model).__name__}."
        )
    if model.tokenizer is None:
        raise ValueError("model: fine_tune needs a model with a tokenizer to encode the text.")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}.")
    method = check_choice("method", method, ("full", "lora"))
    rank = check_int("rank", rank, minimum=1)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if (steps is None) == (seconds is None):
        raise ValueError(f"give exactly one of steps and seconds, got steps={steps!r}, seconds={seconds!r}.")
    if steps is not None:
        steps = check_int("steps", steps, minimum=1)
        if steps % checkpoint_every:
            raise ValueError(f"steps ({steps}) must be a multiple of checkpoint_every ({checkpoint_every}).")
    if seconds is not None:
        seconds = check_float("seconds", seconds, low=0.0, low_inclusive=False)
    if learning_rate is None:
        learning_rate = 2e-3 if method == "lora" else 3e-4
    learning_rate = check_float("learning_rate", learning_rate, low=0.0, low_inclusive=False)
    seed = check_seed(seed) or 0
    seq_len = check_int("seq_len", seq_len or model.context_length or 128, minimum=1)
    ids = model.tokenizer.encode(text)

    if not model.built:
        model(np.zeros((1, 2), "int32"))
    if method == "lora":
        enable_lora(model, rank, layers=tuple(lora_layers), seed=seed)
    schedule = learning_rate
    if steps is not None:
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.1)
    optimizer = keras.optimizers.AdamW(
        schedule, beta_1=0.9, beta_2=0.99, weight_decay=weight_decay, global_clipnorm=1.0
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
        steps_per_execution=checkpoint_every,
    )

    meta = dict(
        method=method, rank=rank if method == "lora" else None, layers=list(lora_layers) if method == "lora" else None
    )
    meta.update(batch_size=batch_size, seq_len=seq_len, seed=seed)
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    done, spent, losses = 0, 0.0, []
    if path is not None and path.exists():
        stored = _restore(path, model, meta)
        done, spent, losses = stored["step"], stored["seconds"], list(stored["losses"])
    checkpointer = _Checkpointer(path, meta, losses, spent, seconds=seconds, verbose=verbose)
    # Windows start at every token (as the pretraining recipe's): a short text gives many.
    dataset = text_windows(ids, seq_len, batch_size, stride=1, seed=seed, start=done)
    rounds = (steps - done) // checkpoint_every if steps is not None else 2**31 - 1
    if rounds > 0 and not (seconds is not None and spent >= seconds):
        model.fit(
            dataset,
            epochs=rounds,
            steps_per_epoch=checkpoint_every,
            callbacks=[checkpointer, *callbacks],
            shuffle=False,
            verbose=0,
        )
    return FineTuneResult(
        method=method,
        steps=int(model.optimizer.iterations.numpy()),
        seconds=checkpointer.trained,
        compile_seconds=checkpointer.compile_seconds,
        trainable_params=_count(model.trainable_variables),
        total_params=_count(model.weights) - _count([v for v in model.weights if "seed" in v.path]),
        losses=losses,
    )
