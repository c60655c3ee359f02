"""Check, and repair, the environment the course runs in.

::

    python -m aigc_tf.doctor          # report: one line per check, exit status 1 if one fails
    python -m aigc_tf.doctor --fix    # repair what can be repaired, then report again

What is checked:

- **python**: a version the course is tested with.
- **requirements**: every package ``aigc-tf`` requires is installed, in its range.
- **protobuf**: the protobuf runtime can load the generated code (``*_pb2.py``) that
  TensorFlow, TensorBoard and tensorflow-metadata ship. A runtime older than the
  code's generator fails at import (e.g. tensorflow-metadata 1.21.0 is generated with
  protobuf 6.31.1 but admits protobuf 5.29, which Colab ships: TFDS then imports
  only in part). Read from the files, without importing anything.
- **imports** (the report, in a subprocess): TensorFlow, Keras on its TensorFlow
  backend, and TFDS import completely.
- **gpu**: TensorFlow sees the GPUs that ``nvidia-smi`` lists.

A repair is the smallest change that keeps the installed TensorFlow: a package whose
generated code is too new for the protobuf runtime is stepped down to its newest
release that the runtime can load (a leaf package such as tensorflow-metadata), and
only TensorFlow's own code ever asks for a newer protobuf. When a repaired package
was already imported by the calling process (a notebook's kernel), the process
must restart: :func:`ensure_ready` says so.

This module imports neither TensorFlow nor TFDS at import time, so it runs when
they cannot be imported; so does ``import aigc_tf``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata

__all__ = [
    "EnvironmentProblem",
    "Finding",
    "check_environment",
    "ensure_ready",
    "fix_environment",
    "gencode_versions",
    "main",
    "protobuf_finding",
]

#: Distributions whose generated protobuf code the course loads (directly or through TFDS).
PROTO_DISTRIBUTIONS = ("tensorflow", "tensorboard", "tensorflow-metadata")
#: Python versions CI runs (README, "Tested with").
TESTED_PYTHON = ((3, 11), (3, 13))
MINIMUM_PYTHON = (3, 11)
_GENCODE = re.compile(rb"#\s*Protobuf Python Version:\s*([0-9][0-9.]*)")
# The module a distribution's code is imported as (to tell whether a process has loaded it).
_MODULES = {"protobuf": "google.protobuf", "tensorflow-metadata": "tensorflow_metadata"}


class EnvironmentProblem(ImportError):
    """The environment cannot run the course as it is; the message says what to do."""


@dataclass
class Finding:
    """The result of one check.

    Attributes:
        name: the check (``protobuf``, ``imports``, ...).
        ok: whether the environment passes it.
        detail: what was found.
        fix: pip requirement strings that repair it (empty: nothing pip can do).
        hint: what to do by hand when there is no automatic fix.
    """

    name: str
    ok: bool
    detail: str
    fix: list[str] = field(default_factory=list)
    hint: str = ""

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"[{mark}] {self.name:<12} {self.detail}"
        if not self.ok and self.fix:
            text += f"\n       fix: pip install {' '.join(repr(f) for f in self.fix)} (python -m aigc_tf.doctor --fix)"
        if not self.ok and self.hint:
            text += f"\n       {self.hint}"
        return text


# --------------------------------------------------------------------------- #
# Versions, read from the installed distributions (nothing is imported).
# --------------------------------------------------------------------------- #


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def gencode_versions(distribution: str) -> dict[str, str]:
    """``{file: protobuf version it was generated with}`` for the ``*_pb2.py`` files of ``distribution``.

    Read from each file's ``# Protobuf Python Version:`` header line; files without
    one (older generators) are left out. Empty when the distribution is not installed.
    """
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return {}
    versions = {}
    for file in files:
        if not str(file).endswith("_pb2.py"):
            continue
        try:
            with open(file.locate(), "rb") as handle:
                head = handle.read(600)
        except OSError:
            continue
        found = _GENCODE.search(head)
        if found:
            versions[str(file)] = found.group(1).decode()
    return versions


def protobuf_finding(runtime: str | None, gencodes: dict[str, dict[str, str]], installed: dict[str, str]) -> Finding:
    """Whether the protobuf ``runtime`` loads every distribution's generated code, and the repair if not.

    A protobuf runtime refuses, at import, code generated by a newer protobuf
    (``runtime_version.ValidateProtobufRuntimeVersion``); older code loads.

    Args:
        runtime: the installed protobuf version (None: not installed).
        gencodes: ``{distribution: {file: generator version}}`` (see :func:`gencode_versions`).
        installed: ``{distribution: installed version}``.

    Returns:
        A :class:`Finding`; its ``fix`` steps a too-new leaf distribution down below its
        installed version, or asks for the protobuf that TensorFlow's own code needs.
    """
    if runtime is None:
        return Finding("protobuf", False, "protobuf is not installed", fix=["protobuf"])
    have = _version_tuple(runtime)
    too_new = {}
    for dist, files in sorted(gencodes.items()):
        newest = max(files.values(), key=_version_tuple, default=None)
        if newest is not None and _version_tuple(newest) > have:
            too_new[dist] = newest
    if not too_new:
        checked = ", ".join(f"{d} {installed.get(d, '?')}" for d in sorted(gencodes) if gencodes[d])
        return Finding("protobuf", True, f"runtime {runtime} loads the generated code of {checked or 'nothing'}")
    problems = [
        f"{d} {installed.get(d, '?')} is generated with protobuf {v}, newer than the runtime {runtime}"
        for d, v in too_new.items()
    ]
    fix = []
    for dist, version in too_new.items():
        if dist == "tensorflow":  # never change TensorFlow: give it the runtime its code needs
            fix.append(f"protobuf>={version}")
        elif dist in installed:  # a leaf package: its previous releases were generated with older protobufs
            fix.append(f"{dist}<{installed[dist]}")
    return Finding(
        "protobuf",
        False,
        "; ".join(problems) + " (TFDS then imports only in part)",
        fix=fix,
        hint="" if fix else "Reinstall TensorFlow and protobuf together: pip install --force-reinstall tensorflow",
    )


def _protobuf_check() -> Finding:
    gencodes = {d: gencode_versions(d) for d in PROTO_DISTRIBUTIONS}
    installed = {d: v for d in PROTO_DISTRIBUTIONS if (v := installed_version(d))}
    return protobuf_finding(installed_version("protobuf"), gencodes, installed)


def _python_check(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Finding:
    text = ".".join(map(str, version))
    tested = " and ".join(f"{a}.{b}" for a, b in TESTED_PYTHON)
    if version[:2] < MINIMUM_PYTHON:
        return Finding("python", False, f"Python {text} is older than 3.11", hint=f"Use Python {tested}.")
    note = "" if version[:2] in TESTED_PYTHON else f" (CI tests {tested})"
    return Finding("python", True, f"Python {text}{note}")


def requirement_findings(requirements: Iterable[str], version_of: Callable[[str], str | None]) -> Finding:
    """Whether every requirement string (``name>=a,<b; marker``) is met by the installed versions."""
    from packaging.requirements import Requirement

    missing, wrong = [], []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        version = version_of(requirement.name)
        if version is None:
            missing.append(str(requirement))
        elif requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            wrong.append((str(requirement), version))
    if not missing and not wrong:
        return Finding("requirements", True, "every requirement of aigc-tf is installed, in range")
    parts = [f"{r} is not installed" for r in missing] + [f"{r} wanted, {v} installed" for r, v in wrong]
    return Finding("requirements", False, "; ".join(parts), fix=missing + [r for r, _ in wrong])


def _requirements_check() -> Finding:
    try:
        requirements = metadata.requires("aigc-tf") or []
    except metadata.PackageNotFoundError:
        return Finding("requirements", True, "aigc-tf is used from a clone (not pip-installed): not checked")
    return requirement_findings(requirements, installed_version)


# --------------------------------------------------------------------------- #
# Imports and the GPU, in a subprocess (a failed import cannot harm the caller).
# --------------------------------------------------------------------------- #

_PROBE = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
out = {}
try:
    import tensorflow as tf
    out["tensorflow"] = tf.__version__
    out["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    import keras
    out["keras"] = keras.__version__
    out["backend"] = keras.backend.backend()
    import tensorflow_datasets as tfds
    out["tfds"] = getattr(tfds, "__version__", "?")
    out["tfds_complete"] = hasattr(tfds, "builder") and hasattr(tfds, "core")
except Exception as error:
    out["error"] = f"{type(error).__name__}: {error}"
print("AIGC_PROBE" + json.dumps(out))
"""


