"""Character tokenizer, training windows and the nanoGPT split."""

import keras
import numpy as np
import pytest

from aigc_tf.text import CharTokenizer, make_char_dataset, nanogpt_split, split_fraction, split_input_target

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_vocab_sorted_and_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    assert tok.vocab == "".join(sorted(set(TEXT)))
    assert tok.vocab_size == len(set(TEXT))
    ids = tok.encode(TEXT)
    assert ids.dtype == np.int32 and ids.shape == (len(TEXT),)
    assert tok.decode(ids) == TEXT
    # ids follow the sorted vocabulary: "\n" < " " < "," ...
    assert tok.encode("\n").tolist() == [0]
    assert tok.encode(" ").tolist() == [1]
    assert tok.decode(np.stack([ids[:5], ids[5:10]])) == [TEXT[:5], TEXT[5:10]]
    assert tok.decode([]) == "" and tok.encode("").shape == (0,)


def test_unknown_characters_are_listed():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError) as e:
        tok.encode("abzcy")
    # Exactly the unknown characters are listed, once each, sorted.
    assert "2 character(s) not in the vocabulary: ['y', 'z']" in str(e.value)


def test_bad_ids_and_inputs():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"outside"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((1, 1, 1), dtype=int))
    with pytest.raises(TypeError, match="integers"):
        tok.decode([0.5])
    with pytest.raises(TypeError, match="str"):
        tok.encode([1, 2])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer("aba")


def test_config_round_trip():
    tok = CharTokenizer.from_text(TEXT)
    again = CharTokenizer.from_config(tok.get_config())
    assert again == tok and again.encode(TEXT).tolist() == tok.encode(TEXT).tolist()
    # Registered: Keras can (de)serialize it by name, as it does inside a model config.
    blob = keras.saving.serialize_keras_object(tok)
    assert blob["registered_name"] == "aigc_tf>CharTokenizer"
    revived = keras.saving.deserialize_keras_object(blob)
    assert isinstance(revived, CharTokenizer) and revived == tok


def test_split_input_target_shift():
    chunk = np.arange(10)
    x, y = split_input_target(chunk)
    np.testing.assert_array_equal(x, chunk[:-1])
    np.testing.assert_array_equal(y, chunk[1:])


def test_dataset_windows_shift_and_cover_text():
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    T = 8
    ds = make_char_dataset(ids, seq_len=T, batch_size=2, shuffle=False, drop_remainder=False)
    xs, ys = [], []
    for x, y in ds:
        assert x.dtype == "int32" and x.shape[1] == T and y.shape == x.shape
        xs.append(x.numpy())
        ys.append(y.numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    n_windows = (len(ids) - 1) // T
    assert len(x) == n_windows
    for i in range(n_windows):
        # Window i is ids[i*T : i*T + T + 1]; the target is the input shifted by one.
        np.testing.assert_array_equal(x[i], ids[i * T : i * T + T])
        np.testing.assert_array_equal(y[i], ids[i * T + 1 : i * T + T + 1])
        assert tok.decode(y[i])[:-1] == tok.decode(x[i])[1:]
    # Non-overlapping targets: every target position appears exactly once.
    assert np.concatenate([yy for yy in y]).tolist() == ids[1 : n_windows * T + 1].tolist()


def test_dataset_shuffle_batches_and_stride():
    ids = np.arange(101, dtype=np.int32)
    ds = make_char_dataset(ids, seq_len=10, batch_size=4, shuffle=True, seed=3)
    batches = list(ds)
    assert len(batches) == 2  # 10 windows, drop_remainder=True
    starts = sorted(int(x[0]) for xb, _ in batches for x in xb.numpy())
    assert len(set(starts)) == 8 and set(starts) <= set(range(0, 100, 10))
    overlapping = make_char_dataset(ids, seq_len=10, batch_size=1, stride=1, shuffle=False)
    assert sum(1 for _ in overlapping) == len(ids) - 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seq_len=0, batch_size=1), "seq_len"),
        (dict(seq_len=4, batch_size=0), "batch_size"),
        (dict(seq_len=4, batch_size=1, stride=0), "stride"),
        (dict(seq_len=50, batch_size=1), "seq_len \\+ 1"),
    ],
)
def test_dataset_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_char_dataset(np.arange(20), **kwargs)


@pytest.mark.parametrize("name", ["seq_len", "batch_size", "stride"])
def test_dataset_sizes_must_be_ints(name):
    kwargs = {"seq_len": 4, "batch_size": 1, name: 2.0}
    with pytest.raises(TypeError, match=name):
        make_char_dataset(np.arange(20), **kwargs)


def test_dataset_rejects_non_integer_ids():
    with pytest.raises(ValueError, match="integer"):
        make_char_dataset(np.linspace(0, 1, 20), seq_len=4, batch_size=1)


def test_nanogpt_split_matches_90_10():
    # A stand-in for the TFDS loader: train / validation / test = 90 / 5 / 5 % of one text.
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    parts = {"train": text[:900], "validation": text[900:950], "test": text[950:]}
    calls = []

    def fake_loader(name, split):
        calls.append((name, split))
        return parts[split]

    train, val = nanogpt_split(load_text=fake_loader)
    assert (train, val) == split_fraction(text, 0.9)
    assert {c[0] for c in calls} == {"tiny_shakespeare"}
    with pytest.raises(ValueError, match="train_fraction"):
        split_fraction(text, 1.0)
    with pytest.raises(TypeError, match="train_fraction"):
        split_fraction(text, "0.9")
