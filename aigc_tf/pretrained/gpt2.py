"""GPT-2 from KerasHub, and its weights inside the course's own :class:`~aigc_tf.transformer.GPT`.

:func:`load_gpt2` is ``keras_hub.models.GPT2CausalLM.from_preset`` with an
honest offline path: KerasHub's built-in presets download from Kaggle
(``kagglehub``, host ``www.kaggle.com``) into kagglehub's cache
(``~/.cache/kagglehub/models/keras/gpt2/...``, or ``$KAGGLEHUB_CACHE``); once
cached they load without the network. Offline and not cached, it fails within
seconds instead of hanging on retries.

:func:`gpt_from_keras_hub` copies every weight of a ``GPT2Backbone`` into a
course GPT of the same sizes (what nanoGPT's ``GPT.from_pretrained`` does with
the Hugging Face checkpoint). The two models are the same function: GPT-2 is
the pre-layer-norm decoder of :mod:`aigc_tf.transformer_layers` with biases,
tied embeddings, tanh-approximate GELU and LayerNorm epsilon 1e-5. Only the
layout differs: KerasHub keeps separate query/key/value ``EinsumDense``
kernels (E, H, head_dim); the course fuses them into one ``qkv`` Dense (E, 3E).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import keras
import numpy as np

from aigc_tf.config import is_offline
from aigc_tf.transformer import GPT

__all__ = ["PretrainedUnavailableError", "gpt_from_keras_hub", "load_gpt2"]

KAGGLE_HOST = "www.kaggle.com"  # kagglehub's API endpoint (kagglehub.config.DEFAULT_KAGGLE_API_ENDPOINT)
HF_HOST = "huggingface.co"  # for "hf://" presets
PROBE_TIMEOUT = 3.0  # seconds


class PretrainedUnavailableError(ConnectionError):
    """Pretrained weights are not cached and cannot be downloaded (offline, or the host is unreachable)."""


def _kagglehub_cache() -> str:
    return os.environ.get("KAGGLEHUB_CACHE", os.path.join("~", ".cache", "kagglehub"))


def _resolve(preset: str) -> tuple[str | None, bool]:
    """``(host to download from or None, already cached locally)`` for a preset name or handle."""
    if os.path.isdir(preset):
        return None, True
    from keras_hub.src.utils.preset_utils import BUILTIN_PRESETS

    handle = BUILTIN_PRESETS.get(preset, {}).get("kaggle_handle", preset)
    if handle.startswith("hf://"):
        return HF_HOST, False  # huggingface_hub checks the remote revision anyway
    if not handle.startswith("kaggle://"):
        return None, False  # gs://, modelscope://...: let KerasHub decide
    parts = handle.removeprefix("kaggle://").split("/")
    if len(parts) != 5:  # unversioned: kagglehub asks the server for the latest version
        return KAGGLE_HOST, False
    folder = os.path.join(os.path.expanduser(_kagglehub_cache()), "models", *parts)
    return KAGGLE_HOST, os.path.isfile(os.path.join(folder, "config.json"))


def _reachable(host: str, timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(preset: str, why: str) -> PretrainedUnavailableError:
    return PretrainedUnavailableError(
        f"Cannot load the pretrained preset {preset!r}: {why}. It needs the network once (KerasHub downloads it "
        f"from Kaggle into kagglehub's cache, {_kagglehub_cache()}/); after that it loads offline. Offline, use "
        "the course's own pretrained GPT instead: aigc_tf.pretrained.load_course_gpt()."
    )


def _is_network_error(error: BaseException) -> bool:
    network: tuple[type, ...] = (ConnectionError, TimeoutError, socket.gaierror, socket.timeout)
    try:
        import requests

        network += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - kagglehub depends on requests
        pass
    seen = set()
    while error is not None and id(error) not in seen:  # the error or anything it was raised from
        if isinstance(error, network):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def load_gpt2(preset: str = "gpt2_base_en", **kwargs: Any):
    """KerasHub's ``GPT2CausalLM`` (with its BPE preprocessor) from a preset.

    Example:
        >>> lm = load_gpt2()  # 124M parameters, ~500 MB download the first time
        >>> lm.generate("The meaning of life is", max_length=40)

    Args:
        preset: a KerasHub preset (``"gpt2_base_en"``, ``"gpt2_medium_en"``,
            ...), a ``kaggle://`` or ``hf://`` handle, or a local preset folder.
        kwargs: passed to ``GPT2CausalLM.from_preset`` (``dtype=...``, ...).

    Returns:
        a ``keras_hub.models.GPT2CausalLM``.

    Raises:
        TypeError: ``preset`` is not a str.
        PretrainedUnavailableError: offline (``aigc_tf.config.is_offline()``) or
            the download host is unreachable, and the preset is not cached. It
            is raised within seconds (a 3 s connection probe) and names
            :func:`aigc_tf.pretrained.load_course_gpt` as the offline substitute.
    """
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a str (e.g. 'gpt2_base_en'), got {type(preset).__name__}.")
    host, cached = _resolve(preset)
    if not cached:
        if is_offline():
            raise _unavailable(preset, "offline mode is on (AIGC_OFFLINE or CI) and it is not cached")
        if host is not None and not _reachable(host):
            raise _unavailable(preset, f"{host} is unreachable and it is not cached")
    import keras_hub

    try:
        return keras_hub.models.GPT2CausalLM.from_preset(preset, **kwargs)
    except Exception as error:
        if _is_network_error(error):
            raise _unavailable(preset, f"the download failed ({type(error).__name__}: {error})") from None
        raise


def _gelu_is_tanh(activation: Any) -> bool:
    x = np.linspace(-4.0, 4.0, 17, dtype="float32")
    want = keras.ops.convert_to_numpy(keras.activations.gelu(x, approximate=True))
    return np.allclose(keras.ops.convert_to_numpy(activation(x)), want, atol=1e-6)


def gpt_from_keras_hub(backbone: Any, *, tokenizer: Any = None) -> GPT:
    """A course :class:`~aigc_tf.transformer.GPT` holding the weights of a KerasHub GPT-2.

    Example:
        >>> lm = load_gpt2("gpt2_base_en")
        >>> gpt = gpt_from_keras_hub(lm)  # same logits as lm, the course's code
        >>> gpt.generate(ids, 50, top_k=1)  # ids from lm.preprocessor.tokenizer(...)

    The tokenizer stays None unless given (the ids are GPT-2's BPE ids); to
    generate from strings, pass a course tokenizer wrapping GPT-2's BPE, e.g.
    ``tokenizer=aigc_tf.bpe.BPETokenizer.from_keras_hub(lm.preprocessor.tokenizer)``
    (or set ``gpt.tokenizer`` afterwards).

    Weight mapping (E = hidden_dim, H heads of hd = E / H features), per layer i
    ``transformer_layer_i/`` → ``block_i/``:

    * ``token_embedding/embeddings`` (V, E), ``position_embedding/embeddings``
      (max_len, E) → the GPT's embeddings (the logits use the tied token matrix);
    * ``self_attention/{query,key,value}/kernel`` (E, H, hd) → each reshaped to
      (E, E) and concatenated q|k|v into ``attn/qkv`` kernel (E, 3E); biases
      (H, hd) → (E,) each, concatenated into the (3E,) bias;
    * ``self_attention/attention_output/kernel`` (H, hd, E) → ``attn/proj`` (E, E), bias as is;
    * ``self_attention_layer_norm`` → ``ln1``; ``feedforward_layer_norm`` → ``ln2``;
    * ``feedforward_intermediate_dense`` → ``fc``; ``feedforward_output_dense`` → ``fc_proj``;
    * final ``layer_norm`` → ``ln_f``.

    Args:
        backbone: a ``keras_hub.models.GPT2Backbone``, or a ``GPT2CausalLM``
            (its ``.backbone`` is used).
        tokenizer: optional course tokenizer with the backbone's vocabulary size.

    Returns:
        a built GPT with ``use_bias=True, tie_weights=True, dropout=0.0,
        gelu_approximate=True`` and KerasHub's sizes.

    Raises:
        TypeError: ``backbone`` is neither a GPT2Backbone nor a GPT2CausalLM.
        ValueError: a structure this mapping does not know (intermediate_dim
            not a multiple of hidden_dim, other epsilon or activation, extra or
            missing weights, e.g. LoRA or quantized variables).
    """
    import keras_hub

    if isinstance(backbone, keras_hub.models.GPT2CausalLM):
        backbone = backbone.backbone
    if not isinstance(backbone, keras_hub.models.GPT2Backbone):
        raise TypeError(
            f"backbone must be a keras_hub.models.GPT2Backbone or GPT2CausalLM, got {type(backbone).__name__}."
        )
    E, H, L = backbone.hidden_dim, backbone.num_heads, backbone.num_layers
    if backbone.intermediate_dim % E:
        raise ValueError(
            f"intermediate_dim ({backbone.intermediate_dim}) must be a multiple of hidden_dim ({E}): "
            "the course GPT's MLP is mlp_ratio * embed_dim wide."
        )
    epsilons = [layer.layer_norm_epsilon for layer in backbone.transformer_layers] + [backbone.layer_norm.epsilon]
    if any(abs(eps - 1e-5) > 1e-12 for eps in epsilons):
        raise ValueError(f"the course GPT's LayerNorm epsilon is 1e-5; this backbone uses {sorted(set(epsilons))}.")
    if not all(layer.normalize_first and _gelu_is_tanh(layer.activation) for layer in backbone.transformer_layers):
        raise ValueError("expected pre-layer-norm decoder layers with tanh-approximate GELU (GPT-2's).")

    gpt = GPT(
        backbone.vocabulary_size,
        max_len=backbone.max_sequence_length,
        num_layers=L,
        num_heads=H,
        embed_dim=E,
        mlp_ratio=backbone.intermediate_dim // E,
        use_bias=True,
        tie_weights=True,
        dropout=0.0,
        gelu_approximate=True,
        tokenizer=tokenizer,
    )
    gpt.build((None, None))

    source = {
        w.path.split("/", 1)[1] if w.path.startswith(backbone.name + "/") else w.path: w for w in backbone.weights
    }
    used: set[str] = set()
    filled: set[int] = set()  # ids of the course GPT's variables assigned

    def take(path: str, shape: tuple) -> np.ndarray:
        if path not in source:
            raise ValueError(f"the backbone has no weight {path!r}: not the GPT-2 structure this mapping expects.")
        if path in used:
            raise ValueError(f"weight {path!r} used twice")  # a bug in the mapping itself
        value = keras.ops.convert_to_numpy(source[path]).astype("float32")
        if value.shape != shape:
            raise ValueError(f"weight {path!r} has shape {value.shape}, expected {shape}.")
        used.add(path)
        return value

    def put(variable: Any, value: np.ndarray) -> None:
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"{variable.path}: shape {tuple(variable.shape)} != {value.shape}")
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
        filled.add(id(variable))

    V, T, F, hd = backbone.vocabulary_size, backbone.max_sequence_length, backbone.intermediate_dim, E // H
    put(gpt.token_embedding.embeddings, take("token_embedding/embeddings", (V, E)))
    put(gpt.position_embedding.embeddings, take("position_embedding/embeddings", (T, E)))
    for i, block in enumerate(gpt.blocks):
        p = f"transformer_layer_{i}/"
        att = p + "self_attention/"
        qkv = [take(f"{att}{n}/kernel", (E, H, hd)).reshape(E, E) for n in ("query", "key", "value")]
        put(block.attn.qkv.kernel, np.concatenate(qkv, axis=1))
        bias = [take(f"{att}{n}/bias", (H, hd)).reshape(E) for n in ("query", "key", "value")]
        put(block.attn.qkv.bias, np.concatenate(bias))
        put(block.attn.proj.kernel, take(att + "attention_output/kernel", (H, hd, E)).reshape(E, E))
        put(block.attn.proj.bias, take(att + "attention_output/bias", (E,)))
        for ours, theirs in ((block.ln1, "self_attention_layer_norm"), (block.ln2, "feedforward_layer_norm")):
            put(ours.gamma, take(f"{p}{theirs}/gamma", (E,)))
            put(ours.beta, take(f"{p}{theirs}/beta", (E,)))
        for ours, theirs, shape in (
            (block.fc, "feedforward_intermediate_dense", (E, F)),
            (block.fc_proj, "feedforward_output_dense", (F, E)),
        ):
            put(ours.kernel, take(f"{p}{theirs}/kernel", shape))
            put(ours.bias, take(f"{p}{theirs}/bias", shape[1:]))
    put(gpt.ln_f.gamma, take("layer_norm/gamma", (E,)))
    put(gpt.ln_f.beta, take("layer_norm/beta", (E,)))

    unused = sorted(set(source) - used)
    if unused or len(used) != len(backbone.weights) or filled != {id(w) for w in gpt.weights}:
        raise ValueError(
            f"unexpected GPT-2 structure: {len(backbone.weights)} source weights, {len(used)} mapped; "
            f"{len(filled)} of the course GPT's {len(gpt.weights)} filled; unused: {unused[:5]}"
        )
    return gpt
