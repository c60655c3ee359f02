"""Samplers: hand-computed filters, frequency (chi-square) tests, beam search, KerasHub parity."""

import itertools

import keras
import numpy as np
import pytest
from scipy import stats

from aigc_tf.sampling import beam_search, sample_next, top_k_filter, top_p_filter

PROBS = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS = np.log(PROBS).astype("float32")


def kept(filtered) -> list[int]:
    return np.flatnonzero(np.isfinite(np.asarray(filtered))).tolist()


def softmax(x):
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def draw(logits_row, n, **kwargs):
    """n independent draws: one row per draw, all rows equal."""
    ids = sample_next(np.tile(np.asarray(logits_row, "float32"), (n, 1)), **kwargs)
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


# --- sample_next ----------------------------------------------------------------------------


def test_greedy_is_argmax_and_shapes():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(32, 50)).astype("float32")
    ids = np.asarray(sample_next(logits, top_k=1))
    assert ids.dtype == np.int32 and ids.shape == (32,)
    np.testing.assert_array_equal(ids, logits.argmax(-1))
    # Temperature -> 0 approaches greedy decoding.
    np.testing.assert_array_equal(np.asarray(sample_next(logits, temperature=1e-4, seed=0)), logits.argmax(-1))
    single = sample_next(logits[0], top_k=1)
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
    # ... which is what "dividing the probabilities by T" would (wrongly) give after renormalising.
    np.testing.assert_allclose((PROBS / 0.5) / (PROBS / 0.5).sum(), PROBS)


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
    a = np.asarray(sample_next(logits, seed=3))
    np.testing.assert_array_equal(a, np.asarray(sample_next(logits, seed=3)))  # int seed: same draw
    gen1, gen2 = keras.random.SeedGenerator(7), keras.random.SeedGenerator(7)
    s1 = [np.asarray(sample_next(logits, seed=gen1)) for _ in range(2)]
    s2 = [np.asarray(sample_next(logits, seed=gen2)) for _ in range(2)]
    np.testing.assert_array_equal(s1[0], s2[0])
    np.testing.assert_array_equal(s1[1], s2[1])
    assert not np.array_equal(s1[0], s1[1])  # a generator moves on


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
        (dict(top_p=0.0), ValueError, "top_p"),
        (dict(top_p=1.5), ValueError, "top_p"),
        (dict(top_p=-0.1), ValueError, "top_p"),
    ],
)
def test_bad_sampling_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample_next(LOGITS, **kwargs)


def test_bad_logits():
    for bad in (np.float32(1.0), np.zeros((2, 3, 4), "float32")):
        with pytest.raises(ValueError, match="shape"):
            sample_next(bad)
        with pytest.raises(ValueError, match="shape"):
            top_k_filter(bad, 1)
        with pytest.raises(ValueError, match="shape"):
            top_p_filter(bad, 0.5)
    with pytest.raises(TypeError, match="floating"):
        sample_next(np.array([1, 2, 3]))
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
        np.asarray(greedy.get_next_token(greedy.compute_probabilities(batch))), np.asarray(sample_next(batch, top_k=1))
    )

    cases = [
        (keras_hub.samplers.RandomSampler(temperature=0.7, seed=1), dict(temperature=0.7)),
        (keras_hub.samplers.TopKSampler(k=3, seed=2), dict(top_k=3)),
        (keras_hub.samplers.TopPSampler(p=0.6, seed=3), dict(top_p=0.6)),
        (keras_hub.samplers.TopPSampler(p=0.8, temperature=1.5, seed=4), dict(top_p=0.8, temperature=1.5)),
    ]
    for hub_sampler, ours in cases:
        theirs = np.asarray(hub_sampler.get_next_token(hub_sampler.compute_probabilities(tiled)))
        mine = np.asarray(sample_next(tiled, seed=9, **ours))
        c_theirs, c_mine = np.bincount(theirs, minlength=8), np.bincount(mine, minlength=8)
        assert np.array_equal(c_theirs > 0, c_mine > 0), (ours, c_theirs, c_mine)  # same support
        support = c_mine > 0
        if support.sum() > 1:
            p_value = stats.chi2_contingency(np.stack([c_theirs[support], c_mine[support]])).pvalue
            assert p_value > 1e-3, (ours, c_theirs, c_mine)
