"""Char-RNN benchmarks.

Three measurements, each in one process so the numbers compare fairly:

* ``--speed`` (default): generation speed, characters per second at batch 1,
  500 new characters, carrying the recurrent state (one RNN step per
  character) vs re-running the whole prefix at every step.
* ``--throughput``: training-step throughput of :class:`aigc_tf.rnn.CharRNN`
  vs a plain ``keras.Sequential`` Embedding-LSTM-Dense of the same size.
* ``--quality``: train for the profile's time budget (``cpu``: about
  10 minutes on 2 cores) on tiny Shakespeare with nanoGPT's split and report
  the validation loss in nats/char (target at the ``cpu`` profile: <= 1.75).

Usage::

    python benchmarks/bench_rnn.py                      # speed
    python benchmarks/bench_rnn.py --throughput
    AIGC_PROFILE=cpu python benchmarks/bench_rnn.py --quality
    python benchmarks/bench_rnn.py --no-results                     # print only

Sizes, optimizer and budgets come from the ``char-rnn`` recipe (:mod:`aigc_tf.recipes`), the
same the notebook trains; rows are appended to ``benchmarks/RESULTS.md`` unless ``--no-results``.
"""

from __future__ import annotations

import argparse
import time
from _harness import SHAKESPEARE_VOCAB, add_common_arguments, row, run_modes, time_interleaved

import keras
import numpy as np

from aigc_tf.config import get_profile
from aigc_tf.metrics import evaluate_loss
from aigc_tf.recipes import Recipe, get_recipe
from aigc_tf.rnn import CharRNN
from aigc_tf.text import CharTokenizer, make_char_dataset, nanogpt_split


def describe(size: dict) -> str:
    return f"{size['num_layers']}xLSTM-{size['units']}"


def bench_speed(recipe: Recipe) -> list[str]:
    """chars/s at batch 1: carried state vs re-reading the prefix (same untrained model, same loop)."""
    new_chars, size, profile = recipe.benchmark["new_chars"], dict(recipe.model), recipe.profile
    tok = CharTokenizer(SHAKESPEARE_VOCAB)
    model = CharRNN(tok.vocab_size, tokenizer=tok, seed=0, **size)
    prompt = "ROMEO:"
    outputs = {}

    def run(cache: bool):
        outputs[cache] = model.generate(prompt, new_chars, seed=0, use_cache=cache)

    for cache in (True, False):  # trace the compiled loops once
        model.generate(prompt, 3, seed=0, use_cache=cache)
    timings = time_interleaved({True: lambda: run(True), False: lambda: run(False)}, recipe.benchmark["rounds"])
    rows = []
    for cache, name in ((True, "carried state"), (False, "re-read prefix")):
        assert len(outputs[cache]) == len(prompt) + new_chars
        t = timings[cache]
        rows.append(
            row(
                f"char-RNN generation, {name} (batch 1, {new_chars} new chars, {describe(size)}, best of "
                f"{len(t.wall)}, interleaved)",
                profile,
                t.best,
                f"{new_chars / t.best:,.0f} chars/s ({1000 * t.best_cpu / new_chars:.2f} CPU-ms/char)",
            )
        )
    rows.append(
        row(
            "char-RNN generation: speed-up of carried state",
            profile,
            timings[True].best + timings[False].best,
            f"{timings[False].best / timings[True].best:.1f}x (identical text: {outputs[True] == outputs[False]})",
        )
    )
    return rows


