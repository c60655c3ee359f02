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
    python benchmarks/bench_rnn.py --results benchmarks/RESULTS.md   # also append the table
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aigc_tf.callbacks import TimeBudget  # noqa: E402
from aigc_tf.config import get_profile, pick  # noqa: E402
from aigc_tf.rnn import CharRNN, evaluate_loss  # noqa: E402
from aigc_tf.text import CharTokenizer, make_char_dataset, nanogpt_split  # noqa: E402

HEADER = "| benchmark | machine | profile | time | metric |\n|---|---|---|---|---|\n"


def model_size(profile: str) -> dict:
    """The CharRNN used at each profile (the quality run trains exactly this)."""
    return pick(
        smoke=dict(embedding_dim=16, units=32, num_layers=1, dropout=0.0),
        # ~9 minutes on 2 cores is ~5 epochs for 384 units: a smaller, better-trained
        # model beats a bigger, under-trained one at this budget.
        cpu=dict(embedding_dim=64, units=384, num_layers=1, dropout=0.0),
        gpu=dict(embedding_dim=128, units=512, num_layers=2, dropout=0.2),
        profile=profile,
    )


def machine() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    return f"{os.cpu_count()} CPU cores{', ' + str(len(gpus)) + ' GPU' if gpus else ', no GPU'}, {platform.machine()}"


def row(benchmark: str, profile: str, seconds: float, metric: str) -> str:
    return f"| {benchmark} | {machine()} | {profile} | {seconds:.1f} s | {metric} |\n"


def bench_speed(profile: str, new_chars: int = 500) -> list[str]:
    """chars/s at batch 1: carried state vs re-reading the prefix (same untrained model)."""
    vocab = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # tiny Shakespeare's 65
    tok = CharTokenizer(vocab)
    size = model_size(profile)
    model = CharRNN(tok.vocab_size, tokenizer=tok, seed=0, **size)
    prompt = "ROMEO:"
    model.generate(prompt, 3, seed=0)  # trace the compiled functions once
    model.generate(prompt, 3, seed=0, carry_state=False)

    rows = []
    results = {}
    for carry in (True, False):
        start = time.perf_counter()
        out = model.generate(prompt, new_chars, seed=0, carry_state=carry)
        seconds = time.perf_counter() - start
        assert len(out) == len(prompt) + new_chars
        results[carry] = (out, seconds)
        name = "carried state" if carry else "re-read prefix"
        rows.append(
            row(
                f"char-RNN generation, {name} (batch 1, {new_chars} new chars, {size['num_layers']}xLSTM-{size['units']})",
                profile,
                seconds,
                f"{new_chars / seconds:,.0f} chars/s",
            )
        )
    same = results[True][0] == results[False][0]
    speedup = results[False][1] / results[True][1]
    rows.append(
        row(
            "char-RNN generation: speed-up of carried state",
            profile,
            results[True][1] + results[False][1],
            f"{speedup:.1f}x (identical text: {same})",
        )
    )
    return rows


def bench_throughput(profile: str, steps: int = 20, batch: int = 64, seq_len: int = 100) -> list[str]:
    """Train-step throughput: CharRNN vs keras.Sequential of the same size, same data."""
    size = model_size(profile)
    vocab_size = 65
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

    timings = {}
    for name, model in (("CharRNN", ours), ("Sequential", plain)):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        model.train_on_batch(x, y)  # trace
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        timings[name] = time.perf_counter() - start
    chars = steps * batch * seq_len
    rows = [
        row(
            f"char-RNN train step, {name} (batch {batch}x{seq_len}, {steps} steps)",
            profile,
            t,
            f"{chars / t:,.0f} chars/s",
        )
        for name, t in timings.items()
    ]
    rows.append(
        row(
            "char-RNN train step: CharRNN / Sequential throughput",
            profile,
            sum(timings.values()),
            f"{timings['Sequential'] / timings['CharRNN']:.2f}x (target >= 1.0x)",
        )
    )
    return rows


def bench_quality(profile: str) -> list[str]:
    """Validation loss (nats/char) on nanoGPT's tiny-Shakespeare split after a fixed time budget."""
    keras.utils.set_random_seed(0)
    train_text, val_text = nanogpt_split()
    tok = CharTokenizer.from_text(train_text + val_text)
    size = model_size(profile)
    budget = pick(smoke=30, cpu=9 * 60, gpu=20 * 60, profile=profile)  # seconds of training
    seq_len = pick(smoke=32, cpu=100, gpu=100, profile=profile)
    batch = pick(smoke=16, cpu=64, gpu=128, profile=profile)
    lr = pick(smoke=3e-3, cpu=3e-3, gpu=2e-3, profile=profile)

    train = make_char_dataset(tok.encode(train_text), seq_len, batch, shuffle=True, seed=0).repeat()
    val = make_char_dataset(tok.encode(val_text), seq_len, batch, shuffle=False, drop_remainder=False)
    model = CharRNN(tok.vocab_size, tokenizer=tok, seed=0, **size)
    # Clipping guards against the occasional exploding gradient of an RNN at a high learning rate.
    model.compile(
        optimizer=keras.optimizers.Adam(lr, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.perf_counter()
    model.fit(
        train, steps_per_epoch=100, epochs=10**6, verbose=0, shuffle=False, callbacks=[TimeBudget(budget, peak_lr=lr)]
    )
    train_seconds = time.perf_counter() - start
    metrics = evaluate_loss(model, val)
    steps_done = int(model.optimizer.iterations.numpy())
    print(model.generate("ROMEO:", 300, temperature=0.8, seed=0))
    name = f"char-RNN quality, nanoGPT val split ({size['num_layers']}xLSTM-{size['units']}, {steps_done} steps of {batch}x{seq_len})"
    return [
        row(
            name,
            profile,
            train_seconds,
            f"val loss {metrics['loss']:.3f} nats/char ({metrics['bits_per_char']:.2f} bpc, ppl {metrics['perplexity']:.2f}); target <= 1.75",
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed", action="store_true", help="generation speed (default if no mode given)")
    parser.add_argument("--throughput", action="store_true", help="train-step throughput vs keras.Sequential")
    parser.add_argument("--quality", action="store_true", help="time-budgeted training, validation loss")
    parser.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $AIGC_PROFILE or by hardware)")
    parser.add_argument("--results", type=Path, default=None, help="append the rows to this markdown file")
    args = parser.parse_args(argv)
    profile = args.profile or get_profile()
    if not (args.speed or args.throughput or args.quality):
        args.speed = True

    rows: list[str] = []
    if args.speed:
        rows += bench_speed(profile)
    if args.throughput:
        rows += bench_throughput(profile)
    if args.quality:
        rows += bench_quality(profile)
    table = HEADER + "".join(rows)
    # The cores may be shared: record how busy the machine was alongside the numbers.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(table)
    if args.results:
        new_file = not args.results.exists() or not args.results.read_text().strip()
        with args.results.open("a") as f:
            if new_file:
                f.write("# Benchmark results\n")
            f.write(
                f"\n## bench_rnn.py ({time.strftime('%Y-%m-%d')}, TF {tf.__version__}, Keras {keras.__version__}, "
                f"1-min load average {load:.1f} at the end)\n\n"
            )
            f.write(table)


if __name__ == "__main__":
    main()
