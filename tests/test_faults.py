"""Faults that once failed silently: invalid logits, and random streams lost on reload."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_lm, lm_ids

from aigc_tf.sampling import InvalidLogitsError, beam_search, sample, sample_loop
from aigc_tf.streams import SavedRandomState, random_variables

INF = np.inf


# --------------------------------------------------------------------------- #
# 1. Invalid logits: never an id outside the vocabulary.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("fill", [-INF, np.nan])
@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}, {"top_p": 0.9}, {"top_k": 1}, {"temperature": 0.5}])
def test_a_row_without_a_finite_maximum_is_an_error_naming_the_rows(fill, kwargs):
    logits = np.zeros((3, 4), "float32")
    logits[[0, 2]] = fill
    with pytest.raises(InvalidLogitsError, match=r"sample: row\(s\) \[0, 2\] of the logits have no finite maximum"):
        sample(logits, seed=0, **kwargs)
    one_nan = np.array([0.0, np.nan, 1.0, 2.0], "float32")  # one NaN makes the row undefined too
    with pytest.raises(InvalidLogitsError):
        sample(one_nan, seed=0, **kwargs)


def test_plus_infinity_shares_the_mass():
    draws = np.array([int(sample(np.array([[INF, 1.0, INF, 0.0]], "float32"), seed=s)[0]) for s in range(400)])
    assert set(draws) == {0, 2}
    assert 150 < (draws == 0).sum() < 250  # a fair coin: 200 ± 2.5 standard deviations
    assert int(sample(np.array([1.0, INF, 3.0, INF], "float32"), top_k=1)) == 1  # greedy: the first of the ties
    # Mixed with -inf entries and filters: still only the +inf entries.
    with_filters = {int(sample(np.array([[-INF, INF, 5.0, INF]], "float32"), seed=s, top_p=0.5)[0]) for s in range(50)}
    assert with_filters <= {1, 3}


def test_inside_a_graph_the_draw_stays_in_the_vocabulary_and_the_loop_reports_the_step():
    generator = keras.random.SeedGenerator(0)
    drawn = tf.function(lambda x: sample(x, seed=generator))(tf.fill((3, 4), -INF))
    assert drawn.shape == (3,) and np.all((drawn.numpy() >= 0) & (drawn.numpy() < 4))

    def step_fn(token, state):  # the logits go bad after the second token
        count = state + 1
        logits = tf.where(count >= 2, tf.fill((2, 5), np.float32(np.nan)), tf.zeros((2, 5)))
        return logits, count

    def run(eager):
        seed = keras.random.SeedGenerator(1)
        args = (step_fn, tf.zeros((2, 5)), tf.zeros((), tf.int32), tf.zeros((2, 8), tf.int32), 1, 6)
        if eager:
            return sample_loop(*args, seed=seed, return_invalid=True)
        return tf.function(lambda: sample_loop(*args, seed=seed, return_invalid=True), jit_compile=True)()

    for eager in (True, False):
        tokens, first = run(eager)
        assert int(first) == 2 and np.all((tokens.numpy() >= 0) & (tokens.numpy() < 5))
    with pytest.raises(InvalidLogitsError, match="sample_loop, new token 2"):
        sample_loop(step_fn, tf.zeros((2, 5)), tf.zeros((), tf.int32), tf.zeros((2, 8), tf.int32), 1, 6, seed=0)


def test_beam_search_names_the_step_and_ignores_dead_beams():
    def step_fn(token, state):  # state: a step count per row (leading axis: the rows)
        count = state + 1
        return tf.where(count[:, None] >= 3, tf.fill((4, 3), -INF), tf.zeros((4, 3))), count

    with pytest.raises(InvalidLogitsError, match="beam_search, new token 3"):
        beam_search(step_fn, np.zeros((2, 3), "float32"), tf.zeros((2,), tf.int32), 5, num_beams=2)
    # +inf logits: the beam takes those tokens (log-probability log 1/2 each), no NaN scores.
    flat = lambda t, s: (tf.zeros((2, 3)), s)  # noqa: E731
    sequences, scores = beam_search(flat, np.array([[INF, 0, INF]], "float32"), None, 1, 2)
    assert sorted(sequences.numpy()[0, :, 0].tolist()) == [0, 2]
    np.testing.assert_allclose(scores.numpy(), np.log(0.5), rtol=1e-6)


def _diverged(model):
    """``model`` with NaN in its last layer that has weights (a diverged run)."""
    model(lm_ids((1, 4)))  # built
    layer = [layer for layer in model.layers if layer.get_weights()][-1]
    weights = layer.get_weights()
    weights[0] = np.full_like(weights[0], np.nan)
    layer.set_weights(weights)
    return model


@pytest.mark.parametrize("family", ["gpt", "rnn"])
def test_a_diverged_model_raises_naming_itself_on_every_decoding_path(family, tiny_gpt, tiny_rnn):
    model = _diverged((tiny_gpt if family == "gpt" else tiny_rnn)())
    name = type(model).__name__
    paths = [
        dict(use_cache=True, jit_compile=True),
        dict(use_cache=True, jit_compile=False),
        dict(use_cache=False),
        dict(num_beams=2),
    ]
    for kwargs in paths:
        with pytest.raises(InvalidLogitsError, match=rf"{name}\('.*'\)\.generate: .*new token 0"):
            model.generate("to be", 5, **kwargs)


def test_a_processor_that_bans_everything_is_caught_at_its_step(tiny_gpt):
    model = tiny_gpt()

    class BanAllFrom:
        def __init__(self, start):
            self.start = start

        def __call__(self, logits, tokens, length):
            return keras.ops.where(length >= self.start, keras.ops.full_like(logits, -INF), logits)

    ban = BanAllFrom(5 + 3)  # "to be" is 5 characters: new token 3 sits at position 8
    for jit in (True, False):
        with pytest.raises(InvalidLogitsError, match="new token 3"):
            model.generate("to be", 6, seed=0, logits_processors=[ban], jit_compile=jit)
    assert len(model.generate("to be", 3, seed=0, logits_processors=[ban])) == 8  # before it: fine


# --------------------------------------------------------------------------- #
# 2. Random streams are saved with the model.
# --------------------------------------------------------------------------- #


def _streams(model):
    return [v.numpy().copy() for v in random_variables(model)]


def test_every_model_family_carries_the_mixin():
    from aigc_tf.models import GAN, VAE, LanguageModel

    for cls in (GAN, VAE, LanguageModel):
        assert issubclass(cls, SavedRandomState), cls


@pytest.mark.parametrize("how", ["keras", "weights"])
def test_a_reloaded_model_continues_its_random_streams(how, tmp_path, tiny_gpt):
    model = tiny_gpt(dropout=0.1)
    compile_lm(model, keras.optimizers.Adam(1e-3))
    x = lm_ids((16, 8))
    model.fit(x, np.roll(x, -1, 1), batch_size=8, epochs=1, verbose=0)  # the dropout stream moves
    model.generate("to", 3)  # the sampling stream moves
    before = _streams(model)
    assert len(before) >= 2 and any(s[0] != 0 or s[1] != 0 for s in before)
    if how == "keras":
        model.save(tmp_path / "m.keras")
        loaded = keras.models.load_model(tmp_path / "m.keras")
    else:
        model.save_weights(tmp_path / "m.weights.h5")
        loaded = tiny_gpt(dropout=0.1)
        loaded(x[:1])
        loaded.load_weights(tmp_path / "m.weights.h5")
    for a, b in zip(before, _streams(loaded)):
        np.testing.assert_array_equal(a, b)
    assert loaded.generate("to", 12) == model.generate("to", 12)  # the same next draws


def test_a_file_with_another_number_of_streams_is_refused(tiny_gpt):
    model = tiny_gpt()
    model(lm_ids((1, 4)))
    store = {}
    model.save_own_variables(store)
    streams = sorted(k for k in store if k.startswith("random_state_"))
    assert len(streams) == len(random_variables(model)) >= 1
    model.load_own_variables(store)  # its own: fine
    del store[streams[-1]]
    with pytest.raises(ValueError, match="random-stream states but GPT has"):
        model.load_own_variables(store)


# --------------------------------------------------------------------------- #
# 3 and 5. Every batch is checked; Keras's silent defaults are refused.
# --------------------------------------------------------------------------- #


def _image_batches(x, bad_batch, value, batch=8):
    x = x.copy()
    x[bad_batch * batch + 3, 2, 2, 0] = value
    return tf.data.Dataset.from_tensor_slices(x).batch(batch)


@pytest.mark.parametrize("value", [np.nan, np.inf, 255.0])
def test_a_bad_pixel_in_a_late_batch_stops_the_vae_naming_the_batch(value, bars):
    from aigc_tf.vae import VAE

    model = VAE(latent_dim=2, image_shape=(16, 16, 1), filters=(4,), dense_units=8, seed=0)
    model.compile(jit_compile=True)
    late = r"(?s)x: batch \(counted from 0\).*\b2\b.*outside \[0, 1\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=late):
        model.fit(_image_batches(bars(32), 2, value), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"pixel values must lie in \[0, 1\]"):
        model.fit(_image_batches(bars(32), 2, value).unbatch().batch(32).get_single_element(), verbose=0)


def test_a_bad_pixel_in_a_late_batch_stops_the_gan(blobs):
    from aigc_tf.gan import DCGAN

    model = DCGAN(latent_dim=4, image_shape=(16, 16, 1), generator_filters=(8, 4), discriminator_filters=(4, 8))
    model.compile()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)batch \(counted from 0\).*\b3\b.*outside \[-1, 1\]"):
        model.fit(_image_batches(blobs(40), 3, np.nan), epochs=1, verbose=0)
    assert all(np.isfinite(w).all() for w in model.generator.get_weights())  # nothing was trained to NaN
    x = blobs(16) * 127.5 + 127.5  # 0..255
    with pytest.raises(ValueError, match="divide 0..255 images by 255"):
        model.fit(x, batch_size=8, verbose=0)


def test_fit_refuses_a_zero_batch_size_and_empty_data(bars, tiny_gpt):
    from aigc_tf.vae import VAE

    model = VAE(latent_dim=2, image_shape=(16, 16, 1), filters=(4,), dense_units=8, seed=0)
    model.compile()
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        model.fit(bars(8), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="x is empty"):
        model.fit(bars(8)[:0], verbose=0)
    gpt = compile_lm(tiny_gpt())
    with pytest.raises(ValueError, match="x is empty"):
        gpt.fit(lm_ids((0, 8)), lm_ids((0, 8)), verbose=0)


def test_token_ids_outside_the_vocabulary_are_caught_in_arrays_and_late_batches(tiny_gpt, tiny_rnn):
    for model in (compile_lm(tiny_gpt()), compile_lm(tiny_rnn())):
        x = lm_ids((32, 8))
        y = np.roll(x, -1, 1)
        y[20, 3] = model.vocab_size  # one id past the end, in batch 2 of 8
        with pytest.raises(ValueError, match=rf"y: token ids must lie in \[0, {model.vocab_size}\)"):
            model.fit(x, y, batch_size=8, verbose=0)
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        late = r"(?s)batch \(counted from 0\).*\b2\b.*token ids outside"
        with pytest.raises(tf.errors.InvalidArgumentError, match=late):
            model.fit(data, verbose=0)


# --------------------------------------------------------------------------- #
# 2 (continued). Interrupted and resumed from a .keras file equals uninterrupted, bit for bit.
# --------------------------------------------------------------------------- #

RESUME = r"""
import json, sys, tempfile
import numpy as np
import aigc_tf
aigc_tf.set_seed(0)  # op determinism: bit-equal runs on a CPU
import keras
import aigc_tf.models
from aigc_tf.recipes import get_recipe
from aigc_tf.training import text_data, train_recipe, training_dataset