def bench_throughput(recipe: Recipe, batch: int = 64, seq_len: int = 100) -> list[str]:
    """Train-step throughput: CharRNN vs keras.Sequential of the same size, same data, same loop."""
    size, steps, profile = dict(recipe.model), recipe.benchmark["throughput_steps"], recipe.profile
    vocab_size = len(SHAKESPEARE_VOCAB)
    rng = np.random.default_rng(0)
    x = rng.integers(0, vocab_size, (batch, seq_len)).astype("int32")
    y = rng.integers(0, vocab_size, (batch, seq_len)).astype("int32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    ours = CharRNN(vocab_size, seed=0, **size)
    plain = keras.Sequential(
        [keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab_size, size["embedding_dim"])]
        + [keras.layers.LSTM(size["units"], return_sequences=True) for _ in range(size["num_layers"])]
        + [keras.layers.Dense(vocab_size)]
    )
    ours(x[:1])
    assert ours.count_params() == plain.count_params(), (ours.count_params(), plain.count_params())
    models = {"CharRNN": ours, "Sequential": plain}
    for model in models.values():
        model.compile(optimizer=recipe.build_optimizer(), loss=loss)
        model.train_on_batch(x, y)  # trace

    def train(model):
        for _ in range(steps):
            model.train_on_batch(x, y)

    timings = time_interleaved({name: (lambda m=m: train(m)) for name, m in models.items()}, recipe.benchmark["rounds"])
    chars = steps * batch * seq_len
    rows = [
        row(
            f"char-RNN train step, {name} (batch {batch}x{seq_len}, {steps} steps, best of {len(t.wall)}, interleaved)",
            profile,
            t.best,
            f"{chars / t.best:,.0f} chars/s ({1000 * t.best_cpu / steps:.1f} CPU-ms/step)",
        )
        for name, t in timings.items()
    ]
    ratio = timings["Sequential"].best / timings["CharRNN"].best
    rows.append(
        row(
            "char-RNN train step: CharRNN / Sequential throughput",
            profile,
            sum(t.best for t in timings.values()),
            f"{ratio:.2f}x (target >= 1.0x)",
        )
    )
    return rows


def bench_quality(recipe: Recipe) -> list[str]:
    """Validation loss (nats/char) on nanoGPT's tiny-Shakespeare split after the recipe's benchmark budget."""
    keras.utils.set_random_seed(0)
    train_text, val_text = nanogpt_split()
    tok = CharTokenizer.from_text(train_text + val_text)
    seq_len, batch = recipe.data["seq_len"], recipe.batch_size

    train = make_char_dataset(tok.encode(train_text), seq_len, batch, shuffle=True, seed=0).repeat()
    val = make_char_dataset(tok.encode(val_text), seq_len, batch, shuffle=False, drop_remainder=False)
    model = recipe.build_model(tokenizer=tok, seed=0)
    recipe.compile_model(model)  # Adam with clipping: it guards against an RNN's occasional exploding gradient
    budget = recipe.time_budget("benchmark", verbose=True)
    start = time.perf_counter()
    model.fit(train, steps_per_epoch=recipe.steps_per_epoch, epochs=10**6, verbose=0, shuffle=False, callbacks=[budget])
    train_seconds = time.perf_counter() - start
    metrics = evaluate_loss(model, val)
    steps_done = int(model.optimizer.iterations.numpy())
    print(model.generate("ROMEO:", 300, temperature=0.8, seed=0))
    return [
        row(
            f"char-RNN quality, nanoGPT val split ({describe(recipe.model)}, {steps_done} steps of {batch}x{seq_len}, "
            f"{1000 * budget.log['seconds'][-1] / max(steps_done, 1):.0f} wall-ms/step)",
            recipe.profile,
            train_seconds,
            f"val loss {metrics['loss']:.3f} nats/char ({metrics['bits_per_char']:.2f} bpc, "
            f"ppl {metrics['perplexity']:.2f}); target <= 1.75",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", action="store_true", help="generation speed (default if no mode given)")
    parser.add_argument("--throughput", action="store_true", help="train-step throughput vs keras.Sequential")
    parser.add_argument("--quality", action="store_true", help="time-budgeted training, validation loss")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    recipe = get_recipe("char-rnn", args.profile or get_profile())
    modes = {
        "speed": lambda: bench_speed(recipe),
        "throughput": lambda: bench_throughput(recipe),
        "quality": lambda: bench_quality(recipe),
    }
    run_modes("bench_rnn.py", args, modes, default=["speed"])


if __name__ == "__main__":
    main()
