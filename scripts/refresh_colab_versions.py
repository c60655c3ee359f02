#!/usr/bin/env python
"""Refresh ``.ci/colab-versions.txt`` from a Colab ``pip freeze``.

Colab publishes the ``pip freeze`` of its runtimes in
https://github.com/googlecolab/backend-info (``pip-freeze.gpu.txt``). CI's Colab
job installs, in a Python of Colab's minor version, Colab's versions of every
package the course touches: the packages of this project's environment
(``make install``: requirements.txt and what they pull in) that Colab also
ships. Run it with the project's environment active::

    .venv/bin/python scripts/refresh_colab_versions.py pip-freeze.gpu.txt \\
        --source "googlecolab/backend-info pip-freeze.gpu.txt, commit <sha>, <date>" \\
        --python 3.13.15

Packages that are installed from a URL on Colab (``name @ git+...``) are left out:
their released versions are not what Colab runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / ".ci" / "colab-versions.txt"
# Never pinned: the project itself, and tools Colab does not ship that the main job pins.
SKIP = {"aigc-tf"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(path: Path) -> dict[str, str]:
    """``{normalised name: "Name==version"}`` for each pinned line of a freeze."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "==" in line:
            pins[normalise(line.split("==")[0])] = line
    return pins


def installed_names() -> set[str]:
    return {normalise(d.metadata["Name"]) for d in metadata.distributions()} - SKIP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("freeze", type=Path, help="Colab's pip freeze (pip-freeze.gpu.txt)")
    parser.add_argument("--source", required=True, help="where the freeze comes from, with its commit and date")
    parser.add_argument("--python", required=True, help="Colab's Python version, e.g. 3.13.15")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+(\.\d+)?", args.python):
        parser.error(f"--python={args.python!r}; expected a version such as 3.13.15")
    colab = read_freeze(args.freeze)
    names = sorted(installed_names() & colab.keys())
    if "tensorflow" not in names:
        parser.error("run this with the project's environment active (make install): tensorflow is not installed")
    lines = [
        "# Colab's versions of the packages the course touches (the project's environment, `make install`,",
        "# intersected with Colab's published pip freeze). CI's Colab job installs them in a Python of",
        "# Colab's minor version, then `pip install -e .` as the notebooks' install cell does.",
        f"# source: {args.source}",
        f"# python: {args.python}",
        "# refresh: scripts/refresh_colab_versions.py",
        *[colab[name] for name in names],
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(names)} pins to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
