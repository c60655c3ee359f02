"""Diffusion benchmarks: training speed, quality against training time, and sampling steps.

* ``--speed``: train steps/s and CPU-ms per step of the profile's U-Net (its compile:
  XLA, 10 steps per call), best of ``rounds``; then sampling images/s with DDIM at
  the recipe's step count, XLA and graph network calls in the same loop, interleaved.
* ``--quality``: in one process, the DCGAN (its own cpu recipe) and the unconditional
  diffusion model each trained for the diffusion recipe's benchmark budget (10
  minutes at ``cpu``) on the offline MNIST train split, then 10,000 samples each
  scored against the test set with the shipped classifier (classifier FID, KID,
  recognisable rate, classes present). During the diffusion run the averaged model
  is scored at quarter budgets on 1,000 samples (the time spent scoring is not
  counted as training). Then the FID-vs-steps table (DDIM at the recipe's step
  counts and DDPM's 1,000) on fewer samples, with sampling time.
* ``--quality --conditional``: the guided model for the same budget; 10,000 samples
  (the ten digits in turn, guidance 1) with the share read as the requested digit,
  and a guidance sweep on 1,000 samples per weight.

Rows are appended to ``benchmarks/RESULTS.md`` (``--no-results`` to only print).

Usage::

    AIGC_PROFILE=cpu python benchmarks/bench_diffusion.py --speed
    AIGC_PROFILE=cpu python benchmarks/bench_diffusion.py --quality
    AIGC_PROFILE=cpu python benchmarks/bench_diffusion.py --quality --conditional
    AIGC_PROFILE=smoke python benchmarks/bench_diffusion.py --speed --quality --no-results
"""

from __future__ import annotations

import argparse
import time
from _harness import add_common_arguments, load, row, run_modes, time_interleaved

import keras
import numpy as np

from aigc_tf import training
from aigc_tf.callbacks import TimeBudget, training_optimizers
from aigc_tf.config import get_profile
from aigc_tf.data import load_images
from aigc_tf.metrics import classifier_outputs, evaluate_samples
from aigc_tf.recipes import get_recipe

GUIDANCE_SWEEP = (0.0, 1.0, 2.0, 4.0)


def _test_images(split: str) -> np.ndarray:
    return np.concatenate(list(load_images("mnist", split, batch_size=2000).as_numpy_iterator()))


def _scores(s: dict) -> str:
    cov = s["coverage"]
    return (
        f"classifier FID **{s['classifier_fid']:.2f}**, KID {s['classifier_kid']:.4f}, "
        f"recognisable {100 * s['recognisable_rate']:.1f}%, {cov['classes_present']}/10 classes"
    )


def _size(model_settings: dict) -> str:
    mults = "-".join(str(model_settings["base_filters"] * m) for m in model_settings["channel_mults"])
    return f"U-Net {mults}, attention {'on' if model_settings.get('attention', True) else 'off'}"


class _Curve(keras.callbacks.Callback):
    """Scores the model at given seconds of training; the scoring time is added back to the budget."""

    def __init__(self, budget, at_seconds, score):
        super().__init__()
        self.budget, self.pending, self.score, self.points = budget, list(at_seconds), score, []

    def on_epoch_end(self, epoch, logs=None):
        if self.pending and self.budget.elapsed() >= self.pending[0]:
            self.pending.pop(0)
            start = time.perf_counter()
            seconds, steps = self.budget.elapsed(), int(self.model.optimizer.iterations)
            self.points.append((seconds, steps, self.score(self.model)))
            print(f"  {seconds:5.0f} s, step {steps:,}: {self.points[-1][2]}", flush=True)
            self.budget.start += time.perf_counter() - start  # scoring is not training time


