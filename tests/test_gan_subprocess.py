"""GAN tests that need a fresh Python process.

* Save/load: the reloading process imports only ``aigc_tf`` (catches a class that
  is not registered as serializable), and training resumes there.
* MirroredStrategy: logical CPUs must be configured before TensorFlow runs any op.
"""

from __future__ import annotations

import keras
import numpy as np
from subprocess_utils import run_python_json

from aigc_tf.gan import DCGAN, ClusteredGAN, ConditionalGAN

SMALL = dict(latent_dim=8, image_shape=(16, 16, 1), generator_filters=(16, 8), discriminator_filters=(8, 16))


def test_save_load_round_trip_restores_outputs_and_both_optimizers(tmp_path, blobs):
    keras.utils.set_random_seed(0)
    x, y = blobs(16), np.arange(16) % 4
    clustered = ClusteredGAN(num_clusters=4, **SMALL, seed=3)
    clustered.fit_clusters(x)
    refs = {}
    for name, model, fit_args in (
        ("dcgan", DCGAN(**SMALL, label_smoothing=0.1, seed=3), (x,)),
        ("cgan", ConditionalGAN(num_classes=4, **SMALL, seed=3), (x, y)),
        ("clgan", clustered, (x,)),
    ):
        model.compile(
            d_optimizer=keras.optimizers.Adam(1e-3, beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(3e-4, beta_1=0.5),
            jit_compile=True,
        )
        model.fit(*fit_args, batch_size=8, epochs=1, verbose=0)  # 2 steps each
        model.save(tmp_path / f"{name}.keras")
        z = model.sample_latents(5, seed=0)
        labels = np.array([0, 1, 2, 3, 0])
        cond = name != "dcgan"
        out = model.generate_from_latents(z, labels if cond else None)
        raw = model.generate_from_latents(z, labels if cond else None, average=False)
        gap = float(np.abs(out - raw).max())
        assert gap > 1e-5, f"the averaged and the raw generator agree to {gap}: no second set of weights"
        np.savez(
            tmp_path / f"{name}.npz",
            z=z,
            labels=labels,
            out=out,
            raw=raw,
            **(
                {
                    "centroids": np.asarray(model.centroids),
                    "shares": np.asarray(model.cluster_weights),
                    "samples": model.generate(5, seed=1),
                }
                if name == "clgan"
                else {}
            ),
            **{f"d{i}": np.asarray(v) for i, v in enumerate(model.d_optimizer.variables)},
            **{f"g{i}": np.asarray(v) for i, v in enumerate(model.g_optimizer.variables)},
        )
        refs[name] = (len(model.d_optimizer.variables), len(model.g_optimizer.variables))

    # The child returns numbers (largest differences), so a failure says by how much.
    out = run_python_json(
        """
        import json, sys
        import numpy as np, keras
        import aigc_tf.models  # registers the classes; nothing else is imported

        def gap(a, b):
            return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

        folder, result = sys.argv[1], {}
        for name in ("dcgan", "cgan", "clgan"):
            ref = np.load(f"{folder}/{name}.npz")
            model = keras.models.load_model(f"{folder}/{name}.keras")
            labels = ref["labels"] if name != "dcgan" else None
            d_vars, g_vars = model.d_optimizer.variables, model.g_optimizer.variables
            r = {
                "cls": type(model).__name__,
                "output_gap": gap(model.generate_from_latents(ref["z"], labels), ref["out"]),
                "raw_output_gap": gap(model.generate_from_latents(ref["z"], labels, average=False), ref["raw"]),
                "ema_decay": model.ema_decay,
                "n_opt": [len(d_vars), len(g_vars)],
                "d_opt_gap": max(gap(v, ref[f"d{i}"]) for i, v in enumerate(d_vars)),
                "g_opt_gap": max(gap(v, ref[f"g{i}"]) for i, v in enumerate(g_vars)),
                "lr": [float(model.d_optimizer.learning_rate), float(model.g_optimizer.learning_rate)],
                "label_smoothing": model.label_smoothing,
                "jit": model.jit_compile,
            }
            if name == "clgan":
                r["cluster_gap"] = max(gap(model.centroids, ref["centroids"]),
                                       gap(model.cluster_weights, ref["shares"]))
                r["samples_gap"] = gap(model.generate(5, seed=1), ref["samples"])
                r["num_clusters"] = model.num_clusters
            x = np.full((16, 16, 16, 1), -1.0, np.float32)
            x[:, 4:8, 4:8] = 1.0
            args = (x, np.arange(16) % 4) if name == "cgan" else (x,)
            r["history"] = model.fit(*args, batch_size=8, epochs=1, verbose=0).history
            r["iterations"] = [int(model.d_optimizer.iterations), int(model.g_optimizer.iterations)]
            result[name] = r
        print(json.dumps(result))
        """,
        str(tmp_path),
    )
    for name, cls in (("dcgan", "DCGAN"), ("cgan", "ConditionalGAN"), ("clgan", "ClusteredGAN")):
        r = out[name]
        assert r["cls"] == cls
        for key in ("output_gap", "raw_output_gap"):
            assert r[key] <= 1e-6, f"{name}: reloaded outputs differ by {r[key]} ({key})"
        assert r["ema_decay"] == 0.999
        assert r["n_opt"] == list(refs[name]) and refs[name][0] > 2, (r["n_opt"], refs[name])  # iterations, lr, slots
        assert r["d_opt_gap"] == 0 and r["g_opt_gap"] == 0, (
            f"{name}: optimizer state differs by {r['d_opt_gap']}, {r['g_opt_gap']}"
        )
        np.testing.assert_allclose(r["lr"], [1e-3, 3e-4], rtol=1e-6)
        assert r["iterations"] == [4, 4]  # 2 restored steps + 2 new ones: training resumes
        assert all(np.isfinite(v[0]) for v in r["history"].values()), r["history"]
        assert r["jit"] is True
    assert out["dcgan"]["label_smoothing"] == 0.1
    clgan = out["clgan"]
    assert clgan["cluster_gap"] == 0, f"centroids or shares differ by {clgan['cluster_gap']}"
    assert clgan["samples_gap"] <= 1e-6, f"samples differ by {clgan['samples_gap']}"
    assert clgan["num_clusters"] == 4


def test_mirrored_strategy_matches_a_single_device_run():
    """Two logical CPUs vs one device, same global batch and SGD: same weights and losses.

    Checks the per-replica loss scaling (sum / global batch), the unscaled trackers,
    the noise (each replica takes its own slice of the global draw) and the
    synchronized BatchNorm of the generator, with an uneven last batch (4 + 3).

    oneDNN is switched off in this process: on some CPUs (seen on an AVX-512 one) its
    kernels round differently at batch 4 (per replica) than at batch 8, and 8 GAN
    steps amplified that to a 9e-5 weight difference for the DCGAN. With TensorFlow's
    own kernels the runs agree to ~1e-7, so the test sees the maths, not the kernels.
    """
    out = run_python_json(
        """
        import json, os
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
        import tensorflow as tf
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np, keras
        from aigc_tf.gan import ClusteredGAN, ConditionalGAN, DCGAN

        small = dict(latent_dim=8, image_shape=(16, 16, 1), generator_filters=(16, 8),
                     discriminator_filters=(8, 16), dropout=0.0, seed=11)
        rng = np.random.default_rng(0)
        x = np.where(rng.random((32, 16, 16, 1)) < 0.2, 1.0, -1.0).astype(np.float32)
        y = (np.arange(32) % 3).astype(np.int32)
        result = {}
        # One strategy for the process: a second one would reuse collective-op keys.
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        for name, cls, extra in (("dcgan", DCGAN, {}), ("cgan", ConditionalGAN, {"num_classes": 3}),
                                 ("clgan", ClusteredGAN, {"num_clusters": 3})):
            def make():
                model = cls(**small, **extra)
                if name == "clgan":
                    model.fit_clusters(x)
                model.compile(d_optimizer=keras.optimizers.SGD(0.05), g_optimizer=keras.optimizers.SGD(0.05))
                return model

            def data():
                # 31 images in batches of 8: the last batch of 7 reaches the replicas as 4 + 3,
                # so the global batch size and the noise offsets must come from both replicas.
                ds = (x[:31], y[:31]) if name == "cgan" else x[:31]
                return tf.data.Dataset.from_tensor_slices(ds).batch(8)

            keras.utils.set_random_seed(0)
            single = make()
            init = single.get_weights()
            h1 = single.fit(data(), epochs=2, verbose=0).history
            with strategy.scope():
                multi = make()
                multi.set_weights(init)
                h2 = multi.fit(data(), epochs=2, verbose=0).history
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), multi.get_weights()))
            moved = max(float(np.max(np.abs(a - b))) for a, b in zip(init, single.get_weights()))
            result[name] = {
                "replicas": strategy.num_replicas_in_sync,
                "max_weight_diff": diff,
                "moved": moved,
                "h1": h1,
                "h2": h2,
            }
        print(json.dumps(result))
        """
    )
    for name in ("dcgan", "cgan", "clgan"):
        r = out[name]
        assert r["replicas"] == 2
        assert r["moved"] > 1e-3, f"{name}: the weights moved by {r['moved']} only"
        assert r["max_weight_diff"] < 1e-5, f"{name}: two replicas differ from one device by {r['max_weight_diff']}"
        for key in r["h1"]:
            np.testing.assert_allclose(r["h2"][key], r["h1"][key], rtol=1e-5, atol=1e-6, err_msg=f"{name} {key}")
