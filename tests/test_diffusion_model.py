"""DiffusionModel: clear errors for bad input, the public generate(), XLA and mixed precision.

The save/load round trip and MirroredStrategy are in tests/test_diffusion_subprocess.py.
"""

from __future__ import annotations

import inspect
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from aigc_tf.diffusion import DiffusionModel, NoiseSchedule
from aigc_tf.images import Images

TINY = dict(base_filters=8, channel_mults=(1, 2), attention=True, num_heads=2)


def tiny(**overrides) -> DiffusionModel:
    """The test model: 8x8x1 images, a 2-level U-Net with attention, T = 50."""
    kw = dict(TINY, schedule=NoiseSchedule(50), seed=0) | overrides
    return DiffusionModel((8, 8, 1), **kw)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 8, 8, 1)).astype("float32")


@pytest.fixture(scope="module")
def models():
    """An unconditional and a conditional (3 classes) model, compiled, untrained; graph sampling."""
    uncond, cond = tiny(sampling_jit_compile=False), tiny(num_classes=3, sampling_jit_compile=False)
    uncond.compile()
    cond.compile()
    return uncond, cond


# --------------------------------------------------------------------------- #
# Bad input: a clear error naming the argument, within a second.
# --------------------------------------------------------------------------- #


def test_bad_inputs_are_named_within_a_second(models):
    uncond, cond = models
    x, y = images(8), np.arange(8) % 3
    gen = dict(seed=0, steps=2)
    cases = [
        # training data
        (lambda: uncond.fit(images(8)[:, :4, :4], verbose=0), ValueError, r"x must have shape \(batch, 8, 8, 1\)"),
        (lambda: uncond.fit(np.zeros((8, 8, 8, 3), "float32"), verbose=0), ValueError, "channel count 1"),
        (lambda: uncond.fit((x + 1) * 127.5, verbose=0), ValueError, r"x: pixel values must lie in \[-1, 1\]"),
        (lambda: cond.fit(x, verbose=0), ValueError, r"DiffusionModel\(num_classes=3\) needs labels"),
        (lambda: cond.fit(x, np.eye(3)[y], verbose=0), ValueError, "labels.* look one-hot"),
        (lambda: cond.fit(x, y + 1, verbose=0), ValueError, r"labels.* must lie in \[0, 3\)"),
        (
            lambda: cond.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0),
            ValueError,
            "needs labels",
        ),
        (lambda: uncond.ddim_invert(images(2)[:, :4], steps=2), ValueError, r"images must have shape \(batch, 8, 8"),
        (lambda: uncond.ddim_invert(np.full((2, 8, 8, 1), 3.0), steps=2), ValueError, "images: pixel values"),
        # sampler settings
        (lambda: uncond.generate(2, seed=0, steps=0), ValueError, "steps must be >= 1, got 0"),
        (lambda: uncond.generate(2, seed=0, steps=51), ValueError, "steps must be <= 50, got 51"),
        (lambda: uncond.generate(2, seed=0, steps=2.5), TypeError, "steps must be an int"),
        (lambda: uncond.generate(2, seed=0, steps=10, sampler="ddpm"), ValueError, "steps=10: sampler='ddpm' runs all"),
        (lambda: uncond.generate(2, **gen, eta=-0.1), ValueError, "eta must be"),
        (lambda: uncond.generate(2, **gen, eta=1.5), ValueError, "eta must be"),
        (lambda: uncond.generate(2, **gen, eta="0"), TypeError, "eta must be a number"),
        (lambda: cond.generate(2, **gen, labels=0, guidance=-1), ValueError, "guidance must be"),
        (lambda: uncond.generate(2, **gen, guidance=2.0), ValueError, "guidance=2.0: the model is unconditional"),
        (lambda: uncond.generate(2, **gen, labels=[0, 1]), ValueError, "labels: the model is unconditional"),
        (lambda: cond.generate(2, **gen), ValueError, "labels: a conditional DiffusionModel needs labels"),
        (lambda: cond.generate(2, **gen, labels=[0, 3]), ValueError, r"labels must lie in \[0, 3\)"),
        (lambda: cond.generate(2, **gen, labels=[0, 1, 2]), ValueError, "labels must have 2 entries"),
        (lambda: cond.generate(3, **gen, labels=np.eye(3)), ValueError, "They look one-hot"),
        (lambda: cond.generate(2, **gen, labels=["a", "b"]), TypeError, "labels must be an array of integer"),
        (lambda: uncond.generate(2, **gen, sampler="foo"), ValueError, r"sampler must be one of .*'foo'"),
        (lambda: uncond.generate(2, **gen, eps_fn=3), TypeError, "eps_fn must be callable"),
        (lambda: uncond.generate(0, seed=0), ValueError, "num_images must be >= 1, got 0"),
        (lambda: uncond.generate("2", seed=0), TypeError, "num_images must be an int"),
        (lambda: uncond.generate(2, seed=1.5), TypeError, "seed must be an int >= 0"),
        (lambda: uncond.generate(2, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: uncond.generate(2, **gen, clip_x0="yes"), TypeError, "clip_x0 must be True or False"),
        # construction
        (lambda: tiny(schedule=50), TypeError, "schedule must be a NoiseSchedule, got int"),
        (lambda: NoiseSchedule(kind="quadratic"), ValueError, r"kind must be one of .*'quadratic'"),
        (lambda: NoiseSchedule(1), ValueError, "num_steps must be >= 2, got 1"),
        (lambda: NoiseSchedule(10.0), TypeError, "num_steps must be an int"),
        (lambda: tiny(num_classes=1), ValueError, "num_classes must be >= 2"),
        (lambda: tiny(label_dropout=1.0), ValueError, "label_dropout"),
        (lambda: tiny(ema_decay=1.0), ValueError, "ema_decay"),
    ]
    slow = []
    for call, error, message in cases:
        start = time.perf_counter()
        with pytest.raises(error, match=message):
            call()
        if time.perf_counter() - start >= 1:
            slow.append((message, round(time.perf_counter() - start, 2)))
    assert slow == [], f"errors raised after more than a second: {slow}"
    assert int(uncond.optimizer.iterations) == int(cond.optimizer.iterations) == 0  # nothing trained


