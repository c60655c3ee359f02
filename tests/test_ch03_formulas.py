"""Numerical checks of the formulas shown in notebook 03 (RNN text generation).

Each test names the formula it checks; the other formulas of the chapter are
checked in test_autoregressive.py, test_text.py, test_sampling.py and test_rnn.py.
"""

import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from aigc_tf.metrics import bits_per_char, evaluate_loss, perplexity
from aigc_tf.rnn import CharRNN
from aigc_tf.sampling import sample_next
from aigc_tf.text import CharTokenizer, make_char_dataset


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------- metrics: nats, bits, perplexity


@pytest.mark.parametrize("nats", [0.0, 1.0, 1.47, 1.88, math.log(65)])
def test_bits_per_char_and_perplexity(nats):
    # bits/char = nats/char / ln 2 (total nats over the characters);  perplexity = e^loss = 2^(bits/char)
    assert bits_per_char(nats, 1) == pytest.approx(nats / math.log(2))
    assert bits_per_char(7 * nats, 7) == pytest.approx(bits_per_char(nats, 1))
    assert perplexity(nats) == pytest.approx(math.exp(nats))
    assert perplexity(nats) == pytest.approx(2.0 ** bits_per_char(nats, 1))


def test_uniform_baseline():
    # A uniform guess over V characters: loss log V nats = log2 V bits, perplexity V.
    tok = CharTokenizer([chr(ord("!") + i) for i in range(65)])
    model = CharRNN(tok.vocab_size, embedding_dim=4, units=8, tokenizer=tok, seed=0)
    model(np.zeros((1, 1), "int32"))
    model.head.kernel.assign(np.zeros_like(model.head.kernel))  # every logit 0: the uniform guess
    ids = np.random.default_rng(0).integers(0, 65, (3, 11)).astype("int32")
    metrics = evaluate_loss(model, tf.data.Dataset.from_tensor_slices((ids[:, :-1], ids[:, 1:])).batch(2))
    assert metrics["loss"] == pytest.approx(math.log(65), rel=1e-6)
    assert metrics["bits_per_char"] == pytest.approx(math.log2(65), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(65, rel=1e-5)
    assert metrics["num_tokens"] == metrics["num_chars"] == 30


def test_unigram_entropy_is_the_loss_of_constant_log_frequency_logits():
    # H = -sum_c p(c) log p(c) is the cross-entropy of a model that ignores the
    # context and always outputs logits log p(c); on other text with frequencies q,
    # the loss is the cross-entropy -sum_c q(c) log p(c) >= H(q).
    text = "to be, or not to be: that is the question"
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    p = np.bincount(ids, minlength=tok.vocab_size) / len(ids)
    entropy = -(p * np.log(p)).sum()
    logits = np.tile(np.log(p).astype("float32"), (1, len(ids), 1))
    loss = float(keras.ops.mean(keras.losses.sparse_categorical_crossentropy(ids[None], logits, from_logits=True)))
    assert loss == pytest.approx(entropy, rel=1e-5)
    other = tok.encode("not to be the question, or to be")
    q = np.bincount(other, minlength=tok.vocab_size) / len(other)
    cross = -(q[q > 0] * np.log(p[q > 0])).sum()
    loss_other = float(
        keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(other[None], logits[:, : len(other)], from_logits=True)
        )
    )
    assert loss_other == pytest.approx(cross, rel=1e-5)
    assert cross >= -(q[q > 0] * np.log(q[q > 0])).sum() - 1e-12  # Gibbs' inequality


# --------------------------------------------------------------- chain rule and the loss


def tiny_model(vocab="abc", seed=0):
    tok = CharTokenizer(vocab)
    model = CharRNN(tok.vocab_size, embedding_dim=4, units=8, tokenizer=tok, seed=seed)
    model(np.zeros((1, 1), "int32"))
    model.head.kernel.assign(model.head.kernel * 5.0)  # context-dependent, non-uniform
    return model