def probe_imports(python: str = sys.executable, timeout: float = 180.0) -> dict:
    """Import TensorFlow, Keras and TFDS in a fresh ``python`` and report what happened.

    Returns:
        ``{"tensorflow", "keras", "backend", "gpus", "tfds", "tfds_complete"}`` as far as
        the imports got, ``"error"`` for an exception, and ``"stderr"``'s last lines.
    """
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"importing TensorFlow took more than {timeout:.0f} s"}
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("AIGC_PROBE")), None)
    out = (
        json.loads(line[len("AIGC_PROBE") :]) if line else {"error": f"the import probe exited with {done.returncode}"}
    )
    errors = [ln for ln in done.stderr.splitlines() if "Error" in ln]
    out["stderr"] = errors[-1] if errors else ""
    return out


def import_findings(probe: dict, gpu_count: int | None) -> list[Finding]:
    """Findings from :func:`probe_imports` and the number of GPUs ``nvidia-smi`` lists (None: no nvidia-smi)."""
    findings = []
    if "error" in probe:
        findings.append(Finding("imports", False, probe["error"], hint=probe.get("stderr", "")))
        return findings
    if probe.get("backend") != "tensorflow":
        findings.append(
            Finding(
                "keras",
                False,
                f"Keras {probe.get('keras')} runs on the {probe.get('backend')!r} backend",
                hint="The course needs TensorFlow's: set KERAS_BACKEND=tensorflow before Python starts.",
            )
        )
    if not probe.get("tfds_complete"):
        detail = f"tensorflow_datasets {probe.get('tfds')} imported only in part"
        findings.append(Finding("imports", False, detail, hint=probe.get("stderr", "")))
    else:
        versions = f"TensorFlow {probe['tensorflow']}, Keras {probe['keras']}, TFDS {probe['tfds']}"
        findings.append(Finding("imports", True, versions + " import completely"))
    findings.append(gpu_finding(len(probe.get("gpus", [])), gpu_count))
    return findings


