"""aigc_tf.doctor: the environment checks, the repairs, and the clear failure of a half-imported TFDS."""

import subprocess
import sys
import types

import pytest
from subprocess_utils import run_python_json

from aigc_tf import doctor
from aigc_tf.doctor import EnvironmentProblem, Finding


def test_importing_aigc_tf_and_the_doctor_loads_neither_tensorflow_nor_tfds():
    out = run_python_json(
        """
        import json, sys
        import aigc_tf, aigc_tf.doctor, aigc_tf.config, aigc_tf.recipes, aigc_tf.validation
        findings = aigc_tf.doctor.check_environment(imports=False)
        print(json.dumps({"loaded": sorted(m for m in ("tensorflow", "tensorflow_datasets", "keras")
                                           if m in sys.modules),
                          "names": [f.name for f in findings]}))
        """
    )
    assert out == {"loaded": [], "names": ["python", "requirements", "protobuf"]}


def test_colabs_conflict_is_found_and_the_repair_steps_the_leaf_package_down():
    # tensorflow-metadata 1.21.0 is generated with protobuf 6.31.1; Colab ships protobuf 5.29.6.
    gencodes = {
        "tensorflow": {"a_pb2.py": "5.28.3"},
        "tensorboard": {"b_pb2.py": "5.28.3"},
        "tensorflow-metadata": {"schema_pb2.py": "6.31.1", "path_pb2.py": "6.31.1"},
    }
    installed = {"tensorflow": "2.20.0", "tensorboard": "2.20.0", "tensorflow-metadata": "1.21.0"}
    finding = doctor.protobuf_finding("5.29.6", gencodes, installed)
    assert not finding.ok
    assert (
        "tensorflow-metadata 1.21.0 is generated with protobuf 6.31.1, newer than the runtime 5.29.6" in finding.detail
    )
    assert finding.fix == ["tensorflow-metadata<1.21.0"]  # TensorFlow and protobuf stay as Colab has them
    # After the repair (1.17.3 is generated with 4.25.6) the same runtime passes.
    gencodes["tensorflow-metadata"] = {"schema_pb2.py": "4.25.6"}
    installed["tensorflow-metadata"] = "1.17.3"
    repaired = doctor.protobuf_finding("5.29.6", gencodes, installed)
    assert repaired.ok and "tensorflow-metadata 1.17.3" in repaired.detail


def test_tensorflows_own_code_asks_for_a_newer_protobuf_never_a_different_tensorflow():
    finding = doctor.protobuf_finding("5.27.0", {"tensorflow": {"x_pb2.py": "5.28.3"}}, {"tensorflow": "2.20.0"})
    assert not finding.ok and finding.fix == ["protobuf>=5.28.3"]
    assert not doctor.protobuf_finding(None, {}, {}).ok
    # Equal versions load; a patch release newer than the code loads too.
    assert doctor.protobuf_finding("6.31.1", {"tensorflow-metadata": {"s_pb2.py": "6.31.1"}}, {}).ok
    assert doctor.protobuf_finding("6.31.10", {"tensorflow-metadata": {"s_pb2.py": "6.31.9"}}, {}).ok


def test_generated_code_versions_are_read_from_the_installed_files():
    versions = doctor.gencode_versions("tensorflow")
    assert versions and all(k.endswith("_pb2.py") for k in versions)
    assert all(v[0].isdigit() for v in versions.values())
    assert doctor.gencode_versions("no-such-distribution") == {}
    # This environment loads them (CI's Colab job checks that after its repair).
    assert doctor._protobuf_check().ok


def test_requirements_are_checked_against_their_ranges():
    versions = {"keras": "3.12.0", "numpy": "2.1.3"}.get
    finding = doctor.requirement_findings(
        ["keras<3.16,>=3.13", "numpy>=2.1", "scipy>=1.16", 'tomli; python_version < "3.0"'], versions
    )
    assert not finding.ok
    assert (
        "keras<3.16,>=3.13 wanted, 3.12.0 installed" in finding.detail
        and "scipy>=1.16 is not installed" in finding.detail
    )
    assert finding.fix == ["scipy>=1.16", "keras<3.16,>=3.13"] and "tomli" not in finding.detail
    assert doctor.requirement_findings(["numpy>=2.1"], versions).ok


def test_python_versions():
    assert not doctor._python_check((3, 10, 12)).ok
    assert doctor._python_check((3, 13, 0)).ok and "CI tests" not in doctor._python_check((3, 13, 0)).detail
    assert "CI tests 3.11 and 3.13" in doctor._python_check((3, 12, 1)).detail


