"""Metrics: sample quality of image generators, and language-model losses.

* :mod:`aigc_tf.metrics.images` — classifier FID/KID, recognisable rate,
  class coverage;
* :mod:`aigc_tf.metrics.inception` — the standard Inception FID (online);
* :mod:`aigc_tf.metrics.text` — :func:`evaluate_loss`, :func:`bits_per_char`,
  :func:`perplexity`.

Everything is importable from ``aigc_tf.metrics`` directly.
"""

from aigc_tf.metrics.images import (
    CLASSIFIER_DATASETS,
    FEATURE_LAYER,
    WEIGHTS_DIR,
    balanced_indices,
    balanced_reference,
    class_coverage,
    classifier_outputs,
    classifier_weights_path,
    evaluate_samples,
    frechet_distance,
    frechet_distance_from_moments,
    kernel_distance,
    load_classifier,
    make_classifier,
    polynomial_mmd2_unbiased,
    recognisable_rate,
)
from aigc_tf.metrics.inception import inception_features, inception_fid, load_inception
from aigc_tf.metrics.text import (
    bits_per_char,
    continuation_nats_per_char,
    distinct_n,
    evaluate_loss,
    perplexity,
    repeated_share,
    text_loss,
)

__all__ = [
    "CLASSIFIER_DATASETS",
    "FEATURE_LAYER",
    "WEIGHTS_DIR",
    "balanced_indices",
    "balanced_reference",
    "bits_per_char",
    "continuation_nats_per_char",
    "class_coverage",
    "classifier_outputs",
    "classifier_weights_path",
    "evaluate_loss",
    "evaluate_samples",
    "frechet_distance",
    "frechet_distance_from_moments",
    "inception_features",
    "inception_fid",
    "kernel_distance",
    "load_classifier",
    "load_inception",
    "make_classifier",
    "perplexity",
    "repeated_share",
    "text_loss",
    "distinct_n",
    "polynomial_mmd2_unbiased",
    "recognisable_rate",
]
