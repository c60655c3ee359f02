"""CharRNN: shapes, state carrying, generation, training, serialization, XLA, mixed precision, distribution."""

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from subprocess_utils import run_python

from aigc_tf.rnn import CharRNN, bits_per_char, evaluate_loss, perplexity
from aigc_tf.text import CharTokenizer, make_char_dataset

REPO = Path(__file__).resolve().parents[1]
TEXT = "to be, or not to be: that is the question. " * 8
TOK = CharTokenizer.from_text(TEXT)
V = TOK.vocab_size


def tiny(cell="lstm", num_layers=2, dropout=0.0, tokenizer=TOK, seed=0, **kw):
    return CharRNN(
        V,
        embedding_dim=8,
        units=16,
        num_layers=num_layers,
        cell=cell,
        dropout=dropout,
        tokenizer=tokenizer,
        seed=seed,
        **kw,
    )


def random_ids(shape, seed=0):
    return np.random.default_rng(seed).integers(0, V, shape).astype("int32")


def compiled(model, **kw):
    model.compile(
        optimizer=kw.pop("optimizer", keras.optimizers.SGD(0.5)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kw,
    )
    return model


# ------------------------------------------------------------------------- forward pass


@pytest.mark.parametrize("cell, num_layers", [("lstm", 1), ("gru", 2)])
def test_logits_shape_dtype_and_weights(cell, num_layers):
    model = tiny(cell=cell, num_layers=num_layers)
    logits = model(random_ids((3, 7)))
    assert tuple(logits.shape) == (3, 7, V) and logits.dtype == "float32"
    # embedding + per layer (kernel, recurrent kernel, bias) + head (kernel, bias)
    assert len(model.trainable_weights) == 1 + 3 * num_layers + 2
    assert model.embedding.embeddings.shape == (V, 8)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stepping_with_state_equals_full_pass(cell):
    # Dropout > 0 must not matter in inference.
    model = tiny(cell=cell, dropout=0.3)
    ids = random_ids((2, 15), seed=1)
    full = np.asarray(model(ids))
    for prompt_len in (1, 6):
        logits, state = model.read_prompt(ids[:, :prompt_len])
        np.testing.assert_allclose(np.asarray(logits), full[:, prompt_len - 1], atol=1e-5)
        for t in range(prompt_len, ids.shape[1]):
            logits, state = model.step(ids[:, t], state)
            np.testing.assert_allclose(np.asarray(logits), full[:, t], atol=1e-5)
    # The state really carries the past: stepping from a fresh state gives different logits.
    logits_fresh, _ = model.read_prompt(ids[:, 5:6])
    assert not np.allclose(np.asarray(logits_fresh), full[:, 5], atol=1e-4)


def test_dropout_only_in_training_and_fresh_each_call():
    model = tiny(dropout=0.5)
    ids = random_ids((2, 10))
    infer = np.asarray(model(ids))
    np.testing.assert_array_equal(infer, np.asarray(model(ids, training=False)))
    train1, train2 = np.asarray(model(ids, training=True)), np.asarray(model(ids, training=True))
    assert not np.allclose(train1, infer) and not np.allclose(train1, train2)
    no_dropout = tiny(dropout=0.0)
    np.testing.assert_array_equal(np.asarray(no_dropout(ids, training=True)), np.asarray(no_dropout(ids)))


# ------------------------------------------------------------------------- generation


def test_generate_shapes_and_prompt_kept():
    model = tiny()
    prompt = TOK.encode("to be")
    out = model.generate(prompt, 12, seed=1)
    assert out.shape == (len(prompt) + 12,) and out.dtype == np.int32
    np.testing.assert_array_equal(out[: len(prompt)], prompt)
    assert out.min() >= 0 and out.max() < V
    batch = np.stack([prompt, TOK.encode("or no")])
    out2 = model.generate(batch, 4, seed=1)
    assert out2.shape == (2, 9)
    np.testing.assert_array_equal(out2[:, :5], batch)
    text = model.generate("that ", 10, seed=1)
    assert isinstance(text, str) and len(text) == 15 and text.startswith("that ")
    np.testing.assert_array_equal(model.generate(prompt, 0), prompt)


def test_greedy_generation_equals_rereading_the_prefix():
    model = tiny(cell="gru")
    prompt = random_ids((3, 4), seed=2)
    fast = model.generate(prompt, 25, top_k=1)
    # Independent computation: the full forward pass on the whole text at every step.
    ids = prompt.copy()
    for _ in range(25):
        nxt = np.asarray(model(ids))[:, -1].argmax(-1).astype("int32")
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(fast, ids)
    np.testing.assert_array_equal(model.generate(prompt, 25, top_k=1, carry_state=False), ids)


def test_generate_seeds():
    model = tiny()
    a = model.generate("to ", 40, seed=5)
    assert a == model.generate("to ", 40, seed=5)
    assert a != model.generate("to ", 40, seed=6)
    b, c = model.generate("to ", 40), model.generate("to ", 40)  # seed=None: the stream moves on
    assert b != c


def test_generate_samples_from_the_model_distribution():
    model = tiny(num_layers=1)
    # An untrained model is nearly uniform; give the head a spread bias so the
    # next-character distribution is far from uniform and temperature matters.
    model(random_ids((1, 1)))
    model.head.bias.assign(np.linspace(-2.0, 2.0, V).astype("float32"))
    prompt = TOK.encode("to b")
    expected = keras.ops.softmax(model(prompt[None])[0, -1] / 0.5).numpy().astype(np.float64)
    expected /= expected.sum()  # float32 softmax sums to 1 only up to round-off
    n = 4000
    out = model.generate(np.tile(prompt, (n, 1)), 1, temperature=0.5, seed=3)
    counts = np.bincount(out[:, -1], minlength=V)
    keep = expected * n >= 5  # chi-square needs expected counts >= 5; pool the rest
    obs = np.append(counts[keep], counts[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum()) * n
    assert stats.chisquare(obs[exp > 0], exp[exp > 0]).pvalue > 1e-3
    top2 = set(np.argsort(-expected)[:2].tolist())
    out_k = model.generate(np.tile(prompt, (200, 1)), 1, top_k=2, seed=4)
    assert set(out_k[:, -1].tolist()) <= top2


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("tx be", 5), {}, ValueError, r"\['x'\]"),
        (([[[1]]], 5), {}, ValueError, "shape"),
        ((np.array([], dtype=int), 5), {}, ValueError, "at least one"),
        (([0, V], 5), {}, ValueError, rf"\[0, {V}\)"),
        (([0.5, 1.0], 5), {}, TypeError, "integers"),
        (([0, 1], -1), {}, ValueError, "max_new_tokens"),
        (([0, 1], 5), {"temperature": 0}, ValueError, "temperature"),
        (([0, 1], 5), {"top_k": V + 1}, ValueError, "top_k"),
        (([0, 1], 5), {"top_p": 0.0}, ValueError, "top_p"),
        (([0, 1], 5), {"seed": "a"}, TypeError, "seed"),
    ],
)
def test_generate_bad_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        tiny().generate(*args, **kwargs)


