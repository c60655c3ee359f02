"""The version ranges we claim are the ones CI runs: Colab's versions at one end, constraints.txt's at the other."""

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[Requirement(name).name.lower().replace("_", "-")] = version
    return out


def requirements(path: Path) -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


COLAB = pins(ROOT / ".ci" / "colab-versions.txt")
MAIN = pins(ROOT / "constraints.txt")


def test_the_colab_versions_file_names_its_source_and_python():
    header = [line for line in (ROOT / ".ci" / "colab-versions.txt").read_text().splitlines() if line.startswith("#")]
    assert any(line.startswith("# source: googlecolab/backend-info") and "20" in line for line in header)
    assert any(line.startswith("# python: 3.") for line in header)
    for name in ("tensorflow", "keras", "numpy", "protobuf", "tensorflow-metadata", "tensorflow-datasets"):
        assert name in COLAB, name


@pytest.mark.parametrize("requirement", requirements(ROOT / "requirements.txt"), ids=str)
def test_each_range_holds_the_version_of_each_ci_job(requirement):
    """Both ends are run: the Colab job has Colab's version, the main job constraints.txt's."""
    name = requirement.name.lower().replace("_", "-")
    assert requirement.specifier, f"{name}: give a range whose ends CI runs"
    lower = [s.version for s in requirement.specifier if s.operator == ">="]
    upper = [s.version for s in requirement.specifier if s.operator == "<"]
    assert lower and upper, f"{requirement}: a lower and an upper end"
    main = MAIN.get(name)
    assert main and requirement.specifier.contains(main), f"{requirement} must hold the main job's {main}"
    colab = COLAB.get(name)
    if colab is not None:
        assert requirement.specifier.contains(colab), f"{requirement} must hold Colab's {colab}"
        # The lower end is Colab's (or the main job's, where Colab's is newer): not an untested older release.
        floor = min(colab, main, key=lambda v: tuple(int(p) for p in v.split(".")[:3] if p.isdigit()))
        assert lower[0].split(".")[:2] == floor.split(".")[:2], f"{requirement}: lower end {lower[0]}, tested {floor}"


def test_pyproject_declares_the_same_ranges_as_requirements():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name: str(Requirement(r).specifier) for r in project["dependencies"]}
    listed = {r.name: str(r.specifier) for r in requirements(ROOT / "requirements.txt")}
    assert declared == {name: spec for name, spec in listed.items() if name in declared}
    assert {"tensorflow", "keras", "tensorflow-datasets", "numpy"} <= set(declared)
    assert project["requires-python"] == ">=3.11"


def test_the_refresh_script_intersects_a_freeze_with_this_environment(tmp_path):
    freeze = tmp_path / "pip-freeze.gpu.txt"
    freeze.write_text(
        "# a comment\nnumpy==2.1.3\ntensorflow==2.20.0\nkeras==3.13.2\nnot-a-course-package==1.0\nx @ git+https://e/x\n"
    )
    out = tmp_path / "versions.txt"
    script = ROOT / "scripts" / "refresh_colab_versions.py"
    args = [sys.executable, str(script), str(freeze), "--source", "test freeze, 2026-12-01", "--python", "3.13.15"]
    done = subprocess.run([*args, "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert "# source: test freeze, 2026-12-01" in lines and "# python: 3.13.15" in lines
    assert [line for line in lines if not line.startswith("#")] == [
        "keras==3.13.2",
        "numpy==2.1.3",
        "tensorflow==2.20.0",
    ]
    bad = subprocess.run([*args[:-1], "3.x", "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--python='3.x'" in bad.stderr
