"""CharRNN: shapes, state carrying, generation, training.

What the char-RNN shares with the GPT (generation, XLA and mixed-precision steps) is tested in test_lm.py, the
save/load and MirroredStrategy round trips in test_lm_subprocess.py.
"""

import math

import keras
import numpy as np
import pytest
from conftest import LM_TEXT, compile_lm, lm_ids
from scipy import stats

from aigc_tf.metrics import evaluate_loss
from aigc_tf.rnn import CharRNN
from aigc_tf.text import CharTokenizer, make_char_dataset

TEXT = LM_TEXT
TOK = CharTokenizer.from_text(TEXT)
V = TOK.vocab_size


# ------------------------------------------------------------------------- forward pass


@pytest.mark.parametrize("cell, num_layers", [("lstm", 1), ("gru", 2)])
def test_logits_shape_dtype_and_weights(cell, num_layers, tiny_rnn):
    model = tiny_rnn(cell=cell, num_layers=num_layers)
    logits = model(lm_ids((3, 7)))
    assert tuple(logits.shape) == (3, 7, V) and logits.dtype == "float32"
    # embedding + per layer (kernel, recurrent kernel, bias) + head (kernel, bias)
    assert len(model.trainable_weights) == 1 + 3 * num_layers + 2
    assert model.embedding.embeddings.shape == (V, 8)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stepping_with_state_equals_full_pass(cell, tiny_rnn):
    # Dropout > 0 must not matter in inference.
    model = tiny_rnn(cell=cell, dropout=0.3)
    ids = lm_ids((2, 15), seed=1)
    full = np.asarray(model(ids))
    for prompt_len in (1, 6):
        logits, state = model.read_prompt(ids[:, :prompt_len])
        np.testing.assert_allclose(np.asarray(logits), full[:, prompt_len - 1], atol=1e-5)
        for t in range(prompt_len, ids.shape[1]):
            logits, state = model.step(ids[:, t], state)
            np.testing.assert_allclose(np.asarray(logits), full[:, t], atol=1e-5)
    # The state really carries the past: stepping from a fresh state gives different logits.
    logits_fresh, _ = model.read_prompt(ids[:, 5:6])
    assert not np.allclose(np.asarray(logits_fresh), full[:, 5], atol=1e-4)


# ------------------------------------------------------------------------- generation


def test_greedy_generation_equals_rereading_the_prefix(tiny_rnn):
    model = tiny_rnn(cell="gru")
    prompt = lm_ids((3, 4), seed=2)
    fast = model.generate(prompt, 25, top_k=1)
    # Independent computation: the full forward pass on the whole text at every step.
    ids = prompt.copy()
    for _ in range(25):
        nxt = np.asarray(model(ids))[:, -1].argmax(-1).astype("int32")
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(fast, ids)
    np.testing.assert_array_equal(model.generate(prompt, 25, top_k=1, use_cache=False), ids)
    np.testing.assert_array_equal(model.generate(prompt, 25, top_k=1, jit_compile=True), ids)  # the XLA loop


def test_generate_samples_from_the_model_distribution(tiny_rnn):
    model = tiny_rnn(num_layers=1)
    # An untrained model is nearly uniform; give the head a spread bias so the
    # next-character distribution is far from uniform and temperature matters.
    model(lm_ids((1, 1)))
    model.head.bias.assign(np.linspace(-2.0, 2.0, V).astype("float32"))
    prompt = TOK.encode("to b")
    expected = keras.ops.softmax(model(prompt[None])[0, -1] / 0.5).numpy().astype(np.float64)
    expected /= expected.sum()  # float32 softmax sums to 1 only up to round-off
    n = 4000
    out = model.generate(np.tile(prompt, (n, 1)), 1, temperature=0.5, seed=3)
    counts = np.bincount(out[:, -1], minlength=V)
    keep = expected * n >= 5  # chi-square needs expected counts >= 5; pool the rest
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum()) * n
    assert stats.chisquare(obs[exp > 0], exp[exp > 0]).pvalue > 1e-3
    top2 = set(np.argsort(-expected)[:2].tolist())
    out_k = model.generate(np.tile(prompt, (200, 1)), 1, top_k=2, seed=4)
    assert set(out_k[:, -1].tolist()) <= top2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"units": 0}, ValueError, "units"),
        ({"embedding_dim": 0}, ValueError, "embedding_dim"),
        ({"units": 16.0}, TypeError, "units"),
        ({"cell": "rnn"}, ValueError, "cell"),
        ({"dropout": -0.1}, ValueError, "dropout"),
    ],
)
def test_constructor_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CharRNN(**{"vocab_size": V, **kwargs})


# ------------------------------------------------------------------------- training


def test_training_lowers_loss_and_evaluate_loss_matches_keras(tiny_rnn):
    keras.utils.set_random_seed(0)
    model = compile_lm(tiny_rnn(num_layers=1), keras.optimizers.Adam(0.02))
    ds = make_char_dataset(TOK.encode(TEXT), seq_len=16, batch_size=4, shuffle=False, drop_remainder=False)
    before = evaluate_loss(model, ds)
    # An untrained model is close to a uniform guess: loss ≈ log V.
    assert before["loss"] == pytest.approx(math.log(V), abs=0.15)
    assert before["bits_per_char"] == pytest.approx(before["loss"] / math.log(2))
    assert before["perplexity"] == pytest.approx(math.exp(before["loss"]))
    history = model.fit(ds, epochs=6, verbose=0, shuffle=False)
    after = evaluate_loss(model, ds)
    assert after["loss"] < 0.7 * before["loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Same number through Keras (equal-size batches here, so the means agree).
    ds_even = make_char_dataset(TOK.encode(TEXT), seq_len=16, batch_size=4, shuffle=False)
    assert model.evaluate(ds_even, verbose=0) == pytest.approx(evaluate_loss(model, ds_even)["loss"], rel=1e-4)
