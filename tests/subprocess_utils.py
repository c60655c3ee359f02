"""Run test code in a fresh interpreter that can import only the package.

Used for save/load round trips (the loading process has imported nothing but
``aigc_tf``, so an unregistered class fails) and for MirroredStrategy tests
(logical CPUs must be configured before TensorFlow runs any op).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, *args: str, timeout: int = 300) -> str:
    """Run ``code`` (dedented) with ``args`` in a fresh interpreter; return its stdout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def run_python_json(code: str, *args: str, timeout: int = 300) -> dict:
    """Like :func:`run_python` for code that prints one JSON line last; return it parsed."""
    return json.loads(run_python(code, *args, timeout=timeout).strip().splitlines()[-1])
