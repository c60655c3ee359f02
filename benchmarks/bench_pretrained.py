"""Chapter 06's numbers: the course's pretrained model, fine-tuning at equal wall time, generation speed.

    python benchmarks/bench_pretrained.py --course      # the shipped model's record (no training)
    python benchmarks/bench_pretrained.py --fine-tune   # scratch vs full vs LoRA on the held-out speaker, 3 seeds
    python benchmarks/bench_pretrained.py --generation  # course GPT (KV cache) vs KerasHub GPT2CausalLM.generate

``--fine-tune`` trains each method for the same wall time (``pretrained_settings()["seconds"]``)
from the shipped model (full, LoRA) or from random weights (scratch) on the held-out
speaker's fine-tuning speeches, and scores nats/char on his held-out speeches and on
nanoGPT's validation split (forgetting): mean ± std over the seeds, with steps and
CPU-ms per step. ``--generation`` builds one random GPT-2-small configuration, maps it into
the course's GPT (``gpt_from_keras_hub``), and times greedy decoding of 256 new tokens after a
64-token prompt, and 5-beam search, alternately in this process, both compiled (XLA) and
warmed up, best of the rounds.
"""

from __future__ import annotations

import _harness  # noqa: F401  (sys.path, offline, quiet TF)
import argparse
import time
from _harness import add_common_arguments, machine, row, run_modes, time_interleaved

import numpy as np

from aigc_tf.config import get_profile


def bench_course(profile: str) -> list[str]:
    from aigc_tf.pretrained.course import COURSE_GPT, course_gpt_info

    info = course_gpt_info()
    run = info["training"]
    cpu = f", {run['cpu_ms_per_step']:.0f} CPU-ms/step" if run.get("cpu_ms_per_step") else ""
    load = "; load " + " → ".join(x.split("load average:")[-1].split(",")[0].strip() for x in run.get("load", []))
    metric = (
        f"val {info['validation']['nats_per_char']:.4f} nats/char on nanoGPT's whole validation split "
        f"(float16 weights as shipped; float32 {info['validation']['float32_nats_per_char']:.4f}); "
        f"target <= 1.50; {info['parameters']:,} params, {COURSE_GPT.stat().st_size / 2**20:.1f} MiB; "
        f"`{info['command']}` ({info['date']}{load})"
    )
    name = f"course GPT pretraining ({run['steps']:,} steps of {run['batch_size']}x{run['seq_len']}{cpu})"
    return [row(name, "cpu", run["seconds"], metric)]


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"


def bench_fine_tune(profile: str, seeds: int) -> list[str]:
    import keras

    from aigc_tf.metrics import text_loss
    from aigc_tf.pretrained import fine_tune, load_course_gpt
    from aigc_tf.recipes import pretrained_settings
    from aigc_tf.text import course_text_splits
    from aigc_tf.transformer import GPT

    settings = pretrained_settings(profile)
    splits = course_text_splits()
    duke, general = splits.speaker_val, splits.general_val
    if profile == "smoke":
        general = general[:5_000]
    budget = dict(
        seconds=settings["seconds"], batch_size=settings["batch_size"], checkpoint_every=settings["checkpoint_every"]
    )

    def scores(model):
        return text_loss(model, duke)["nats_per_char"], text_loss(model, general)["nats_per_char"]

    base = load_course_gpt()
    before = scores(base)
    rows = [
        row(
            "fine-tuning: the pretrained model, not tuned",
            profile,
            0.0,
            f"held-out speaker {before[0]:.3f} nats/char, general text {before[1]:.3f}",
        )
    ]
    methods = {
        "from scratch": lambda seed: (
            GPT.from_config_object(base.config, tokenizer=base.tokenizer, seed=seed),
            dict(learning_rate=settings["scratch_learning_rate"]),
        ),
        "full fine-tuning": lambda seed: (
            load_course_gpt(seed=seed),
            dict(learning_rate=settings["full_learning_rate"]),
        ),
        "LoRA": lambda seed: (
            load_course_gpt(seed=seed),
            dict(method="lora", rank=settings["rank"], learning_rate=settings["lora_learning_rate"]),
        ),
    }
    results = {name: [] for name in methods}
    for seed in range(seeds):  # methods interleaved within each seed: a load that comes and goes hits all
        for name, make in methods.items():
            keras.utils.set_random_seed(seed)
            model, kwargs = make(seed)
            cpu = time.process_time()
            result = fine_tune(model, splits.speaker_train, seed=seed, **kwargs, **budget)
            cpu = time.process_time() - cpu
            results[name].append((result, cpu, scores(model), machine().rsplit("load ", 1)[-1]))
            print(name, seed, result.steps, scores(model))
    for name, runs in results.items():
        steps = [r.steps for r, *_ in runs]
        cpu_ms = [1000 * c / r.steps for r, c, *_ in runs]
        metric = (
            f"held-out speaker {_mean_std([s[0] for *_, s, _ in runs])} nats/char, "
            f"general text {_mean_std([s[1] for *_, s, _ in runs])} ({seeds} seeds); "
            f"{runs[0][0].trainable_params:,} trainable ({runs[0][0].trainable_fraction:.1%}); "
            f"{np.mean(steps):,.0f} steps of {settings['batch_size']}x{settings['seq_len']}, "
            f"{np.mean(cpu_ms):.0f} CPU-ms/step; load after each run {', '.join(load for *_, load in runs)}"
        )
        rows.append(
            row(
                f"fine-tuning: {name}, {settings['seconds']:.0f} s each",
                profile,
                float(np.mean([r.seconds for r, *_ in runs])),
                metric,
            )
        )
    return rows


