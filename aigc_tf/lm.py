"""The floor shared by the course's language models: tokenizer, prompts, decoding.

A language model maps token ids (B, T) to next-token logits (B, T, V).
:class:`LanguageModel` gives every such model the same ``generate``, the same
prompt rules and the same serialisation; a subclass supplies only what is
specific to its architecture:

* ``call(ids)`` — logits at every position (the Keras forward pass);
* ``_read_prompt(*inputs) -> (logits, state)`` — read a prompt once: the
  logits (B, V) of the token after it and the decoding state (RNN: the
  recurrent state; Transformer: the KV cache). ``inputs`` are what
  ``_prompt_inputs(ids)`` returns (by default just ``(ids,)``; the
  Transformer pads the prompt to its context so one compiled program serves
  every prompt length);
* ``_step(token, state) -> (logits, state)`` — feed one token per sequence;
* ``context_length`` — how many tokens the model reads at most (None: all).

Both hooks must be traceable: :meth:`LanguageModel.generate` runs them inside
one compiled :func:`aigc_tf.sampling.sample_loop` (optionally with XLA).
The compiled public versions are :meth:`~LanguageModel.read_prompt` and
:meth:`~LanguageModel.step`, the ``step_fn`` of the decoding functions.

A tokenizer is anything that satisfies :class:`Tokenizer`
(:class:`aigc_tf.text.CharTokenizer` does); a tokenizer that is not
character-level plugs in the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from aigc_tf import sampling
from aigc_tf.data_checks import CheckedFit, checked_ids, too_long
from aigc_tf.streams import SavedRandomState, from_config_under_policy
from aigc_tf.validation import check_bool, check_int, check_seed

__all__ = ["LanguageModel", "Tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """What a language model needs from a tokenizer.

    ``encode(text) -> ids`` (int array (T,)); ``decode(ids) -> str`` for (T,)
    ids, a list of B strings for (B, T); ``vocab_size`` the number of ids; and
    ``get_config()`` (with a ``from_config`` classmethod and
    ``keras.saving.register_keras_serializable``) so the tokenizer is saved
    inside the model's ``.keras`` file.
    """

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Any) -> str | list[str]: ...

    def get_config(self) -> dict: ...


def _bucket(n: int, smallest: int = 16) -> int:
    """The power of two >= ``n`` (at least ``smallest``): few distinct compiled shapes."""
    size = smallest
    while size < n:
        size *= 2
    return size


class LanguageModel(SavedRandomState, CheckedFit, keras.Model):
    """Base class of the language models: tokenizer, prompt handling, seeds and ``generate``.

    Args:
        vocab_size: number of distinct tokens V.
        tokenizer: optional :class:`Tokenizer` with ``vocab_size`` ids; saved
            with the model, and lets :meth:`generate` take and return strings.
        seed: seed of the model's random streams: ``dropout_seed`` (training)
            and ``sampling_seed`` (generation), kept apart so that generating
            text does not shift the dropout masks of later training.
    """

    #: ``generate``'s default for ``jit_compile`` (XLA compiles a loop once per shape).
    default_jit_compile = False
    #: the most tokens the model reads at once (None: no limit).
    context_length: int | None = None

    # ---- training data, checked batch by batch (see aigc_tf.data_checks) -------------

    def checked_batches(self, dataset, name):
        return checked_ids(dataset, self.vocab_size, name, max_length=self.context_length)

    def check_arrays(self, x, y):
        for name, ids in (("x", x), ("y", y)):
            if ids is None:
                continue
            ids = np.asarray(ids)
            if not np.issubdtype(ids.dtype, np.integer):
                raise TypeError(f"{name} must hold integer token ids, got dtype {ids.dtype}.")
            if ids.ndim != 2:
                raise ValueError(f"{name} must be token ids shaped (batch, time), got shape {ids.shape}.")
            if self.context_length is not None and ids.shape[1] > self.context_length:
                raise ValueError(too_long(name, ids.shape[1], self.context_length))
            if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
                raise ValueError(
                    f"{name}: token ids must lie in [0, {self.vocab_size}) (the vocabulary), "
                    f"got min {ids.min()}, max {ids.max()}."
                )

    def __init__(self, vocab_size: int, tokenizer: Tokenizer | None = None, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.vocab_size = check_int("vocab_size", vocab_size, minimum=1)
        if tokenizer is not None:
            if not isinstance(tokenizer, Tokenizer):
                raise TypeError(
                    "tokenizer must have encode, decode, vocab_size and get_config (see aigc_tf.lm.Tokenizer) "
                    f"or be None, got {type(tokenizer).__name__}."
                )
            if tokenizer.vocab_size != self.vocab_size:
                raise ValueError(
                    f"tokenizer has {tokenizer.vocab_size} tokens but vocab_size={self.vocab_size}; they must match."
                )
        self.tokenizer = tokenizer
        self.seed = check_seed(seed)
        self.dropout_seed = keras.random.SeedGenerator(seed)
        self.sampling_seed = keras.random.SeedGenerator(None if seed is None else seed + 1)
        self._compiled_functions: dict = {}  # see _compiled
        self.decay_exclusions: tuple[str, ...] = ()  # see exclude_from_weight_decay

    # ------------------------------------------------------------ optimizer

    def exclude_from_weight_decay(self, names: Sequence[str]) -> None:
        """Keep the optimizer's weight decay (AdamW) off variables whose names contain one of ``names``.

        Keras's optimizers do not save this setting; the model does (in its compile
        configuration), so a reloaded model resumes with the same decay. Call it after
        ``compile``.
        """
        self.decay_exclusions = tuple(str(n) for n in names)
        self.optimizer.exclude_from_weight_decay(var_names=list(self.decay_exclusions))

    def get_compile_config(self) -> dict | None:
        config = super().get_compile_config()
        if config is not None and self.decay_exclusions:
            config = {**config, "exclude_from_weight_decay": list(self.decay_exclusions)}
        return config

    def compile_from_config(self, config: dict) -> None:
        config = dict(config)
        names = config.pop("exclude_from_weight_decay", None)
        super().compile_from_config(config)
        if names:
            self.exclude_from_weight_decay(names)

    # ------------------------------------------------------ hooks of a subclass

    def _prompt_inputs(self, ids: Any) -> tuple:
        """The tensors ``_read_prompt`` takes for the prompt ``ids`` (B, T)."""
        return (ids,)

    def _read_prompt(self, *inputs: Any) -> tuple[Any, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _read_prompt(*inputs) -> (logits, state).")

    def _step(self, token: Any, state: Any) -> tuple[Any, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _step(token, state) -> (logits, state).")

    # --------------------------------------------------- one-step interface

    def read_prompt(self, ids: Any) -> tuple[Any, Any]:
        """Read a prompt once; return the next-token logits and the decoding state.

        Args:
            ids: int32 (B, T), T >= 1 (a model with a ``context_length`` reads the last ones).

        Returns:
            ``(logits, state)``: logits (B, V) for the token after the prompt,
            and the state after it (the ``state`` of :meth:`step`).
        """
        return self._compiled(("read_prompt",), lambda ids: self._read_prompt(*self._prompt_inputs(ids)))(ids)

    def step(self, token: Any, state: Any) -> tuple[Any, Any]:
        """Feed one token per sequence and advance the state by one position.

        This is the ``step_fn`` of :func:`aigc_tf.sampling.sample_loop` and
        :func:`aigc_tf.sampling.beam_search`.

        Args:
            token: int32 (B,), the latest token of each sequence.
            state: from :meth:`read_prompt` or a previous :meth:`step`.

        Returns:
            ``(logits, state)``: next-token logits (B, V) and the new state.
        """
        return self._compiled(("step",), self._step)(token, state)

    def reset_compiled(self) -> None:
        """Forget the compiled decoding programs (they are traced again on next use).

        A compiled program holds the variables it was traced with. Call this after the
        model's variables change *structure* — e.g. LoRA adds matrices to its Dense
        layers (:func:`aigc_tf.pretrained.fine_tune` does it) — not after new values.
        """
        self._compiled_functions.clear()

    def _reread(self, token: Any, state: tuple[Any, Any]) -> tuple[Any, tuple[Any, Any]]:
        """The ``step_fn`` of the uncached loops: write the token, re-run the model on the (cropped) text.

        ``state`` is ``(text, length)``: ids (B, C) whose first ``length[0]``
        columns are the text, and ``length`` (B,); fixed shapes, so this step
        compiles into a ``while_loop`` like :meth:`step`.
        """
        text, length = state
        text = ops.slice_update(text, [0, length[0]], ops.cast(token, "int32")[:, None])
        return self._last_logits(text, length[0] + 1), (text, length + 1)

    def _reread_window(self, token: Any, state: tuple[Any, Any]) -> tuple[Any, tuple[Any, Any]]:
        """:meth:`_reread` with a window of static width (XLA): the full window is re-run every step."""
        text, length = state
        text = ops.slice_update(text, [0, length[0]], ops.cast(token, "int32")[:, None])
        return self._window_logits(text, length[0] + 1), (text, length + 1)

    def _window_logits(self, text: Any, length: Any) -> Any:
        """Logits (B, V) of the token after ``text[:, :length]``, from a window of static width.

        The window is the last ``W = min(context_length, C)`` columns ending at
        ``length`` (or the first ``W`` while ``length < W``: the padding after
        the text is hidden by causality), so every step runs the same shapes,
        as XLA needs; it costs ``W`` positions per token whatever the length.
        """
        width = int(text.shape[1]) if self.context_length is None else min(self.context_length, int(text.shape[1]))
        start = ops.maximum(length - width, 0)
        window = ops.slice(text, [0, start], [ops.shape(text)[0], width])
        logits = self(window, training=False)
        return ops.take(logits, length - 1 - start, axis=1)

    def _last_logits(self, text: Any, length: Any) -> Any:
        """Logits (B, V) of the token after ``text[:, :length]``, by a full forward pass on its last tokens."""
        start = 0 if self.context_length is None else ops.maximum(length - self.context_length, 0)
        window = ops.slice(text, [0, start], [ops.shape(text)[0], length - start])
        return self(window, training=False)[:, -1, :]

    # ---------------------------------------------------------------- prompts

    def _prompt_to_ids(self, prompt: Any) -> tuple[np.ndarray, bool, bool]:
        """(ids (B, T) int32, was_1d, was_str) with clear errors for bad prompts."""
        as_str = isinstance(prompt, str)
        if as_str:
            if self.tokenizer is None:
                raise TypeError("prompt is a str but the model has no tokenizer; pass ids or attach a tokenizer.")
            prompt = self.tokenizer.encode(prompt)  # unknown characters → ValueError listing them
        ids = np.asarray(prompt)
        if ids.ndim not in (1, 2):
            raise ValueError(f"prompt ids must have shape (T,) or (B, T); got {ids.shape}.")
        if ids.shape[-1] < 1 or ids.size == 0:
            raise ValueError(f"prompt ids must contain at least one id per sequence; got shape {ids.shape}.")
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"prompt ids must be integers; got dtype {ids.dtype}.")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"prompt ids must be in [0, {self.vocab_size}); got min {ids.min()}, max {ids.max()}.")
        was_1d = ids.ndim == 1
        return (ids[None, :] if was_1d else ids).astype(np.int32), was_1d, as_str

    def _format_output(self, ids: np.ndarray, was_1d: bool, as_str: bool) -> Any:
        out = ids[0] if was_1d else ids
        return self.tokenizer.decode(out) if as_str else out

    # ------------------------------------------------------------- generation

    def generate(
        self,
        prompt: Any,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        num_beams: int = 1,
        no_repeat_ngram_size: int = 0,
        use_cache: bool = True,
        jit_compile: bool | None = None,
        logits_processors: Sequence[sampling.LogitsProcessor] = (),
    ) -> Any:
        """Continue a prompt by ``max_new_tokens`` tokens: sampling, or beam search if ``num_beams > 1``.

        Args:
            prompt: ids (T,) or (B, T); or a str if a tokenizer is attached.
            max_new_tokens: tokens to add, >= 0.
            temperature, top_k, top_p: see :func:`aigc_tf.sampling.sample`
                (``top_k=1`` is greedy decoding).
            seed: makes the draw reproducible (resets the model's sampling
                generator); None continues its stream. The same seed gives
                the same text with and without the cache (the draws differ
                between XLA and non-XLA loops).
            num_beams: > 1 runs beam search (deterministic: ``temperature``,
                ``top_k``, ``top_p`` and ``seed`` must stay at their defaults).
            no_repeat_ngram_size: n > 0 never repeats an n-gram of the text
                (prompt included), in sampling and beam search alike
                (:class:`aigc_tf.sampling.NoRepeatNGram`).
            use_cache: True (default) reads the prompt once and then runs one
                position per new token (the RNN's carried state, the
                Transformer's KV cache), all in one compiled loop. False re-runs
                the model on the whole (cropped) text for every token: the same
                tokens at a quadratic cost, kept to measure the difference.
            jit_compile: compile the sampling loop with XLA (a compile per batch
                size and length bucket, then the fastest loop on CPU). None: the
                model's ``default_jit_compile`` with the cache, the graph loop
                without it. With ``use_cache=False, jit_compile=True`` the
                uncached path runs in the same kind of compiled ``while_loop``
                as the cached one, re-running a window of static width
                ``min(context_length, buffer)`` for every token, so the two
                paths can be timed on equal terms.
            logits_processors: more :class:`aigc_tf.sampling.LogitsProcessor`
                callables, applied before the n-gram ban.

        Returns:
            The prompt followed by the new ids, int32 (T + max_new_tokens,) for
            1-D input or (B, T + max_new_tokens) for 2-D input; a str (or a list
            of str) for str input.
        """
        max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=0)
        sampling.check_sampling_args(temperature, top_k, top_p, vocab_size=self.vocab_size)
        seed = check_seed(seed)
        num_beams = check_int("num_beams", num_beams, minimum=1)
        ngram = check_int("no_repeat_ngram_size", no_repeat_ngram_size, minimum=0)
        use_cache = check_bool("use_cache", use_cache)
        if jit_compile is not None:
            jit_compile = check_bool("jit_compile", jit_compile)
        if num_beams > 1 and (temperature != 1.0 or top_k is not None or top_p is not None or seed is not None):
            raise ValueError(
                "num_beams > 1 runs beam search, which does not sample: "
                "leave temperature, top_k, top_p and seed at their defaults."
            )
        ids, was_1d, as_str = self._prompt_to_ids(prompt)
        processors = tuple(logits_processors) + ((sampling.NoRepeatNGram(ngram),) if ngram else ())
        try:
            new = self._generate_ids(
                ids, max_new_tokens, temperature, top_k, top_p, seed, num_beams, processors, use_cache, jit_compile
            )
        except sampling.InvalidLogitsError as error:  # name the model: the sampler cannot
            raise sampling.InvalidLogitsError(f"{type(self).__name__}({self.name!r}).generate: {error}") from None
        return self._format_output(np.concatenate([ids, new.astype(np.int32)], axis=1), was_1d, as_str)

    def _generate_ids(
        self, ids, max_new_tokens, temperature, top_k, top_p, seed, num_beams, processors, use_cache, jit_compile
    ) -> np.ndarray:
        """The new ids (B, max_new_tokens) of :meth:`generate`, its arguments checked."""
        if max_new_tokens == 0:
            new = np.zeros((ids.shape[0], 0), np.int32)
        elif num_beams > 1:
            new = self._beam_search(ids, max_new_tokens, num_beams, processors, use_cache, jit_compile)
        else:
            if seed is not None:
                state = self.sampling_seed.state
                state.assign(ops.convert_to_tensor([seed, 0], dtype=state.dtype))
            # Cached: jit_compile=None means the model's default. Uncached: the graph loop unless
            # jit_compile=True asks for XLA (then a window of static width is re-run every step).
            jit = (self.default_jit_compile if jit_compile is None else jit_compile) if use_cache else bool(jit_compile)
            new = self._sample(
                ids,
                max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                processors=processors,
                use_cache=use_cache,
                jit_compile=jit,
            )
        return new

    def _sample(self, ids, num_tokens, *, temperature, top_k, top_p, processors, use_cache, jit_compile):
        """Read the prompt and sample in one compiled program (cached per setting)."""
        batch, length = ids.shape
        if jit_compile:  # XLA needs static shapes: a buffer of a bucketed size
            tokens = np.zeros((batch, _bucket(length + num_tokens)), np.int32)
            tokens[:, :length] = ids
        else:  # the graph grows the buffer itself: one trace serves every length
            tokens = ids
        program = self._compiled(
            ("sample", use_cache, jit_compile, top_k, top_p is None, processors),
            functools.partial(
                self._sampling_program, top_k=top_k, processors=processors, grow=not jit_compile, cached=use_cache
            ),
            jit_compile=jit_compile,
        )
        out, first_invalid = program(
            tuple(ops.convert_to_tensor(x) for x in self._prompt_inputs(ids)) if use_cache else (),
            tf.constant(tokens),
            tf.constant(length, tf.int32),
            tf.constant(num_tokens, tf.int32),
            tf.constant(temperature, tf.float32),  # tensors: a new temperature does not retrace
            None if top_p is None else tf.constant(top_p, tf.float32),
        )
        if int(first_invalid) >= 0:  # the compiled loop cannot raise: it reports the step
            raise sampling.InvalidLogitsError(
                f"the logits for new token {int(first_invalid)} have a row with {sampling.INVALID_LOGITS_REASON}."
            )
        return out.numpy()[:, length : length + num_tokens]

    def _sampling_program(
        self, inputs, tokens, length, num_tokens, temperature, top_p, *, top_k, processors, grow, cached
    ):
        if grow:
            tokens = tf.pad(tokens, [[0, 0], [0, num_tokens]])
        if cached:
            (logits, state), step_fn = self._read_prompt(*inputs), self._step
        else:
            lengths = ops.full((ops.shape(tokens)[0],), length, "int32")
            last, step_fn = (self._last_logits, self._reread) if grow else (self._window_logits, self._reread_window)
            logits, state = last(tokens, length), (tokens, lengths)
        return sampling.sample_loop(
            step_fn,
            logits,
            state,
            tokens,
            length,
            num_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=self.sampling_seed,
            logits_processors=processors,
            return_invalid=True,
        )

    def _beam_search(self, ids, num_tokens, num_beams, processors, use_cache, jit_compile=None):
        jit = self.default_jit_compile if jit_compile is None else jit_compile
        if use_cache and jit:  # the whole search in one XLA program (fixed shapes: a bucketed buffer)
            batch, length = ids.shape
            tokens = np.zeros((batch, _bucket(length + num_tokens)), np.int32)
            tokens[:, :length] = ids
            program = self._compiled(
                ("beams", num_beams, processors),
                functools.partial(self._beam_program, num_beams=num_beams, processors=processors),
                jit_compile=True,
            )
            inputs = tuple(ops.convert_to_tensor(x) for x in self._prompt_inputs(ids))
            out, first_invalid = program(inputs, tf.constant(tokens), tf.constant(length), tf.constant(num_tokens))
            if int(first_invalid) >= 0:
                raise sampling.InvalidLogitsError(
                    f"beam search, new token {int(first_invalid)}: "
                    f"a beam's logits have {sampling.INVALID_LOGITS_REASON}."
                )
            return out.numpy()[:, length : length + num_tokens]
        if use_cache:
            (logits, state), step_fn = self.read_prompt(tf.constant(ids)), self.step
        else:
            batch, length = ids.shape
            text = tf.constant(np.pad(ids, [(0, 0), (0, num_tokens)]))
            state = (text, tf.fill((batch,), length))
            logits = self._compiled(("last_logits",), self._last_logits)(text, tf.constant(length))
            step_fn = self._compiled(("reread",), self._reread)
        sequences, _ = sampling.beam_search(
            step_fn, logits, state, num_tokens, num_beams, prompt_ids=ids, logits_processors=processors
        )
        return np.asarray(sequences)[:, 0, :]

    def _beam_program(self, inputs, tokens, length, num_tokens, *, num_beams, processors):
        logits, state = self._read_prompt(*inputs)
        text, _, first_invalid = sampling.beam_search_loop(
            self._step, logits, state, tokens, length, num_tokens, num_beams, logits_processors=processors
        )
        return text[:, 0, :], first_invalid

    def _compiled(self, key: tuple, python_function: Any, jit_compile: bool = False) -> Any:
        """One ``tf.function`` per decoding setting (sampler, XLA, processors), traced once each.

        ``top_k`` fixes a static shape and the processors are Python code, so
        each setting is its own compiled program; keeping them apart avoids
        retracing one function back and forth when settings alternate.
        (With a ``functools.partial`` per setting TensorFlow counts the traces
        of each setting separately and does not report the first trace of
        every new setting as excessive retracing.)
        """
        if key not in self._compiled_functions:
            self._compiled_functions[key] = tf.function(python_function, reduce_retracing=True, jit_compile=jit_compile)
        return self._compiled_functions[key]

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            tokenizer=None if self.tokenizer is None else keras.saving.serialize_keras_object(self.tokenizer),
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> LanguageModel:
        config = dict(config)
        if config.get("tokenizer") is not None:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return from_config_under_policy(cls, config)
