#!/usr/bin/env python
"""Score a finished ``pretrain`` run and write it as the course model (aigc_tf/weights/course_gpt.npz).

    python scripts/export_course_gpt.py RUN_FOLDER [--out PATH]

The validation loss is measured twice on nanoGPT's whole validation split, with the
float32 weights and with the float16 weights that are shipped; both are stored with the
weights (``aigc_tf.pretrained.course.course_gpt_info``), with the run's steps, time and
machine, so the notebook and the benchmarks cite the model's own record.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder of `aigc-tf train gpt --recipe pretrain`")
    parser.add_argument("--out", type=Path, default=None, help="default: the shipped course_gpt.npz")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from aigc_tf.metrics import text_loss
    from aigc_tf.pretrained.course import COURSE_GPT, export_course_gpt, load_course_gpt
    from aigc_tf.text import HELD_OUT_SPEAKER, nanogpt_split
    from aigc_tf.training import load_checkpoint

    run = json.loads((args.run / "run.json").read_text())
    model, progress = load_checkpoint(args.run)
    val = nanogpt_split()[1]
    float32 = text_loss(model, val)["nats_per_char"]
    side = {ext: args.run.parent / f"{args.run.name}.{ext}" for ext in ("load", "log")}
    load = side["load"].read_text() if side["load"].exists() else ""
    # `/usr/bin/time -v` at the end of the training log: the CPU seconds of the whole run.
    log = side["log"].read_text(errors="replace") if side["log"].exists() else ""
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", log))
    info = dict(
        command=f"aigc-tf train gpt --profile {run['profile']} --recipe pretrain --out {args.run.name}",
        training=dict(
            steps=progress["step"],
            seconds=round(progress["seconds"], 1),
            batch_size=run["recipe"]["batch_size"],
            seq_len=run["recipe"]["data"]["seq_len"],
            load=load.strip().splitlines(),
            cpu_ms_per_step=round(1000 * cpu / progress["step"], 1) if cpu else None,
        ),
        held_out_speaker=HELD_OUT_SPEAKER,
        machine=f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}",
        versions=dict(tensorflow=tf.__version__, keras=keras.__version__, python=platform.python_version()),
        date=datetime.date.today().isoformat(),
        parameters=int(sum(int(v.numpy().size) for v in model.trainable_variables)),
    )
    out = args.out or COURSE_GPT
    export_course_gpt(model, out, validation=dict(nats_per_char=float32), **info)
    float16 = text_loss(load_course_gpt(out), val)["nats_per_char"]
    # The shipped weights are float16: record their own loss (the one a learner gets).
    export_course_gpt(model, out, validation=dict(nats_per_char=float16, float32_nats_per_char=float32), **info)
    print(
        f"{out}: {out.stat().st_size / 2**20:.1f} MiB; val {float16:.4f} nats/char (float32 {float32:.4f}); "
        f"{progress['step']:,} steps in {progress['seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
