"""Mini-GPT: attention maths, causality, KV cache, cropping, generation, training, serialization, XLA, distribution."""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from subprocess_utils import run_python

from aigc_tf.rnn import evaluate_loss
from aigc_tf.text import CharTokenizer, make_char_dataset
from aigc_tf.transformer import GPT, CausalSelfAttention, TransformerBlock

REPO = Path(__file__).resolve().parents[1]
TEXT = "to be, or not to be: that is the question. " * 8
TOK = CharTokenizer.from_text(TEXT)
V = TOK.vocab_size
MAX_LEN = 8


def tiny(max_len=MAX_LEN, num_layers=2, num_heads=2, embed_dim=16, dropout=0.0, tokenizer=TOK, seed=0, **kw):
    return GPT(
        V,
        max_len=max_len,
        num_layers=num_layers,
        num_heads=num_heads,
        embed_dim=embed_dim,
        dropout=dropout,
        tokenizer=tokenizer,
        seed=seed,
        **kw,
    )


def random_ids(shape, seed=0, vocab=V):
    return np.random.default_rng(seed).integers(0, vocab, shape).astype("int32")


def sharpen(model, factor=20.0):
    """Scale the token embedding so an untrained model has peaked, input-dependent logits."""
    model(random_ids((1, 2)))
    model.token_embedding.embeddings.assign(model.token_embedding.embeddings * factor)
    return model


def compiled(model, **kw):
    model.compile(
        optimizer=kw.pop("optimizer", keras.optimizers.SGD(0.5)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kw,
    )
    return model


def reference_greedy(model, ids, n):
    """Greedy decoding by full recompute on the last max_len tokens (nanoGPT's loop)."""
    ids = np.array(ids)
    for _ in range(n):
        logits = np.asarray(model(ids[:, -model.max_len :]))[:, -1]
        ids = np.concatenate([ids, logits.argmax(-1).astype("int32")[:, None]], axis=1)
    return ids


# ------------------------------------------------------------------------- attention


def test_attention_matches_keras_multi_head_attention():
    E, H, T = 16, 4, 7
    ours = CausalSelfAttention(E, H, use_bias=True)
    x = np.random.default_rng(0).normal(size=(3, T, E)).astype("float32")
    ours(x)
    rng = np.random.default_rng(1)
    for w in ours.weights:  # non-trivial biases too
        w.assign(rng.normal(scale=0.3, size=w.shape).astype("float32"))
    mha = keras.layers.MultiHeadAttention(num_heads=H, key_dim=E // H)
    mha(x, x, use_causal_mask=True)
    qkv_kernel, qkv_bias = ours.qkv.kernel.numpy(), ours.qkv.bias.numpy()
    q_k, k_k, v_k = np.split(qkv_kernel, 3, axis=1)
    q_b, k_b, v_b = np.split(qkv_bias, 3)
    heads = (H, E // H)
    mha._query_dense.kernel.assign(q_k.reshape((E,) + heads))
    mha._query_dense.bias.assign(q_b.reshape(heads))
    mha._key_dense.kernel.assign(k_k.reshape((E,) + heads))
    mha._key_dense.bias.assign(k_b.reshape(heads))
    mha._value_dense.kernel.assign(v_k.reshape((E,) + heads))
    mha._value_dense.bias.assign(v_b.reshape(heads))
    mha._output_dense.kernel.assign(ours.proj.kernel.numpy().reshape(heads + (E,)))
    mha._output_dense.bias.assign(ours.proj.bias.numpy())

    y, weights = ours(x, return_attention_scores=True)
    y_ref, weights_ref = mha(x, x, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), atol=1e-5)
    np.testing.assert_allclose(np.asarray(weights), np.asarray(weights_ref), atol=1e-6)
    w = np.asarray(weights)
    assert w.shape == (3, H, T, T)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)  # each query's weights are a distribution
    assert np.all(np.triu(w, k=1) == 0.0)  # and exactly zero on future keys


def test_attention_is_scaled_dot_product_softmax():
    # Single head, identity projections: y = softmax(mask(x xᵀ / √d)) x, computed in NumPy.
    E, T = 4, 5
    layer = CausalSelfAttention(E, 1, use_bias=False)
    x = np.random.default_rng(2).normal(size=(1, T, E)).astype("float32")
    layer(x)
    layer.qkv.kernel.assign(np.concatenate([np.eye(E)] * 3, axis=1).astype("float32"))
    layer.proj.kernel.assign(np.eye(E, dtype="float32"))
    scores = x[0] @ x[0].T / math.sqrt(E)
    scores[np.triu_indices(T, 1)] = -np.inf
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(layer(x))[0], weights @ x[0], atol=1e-5)


