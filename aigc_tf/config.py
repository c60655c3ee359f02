"""Run profiles: one switch, ``AIGC_PROFILE``, sizes every experiment.

=========  ===========================================================
profile    meaning
=========  ===========================================================
``smoke``  CI and quick checks: tiny data, a few steps, seconds.
``cpu``    a laptop or 2-core machine: about 10 minutes per notebook,
           results you can recognise.
``gpu``    a Colab GPU: full data and full training, best quality.
=========  ===========================================================

The default is ``gpu`` when TensorFlow sees a GPU, else ``cpu``. Profiles
change *how much* (data, epochs, steps), never *which code* runs: notebooks
write ``EPOCHS = pick(smoke=1, cpu=5, gpu=30)`` and call the same functions.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any, TypeVar

PROFILES: tuple[str, ...] = ("smoke", "cpu", "gpu")
PROFILE_ENV = "AIGC_PROFILE"

T = TypeVar("T")


def import_tensorflow():
    """Import TensorFlow; with TF_CPP_MIN_LOG_LEVEL=3 also hush its start-up chatter.

    A few CUDA-probing lines are written to the process's stderr before
    TensorFlow reads its log level; notebooks would carry them as output.
    """
    import sys

    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here too
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf


_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` is set to 1, true, yes or on."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def is_offline() -> bool:
    """True when ``AIGC_OFFLINE`` or ``CI`` asks for offline work: shipped data, no downloads."""
    return env_flag("AIGC_OFFLINE") or env_flag("CI")


RUNS_ENV = "AIGC_RUNS_DIR"
MAX_STEPS_ENV = "AIGC_MAX_STEPS"
#: Where Google Drive appears on Colab after ``drive.mount("/content/drive")``.
COLAB_DRIVE = Path("/content/drive/MyDrive")


def runs_dir() -> Path | None:
    """Where notebooks keep the checkpoints of their long trainings (None: they keep none).

    ``$AIGC_RUNS_DIR`` when set; else, on Colab with Google Drive mounted,
    ``MyDrive/aigc-tf-runs`` (a session that ends, or a disconnect, then loses nothing:
    running the notebook again resumes each training where it stopped).
    """
    value = os.environ.get(RUNS_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    from aigc_tf.doctor import on_colab

    if on_colab() and COLAB_DRIVE.is_dir():
        return COLAB_DRIVE / "aigc-tf-runs"
    return None


def max_steps() -> int | None:
    """``$AIGC_MAX_STEPS``: a cap on every training loop's steps (None: no cap).

    For checking a profile's code path quickly (``AIGC_PROFILE=gpu AIGC_MAX_STEPS=2`` on a
    CPU): every time budget (:class:`aigc_tf.callbacks.TimeBudget`) and step budget stops there.

    Raises:
        ValueError: if it is set to something other than a positive integer.
    """
    value = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{MAX_STEPS_ENV}={value!r}; expected a positive integer (a cap on training steps).")
    return int(value)


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow can see (empty list on a CPU-only machine)."""
    tf = import_tensorflow()

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def get_profile() -> str:
    """The active run profile: ``$AIGC_PROFILE`` if set, else ``gpu``/``cpu`` by hardware.

    Raises:
        ValueError: if ``AIGC_PROFILE`` is set to something other than
            ``smoke``, ``cpu`` or ``gpu``.
    """
    value = os.environ.get(PROFILE_ENV, "").strip().lower()
    if value:
        if value not in PROFILES:
            raise ValueError(
                f"{PROFILE_ENV}={os.environ[PROFILE_ENV]!r} is not a run profile; "
                f"expected one of {', '.join(PROFILES)}."
            )
        return value
    return "gpu" if gpu_names() else "cpu"


def pick(*, smoke: T, cpu: T, gpu: T, profile: str | None = None) -> T:
    """Return the value given for the active (or the named) profile.

    Example:
        >>> pick(smoke=1, cpu=5, gpu=30, profile="cpu")
        5

    Args:
        smoke, cpu, gpu: the value to use in each profile.
        profile: override the active profile (mostly for tests).

    Returns:
        The value for the profile.
    """
    name = profile if profile is not None else get_profile()
    if name not in PROFILES:
        raise ValueError(f"profile={name!r}; expected one of {', '.join(PROFILES)}.")
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[name]


def describe() -> dict[str, Any]:
    """Profile, hardware and library versions, for the top of every notebook."""
    tf = import_tensorflow()
    import keras

    from aigc_tf.data import import_tfds

    tfds_version = import_tfds().__version__  # fails clearly when TFDS loads only in part
    return {
        "profile": get_profile(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": tfds_version,
        "cpu_cores": os.cpu_count(),
        "gpus": gpu_names() or ["none"],
        "machine": f"{platform.system()} {platform.machine()}",
        "checkpoints": str(runs_dir() or "none (set AIGC_RUNS_DIR, or mount Google Drive on Colab, to keep them)"),
    }


def print_environment() -> None:
    """Print :func:`describe` as aligned ``key: value`` lines, and a warning if TensorFlow misses a GPU."""
    from aigc_tf.doctor import gpu_finding, nvidia_gpu_count

    info = describe()
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:>20}: {value}")
    gpu = gpu_finding(len(gpu_names()), nvidia_gpu_count())
    if not gpu.ok:
        print(gpu.line())


_CLOCK_START: float | None = None


def start_clock() -> None:
    """Start the wall-time clock that :func:`print_wall_time` reads."""
    global _CLOCK_START
    _CLOCK_START = time.perf_counter()


def print_wall_time() -> float:
    """Print and return the seconds since :func:`start_clock` (the notebook's run time)."""
    if _CLOCK_START is None:
        raise RuntimeError("start_clock() was not called.")
    seconds = time.perf_counter() - _CLOCK_START
    print(f"wall time: {seconds:.0f} s ({seconds / 60:.1f} min) in the '{get_profile()}' profile")
    return seconds