def nvidia_gpu_count() -> int | None:
    """GPUs listed by ``nvidia-smi -L`` (None when there is no nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sum(1 for line in done.stdout.splitlines() if line.startswith("GPU "))


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules


def gpu_finding(tf_gpus: int, nvidia_gpus: int | None) -> Finding:
    """Whether TensorFlow sees the GPUs the machine has."""
    if nvidia_gpus and tf_gpus < nvidia_gpus:
        return Finding(
            "gpu",
            False,
            f"nvidia-smi lists {nvidia_gpus} GPU(s), TensorFlow sees {tf_gpus}",
            hint="TensorFlow's CUDA libraries do not match the driver. On Colab keep its own tensorflow "
            "(pip uninstall any other, restart); elsewhere: pip install 'tensorflow[and-cuda]'.",
        )
    if tf_gpus:
        return Finding("gpu", True, f"TensorFlow sees {tf_gpus} GPU(s): the gpu profile applies")
    where = " (Colab: Runtime > Change runtime type > T4 GPU)" if on_colab() else ""
    return Finding("gpu", True, f"no GPU: the cpu profile applies{where}")


# --------------------------------------------------------------------------- #
# Reporting and repairing.
# --------------------------------------------------------------------------- #


def check_environment(*, imports: bool = True) -> list[Finding]:
    """Every check; ``imports=False`` leaves out the (seconds-long) import probe."""
    findings = [_python_check(), _requirements_check(), _protobuf_check()]
    if imports:
        findings += import_findings(probe_imports(), nvidia_gpu_count())
    return findings


def _pip_install(requirements: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *requirements], capture_output=True, text=True, timeout=900
    )


def _distribution_name(requirement: str) -> str:
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].strip().lower()


def fix_environment(
    *,
    rounds: int = 4,
    install: Callable[[list[str]], subprocess.CompletedProcess] = _pip_install,
    check: Callable[[], list[Finding]] = lambda: check_environment(imports=False),
    echo: Callable[[str], None] = print,
) -> tuple[list[Finding], set[str]]:
    """Apply the fixes the static checks propose until they pass (or ``rounds`` run out).

    A step-down fix (``tensorflow-metadata<1.21.0``) is re-checked after pip ran and
    repeated from the newly installed version if that one fails too.

    Returns:
        ``(findings after the last round, distributions that pip changed)``.
    """
    changed: set[str] = set()
    findings = check()
    for _ in range(rounds):
        fixes = [f for finding in findings if not finding.ok for f in finding.fix]
        if not fixes:
            break
        echo(f"[aigc_tf] repairing: pip install {' '.join(fixes)}")
        done = install(fixes)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip().splitlines()[-3:]
            raise EnvironmentProblem(
                f"pip install {' '.join(fixes)} failed (exit {done.returncode}): {' '.join(tail)}. "
                "Without the network, install those versions from a wheel folder: pip install --no-index -f DIR ..."
            )
        changed |= {_distribution_name(f) for f in fixes}
        findings = check()
    return findings, changed


def _loaded(distribution: str, modules: Iterable[str]) -> bool:
    module = _MODULES.get(distribution, distribution.replace("-", "_"))
    return any(m == module or m.startswith(module + ".") for m in modules)


def ensure_ready(*, fix: bool | None = None, echo: Callable[[str], None] = print) -> list[Finding]:
    """The notebooks' install step: check (and on Colab repair) before TensorFlow is imported.

    Args:
        fix: repair what can be repaired (default: on Colab only; elsewhere the
            report says what ``python -m aigc_tf.doctor --fix`` would change).
        echo: where messages go.

    Returns:
        The findings of the static checks (no TensorFlow import).

    Raises:
        EnvironmentProblem: something is broken and was not (or could not be)
            repaired, or a repaired package had already been imported by this
            process, which must then restart (the message says how).
    """
    fix = on_colab() if fix is None else fix
    findings = check_environment(imports=False)
    changed: set[str] = set()
    if fix and any(not f.ok and f.fix for f in findings):
        findings, changed = fix_environment(echo=echo)
    failed = [f for f in findings if not f.ok]
    stale = sorted(d for d in changed if _loaded(d, list(sys.modules)))
    if stale:
        where = "Runtime > Restart session" if on_colab() else "restart the kernel"
        raise EnvironmentProblem(
            f"repaired {', '.join(sorted(changed))}, but this process had already imported {', '.join(stale)}: "
            f"{where}, then run the notebook again (the repair is kept)."
        )
    if failed:
        report = "\n".join(f.line() for f in failed)
        raise EnvironmentProblem(f"the environment cannot run the course:\n{report}")
    if changed:
        echo(f"[aigc_tf] repaired {', '.join(sorted(changed))}; no restart needed.")
    return findings


def tfds_problem(tfds_module) -> str | None:
    """Why ``tfds_module`` is unusable (half-imported), with the fix; None when it is complete."""
    if hasattr(tfds_module, "builder") and hasattr(tfds_module, "core"):
        return None
    finding = _protobuf_check()
    cause = finding.detail if not finding.ok else "an import inside tensorflow_datasets failed"
    fix = f"pip install {' '.join(repr(f) for f in finding.fix)}" if finding.fix else "python -m aigc_tf.doctor"
    return (
        f"tensorflow_datasets imported only in part: {cause}. Fix: {fix} "
        "(or run `python -m aigc_tf.doctor --fix`), then restart Python."
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m aigc_tf.doctor [--fix] [--no-imports]``: exit status 0 when every check passes."""
    parser = argparse.ArgumentParser(prog="python -m aigc_tf.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="repair what pip can repair, then check again")
    parser.add_argument("--no-imports", action="store_true", help="skip the import probe (seconds long)")
    args = parser.parse_args(argv)
    if args.fix:
        try:
            _, changed = fix_environment()
        except EnvironmentProblem as problem:
            print(f"[aigc_tf] {problem}")
            return 1
        if changed:
            print(f"[aigc_tf] changed: {', '.join(sorted(changed))} (restart any Python that had imported them)")
    findings = check_environment(imports=not args.no_imports)
    for finding in findings:
        print(finding.line())
    return 0 if all(f.ok for f in findings) else 1


if __name__ == "__main__":
    sys.exit(main())