def test_attention_dropout_only_in_training():
    layer = CausalSelfAttention(16, 2, dropout=0.5, seed=3)
    x = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")
    infer = np.asarray(layer(x))
    np.testing.assert_array_equal(infer, np.asarray(layer(x, training=False)))
    assert not np.allclose(np.asarray(layer(x, training=True)), infer)


def test_layer_configs_round_trip():
    for layer in (
        CausalSelfAttention(16, 4, dropout=0.1, use_bias=False, seed=2),
        TransformerBlock(16, 4, dropout=0.1, mlp_ratio=2, output_init_std=0.01, seed=1),
    ):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert revived.get_config() == config


# ------------------------------------------------------------------------- the model


@pytest.mark.parametrize("tie_weights, use_bias", [(True, True), (False, False)])
def test_logits_shape_dtype_and_parameter_count(tie_weights, use_bias):
    E, L = 16, 2
    model = tiny(num_layers=L, embed_dim=E, tie_weights=tie_weights, use_bias=use_bias)
    logits = model(random_ids((3, 5)))
    assert tuple(logits.shape) == (3, 5, V) and logits.dtype == "float32"
    per_block = 12 * E * E + (9 * E + 4 * E if use_bias else 2 * E)  # weights; biases + 2 LayerNorms
    expected = V * E + MAX_LEN * E + L * per_block + (2 * E if use_bias else E) + (0 if tie_weights else E * V)
    assert model.count_params() == expected


def test_causal_leakage():
    # Dropout > 0 must not matter in inference either.
    model = sharpen(tiny(dropout=0.3))
    ids = random_ids((2, MAX_LEN), seed=1)
    base = np.asarray(model(ids))
    for t in range(MAX_LEN):
        changed = ids.copy()
        changed[:, t] = (changed[:, t] + 1) % V
        logits, weights = model(changed, return_attention_scores=True)
        logits = np.asarray(logits)
        np.testing.assert_allclose(logits[:, :t], base[:, :t], atol=1e-6)  # the past cannot see the change
        assert not np.allclose(logits[:, t:], base[:, t:], atol=1e-4)  # but the present does
        for w in weights:
            assert np.all(np.triu(np.asarray(w), k=1) == 0.0)


def test_random_token_loss_stays_near_log_v():
    # On i.i.d. uniform tokens nothing is predictable: a correct model stays at
    # log V on fresh tokens. A missing mask or an unshifted target lets it copy the answer.
    vocab = 16
    keras.utils.set_random_seed(0)
    train, fresh = (
        random_ids((512, MAX_LEN + 1), seed=3, vocab=vocab),
        random_ids((256, MAX_LEN + 1), seed=4, vocab=vocab),
    )

    def fit_and_score(shift):
        model = compiled(GPT(vocab, MAX_LEN, 2, 2, 32, seed=0), optimizer=keras.optimizers.Adam(3e-3))
        targets = train[:, 1:] if shift else train[:, :-1]
        model.fit(train[:, :-1], targets, batch_size=32, epochs=4, verbose=0)
        return model.evaluate(fresh[:, :-1], fresh[:, 1:] if shift else fresh[:, :-1], verbose=0)

    assert fit_and_score(shift=True) >= 0.95 * math.log(vocab)
    # Control: the same model learns the unshifted "target = input" task at once.
    assert fit_and_score(shift=False) < 0.5 * math.log(vocab)


