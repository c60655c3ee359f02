"""VAE tests that need a fresh Python process.

* Save/load: the reloading process imports only ``aigc_tf`` (catches a class or
  function that is not registered as serializable).
* MirroredStrategy: logical CPUs must be configured before TensorFlow runs any op.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from subprocess_utils import run_python_json

from aigc_tf.vae import VAE

SMALL = dict(image_shape=(16, 16, 1), latent_dim=4, filters=(8, 16), dense_units=32)


def test_save_load_round_trip_restores_outputs_and_optimizer(tmp_path, bars):
    keras.utils.set_random_seed(0)
    model = VAE(**SMALL, beta=0.7, seed=4)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    x = bars(16)
    model.fit(x, batch_size=8, epochs=1, verbose=0)  # 2 Adam steps
    path = tmp_path / "vae.keras"
    model.save(path)
    z_mean, z_log_var = model.encoder(x)
    np.savez(
        tmp_path / "ref.npz",
        x=x,
        z_mean=np.asarray(z_mean),
        z_log_var=np.asarray(z_log_var),
        logits=np.asarray(model.decoder(z_mean)),
        **{f"opt{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)},
    )
    # The child returns numbers (largest differences), so a failure says by how much.
    out = run_python_json(
        """
        import json, sys, warnings
        import numpy as np, keras
        import aigc_tf.vae  # registers the classes; nothing else is imported

        def gap(a, b):
            return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

        path, ref = sys.argv[1], np.load(sys.argv[2])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = keras.models.load_model(path)
        z_mean, z_log_var = model.encoder(ref["x"])
        logits = model.decoder(z_mean)  # before training on
        opt = [np.asarray(v) for v in model.optimizer.variables]
        iterations = int(model.optimizer.iterations)
        history = model.fit(ref["x"], batch_size=8, epochs=1, verbose=0).history
        bare = keras.models.load_model(path, compile=False)
        print(json.dumps({
            "cls": type(model).__name__, "config": model.get_config(),
            "z_mean_gap": gap(z_mean, ref["z_mean"]), "z_log_var_gap": gap(z_log_var, ref["z_log_var"]),
            "logits_rel_gap": gap(logits, ref["logits"]) / float(np.abs(ref["logits"]).max()),
            "n_opt": [len(opt), sum(k.startswith("opt") for k in ref.files)],
            "opt_gap": max(gap(v, ref[f"opt{i}"]) for i, v in enumerate(opt)),
            "optimizer": type(model.optimizer).__name__, "lr": float(model.optimizer.learning_rate),
            "iterations": iterations, "after_fit": int(model.optimizer.iterations), "history": history,
            "bare_gap": gap(bare.encoder(ref["x"])[0], ref["z_mean"]),
            "compile_warnings": [str(w.message) for w in caught if "compile" in str(w.message)],
        }))
        """,
        str(path),
        str(tmp_path / "ref.npz"),
    )
    assert out["cls"] == "VAE"
    assert out["config"] == json.loads(json.dumps(model.get_config()))
    for key, tolerance in (("z_mean_gap", 1e-6), ("z_log_var_gap", 1e-6), ("logits_rel_gap", 1e-5), ("bare_gap", 1e-6)):
        assert out[key] <= tolerance, f"reloaded model differs by {out[key]} ({key})"
    assert out["compile_warnings"] == []  # the compile state was restored, not skipped
    assert out["optimizer"] == "Adam" and out["lr"] == pytest.approx(2e-3)
    assert out["n_opt"][0] == out["n_opt"][1] > 2, out["n_opt"]
    assert out["opt_gap"] == 0, f"optimizer state differs by {out['opt_gap']}"
    assert out["iterations"] == 2 and out["after_fit"] == 4  # training resumes
    assert sorted(out["history"]) == ["kl_loss", "loss", "reconstruction_loss"]
    assert np.isfinite(out["history"]["loss"]).all(), out["history"]


def test_mirrored_strategy_step_equals_single_device():
    # The real model, noise included: both runs draw the same 8 x latent noise matrix.
    out = run_python_json(
        """
        import json
        import tensorflow as tf

        # Split the CPU in two BEFORE any TensorFlow op runs.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

        import keras, numpy as np
        from aigc_tf.vae import VAE

        SMALL = dict(image_shape=(16, 16, 1), latent_dim=4, filters=(8, 16), dense_units=32)
        rng = np.random.default_rng(0)
        x = (rng.random((8, 16, 16, 1)) < 0.3).astype("float32")

        keras.utils.set_random_seed(1)
        single = VAE(**SMALL, seed=0)
        start = single.get_weights()
        single.compile(optimizer=keras.optimizers.SGD(0.05))
        # 8 + 7 images: the last batch of 7 arrives on the replicas as 4 + 3.
        x = np.concatenate([x, (rng.random((7, 16, 16, 1)) < 0.3).astype("float32")])
        h1 = single.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            mirrored = VAE(**SMALL, seed=0)
            mirrored.set_weights(start)
            mirrored.compile(optimizer=keras.optimizers.SGD(0.05))
        h2 = mirrored.fit(x, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        diff = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), mirrored.get_weights()))
        moved = max(float(np.abs(a - b).max()) for a, b in zip(start, single.get_weights()))

        # Each replica keeps its own rows of the global noise: the two halves differ.
        @tf.function
        def draw():
            def fn():
                ctx = tf.distribute.get_replica_context()
                zeros = tf.zeros((4, 3))
                return mirrored.sampling((zeros, zeros), offset=4 * ctx.replica_id_in_sync_group, global_batch=8)
            return strategy.run(fn)
        halves = [np.asarray(t) for t in strategy.experimental_local_results(draw())]

        # Adam (slot variables) and several steps under the strategy.
        with strategy.scope():
            adam = VAE(**SMALL, seed=0)
            adam.compile(optimizer=keras.optimizers.Adam(1e-3))
        h3 = adam.fit(x, batch_size=4, epochs=2, verbose=0).history
        print(json.dumps({
            "replicas": strategy.num_replicas_in_sync, "diff": diff, "moved": moved,
            "h1": h1, "h2": h2, "h3": h3, "halves_gap": float(np.abs(halves[0] - halves[1]).max()),
        }))
        """
    )
    assert out["replicas"] == 2
    assert out["moved"] > 1e-3, f"the step moved the weights by {out['moved']} only"
    # Sum / global batch and per-replica noise rows, also for the uneven last batch
    # (global 7, replicas 4 + 3): the same two updates as one device.
    assert out["diff"] < 1e-5, f"two replicas differ from one device by {out['diff']}"
    assert out["halves_gap"] > 0.1, f"the replicas' noise rows differ by {out['halves_gap']} only"
    for key in ("loss", "reconstruction_loss", "kl_loss"):  # trackers unscaled
        assert out["h2"][key][0] == pytest.approx(out["h1"][key][0], rel=1e-5), key
    assert sorted(out["h3"]) == ["kl_loss", "loss", "reconstruction_loss"]
    assert all(np.isfinite(v).all() for v in out["h3"].values()), out["h3"]
