"""Samplers: hand-computed filters, frequency (chi-square) tests, the sampling loop (eager, graph, XLA),
the n-gram ban and beam search against brute force, KerasHub parity."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy import stats

from aigc_tf.sampling import (
    NoRepeatNGram,
    beam_search,
    sample,
    sample_loop,
    sample_next,
    top_k_filter,
    top_p_filter,
)

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = np.log(PROBS).astype("float32")


def kept(filtered) -> list[int]:
    return np.flatnonzero(np.isfinite(np.asarray(filtered))).tolist()


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def draw(logits_row, n, **kwargs):
    """n independent draws: one row per draw, all rows equal."""
    ids = sample(np.tile(np.asarray(logits_row, "float32"), (n, 1)), **kwargs)
    return np.asarray(ids)


def assert_frequencies_match(ids, probs, min_p_value=1e-3):
    """Support inside probs > 0 and a chi-square goodness-of-fit test on the rest."""
    probs = np.asarray(probs, dtype=np.float64)
    counts = np.bincount(ids, minlength=len(probs))
    assert counts[probs == 0].sum() == 0, f"sampled tokens outside the support: {counts}"
    support = probs > 0
    if support.sum() > 1:
        expected = probs[support] / probs[support].sum() * len(ids)
        p_value = stats.chisquare(counts[support], expected).pvalue
        assert p_value > min_p_value, f"counts {counts} vs expected {expected} (p={p_value:.2g})"


# --- top-k -------------------------------------------------------------------------------


def test_top_k_hand_computed():
    out = np.asarray(top_k_filter([1.0, 3.0, 2.0, 0.0], 2))
    np.testing.assert_array_equal(out, [-np.inf, 3.0, 2.0, -np.inf])
    batch = np.asarray(top_k_filter([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]], 1))
    np.testing.assert_array_equal(batch, [[-np.inf, 3.0, -np.inf], [5.0, -np.inf, -np.inf]])
    np.testing.assert_array_equal(np.asarray(top_k_filter(LOGITS, 4)), LOGITS)  # k = V keeps all


def test_top_k_support_is_the_k_largest():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 30)).astype("float32")
    for k in (1, 5, 30):
        out = np.asarray(top_k_filter(logits, k))
        for row, filtered in zip(logits, out):
            assert kept(filtered) == sorted(np.argsort(-row)[:k].tolist())
            np.testing.assert_array_equal(filtered[np.isfinite(filtered)], row[np.isfinite(filtered)])


# --- top-p -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, expected",
    [
        (1e-6, [0]),
        (0.45, [0]),
        (0.6, [0, 1]),
        (0.7, [0, 1]),
        (0.9, [0, 1, 2]),
        (0.96, [0, 1, 2, 3]),
        (1.0, [0, 1, 2, 3]),
    ],
)
def test_top_p_hand_computed(p, expected):
    # probabilities .5 .3 .15 .05: the set must reach p, including the token that crosses it.
    assert kept(top_p_filter(LOGITS, p)) == expected
    # Order of the vocabulary does not matter.
    perm = np.array([2, 0, 3, 1])
    assert sorted(np.flatnonzero(np.isin(perm, expected)).tolist()) == kept(top_p_filter(LOGITS[perm], p))


def reference_top_p(row, p):
    """Independent NumPy nucleus: smallest prefix of the sorted probabilities with mass >= p."""
    probs = softmax(row.astype(np.float64))
    order = np.argsort(-probs)
    cumulative = np.cumsum(probs[order])
    n_keep = int(np.searchsorted(cumulative, p) + 1)  # first index where cumsum >= p, inclusive
    return sorted(order[: min(n_keep, len(row))].tolist())


def test_top_p_matches_numpy_reference():
    rng = np.random.default_rng(1)
    logits = (2.0 * rng.normal(size=(64, 20))).astype("float32")
    for p in (0.1, 0.5, 0.8, 0.95):
        out = np.asarray(top_p_filter(logits, p))
        for row, filtered in zip(logits, out):
            assert kept(filtered) == reference_top_p(row, p)
            # smallest such set: its mass reaches p, and dropping the last kept token would not
            probs = softmax(row.astype(np.float64))
            mass = np.sort(probs[kept(filtered)])
            assert mass.sum() >= p - 1e-6 and mass[1:].sum() < p


def test_top_p_after_top_k_renormalises():
    # Top-2 leaves .5/.3 -> renormalised .625/.375; p = .6 then keeps only token 0.
    assert kept(top_p_filter(top_k_filter(LOGITS, 2), 0.6)) == [0]
    assert kept(top_p_filter(top_k_filter(LOGITS, 2), 0.7)) == [0, 1]


# --- sample -----------------------------------------------------------------------------------


def test_greedy_is_argmax_and_shapes():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(32, 50)).astype("float32")
    ids = np.asarray(sample(logits, top_k=1))
    assert ids.dtype == np.int32 and ids.shape == (32,)
    np.testing.assert_array_equal(ids, logits.argmax(-1))
    # Temperature -> 0 approaches greedy decoding.
    np.testing.assert_array_equal(np.asarray(sample(logits, temperature=1e-4, seed=0)), logits.argmax(-1))
    single = sample(logits[0], top_k=1)
    assert tuple(single.shape) == () and int(single) == logits[0].argmax()


def test_frequencies_match_softmax_with_temperature():
    n = 20_000
    for temperature in (1.0, 0.5, 2.0):
        ids = draw(LOGITS, n, temperature=temperature, seed=11)
        assert_frequencies_match(ids, softmax(LOGITS / temperature))
    # The test has power: T = 0.5 draws do not match the untempered distribution ...
    ids = draw(LOGITS, n, temperature=0.5, seed=11)
    counts = np.bincount(ids, minlength=4)
    assert stats.chisquare(counts, PROBS * n).pvalue < 1e-6


def test_frequencies_with_top_k_and_top_p():
    n = 20_000
    ids = draw(LOGITS, n, top_k=3, seed=5)
    assert_frequencies_match(ids, np.array([0.5, 0.3, 0.15, 0.0]))
    ids = draw(LOGITS, n, top_p=0.7, seed=6)
    assert_frequencies_match(ids, np.array([0.5, 0.3, 0.0, 0.0]))
    # temperature first, then the filters: T = 2 flattens to a distribution whose 0.7-nucleus is 3 tokens
    tempered = softmax(LOGITS / 2.0)
    assert kept(top_p_filter(LOGITS / 2.0, 0.7)) == [0, 1, 2]
    ids = draw(LOGITS, n, temperature=2.0, top_p=0.7, seed=7)
    assert_frequencies_match(ids, np.where(np.arange(4) < 3, tempered, 0.0))


def test_seeds():
    logits = np.tile(LOGITS, (200, 1))
    a = np.asarray(sample(logits, seed=3))
    np.testing.assert_array_equal(a, np.asarray(sample(logits, seed=3)))  # int seed: same draw
    gen1, gen2 = keras.random.SeedGenerator(7), keras.random.SeedGenerator(7)
    s1 = [np.asarray(sample(logits, seed=gen1)) for _ in range(2)]
    s2 = [np.asarray(sample(logits, seed=gen2)) for _ in range(2)]
    np.testing.assert_array_equal(s1[0], s2[0])
    np.testing.assert_array_equal(s1[1], s2[1])
    assert not np.array_equal(s1[0], s1[1])  # a generator moves on


def test_sample_next_is_an_alias_of_sample():
    assert sample_next is sample


def test_sample_inside_tf_function_with_tensor_arguments():
    # Tensors for temperature / top_p (no retrace per value) give the same draws as Python numbers.
    logits = np.tile(LOGITS, (500, 1))
    compiled = tf.function(lambda lg, t, p: sample(lg, temperature=t, top_p=p, top_k=3, seed=8))
    eager = np.asarray(sample(logits, temperature=1.5, top_p=0.9, top_k=3, seed=8))
    np.testing.assert_array_equal(np.asarray(compiled(logits, tf.constant(1.5), tf.constant(0.9))), eager)
    greedy = tf.function(lambda lg: sample(lg, top_k=1), jit_compile=True)
    np.testing.assert_array_equal(np.asarray(greedy(logits)), np.zeros(500))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(temperature=-1.0), ValueError, "temperature"),
        (dict(temperature=float("nan")), ValueError, "temperature"),
        (dict(temperature="hot"), TypeError, "temperature"),
        (dict(top_k=0), ValueError, "top_k"),
        (dict(top_k=5), ValueError, "vocabulary size 4"),
        (dict(top_k=2.0), TypeError, "top_k"),
        (dict(top_k=True), TypeError, "top_k"),
        (dict(top_p=0.0), ValueError, "top_p"),
        (dict(top_p="all"), TypeError, "top_p"),
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(top_p=-0.1), ValueError, "top_p"),
    ],
)
def test_bad_sampling_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample(LOGITS, **kwargs)


def test_bad_logits():
    for bad in (np.float32(1.0), np.zeros((2, 3, 4), "float32")):
        with pytest.raises(ValueError, match="shape"):
            sample(bad)
        with pytest.raises(ValueError, match="shape"):
            top_k_filter(bad, 1)
        with pytest.raises(ValueError, match="shape"):
            top_p_filter(bad, 0.5)
    with pytest.raises(TypeError, match="floating"):
        sample(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(LOGITS, 0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(LOGITS, 0)


# --- beam search -----------------------------------------------------------------------------

V = 3
# Second-order Markov chain: log p(next | previous two tokens); rows differ so order matters.
TABLE = np.log(np.random.default_rng(3).dirichlet(np.ones(V) * 0.7, size=(V, V))).astype("float32")


def markov_step(token, history):
    """step_fn whose state is the whole history (N, t): exercises the state reordering."""
    history = keras.ops.concatenate([history, keras.ops.cast(token[:, None], history.dtype)], axis=1)
    h = np.asarray(history)
    return TABLE[h[:, -2], h[:, -1]], history


def sequence_log_prob(prompt, continuation):
    seq = list(prompt) + list(continuation)
    return sum(TABLE[seq[t - 2], seq[t - 1], seq[t]] for t in range(len(prompt), len(seq)))


def test_beam_search_exhaustive_equals_brute_force():
    prompts = np.array([[0, 1], [2, 2]], dtype="int32")
    steps = 3
    initial_logits = TABLE[prompts[:, -2], prompts[:, -1]]
    seqs, scores = beam_search(markov_step, initial_logits, prompts, steps, num_beams=V**steps)
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    assert seqs.shape == (2, V**steps, steps) and scores.shape == (2, V**steps)
    for b, prompt in enumerate(prompts):
        brute = sorted(
            ((sequence_log_prob(prompt, c), c) for c in itertools.product(range(V), repeat=steps)), reverse=True
        )
        # every continuation exactly once, scores = exact log-probabilities, best first
        assert sorted(map(tuple, seqs[b].tolist())) == sorted(c for _, c in brute)
        for seq, score in zip(seqs[b], scores[b]):
            assert score == pytest.approx(sequence_log_prob(prompt, seq), abs=1e-4)
        np.testing.assert_allclose(scores[b], [s for s, _ in brute], atol=1e-4)
        assert np.all(np.diff(scores[b]) <= 1e-6)


def test_beam_search_one_beam_is_greedy_and_more_beams_never_worse():
    prompts = np.array([[1, 0], [0, 2], [2, 1]], dtype="int32")
    steps = 6
    initial_logits = TABLE[prompts[:, -2], prompts[:, -1]]
    greedy, greedy_scores = beam_search(markov_step, initial_logits, prompts, steps, num_beams=1)
    for b, prompt in enumerate(prompts):
        seq = list(prompt)
        for _ in range(steps):
            seq.append(int(np.argmax(TABLE[seq[-2], seq[-1]])))
        assert np.asarray(greedy)[b, 0].tolist() == seq[2:]
    _, wide_scores = beam_search(markov_step, initial_logits, prompts, steps, num_beams=4)
    assert np.all(np.asarray(wide_scores)[:, 0] >= np.asarray(greedy_scores)[:, 0] - 1e-5)


def test_beam_search_finds_what_greedy_misses():
    # From token 0: greedy takes 1 (p=.6) but every continuation of 1 is flat (1/3),
    # while 2 (p=.4) is followed by a certain token: .4 * ~1 > .6 * 1/3.
    table = np.log(np.array([[0.0, 0.6, 0.4], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]]) + 1e-9).astype("float32")

    def step(token, state):
        return table[np.asarray(token)], state

    init = table[[0]]
    greedy, _ = beam_search(step, init, None, 2, num_beams=1)
    best, _ = beam_search(step, init, None, 2, num_beams=2)
    assert np.asarray(greedy)[0, 0].tolist()[0] == 1
    assert np.asarray(best)[0, 0].tolist() == [2, 2]


def test_beam_search_bad_arguments():
    init = TABLE[[0], [0]]
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(markov_step, init, np.zeros((1, 2), "int32"), 2, num_beams=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        beam_search(markov_step, init, np.zeros((1, 2), "int32"), 0)
    with pytest.raises(ValueError, match="batch, vocab"):
        beam_search(markov_step, init[0], np.zeros((1, 2), "int32"), 2)


# --- the sampling loop --------------------------------------------------------------------------

# A first-order chain (state None) and a second-order one (state: the previous token), both traceable.
TABLE1 = np.log(np.random.default_rng(5).dirichlet(np.ones(5) * 0.5, size=5)).astype("float32")


def chain1_step(token, state):
    return ops.take(TABLE1, token, axis=0), state


def chain2_step(token, previous):
    return ops.take(ops.reshape(TABLE, (V * V, V)), previous * V + token, axis=0), token


def chain2_start(prompts):
    return TABLE[prompts[:, -2], prompts[:, -1]], prompts[:, -1]


def buffer(prompts, n):
    return np.pad(prompts, [(0, 0), (0, n)])


def run_chain2(prompts, n, *, compile=None, **kwargs):
    """sample_loop on the second-order chain: eagerly, or inside tf.function (compile='graph' or 'xla')."""
    logits, state = chain2_start(prompts)

    def loop(logits, state, tokens):
        return sample_loop(chain2_step, logits, state, tokens, prompts.shape[1], n, **kwargs)

    if compile is not None:
        loop = tf.function(loop, jit_compile=compile == "xla")
    return np.asarray(loop(logits, state, buffer(prompts, n)))


def test_sample_loop_eager_and_compiled_give_the_same_ids():
    prompts = np.random.default_rng(0).integers(0, V, (64, 2)).astype("int32")
    kwargs = dict(temperature=0.8, top_p=0.95, logits_processors=[NoRepeatNGram(3)])
    eager = run_chain2(prompts, 9, seed=keras.random.SeedGenerator(5), **kwargs)
    graph = run_chain2(prompts, 9, compile="graph", seed=keras.random.SeedGenerator(5), **kwargs)
    np.testing.assert_array_equal(eager, graph)
    np.testing.assert_array_equal(eager[:, :2], prompts)
    assert len({tuple(row) for row in eager[:, 2:]}) > 10  # really sampled: the rows differ
    # An int seed (eagerly) is a fresh generator with that seed.
    np.testing.assert_array_equal(run_chain2(prompts, 9, seed=5, **kwargs), eager)
    # XLA draws other random numbers for the same seed; greedy decoding agrees everywhere.
    greedy = [run_chain2(prompts, 9, compile=c, top_k=1) for c in (None, "graph", "xla")]
    np.testing.assert_array_equal(greedy[0], greedy[1])
    np.testing.assert_array_equal(greedy[0], greedy[2])
    xla = run_chain2(prompts, 9, compile="xla", seed=keras.random.SeedGenerator(5), **kwargs)
    assert xla.min() >= 0 and xla.max() < V
    with pytest.raises(TypeError, match="SeedGenerator"):
        run_chain2(prompts, 3, compile="graph", seed=5)


def test_sample_loop_greedy_is_the_argmax_chain_and_steps_once_per_new_token():
    prompts = np.array([[0, 1], [2, 2], [1, 0]], "int32")
    calls = []

    def counting_step(token, previous):
        calls.append(1)
        return chain2_step(token, previous)

    out = np.asarray(sample_loop(counting_step, *chain2_start(prompts), buffer(prompts, 6), 2, 6, top_k=1))
    assert len(calls) == 5  # the last token needs no step
    for row, prompt in zip(out, prompts):
        seq = list(prompt)
        for _ in range(6):
            seq.append(int(np.argmax(TABLE[seq[-2], seq[-1]])))
        assert row.tolist() == seq


def test_sample_loop_samples_the_chain():
    # Pairs of tokens drawn by the loop follow p(a | prompt) p(b | prompt[-1], a) at temperature 0.5.
    n = 6000
    prompts = np.tile(np.array([[1, 2]], "int32"), (n, 1))
    out = run_chain2(prompts, 2, temperature=0.5, seed=keras.random.SeedGenerator(2))
    p1 = softmax(TABLE[1, 2].astype(np.float64) / 0.5)
    expected = np.array([p1[a] * softmax(TABLE[2, a].astype(np.float64) / 0.5)[b] for a in range(V) for b in range(V)])
    counts = np.bincount(out[:, 2] * V + out[:, 3], minlength=V * V)
    keep = expected * n >= 5  # chi-square needs expected counts >= 5; pool the rest
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum()) * n
    assert stats.chisquare(obs[exp > 0], exp[exp > 0]).pvalue > 1e-3, (counts, expected * n)


def test_sample_loop_bad_arguments():
    prompts = np.array([[0, 1]], "int32")
    logits, state = chain2_start(prompts)
    with pytest.raises(ValueError, match="num_tokens"):
        sample_loop(chain2_step, logits, state, buffer(prompts, 2), 2, 0)
    with pytest.raises(ValueError, match="do not fit"):
        sample_loop(chain2_step, logits, state, buffer(prompts, 2), 2, 3)
    with pytest.raises(ValueError, match="batch, vocab"):
        sample_loop(chain2_step, logits[0], state, buffer(prompts, 2), 2, 2)
    with pytest.raises(ValueError, match="top_k"):
        sample_loop(chain2_step, logits, state, buffer(prompts, 2), 2, 2, top_k=V + 1)


# --- the n-gram ban ----------------------------------------------------------------------------


def banned_by_brute_force(history, n, vocab):
    """Tokens that would complete an n-gram already in ``history`` (none if that bans every token)."""
    history = list(history)
    suffix = history[len(history) - n + 1 :]
    banned = {history[j + n - 1] for j in range(len(history) - n + 1) if history[j : j + n - 1] == suffix}
    return set() if len(banned) == vocab else banned


@pytest.mark.parametrize("compile", [None, "graph", "xla"])
def test_no_repeat_ngram_matches_brute_force(compile):
    rng = np.random.default_rng(7)
    vocab, capacity = 4, 10
    tokens = rng.integers(0, vocab, (16, capacity)).astype("int32")
    logits = rng.normal(size=(16, vocab)).astype("float32")
    checked = 0
    for n in (1, 2, 3, 4):
        ban = NoRepeatNGram(n)
        if compile is not None:
            ban = tf.function(ban, jit_compile=compile == "xla")
        for length in range(capacity + 1):
            out = np.asarray(ban(logits, tokens, tf.constant(length)))
            for b in range(len(tokens)):
                expected = banned_by_brute_force(tokens[b, :length], n, vocab)
                assert set(np.flatnonzero(np.isinf(out[b])).tolist()) == expected, (n, length, tokens[b, :length])
                np.testing.assert_array_equal(out[b][np.isfinite(out[b])], np.delete(logits[b], list(expected)))
                checked += bool(expected)
    assert checked > 100  # most cases ban something


def test_greedy_with_the_ngram_ban_matches_brute_force():
    prompts = np.array([[0, 1, 0], [3, 3, 3], [4, 2, 1]], "int32")
    steps = 12
    for n in (1, 2, 3):
        out = sample_loop(
            chain1_step,
            TABLE1[prompts[:, -1]],
            None,
            buffer(prompts, steps),
            3,
            steps,
            top_k=1,
            logits_processors=[NoRepeatNGram(n)],
        )
        for row, prompt in zip(np.asarray(out), prompts):
            seq = list(prompt)
            for _ in range(steps):
                scores = TABLE1[seq[-1]].copy()
                scores[list(banned_by_brute_force(seq, n, 5))] = -np.inf
                seq.append(int(np.argmax(scores)))
            assert row.tolist() == seq, n
        # ... and beam search with one beam is the same greedy decoding.
        beams, _ = beam_search(
            chain1_step,
            TABLE1[prompts[:, -1]],
            None,
            steps,
            1,
            prompt_ids=prompts,
            logits_processors=[NoRepeatNGram(n)],
        )
        np.testing.assert_array_equal(np.asarray(beams)[:, 0], np.asarray(out)[:, 3:])


def allowed(prompt, continuation, n):
    """No token of ``continuation`` is banned by the n-gram rule (brute force)."""
    history = list(prompt)
    for token in continuation:
        if token in banned_by_brute_force(history, n, V):
            return False
        history.append(token)
    return True


def test_beam_search_with_the_ngram_ban_equals_brute_force():
    prompts = np.array([[0, 1], [2, 2]], dtype="int32")
    steps, n = 4, 2
    initial_logits = TABLE[prompts[:, -2], prompts[:, -1]]
    seqs, scores = beam_search(
        markov_step,
        initial_logits,
        prompts,
        steps,
        num_beams=V**steps,
        prompt_ids=prompts,
        logits_processors=[NoRepeatNGram(n)],
    )
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    for b, prompt in enumerate(prompts):
        continuations = itertools.product(range(V), repeat=steps)
        brute = sorted((sequence_log_prob(prompt, c), c) for c in continuations if allowed(prompt, c, n))[::-1]
        finite = np.isfinite(scores[b])
        assert 0 < finite.sum() == len(brute) < V**steps  # the ban removed some continuations, not all
        assert sorted(map(tuple, seqs[b][finite].tolist())) == sorted(c for _, c in brute)
        np.testing.assert_allclose(scores[b][finite], [s for s, _ in brute], atol=1e-4)


# --- KerasHub parity (optional dependency) -----------------------------------------------------------


def test_matches_keras_hub_samplers():
    keras_hub = pytest.importorskip("keras_hub")
    rng = np.random.default_rng(4)
    logits = (1.5 * rng.normal(size=8)).astype("float32")
    n = 20_000
    tiled = np.tile(logits, (n, 1))

    greedy = keras_hub.samplers.GreedySampler()
    batch = rng.normal(size=(64, 8)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(greedy.get_next_token(greedy.compute_probabilities(batch))), np.asarray(sample(batch, top_k=1))
    )

    cases = [
        (keras_hub.samplers.RandomSampler(temperature=0.7, seed=1), dict(temperature=0.7)),
        (keras_hub.samplers.TopKSampler(k=3, seed=2), dict(top_k=3)),
        (keras_hub.samplers.TopPSampler(p=0.6, seed=3), dict(top_p=0.6)),
        (keras_hub.samplers.TopPSampler(p=0.8, temperature=1.5, seed=4), dict(top_p=0.8, temperature=1.5)),
    ]
    for hub_sampler, ours in cases:
        theirs = np.asarray(hub_sampler.get_next_token(hub_sampler.compute_probabilities(tiled)))
        mine = np.asarray(sample(tiled, seed=9, **ours))
        c_theirs, c_mine = np.bincount(theirs, minlength=8), np.bincount(mine, minlength=8)
        assert np.array_equal(c_theirs > 0, c_mine > 0), (ours, c_theirs, c_mine)  # same support
        support = c_mine > 0
        if support.sum() > 1:
            p_value = stats.chi2_contingency(np.stack([c_theirs[support], c_mine[support]])).pvalue
            assert p_value > 1e-3, (ours, c_theirs, c_mine)


def last_two_step(token, last_two):
    """The Markov chain of markov_step with a fixed-shape state (the last two tokens): traceable."""
    last_two = keras.ops.concatenate([last_two[:, 1:], keras.ops.cast(token[:, None], "int32")], axis=1)
    flat = keras.ops.reshape(keras.ops.convert_to_tensor(TABLE), (V * V, V))
    return keras.ops.take(flat, last_two[:, 0] * V + last_two[:, 1], axis=0), last_two


@pytest.mark.parametrize("num_beams", [1, 3, V**4])
def test_the_compiled_beam_search_loop_equals_beam_search(num_beams):
    """beam_search_loop (fixed shapes, one XLA while_loop) gives beam_search's sequences and scores."""
    from aigc_tf.sampling import beam_search_loop

    prompts = np.array([[0, 1, 2], [2, 2, 0]], dtype="int32")
    steps, P = 4, prompts.shape[1]
    initial_logits = TABLE[prompts[:, -2], prompts[:, -1]]
    for processors in ((), (NoRepeatNGram(2),)):
        seqs, scores = beam_search(
            last_two_step,
            initial_logits,
            prompts[:, -2:],
            steps,
            num_beams,
            prompt_ids=prompts,
            logits_processors=processors,
        )
        buffer = np.zeros((prompts.shape[0], P + steps + 3), "int32")
        buffer[:, :P] = prompts

        @tf.function(jit_compile=True)
        def run(logits, state, tokens, processors=processors):
            return beam_search_loop(
                last_two_step, logits, state, tokens, P, steps, num_beams, logits_processors=processors
            )

        text, loop_scores, bad = run(initial_logits, prompts[:, -2:], buffer)
        live = np.isfinite(np.asarray(scores))
        np.testing.assert_array_equal(np.asarray(text)[:, :, P : P + steps][live], np.asarray(seqs)[live])
        np.testing.assert_allclose(np.asarray(loop_scores), np.asarray(scores), atol=1e-5)
        np.testing.assert_array_equal(np.asarray(text)[:, :, :P], np.repeat(prompts[:, None], num_beams, 1))
        assert int(bad) == -1