def test_weight_tying():
    model = tiny(tie_weights=True)
    ids = np.array([[0, 1, 0, 1, 1]], dtype="int32")
    model(ids)
    assert model.head is None
    paths = [w.path for w in model.trainable_weights]
    assert len(paths) == len(set(paths)) and sum("token_embedding" in p for p in paths) == 1
    untied = tiny(tie_weights=False)
    untied(ids)
    assert untied.count_params() == model.count_params() + V * 16
    # Logits are the final hidden states times the embedding matrix (transposed).
    untied.set_weights(model.get_weights() + [model.token_embedding.embeddings.numpy().T])  # head kernel last
    np.testing.assert_allclose(np.asarray(untied(ids)), np.asarray(model(ids)), atol=1e-5)


def test_weight_tying_gradient_has_both_uses():
    model = tiny(tie_weights=True)
    ids = np.array([[0, 1, 0, 1, 1]], dtype="int32")
    targets = np.array([[1, 0, 1, 1, 0]])
    model(ids)
    emb = model.token_embedding.embeddings

    def loss_fn(stop_input_path):
        with tf.GradientTape() as tape:
            x = model.token_embedding(ids)
            if stop_input_path:
                x = tf.stop_gradient(x)
            x = x + model.position_embedding(np.arange(5))[None]
            for block in model.blocks:
                x = block(x)
            logits = model._logits(x)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
        return tf.convert_to_tensor(tape.gradient(loss, emb)).numpy(), float(loss)

    both, loss_both = loss_fn(False)
    output_only, _ = loss_fn(True)
    assert loss_both == pytest.approx(
        float(tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, model(ids), from_logits=True))),
        rel=1e-6,
    )
    np.testing.assert_allclose(both[2:], output_only[2:], atol=1e-7)  # unseen ids: output use only
    assert not np.allclose(both[:2], output_only[:2], atol=1e-6)  # seen ids: input use adds gradient


def test_dropout_only_in_training():
    model = tiny(dropout=0.5)
    ids = random_ids((2, 6))
    infer = np.asarray(model(ids))
    np.testing.assert_array_equal(infer, np.asarray(model(ids, training=False)))
    train1, train2 = np.asarray(model(ids, training=True)), np.asarray(model(ids, training=True))
    assert not np.allclose(train1, infer) and not np.allclose(train1, train2)


# ------------------------------------------------------------------------- KV cache and cropping


def test_kv_cache_equals_full_recompute_also_past_max_len():
    model = sharpen(tiny(dropout=0.2))
    ids = random_ids((2, 3 * MAX_LEN), seed=4)
    for prompt_len in (1, 5):
        logits, state = model.read_prompt(ids[:, :prompt_len])
        np.testing.assert_allclose(np.asarray(logits), np.asarray(model(ids[:, :prompt_len]))[:, -1], atol=1e-5)
        for t in range(prompt_len, ids.shape[1]):
            logits, state = model.step(ids[:, t], state)
            window = ids[:, max(0, t + 1 - MAX_LEN) : t + 1]  # the last max_len tokens
            np.testing.assert_allclose(np.asarray(logits), np.asarray(model(window))[:, -1], atol=1e-5)
            assert int(state["length"][0]) == min(t + 1, MAX_LEN)