def _pinned(shape, seed=None, dtype=None, **kwargs):
    """A fixed function of the shape in place of a float draw: TensorFlow's stateless normal and
    uniform draws give other numbers under XLA (``randint`` does not), so a test that compares an
    XLA step with a graph step pins them."""
    n = int(np.prod(shape))
    return keras.ops.reshape(keras.ops.arange(n, dtype="float32") * 0.618034 % 1.0, shape)


def test_unit_range_images_warn_and_graph_and_xla_steps_agree(monkeypatch):
    """[0, 1] images are in range but warn; one Adam step with ``jit_compile=True`` equals the graph step
    (steps from the model's stream, noise and label dropout pinned, see :func:`_pinned`)."""
    monkeypatch.setattr(keras.random, "uniform", _pinned)  # label dropout: every other label or so
    monkeypatch.setattr(keras.random, "normal", lambda shape, seed=None, **kw: (_pinned(shape) - 0.5) * 3.4)
    x, y = (images(8) + 1) / 2, np.arange(8) % 3
    # One level (the middle block keeps its attention): the XLA compile of the step is the cost here.
    start = tiny(num_classes=3, label_dropout=0.5, channel_mults=(1,)).get_weights()
    runs = {}
    for jit in (False, True):
        model = tiny(num_classes=3, label_dropout=0.5, channel_mults=(1,))
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        with pytest.warns(UserWarning, match="x: no pixel is below 0"):
            history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
        runs[jit] = (history["loss"][0], model.get_weights())
    (loss_graph, w_graph), (loss_xla, w_xla) = runs[False], runs[True]
    assert np.isfinite(loss_xla) and loss_xla == pytest.approx(loss_graph, rel=1e-5)
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(start, w_xla))  # it did train
    for a, b in zip(w_graph, w_xla):
        np.testing.assert_allclose(a, b, atol=1e-5)

    # Sampling: the network call with and without XLA gives the same images.
    model.sampling_jit_compile = True
    kw = dict(seed=3, steps=4, labels=[0, 1, 2], guidance=2.0, clip_x0=False)
    with_xla = model.generate(3, **kw)
    model.sampling_jit_compile = False
    np.testing.assert_allclose(model.generate(3, **kw), with_xla, atol=1e-4)
    monkeypatch.undo()