def bench_generation(profile: str, rounds: int) -> list[str]:
    import keras
    import keras_hub

    from aigc_tf.pretrained import gpt_from_keras_hub

    keras.utils.set_random_seed(0)
    size = dict(num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072)  # GPT-2 small
    if profile == "smoke":
        size = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=128)
    prompt_len, new = 64, (256 if profile != "smoke" else 16)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50257, max_sequence_length=1024, **size)
    hub = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    ours = gpt_from_keras_hub(backbone)
    prompt = np.random.default_rng(0).integers(0, 50257, (1, prompt_len)).astype("int32")
    padded = np.zeros((1, prompt_len + new), "int32")
    padded[:, :prompt_len] = prompt
    mask = np.zeros_like(padded, bool)
    mask[:, :prompt_len] = True
    hub_inputs = {"token_ids": padded, "padding_mask": mask}

    def hub_greedy():
        return hub.generate(hub_inputs, stop_token_ids=None)

    def hub_beams():
        return hub.generate(hub_inputs, stop_token_ids=None)

    rows = []
    for label, sampler, ours_run in (
        ("greedy", "greedy", lambda: ours.generate(prompt, new, top_k=1)),
        (
            "beam search, 5 beams",
            keras_hub.samplers.BeamSampler(num_beams=5),
            lambda: ours.generate(prompt, new, num_beams=5),
        ),
    ):
        hub.compile(sampler=sampler)
        hub_run = hub_greedy if label == "greedy" else hub_beams
        same = ""
        if label == "greedy":  # warm-up, and the two give the same tokens
            a, b = np.asarray(ours_run())[0, prompt_len:], np.asarray(hub_run()["token_ids"])[0, prompt_len:]
            same = f"; same tokens: {bool(np.array_equal(a, b))}"
        else:
            ours_run(), hub_run()
        timing = time_interleaved({"ours": ours_run, "keras_hub": hub_run}, rounds)
        speed = {k: new / t.best for k, t in timing.items()}
        config = (
            f"GPT-2 {size['num_layers']}x{size['hidden_dim']} random weights, batch 1, "
            f"{prompt_len}-token prompt + {new} new"
        )
        for who, name in (
            ("ours", "course GPT (KV cache, XLA)"),
            ("keras_hub", "KerasHub GPT2CausalLM.generate (XLA)"),
        ):
            rows.append(
                row(
                    f"generation, {label}: {name} ({config})",
                    profile,
                    timing[who].best,
                    f"{speed[who]:,.0f} tokens/s, {1000 * timing[who].best_cpu / new:.1f} CPU-ms/token, "
                    f"best of {rounds}",
                )
            )
        rows.append(
            row(
                f"generation, {label}: course GPT / KerasHub",
                profile,
                0.0,
                f"{speed['ours'] / speed['keras_hub']:.2f}x (target >= 1.0x){same}",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--course", action="store_true", help="the shipped course model's record (default)")
    parser.add_argument("--fine-tune", action="store_true", help="scratch vs full vs LoRA at equal wall time")
    parser.add_argument("--generation", action="store_true", help="course GPT vs KerasHub generation speed")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tune: seeds per method")
    parser.add_argument("--rounds", type=int, default=3, help="generation: timed rounds per side")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    profile = args.profile or get_profile()
    modes = {
        "course": lambda: bench_course(profile),
        "fine_tune": lambda: bench_fine_tune(profile, args.seeds),
        "generation": lambda: bench_generation(profile, args.rounds),
    }
    run_modes("bench_pretrained.py", args, modes, default=["course"])


if __name__ == "__main__":
    main()