def test_greedy_generation_cached_equals_uncached_and_crops():
    model = sharpen(tiny())
    prompt = random_ids((3, 5), seed=5)
    n = 2 * MAX_LEN + 3  # well past the context
    expected = reference_greedy(model, prompt, n)
    np.testing.assert_array_equal(model.generate(prompt, n, top_k=1, jit_compile=False), expected)
    np.testing.assert_array_equal(model.generate(prompt, n, top_k=1, use_cache=False), expected)
    # A prompt longer than the context is cropped to its last max_len tokens.
    long_prompt = random_ids((1, MAX_LEN + 4), seed=6)
    out = model.generate(long_prompt, 4, top_k=1, jit_compile=False)
    np.testing.assert_array_equal(out[:, : MAX_LEN + 4], long_prompt)
    np.testing.assert_array_equal(out, reference_greedy(model, long_prompt, 4))
    # The model itself refuses positions past max_len instead of looking them up.
    with pytest.raises(ValueError, match="max_len"):
        model(random_ids((1, MAX_LEN + 1)))
    assert model.position_embedding.embeddings.shape == (MAX_LEN, 16)


def test_xla_generation_equals_graph_generation():
    model = sharpen(tiny())
    prompt = random_ids((2, 3), seed=7)
    n = MAX_LEN + 4
    np.testing.assert_array_equal(
        model.generate(prompt, n, top_k=1, jit_compile=True), reference_greedy(model, prompt, n)
    )


def test_sampled_generation_same_with_and_without_cache():
    model = tiny()
    prompt = TOK.encode("to be")
    a = model.generate(prompt, 12, seed=3, jit_compile=False)
    np.testing.assert_array_equal(a, model.generate(prompt, 12, seed=3, use_cache=False))
    np.testing.assert_array_equal(a, model.generate(prompt, 12, seed=3, jit_compile=False))
    assert not np.array_equal(a, model.generate(prompt, 12, seed=4, jit_compile=False))
    b, c = model.generate(prompt, 12, jit_compile=False), model.generate(prompt, 12, jit_compile=False)
    assert not np.array_equal(b, c)  # seed=None: the stream moves on


def test_generate_shapes_and_prompt_kept():
    model = tiny()
    prompt = TOK.encode("to be")
    out = model.generate(prompt, 12, seed=1, jit_compile=False)
    assert out.shape == (len(prompt) + 12,) and out.dtype == np.int32
    np.testing.assert_array_equal(out[: len(prompt)], prompt)
    assert out.min() >= 0 and out.max() < V
    batch = np.stack([prompt, TOK.encode("or no")])
    out2 = model.generate(batch, 4, seed=1, top_p=0.9, top_k=5, temperature=0.7, jit_compile=False)
    assert out2.shape == (2, 9)
    np.testing.assert_array_equal(out2[:, :5], batch)
    text = model.generate("that ", 10, seed=1, jit_compile=False)
    assert isinstance(text, str) and len(text) == 15 and text.startswith("that ")
    np.testing.assert_array_equal(model.generate(prompt, 0), prompt)


def sequence_log_prob(model, prompt, continuation):
    ids = np.concatenate([prompt, continuation])[None]
    total = 0.0
    for t in range(len(prompt), ids.shape[1]):
        log_probs = keras.ops.log_softmax(model(ids[:, max(0, t - model.max_len) : t]), axis=-1).numpy()
        total += log_probs[0, -1, ids[0, t]]
    return total


def test_beam_search():
    model = sharpen(tiny(), factor=5.0)
    prompt = TOK.encode("to be")
    n = MAX_LEN + 2
    greedy = model.generate(prompt, n, top_k=1, jit_compile=False)
    np.testing.assert_array_equal(model.beam_search(prompt, n, num_beams=1), greedy)
    np.testing.assert_array_equal(model.beam_search(prompt, n, num_beams=1, use_cache=False), greedy)
    beam = model.generate(prompt, n, num_beams=4)
    np.testing.assert_array_equal(beam, model.beam_search(prompt, n, num_beams=4, use_cache=False))
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
        (([0, 1], 5), {"temperature": 0}, ValueError, "temperature"),
        (([0, 1], 5), {"top_k": V + 1}, ValueError, "top_k"),
        (([0, 1], 5), {"top_p": 0.0}, ValueError, "top_p"),
        (([0, 1], 5), {"seed": "a"}, TypeError, "seed"),
        (([0, 1], 5), {"num_beams": 0}, ValueError, "num_beams"),
        (([0, 1], 5), {"num_beams": 2, "top_k": 3}, ValueError, "beam search"),
    ],
)
def test_generate_bad_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny().generate(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"embed_dim": 10, "num_heads": 4}, "divisible"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"max_len": 0}, "max_len"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"vocab_size": V + 1, "tokenizer": TOK}, "must match"),
    ],
)
def test_constructor_bad_arguments(kwargs, match):
    args = {"vocab_size": V, "max_len": 8, "num_layers": 1, "num_heads": 2, "embed_dim": 16, **kwargs}
    with pytest.raises(ValueError, match=match):
        GPT(**args)


