"""Byte-level BPE: the library wrapper, the hand-written merge rule, KerasHub's GPT-2 tokenizer."""

import keras
import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from aigc_tf.bpe import BYTE_ALPHABET, BPETokenizer, apply_merges, learn_merges, pretokenize, train_bpe
from aigc_tf.lm import Tokenizer

ODD_TEXT = "naïve café — 日本 \n\t  tabs\tand  double  spaces\n\n\r\n🙂!"


@pytest.fixture(scope="module")
def shakespeare():
    from aigc_tf.data import load_text

    return load_text(name="tiny_shakespeare", split="train")


@pytest.fixture(scope="module")
def tok512(shakespeare):
    return train_bpe(shakespeare, 512)


# ------------------------------------------------------------------ the library wrapper


def test_round_trip_and_compression_on_shakespeare(shakespeare, tok512):
    assert tok512.vocab_size == 512
    ids = tok512.encode(shakespeare)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert ids.min() >= 0 and ids.max() < 512
    assert tok512.decode(ids) == shakespeare
    assert len(ids) < 0.6 * len(shakespeare)  # merges of frequent pairs shorten the text


def test_any_text_encodes_and_decodes(tok512):
    for text in (ODD_TEXT, "", " ", "\x00\x7f\xff", "ROMEO:\nWhat, ho!"):
        assert tok512.decode(tok512.encode(text)) == text
    ids = tok512.encode(ODD_TEXT)
    assert "".join(tok512.token_strings("ROMEO: my lord")) == "ROMEO: my lord"
    # lists, arrays, tensors; 2-D gives one string per row
    import tensorflow as tf

    assert tok512.decode(ids.tolist()) == tok512.decode(tf.constant(ids)) == ODD_TEXT
    batch = np.stack([ids[:6], ids[6:12]])
    assert tok512.decode(batch) == [tok512.decode(ids[:6]), tok512.decode(ids[6:12])]
    assert tok512.decode(np.zeros((0,), "int32")) == ""


def test_config_round_trip_and_protocol(tok512):
    assert isinstance(tok512, Tokenizer)
    again = BPETokenizer.from_config(tok512.get_config())
    assert again == tok512 and hash(again) == hash(tok512)
    assert again.encode(ODD_TEXT).tolist() == tok512.encode(ODD_TEXT).tolist()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tok512))
    assert isinstance(restored, BPETokenizer) and restored == tok512
    assert tok512 != train_bpe("a different text, a different vocabulary", 260, min_frequency=1)
    assert repr(tok512) == f"BPETokenizer(vocab_size=512, merges={len(tok512.merges)})"


def test_gpt_saves_and_reloads_its_bpe_tokenizer(tmp_path, tok512):
    from aigc_tf.transformer import GPT

    model = GPT(tok512.vocab_size, max_len=32, num_layers=1, num_heads=2, embed_dim=16, tokenizer=tok512, seed=0)
    model(np.zeros((1, 4), "int32"))
    path = tmp_path / "bpe_gpt.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.tokenizer, BPETokenizer) and loaded.tokenizer == tok512
    text = model.generate("ROMEO:", 5, top_k=1)
    assert isinstance(text, str) and text.startswith("ROMEO:")
    assert len(text) > len("ROMEO:")
    assert loaded.generate("ROMEO:", 5, top_k=1) == text


def test_from_vocab_and_merges_reads_gpt2_format(tok512):
    vocab = tok512._tokenizer.get_vocab()
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in tok512.merges]
    from_lines = BPETokenizer.from_vocab_and_merges(vocab, lines)
    from_pairs = BPETokenizer.from_vocab_and_merges(vocab, tok512.merges)
    assert from_lines == from_pairs
    assert from_lines.merges == tok512.merges and from_lines.vocab_size == 512
    assert (
        from_lines.encode(ODD_TEXT + " ROMEO: thou art").tolist()
        == tok512.encode(ODD_TEXT + " ROMEO: thou art").tolist()
    )