def test_import_probe_findings_name_what_is_wrong():
    probe = {"tensorflow": "2.20.0", "keras": "3.13.2", "backend": "tensorflow", "gpus": [], "tfds": "4.9.10"}
    half = doctor.import_findings({**probe, "tfds_complete": False, "stderr": "VersionError: gencode 6.31.1"}, None)
    assert [f.ok for f in half] == [False, True]
    assert "imported only in part" in half[0].detail and "6.31.1" in half[0].hint
    jax = doctor.import_findings({**probe, "backend": "jax", "tfds_complete": True}, None)
    assert not jax[0].ok and "KERAS_BACKEND=tensorflow" in jax[0].hint
    failed = doctor.import_findings({"error": "ImportError: no tensorflow"}, None)
    assert len(failed) == 1 and not failed[0].ok
    assert not doctor.gpu_finding(0, 1).ok and "nvidia-smi lists 1" in doctor.gpu_finding(0, 1).detail
    assert doctor.gpu_finding(1, 1).ok and doctor.gpu_finding(0, None).ok and doctor.gpu_finding(0, 0).ok


@pytest.mark.slow
def test_this_environment_passes_every_check():
    """After CI's Colab job ran `doctor --fix`, this is the repaired Colab environment."""
    findings = doctor.check_environment()
    assert [f.name for f in findings] == ["python", "requirements", "protobuf", "imports", "gpu"]
    assert all(f.ok for f in findings), "\n".join(f.line() for f in findings)


def _finding(ok, fix=()):
    return Finding("protobuf", ok, "detail", fix=list(fix))


def test_fix_repeats_a_step_down_until_the_check_passes():
    states = iter([_finding(False, ["tensorflow-metadata<1.21.0"]), _finding(False, ["tensorflow-metadata<1.17.3"])])
    checks = [[next(states)], [next(states)], [_finding(True)]]
    installed = []

    def install(requirements):
        installed.append(requirements)
        return subprocess.CompletedProcess([], 0, "", "")

    findings, changed = doctor.fix_environment(install=install, check=lambda: checks.pop(0), echo=lambda _: None)
    assert installed == [["tensorflow-metadata<1.21.0"], ["tensorflow-metadata<1.17.3"]]
    assert changed == {"tensorflow-metadata"} and all(f.ok for f in findings)


def test_a_failed_pip_is_a_clear_error():
    def install(requirements):
        return subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version\nNo matching distribution")

    with pytest.raises(EnvironmentProblem, match=r"pip install protobuf>=6 failed \(exit 1\).*No matching"):
        doctor.fix_environment(install=install, check=lambda: [_finding(False, ["protobuf>=6"])], echo=lambda _: None)


def test_ensure_ready_asks_for_a_restart_only_when_a_repaired_package_was_loaded(monkeypatch):
    monkeypatch.setattr(doctor, "check_environment", lambda imports=False: [_finding(False, ["tensorflow-metadata<1"])])
    monkeypatch.setattr(doctor, "fix_environment", lambda echo: ([_finding(True)], {"tensorflow-metadata"}))
    for module in [m for m in sys.modules if m.split(".")[0] == "tensorflow_metadata"]:  # as if never imported
        monkeypatch.delitem(sys.modules, module)
    messages = []
    assert all(f.ok for f in doctor.ensure_ready(fix=True, echo=messages.append))
    assert messages == ["[aigc_tf] repaired tensorflow-metadata; no restart needed."]
    monkeypatch.setitem(sys.modules, "tensorflow_metadata", types.ModuleType("tensorflow_metadata"))
    with pytest.raises(EnvironmentProblem, match="had already imported tensorflow-metadata: restart the kernel"):
        doctor.ensure_ready(fix=True, echo=messages.append)
    # Not repaired (fix=False: not on Colab): the failing check is reported with its fix.
    with pytest.raises(EnvironmentProblem, match=r"FAIL.*\n.*fix: pip install 'tensorflow-metadata<1'"):
        doctor.ensure_ready(fix=False)


def test_a_half_imported_tfds_fails_clearly_naming_the_fix(monkeypatch):
    from aigc_tf.data import import_tfds, load_images

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.ModuleType("tensorflow_datasets"))
    with pytest.raises(EnvironmentProblem, match=r"imported only in part.*python -m aigc_tf\.doctor --fix"):
        import_tfds()
    with pytest.raises(ImportError, match="imported only in part"):
        load_images("mnist", "train[:8]")


def test_the_command_line_reports_and_exits_zero_when_all_is_well():
    done = subprocess.run(
        [sys.executable, "-m", "aigc_tf.doctor", "--no-imports"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["python", "requirements", "protobuf"]
    assert all(line.startswith("[ok  ]") for line in lines)
