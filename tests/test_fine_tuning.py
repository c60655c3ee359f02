"""Chapter 06's text splits, fine-tuning (full and LoRA, resumable) and the course model's file."""

import keras
import numpy as np
import pytest

from aigc_tf import recipes
from aigc_tf.pretrained import fine_tune, load_course_gpt
from aigc_tf.pretrained.course import COURSE_GPT, course_gpt_info, export_course_gpt
from aigc_tf.pretrained.fine_tuning import enable_lora
from aigc_tf.text import HELD_OUT_SPEAKER, CharTokenizer, course_text_splits, nanogpt_split, speaker_lines
from aigc_tf.transformer import GPT

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me.\n\n" * 20


@pytest.fixture(scope="module")
def splits():
    return course_text_splits()


def test_the_splits_hold_the_speaker_out(splits):
    train, val = nanogpt_split()
    tag = f"\n{HELD_OUT_SPEAKER}:\n"
    assert tag in "\n" + train and tag not in "\n" + splits.pretrain
    assert splits.general_val == val
    everything = speaker_lines(train, HELD_OUT_SPEAKER)
    # The two speaker splits are his speeches, in order, each speech in exactly one.
    assert splits.speaker_train.rstrip("\n") + "\n\n" + splits.speaker_val == everything
    assert splits.speaker_train.startswith(HELD_OUT_SPEAKER + ":") and splits.speaker_val.startswith(HELD_OUT_SPEAKER)
    assert 0.7 < len(splits.speaker_train) / len(everything) < 0.9
    assert len(everything) > 30_000
    # Nothing else is lost: the other paragraphs are all still in the pretraining text.
    assert len(splits.pretrain) + len(everything) == pytest.approx(len(train), abs=200)


def test_the_pretrain_recipe_trains_without_the_speaker():
    from aigc_tf.training import text_data

    overrides = recipes.variant_overrides("gpt", "pretrain", "smoke")
    recipe = recipes.get_recipe("gpt", "smoke", **overrides)
    assert recipe.data["held_out_speaker"] == HELD_OUT_SPEAKER
    data = text_data(recipe)
    assert f"\n{HELD_OUT_SPEAKER}:\n" not in data.train_text and data.val_text == nanogpt_split()[1]
    assert data.tokenizer.vocab_size == 65  # the full character set: fine-tuning text encodes
    with pytest.raises(ValueError, match="name"):
        recipes.variant_overrides("gpt", "nope", "smoke")


def test_splits_bad_arguments():
    with pytest.raises(ValueError, match="NOBODY"):
        course_text_splits("NOBODY")
    with pytest.raises(TypeError, match="speaker"):
        course_text_splits(3)
    with pytest.raises(ValueError, match="speaker_fraction"):
        course_text_splits(speaker_fraction=1.0)


def tiny_gpt(seed=0):
    keras.utils.set_random_seed(seed)
    tok = CharTokenizer.from_text(TEXT)
    model = GPT(tok.vocab_size, max_len=16, num_layers=2, num_heads=2, embed_dim=16, tokenizer=tok, seed=seed)
    model(np.zeros((1, 2), "int32"))
    return model


def logits(model, ids):
    return np.asarray(model(ids, training=False))


IDS = np.arange(24, dtype="int32").reshape(2, 12) % 20


def test_lora_starts_at_the_pretrained_model_and_freezes_it():
    model = tiny_gpt()
    before = logits(model, IDS)
    kernels = [np.asarray(b.attn.qkv.kernel) for b in model.blocks]
    trainable = enable_lora(model, rank=2)
    np.testing.assert_allclose(logits(model, IDS), before, atol=1e-6)  # B = 0: nothing changed yet
    # Only A (16x2) and B (2x48) of qkv, A (16x2) and B (2x16) of proj train, in each of 2 blocks.
    assert trainable == 2 * (16 * 2 + 2 * 48 + 16 * 2 + 2 * 16)
    result = fine_tune(model, TEXT, method="lora", rank=2, steps=20, checkpoint_every=10, batch_size=4, seq_len=16)
    assert result.trainable_params == trainable and result.trainable_fraction < 0.2
    after = logits(model, IDS)
    assert np.abs(after - before).max() > 1e-3  # it learned ...
    # ... without touching a frozen weight: the merged kernel is W + (alpha/r) A B.
    for block, kernel in zip(model.blocks, kernels):
        np.testing.assert_array_equal(np.asarray(block.attn.qkv._kernel), kernel)
    assert result.losses[-1] < result.losses[0]


