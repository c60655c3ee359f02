"""GPT-2 from KerasHub inside the course's GPT: same logits, same greedy tokens; the offline path."""

import time

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

from aigc_tf.config import is_offline  # noqa: E402
from aigc_tf.pretrained.gpt2 import PretrainedUnavailableError, gpt_from_keras_hub, load_gpt2  # noqa: E402
from aigc_tf.transformer import GPT, GPTConfig  # noqa: E402

VOCAB, MAX_LEN = 97, 64


def tiny_backbone(seed: int = 0):
    """A random tiny GPT-2 whose every weight (biases, LayerNorms included) is large enough to matter."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=128, max_sequence_length=64
    )
    rng = np.random.default_rng(seed)
    for w in backbone.weights:
        value = rng.normal(0.0, 0.3, w.shape).astype("float32")
        w.assign(value + 1.0 if w.path.endswith("gamma") else value)
    return backbone


@pytest.fixture(scope="module")
def models():
    backbone = tiny_backbone()
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    return backbone, causal_lm, gpt_from_keras_hub(backbone)


def hub_logits(causal_lm, ids):
    return keras.ops.convert_to_numpy(causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}))


@pytest.mark.parametrize("length", [16, MAX_LEN])
def test_logits_match_keras_hub(models, length):
    _, causal_lm, gpt = models
    ids = np.random.default_rng(length).integers(0, VOCAB, (2, length)).astype("int32")
    want = hub_logits(causal_lm, ids)
    got = keras.ops.convert_to_numpy(gpt(ids))
    assert got.shape == want.shape == (2, length, VOCAB)
    assert np.abs(want).max() > 1.0  # the check is not vacuous
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_a_swapped_weight_is_visible(models):
    """The test weights are random enough that a q/k mix-up changes the logits."""
    _, causal_lm, gpt = models
    ids = np.random.default_rng(1).integers(0, VOCAB, (2, 16)).astype("int32")
    broken = gpt_from_keras_hub(causal_lm)  # a GPT2CausalLM works too
    np.testing.assert_allclose(keras.ops.convert_to_numpy(broken(ids)), hub_logits(causal_lm, ids), atol=1e-4)
    kernel = broken.blocks[0].attn.qkv.kernel.numpy()
    broken.blocks[0].attn.qkv.kernel.assign(np.concatenate([kernel[:, 32:64], kernel[:, :32], kernel[:, 64:]], 1))
    assert np.abs(keras.ops.convert_to_numpy(broken(ids)) - hub_logits(causal_lm, ids)).max() > 1e-2


def test_mapped_config(models):
    backbone, _, gpt = models
    assert gpt.config == GPTConfig(
        vocab_size=VOCAB, max_len=MAX_LEN, num_layers=2, num_heads=2, embed_dim=32, mlp_ratio=4, gelu_approximate=True
    )
    assert gpt.tokenizer is None
    assert gpt.count_params() == backbone.count_params()


def hub_generate(causal_lm, prompt, new):
    """KerasHub's generate without a preprocessor: prompt + new tokens with its compiled sampler, no stop token."""
    batch, length = prompt.shape
    ids = np.zeros((batch, length + new), "int32")
    ids[:, :length] = prompt
    mask = np.zeros_like(ids, dtype=bool)
    mask[:, :length] = True
    out = causal_lm.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None)
    return np.asarray(out["token_ids"])


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_matches_keras_hub(models, use_cache):
    _, causal_lm, gpt = models
    prompt = np.random.default_rng(2).integers(0, VOCAB, (2, 8)).astype("int32")
    want = hub_generate(causal_lm, prompt, 20)
    got = np.asarray(gpt.generate(prompt, 20, top_k=1, use_cache=use_cache))
    assert got.shape == want.shape == (2, 28)
    np.testing.assert_array_equal(got, want)


def test_gelu_approximate_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    gpt = GPT(VOCAB, max_len=16, num_layers=1, num_heads=2, embed_dim=16, gelu_approximate=True)
    ids = np.arange(10, dtype="int32")[None] % VOCAB
    logits = keras.ops.convert_to_numpy(gpt(ids))
    assert gpt.get_config()["gelu_approximate"] is True
    assert GPT.from_config(gpt.get_config()).config.gelu_approximate
    path = tmp_path / "gpt.keras"
    gpt.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.config.gelu_approximate is True
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(ids)), logits, atol=1e-6)

    exact = GPT(VOCAB, max_len=16, num_layers=1, num_heads=2, embed_dim=16)
    exact.build((None, None))
    exact.set_weights(gpt.get_weights())  # same layout either way; only the activation differs
    assert np.abs(keras.ops.convert_to_numpy(exact(ids)) - logits).max() > 0

    old = {k: v for k, v in gpt.get_config().items() if k != "gelu_approximate"}  # a pre-field .keras config
    assert GPT.from_config(old).config.gelu_approximate is False
    with pytest.raises(TypeError, match="gelu_approximate"):
        GPTConfig(gelu_approximate=1)