kind = sys.argv[1]
small = {
    "dcgan": dict(generator_filters=(8, 4), discriminator_filters=(4, 8), latent_dim=8, dropout=0.3),
    "cgan": dict(generator_filters=(8, 4), discriminator_filters=(4, 8), latent_dim=8),
    "vae": dict(filters=(4, 8), dense_units=16, latent_dim=4),
    "char-rnn": dict(embedding_dim=8, units=16, dropout=0.2),
    "gpt": dict(num_layers=1, num_heads=2, embed_dim=16, dropout=0.2),
}[kind]
recipe = get_recipe(kind, "smoke", model=small, batch_size=8, compile={"jit_compile": False, "steps_per_execution": 1})
text = text_data(recipe) if kind in ("char-rnn", "gpt") else None

def fresh():
    keras.utils.set_random_seed(0)  # the same initial weights for every run
    model = recipe.build_model(tokenizer=text.tokenizer if text else None, seed=0)
    recipe.compile_model(model)
    return model

def data(model):
    return lambda start: training_dataset(recipe, model, seed=0, start=start, text=text)

whole = fresh()
train_recipe(recipe, whole, data(whole), steps=6, checkpoint_every=3)
first = fresh()
train_recipe(recipe, first, data(first), steps=3, checkpoint_every=3)
path = tempfile.mkdtemp() + "/m.keras"
first.save(path)
resumed = keras.models.load_model(path)
train_recipe(recipe, resumed, data(resumed), steps=6, checkpoint_every=3)
gaps = [float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(whole.weights, resumed.weights)]
print(json.dumps({"max_gap": max(gaps), "weights": len(gaps)}))
"""


@pytest.mark.slow
@pytest.mark.main_env  # resume: CI's main job only
@pytest.mark.parametrize("kind", ["dcgan", "cgan", "vae", "char-rnn", "gpt"])
def test_resumed_from_a_keras_file_equals_uninterrupted_bit_for_bit(kind):
    from subprocess_utils import run_python_json

    out = run_python_json(RESUME, kind)
    assert out["weights"] > 4 and out["max_gap"] == 0.0, out


def test_loss_scaling_follows_the_policy_the_gan_was_built_with():
    from aigc_tf.gan import DCGAN

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = DCGAN(latent_dim=4, image_shape=(16, 16, 1), generator_filters=(8, 4), discriminator_filters=(4, 8))
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile()  # the policy is float32 again, the networks are still float16
    assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)


# --------------------------------------------------------------------------- #
# 4. NaN and inf do not pass range checks.
# --------------------------------------------------------------------------- #


def test_nan_and_inf_are_refused_where_they_once_passed():
    from aigc_tf.callbacks import TimeBudget
    from aigc_tf.metrics import class_coverage, frechet_distance_from_moments, recognisable_rate
    from aigc_tf.vae import VAE

    model = VAE(latent_dim=2, image_shape=(16, 16, 1), filters=(4,), dense_units=8, seed=0)
    with pytest.raises(ValueError, match=r"z has 1 of 2 entries NaN or infinite \(1 NaN\)"):
        model.decode(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="beta must be finite"):
        VAE(beta=np.inf)
    with pytest.raises(ValueError, match="peak_lr must be > 0.0"):
        TimeBudget(10, peak_lr=-1)
    probs = np.full((4, 10), 0.1)
    probs[1] = np.nan
    with pytest.raises(ValueError, match="probabilities has 10 of 40 entries NaN"):
        recognisable_rate(probs)
    with pytest.raises(ValueError, match="predictions has 10 of 40 entries NaN"):
        class_coverage(probs)
    with pytest.raises(ValueError, match=r"means \(d,\) and covariances \(d, d\) of one d"):
        frechet_distance_from_moments(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma_b has 1 of 9 entries NaN"):
        frechet_distance_from_moments(np.zeros(3), np.eye(3), np.zeros(3), np.diag([1.0, 1.0, np.nan]))