def _tiny_gpt2_vocab():
    """The 256 byte characters, a few merges (KerasHub's own test style), then <|endoftext|>."""
    merges = ["Ġ t", "h e", "Ġt he", "Ġ q", "u i", "c k", "ui ck", "Ġq uick", "Ġ f", "o x", "Ġf ox"]
    merges += ["Ġ b", "r o", "Ġb ro", "w n", "Ġbro wn", "Ċ Ċ", "Ġ Ġ", "i n", "in g", "' s", "e d"]
    vocab = {ch: i for i, ch in enumerate(BYTE_ALPHABET)}
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def test_from_keras_hub_matches_keras_hub_gpt2_tokenizer():
    keras_hub = pytest.importorskip("keras_hub")
    vocab, merges = _tiny_gpt2_vocab()
    theirs = keras_hub.tokenizers.GPT2Tokenizer(vocabulary=vocab, merges=merges)
    ours = BPETokenizer.from_keras_hub(theirs)
    assert ours.vocab_size == len(vocab)
    texts = [
        "the quick brown fox",
        "The quick, brown fox jumped!",
        "the fox's ending\n\n the  brown   fox\n\n",  # see test_newlines_split_like_gpt2
        "it's 42 o'clock, isn't it? Yes.",
        "tab\tseparated\tthe quickening",
        "<|endoftext|>the fox",
    ]
    for text in texts:
        expected = np.asarray(theirs(text)).tolist()
        assert ours.encode(text).tolist() == expected, text
        assert ours.decode(ours.encode(text)) == text
    assert ours.encode("<|endoftext|>").tolist() == [vocab["<|endoftext|>"]]
    assert ours.token_strings(" the quick fox") == [" the", " quick", " fox"]


def test_words_split_like_gpt2(shakespeare):
    # OpenAI's GPT-2 regex: the last whitespace character before a word goes to that word
    # (\s+(?!\S)), so "\n\n" or "  " before a letter is two words, "\n\n" at the end one.
    # KerasHub 0.32's TensorFlow GPT2Tokenizer keeps such runs together (Llama 3 style): it
    # gives "ĊĊ" and "ĠĠ" where GPT-2 gives "Ċ", "Ċ" and "Ġ", "Ġ..." (so the test above
    # avoids them).
    assert pretokenize("end\n\nThe") == {"end": 1, "Ċ": 2, "The": 1}
    assert pretokenize("end\n\n") == {"end": 1, "ĊĊ": 1}
    assert pretokenize("it?  Yes") == {"it": 1, "?": 1, "Ġ": 1, "ĠYes": 1}
    regex = pytest.importorskip("regex")
    gpt2 = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    for text in (ODD_TEXT, shakespeare[:50_000]):
        pieces = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)
        assert [text[a:b] for _, (a, b) in pieces] == gpt2.findall(text)


# ------------------------------------------------------------------ the merge rule by hand