def test_chain_rule_gives_a_distribution_and_the_loss_is_minus_log_p_over_T():
    # p(x_2..x_T | x_1) = prod_t p(x_t | x_<t): summed over every continuation it is 1,
    # and the mean next-char loss of a text times its length is -log p(text).
    model = tiny_model()
    V, T = 3, 4
    seqs = np.array([(0,) + c for c in itertools.product(range(V), repeat=T - 1)], "int32")
    log_probs = keras.ops.log_softmax(model(seqs[:, :-1]), axis=-1).numpy().astype(np.float64)
    per_step = np.take_along_axis(log_probs, seqs[:, 1:, None], axis=-1)[..., 0]  # log p(x_t | x_<t)
    assert np.exp(per_step.sum(axis=1)).sum() == pytest.approx(1.0, abs=1e-5)
    ds = tf.data.Dataset.from_tensor_slices((seqs[:, :-1], seqs[:, 1:])).batch(5)
    loss = evaluate_loss(model, ds)["loss"]
    assert loss == pytest.approx(-per_step.mean(), rel=1e-5)
    assert loss * per_step.size == pytest.approx(-per_step.sum(), rel=1e-5)


def test_keras_evaluate_weights_the_last_batch_like_evaluate_loss():
    # The notebook reads the validation loss from Keras (fit's val_loss / evaluate):
    # with a smaller last batch it must still be the mean over every target character.
    text = "to be, or not to be: that is the question. " * 3
    tok = CharTokenizer.from_text(text)
    model = CharRNN(tok.vocab_size, embedding_dim=4, units=8, seed=1)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = make_char_dataset(tok.encode(text), seq_len=10, batch_size=5, shuffle=False, drop_remainder=False)
    sizes = [int(x.shape[0]) for x, _ in ds]
    assert len(set(sizes)) == 2  # an uneven last batch
    assert model.evaluate(ds, verbose=0) == pytest.approx(evaluate_loss(model, ds)["loss"], rel=1e-5)


# --------------------------------------------------------------- the cell equations inside CharRNN


