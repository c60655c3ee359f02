"""Test-wide settings: never touch the network, keep TensorFlow quiet."""

import os

os.environ.setdefault("AIGC_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # no display in CI


# --------------------------------------------------------------------------- #
# Image data shared by the GAN and VAE tests (fixtures hand out the makers).
# --------------------------------------------------------------------------- #

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def make_blobs(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 16, 16, 1)`` images in [-1, 1]: a bright 4x4 square on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 16, 16, 1), -1.0, np.float32)
    for i, (r, c) in enumerate(rng.integers(0, 12, (n, 2))):
        x[i, r : r + 4, c : c + 4] = 1.0
    return x


def make_bars(n: int, shape=(16, 16, 1), seed: int = 0) -> np.ndarray:
    """Binary images of one horizontal or vertical bar: structured, easy to learn."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    p = np.full((n, h, w, c), 0.05, np.float32)
    for i in range(n):
        pos = rng.integers(0, h - 3)
        if rng.random() < 0.5:
            p[i, pos : pos + 3] = 0.95
        else:
            p[i, :, pos : pos + 3] = 0.95
    return (rng.random(p.shape) < p).astype(np.float32)


@pytest.fixture(scope="session")
def blobs():
    """``blobs(n, seed=0)``: GAN training images in [-1, 1] (:func:`make_blobs`)."""
    return make_blobs


@pytest.fixture(scope="session")
def bars():
    """``bars(n, shape=(16, 16, 1), seed=0)``: binary VAE training images (:func:`make_bars`)."""
    return make_bars


# --------------------------------------------------------------------------- #
# Language models shared by the RNN, Transformer and decoding tests
# (fixtures hand out makers; the classes are imported when a maker runs).
# --------------------------------------------------------------------------- #

LM_TEXT = "to be, or not to be: that is the question. " * 8
LM_MAX_LEN = 8  # the tiny GPT's context


@pytest.fixture(scope="session")
def tokenizer():
    """The character tokenizer of :data:`LM_TEXT` (14 characters)."""
    from aigc_tf.text import CharTokenizer

    return CharTokenizer.from_text(LM_TEXT)


@pytest.fixture(scope="session")
def tiny_rnn(tokenizer):
    """``tiny_rnn(**overrides)``: a 2-layer LSTM char-RNN (embedding 8, 16 units), the tokenizer, seed 0."""
    from aigc_tf.rnn import CharRNN

    def make(**overrides):
        kw = dict(embedding_dim=8, units=16, num_layers=2, cell="lstm", tokenizer=tokenizer, seed=0) | overrides
        return CharRNN(kw.pop("vocab_size", tokenizer.vocab_size), **kw)

    return make


@pytest.fixture(scope="session")
def tiny_gpt(tokenizer):
    """``tiny_gpt(**overrides)``: a 2-block GPT (2 heads, width 16, context 8), the tokenizer, seed 0."""
    from aigc_tf.transformer import GPT

    def make(**overrides):
        kw = dict(max_len=LM_MAX_LEN, num_layers=2, num_heads=2, embed_dim=16, tokenizer=tokenizer, seed=0) | overrides
        return GPT(kw.pop("vocab_size", tokenizer.vocab_size), **kw)

    return make


def lm_ids(shape, seed: int = 0, vocab: int | None = None) -> np.ndarray:
    """Random int32 token ids below ``vocab`` (default: the size of :data:`LM_TEXT`'s vocabulary)."""
    vocab = len(set(LM_TEXT)) if vocab is None else vocab
    return np.random.default_rng(seed).integers(0, vocab, shape).astype("int32")


def compile_lm(model, optimizer=None, **compile_kw):
    """``model`` compiled for next-token training (SGD(0.5) unless an optimizer is given)."""
    import keras

    optimizer = keras.optimizers.SGD(0.5) if optimizer is None else optimizer
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_kw)
    return model