def test_attention_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(10, 3)
    with pytest.raises(TypeError, match="tokenizer"):
        tiny(tokenizer=None).generate("to be", 3)


# ------------------------------------------------------------------------- training


def markov_text(n, seed):
    """Text from a fixed first-order Markov chain over 12 letters: predictable from the previous letter."""
    letters = "abcdefghijkl"
    rng = np.random.default_rng(0)
    transition = rng.dirichlet(np.full(len(letters), 0.2), size=len(letters))
    draw = np.random.default_rng(seed)
    out, state = [], 0
    for _ in range(n):
        state = draw.choice(len(letters), p=transition[state])
        out.append(letters[state])
    return "".join(out)


def test_short_training_beats_the_unigram_baseline():
    keras.utils.set_random_seed(0)
    train_text, val_text = markov_text(12000, seed=1), markov_text(3000, seed=2)
    tok = CharTokenizer.from_text(train_text + val_text)
    train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)
    # Unigram baseline: cross-entropy of the validation text under the training character frequencies.
    freq = np.bincount(train_ids, minlength=tok.vocab_size) + 1.0
    unigram = float(-np.log(freq / freq.sum())[val_ids].mean())
    model = GPT(tok.vocab_size, 32, 2, 2, 32, tokenizer=tok, seed=0)
    model.compile(
        optimizer=keras.optimizers.AdamW(3e-3, weight_decay=0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    val = make_char_dataset(val_ids, 32, 16, shuffle=False, drop_remainder=False)
    before = evaluate_loss(model, val)["loss"]
    assert before == pytest.approx(math.log(tok.vocab_size), abs=0.1)  # untrained ≈ uniform
    model.fit(
        make_char_dataset(train_ids, 32, 16, shuffle=True, seed=0).repeat(),
        steps_per_epoch=150,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    after = evaluate_loss(model, val)["loss"]
    assert after < unigram - 0.2, (after, unigram)


def one_sgd_step_weights(model, x, y, **compile_kw):
    compiled(model, optimizer=keras.optimizers.SGD(0.5), **compile_kw)
    loss = model.train_on_batch(x, y)
    return loss, [w.numpy() for w in model.trainable_weights]


def test_xla_fit_step_matches_graph_step():
    x, y = random_ids((4, MAX_LEN), 5), random_ids((4, MAX_LEN), 6)
    ref, xla = tiny(), tiny()
    ref(x)
    xla(x)
    xla.set_weights(ref.get_weights())
    initial = [w.numpy() for w in ref.trainable_weights]
    loss_ref, w_ref = one_sgd_step_weights(ref, x, y, jit_compile=False)
    loss_xla, w_xla = one_sgd_step_weights(xla, x, y, jit_compile=True)
    assert np.isfinite(loss_xla) and loss_xla == pytest.approx(loss_ref, rel=1e-5)
    for a, b in zip(w_ref, w_xla):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert all(not np.allclose(a, b) for a, b in zip(initial, w_ref))  # the step changed every weight


def test_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = compiled(tiny(), optimizer=keras.optimizers.Adam(1e-2))
        x, y = random_ids((4, MAX_LEN), 7), random_ids((4, MAX_LEN), 8)
        logits, weights = model(x, return_attention_scores=True)
        assert logits.dtype == "float32" and weights[0].dtype == "float32"
        assert model.blocks[0].attn.compute_dtype == "float16"
        assert all(w.dtype == "float32" for w in model.trainable_weights)
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        # Large activations: the float32 softmax stays finite.
        model.token_embedding.embeddings.assign(model.token_embedding.embeddings * 100.0)
        assert np.all(np.isfinite(np.asarray(model(x))))
        # The cache (float16) still matches the full pass.
        full = np.asarray(model(x))
        out, state = model.read_prompt(x[:, :3])
        for t in range(3, MAX_LEN):
            out, state = model.step(x[:, t], state)
        np.testing.assert_allclose(np.asarray(out), full[:, -1], atol=5e-2, rtol=2e-2)
        assert model.generate("to be", 5, seed=0, jit_compile=False).startswith("to be")
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


# ------------------------------------------------------------------------- subprocess tests


def test_save_load_round_trip_in_fresh_process(tmp_path):
    model = compiled(tiny(dropout=0.1, use_bias=False, tie_weights=False), optimizer=keras.optimizers.AdamW(1e-3))
    x, y = random_ids((2, MAX_LEN), 9), random_ids((2, MAX_LEN), 10)
    model.train_on_batch(x, y)
    path = tmp_path / "gpt.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    expected_logits = np.asarray(model(x))
    expected_greedy = model.generate("to be", 10, top_k=1, jit_compile=False)

    out = run_python(f"""
        import json, numpy as np, keras
        import aigc_tf  # registers the classes; nothing from the tests is imported
        model = keras.models.load_model({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "logits.npy")!r}, np.asarray(model(x)))
        config = model.get_config()
        print(json.dumps({{
            "class": type(model).__name__,
            "vocab": model.tokenizer.vocab,
            "config": {{k: config[k] for k in ("max_len", "num_layers", "num_heads", "embed_dim", "dropout",
                                                "use_bias", "tie_weights")}},
            "greedy": model.generate("to be", 10, top_k=1, jit_compile=False),
            "iterations": int(model.optimizer.iterations.numpy()),
        }}))
    """)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["class"] == "GPT"
    assert info["vocab"] == TOK.vocab
    assert info["config"] == {
        "max_len": MAX_LEN,
        "num_layers": 2,
        "num_heads": 2,
        "embed_dim": 16,
        "dropout": 0.1,
        "use_bias": False,
        "tie_weights": False,
    }
    assert info["greedy"] == expected_greedy
    assert info["iterations"] == 1
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected_logits, atol=1e-6)


def test_mirrored_strategy_two_logical_cpus():
    # Logical devices must be configured before TensorFlow runs any op: fresh process.
    out = run_python("""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np
        from aigc_tf.transformer import GPT

        V = 11
        rng = np.random.default_rng(0)
        x = rng.integers(0, V, (8, 6)).astype("int32")
        y = rng.integers(0, V, (8, 6)).astype("int32")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # one global batch, 4 per replica

        def make():
            m = GPT(V, max_len=6, num_layers=2, num_heads=2, embed_dim=16, seed=0)
            m(x[:1])  # build
            return m

        def compile_(m):
            m.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            dist = make()
            compile_(dist)
        single = make()
        initial = dist.get_weights()
        single.set_weights(initial)
        compile_(single)
        h_dist = dist.fit(ds, epochs=1, verbose=0).history["loss"][0]
        h_single = single.fit(ds, epochs=1, verbose=0).history["loss"][0]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(dist.get_weights(), single.get_weights()))
        moved = min(float(np.abs(a - b).max()) for a, b in zip(dist.get_weights(), initial))
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss_dist": h_dist,
                          "loss_single": h_single, "max_weight_diff": diff, "min_weight_change": moved}))
    """)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["replicas"] == 2
    assert info["loss_dist"] == pytest.approx(info["loss_single"], rel=1e-5)
    assert info["max_weight_diff"] < 1e-5
    assert info["min_weight_change"] > 1e-6  # every weight was updated