# --------------------------------------------------------------------------- #
# The public generate().
# --------------------------------------------------------------------------- #


def test_generate_signature_labels_range_and_predict(models, capsys):
    uncond, cond = models
    parameters = inspect.signature(DiffusionModel.generate).parameters
    assert list(parameters)[1:3] == ["num_images", "seed"]
    assert parameters["labels"].kind is inspect.Parameter.KEYWORD_ONLY

    one = cond.generate(3, 0, labels=1, steps=3, guidance=2.0)
    assert isinstance(one, Images) and one.shape == (3, 8, 8, 1) and one.dtype == np.float32
    assert tuple(one.value_range) == (-1.0, 1.0)
    np.testing.assert_array_equal(one, cond.generate(3, 0, labels=[1, 1, 1], steps=3, guidance=2.0))
    seen = []

    def spy(x_t, t, labels):
        seen.append(None if labels is None else np.asarray(labels).tolist())
        return np.zeros_like(x_t)

    cond.generate(3, 0, labels=2, steps=1, guidance=2.0, eps_fn=spy)
    assert seen == [None, [2, 2, 2]]  # the int reaches the network as one label per image, with guidance's pair
    unguided = cond.generate(2, seed=0, steps=3, guidance=0.0)  # no labels: unconditional samples
    assert np.isfinite(unguided).all()

    clipped = uncond.generate(4, seed=1, sampler="ddpm")
    assert -1.0 <= clipped.min() <= clipped.max() <= 1.0
    unclipped = uncond.generate(4, seed=1, sampler="ddpm", clip_x0=False)
    assert np.abs(unclipped).max() > 1.0  # an untrained model: clipping did something
    np.testing.assert_array_equal(uncond.generate(4, seed=1, sampler="ddpm", steps=50), clipped)  # steps=T: fine

    capsys.readouterr()
    uncond.generate(2, seed=0, steps=3, verbose=True)
    assert "3/3" in capsys.readouterr().out

    with pytest.raises(NotImplementedError, match=r"predict\(\) is not defined .*use generate\(\)"):
        uncond.predict(images(2), verbose=0)


# --------------------------------------------------------------------------- #
# Mixed precision.
# --------------------------------------------------------------------------- #


def test_mixed_float16_trains_samples_and_reloads_under_it(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = tiny(num_classes=3, sampling_jit_compile=False)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.unet.compute_dtype == "float16"
        assert all(w.dtype == "float32" for w in model.weights if "float" in str(w.dtype))
        history = model.fit(images(8), np.arange(8) % 3, batch_size=8, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"]).all(), history
        assert model.loss_tracker.result().dtype == "float32"
        losses = model.per_example_losses(tf.constant(images(2)), tf.constant([0, 1]))
        assert losses.dtype == "float32" and np.isfinite(losses).all()
        samples = model.generate(2, seed=0, labels=[0, 2], steps=3, guidance=2.0)
        assert samples.dtype == np.float32 and np.isfinite(samples).all()
        saved_policies = [layer.dtype_policy.name for layer in model.unet._flatten_layers()]
        model.save(tmp_path / "m.keras")
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.config.dtype_policy().name == previous.name == "float32"

    loaded = keras.models.load_model(tmp_path / "m.keras")  # under the float32 global policy
    assert keras.config.dtype_policy().name == "float32"  # left alone
    assert [layer.dtype_policy.name for layer in loaded.unet._flatten_layers()] == saved_policies
    assert saved_policies[0] == "mixed_float16"
    assert loaded.unet.compute_dtype == "float16"
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_array_equal(loaded.generate(2, seed=0, labels=[0, 2], steps=3, guidance=2.0), samples)