def test_str_prompt_needs_a_tokenizer():
    with pytest.raises(TypeError, match="tokenizer"):
        tiny(tokenizer=None).generate("to be", 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"units": 0}, "units"),
        ({"num_layers": 0}, "num_layers"),
        ({"cell": "rnn"}, "cell"),
        ({"dropout": 1.0}, "dropout"),
        ({"vocab_size": V + 1, "tokenizer": TOK}, "must match"),
    ],
)
def test_constructor_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CharRNN(**{"vocab_size": V, **kwargs})


def sequence_log_prob(model, prompt, continuation):
    ids = np.concatenate([prompt, continuation])[None]
    log_probs = keras.ops.log_softmax(model(ids)[0], axis=-1).numpy()
    return sum(log_probs[t - 1, ids[0, t]] for t in range(len(prompt), ids.shape[1]))


def test_beam_search_with_the_rnn():
    model = tiny()
    model(random_ids((1, 1)))
    model.head.kernel.assign(model.head.kernel * 30.0)  # input-dependent, peaked logits
    prompt = TOK.encode("to be")
    n = 8
    greedy = model.generate(prompt, n, top_k=1)
    np.testing.assert_array_equal(model.beam_search(prompt, n, num_beams=1), greedy)
    beam = model.beam_search(prompt, n, num_beams=5)
    assert beam.shape == greedy.shape and np.array_equal(beam[: len(prompt)], prompt)
    # A wider beam never finds a less likely continuation than greedy decoding.
    assert (
        sequence_log_prob(model, prompt, beam[len(prompt) :])
        >= sequence_log_prob(model, prompt, greedy[len(prompt) :]) - 1e-4
    )
    assert isinstance(model.beam_search("to be", 3, num_beams=2), str)


