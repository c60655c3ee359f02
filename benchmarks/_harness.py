"""What every benchmark script shares: the machine line, table rows, the RESULTS.md
append, and same-process interleaved timing with CPU time.

Timing rule: both sides of a comparison run in this process, alternately, on the
same data; each side's figure is its best of N rounds (on a shared machine the
fastest round is the least disturbed), and CPU seconds are recorded beside wall
seconds, so a busy neighbour shows up as wall time without CPU time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("AIGC_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "| benchmark | machine | profile | time | metric |\n|---|---|---|---|---|\n"

__all__ = [
    "HEADER",
    "RESULTS",
    "SHAKESPEARE_VOCAB",
    "Timing",
    "StepComparison",
    "add_common_arguments",
    "append_results",
    "compare_train_steps",
    "load",
    "machine",
    "ratio_summary",
    "row",
    "run_modes",
    "time_interleaved",
    "write_rows",
]


def load() -> float:
    """The 1-minute load average (0.0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - Windows
        return 0.0


def machine() -> str:
    """``2 CPU cores, no GPU, x86_64, load 0.4``: what the row ran on, and how busy it was."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    accelerator = f"{len(gpus)} GPU" if gpus else "no GPU"
    return f"{os.cpu_count()} CPU cores, {accelerator}, {platform.machine()}, load {load():.1f}"


def row(benchmark: str, profile: str, seconds: float, metric: str) -> str:
    """One markdown table row of RESULTS.md."""
    return f"| {benchmark} | {machine()} | {profile} | {seconds:.1f} s | {metric} |\n"


def append_results(script: str, rows: list[str], path: Path = RESULTS, command: str | None = None) -> None:
    """Append a dated section of ``rows`` from ``script`` (with the command that made them) to ``path``."""
    import keras
    import tensorflow as tf

    new_file = not path.exists() or not path.read_text().strip()
    command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    with path.open("a") as f:
        if new_file:
            f.write("# Benchmark results\n\n")
        f.write(
            f"\n## {script} ({time.strftime('%Y-%m-%d')}, TF {tf.__version__}, Keras {keras.__version__}, "
            f"1-min load average {load():.1f} at the end)\n\n`{command}`\n\n"
        )
        f.write(HEADER + "".join(rows))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--profile``, ``--results`` and ``--no-results``, the same in every script."""
    parser.add_argument("--profile", default=None, help="smoke | cpu | gpu (default: $AIGC_PROFILE or by hardware)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file the rows are appended to")
    parser.add_argument("--no-results", action="store_true", help="print the rows only")


def write_rows(script: str, rows: list[str], args: argparse.Namespace) -> None:
    """Print the rows as a table and, unless ``--no-results``, append them to ``--results``."""
    print(HEADER + "".join(rows))
    if not args.no_results:
        append_results(script, rows, args.results)


@dataclass
class Timing:
    """Wall and CPU seconds of each round of one contender."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        """The fastest round's wall seconds."""
        return min(self.wall)

    @property
    def best_cpu(self) -> float:
        """The fewest CPU seconds of a round."""
        return min(self.cpu)


def time_interleaved(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, Timing]:
    """Run each contender once per round, alternating, ``rounds`` times; wall and CPU time of each run.

    Alternating within one process means a load that comes and goes slows every
    contender alike, and the best round of each is compared.
    """
    timings = {name: Timing() for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            timings[name].wall.append(time.perf_counter() - start)
            timings[name].cpu.append(time.process_time() - cpu_start)
    return timings


@dataclass
class StepComparison:
    """Throughput of several compiled models on the same batches (see :func:`compare_train_steps`)."""

    rate: dict[str, float]  # examples per wall second, best round
    cpu_ms: dict[str, float]  # process CPU milliseconds per step, best round
    total_seconds: float  # wall time of all timed rounds
    steps: int
    rounds: int


def compare_train_steps(
    models: dict[str, object], data, *, steps: int, batch: int, rounds: int, warmup: int = 20
) -> StepComparison:
    """Train every model one epoch of ``data`` per round, interleaved; best round of each.

    Each model is first fitted on ``warmup`` batches so tracing and compiling stay
    out of the timing. All models see the same cached batches in the same process.
    """
    for model in models.values():
        model.fit(data.take(warmup), epochs=1, verbose=0)
    runs = {name: (lambda m=model: m.fit(data, epochs=1, verbose=0)) for name, model in models.items()}
    timings = time_interleaved(runs, rounds)
    rate = {name: steps * batch / t.best for name, t in timings.items()}
    cpu_ms = {name: 1000 * t.best_cpu / steps for name, t in timings.items()}
    for name, t in timings.items():
        print(
            f"  {name:36s} {rate[name]:8,.0f} examples/s  {cpu_ms[name]:6.1f} CPU-ms/step  "
            f"(wall: {', '.join(f'{w:.2f}' for w in t.wall)} s)"
        )
    total = sum(sum(t.wall) for t in timings.values())
    return StepComparison(rate, cpu_ms, total, steps, rounds)


def ratio_summary(result: StepComparison, ours: str, base: str, same_flags: tuple[str, str], default: str) -> str:
    """The metric text of a throughput row: our setup vs the baseline as written, and with equal flags."""
    r, c = result.rate, result.cpu_ms
    return (
        f"{ours} {r[ours]:,.0f}/s ({c[ours]:.1f} CPU-ms/step) vs {base} {r[base]:,.0f}/s "
        f"({c[base]:.1f} CPU-ms/step): **{r[ours] / r[base]:.2f}x** (target >= 1.3x); same flags on both: "
        f"{r[ours] / r[same_flags[1]]:.2f}x ({same_flags[0]}), {r[default] / r[base]:.2f}x (default compile); "
        f"CPU time per step: {c[base] / c[ours]:.2f}x"
    )


#: tiny Shakespeare's 65 characters, for speed benchmarks that need no text.
SHAKESPEARE_VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def run_modes(script: str, args: argparse.Namespace, modes: dict[str, Callable[[], list[str]]], default) -> None:
    """Run the modes switched on in ``args`` (``--speed`` → ``args.speed``), else ``default``; write the rows."""
    chosen = [name for name in modes if getattr(args, name, False)] or list(default)
    rows = [line for name in chosen for line in modes[name]()]
    write_rows(script, rows, args)
