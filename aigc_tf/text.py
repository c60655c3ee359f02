"""Character-level text: a tokenizer, training windows and the nanoGPT split.

The language-model chapters work on characters: the vocabulary is the set of
characters in the training text (65 for tiny Shakespeare), an id is the
character's position in the sorted vocabulary, and a model learns
``p(next char | previous chars)``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from aigc_tf.validation import check_float, check_int

__all__ = [
    "CharTokenizer",
    "split_input_target",
    "checked_ids_to_decode",
    "make_char_dataset",
    "HELD_OUT_SPEAKER",
    "TextSplits",
    "course_text_splits",
    "nanogpt_split",
    "remove_speaker",
    "speaker_lines",
    "split_fraction",
]


def checked_ids_to_decode(ids, vocab_size: int) -> np.ndarray:
    """``ids`` as an integer array (T,) or (B, T) inside ``[0, vocab_size)``, for a tokenizer's ``decode``.

    Raises:
        ValueError: another shape, or ids outside the vocabulary (the first ten are named).
        TypeError: ids that are not integers.
    """
    arr = np.asarray(ids)
    if arr.ndim not in (1, 2):
        raise ValueError(f"ids must be 1-D (T,) or 2-D (B, T); got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"ids must be integers; got dtype {arr.dtype}.")
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        bad = sorted(set(arr[(arr < 0) | (arr >= vocab_size)].tolist()))
        raise ValueError(f"ids {bad[:10]} are outside [0, {vocab_size}).")
    return arr


@keras.saving.register_keras_serializable(package="aigc_tf")
class CharTokenizer:
    """Maps characters to integer ids and back.

    The vocabulary is sorted, so the same text always gives the same ids.
    A tokenizer is a plain Python object with ``get_config``/``from_config``
    (it satisfies :class:`aigc_tf.lm.Tokenizer`); a language model stores it
    inside its ``.keras`` file.

    Example:
        >>> tok = CharTokenizer.from_text("hello")
        >>> tok.vocab
        'ehlo'
        >>> tok.encode("hole").tolist()
        [1, 3, 2, 0]
        >>> tok.decode([1, 3, 2, 0])
        'hole'

    Args:
        vocab: the characters, each exactly once, in id order.
    """

    def __init__(self, vocab: str | Iterable[str]):
        chars = list(vocab)
        if not chars:
            raise ValueError("vocab must contain at least one character.")
        if any(not isinstance(ch, str) or len(ch) != 1 for ch in chars):
            raise ValueError("vocab must be a string or a sequence of single characters.")
        if len(set(chars)) != len(chars):
            dupes = sorted({ch for ch in chars if chars.count(ch) > 1})
            raise ValueError(f"vocab has repeated characters: {dupes!r}.")
        self.vocab = "".join(chars)
        self._char_to_id = {ch: i for i, ch in enumerate(chars)}
        # Lookup table for decode: np.array of single characters.
        self._id_to_char = np.array(chars)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Build the vocabulary from every distinct character of ``text`` (sorted)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}.")
        if not text:
            raise ValueError("text is empty; cannot build a vocabulary.")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters (= number of ids, = model output size)."""
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Characters → ids.

        Args:
            text: a string whose characters are all in the vocabulary.

        Returns:
            int32 array, shape (len(text),).

        Raises:
            ValueError: listing every character that is not in the vocabulary
                (a typo in a prompt should fail here, not deep inside a model).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}.")
        try:
            return np.fromiter((self._char_to_id[ch] for ch in text), dtype=np.int32, count=len(text))
        except KeyError:
            unknown = sorted(set(text) - set(self._char_to_id))
            raise ValueError(
                f"text contains {len(unknown)} character(s) not in the vocabulary: {unknown!r}. "
                f"The vocabulary has {self.vocab_size} characters: {self.vocab!r}."
            ) from None

    def decode(self, ids) -> str | list[str]:
        """Ids → characters.

        Args:
            ids: integers in ``[0, vocab_size)``, shape (T,) or (B, T); a list,
                NumPy array or tensor.

        Returns:
            A string for 1-D input, a list of B strings for 2-D input.
        """
        arr = checked_ids_to_decode(ids, self.vocab_size)
        if arr.ndim == 2:
            return ["".join(self._id_to_char[row].tolist()) for row in arr]
        return "".join(self._id_to_char[arr].tolist()) if arr.size else ""

    def get_config(self) -> dict:
        return {"vocab": self.vocab}

    @classmethod
    def from_config(cls, config: dict) -> CharTokenizer:
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.vocab == self.vocab

    def __hash__(self) -> int:
        return hash(self.vocab)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def split_input_target(chunk: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Next-character targets: inputs ``chunk[..., :-1]``, targets ``chunk[..., 1:]``.

    So ``targets[t] == inputs[t + 1]``: at every position the model sees the
    characters up to t and must predict character t + 1.

    Args:
        chunk: ids, shape (..., T + 1).

    Returns:
        ``(inputs, targets)``, each shape (..., T).
    """
    return chunk[..., :-1], chunk[..., 1:]


def make_char_dataset(
    ids: np.ndarray,
    seq_len: int,
    batch_size: int,
    *,
    stride: int | None = None,
    shuffle: bool = True,
    seed: int | None = None,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Cut a long id sequence into ``(inputs, targets)`` training windows.

    Window i covers ``ids[i*stride : i*stride + seq_len + 1]`` and is split by
    :func:`split_input_target`. With the default ``stride = seq_len``
    consecutive windows share one character, so every character of the text
    is a target exactly once per epoch.

    Args:
        ids: token ids, shape (N,), N >= seq_len + 1.
        seq_len: characters per training sequence T.
        batch_size: sequences per batch.
        stride: step between window starts (default ``seq_len``; smaller
            values give overlapping windows, more data per epoch).
        shuffle: shuffle windows each epoch (reproducible with ``seed``).
        seed: shuffle seed.
        drop_remainder: drop the last incomplete batch (static shapes, XLA-friendly).

    Returns:
        A ``tf.data.Dataset`` of ``(inputs, targets)`` int32 pairs,
        each of shape (batch_size, seq_len).
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a 1-D integer array; got shape {ids.shape}, dtype {ids.dtype}.")
    seq_len = check_int("seq_len", seq_len, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    stride = seq_len if stride is None else check_int("stride", stride, minimum=1)
    if len(ids) < seq_len + 1:
        raise ValueError(f"ids has {len(ids)} tokens; one window needs seq_len + 1 = {seq_len + 1}.")

    # Window starts computed up front; each element is a slice of one constant
    # tensor, which is cheaper than tf.data's window() for a 1M-char text.
    starts = np.arange(0, len(ids) - seq_len, stride, dtype=np.int64)
    data = tf.constant(ids.astype(np.int32))
    ds = tf.data.Dataset.from_tensor_slices(starts)
    if shuffle:
        ds = ds.shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda s: data[s : s + seq_len + 1], num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(split_input_target).prefetch(tf.data.AUTOTUNE)


def split_fraction(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """nanoGPT's split: the first ``train_fraction`` of the text vs the rest.

    ``n = int(train_fraction * len(text))``; returns ``(text[:n], text[n:])``.
    """
    train_fraction = check_float(
        "train_fraction", train_fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    n = int(train_fraction * len(text))
    return text[:n], text[n:]


def nanogpt_split(
    name: str = "tiny_shakespeare",
    load_text: Callable[..., str] | None = None,
) -> tuple[str, str]:
    """Training and validation text, split like nanoGPT's character-level Shakespeare.

    TFDS stores tiny Shakespeare as ``train`` / ``validation`` / ``test`` =
    first 90 % / next 5 % / last 5 % of the file. nanoGPT trains on the first
    90 % and validates on the last 10 %, so training on ``train`` and validating
    on ``validation + test`` gives numbers comparable with nanoGPT's.

    Args:
        name: dataset name for the loader.
        load_text: ``load_text(name=..., split=...) -> str``; defaults to
            :func:`aigc_tf.data.load_text` (works offline).

    Returns:
        ``(train_text, val_text)``.
    """
    if load_text is None:
        from aigc_tf.data import load_text  # imported late: the loader pulls in TFDS
    train = load_text(name=name, split="train")
    val = load_text(name=name, split="validation") + load_text(name=name, split="test")
    return train, val


#: The speaker the course's pretrained model never saw: Measure for Measure's Duke, the
#: speaker with the second most text in the training split (34,095 characters) and one
#: character (GLOUCESTER, the first, is several people across the histories).
HELD_OUT_SPEAKER = "DUKE VINCENTIO"

_SPEECH = re.compile(r"[A-Z][A-Za-z' ]*:")


def _speeches(text: str) -> list[str]:
    """The text's paragraphs: speeches ("NAME:" on the first line) and everything else, in order."""
    return [block for block in text.split("\n\n") if block.strip()]


def _speaker(block: str) -> str | None:
    first = block.strip("\n").split("\n", 1)[0]
    return first[:-1] if _SPEECH.fullmatch(first) else None


def speaker_lines(text: str, speaker: str) -> str:
    """Every speech of ``speaker`` in ``text`` ("NAME:" line included), in order, blank-line separated."""
    return "\n\n".join(b.strip("\n") for b in _speeches(text) if _speaker(b) == speaker) + "\n"


def remove_speaker(text: str, speaker: str) -> str:
    """``text`` without ``speaker``'s speeches (the other paragraphs kept in order)."""
    return "\n\n".join(b.strip("\n") for b in _speeches(text) if _speaker(b) != speaker) + "\n"


@dataclasses.dataclass(frozen=True)
class TextSplits:
    """The texts of the pretraining chapter (see :func:`course_text_splits`).

    Attributes:
        pretrain: nanoGPT's training split without the held-out speaker.
        speaker_train: the first ``speaker_fraction`` of the speaker's speeches (fine-tuning).
        speaker_val: the rest of the speaker's speeches (its evaluation).
        general_val: nanoGPT's whole validation split ("general text").
        speaker: the held-out speaker's name.
    """

    pretrain: str
    speaker_train: str
    speaker_val: str
    general_val: str
    speaker: str


def course_text_splits(
    speaker: str = HELD_OUT_SPEAKER,
    *,
    speaker_fraction: float = 0.8,
    load_text: Callable[..., str] | None = None,
) -> TextSplits:
    """Every text the pretrained-model chapter uses, from tiny Shakespeare (works offline).

    The speaker's speeches come out of nanoGPT's training split; the pretrained model
    never sees them. tiny Shakespeare's validation split holds other plays (the speakers
    of the training split have at most 4,000 characters there), so the speaker's own
    validation text is the last ``1 - speaker_fraction`` of his speeches, cut at a speech
    boundary. No speech is in two splits.

    Args:
        speaker: the held-out speaker, as written before the colon (``"DUKE VINCENTIO"``).
        speaker_fraction: the share of the speaker's speeches (by count, in order) used
            for fine-tuning, in (0, 1).
        load_text: as for :func:`nanogpt_split`.

    Returns:
        A :class:`TextSplits`.

    Raises:
        ValueError: the speaker has fewer than two speeches in the training split.
    """
    if not isinstance(speaker, str):
        raise TypeError(f"speaker must be a str, got {type(speaker).__name__}.")
    speaker_fraction = check_float(
        "speaker_fraction", speaker_fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    train, val = nanogpt_split(load_text=load_text)
    speeches = [b.strip("\n") for b in _speeches(train) if _speaker(b) == speaker]
    if len(speeches) < 2:
        raise ValueError(
            f"speaker {speaker!r} has {len(speeches)} speeches in the training split; "
            "choose one with many (e.g. the default, HELD_OUT_SPEAKER)."
        )
    cut = min(max(1, int(speaker_fraction * len(speeches))), len(speeches) - 1)
    return TextSplits(
        pretrain=remove_speaker(train, speaker),
        speaker_train="\n\n".join(speeches[:cut]) + "\n",
        speaker_val="\n\n".join(speeches[cut:]) + "\n",
        general_val=val,
        speaker=speaker,
    )