# ------------------------------------------------------------------------- training and metrics


def test_metrics_helpers():
    assert bits_per_char(math.log(65)) == pytest.approx(math.log2(65))
    assert perplexity(math.log(65)) == pytest.approx(65.0)
    assert bits_per_char(1.75) == pytest.approx(2.5247, abs=1e-4)


def test_training_lowers_loss_and_evaluate_loss_matches_keras():
    keras.utils.set_random_seed(0)
    model = compiled(tiny(num_layers=1), optimizer=keras.optimizers.Adam(0.02))
    ds = make_char_dataset(TOK.encode(TEXT), seq_len=16, batch_size=4, shuffle=False, drop_remainder=False)
    before = evaluate_loss(model, ds)
    # An untrained model is close to a uniform guess: loss ≈ log V.
    assert before["loss"] == pytest.approx(math.log(V), abs=0.15)
    assert before["bits_per_char"] == pytest.approx(before["loss"] / math.log(2))
    assert before["perplexity"] == pytest.approx(math.exp(before["loss"]))
    history = model.fit(ds, epochs=6, verbose=0, shuffle=False)
    after = evaluate_loss(model, ds)
    assert after["loss"] < 0.7 * before["loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Same number through Keras (equal-size batches here, so the means agree).
    ds_even = make_char_dataset(TOK.encode(TEXT), seq_len=16, batch_size=4, shuffle=False)
    assert model.evaluate(ds_even, verbose=0) == pytest.approx(evaluate_loss(model, ds_even)["loss"], rel=1e-4)


def test_evaluate_loss_weights_batches_by_size():
    model = tiny(num_layers=1)
    x = random_ids((5, 6), seed=3)
    y = random_ids((5, 6), seed=4)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)  # batches of 3 and 2
    logits = np.asarray(model(x)).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, y[..., None], -1).mean()
    assert evaluate_loss(model, ds)["loss"] == pytest.approx(expected, rel=1e-5)


def one_sgd_step_weights(model, x, y, **compile_kw):
    compiled(model, optimizer=keras.optimizers.SGD(0.5), **compile_kw)
    loss = model.train_on_batch(x, y)
    return loss, [w.numpy() for w in model.trainable_weights]


def test_xla_step_matches_eager_graph_step():
    x, y = random_ids((4, 12), 5), random_ids((4, 12), 6)
    ref = tiny()
    ref(x)
    xla = tiny()
    xla(x)
    xla.set_weights(ref.get_weights())
    initial = [w.numpy() for w in ref.trainable_weights]
    loss_ref, w_ref = one_sgd_step_weights(ref, x, y, jit_compile=False)
    loss_xla, w_xla = one_sgd_step_weights(xla, x, y, jit_compile=True)
    assert np.isfinite(loss_xla) and loss_xla == pytest.approx(loss_ref, rel=1e-5)
    for a, b in zip(w_ref, w_xla):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert all(not np.allclose(a, b) for a, b in zip(initial, w_ref))  # the step did change every weight


