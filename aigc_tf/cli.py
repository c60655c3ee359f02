"""``aigc-tf``: train, sample and evaluate the course's models from a shell.

::

    aigc-tf train dcgan --profile cpu --out runs/dcgan           # the chapter's recipe
    aigc-tf train gpt --out runs/gpt --steps 2000                # a step budget (exact resume)
    aigc-tf train gpt --out runs/gpt --steps 2000 --resume       # after a kill: carries on
    aigc-tf sample runs/dcgan -n 64 --out grid.png
    aigc-tf sample runs/gpt --prompt "ROMEO:" --max-new-tokens 200 --top-p 0.9
    aigc-tf evaluate runs/dcgan runs/gpt --out results.md

Every run folder holds ``run.json`` (kind, recipe, profile, dataset, seed, package
versions), the checkpoint (``checkpoint.keras`` and its random-stream state) and
TensorBoard logs (``logs/``). Errors in the arguments exit with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from aigc_tf.recipes import CONDITIONAL, KINDS

__all__ = ["main"]

RUN_FILE = "run.json"


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


# --------------------------------------------------------------------------- #
# Arguments.
# --------------------------------------------------------------------------- #


def _parser() -> argparse.ArgumentParser:
    from aigc_tf.training import describe_kind

    parser = argparse.ArgumentParser(prog="aigc-tf", description="Train, sample and evaluate the course's models.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model with its chapter's recipe")
    train.add_argument("kind", help="; ".join(f"{k}: {describe_kind(k)}" for k in KINDS))
    train.add_argument("--out", required=True, type=Path, help="the run folder (created)")
    train.add_argument("--profile", choices=("smoke", "cpu", "gpu"), help="default: $AIGC_PROFILE or by hardware")
    train.add_argument(
        "--recipe",
        help="a named variant (gpt: pretrain), or overrides: a JSON file or inline JSON, e.g. '{\"batch_size\": 32}'",
    )
    train.add_argument("--seed", type=int, default=0, help="model, noise and data-order seed (default 0)")
    train.add_argument("--dataset", help="train on another dataset of the same modality (e.g. fashion_mnist)")
    train.add_argument("--steps", type=int, help="a step budget (default: the recipe's time budget)")
    train.add_argument("--seconds", type=float, help="a time budget in seconds (default: the recipe's)")
    train.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the recipe's epoch)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sample = commands.add_parser("sample", help="images or text from a trained run")
    sample.add_argument("run", type=Path)
    sample.add_argument("-n", "--num-images", type=int, default=64, help="images: how many (default 64)")
    sample.add_argument("--out", type=Path, help="images: the PNG grid to write (default RUN/samples.png)")
    sample.add_argument("--labels", help="images: class (or cluster) ids, comma-separated, one or one per image")
    sample.add_argument("--seed", type=int, help="random seed (default: fresh randomness)")
    sample.add_argument("--prompt", help="text: the prompt (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int)
    sample.add_argument("--top-p", type=float)
    sample.add_argument("--beams", type=int, default=1, help="text: beam search with this many beams")
    sample.add_argument("--no-repeat-ngram-size", type=int, default=0)

    evaluate = commands.add_parser("evaluate", help="each run's chapter metrics as one table")
    evaluate.add_argument("runs", nargs="+", type=Path)
    evaluate.add_argument("--out", type=Path, help="also write the table (markdown) here")
    evaluate.add_argument("--num-samples", type=int, help="images: samples scored (default: the recipe's)")
    return parser


def _overrides(text: str | None, kind: str, profile: str | None) -> dict[str, Any]:
    if not text:
        return {}
    from aigc_tf.recipes import recipe_variants, variant_overrides

    if text in recipe_variants(kind):  # a named variant: `--recipe pretrain`
        return variant_overrides(kind, text, profile)
    source = Path(text)
    try:
        raw = source.read_text() if source.suffix == ".json" or source.exists() else text
    except OSError as error:
        raise UsageError(f"--recipe: cannot read {text!r} ({error.strerror}).") from None
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UsageError(f"--recipe: not valid JSON ({error.msg} at character {error.pos}).") from None
    if not isinstance(overrides, dict):
        raise UsageError(f"--recipe: expected a JSON object of recipe fields, got {type(overrides).__name__}.")
    return overrides


def _read_run(folder: Path) -> dict[str, Any]:
    path = folder / RUN_FILE
    if not folder.is_dir():
        raise UsageError(f"run folder {str(folder)!r} does not exist.")
    if not path.exists():
        raise UsageError(f"{str(folder)!r} is not a run folder (no {RUN_FILE}); create one with 'aigc-tf train'.")
    return json.loads(path.read_text())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("aigc-tf", "tensorflow", "keras", "numpy", "tensorflow-datasets"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# --------------------------------------------------------------------------- #
# train
# --------------------------------------------------------------------------- #


def _train(args: argparse.Namespace) -> int:
    from aigc_tf.recipes import get_recipe

    if args.kind not in KINDS:
        raise UsageError(f"unknown kind {args.kind!r}; expected one of {', '.join(KINDS)}.")
    folder: Path = args.out
    if args.resume:
        run = _read_run(folder)
        if run["kind"] != args.kind:
            raise UsageError(f"--resume: {str(folder)!r} is a {run['kind']!r} run, not {args.kind!r}.")
        if not (folder / "checkpoint.keras").exists():
            raise UsageError(f"--resume: {str(folder)!r} has no checkpoint yet; start it again without --resume.")
    elif (folder / RUN_FILE).exists():
        raise UsageError(f"--out: {str(folder)!r} already holds a run; pass --resume to continue it.")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}.")
    if args.seconds is not None and args.seconds <= 0:
        raise UsageError(f"--seconds must be > 0, got {args.seconds}.")

    if args.resume:
        recipe = get_recipe(run["kind"], run["profile"], **run["overrides"])
        steps, seconds, seed = run["steps"], run["seconds"], run["seed"]
    else:
        overrides = _overrides(args.recipe, args.kind, args.profile)
        if args.dataset:
            overrides["dataset"] = args.dataset
        try:
            recipe = get_recipe(args.kind, args.profile, **overrides)
        except (TypeError, ValueError) as error:
            raise UsageError(f"--recipe: {error}") from None
        steps, seconds, seed = args.steps, args.seconds, args.seed
        if steps is None and seconds is None:
            seconds = recipe.seconds
        per_call = int(recipe.compile.get("steps_per_execution", 1))
        if steps is not None and steps % per_call:
            raise UsageError(
                f"--steps must be a multiple of the recipe's steps_per_execution ({per_call}), got {steps}; "
                f"e.g. {-(-steps // per_call) * per_call}."
            )
        run = {
            "kind": args.kind,
            "profile": recipe.profile,
            "dataset": recipe.dataset,
            "seed": seed,
            "steps": steps,
            "seconds": seconds,
            "overrides": overrides,
            "recipe": recipe.as_dict(),
            "versions": _versions(),
        }
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RUN_FILE).write_text(json.dumps(run, indent=2))

    import keras

    from aigc_tf import set_seed, training

    # Python, NumPy, TensorFlow and Keras. Deterministic kernels make Keras refuse XLA
    # ("Model doesn't support jit_compile=True"), so a recipe that compiles with XLA
    # keeps XLA's own CPU kernels instead (a resumed run still repeats the same steps).
    set_seed(seed, deterministic=not recipe.compile.get("jit_compile", False))
    text = training.text_data(recipe) if recipe.kind in training.LANGUAGE_MODELS else None
    if args.resume:
        model, progress = training.load_checkpoint(folder)
        print(f"resuming {folder} at step {progress['step']:,}")
    else:
        model = recipe.build_model(tokenizer=text.tokenizer if text else None, seed=seed)
        schedule = training.step_schedule(recipe, steps) if steps is not None else None
        recipe.compile_model(model, learning_rate=schedule)

    def dataset(start: int):
        return training.training_dataset(recipe, model, seed=seed, start=start, text=text)

    if not args.resume:
        training.prepare(recipe, model, dataset(0))
    logs = keras.callbacks.TensorBoard(str(folder / "logs"), update_freq="epoch", write_graph=False)
    result = training.train_recipe(
        recipe,
        model,
        dataset,
        steps=steps,
        seconds=seconds,
        checkpoint_dir=folder,
        checkpoint_every=args.checkpoint_every,
        callbacks=[logs],
        verbose=0 if args.quiet else 1,
    )
    print(f"{folder}: {result['steps']:,} steps, {result['seconds']:.0f} s of training")
    return 0


# --------------------------------------------------------------------------- #
# sample
# --------------------------------------------------------------------------- #


def _labels(text: str | None):
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--labels: expected comma-separated ints, got {text!r}.") from None
    return values[0] if len(values) == 1 else values


def _sample(args: argparse.Namespace) -> int:
    from aigc_tf import training

    run = _read_run(args.run)
    model, _ = training.load_checkpoint(args.run)
    if run["kind"] in training.LANGUAGE_MODELS:
        prompt = "\n" if args.prompt is None else args.prompt
        text = model.generate(
            prompt,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            num_beams=args.beams,
            no_repeat_ngram_size=args.no_repeat_ngram_size,
        )
        print(text)
        return 0
    if args.prompt is not None:
        raise UsageError(f"--prompt: {str(args.run)!r} is a {run['kind']!r} run, which makes images, not text.")
    import imageio.v3 as iio
    import numpy as np

    from aigc_tf.images import to_unit_range
    from aigc_tf.plotting import tile_images

    labels = _labels(args.labels)
    if labels is None and run["kind"] in CONDITIONAL:  # the classes in turn, one per grid cell
        labels = [i % model.num_classes for i in range(args.num_images)]
    images = model.generate(args.num_images, args.seed, labels=labels)
    grid = tile_images(to_unit_range(images), pad_value=1.0)
    out = args.out or args.run / "samples.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, np.round(grid * 255).astype(np.uint8))
    print(f"{out}: {args.num_images} images")
    return 0


# --------------------------------------------------------------------------- #
# evaluate
# --------------------------------------------------------------------------- #


def _evaluate(args: argparse.Namespace) -> int:
    from aigc_tf import evaluation

    runs = [(folder, _read_run(folder)) for folder in args.runs]  # every folder checked before any work
    rows = [evaluation.evaluate_run(folder, run, num_samples=args.num_samples) for folder, run in runs]
    table = evaluation.markdown_table(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``aigc-tf`` command. Returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = _parser().parse_args(argv)
    handler = {"train": _train, "sample": _sample, "evaluate": _evaluate}[args.command]
    try:
        return handler(args)
    except UsageError as error:
        print(f"aigc-tf {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (TypeError, ValueError, FileNotFoundError) as error:  # the package's own clear messages
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
        # A message raised inside a traced function starts "in user code:"; its last line is the message.
        print(
            f"aigc-tf {args.command}: error: {lines[-1] if lines[0] == 'in user code:' else lines[0]}", file=sys.stderr
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
