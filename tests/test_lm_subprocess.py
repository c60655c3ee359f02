"""Language-model tests that need a fresh Python process (the char-RNN and the GPT, one child each).

* Save/load: the reloading process imports only ``aigc_tf`` (catches a class that
  is not registered as serializable), and training resumes there.
* MirroredStrategy: logical CPUs must be configured before TensorFlow runs any op.

The child returns numbers (largest differences), the parent asserts with them in the message.
"""

from __future__ import annotations

import keras
import numpy as np
from subprocess_utils import run_python_json

MODELS = {
    "rnn": dict(cell="gru", dropout=0.1),
    "gpt": dict(dropout=0.1, use_bias=False, tie_weights=False),
}
CONFIG_KEYS = {
    "rnn": {"cell": "gru", "units": 16, "num_layers": 2, "dropout": 0.1, "embedding_dim": 8},
    "gpt": {
        "max_len": 8,
        "num_layers": 2,
        "num_heads": 2,
        "embed_dim": 16,
        "dropout": 0.1,
        "use_bias": False,
        "tie_weights": False,
    },
}


def test_save_load_round_trip_restores_outputs_and_optimizer(tmp_path, tiny_rnn, tiny_gpt, tokenizer):
    rng = np.random.default_rng(9)
    x = rng.integers(0, tokenizer.vocab_size, (2, 8)).astype("int32")
    y = rng.integers(0, tokenizer.vocab_size, (2, 8)).astype("int32")
    greedy = {}
    for kind, make in (("rnn", tiny_rnn), ("gpt", tiny_gpt)):
        model = make(**MODELS[kind])
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.train_on_batch(x, y)
        model.save(tmp_path / f"{kind}.keras")
        greedy[kind] = model.generate("to be", 10, top_k=1, jit_compile=False)
        np.savez(
            tmp_path / f"{kind}.npz",
            x=x,
            y=y,
            logits=np.asarray(model(x)),
            **{f"opt{i}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)},
        )

    out = run_python_json(
        """
        import json, sys
        import numpy as np, keras
        import aigc_tf.models  # registers the classes; nothing from the tests is imported

        def gap(a, b):
            return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))

        folder, result = sys.argv[1], {}
        for kind in ("rnn", "gpt"):
            ref = np.load(f"{folder}/{kind}.npz")
            model = keras.models.load_model(f"{folder}/{kind}.keras")
            variables = model.optimizer.variables
            result[kind] = {
                "class": type(model).__name__,
                "vocab": model.tokenizer.vocab,
                "config": model.get_config(),
                "logits_gap": gap(model(ref["x"]), ref["logits"]),
                "greedy": model.generate("to be", 10, top_k=1, jit_compile=False),
                "n_opt": len(variables),
                "opt_gap": max(gap(v, ref[f"opt{i}"]) for i, v in enumerate(variables)),
                "iterations": int(model.optimizer.iterations),
                "resumed_loss": float(model.train_on_batch(ref["x"], ref["y"])),
                "iterations_after": int(model.optimizer.iterations),
            }
        print(json.dumps(result, default=str))
        """,
        str(tmp_path),
    )
    for kind, cls in (("rnn", "CharRNN"), ("gpt", "GPT")):
        r = out[kind]
        assert r["class"] == cls
        assert r["vocab"] == tokenizer.vocab
        assert {k: r["config"][k] for k in CONFIG_KEYS[kind]} == CONFIG_KEYS[kind]
        assert r["logits_gap"] <= 1e-6, f"{kind}: reloaded logits differ by {r['logits_gap']}"
        assert r["greedy"] == greedy[kind]
        assert r["n_opt"] > 2  # iterations, learning rate and the Adam slots
        assert r["opt_gap"] == 0, f"{kind}: optimizer state differs by {r['opt_gap']}"
        assert r["iterations"] == 1 and r["iterations_after"] == 2  # training resumes
        assert np.isfinite(r["resumed_loss"])


def test_mirrored_strategy_matches_a_single_device_run():
    """Two logical CPUs vs one device, same global batch and SGD: same weights and loss, every weight moved."""
    out = run_python_json("""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np
        from aigc_tf.rnn import CharRNN
        from aigc_tf.transformer import GPT

        V = 11
        rng = np.random.default_rng(0)
        x = rng.integers(0, V, (8, 6)).astype("int32")
        y = rng.integers(0, V, (8, 6)).astype("int32")
        makers = {
            "rnn": lambda: CharRNN(V, embedding_dim=8, units=16, num_layers=2, cell="lstm", seed=0),
            "gpt": lambda: GPT(V, max_len=6, num_layers=2, num_heads=2, embed_dim=16, seed=0),
        }

        def make(kind):
            model = makers[kind]()
            model(x[:1])  # build
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return model

        # One strategy for the process: a second one would reuse collective-op keys.
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        result = {}
        for kind in makers:
            ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # one global batch, 4 per replica
            with strategy.scope():
                dist = make(kind)
            single = make(kind)
            initial = dist.get_weights()
            single.set_weights(initial)
            loss_dist = dist.fit(ds, epochs=1, verbose=0).history["loss"][0]
            loss_single = single.fit(ds, epochs=1, verbose=0).history["loss"][0]
            pairs = list(zip(dist.get_weights(), single.get_weights(), initial))
            result[kind] = {
                "replicas": strategy.num_replicas_in_sync,
                "loss_dist": loss_dist,
                "loss_single": loss_single,
                "max_weight_diff": max(float(np.abs(d - s).max()) for d, s, _ in pairs),
                "min_weight_change": min(float(np.abs(d - i).max()) for d, _, i in pairs),
            }
        print(json.dumps(result))
    """)
    for kind in ("rnn", "gpt"):
        r = out[kind]
        assert r["replicas"] == 2
        loss_gap = abs(r["loss_dist"] - r["loss_single"])
        assert loss_gap <= 1e-5 * r["loss_single"], f"{kind}: losses {r['loss_dist']} vs {r['loss_single']}"
        assert r["max_weight_diff"] < 1e-5, f"{kind}: two replicas differ from one device by {r['max_weight_diff']}"
        assert r["min_weight_change"] > 1e-6, f"{kind}: a weight moved by {r['min_weight_change']} only"