def test_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = compiled(tiny(), optimizer=keras.optimizers.Adam(1e-2))
        x, y = random_ids((4, 10), 7), random_ids((4, 10), 8)
        logits = model(x)
        assert logits.dtype == "float32"
        assert model.rnns[0].compute_dtype == "float16" and model.rnns[0].variable_dtype == "float32"
        assert all(w.dtype == "float32" for w in model.trainable_weights)
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        # Stepping still matches the full pass (float16 tolerance).
        full = np.asarray(model(x))
        out, state = model.read_prompt(x[:, :3])
        for t in range(3, 10):
            out, state = model.step(x[:, t], state)
        np.testing.assert_allclose(np.asarray(out), full[:, -1], atol=2e-2)
        assert model.generate("to be", 5, seed=0).startswith("to be")
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name


# ------------------------------------------------------------------------- subprocess tests


def test_save_load_round_trip_in_fresh_process(tmp_path):
    model = compiled(tiny(cell="gru", dropout=0.1), optimizer=keras.optimizers.Adam(1e-3))
    x, y = random_ids((2, 9), 9), random_ids((2, 9), 10)
    model.train_on_batch(x, y)
    path = tmp_path / "char_rnn.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    expected_logits = np.asarray(model(x))
    expected_greedy = model.generate("to be", 10, top_k=1)

    out = run_python(f"""
        import json, numpy as np, keras
        import aigc_tf.rnn  # registers the classes; nothing from the tests is imported
        model = keras.models.load_model({str(path)!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "logits.npy")!r}, np.asarray(model(x)))
        print(json.dumps({{
            "class": type(model).__name__,
            "vocab": model.tokenizer.vocab,
            "config": {{k: model.get_config()[k] for k in ("cell", "units", "num_layers", "dropout", "embedding_dim")}},
            "greedy": model.generate("to be", 10, top_k=1),
            "iterations": int(model.optimizer.iterations.numpy()),
        }}))
    """)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["class"] == "CharRNN"
    assert info["vocab"] == TOK.vocab
    assert info["config"] == {"cell": "gru", "units": 16, "num_layers": 2, "dropout": 0.1, "embedding_dim": 8}
    assert info["greedy"] == expected_greedy
    assert info["iterations"] == 1
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected_logits, atol=1e-6)


def test_mirrored_strategy_two_logical_cpus():
    # Logical devices must be configured before TensorFlow runs any op: fresh process.
    out = run_python("""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras, numpy as np
        from aigc_tf.rnn import CharRNN

        V = 11
        rng = np.random.default_rng(0)
        x = rng.integers(0, V, (8, 12)).astype("int32")
        y = rng.integers(0, V, (8, 12)).astype("int32")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # one global batch, 4 per replica

        def make():
            m = CharRNN(V, embedding_dim=8, units=16, num_layers=2, cell="lstm", seed=0)
            m(x[:1])  # build
            return m

        def compile_(m):
            m.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            dist = make()
            compile_(dist)
        single = make()
        initial = dist.get_weights()
        single.set_weights(initial)
        compile_(single)
        h_dist = dist.fit(ds, epochs=1, verbose=0).history["loss"][0]
        h_single = single.fit(ds, epochs=1, verbose=0).history["loss"][0]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(dist.get_weights(), single.get_weights()))
        moved = min(float(np.abs(a - b).max()) for a, b in zip(dist.get_weights(), initial))
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss_dist": h_dist,
                          "loss_single": h_single, "max_weight_diff": diff, "min_weight_change": moved}))
    """)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["replicas"] == 2
    assert info["loss_dist"] == pytest.approx(info["loss_single"], rel=1e-5)
    assert info["max_weight_diff"] < 1e-5
    assert info["min_weight_change"] > 1e-6  # every weight was updated
