#!/usr/bin/env python
"""Write the standard first and last cells of every notebook in ``notebooks/``.

Each notebook starts with

1. a markdown cell with the "Open in Colab" badge, and
2. a setup code cell that makes ``aigc_tf`` importable (from a clone's
   ``notebooks/`` folder, after ``pip install -e .``, or on Colab by cloning
   ``aigc_tf.REPO_URL`` and installing it), checks the environment
   (``aigc_tf.doctor.ensure_ready``: on Colab it repairs known conflicts), prints
   the run profile, the hardware and where checkpoints go, hints at enabling a GPU
   when none is visible, and prints the parameter counts of the recipes the notebook
   trains at every profile (``metadata.aigc_tf.recipes``),

then, after the notebook's title cell, a markdown cell "About this notebook" (tagged
``aigc-about``) when its metadata has ``aigc_tf.objectives``: the learning
objectives (``aigc_tf.objectives``, a list of strings), the prerequisites
(``aigc_tf.prerequisites``, a list of strings) and the time it takes at each
profile: the cpu time read from the committed wall-time output of the last cell
(the last cpu run), the others from ``aigc_tf.minutes`` (``{"gpu": 4}``) only if
given (measured), and ends with a cell printing the wall time of the run. The cells are tagged
``aigc-header`` / ``aigc-footer`` and generated from ``aigc_tf.REPO_URL`` —
the one place the repository's address lives. Run this script after changing
it; ``tests/test_notebooks.py`` fails when a notebook is out of date.
Outputs of a cell whose source did not change are kept.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from aigc_tf import REPO_URL  # noqa: E402

HEADER_TAG = "aigc-header"
FOOTER_TAG = "aigc-footer"
ABOUT_TAG = "aigc-about"
WALL_TIME = re.compile(r"wall time: \d+ s \(([\d.]+) min\) in the '(\w+)' profile")

SETUP_SOURCE = """\
# Setup: make `aigc_tf` importable here, in Colab, or after `pip install -e .`; check the environment
REPO_URL = "{repo_url}"
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("aigc_tf") is None:
    if Path("../aigc_tf").is_dir():  # a clone: notebooks/ sits next to the package
        sys.path.insert(0, str(Path("..").resolve()))
    else:  # Colab or a bare Jupyter: fetch the course (code + offline data) and install it
        if not Path("aigc-tf").is_dir():
            subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "aigc-tf"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "aigc-tf"], check=True)
        sys.path.insert(0, str(Path("aigc-tf").resolve()))

from aigc_tf.doctor import ensure_ready

ensure_ready()  # before TensorFlow loads: repairs known conflicts on Colab, says when to restart

from aigc_tf.config import gpu_names, print_environment, start_clock

start_clock()
print_environment()
if not gpu_names():
    print("\\nNo GPU visible. On Colab: Runtime > Change runtime type > T4 GPU, then run all again.\\n"
          "On a laptop this is fine: the 'cpu' profile is sized for about 10 minutes per notebook.")"""

# Added to the setup cell of a notebook whose metadata lists the recipes it trains
# (``metadata.aigc_tf.recipes``): their sizes at every profile, the gpu one included.
SIZES_SOURCE = """

from aigc_tf.recipes import print_parameter_counts

print_parameter_counts({kinds!r});"""

FOOTER_SOURCE = """\
from aigc_tf.config import print_wall_time

print_wall_time();"""


def colab_url(notebook: Path) -> str:
    owner_repo = REPO_URL.removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{notebook.name}"


def badge_source(notebook: Path) -> str:
    return (
        f'<a href="{colab_url(notebook)}" target="_parent">'
        '<img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'
    )


def setup_source(notebook: Path) -> str:
    """The setup cell of ``notebook`` (its recipes' parameter counts, if its metadata lists recipes)."""
    kinds = nbformat.read(notebook, as_version=4).metadata.get("aigc_tf", {}).get("recipes", [])
    source = SETUP_SOURCE.format(repo_url=REPO_URL)
    return source + SIZES_SOURCE.format(kinds=list(kinds)) if kinds else source


def expected_cells(notebook: Path) -> tuple[list, list]:
    """The header cells (badge, setup) and footer cell ``notebook`` must have."""
    meta = {"tags": [HEADER_TAG]}
    header = [
        nbformat.v4.new_markdown_cell(badge_source(notebook), metadata=dict(meta)),
        nbformat.v4.new_code_cell(setup_source(notebook), metadata=dict(meta)),
    ]
    footer = [nbformat.v4.new_code_cell(FOOTER_SOURCE, metadata={"tags": [FOOTER_TAG]})]
    return header, footer


def about_source(nb) -> str | None:
    """The "About this notebook" cell of ``nb`` (objectives, prerequisites, time), or None."""
    meta = nb.metadata.get("aigc_tf", {})
    if not meta.get("objectives"):
        return None
    lines = ["**About this notebook.** After it you can:", ""]
    lines += [f"* {item}" for item in meta["objectives"]]
    lines += ["", "**Prerequisites:**", ""]
    lines += [f"* {item}" for item in meta.get("prerequisites", ["none"])]
    times = []
    footer = [c for c in nb.cells if _tagged(c, FOOTER_TAG)]
    text = "".join(o.get("text", "") for c in footer for o in c.get("outputs", []))
    match = WALL_TIME.search(text)
    if match and match.group(2) == "cpu":
        times.append(f"about {float(match.group(1)):.0f} min at the `cpu` profile (its last committed run)")
    for profile, minutes in meta.get("minutes", {}).items():
        times.append(f"about {minutes} min at the `{profile}` profile")
    if not any("`gpu`" in t for t in times):
        times.append("the `gpu` profile's time is not measured yet")
    lines += ["", "**Time:** " + "; ".join(times) + "."]
    return "\n".join(lines)


def _tagged(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _keep_outputs(new_cells, old_cells):
    """Reuse an old cell (with its outputs) when its source is unchanged."""
    old_by_source = {c.source: c for c in old_cells}
    return [old_by_source.get(c.source, c) for c in new_cells]


def sync(notebook: Path) -> bool:
    """Rewrite ``notebook``'s header/footer cells; return True if it changed."""
    nb = nbformat.read(notebook, as_version=4)
    header, footer = expected_cells(notebook)
    old_header = [c for c in nb.cells if _tagged(c, HEADER_TAG)]
    old_footer = [c for c in nb.cells if _tagged(c, FOOTER_TAG)]
    body = [c for c in nb.cells if not any(_tagged(c, tag) for tag in (HEADER_TAG, FOOTER_TAG, ABOUT_TAG))]
    about = about_source(nb)
    if about is not None:  # right after the title cell
        body = body[:1] + [nbformat.v4.new_markdown_cell(about, metadata={"tags": [ABOUT_TAG]})] + body[1:]
    cells = _keep_outputs(header, old_header) + body + _keep_outputs(footer, old_footer)
    if [c.source for c in cells] == [c.source for c in nb.cells]:
        return False
    nb.cells = cells
    nbformat.write(nb, notebook)
    return True


def main() -> int:
    for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        print(("updated " if sync(notebook) else "ok      ") + notebook.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
