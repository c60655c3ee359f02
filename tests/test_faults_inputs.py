"""Inputs that once failed late or opaquely: each now fails at once, naming the argument."""

import shutil
import time
import warnings
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_lm, lm_ids

from aigc_tf.data import SHIPPED_DATA_DIR, load_images, load_text, verify_shipped

# --------------------------------------------------------------------------- #
# Language models: sequences longer than the context, also after a good fit.
# --------------------------------------------------------------------------- #


def test_a_too_long_fit_after_a_good_one_is_refused_for_arrays_and_datasets(tiny_gpt):
    model = compile_lm(tiny_gpt())
    good = lm_ids((8, model.max_len))
    model.fit(good, good, epochs=1, verbose=0)
    long = lm_ids((8, model.max_len + 4))
    with pytest.raises(ValueError, match=rf"x: sequences of {model.max_len + 4} tokens, but the model reads at most"):
        model.fit(long, long, verbose=0)
    static = tf.data.Dataset.from_tensor_slices((long, long)).batch(4)
    with pytest.raises(ValueError, match="sequences of 12 tokens"):
        model.fit(static, verbose=0)
    # A dataset of unknown length per batch: the pipeline names the first long batch.
    ragged = tf.data.Dataset.from_generator(
        lambda: iter([(good[:4], good[:4]), (long[:4], long[:4])]),
        output_signature=(tf.TensorSpec((None, None), tf.int32),) * 2,
    )
    too_long = r"\[1\] \[has sequences longer than the context of the model \(8 tokens\)"  # batch 1
    with pytest.raises(tf.errors.InvalidArgumentError, match=too_long):
        model.fit(ragged, verbose=0)


# --------------------------------------------------------------------------- #
# Conditional GAN: one-hot labels.
# --------------------------------------------------------------------------- #


def test_one_hot_labels_are_named_as_such_for_arrays_and_datasets(blobs):
    from aigc_tf.gan import ConditionalGAN

    model = ConditionalGAN(
        num_classes=4, latent_dim=4, image_shape=(16, 16, 1), generator_filters=(8, 4), discriminator_filters=(4, 8)
    )
    model.compile()
    x = blobs(8)
    one_hot = np.eye(4, dtype="float32")[np.arange(8) % 4]
    with pytest.raises(ValueError, match=r"got shape \(8, 4\)\. They look one-hot: pass labels.argmax"):
        model.fit(x, one_hot, verbose=0)
    with pytest.raises(ValueError, match=r"must have 8 entries"):
        model.fit(x, np.arange(5) % 4, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, one_hot.astype("int64"))).batch(4)
    with pytest.raises(ValueError, match=r"labels must be one class id per image.*They look one-hot"):
        model.fit(ds, verbose=0)
    # A column of ids is one id per image: accepted.
    history = model.fit(x, (np.arange(8) % 4)[:, None], batch_size=4, verbose=0)
    assert np.isfinite(history.history["d_loss"][0])


# --------------------------------------------------------------------------- #
# Data: empty slices, damaged shipped files.
# --------------------------------------------------------------------------- #


def test_an_empty_slice_is_a_clear_error():
    with pytest.raises(ValueError, match=r"split='train\[500:100\]' selects no examples of 'mnist'"):
        load_images("mnist", "train[500:100]")
    with pytest.raises(ValueError, match="each of its splits is one text"):
        load_text("tiny_shakespeare", "train[:10%]")


@pytest.fixture()
def shipped_copy(tmp_path):
    """A copy of the shipped MNIST and its SHA256SUMS."""
    shutil.copytree(SHIPPED_DATA_DIR / "mnist", tmp_path / "mnist")
    shutil.copy(SHIPPED_DATA_DIR / "SHA256SUMS", tmp_path / "SHA256SUMS")
    return tmp_path


def test_the_shipped_copy_is_verified_and_a_damaged_file_is_named(shipped_copy):
    verify_shipped("mnist", shipped_copy)  # intact: passes
    shard = shipped_copy / "mnist/3.0.1/mnist-test.tfrecord-00000-of-00001"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"mnist-test.tfrecord-00000-of-00001 is damaged .*git checkout data/"):
        verify_shipped("mnist", shipped_copy / ".." / shipped_copy.name)  # another path: checked again
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=r"mnist-test.tfrecord-00000-of-00001 is missing"):
        verify_shipped("mnist", shipped_copy / "mnist" / "..")


