"""Run-profile selection and the environment report."""

import pytest

from aigc_tf import config


@pytest.mark.parametrize("value, expected", [("smoke", "smoke"), ("cpu", "cpu"), ("gpu", "gpu"), (" CPU ", "cpu")])
def test_profile_from_environment(monkeypatch, value, expected):
    monkeypatch.setenv("AIGC_PROFILE", value)
    assert config.get_profile() == expected


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"AIGC_PROFILE='fast'.*smoke, cpu, gpu"):
        config.get_profile()


@pytest.mark.parametrize("gpus, expected", [([], "cpu"), (["/physical_device:GPU:0"], "gpu")])
def test_default_profile_follows_the_hardware(monkeypatch, gpus, expected):
    monkeypatch.delenv("AIGC_PROFILE", raising=False)
    monkeypatch.setattr(config, "gpu_names", lambda: gpus)
    assert config.get_profile() == expected


@pytest.mark.parametrize(
    "env, expected",
    [({}, False), ({"AIGC_OFFLINE": "1"}, True), ({"CI": "true"}, True), ({"AIGC_OFFLINE": "no"}, False)],
)
def test_offline_flag(monkeypatch, env, expected):
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert config.is_offline() is expected


def test_pick_returns_the_value_of_the_profile(monkeypatch):
    for profile, expected in (("smoke", 1), ("cpu", 5), ("gpu", 30)):
        monkeypatch.setenv("AIGC_PROFILE", profile)
        assert config.pick(smoke=1, cpu=5, gpu=30) == expected
    assert config.pick(smoke="a", cpu="b", gpu="c", profile="gpu") == "c"
    with pytest.raises(ValueError, match="profile='tpu'"):
        config.pick(smoke=1, cpu=2, gpu=3, profile="tpu")
    with pytest.raises(TypeError):
        config.pick(smoke=1, cpu=2)  # every profile must be sized


def test_describe_reports_versions_and_hardware(monkeypatch, capsys):
    import keras
    import tensorflow as tf

    monkeypatch.setenv("AIGC_PROFILE", "smoke")
    info = config.describe()
    assert info["profile"] == "smoke"
    assert info["tensorflow"] == tf.__version__ and info["keras"] == keras.__version__
    assert info["cpu_cores"] >= 1 and info["gpus"]
    config.print_environment()
    out = capsys.readouterr().out
    assert "profile: smoke" in out and f"tensorflow: {tf.__version__}" in out


def test_wall_clock(monkeypatch, capsys):
    monkeypatch.setattr(config, "_CLOCK_START", None)
    with pytest.raises(RuntimeError, match="start_clock"):
        config.print_wall_time()
    config.start_clock()
    seconds = config.print_wall_time()
    assert 0 <= seconds < 60
    assert "wall time:" in capsys.readouterr().out
