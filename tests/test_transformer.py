"""Mini-GPT: the config, attention maths, causality, KV cache, cropping, training.

What the GPT shares with the char-RNN (generation, XLA and mixed-precision steps) is tested in test_lm.py, the
save/load and MirroredStrategy round trips in test_lm_subprocess.py.
"""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LM_MAX_LEN, LM_TEXT, compile_lm, lm_ids

from aigc_tf.metrics import evaluate_loss
from aigc_tf.text import CharTokenizer, make_char_dataset
from aigc_tf.transformer import GPT, CausalSelfAttention, GPTConfig, TransformerBlock

TOK = CharTokenizer.from_text(LM_TEXT)
V = TOK.vocab_size
MAX_LEN = LM_MAX_LEN


def config(**fields):
    return GPTConfig(**{"vocab_size": V, "max_len": MAX_LEN, **fields})


def sharpen(model, factor=20.0):
    """Scale the token embedding so an untrained model has peaked, input-dependent logits."""
    model(lm_ids((1, 2)))
    model.token_embedding.embeddings.assign(model.token_embedding.embeddings * factor)
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
    ours = CausalSelfAttention(config(embed_dim=E, num_heads=H, use_bias=True))
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
    # Keras' weight order: query, key, value (kernel, bias each), then the output projection.
    mha.set_weights(
        [w.reshape((E,) + heads) if w.ndim == 2 else w.reshape(heads) for w in (q_k, q_b, k_k, k_b, v_k, v_b)]
        + [ours.proj.kernel.numpy().reshape(heads + (E,)), ours.proj.bias.numpy()]
    )

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
    layer = CausalSelfAttention(config(embed_dim=E, num_heads=1, use_bias=False))
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
    layer = CausalSelfAttention(config(embed_dim=16, num_heads=2, dropout=0.5), seed=3)
    x = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")
    infer = np.asarray(layer(x))
    np.testing.assert_array_equal(infer, np.asarray(layer(x, training=False)))
    assert not np.allclose(np.asarray(layer(x, training=True)), infer)


def test_layer_configs_round_trip():
    for layer in (
        CausalSelfAttention(config(embed_dim=16, num_heads=4, dropout=0.1, use_bias=False), seed=2),
        TransformerBlock(config(embed_dim=16, num_heads=4, dropout=0.1, mlp_ratio=2, num_layers=3), seed=1),
    ):
        layer_config = layer.get_config()
        clone = type(layer).from_config(layer_config)
        assert clone.get_config() == layer_config and clone.config == layer.config
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert revived.get_config() == layer_config


# ------------------------------------------------------------------------- the config


def test_config_is_validated_once_and_builds_every_layer():
    cfg = config(num_layers=3, num_heads=4, embed_dim=32, dropout=0.1, use_bias=False, tie_weights=False)
    assert cfg.head_dim == 8 and cfg.residual_init_std == pytest.approx(0.02 / math.sqrt(6))
    model = GPT.from_config_object(cfg, tokenizer=TOK, seed=0, name="a")
    assert model.config == cfg and model.max_len == MAX_LEN and model.context_length == MAX_LEN
    assert all(block.config is model.config and block.attn.config is model.config for block in model.blocks)
    # Keyword construction gives the same model: same config, same Keras config.
    same = GPT(**dataclasses.asdict(cfg), tokenizer=TOK, seed=0, name="a")
    assert same.config == cfg and same.get_config() == model.get_config()
    assert GPT.from_config(model.get_config()).config == cfg
    # The residual projections start at the depth-scaled std, the others at 0.02.
    model(np.zeros((1, 4), "int32"))
    block = model.blocks[0]
    assert np.std(block.attn.proj.kernel.numpy()) == pytest.approx(cfg.residual_init_std, rel=0.15)
    assert np.std(block.fc.kernel.numpy()) == pytest.approx(0.02, rel=0.15)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_layers = 4


@pytest.mark.parametrize(
    "fields, error, match",
    [
        ({"embed_dim": 10, "num_heads": 4}, ValueError, "divisible"),
        ({"max_len": 0}, ValueError, "max_len"),
        ({"num_layers": 2.0}, TypeError, "num_layers"),
        ({"mlp_ratio": 0}, ValueError, "mlp_ratio"),
        ({"dropout": "0.1"}, TypeError, "dropout"),
        ({"use_bias": 1}, TypeError, "use_bias"),
    ],
)
def test_config_bad_fields(fields, error, match):
    with pytest.raises(error, match=match):
        config(**fields)
    with pytest.raises(error, match=match):
        GPT(**{"vocab_size": V, "max_len": 8, "num_layers": 1, "num_heads": 2, "embed_dim": 16, **fields})


# ------------------------------------------------------------------------- the model


@pytest.mark.parametrize("tie_weights, use_bias", [(True, True), (False, False)])
def test_logits_shape_dtype_and_parameter_count(tie_weights, use_bias, tiny_gpt):
    E, L = 16, 2
    model = tiny_gpt(num_layers=L, embed_dim=E, tie_weights=tie_weights, use_bias=use_bias)
    logits = model(lm_ids((3, 5)))
    assert tuple(logits.shape) == (3, 5, V) and logits.dtype == "float32"
    per_block = 12 * E * E + (9 * E + 4 * E if use_bias else 2 * E)  # weights; biases + 2 LayerNorms
    expected = V * E + MAX_LEN * E + L * per_block + (2 * E if use_bias else E) + (0 if tie_weights else E * V)
    assert model.count_params() == expected