def test_a_damaged_prepared_dataset_is_named(shipped_copy, monkeypatch):
    monkeypatch.setenv("AIGC_DATA_DIR", str(shipped_copy))
    info = shipped_copy / "mnist/3.0.1/dataset_info.json"
    good = info.read_text()
    info.write_text(good[: len(good) // 3])
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"the prepared 'mnist' in .* cannot be read .*delete"):
        load_images("mnist", "test")
    info.write_text(good)
    (shipped_copy / "mnist/3.0.1/mnist-test.tfrecord-00000-of-00001").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks 1 file\(s\), e.g. .*mnist-test.tfrecord"):
        load_images("mnist", "test")
    assert time.perf_counter() - start < 5


# --------------------------------------------------------------------------- #
# Files: damaged .keras, unwritable paths.
# --------------------------------------------------------------------------- #


def test_an_empty_or_truncated_keras_file_is_called_that(tmp_path, tiny_gpt):
    from aigc_tf.models import load_model

    model = tiny_gpt()
    model(lm_ids((1, model.max_len)))
    path = tmp_path / "m.keras"
    model.save(path)
    assert np.array_equal(load_model(path)(lm_ids((1, 8))), model(lm_ids((1, 8))))  # a good file loads
    data = path.read_bytes()
    for content in (b"", data[: len(data) // 2]):
        path.write_bytes(content)
        with pytest.raises(ValueError, match=rf"m.keras \({len(content):,} bytes\) is not a complete .keras file"):
            load_model(path)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_model(tmp_path / "missing.keras")
    with zipfile.ZipFile(path, "w") as archive:  # a zip, but not a Keras one
        archive.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="not a complete .keras file"):
        load_model(path)


def test_an_unwritable_gif_path_fails_before_training(tmp_path):
    from aigc_tf.callbacks import SampleGridCallback

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"gif_path=.*its folder cannot be created"):
        SampleGridCallback(lambda m: np.zeros((4, 8, 8)), gif_path=blocker / "sub" / "p.gif")
    with pytest.raises(ValueError, match="is a folder"):
        SampleGridCallback(lambda m: np.zeros((4, 8, 8)), gif_path=tmp_path)
    with pytest.raises(TypeError, match="sample_fn must be a function of the model"):
        SampleGridCallback("samples.png")
    with pytest.raises(TypeError, match="gif_path must be a file path"):
        SampleGridCallback(lambda m: np.zeros((4, 8, 8)), gif_path=3)


def test_a_gif_that_cannot_be_written_at_the_end_keeps_the_history(tmp_path, bars):
    from aigc_tf.callbacks import SampleGridCallback
    from aigc_tf.vae import VAE

    model = VAE(latent_dim=2, image_shape=(16, 16, 1), filters=(4,), dense_units=8, seed=0)
    model.compile(optimizer="adam")
    callback = SampleGridCallback(lambda m: m.generate(4, seed=0), gif_path=tmp_path / "p.gif")

    def disk_full(path):
        raise OSError(28, "No space left on device")

    callback.save_gif = disk_full
    with pytest.warns(UserWarning, match="gif_path: the GIF could not be written"):
        history = model.fit(bars(8), epochs=1, batch_size=4, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 1


# --------------------------------------------------------------------------- #
# Arguments of the wrong type or value.
# --------------------------------------------------------------------------- #


def test_wrong_argument_types_and_values_are_named():
    from aigc_tf.callbacks import SampleGridCallback, TimeBudget
    from aigc_tf.plotting import tile_images

    cases = [
        (lambda: TimeBudget("10"), TypeError, "seconds must be a number"),
        (lambda: SampleGridCallback(lambda m: 0, every="2"), TypeError, "every must be an int"),
        (lambda: SampleGridCallback(lambda m: 0, every=1.5), TypeError, "every must be an int"),
        (lambda: SampleGridCallback(lambda m: 0, ncols=0), ValueError, "ncols must be >= 1"),
        (lambda: tile_images(np.zeros((4, 8, 8)), ncols=-2), ValueError, "ncols must be >= 1, got -2"),
        (lambda: tile_images(np.zeros((4, 8, 8)), pad=-1), ValueError, "pad must be >= 0"),
    ]
    for call, error, message in cases:
        start = time.perf_counter()
        with pytest.raises(error, match=message):
            call()
        assert time.perf_counter() - start < 1


def test_an_explosive_ar_forecast_blames_the_coefficients_not_the_history():
    from aigc_tf.autoregressive import ar_root_modulus, forecast_ar

    assert ar_root_modulus([0.5]) == pytest.approx(0.5)
    assert ar_root_modulus([0.0, -1.0]) == pytest.approx(1.0)  # x_t = -x_{t-2}: roots ±i
    np.testing.assert_allclose(forecast_ar([1.0], 0.0, [3.0], steps=4), [3, 9, 27, 81])
    with pytest.raises(ValueError, match=r"overflowed at step \d+: phi=\[3.0\] is explosive .*modulus 3 > 1"):
        forecast_ar([1.0, 2.0], 0.0, [3.0], steps=1000)


# --------------------------------------------------------------------------- #
# Mixed precision survives a save and load; [0, 1] data for a tanh GAN warns.
# --------------------------------------------------------------------------- #


def test_a_model_saved_under_mixed_float16_loads_under_it(tmp_path, tiny_gpt):
    from aigc_tf.models import load_model

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = compile_lm(tiny_gpt())
        model(lm_ids((1, 8)))
        model.save(tmp_path / "m.keras")
    finally:
        keras.config.set_dtype_policy(previous)
    loaded = load_model(tmp_path / "m.keras")
    assert keras.config.dtype_policy().name == previous.name  # the global policy is left alone
    policies = {layer.dtype_policy.name for layer in loaded._flatten_layers(include_self=False)}
    assert policies == {"mixed_float16"}, policies
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_array_equal(loaded(lm_ids((2, 8))), model(lm_ids((2, 8))))


def test_unit_range_images_for_a_tanh_gan_warn_once(blobs):
    from aigc_tf.gan import DCGAN

    model = DCGAN(latent_dim=4, image_shape=(16, 16, 1), generator_filters=(8, 4), discriminator_filters=(4, 8))
    model.compile()
    unit = (blobs(16) + 1) / 2  # in range for the model, but never below 0

    def fit_warnings(data, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(data, verbose=0, **kwargs)
        return [str(w.message) for w in caught if "no pixel is below 0" in str(w.message)]

    assert len(fit_warnings(unit, batch_size=8)) == 1
    assert len(fit_warnings(tf.data.Dataset.from_tensor_slices(unit).batch(8), epochs=3)) == 1  # once, not per epoch
    assert fit_warnings(blobs(16), batch_size=8) == []
    assert fit_warnings(tf.data.Dataset.from_tensor_slices(blobs(16)).batch(8), epochs=2) == []