def test_lstm_equations_inside_char_rnn():
    # [i, f, g, o] = x W + h U + b (Keras' gate order);  i, f, o = sigmoid, g = tanh
    # c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t);  logits_t = h_t W_y + b_y
    # Stepped by hand with CharRNN's own weights, these equations give its logits.
    model = tiny_model("abcd", seed=2)
    emb, W, U, b, Wy, by = (w.numpy() for w in model.weights)
    assert W.shape == (4, 4 * model.units) and U.shape == (model.units, 4 * model.units)
    ids = np.array([[0, 3, 1, 2, 2]], "int32")
    h = c = np.zeros((1, model.units), "float32")
    logits = []
    for t in range(ids.shape[1]):
        i, f, g, o = np.split(emb[ids[:, t]] @ W + h @ U + b, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        logits.append(h @ Wy + by)
    np.testing.assert_allclose(np.stack(logits, axis=1), np.asarray(model(ids)), atol=1e-5)
    # CharRNN's LSTM starts the forget gate's bias at 1 (it remembers by default).
    np.testing.assert_array_equal(b[model.units : 2 * model.units], 1.0)


def test_gru_equations_inside_char_rnn():
    # Keras' GRU (reset_after=True): [z, r, n] gates from x W + b_x and h U + b_h,
    # z, r = sigmoid; n = tanh(x W_n + b_xn + r * (h U_n + b_hn)); h_t = z * h_{t-1} + (1 - z) * n
    tok = CharTokenizer("abcd")
    model = CharRNN(tok.vocab_size, embedding_dim=4, units=8, cell="gru", tokenizer=tok, seed=3)
    model(np.zeros((1, 1), "int32"))
    rng = np.random.default_rng(3)
    for w in model.weights:  # non-zero biases too
        w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
    emb, W, U, b, Wy, by = (w.numpy() for w in model.weights)
    assert b.shape == (2, 3 * model.units)
    ids = np.array([[1, 0, 3, 3, 2]], "int32")
    h = np.zeros((1, model.units), "float32")
    logits = []
    for t in range(ids.shape[1]):
        xz, xr, xn = np.split(emb[ids[:, t]] @ W + b[0], 3, axis=-1)
        hz, hr, hn = np.split(h @ U + b[1], 3, axis=-1)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        h = z * h + (1 - z) * np.tanh(xn + r * hn)
        logits.append(h @ Wy + by)
    np.testing.assert_allclose(np.stack(logits, axis=1), np.asarray(model(ids)), atol=1e-5)


@pytest.mark.parametrize("cell, gates, layers", [("lstm", 4, 1), ("lstm", 4, 2), ("gru", 3, 1)])
def test_parameter_count_formula(cell, gates, layers):
    # embedding V*d + first layer gates*(d*u + u*u + u) + later layers gates*(u*u + u*u + u)
    # [+ gates*u per layer for GRU's second bias] + head u*V + V
    V, d, u = 65, 64, 384
    model = CharRNN(V, embedding_dim=d, units=u, cell=cell, num_layers=layers)
    model(np.zeros((1, 1), "int32"))
    recurrent = gates * (d * u + u * u + u) + (layers - 1) * gates * (u * u + u * u + u)
    recurrent += layers * gates * u if cell == "gru" else 0
    assert model.count_params() == V * d + recurrent + u * V + V
    if (cell, layers) == ("lstm", 1):
        assert model.count_params() == 718_849


# --------------------------------------------------------------- softmax with temperature


def test_softmax_with_temperature():
    # p_i(T) = exp(z_i / T) / sum_j exp(z_j / T)
    z = np.array([2.0, 1.0, 0.5, -1.0], "float32")
    for T in (0.25, 0.5, 1.0, 2.0, 10.0):
        expected = np.exp(z / T) / np.exp(z / T).sum()
        np.testing.assert_allclose(keras.ops.softmax(z / T).numpy(), expected, rtol=1e-5)
    entropies = [
        -(p * np.log(p)).sum() for p in (np_softmax(z.astype(np.float64) / T) for T in (0.1, 0.5, 1, 2, 10, 1000))
    ]
    assert np.all(np.diff(entropies) > 0)  # higher temperature, flatter distribution
    assert entropies[-1] == pytest.approx(math.log(4), abs=1e-3)  # T -> inf: uniform
    assert np_softmax(z.astype(np.float64) / 0.01)[0] == pytest.approx(1.0)  # T -> 0: argmax
    # Temperature 1 leaves the model's distribution unchanged; sample_next draws from it
    # (frequency tests: test_sampling.test_frequencies_match_softmax_with_temperature).
    np.testing.assert_array_equal(np.asarray(sample_next(z, temperature=0.01, seed=0)), 0)


# --------------------------------------------------------------- generation cost


def test_generation_cost_carried_state_vs_rereading():
    # Prompt of P characters, N new ones: carrying the state reads the prompt once and takes
    # N - 1 single steps (P + N - 1 cell steps); re-reading costs sum_{i<N} (P + i) = N P + N (N - 1) / 2.
    model = tiny_model()
    P, N = 4, 7
    reads = []  # characters each forward pass reads
    embed = model.embedding.call
    model.embedding.call = lambda ids, *args, **kwargs: (reads.append(int(ids.shape[1])), embed(ids, *args, **kwargs))[
        1
    ]
    tf.config.run_functions_eagerly(True)  # the compiled decoding loops run as Python: every pass is seen
    try:
        fast = model.generate("abca", N, seed=3)
        carried, reads[:] = list(reads), []
        slow = model.generate("abca", N, seed=3, use_cache=False)
    finally:
        tf.config.run_functions_eagerly(False)
    assert carried == [P] + [1] * (N - 1) and sum(carried) == P + N - 1
    assert reads == [P + i for i in range(N)]
    assert sum(reads) == N * P + N * (N - 1) // 2
    assert fast == slow
