"""Sessions that end: the runs folder, restoring a checkpoint in place, fit_resumable, and AIGC_MAX_STEPS."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_lm, lm_ids

from aigc_tf import config
from aigc_tf.callbacks import TimeBudget
from aigc_tf.training import fit_resumable, random_state, restore_checkpoint, save_checkpoint


def test_runs_dir_is_the_variable_else_drive_on_colab_else_none(monkeypatch, tmp_path):
    monkeypatch.delenv("AIGC_RUNS_DIR", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert config.runs_dir() is None
    monkeypatch.setattr(config, "COLAB_DRIVE", tmp_path / "MyDrive")
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-20260819")
    assert config.runs_dir() is None  # Colab, but Drive is not mounted
    (tmp_path / "MyDrive").mkdir()
    assert config.runs_dir() == tmp_path / "MyDrive" / "aigc-tf-runs"
    monkeypatch.setenv("AIGC_RUNS_DIR", str(tmp_path / "mine"))
    assert config.runs_dir() == tmp_path / "mine"


def test_max_steps_is_a_positive_integer(monkeypatch):
    monkeypatch.delenv("AIGC_MAX_STEPS", raising=False)
    assert config.max_steps() is None
    monkeypatch.setenv("AIGC_MAX_STEPS", "3")
    assert config.max_steps() == 3
    for bad in ("0", "-1", "two", "2.5"):
        monkeypatch.setenv("AIGC_MAX_STEPS", bad)
        with pytest.raises(ValueError, match=f"AIGC_MAX_STEPS='{bad}'; expected a positive integer"):
            config.max_steps()


def _lm(tiny_gpt, seed=0):
    model = tiny_gpt(seed=seed)
    compile_lm(model, keras.optimizers.Adam(1e-2))
    model(lm_ids((1, 8)))
    return model


def _data(seed=0):
    x = lm_ids((64, 8), seed=seed)
    return tf.data.Dataset.from_tensor_slices((x, np.roll(x, -1, axis=1))).batch(8).repeat()


def test_a_time_budget_stops_at_the_step_cap(monkeypatch, tiny_gpt):
    monkeypatch.setenv("AIGC_MAX_STEPS", "3")
    model = _lm(tiny_gpt)
    model.fit(_data(), epochs=10**6, steps_per_epoch=1, verbose=0, callbacks=[TimeBudget(3600, verbose=False)])
    assert int(model.optimizer.iterations) == 3


def test_restore_checkpoint_puts_weights_optimizer_and_random_streams_back_in_place(tmp_path, tiny_gpt):
    trained = _lm(tiny_gpt, seed=0)
    trained.fit(_data(), epochs=1, steps_per_epoch=5, verbose=0)
    trained.generate("to", 3, seed=None)  # moves the sampling stream
    save_checkpoint(trained, tmp_path, step=5)
    fresh = _lm(tiny_gpt, seed=7)  # other weights, other streams, an unbuilt optimizer
    assert not fresh.optimizer.built
    assert restore_checkpoint(fresh, tmp_path) == {"step": 5}
    for a, b in zip(trained.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(trained.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(random_state(trained), random_state(fresh)):
        np.testing.assert_array_equal(a, b)
    assert trained.generate("to", 6) == fresh.generate("to", 6)
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        restore_checkpoint(fresh, tmp_path / "empty")


class _Disconnect(keras.callbacks.Callback):
    """Ends the session (an exception, as a lost runtime would) when epoch ``at`` begins."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("session lost")


class _FakeClock:
    """One 'second' per reading: budgets end after a known amount of work."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def _budget():
    return TimeBudget(60, peak_lr=1e-2, final_fraction=0.1, verbose=False, clock=_FakeClock())


def test_fit_resumable_carries_a_run_across_a_lost_session(tmp_path, tiny_gpt, capsys):
    first = _lm(tiny_gpt)
    with pytest.raises(KeyboardInterrupt):
        fit_resumable(
            first,
            _data(),
            _budget(),
            run="gpt",
            directory=tmp_path,
            every_seconds=0.0,
            steps_per_epoch=2,
            callbacks=[_Disconnect(at=3)],
        )
    saved_steps = int(first.optimizer.iterations)
    assert saved_steps == 6 and (tmp_path / "gpt" / "checkpoint.keras").exists()
    saved = [w.numpy() for w in first.weights]

    second, budget = _lm(tiny_gpt), _budget()  # the notebook run again: the same setup
    seen = {}

    class Look(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["iterations"] = int(self.model.optimizer.iterations)
            seen["same"] = all(np.array_equal(a, b.numpy()) for a, b in zip(saved, self.model.weights))
            seen["spent"] = budget.spent

    log = fit_resumable(second, _data(), budget, run="gpt", directory=tmp_path, steps_per_epoch=2, callbacks=[Look()])
    assert "resuming 'gpt' at step 6" in capsys.readouterr().out
    assert seen["iterations"] == 6 and seen["same"] and seen["spent"] > 0
    # The log covers the whole run: the three epochs before the loss, then the rest, time rising throughout.
    assert log["step"][:3] == [2, 4, 6] and log["step"][-1] == int(second.optimizer.iterations) > 6
    assert np.all(np.diff(log["seconds"]) > 0) and log["seconds"][-1] >= 60
    # The learning rate carried on along the cosine: it ended near the final fraction.
    assert float(second.optimizer.learning_rate) < 0.2 * 1e-2

    # A finished run is not trained again; a run of another setup starts afresh.
    finished = int(second.optimizer.iterations)
    third = _lm(tiny_gpt)
    fit_resumable(third, _data(), _budget(), run="gpt", directory=tmp_path, steps_per_epoch=2)
    assert int(third.optimizer.iterations) == finished
    other = tiny_gpt(seed=0, embed_dim=8)
    compile_lm(other, keras.optimizers.Adam(1e-2))
    other(lm_ids((1, 8)))
    fit_resumable(other, _data(), _budget(), run="gpt", directory=tmp_path, steps_per_epoch=2)
    assert "holds a run of another setup: starting afresh" in capsys.readouterr().out


def test_fit_resumable_without_a_runs_folder_is_plain_fit(monkeypatch, tiny_gpt):
    monkeypatch.delenv("AIGC_RUNS_DIR", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    model = _lm(tiny_gpt)
    log = fit_resumable(model, _data(), _budget(), run="gpt", steps_per_epoch=2)
    assert log["step"][-1] == int(model.optimizer.iterations) > 0