def test_load_gpt2_offline_fails_fast():
    assert is_offline()  # tests/conftest.py sets AIGC_OFFLINE=1
    start = time.perf_counter()
    with pytest.raises(PretrainedUnavailableError, match="load_course_gpt") as info:
        load_gpt2()
    assert time.perf_counter() - start < 2.0
    assert "gpt2_base_en" in str(info.value)
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(TypeError, match="preset"):
        load_gpt2(3)


def test_wrong_argument_type():
    with pytest.raises(TypeError, match="backbone"):
        gpt_from_keras_hub(keras.Sequential([keras.layers.Dense(2)]))


@pytest.mark.network
@pytest.mark.skipif(is_offline(), reason="needs the internet (downloads gpt2_base_en); AIGC_OFFLINE or CI is set")
def test_real_gpt2_base_en():
    causal_lm = load_gpt2("gpt2_base_en")
    causal_lm.compile(sampler="greedy")
    gpt = gpt_from_keras_hub(causal_lm)
    prompt = np.asarray(causal_lm.preprocessor.tokenizer("The meaning of life is"), "int32")[None]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gpt(prompt)), hub_logits(causal_lm, prompt), atol=1e-4)
    want = hub_generate(causal_lm, prompt, 10)
    np.testing.assert_array_equal(np.asarray(gpt.generate(prompt, 10, top_k=1)), want)


def test_load_gpt2_unreachable_host_fails_fast(monkeypatch):
    """Not in offline mode but the download host does not answer: the same error, no retries."""
    from aigc_tf.pretrained import gpt2

    monkeypatch.setenv("AIGC_OFFLINE", "0")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("KAGGLEHUB_CACHE", "/nonexistent/kagglehub")  # nothing cached there
    probed = []
    monkeypatch.setattr(gpt2, "_reachable", lambda host, timeout=3.0: probed.append(host) or False)
    with pytest.raises(PretrainedUnavailableError, match="www.kaggle.com is unreachable"):
        load_gpt2("gpt2_base_en")
    assert probed == ["www.kaggle.com"]


def test_load_gpt2_local_preset_needs_no_network(models, tmp_path):
    _, causal_lm, _ = models
    try:
        causal_lm.save_to_preset(str(tmp_path / "tiny"))
    except AttributeError as error:  # KerasHub 0.26 (Colab's) cannot save a task without a preprocessor
        pytest.skip(f"keras_hub {keras_hub.__version__} cannot save a preset without a preprocessor ({error})")
    loaded = load_gpt2(str(tmp_path / "tiny"))  # offline, but a local folder is already "cached"
    ids = np.arange(12, dtype="int32")[None]
    np.testing.assert_allclose(hub_logits(loaded, ids), hub_logits(causal_lm, ids), atol=1e-6)
    assert np.abs(keras.ops.convert_to_numpy(gpt_from_keras_hub(loaded)(ids)) - hub_logits(loaded, ids)).max() < 1e-4


def test_network_errors_from_from_preset_are_wrapped(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        try:
            raise OSError("[Errno -3] Temporary failure in name resolution")
        except OSError as error:
            raise ValueError("download failed") from ConnectionError(str(error))

    monkeypatch.setattr(keras_hub.models.GPT2CausalLM, "from_preset", no_network)
    (tmp_path / "p").mkdir()
    with pytest.raises(PretrainedUnavailableError, match="download failed"):
        load_gpt2(str(tmp_path / "p"))
    monkeypatch.setattr(keras_hub.models.GPT2CausalLM, "from_preset", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # anything else is not hidden
        load_gpt2(str(tmp_path / "p"))


def test_beam_search_matches_keras_hub(models):
    backbone, _, gpt = models
    beam_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    beam_lm.compile(sampler=keras_hub.samplers.BeamSampler(num_beams=3))
    prompt = np.random.default_rng(3).integers(0, VOCAB, (2, 8)).astype("int32")
    np.testing.assert_array_equal(np.asarray(gpt.generate(prompt, 12, num_beams=3)), hub_generate(beam_lm, prompt, 12))
