"""Numerical checks of the formulas shown in notebook 04 (Transformer text generation).

Each test names the formula it checks. Also checked elsewhere:
``softmax(QKᵀ/√d + M) V`` in test_transformer.py::test_attention_is_scaled_dot_product_softmax,
the causal mask M in test_transformer.py::test_causal_leakage and
::test_attention_matches_keras_multi_head_attention, the tied logits ``z = h W_tokᵀ`` in
::test_weight_tying, temperature / top-k / top-p in test_sampling.py and test_ch03_formulas.py,
bits and perplexity in test_ch03_formulas.py.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from aigc_tf.transformer import GPT, CausalSelfAttention, GPTConfig, TransformerBlock


def layer_norm(x, gamma, beta=None, eps=1e-5):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * gamma
    return y if beta is None else y + beta


def gelu(x):  # exact GELU, x Φ(x)
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def identity_attention(E):
    """One head, identity projections (Q = K = V = X), no biases: the layer is the bare formula."""
    layer = CausalSelfAttention(GPTConfig(embed_dim=E, num_heads=1, use_bias=False))
    layer.build((None, None, E))
    layer.qkv.kernel.assign(np.concatenate([np.eye(E)] * 3, axis=1).astype("float32"))
    layer.proj.kernel.assign(np.eye(E, dtype="float32"))
    return layer


def test_soft_lookup_is_a_weighted_mean_of_the_values():
    # a_ij = softmax_j(q_i · k_j / √d) >= 0, sum_j a_ij = 1, answer_i = sum_j a_ij v_j:
    # every output of the layer is a weighted mean of the values it may see.
    x = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.2, 2.0]]], "float32")  # the last row queries
    y, weights = identity_attention(2)(x, return_attention_scores=True)
    y, a = y.numpy()[0], weights.numpy()[0, 0]
    assert np.all(a >= 0) and np.allclose(a.sum(-1), 1.0)
    np.testing.assert_allclose(y, a @ x[0], atol=1e-6)
    assert a[3, :3].argmax() == 1  # of the earlier keys, the best-matching one gets the largest weight
    assert np.all(y.min(0) >= x[0].min(0) - 1e-6) and np.all(y.max(0) <= x[0].max(0) + 1e-6)


@pytest.mark.parametrize("d", [4, 64, 256])
def test_the_layer_scales_scores_so_their_variance_stays_one(d):
    # q, k with i.i.d. N(0, 1) entries: Var(q·k) = d, Var(q·k / √d) = 1 (for a query of the typical
    # norm √d). The attention weights of the last query give the scaled scores back up to a constant:
    # log a_j = s_j - logsumexp(s). Without the 1/√d the spread would be d (4, 64, 256).
    T = 2001
    x = np.random.default_rng(d).normal(size=(1, T, d)).astype("float32")
    x[0, -1] *= math.sqrt(d) / np.linalg.norm(x[0, -1])  # the query, at norm √d
    _, weights = identity_attention(d)(x, return_attention_scores=True)
    log_a = np.log(weights.numpy()[0, 0, -1, :-1].astype(np.float64))  # keys j != i (q_i · k_i ≈ d)
    assert log_a.var() == pytest.approx(1.0, rel=0.1)


def test_pre_layer_norm_block_equations():
    # x ← x + Attention(LN1(x));  x ← x + W2 GELU(W1 LN2(x))
    E, T = 8, 5
    keras.utils.set_random_seed(0)
    block = TransformerBlock(GPTConfig(embed_dim=E, num_heads=2, use_bias=True))
    x = np.random.default_rng(1).normal(size=(2, T, E)).astype("float32")
    block(x)
    rng = np.random.default_rng(2)
    for w in block.weights:  # non-trivial LayerNorm scales and biases as well
        w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32") + (1.0 if "gamma" in w.path else 0.0))
    after_attention = x + block.attn(block.ln1(x)).numpy()
    np.testing.assert_allclose(
        block.ln1(x).numpy(), layer_norm(x, block.ln1.gamma.numpy(), block.ln1.beta.numpy()), atol=1e-5
    )
    h = layer_norm(after_attention, block.ln2.gamma.numpy(), block.ln2.beta.numpy())
    mlp = (
        gelu(h @ block.fc.kernel.numpy() + block.fc.bias.numpy()) @ block.fc_proj.kernel.numpy()
        + block.fc_proj.bias.numpy()
    )
    np.testing.assert_allclose(block(x).numpy(), after_attention + mlp, atol=1e-4)


def test_gpt_pipeline_embeddings_blocks_tied_logits():
    # x_t = tok[c_t] + pos[t];  blocks;  z_t = LN(h_t) W_tokᵀ
    model = GPT(11, max_len=6, num_layers=1, num_heads=2, embed_dim=8, use_bias=False, seed=0)
    ids = np.array([[3, 1, 4, 1, 5]], dtype="int32")
    model(ids)
    tok = model.token_embedding.embeddings.numpy()
    pos = model.position_embedding.embeddings.numpy()
    x = tok[ids[0]] + pos[: ids.shape[1]]
    h = model.blocks[0](x[None]).numpy()[0]
    z = layer_norm(h, model.ln_f.gamma.numpy()) @ tok.T
    np.testing.assert_allclose(model(ids).numpy()[0], z, atol=1e-5)


@pytest.mark.parametrize(
    "V, S, L, E, expected",
    [
        (65, 64, 4, 128, 804_096),  # nanoGPT's CPU configuration (cpu profile)
        (65, 32, 2, 32, 27_840),  # smoke profile
        (65, 256, 6, 384, None),  # baby GPT (gpu profile)
    ],
)
def test_parameter_count_formula(V, S, L, E, expected):
    # N = V E + S E + L (12 E² + 2 E) + E   (no biases, tied output layer)
    model = GPT(
        V, max_len=S, num_layers=L, num_heads=4 if E % 4 == 0 else 2, embed_dim=E, use_bias=False, tie_weights=True
    )
    model(np.zeros((1, 2), "int32"))
    formula = V * E + S * E + L * (12 * E * E + 2 * E) + E
    assert model.count_params() == formula
    if expected is not None:
        assert formula == expected


def count_positions(model):
    """A list that records how many positions every forward pass of ``model`` reads."""
    counted, embed = [], model.token_embedding.call
    model.token_embedding.call = lambda ids, *a, **k: (counted.append(int(ids.shape[1])), embed(ids, *a, **k))[1]
    return counted


def test_kv_cache_position_counts():
    # no cache: sum_{i<N} min(P + i, S) positions;  cache: one padded prompt pass of S positions,
    # then one position per new token: S + N - 1 positions (P + N <= S).
    S, P, N = 16, 5, 9
    prompt = np.arange(P, dtype="int32") % 11
    model = GPT(11, max_len=S, num_layers=1, num_heads=2, embed_dim=8, seed=0)
    S2 = 8
    model2 = GPT(11, max_len=S2, num_layers=1, num_heads=2, embed_dim=8, seed=0)
    counted, seen = count_positions(model), count_positions(model2)
    tf.config.run_functions_eagerly(True)  # the compiled decoding loops run as Python: every pass is seen
    try:
        model.generate(prompt, N, top_k=1)
        model2.generate(prompt, N, top_k=1, use_cache=False)
    finally:
        tf.config.run_functions_eagerly(False)
    assert sum(counted) == S + N - 1 and counted == [S] + [1] * (N - 1)
    # Without a cache every step re-runs the last min(P + i, S) tokens.
    assert seen == [min(P + i, S2) for i in range(N)]