def train_for(kind: str, profile: str, seconds: float, curve_score=None, curve_points: int = 0):
    """Train ``kind``'s recipe for ``seconds``; returns (model, steps, wall s, CPU-ms per step, curve)."""
    recipe = get_recipe(kind, profile)
    keras.utils.set_random_seed(0)
    model = recipe.build_model(seed=0)
    recipe.compile_model(model)
    data = training.training_dataset(recipe, model, seed=0)
    budget = TimeBudget(seconds, verbose=False, **dict(recipe.schedule))
    callbacks = [budget]
    if curve_score is not None:
        callbacks.append(
            _Curve(budget, [seconds * k / (curve_points + 1) for k in range(1, curve_points + 1)], curve_score)
        )
    cpu = time.process_time()
    per_call = int(recipe.compile.get("steps_per_execution", 1))
    every = -(-recipe.steps_per_epoch // per_call) * per_call
    model.fit(data, steps_per_epoch=every, epochs=10**6, verbose=0, shuffle=False, callbacks=callbacks)
    steps = int(training_optimizers(model)[-1].iterations)
    cpu_ms = 1000 * (time.process_time() - cpu) / max(steps, 1)
    curve = callbacks[1].points if curve_score is not None else []
    return model, steps, budget.elapsed(), cpu_ms, curve


def bench_speed(profile: str) -> list[str]:
    recipe = get_recipe("diffusion", profile)
    keras.utils.set_random_seed(0)
    model = recipe.build_model(seed=0)
    recipe.compile_model(model)
    n_steps = int(recipe.benchmark["throughput_steps"])
    data = training.training_dataset(recipe, model, seed=0).take(n_steps).cache()
    model.fit(data.take(20), epochs=1, verbose=0)  # compile first
    timing = time_interleaved({"train": lambda: model.fit(data, epochs=1, verbose=0)}, int(recipe.benchmark["rounds"]))
    rate = n_steps / timing["train"].best
    cpu_ms = 1000 * timing["train"].best_cpu / n_steps
    steps = int(recipe.evaluation["sampling_steps"])
    n = int(recipe.benchmark["num_timed"])
    model.generate(n, 0, steps=2)  # trace both network calls once
    model.sampling_jit_compile = False
    model.generate(n, 0, steps=2)

    def sample(jit: bool):
        model.sampling_jit_compile = jit
        model.generate(n, 0, steps=steps)

    sampling = time_interleaved({"xla": lambda: sample(True), "graph": lambda: sample(False)}, 3)
    model.sampling_jit_compile = True
    return [
        row(
            f"diffusion training speed, MNIST ({_size(recipe.model)}, {model.unet.count_params():,} parameters, "
            f"batch {recipe.batch_size}, XLA, {recipe.compile['steps_per_execution']} steps per call)",
            profile,
            timing["train"].best,
            f"**{rate:.2f} steps/s** ({rate * recipe.batch_size:,.0f} images/s), {cpu_ms:.0f} CPU-ms per step "
            f"({cpu_ms / (1000 / rate):.2f} cores busy), "
            f"best of {recipe.benchmark['rounds']} rounds of {n_steps} steps",
        ),
        row(
            f"diffusion sampling speed ({n} images, DDIM {steps} steps, batch 500, averaged weights)",
            profile,
            sampling["xla"].best,
            f"network call with XLA **{n / sampling['xla'].best:,.0f} images/s**, graph mode "
            f"{n / sampling['graph'].best:,.0f} images/s (same loop, interleaved, best of 3)",
        ),
    ]


def _score(model, n: int, test, *, steps: int, sampler: str = "ddim", labels=None, guidance: float = 1.0):
    start = time.perf_counter()
    samples = model.generate(n, 0, labels=labels, steps=steps, sampler=sampler, guidance=guidance)
    seconds = time.perf_counter() - start
    scores = evaluate_samples(samples, test, "mnist")
    if labels is not None:
        _, probabilities = classifier_outputs(samples, "mnist")
        scores["requested"] = float(np.mean(probabilities.argmax(1) == labels))
    return scores, seconds


def bench_quality(profile: str, conditional: bool) -> list[str]:
    kind = "cdiffusion" if conditional else "diffusion"
    recipe = get_recipe(kind, profile)
    seconds = recipe.budget("benchmark")
    test = _test_images(recipe.evaluation["test_split"])
    n = int(recipe.evaluation["num_samples"])
    steps = int(recipe.evaluation["sampling_steps"])
    n_curve, n_table = max(n // 10, 100), max(n // 10, 100)
    rows = []
    if not conditional:  # the DCGAN, its own recipe, the same training time, this process
        gan, gan_steps, gan_seconds, gan_cpu, _ = train_for("dcgan", profile, seconds)
        gan_scores = evaluate_samples(gan.generate(n, 0), test, "mnist")
        print(f"  DCGAN: {gan_steps:,} steps: {_scores(gan_scores)}", flush=True)
        rows.append(
            row(
                f"DCGAN beside diffusion, MNIST (its cpu recipe, {gan_steps:,} steps, {gan_cpu:.0f} CPU-ms per step; "
                f"{n:,} samples vs {len(test):,} test images)",
                profile,
                gan_seconds,
                f"{_scores(gan_scores)}; load {load():.1f}",
            )
        )
    labels = np.arange(n) % 10 if conditional else None

    def curve_score(model):
        scores, _ = _score(model, n_curve, test, steps=steps, labels=None if labels is None else labels[:n_curve])
        return f"FID {scores['classifier_fid']:.1f}, recognisable {100 * scores['recognisable_rate']:.1f}%"

    model, n_steps, train_seconds, cpu_ms, curve = train_for(kind, profile, seconds, curve_score, 3)
    final, sample_seconds = _score(model, n, test, steps=steps, labels=labels)
    print(f"  diffusion: {n_steps:,} steps: {_scores(final)}", flush=True)
    curve_text = "; ".join(f"{s:.0f} s ({k:,} steps): {text}" for s, k, text in curve)
    requested = f"read as the requested digit **{100 * final['requested']:.1f}%**; " if conditional else ""
    rows.append(
        row(
            f"{'guided ' if conditional else ''}diffusion quality, MNIST ({_size(recipe.model)}, batch "
            f"{recipe.batch_size}, Adam {recipe.optimizer['learning_rate']:g} cosine to 5%, linear 1,000-step "
            f"schedule; {n_steps:,} steps, {cpu_ms:.0f} CPU-ms per step; {n:,} samples with DDIM {steps} steps from "
            f"the averaged weights{', the ten digits in turn, guidance 1' if conditional else ''})",
            profile,
            train_seconds,
            f"{requested}{_scores(final)}; sampling {sample_seconds:.0f} s ({n / sample_seconds:,.0f} images/s); "
            f"curve on {n_curve:,} samples: {curve_text}; load {load():.1f}",
        )
    )
    if conditional:
        cells = []
        for w in GUIDANCE_SWEEP:
            scores, _ = _score(model, n_table, test, steps=steps, labels=labels[:n_table], guidance=w)
            cells.append(
                f"w={w:g}: requested {100 * scores['requested']:.1f}%, FID {scores['classifier_fid']:.1f}, "
                f"recognisable {100 * scores['recognisable_rate']:.1f}%"
            )
            print("  ", cells[-1], flush=True)
        rows.append(
            row(
                f"guidance sweep ({n_table:,} samples per weight, DDIM {steps} steps, same model)",
                profile,
                0.0,
                "; ".join(cells),
            )
        )
        return rows
    cells = []
    for count in recipe.benchmark["step_counts"]:
        scores, t = _score(model, n_table, test, steps=int(count))
        cells.append(f"DDIM {count}: FID {scores['classifier_fid']:.1f}, {n_table / t:,.0f} images/s")
        print("  ", cells[-1], flush=True)
    n_ddpm = max(n_table // 10, 50)
    scores, t = _score(model, n_ddpm, test, steps=None, sampler="ddpm")
    cells.append(
        f"DDPM 1000 ({n_ddpm} samples): FID {scores['classifier_fid']:.1f}, "
        f"recognisable {100 * scores['recognisable_rate']:.1f}%, {n_ddpm / t:,.1f} images/s"
    )
    rows.append(
        row(
            f"diffusion FID vs sampling steps ({n_table:,} samples per row, same model)", profile, 0.0, "; ".join(cells)
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument("--speed", action="store_true", help="training and sampling speed")
    parser.add_argument("--quality", action="store_true", help="quality against the DCGAN at equal time")
    parser.add_argument("--conditional", action="store_true", help="with --quality: the guided model")
    args = parser.parse_args()
    profile = args.profile or get_profile()
    modes = {"speed": lambda: bench_speed(profile), "quality": lambda: bench_quality(profile, args.conditional)}
    run_modes("bench_diffusion.py", args, modes, default=("speed",))


if __name__ == "__main__":
    main()
