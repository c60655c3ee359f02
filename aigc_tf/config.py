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

    try:
        import tensorflow_datasets as tfds

        tfds_version = tfds.__version__
    except ImportError:  # pragma: no cover - tfds is a requirement
        tfds_version = "not installed"
    return {
        "profile": get_profile(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": tfds_version,
        "cpu_cores": os.cpu_count(),
        "gpus": gpu_names() or ["none"],
        "machine": f"{platform.system()} {platform.machine()}",
    }


def print_environment() -> None:
    """Print :func:`describe` as aligned ``key: value`` lines."""
    for key, value in describe().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:>20}: {value}")


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
