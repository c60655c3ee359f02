"""The aigc-tf command line: train, resume after a kill, sample, evaluate, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aigc_tf.callbacks import training_optimizers
from aigc_tf.cli import main
from aigc_tf.training import load_checkpoint, random_state

ROOT = Path(__file__).resolve().parents[1]
#: kind -> (steps, checkpoint every): multiples of the smoke recipe's steps_per_execution.
FAMILIES = {"dcgan": (60, 10), "vae": (60, 10), "diffusion": (60, 10), "char-rnn": (60, 10), "gpt": (150, 50)}


def cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", AIGC_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-m", "aigc_tf", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


def state_of(folder: Path) -> tuple[int, list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Steps, weights, optimizer variables (every optimizer's) and random-stream states of a checkpoint."""
    model, progress = load_checkpoint(folder)
    slots = [v.numpy() for optimizer in training_optimizers(model) for v in optimizer.variables]
    return progress["step"], [v.numpy() for v in model.weights], slots, random_state(model)


@pytest.mark.slow
@pytest.mark.main_env  # kill/resume: CI's main job only
@pytest.mark.parametrize("kind", FAMILIES)
def test_a_run_killed_at_a_random_step_resumes_bit_for_bit(kind, tmp_path):
    """SIGKILL `train` at a random step after a checkpoint, resume: the same weights, Adam slots and
    random streams as one uninterrupted run (CPU, op determinism, the same compile flags).

    One kind per model family (the conditional GANs resume through the same code as the
    DCGAN; tests/test_faults.py resumes every kind from a .keras file in one process)."""
    steps, every = FAMILIES[kind]
    kill_after = int(np.random.default_rng().integers(every, steps - every))  # a random step per run
    args = [kind, "--profile", "smoke", "--steps", str(steps), "--checkpoint-every", str(every), "--seed", "3"]
    args += ["--quiet"]
    finish(cli("train", *args, "--out", str(tmp_path / "whole")))

    killed = tmp_path / "killed"
    proc = cli("train", *args, "--out", str(killed))
    progress = killed / "checkpoint.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and json.loads(progress.read_text())["step"] >= kill_after:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed; give it more steps"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(progress.read_text())["step"]
    assert kill_after <= stopped_at < steps
    finish(cli("train", *args, "--out", str(killed), "--resume"))

    steps_a, weights_a, slots_a, streams_a = state_of(tmp_path / "whole")
    steps_b, weights_b, slots_b, streams_b = state_of(killed)
    assert steps_a == steps_b == steps
    assert len(weights_a) == len(weights_b) and len(slots_a) == len(slots_b) > 2 and len(streams_a) >= 1
    for name, a_list, b_list in (("weight", weights_a, weights_b), ("slot", slots_a, slots_b)):
        worst = max(float(np.max(np.abs(a - b))) for a, b in zip(a_list, b_list))
        assert worst == 0.0, f"{kind}: a resumed {name} differs by {worst:.3g} (killed at step {stopped_at})"
    for a, b in zip(streams_a, streams_b):
        np.testing.assert_array_equal(a, b)
    moved = max(float(np.max(np.abs(a))) for a in slots_a[2:])
    assert moved > 0, "the optimizer slots never moved: the comparison would be vacuous"


def test_train_sample_evaluate_a_tiny_run(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--profile", "smoke", "--steps", "20", "--out", str(run), "--quiet"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "vae" and info["profile"] == "smoke" and info["seed"] == 0
    assert info["recipe"]["model"]["latent_dim"] == 16 and "tensorflow" in info["versions"]
    assert list((run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard logs"
    assert main(["sample", str(run), "-n", "9", "--seed", "1", "--out", str(tmp_path / "grid.png")]) == 0
    import imageio.v3 as iio

    grid = iio.imread(tmp_path / "grid.png")
    assert grid.shape[:2] == (3 * 28 + 2, 3 * 28 + 2) and grid.dtype == np.uint8
    table = tmp_path / "table.md"
    assert main(["evaluate", str(run), "--num-samples", "200", "--out", str(table)]) == 0
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| run | kind | profile | steps | test ELBO (nats)")
    elbo = float(lines[2].split("|")[5])
    assert -600 < elbo < -50, elbo  # a Bernoulli ELBO in nats after 20 steps: far from 0, far from 784 log 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "unicorn", "--out", "{tmp}/x"], "unknown kind 'unicorn'; expected one of dcgan"),
        (["sample", "{tmp}/missing"], "run folder '{tmp}/missing' does not exist"),
        (["evaluate", "{tmp}"], "is not a run folder (no run.json)"),
        (["train", "vae", "--out", "{tmp}/x", "--steps", "0"], "--steps must be >= 1, got 0"),
        (["train", "vae", "--out", "{tmp}/x", "--recipe", "{{oops"], "--recipe: not valid JSON"),
        (["train", "vae", "--out", "{tmp}/x", "--recipe", '{{"colour": 1}}'], "unknown recipe fields ['colour']"),
        (["train", "gpt", "--out", "{tmp}/x", "--resume"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    start = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert message.format(tmp=tmp_path) in err


def test_resume_refuses_a_run_of_another_kind(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "vae", "--profile", "smoke", "--steps", "20", "--out", str(run), "--quiet"]) == 0
    assert main(["train", "gpt", "--out", str(run), "--resume"]) == 2
    assert "is a 'vae' run, not 'gpt'" in capsys.readouterr().err
    assert main(["train", "vae", "--out", str(run)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["dcgan", "cgan", "clustered-gan", "cdiffusion", "char-rnn", "gpt"])
def test_every_kind_trains_samples_and_evaluates(tmp_path, capsys, kind):
    run = tmp_path / kind
    steps = "50" if kind == "gpt" else "10"  # a multiple of the recipe's steps per compiled call
    assert main(["train", kind, "--profile", "smoke", "--steps", steps, "--out", str(run), "--quiet"]) == 0
    model, progress = load_checkpoint(run)
    assert progress["step"] == int(steps)
    capsys.readouterr()
    if kind in ("char-rnn", "gpt"):
        assert main(["sample", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "0"]) == 0
        text = capsys.readouterr().out
        assert text.startswith("ROMEO:") and len(text.rstrip("\n")) == len("ROMEO:") + 20
        assert main(["sample", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "8", "--beams", "3"]) == 0
        beams = capsys.readouterr().out
        assert main(["sample", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "8", "--beams", "3"]) == 0
        assert capsys.readouterr().out == beams  # beam search is deterministic
    else:
        assert main(["sample", str(run), "-n", "10", "--seed", "0", "--out", str(tmp_path / "a.png")]) == 0
        assert main(["sample", str(run), "-n", "10", "--seed", "0", "--out", str(tmp_path / "b.png")]) == 0
        import imageio.v3 as iio

        a, b = iio.imread(tmp_path / "a.png"), iio.imread(tmp_path / "b.png")
        np.testing.assert_array_equal(a, b)  # the same seed, the same grid
        assert a.std() > 0
        capsys.readouterr()
    assert main(["evaluate", str(run), "--num-samples", "100"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | kind | profile | steps |") and f"| {kind} | smoke | {int(steps)} |" in table[2]


def test_image_labels_are_checked(tmp_path, capsys):
    run = tmp_path / "dcgan"
    assert main(["train", "dcgan", "--profile", "smoke", "--steps", "2", "--out", str(run), "--quiet"]) == 0
    assert main(["sample", str(run), "--labels", "1,2"]) == 2
    assert "labels" in capsys.readouterr().err
    assert main(["sample", str(run), "--prompt", "hi"]) == 2
    assert "makes images, not text" in capsys.readouterr().err