def test_hand_written_merges_equal_the_library(shakespeare):
    text = shakespeare[:20_000]
    num_merges = 200
    tok = train_bpe(text, 256 + num_merges)
    library = tok.merges
    words = pretokenize(text)
    hand = learn_merges(words, num_merges)
    assert len(hand) == num_merges
    assert hand == library[:num_merges]
    # every word tokenises the same, and so does the whole text
    for word in words:
        assert apply_merges(word, hand) == [t.value for t in tok._tokenizer.model.tokenize(word)], word
    vocab = tok._tokenizer.get_vocab()
    pieces = [w for w, _ in tok._tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    assert sum(words.values()) == len(pieces)
    ids = [vocab[t] for w in pieces for t in apply_merges(w, hand)]
    assert ids == tok.encode(text).tolist()


def test_ties_go_to_the_older_token_as_in_the_library():
    # zz (id 256) is created before aa (id 257); then "zz q" and "aa q" tie at 1:
    # the library takes the pair of smaller ids (zz, q), not the alphabetical (aa, q).
    text = "\n".join(["zz"] * 5 + ["aa"] * 4 + ["zzq", "aaq"])
    hand = learn_merges(pretokenize(text), 4, min_frequency=1)
    assert hand[:3] == [("z", "z"), ("a", "a"), ("zz", "q")]
    assert hand == train_bpe(text, 260, min_frequency=1).merges[:4]


def test_min_frequency_stops_early():
    words = pretokenize("abab abab xy")
    assert learn_merges(words, 10) == train_bpe("abab abab xy", 266).merges
    assert all(pair != ("x", "y") for pair in learn_merges(words, 10))
    assert ("x", "y") in learn_merges(words, 10, min_frequency=1)


def test_apply_merges_uses_rank_order():
    merges = [("b", "c"), ("a", "b"), ("a", "bc")]
    assert apply_merges("abc", merges) == ["abc"]  # bc first (rank 0), then a+bc
    assert apply_merges("abab", merges) == ["ab", "ab"]
    assert apply_merges("xyz", merges) == ["x", "y", "z"]
    assert apply_merges("", merges) == []


# ------------------------------------------------------------------ errors


def test_bad_inputs_raise_clear_errors(tok512):
    with pytest.raises(TypeError, match="text must be a str"):
        train_bpe(b"bytes", 300)
    with pytest.raises(ValueError, match="text is empty"):
        train_bpe("", 300)
    with pytest.raises(ValueError, match=r"vocab_size must be > 256, got 256"):
        train_bpe("some text", 256)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        train_bpe("some text", 300.0)
    with pytest.raises(TypeError, match="text must be a str"):
        tok512.encode(42)
    with pytest.raises(ValueError, match=r"ids \[512, 9999\] are outside \[0, 512\)"):
        tok512.decode([3, 512, 9999])
    with pytest.raises(ValueError, match=r"ids must be 1-D"):
        tok512.decode(np.zeros((1, 2, 3), int))
    with pytest.raises(TypeError, match="ids must be integers"):
        tok512.decode([1.5])
    with pytest.raises(TypeError, match="tokenizer must be a tokenizers.Tokenizer"):
        BPETokenizer(42)
    with pytest.raises(ValueError, match="tokenizer is not a valid"):
        BPETokenizer("{not json")
    with pytest.raises(TypeError, match="tokenizer must be a keras_hub BytePairTokenizer"):
        BPETokenizer.from_keras_hub(object())
    with pytest.raises(ValueError, match="vocabulary lacks 254 of the 256 byte characters"):
        BPETokenizer.from_vocab_and_merges({"a": 0, "b": 1}, [])
    vocab = {ch: i for i, ch in enumerate(BYTE_ALPHABET)}
    with pytest.raises(ValueError, match=r"merges\[0\] must be 'a b'"):
        BPETokenizer.from_vocab_and_merges(vocab, ["abc"])
    with pytest.raises(ValueError, match="merges: the merge 'a' 'b' uses tokens not in the vocabulary"):
        BPETokenizer.from_vocab_and_merges(vocab, ["a b"])
    with pytest.raises(ValueError, match=r"tokenizer: its 256 token ids must be 0, 1, ..., 255"):
        BPETokenizer.from_vocab_and_merges({ch: i + 1 for ch, i in vocab.items()}, [])
    with pytest.raises(ValueError, match="special_tokens must be a list of vocabulary tokens"):
        BPETokenizer.from_vocab_and_merges(vocab, [], special_tokens=["<|endoftext|>"])
    with pytest.raises(ValueError, match="tokenizer must have a BPE model and the ByteLevel pre-tokenizer"):
        BPETokenizer(HFTokenizer(models.WordLevel({"a": 0}, unk_token="a")))
    with pytest.raises(TypeError, match="word_counts must be a mapping"):
        learn_merges(["to", "be"], 3)
    with pytest.raises(ValueError, match="num_merges must be >= 0, got -1"):
        learn_merges({"ab": 2}, -1)
    with pytest.raises(TypeError, match="word must be a str"):
        apply_merges(["a", "b"], [])
