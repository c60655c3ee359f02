"""A logits processor that keeps a decoder from repeating itself (``no_repeat_ngram_size``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keras import ops

from aigc_tf.validation import check_int

__all__ = ["NoRepeatNGram"]

NEG_INF = float("-inf")


@dataclass(frozen=True)
class NoRepeatNGram:
    """A logits processor that bans every token that would repeat an n-gram of the text.

    Before each choice, every earlier occurrence of the last ``n - 1`` tokens
    bans the token that followed it, so no n-gram appears twice (``n = 1``
    bans every token already used). This is Hugging Face's
    ``no_repeat_ngram_size``; it works over the prompt and the generated
    tokens alike. If a row would have every token banned it is left as it is.

    Args:
        n: the n-gram size, >= 1.
    """

    n: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", check_int("no_repeat_ngram_size", self.n, minimum=1))

    def __call__(self, logits: Any, tokens: Any, length: Any) -> Any:
        n = self.n
        logits = ops.convert_to_tensor(logits)
        tokens = ops.cast(tokens, "int32")
        length = ops.cast(length, "int32")
        batch, capacity = ops.shape(tokens)[0], ops.shape(tokens)[1]
        windows = capacity - n + 1  # n-gram j is tokens[:, j : j + n]
        windows = max(windows, 0) if isinstance(windows, int) else ops.maximum(windows, 0)
        # An n-gram counts if it lies inside the text so far and its first n - 1
        # tokens equal the text's last n - 1; then its last token is banned.
        match = ops.broadcast_to((ops.arange(windows, dtype="int32") <= length - n)[None, :], (batch, windows))
        for k in range(n - 1):
            current = ops.take(tokens, ops.clip(length - (n - 1) + k, 0, capacity - 1), axis=1)
            match = ops.logical_and(match, ops.equal(tokens[:, k : k + windows], current[:, None]))
        completing = tokens[:, n - 1 : n - 1 + windows]
        rows = ops.broadcast_to(ops.arange(batch, dtype="int32")[:, None], (batch, windows))
        indices = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(completing, (-1,))], axis=1)
        counts = ops.scatter(indices, ops.reshape(ops.cast(match, "int32"), (-1,)), (batch, logits.shape[-1]))
        banned = counts > 0
        banned = ops.logical_and(banned, ops.logical_not(ops.all(banned, axis=-1, keepdims=True)))
        return ops.where(banned, NEG_INF, logits)
