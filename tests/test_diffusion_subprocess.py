"""DiffusionModel tests that need a fresh Python process.

* Save/load: the reloading process imports only ``aigc_tf.diffusion`` (catches a class
  that is not registered as serializable), and training resumes there bit for bit.
* MirroredStrategy: logical CPUs must be configured before TensorFlow runs any op.
"""

from __future__ import annotations

import json

import keras
import numpy as np
from subprocess_utils import run_python_json

from aigc_tf.diffusion import DiffusionModel, NoiseSchedule
from aigc_tf.streams import random_variables

TINY = dict(base_filters=8, channel_mults=(1, 2), attention=True, num_heads=2)


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 8, 8, 1)).astype("float32")


def _state(model) -> dict:
    """Every variable of the model (weights, EMA averages, stream states) and of its optimizer."""
    return {
        **{f"v{i}": np.array(v) for i, v in enumerate(model.variables)},
        **{f"o{i}": np.array(v) for i, v in enumerate(model.optimizer.variables)},
    }


def test_save_load_round_trip_restores_everything_and_resumes_bit_for_bit(tmp_path):
    """fit 4 steps, saving after 2 (a callback, so the run itself is uninterrupted); the file
    loads in a fresh interpreter with the same samples and state, and 2 more steps there give
    the uninterrupted run's weights, Adam slots, EMA averages and stream states exactly."""
    x, y = _images(16), np.arange(16) % 3
    names = {}
    for name, extra, fit_args in (("uncond", {}, (x,)), ("cond", dict(num_classes=3, label_dropout=0.5), (x, y))):
        keras.utils.set_random_seed(0)
        model = DiffusionModel(
            (8, 8, 1), **TINY, schedule=NoiseSchedule(50), seed=5, sampling_jit_compile=False, **extra
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        cond = name == "cond"
        saved = {}

        def save_after_first_epoch(epoch, logs, model=model, name=name, cond=cond, saved=saved):
            if epoch != 0:
                return
            model.save(tmp_path / f"{name}.keras")
            kw = dict(labels=np.array([0, 1, 2, 0]), guidance=2.0) if cond else {}
            saved["ddim"] = model.generate(4, seed=0, steps=5, **kw)
            saved["ddpm"] = model.generate(4, seed=1, sampler="ddpm", **kw)
            saved.update({f"saved_{k}": v for k, v in _state(model).items()})

        callback = keras.callbacks.LambdaCallback(on_epoch_end=save_after_first_epoch)
        model.fit(*fit_args, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[callback])
        ema_gap = max(
            float(np.abs(a - b).max()) for a, b in zip(model.unet_average.averages, model.unet_average.variables)
        )
        assert ema_gap > 1e-6, "the EMA holds the raw weights: no second set of weights"
        final = {f"final_{k}": v for k, v in _state(model).items()}
        after = model.generate(
            4, steps=3, guidance=0.0 if cond else 1.0
        )  # seed=None: the sampling stream, at the same state in the child
        np.savez(tmp_path / f"{name}.npz", x=x, y=y, after=after, **saved, **final)
        names[name] = (
            [v.name for v in model.variables],
            len(model.optimizer.variables),
            len(random_variables(model)),
            json.loads(json.dumps(model.get_config())),
        )

    out = run_python_json(
        """
        import json, sys
        import numpy as np, keras
        import aigc_tf.diffusion  # registers the classes; nothing else is imported

        def gap(a, b):
            return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

        def state_gaps(model, ref, prefix):
            v = [gap(a, ref[f"{prefix}_v{i}"]) for i, a in enumerate(model.variables)]
            o = [gap(a, ref[f"{prefix}_o{i}"]) for i, a in enumerate(model.optimizer.variables)]
            return max(v), max(o)

        folder, result = sys.argv[1], {}
        for name in ("uncond", "cond"):
            ref = np.load(f"{folder}/{name}.npz")
            model = keras.models.load_model(f"{folder}/{name}.keras")
            cond = name == "cond"
            kw = dict(labels=np.array([0, 1, 2, 0]), guidance=2.0) if cond else {}
            r = {"cls": type(model).__name__, "config": model.get_config(),
                 "names": [v.name for v in model.variables], "n_opt": len(model.optimizer.variables),
                 "optimizer": type(model.optimizer).__name__, "iterations": int(model.optimizer.iterations)}
            r["saved_var_gap"], r["saved_opt_gap"] = state_gaps(model, ref, "saved")
            r["ddim_gap"] = gap(model.generate(4, seed=0, steps=5, **kw), ref["ddim"])
            r["ddpm_gap"] = gap(model.generate(4, seed=1, sampler="ddpm", **kw), ref["ddpm"])
            args = (ref["x"], ref["y"]) if cond else (ref["x"],)
            r["history"] = model.fit(*args, batch_size=8, epochs=1, shuffle=False, verbose=0).history
            r["final_var_gap"], r["final_opt_gap"] = state_gaps(model, ref, "final")
            r["after_gap"] = gap(model.generate(4, steps=3, guidance=0.0 if cond else 1.0), ref["after"])
            r["after_iterations"] = int(model.optimizer.iterations)
            result[name] = r
        print(json.dumps(result))
        """,
        str(tmp_path),
    )
    for name in ("uncond", "cond"):
        r, (var_names, n_opt, n_streams, config) = out[name], names[name]
        assert r["cls"] == "DiffusionModel"
        assert r["config"] == config
        assert r["names"] == var_names and n_streams >= 3  # the same variables, in the same order
        assert r["n_opt"] == n_opt > 2 and r["optimizer"] == "Adam"
        assert r["iterations"] == 2 and r["after_iterations"] == 4
        # Weights, EMA averages and stream states; Adam's slots: exactly as saved.
        assert r["saved_var_gap"] == 0 and r["saved_opt_gap"] == 0, (name, r["saved_var_gap"], r["saved_opt_gap"])
        gaps = {key: r[key] for key in ("ddim_gap", "ddpm_gap")}
        assert max(gaps.values()) == 0, f"{name}: reloaded samples differ: {gaps}"
        # Resumed = uninterrupted, bit for bit (the stream states included: same noise, same dropout).
        assert r["final_var_gap"] == 0, f"{name}: resumed weights differ by {r['final_var_gap']}"
        assert r["final_opt_gap"] == 0, f"{name}: resumed optimizer state differs by {r['final_opt_gap']}"
        assert r["after_gap"] == 0, f"{name}: the sampling stream differs after resuming ({r['after_gap']})"
        assert np.isfinite(r["history"]["loss"]).all(), r["history"]


def test_mirrored_strategy_step_equals_single_device():
    """Two logical CPUs vs one device, same global batches and SGD: the same weights and losses,
    unconditional and conditional (label dropout on), with an uneven last batch (7 = 4 + 3).

    The steps, noise and label dropout are drawn for the global batch and each replica keeps
    its rows; oneDNN is off so that batch-4 and batch-8 kernels round alike (see the GAN test).
    """
    out = run_python_json(
        """
        import json, os
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
        import tensorflow as tf

        # Split the CPU in two BEFORE any TensorFlow op runs.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

        import keras, numpy as np
        from aigc_tf.diffusion import DiffusionModel, NoiseSchedule

        tiny = dict(base_filters=8, channel_mults=(1, 2), attention=True, num_heads=2, seed=3)
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (15, 8, 8, 1)).astype(np.float32)
        y = (np.arange(15) % 3).astype(np.int32)
        result = {}
        # One strategy for the process: a second one would reuse collective-op keys.
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        for name, extra in (("uncond", {}), ("cond", {"num_classes": 3, "label_dropout": 0.5})):
            def make():
                model = DiffusionModel((8, 8, 1), **tiny, schedule=NoiseSchedule(50), **extra)
                model.compile(optimizer=keras.optimizers.SGD(0.1))
                return model

            args = (x, y) if extra else (x,)
            single = make()
            init = single.get_weights()
            h1 = single.fit(*args, batch_size=8, epochs=1, shuffle=False, verbose=0).history
            with strategy.scope():
                multi = make()
                multi.set_weights(init)
            h2 = multi.fit(*args, batch_size=8, epochs=1, shuffle=False, verbose=0).history
            w1, w2 = single.get_weights(), multi.get_weights()
            result[name] = {
                "replicas": strategy.num_replicas_in_sync,
                "diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
                "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(init, w1)),
                "h1": h1, "h2": h2,
            }
        print(json.dumps(result))
        """
    )
    for name in ("uncond", "cond"):
        r = out[name]
        assert r["replicas"] == 2
        assert r["moved"] > 1e-3, f"{name}: the weights moved by {r['moved']} only"
        assert r["diff"] < 1e-5, f"{name}: two replicas differ from one device by {r['diff']}"
        np.testing.assert_allclose(r["h2"]["loss"], r["h1"]["loss"], rtol=1e-5, err_msg=name)
