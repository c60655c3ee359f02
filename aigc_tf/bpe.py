"""Byte-level BPE: GPT-2's tokenizer, trained on our text or read from KerasHub.

Byte-pair encoding starts from the 256 bytes (any text encodes: no unknown token)
and learns merges: repeatedly, the most frequent pair of adjacent symbols becomes
one new symbol. A word is tokenised by replaying the merges in learned order.

:class:`BPETokenizer` wraps the Hugging Face ``tokenizers`` library (Rust, fast)
with GPT-2's settings: the ByteLevel pre-tokenizer (GPT-2's regex split, then
every byte mapped to a printable character, ``"Ġ"`` for a space) and the
ByteLevel decoder. It satisfies :class:`aigc_tf.lm.Tokenizer`, so a language
model saves it inside its ``.keras`` file. :func:`train_bpe` trains one.

:func:`pretokenize`, :func:`learn_merges` and :func:`apply_merges` are the same
algorithm written out in a few lines of Python (the lesson); the tests check
that they reproduce the library's merges and tokens exactly.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aigc_tf.text import checked_ids_to_decode
from aigc_tf.validation import check_int

__all__ = ["BPETokenizer", "train_bpe", "pretokenize", "learn_merges", "apply_merges"]

#: The 256 printable characters that stand for the bytes (GPT-2's byte-to-unicode map).
BYTE_ALPHABET: tuple[str, ...] = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))


def _byte_level(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _check_text(text: Any, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str; got {type(text).__name__}.")
    return text


def _merge_pairs(merges: Any) -> list[tuple[str, str]]:
    """Merges as ``(a, b)`` pairs, from ``"a b"`` lines (GPT-2's merges.txt) or pairs."""
    if isinstance(merges, (str, bytes)) or not isinstance(merges, Iterable):
        raise TypeError(f"merges must be a list of 'a b' strings or (a, b) pairs; got {type(merges).__name__}.")
    pairs = []
    for i, merge in enumerate(merges):
        if isinstance(merge, str):
            if merge.startswith("#version"):
                continue  # merges.txt's header line
            parts = merge.split(" ")
        else:
            parts = list(merge) if isinstance(merge, (list, tuple)) else None
        if parts is None or len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
            raise ValueError(f"merges[{i}] must be 'a b' (two tokens, one space) or a pair (a, b); got {merge!r}.")
        pairs.append((parts[0], parts[1]))
    return pairs


@keras.saving.register_keras_serializable(package="aigc_tf")
class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) on the Hugging Face ``tokenizers`` library.

    Build one with :func:`train_bpe`, :meth:`from_vocab_and_merges` (GPT-2's
    ``vocab.json`` and ``merges.txt``) or :meth:`from_keras_hub`.

    Example:
        >>> tok = train_bpe("the cat sat on the mat. " * 20, vocab_size=270)
        >>> tok.token_strings("the mat")
        ['the', ' mat']
        >>> tok.decode(tok.encode("any text: naïve 日本"))
        'any text: naïve 日本'

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` with a BPE model and the ByteLevel
            pre-tokenizer, or its JSON string (``Tokenizer.to_str()``).
    """

    def __init__(self, tokenizer: Tokenizer | str):
        if isinstance(tokenizer, str):
            try:
                tokenizer = Tokenizer.from_str(tokenizer)
            except Exception as error:
                raise ValueError(f"tokenizer is not a valid tokenizers JSON string: {error}") from None
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(
                f"tokenizer must be a tokenizers.Tokenizer or its JSON string; got {type(tokenizer).__name__}."
            )
        model, pre_tokenizer = tokenizer.model, tokenizer.pre_tokenizer
        if not isinstance(model, models.BPE) or not isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
            raise ValueError(
                "tokenizer must have a BPE model and the ByteLevel pre-tokenizer (byte-level BPE); "
                f"got {type(model).__name__} and {type(pre_tokenizer).__name__}."
            )
        ids = sorted(tokenizer.get_vocab().values())
        if ids != list(range(len(ids))):
            raise ValueError(
                f"tokenizer: its {len(ids)} token ids must be 0, 1, ..., {len(ids) - 1} (no gaps, no repeats)."
            )
        self._tokenizer = tokenizer
        self._json = tokenizer.to_str()

    @classmethod
    def from_vocab_and_merges(
        cls,
        vocabulary: Mapping[str, int],
        merges: Sequence[str] | Sequence[tuple[str, str]],
        *,
        special_tokens: Sequence[str] = (),
    ) -> BPETokenizer:
        """GPT-2's format: ``vocabulary`` (vocab.json: token → id) and ``merges`` (merges.txt lines ``"a b"``).

        Args:
            vocabulary: token → id, ids 0..V-1; must hold the 256 byte characters.
            merges: in rank order, ``"a b"`` strings or ``(a, b)`` pairs.
            special_tokens: vocabulary tokens never split (``"<|endoftext|>"``).

        Returns:
            The tokenizer.
        """
        if not isinstance(vocabulary, Mapping):
            raise TypeError(f"vocabulary must be a dict of token -> id; got {type(vocabulary).__name__}.")
        vocab = {}
        for token, i in vocabulary.items():
            if not isinstance(token, str):
                raise TypeError(f"vocabulary keys must be str tokens; got {token!r}.")
            vocab[token] = check_int(f"vocabulary[{token!r}]", i, minimum=0)
        missing = [ch for ch in BYTE_ALPHABET if ch not in vocab]
        if missing:
            raise ValueError(
                f"vocabulary lacks {len(missing)} of the 256 byte characters, e.g. {missing[:5]!r}: "
                "byte-level BPE needs them all so that any text encodes."
            )
        pairs = _merge_pairs(merges)
        for a, b in pairs:
            bad = [t for t in (a, b, a + b) if t not in vocab]
            if bad:
                raise ValueError(f"merges: the merge {a!r} {b!r} uses tokens not in the vocabulary: {bad!r}.")
        if isinstance(special_tokens, str) or any(t not in vocab for t in special_tokens):
            raise ValueError(f"special_tokens must be a list of vocabulary tokens; got {special_tokens!r}.")
        tokenizer = _byte_level(Tokenizer(models.BPE(vocab=vocab, merges=pairs)))
        if special_tokens:
            tokenizer.add_special_tokens(list(special_tokens))
        return cls(tokenizer)

    @classmethod
    def from_keras_hub(cls, tokenizer: Any) -> BPETokenizer:
        """The same tokenizer as a KerasHub ``GPT2Tokenizer`` / ``BytePairTokenizer`` (no tensorflow-text needed).

        Reads its ``vocabulary``, ``merges`` and special (unsplittable) tokens.
        """
        vocabulary, merges = getattr(tokenizer, "vocabulary", None), getattr(tokenizer, "merges", None)
        if vocabulary is None or merges is None:
            raise TypeError(
                "tokenizer must be a keras_hub BytePairTokenizer (e.g. GPT2Tokenizer) with a vocabulary and merges; "
                f"got {type(tokenizer).__name__}."
            )
        if getattr(tokenizer, "add_prefix_space", False):
            raise ValueError("tokenizer has add_prefix_space=True; BPETokenizer supports only add_prefix_space=False.")
        special = getattr(tokenizer, "unsplittable_tokens", None) or []
        return cls.from_vocab_and_merges(dict(vocabulary), list(merges), special_tokens=list(special))

    @property
    def vocab_size(self) -> int:
        """Number of ids (the model's output size)."""
        return self._tokenizer.get_vocab_size()

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The merges in rank order (the first learned first)."""
        return _merge_pairs(json.loads(self._json)["model"]["merges"])

    def encode(self, text: str) -> np.ndarray:
        """Text → ids: int32 array (T,). Any text encodes (byte-level: no unknown tokens)."""
        text = _check_text(text)
        return np.asarray(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)

    def decode(self, ids: Any) -> str | list[str]:
        """Ids → text.

        Args:
            ids: integers in ``[0, vocab_size)``, shape (T,) or (B, T); a list,
                NumPy array or tensor.

        Returns:
            A string for 1-D input, a list of B strings for 2-D input. Ids that
            cut a multi-byte character give ``"�"``.
        """
        arr = checked_ids_to_decode(ids, self.vocab_size)
        if arr.ndim == 2:
            return self._tokenizer.decode_batch(arr.tolist(), skip_special_tokens=False)
        return self._tokenizer.decode(arr.tolist(), skip_special_tokens=False)

    def token_strings(self, text: str) -> list[str]:
        """The tokens of ``text`` as readable strings (each decoded alone; ``"�"`` for a cut character)."""
        ids = self.encode(text)
        return self._tokenizer.decode_batch([[i] for i in ids.tolist()], skip_special_tokens=False)

    def get_config(self) -> dict:
        return {"tokenizer_json": self._json}

    @classmethod
    def from_config(cls, config: dict) -> BPETokenizer:
        return cls(config["tokenizer_json"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and other._json == self._json

    def __hash__(self) -> int:
        return hash(self._json)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"


def train_bpe(text: str, vocab_size: int, *, min_frequency: int = 2) -> BPETokenizer:
    """Train byte-level BPE on ``text`` with the ``tokenizers`` library's ``BpeTrainer``.

    Args:
        text: the training text (one string; split by GPT-2's regex).
        vocab_size: the vocabulary size wanted, > 256: the 256 bytes plus
            ``vocab_size - 256`` merges (fewer if pairs run out).
        min_frequency: stop when no pair occurs this often.

    Returns:
        The trained :class:`BPETokenizer`.
    """
    text = _check_text(text)
    if not text:
        raise ValueError("text is empty; there is nothing to learn merges from.")
    vocab_size = check_int("vocab_size", vocab_size)
    if vocab_size <= len(BYTE_ALPHABET):
        raise ValueError(
            f"vocab_size must be > {len(BYTE_ALPHABET)}, got {vocab_size}: "
            f"the {len(BYTE_ALPHABET)} bytes come first and each merge adds one token."
        )
    min_frequency = check_int("min_frequency", min_frequency, minimum=0)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer = _byte_level(Tokenizer(models.BPE()))
    tokenizer.train_from_iterator([text], trainer=trainer)
    return BPETokenizer(tokenizer)


# ------------------------------------------------------------ the algorithm by hand


def pretokenize(text: str) -> Counter[str]:
    """Word counts of ``text`` after GPT-2's split and byte mapping (the library's ByteLevel pre-tokenizer).

    ``pretokenize("to be or not to be")`` counts ``"to"`` once and ``"Ġto"``
    once: the space belongs to the word after it.
    """
    text = _check_text(text)
    words = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)
    return Counter(word for word, _ in words)


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    """``symbols`` with every occurrence of ``pair`` joined, left to right."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(pair[0] + pair[1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_merges(word_counts: Mapping[str, int], num_merges: int, *, min_frequency: int = 2) -> list[tuple[str, str]]:
    """Learn up to ``num_merges`` BPE merges from word counts (e.g. :func:`pretokenize`'s).

    Every word starts as its characters. Each step counts the adjacent pairs of
    symbols (a word seen n times counts n times) and merges the most frequent
    pair everywhere. Ties go, as in ``tokenizers``' ``BpeTrainer``, to the pair
    whose tokens have the smaller ids (first token, then second): the bytes are
    numbered in code-point order and each new token takes the next id.

    Args:
        word_counts: word → count.
        num_merges: merges wanted, >= 0.
        min_frequency: stop early when the most frequent pair occurs fewer times.

    Returns:
        The merges ``(a, b)`` in the order learned.
    """
    if not isinstance(word_counts, Mapping):
        raise TypeError(f"word_counts must be a mapping word -> count; got {type(word_counts).__name__}.")
    num_merges = check_int("num_merges", num_merges, minimum=0)
    min_frequency = check_int("min_frequency", min_frequency, minimum=0)
    alphabet = sorted(set(BYTE_ALPHABET).union(*word_counts))
    ids = {ch: i for i, ch in enumerate(alphabet)}
    words = [(list(word), count) for word, count in word_counts.items()]
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words:
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], ids[p[0]], ids[p[1]]))
        if pairs[best] < max(min_frequency, 1):
            break
        merges.append(best)
        ids.setdefault(best[0] + best[1], len(ids))
        words = [(_merge(symbols, best), count) for symbols, count in words]
    return merges


def apply_merges(word: str, merges: Sequence[tuple[str, str]]) -> list[str]:
    """Tokenise one pre-tokenized word: repeatedly merge the adjacent pair learned first (GPT-2's rule)."""
    word = _check_text(word, "word")
    rank = {tuple(pair): r for r, pair in enumerate(merges)}
    symbols = list(word)
    while len(symbols) > 1:
        ranked = [(rank[p], p) for p in zip(symbols, symbols[1:]) if p in rank]
        if not ranked:
            break
        symbols = _merge(symbols, min(ranked)[1])
    return symbols
