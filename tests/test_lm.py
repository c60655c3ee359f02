"""What every language model shares (aigc_tf.lm): prompts, generate, seeds, decoding paths, tokenizers;
the XLA and mixed-precision training steps.

Each test runs for the char-RNN and for the GPT.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LM_TEXT, compile_lm, lm_ids

from aigc_tf import sampling
from aigc_tf.lm import LanguageModel, Tokenizer
from aigc_tf.text import CharTokenizer

V = CharTokenizer.from_text(LM_TEXT).vocab_size
FAST = {"rnn": {}, "gpt": {"jit_compile": False}}  # XLA compiles take seconds; one test covers them


@pytest.fixture(params=["rnn", "gpt"])
def kind(request):
    return request.param


@pytest.fixture
def make(kind, tiny_rnn, tiny_gpt):
    """A maker of small models of this kind."""
    return {"rnn": tiny_rnn, "gpt": tiny_gpt}[kind]


def peaked(model, factor=10.0):
    """An untrained model with peaked, input-dependent logits (so greedy and beams differ from noise)."""
    model(np.zeros((1, 2), "int32"))
    layer = model.embedding if hasattr(model, "embedding") else model.token_embedding
    layer.embeddings.assign(layer.embeddings * factor)
    return model


def window_logits(model, ids):
    """Next-token logits of a full forward pass on the last ``context_length`` tokens (the reference)."""
    ids = np.asarray(ids)
    if model.context_length is not None:
        ids = ids[:, -model.context_length :]
    return np.array(model(ids))[:, -1]


def sequence_log_prob(model, prompt, continuation):
    ids = np.concatenate([prompt, continuation])[None]
    logits = [window_logits(model, ids[:, :t])[0] for t in range(len(prompt), ids.shape[1])]
    log_probs = keras.ops.log_softmax(np.stack(logits), axis=-1).numpy()
    return float(sum(log_probs[i, token] for i, token in enumerate(continuation)))


def test_both_models_are_language_models(tiny_rnn, tiny_gpt, tokenizer):
    for model in (tiny_rnn(), tiny_gpt()):
        assert isinstance(model, LanguageModel) and isinstance(model.tokenizer, Tokenizer)
    assert isinstance(tokenizer, Tokenizer)


def test_generate_shapes_and_prompt_kept(make, kind, tokenizer):
    model = make()
    prompt = tokenizer.encode("to be")
    out = model.generate(prompt, 12, seed=1, **FAST[kind])
    assert out.shape == (len(prompt) + 12,) and out.dtype == np.int32
    np.testing.assert_array_equal(out[: len(prompt)], prompt)
    assert out.min() >= 0 and out.max() < V
    batch = np.stack([prompt, tokenizer.encode("or no")])
    out2 = model.generate(batch, 4, seed=1, top_p=0.9, top_k=5, temperature=0.7, **FAST[kind])
    assert out2.shape == (2, 9)
    np.testing.assert_array_equal(out2[:, :5], batch)
    text = model.generate("that ", 10, seed=1, **FAST[kind])
    assert isinstance(text, str) and len(text) == 15 and text.startswith("that ")
    np.testing.assert_array_equal(model.generate(prompt, 0), prompt)
    assert model.generate("that ", 0, num_beams=3) == "that "


def test_seeds_and_both_paths_give_the_same_text(make, kind):
    model = make()
    a = model.generate("to ", 30, seed=5, **FAST[kind])
    assert a == model.generate("to ", 30, seed=5, **FAST[kind])
    assert a == model.generate("to ", 30, seed=5, use_cache=False)  # re-reading the text: same draws
    assert a != model.generate("to ", 30, seed=6, **FAST[kind])
    b, c = model.generate("to ", 30, **FAST[kind]), model.generate("to ", 30, **FAST[kind])
    assert b != c  # seed=None: the stream moves on


def test_eager_run_equals_the_compiled_loop(make, kind):
    # tf.config.run_functions_eagerly runs generate's compiled program as Python: sample_loop's eager path.
    model = make()
    kwargs = dict(seed=3, temperature=0.8, top_k=6, no_repeat_ngram_size=3, **FAST[kind])
    compiled = model.generate("to be", 14, **kwargs)
    tf.config.run_functions_eagerly(True)
    try:
        eager = model.generate("to be", 14, **kwargs)
        eager_uncached = model.generate("to be", 14, use_cache=False, **kwargs)
    finally:
        tf.config.run_functions_eagerly(False)
    assert eager == compiled == eager_uncached


def test_cached_and_uncached_xla_loops_give_the_same_greedy_tokens(make, kind):
    # Both paths in the same kind of compiled while_loop (XLA): the cache changes the cost, not the tokens,
    # before and after the text outgrows the GPT's context (8), where the window slides.
    model = peaked(make())
    prompt = lm_ids((2, 5), seed=4)
    cached = model.generate(prompt, 12, top_k=1, use_cache=True, jit_compile=True)
    uncached = model.generate(prompt, 12, top_k=1, use_cache=False, jit_compile=True)
    graph = model.generate(prompt, 12, top_k=1, use_cache=False, jit_compile=False)
    np.testing.assert_array_equal(cached, uncached)
    np.testing.assert_array_equal(uncached, graph)
    # The fixed-width window reads the same logits as a forward pass on exactly the text.
    for length in (1, 5, 8, 13, 16):
        text_np = np.asarray(cached)[:, :length]
        expected = window_logits(model, text_np)
        buffer = tf.constant(np.pad(text_np, [(0, 0), (0, 16 - length)]).astype("int32"))
        got = np.asarray(model._window_logits(buffer, tf.constant(length)))
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_greedy_with_ngram_ban_matches_brute_force(make, kind):
    model = peaked(make())
    prompt = np.array([[0, 1, 0, 1], [2, 2, 3, 4]], "int32")
    n, steps = 2, 14  # past the GPT's context of 8
    ids = prompt.copy()
    for _ in range(steps):
        logits = window_logits(model, ids)
        for row, history in zip(logits, ids):
            grams = {tuple(history[j : j + n]) for j in range(len(history) - n + 1)}
            banned = [t for t in range(V) if (*history[len(history) - n + 1 :], t) in grams]
            row[banned if len(banned) < V else []] = -np.inf
        ids = np.concatenate([ids, logits.argmax(-1).astype("int32")[:, None]], axis=1)
    for use_cache in (True, False):
        out = model.generate(prompt, steps, top_k=1, no_repeat_ngram_size=n, use_cache=use_cache, **FAST[kind])
        np.testing.assert_array_equal(out, ids)


def test_no_repeated_ngrams_in_sampled_text_and_beams(make, kind):
    model = peaked(make())
    n = 3
    for text in (
        model.generate("to be", 40, seed=2, no_repeat_ngram_size=n, **FAST[kind]),
        model.generate("to be", 25, num_beams=3, no_repeat_ngram_size=n),
    ):
        grams = [text[i : i + n] for i in range(len(text) - n + 1)]
        assert len(grams) == len(set(grams)), text
    greedy = model.generate("to be", 40, top_k=1, **FAST[kind])
    grams = [greedy[i : i + n] for i in range(len(greedy) - n + 1)]
    assert len(grams) > len(set(grams))  # control: without the ban a peaked model repeats itself


def test_beam_search(make, kind, tokenizer):
    model = peaked(make(), factor=5.0)
    prompt = tokenizer.encode("to be")
    n = 10
    greedy = model.generate(prompt, n, top_k=1, **FAST[kind])
    logits, state = model.read_prompt(prompt[None])
    one_beam, _ = sampling.beam_search(model.step, logits, state, n, num_beams=1)
    np.testing.assert_array_equal(np.asarray(one_beam)[0, 0], greedy[len(prompt) :])
    beam = model.generate(prompt, n, num_beams=4)
    np.testing.assert_array_equal(beam, model.generate(prompt, n, num_beams=4, use_cache=False))
    assert beam.shape == greedy.shape and np.array_equal(beam[: len(prompt)], prompt)
    # A wider beam never finds a less likely continuation than greedy decoding.
    assert (
        sequence_log_prob(model, prompt, beam[len(prompt) :])
        >= sequence_log_prob(model, prompt, greedy[len(prompt) :]) - 1e-4
    )
    assert isinstance(model.generate("to be", 3, num_beams=2), str)


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("tx be", 5), {}, ValueError, r"\['x'\]"),
        (([[[1]]], 5), {}, ValueError, "shape"),
        ((np.array([], dtype=int), 5), {}, ValueError, "at least one"),
        (([0, V], 5), {}, ValueError, rf"\[0, {V}\)"),
        (([-1, 0], 5), {}, ValueError, rf"\[0, {V}\)"),
        (([0.5, 1.0], 5), {}, TypeError, "integers"),
        (([0, 1], -1), {}, ValueError, "max_new_tokens"),
        (([0, 1], 2.0), {}, TypeError, "max_new_tokens"),
        (([0, 1], 5), {"temperature": 0}, ValueError, "temperature"),
        (([0, 1], 5), {"top_k": V + 1}, ValueError, "top_k"),
        (([0, 1], 5), {"top_p": 0.0}, ValueError, "top_p"),
        (([0, 1], 5), {"seed": "a"}, TypeError, "seed"),
        (([0, 1], 5), {"num_beams": 0}, ValueError, "num_beams"),
        (([0, 1], 5), {"num_beams": 2, "top_k": 3}, ValueError, "beam search"),
        (([0, 1], 5), {"no_repeat_ngram_size": -1}, ValueError, "no_repeat_ngram_size"),
        (([0, 1], 5), {"use_cache": "yes"}, TypeError, "use_cache"),
    ],
)
def test_generate_bad_inputs(make, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        make().generate(*args, **kwargs)


def test_str_prompt_needs_a_tokenizer(make):
    with pytest.raises(TypeError, match="tokenizer"):
        make(tokenizer=None).generate("to be", 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"vocab_size": 0}, ValueError, "vocab_size"),
        ({"vocab_size": 14.0}, TypeError, "vocab_size"),
        ({"num_layers": 0}, ValueError, "num_layers"),
        ({"num_layers": 2.0}, TypeError, "num_layers"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"vocab_size": V + 1}, ValueError, "must match"),
        ({"tokenizer": "abc"}, TypeError, "tokenizer"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_constructor_bad_arguments(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


# ------------------------------------------------------------------------- training steps


def test_dropout_only_in_training_and_fresh_each_call(make):
    model = make(dropout=0.5)
    ids = lm_ids((2, 8))
    infer = np.asarray(model(ids))
    np.testing.assert_array_equal(infer, np.asarray(model(ids, training=False)))
    train1, train2 = np.asarray(model(ids, training=True)), np.asarray(model(ids, training=True))
    assert not np.allclose(train1, infer) and not np.allclose(train1, train2)
    no_dropout = make(dropout=0.0)
    np.testing.assert_array_equal(np.asarray(no_dropout(ids, training=True)), np.asarray(no_dropout(ids)))


def test_xla_fit_step_matches_graph_step(make):
    x, y = lm_ids((4, 8), 5), lm_ids((4, 8), 6)
    ref, xla = make(), make()
    ref(x)
    xla(x)
    xla.set_weights(ref.get_weights())
    initial = [w.numpy() for w in ref.trainable_weights]
    loss_ref = compile_lm(ref, keras.optimizers.SGD(0.5), jit_compile=False).train_on_batch(x, y)
    loss_xla = compile_lm(xla, keras.optimizers.SGD(0.5), jit_compile=True).train_on_batch(x, y)
    assert np.isfinite(loss_xla) and loss_xla == pytest.approx(loss_ref, rel=1e-5)
    for a, b in zip(ref.trainable_weights, xla.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert all(not np.allclose(a, b.numpy()) for a, b in zip(initial, ref.trainable_weights))  # every weight moved


def test_mixed_precision(make, kind):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = compile_lm(make(), keras.optimizers.Adam(1e-2))
        x, y = lm_ids((4, 8), 7), lm_ids((4, 8), 8)
        logits = model(x)
        assert logits.dtype == "float32"
        layer = model.rnns[0] if kind == "rnn" else model.blocks[0].attn
        assert layer.compute_dtype == "float16" and layer.variable_dtype == "float32"
        assert all(w.dtype == "float32" for w in model.trainable_weights)
        assert np.isfinite(model.train_on_batch(x, y))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        if kind == "gpt":
            assert model(x, return_attention_scores=True)[1][0].dtype == "float32"
            # Large activations: the float32 softmax stays finite.
            model.token_embedding.embeddings.assign(model.token_embedding.embeddings * 100.0)
            assert np.all(np.isfinite(np.asarray(model(x))))
        # Stepping (RNN state, float16 KV cache) still matches the full pass, to float16 tolerance.
        full = np.asarray(model(x))
        out, state = model.read_prompt(x[:, :3])
        for t in range(3, 8):
            out, state = model.step(x[:, t], state)
        np.testing.assert_allclose(np.asarray(out), full[:, -1], atol=5e-2, rtol=2e-2)
        assert model.generate("to be", 5, seed=0, **FAST[kind]).startswith("to be")
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


# ------------------------------------------------------------------------- other tokenizers


@keras.saving.register_keras_serializable(package="aigc_tf_tests")
class WordTokenizer:
    """A tokenizer that is not character-level: one id per word, words joined by spaces."""

    def __init__(self, words):
        self.words = list(words)

    @property
    def vocab_size(self):
        return len(self.words)

    def encode(self, text):
        return np.array([self.words.index(w) for w in text.split()], np.int32)

    def decode(self, ids):
        ids = np.asarray(ids)
        if ids.ndim == 2:
            return [self.decode(row) for row in ids]
        return " ".join(self.words[i] for i in ids)

    def get_config(self):
        return {"words": self.words}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_a_word_tokenizer_plugs_in(make):
    words = sorted(set(LM_TEXT.split()))
    tok = WordTokenizer(words)
    model = make(vocab_size=len(words), tokenizer=tok)
    text = model.generate("that is", 6, seed=0)
    assert text.startswith("that is ") and len(text.split()) == 8 and set(text.split()) <= set(words)
    revived = type(model).from_config(model.get_config())
    assert isinstance(revived.tokenizer, WordTokenizer) and revived.tokenizer.words == words


def test_ngram_ban_counts_tokens_not_characters(make):
    # With words as tokens, n-grams are word n-grams: no word bigram repeats.
    words = sorted(set(LM_TEXT.split()))
    model = peaked(make(vocab_size=len(words), tokenizer=WordTokenizer(words)))
    tokens = model.generate("that is", 12, top_k=1, no_repeat_ngram_size=2).split()
    bigrams = list(itertools.pairwise(tokens))
    assert len(bigrams) == len(set(bigrams)), tokens