class Kill(keras.callbacks.Callback):
    """Stops the process's work after ``rounds`` rounds, as a lost session would."""

    def __init__(self, rounds):
        super().__init__()
        self.rounds = rounds

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.rounds:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_killed_run_resumes_to_the_same_weights(tmp_path, method):
    kwargs = dict(method=method, rank=2, steps=30, checkpoint_every=10, batch_size=4, seq_len=16, seed=1)
    straight = tiny_gpt()
    fine_tune(straight, TEXT, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        fine_tune(tiny_gpt(), TEXT, checkpoint_dir=tmp_path, callbacks=[Kill(1)], **kwargs)
    saved = dict(np.load(tmp_path / "fine_tune.npz"))
    if method == "lora":
        assert sum(k.startswith("trainable_") for k in saved) == 8  # only A and B of 4 layers are saved
    resumed = tiny_gpt()  # a new session: the pretrained model again, then the same call
    result = fine_tune(resumed, TEXT, checkpoint_dir=tmp_path, **kwargs)
    assert result.steps == 30 and len(result.losses) == 3
    np.testing.assert_allclose(logits(resumed, IDS), logits(straight, IDS), atol=1e-5)
    for a, b in zip(resumed.optimizer.variables, straight.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    with pytest.raises(ValueError, match="seed"):  # another setting cannot resume this run
        fine_tune(tiny_gpt(), TEXT, checkpoint_dir=tmp_path, **{**kwargs, "seed": 2})


def test_the_keras_file_of_a_lora_model_is_the_merged_model(tmp_path):
    model = tiny_gpt()
    fine_tune(model, TEXT, method="lora", rank=2, steps=10, checkpoint_every=10, batch_size=4, seq_len=16)
    model.save(tmp_path / "merged.keras")
    loaded = keras.models.load_model(tmp_path / "merged.keras")
    np.testing.assert_allclose(logits(loaded, IDS), logits(model, IDS), atol=1e-5)
    assert not loaded.blocks[0].attn.qkv.lora_enabled
    # Generation sees the LoRA weights too (its compiled programs were traced again).
    assert model.generate("ROMEO:", 8, top_k=1) == loaded.generate("ROMEO:", 8, top_k=1)


def test_full_fine_tuning_learns_the_new_text():
    from aigc_tf.metrics import text_loss

    model = tiny_gpt()
    before = text_loss(model, TEXT)["nats_per_char"]
    result = fine_tune(model, TEXT, steps=60, checkpoint_every=20, batch_size=8, seq_len=16, learning_rate=3e-3)
    assert result.trainable_fraction == 1.0
    assert text_loss(model, TEXT)["nats_per_char"] < before - 0.5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(method="adapter", steps=10), ValueError, "method"),
        (dict(steps=10, seconds=5.0), ValueError, "exactly one"),
        (dict(), ValueError, "exactly one"),
        (dict(steps=15, checkpoint_every=10), ValueError, "multiple"),
        (dict(steps=10, rank=0), ValueError, "rank"),
        (dict(seconds=-1.0), ValueError, "seconds"),
    ],
)
def test_fine_tune_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fine_tune(tiny_gpt(), TEXT, **kwargs)


def test_fine_tune_needs_a_language_model_and_text():
    with pytest.raises(TypeError, match="model"):
        fine_tune(keras.Sequential(), TEXT, steps=10)
    with pytest.raises(TypeError, match="text"):
        fine_tune(tiny_gpt(), ["ROMEO"], steps=10)


def test_the_course_model_file_round_trip(tmp_path):
    model = tiny_gpt()
    path = export_course_gpt(model, tmp_path / "m.npz", validation={"nats_per_char": 1.0})
    again = load_course_gpt(path)
    np.testing.assert_allclose(logits(again, IDS), logits(model, IDS), atol=2e-2)  # float16 weights
    assert course_gpt_info(path)["validation"] == {"nats_per_char": 1.0}
    with pytest.raises(FileNotFoundError, match="train_course_gpt"):
        load_course_gpt(tmp_path / "missing.npz")


@pytest.mark.slow
def test_the_shipped_course_model():
    from aigc_tf.metrics import text_loss

    info = course_gpt_info()
    assert COURSE_GPT.stat().st_size <= 10 * 2**20
    model = load_course_gpt()
    assert model.vocab_size == 65 and model.tokenizer.vocab == CharTokenizer.from_text("".join(nanogpt_split())).vocab
    # The recorded validation loss is the shipped (float16) model's, on nanoGPT's whole split.
    val = nanogpt_split()[1]
    assert info["validation"]["nats_per_char"] <= 1.50
    recomputed = text_loss(model, val)["nats_per_char"]
    assert recomputed == pytest.approx(info["validation"]["nats_per_char"], abs=1e-3)


def test_the_cli_trains_the_named_pretrain_variant(tmp_path):
    import json

    from aigc_tf.cli import main

    out = tmp_path / "run"
    assert main(["train", "gpt", "--profile", "smoke", "--recipe", "pretrain", "--steps", "50", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["overrides"]["data"]["held_out_speaker"] == HELD_OUT_SPEAKER
    assert run["recipe"]["data"]["held_out_speaker"] == HELD_OUT_SPEAKER


def test_a_time_budget_leaves_out_the_first_compile():
    import time

    model = tiny_gpt()
    wall = time.perf_counter()
    result = fine_tune(model, TEXT, seconds=3.0, checkpoint_every=10, batch_size=4, seq_len=16)
    wall = time.perf_counter() - wall
    assert result.compile_seconds > 0.5  # the XLA compile of the first round, estimated ...
    assert result.seconds >= 3.0 and result.seconds + result.compile_seconds <= wall + 0.1  # ... and not counted
    assert result.steps == 10 * len(result.losses) and len(result.losses) >= 2