def test_causal_leakage(tiny_gpt):
    # Dropout > 0 must not matter in inference either.
    model = sharpen(tiny_gpt(dropout=0.3))
    ids = lm_ids((2, MAX_LEN), seed=1)
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
        lm_ids((512, MAX_LEN + 1), seed=3, vocab=vocab),
        lm_ids((256, MAX_LEN + 1), seed=4, vocab=vocab),
    )

    def fit_and_score(shift):
        model = compile_lm(GPT(vocab, MAX_LEN, 2, 2, 32, seed=0), keras.optimizers.Adam(3e-3))
        targets = train[:, 1:] if shift else train[:, :-1]
        model.fit(train[:, :-1], targets, batch_size=32, epochs=4, verbose=0)
        return model.evaluate(fresh[:, :-1], fresh[:, 1:] if shift else fresh[:, :-1], verbose=0)

    assert fit_and_score(shift=True) >= 0.95 * math.log(vocab)
    # Control: the same model learns the unshifted "target = input" task at once.
    assert fit_and_score(shift=False) < 0.5 * math.log(vocab)


def test_weight_tying(tiny_gpt):
    model = tiny_gpt(tie_weights=True)
    ids = np.array([[0, 1, 0, 1, 1]], dtype="int32")
    model(ids)
    assert model.head is None
    paths = [w.path for w in model.trainable_weights]
    assert len(paths) == len(set(paths)) and sum("token_embedding" in p for p in paths) == 1
    untied = tiny_gpt(tie_weights=False)
    untied(ids)
    assert untied.count_params() == model.count_params() + V * 16
    # Logits are the final hidden states times the embedding matrix (transposed).
    untied.set_weights(model.get_weights() + [model.token_embedding.embeddings.numpy().T])  # head kernel last
    np.testing.assert_allclose(np.asarray(untied(ids)), np.asarray(model(ids)), atol=1e-5)


def test_weight_tying_gradient_has_both_uses(tiny_gpt):
    model = tiny_gpt(tie_weights=True)
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
            # tied output layer: logits = LayerNorm(h) W_tokᵀ
            logits = tf.matmul(model.ln_f(x), emb, transpose_b=True)
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


# ------------------------------------------------------------------------- KV cache and cropping


def test_kv_cache_equals_full_recompute_also_past_max_len(tiny_gpt):
    model = sharpen(tiny_gpt(dropout=0.2))
    ids = lm_ids((2, 3 * MAX_LEN), seed=4)
    for prompt_len in (1, 5):
        logits, state = model.read_prompt(ids[:, :prompt_len])
        np.testing.assert_allclose(np.asarray(logits), np.asarray(model(ids[:, :prompt_len]))[:, -1], atol=1e-5)
        for t in range(prompt_len, ids.shape[1]):
            logits, state = model.step(ids[:, t], state)
            window = ids[:, max(0, t + 1 - MAX_LEN) : t + 1]  # the last max_len tokens
            np.testing.assert_allclose(np.asarray(logits), np.asarray(model(window))[:, -1], atol=1e-5)
            assert int(state["length"][0]) == min(t + 1, MAX_LEN)


def test_greedy_generation_cached_equals_uncached_and_crops(tiny_gpt):
    model = sharpen(tiny_gpt())
    prompt = lm_ids((3, 5), seed=5)
    n = 2 * MAX_LEN + 3  # well past the context
    expected = reference_greedy(model, prompt, n)
    np.testing.assert_array_equal(model.generate(prompt, n, top_k=1, jit_compile=False), expected)
    np.testing.assert_array_equal(model.generate(prompt, n, top_k=1, use_cache=False), expected)
    # A prompt longer than the context is cropped to its last max_len tokens.
    long_prompt = lm_ids((1, MAX_LEN + 4), seed=6)
    out = model.generate(long_prompt, 4, top_k=1, jit_compile=False)
    np.testing.assert_array_equal(out[:, : MAX_LEN + 4], long_prompt)
    np.testing.assert_array_equal(out, reference_greedy(model, long_prompt, 4))
    # The model itself refuses positions past max_len instead of looking them up.
    with pytest.raises(ValueError, match="max_len"):
        model(lm_ids((1, MAX_LEN + 1)))
    assert model.position_embedding.embeddings.shape == (MAX_LEN, 16)


def test_xla_generation_equals_graph_generation(tiny_gpt):
    model = sharpen(tiny_gpt())
    prompt = lm_ids((2, 3), seed=7)
    n = MAX_LEN + 4
    np.testing.assert_array_equal(
        model.generate(prompt, n, top_k=1, jit_compile=True), reference_greedy(model, prompt, n)
    )


def test_attention_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(config(embed_dim=10, num_heads=3))
    with pytest.raises(TypeError, match="GPTConfig"):
        CausalSelfAttention(16)
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT.from_config_object({"embed_dim": 16})


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
