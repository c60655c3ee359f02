"""Discriminator rejection sampling (Azadi et al., 2019), over any proposal and score.

At D's optimum its logit is the log density ratio l(x) = log p_data(x) / p_g(x).
Rejection sampling from p_g with the envelope e^bound >= max_x p_data / p_g keeps
a proposal x with probability exp(l(x) - bound) (:func:`rejection_acceptance`),
and the kept samples follow p_data, as far as D is optimal.

:func:`rejection_sample` knows nothing of the models: it takes a ``propose``
callable (draw images from a NumPy generator) and a ``score`` callable (D's
logits), so the GANs call it with their own networks and a test can call it with
stand-ins.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from aigc_tf.validation import check_float, check_int

__all__ = ["rejection_acceptance", "rejection_sample"]

#: Proposals per round at least: the last few open slots do not each need many
#: rounds at a low acceptance rate.
MIN_ROUND = 1000
#: Burn-in proposals per label at least, when each label gets its own bound.
MIN_PER_LABEL = 200


def rejection_acceptance(logits, bound) -> np.ndarray:
    """Acceptance probability of discriminator rejection sampling (Azadi et al., 2019).

    At the optimum D*(x) = p_data / (p_data + p_g), so D's logit is the log density
    ratio: l(x) = log p_data(x) - log p_g(x). Rejection sampling from the proposal
    p_g with envelope constant e^bound >= max_x p_data(x) / p_g(x) accepts x with
    probability p_data(x) / (e^bound p_g(x)) = exp(l(x) - bound), and the accepted
    samples follow p_data exactly. With a bound below the largest logit the ratio
    is clipped at 1 (the samples above it are all kept): a trade between the
    acceptance rate and how closely the samples follow the ratio.

    Args:
        logits: D's logits l(x), any shape.
        bound: the log envelope constant (or one per logit, broadcastable: per-label bounds).

    Returns:
        float64 array shaped like ``logits``: min(1, exp(l - bound)).
    """
    logits = np.asarray(logits, dtype=np.float64)
    return np.exp(np.minimum(logits - np.asarray(bound, dtype=np.float64), 0.0))


def rejection_sample(
    propose: Callable[[np.random.Generator, int, np.ndarray | None], np.ndarray],
    score: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    num_images: int,
    *,
    seed: int,
    labels: np.ndarray | None = None,
    percentile: float = 95.0,
    bound: float | None = None,
    burn_in: int = 2000,
    max_rounds: int = 100,
    strict: bool = False,
    stats: dict | None = None,
) -> np.ndarray:
    """``num_images`` samples of ``propose``, each kept with probability ``rejection_acceptance(score, bound)``.

    A rejected slot gets a fresh proposal (with its own label) until every slot
    is filled. Round r proposes for every open slot, repeated to at least 1,000
    proposals; each slot takes its first accepted proposal. The first round draws
    from ``numpy.random.default_rng(seed)``, so when every first proposal is kept
    the result is ``propose(default_rng(seed), ...)[:num_images]``: the model's
    plain samples for that seed.

    With labels, the bound is set **per label** (the percentile of that label's
    burn-in logits): D may score one class lower than the others everywhere, and a
    single bound would then reject that whole class. Slots still open after
    ``max_rounds`` keep the best-scoring proposal they were offered (with a
    ``RuntimeWarning`` saying how many), unless ``strict``.

    Args:
        propose: ``propose(rng, count, labels)`` -> ``count`` images drawn with the
            NumPy generator ``rng`` (``labels``: ``(count,)`` ids or ``None``).
        score: ``score(images, labels)`` -> ``(count,)`` logits (log p_data / p_g at D's optimum).
        num_images: >= 1.
        seed: an int: the proposals use ``default_rng(seed)``, the accept/reject
            draws and the burn-in ``default_rng((seed, 2))``.
        labels: ``(num_images,)`` class ids, one per slot (already checked), or ``None``.
        percentile: without ``bound``, the bound is this percentile of the logits of
            ``burn_in`` separate proposals (100: the largest, as in the paper).
        bound: a fixed log bound instead (for every label).
        burn_in: proposals scored to set the bound (with labels, shared among them, at least
            :data:`MIN_PER_LABEL` each).
        max_rounds: rounds of proposals before the open slots fall back (or, with
            ``strict``, a ``RuntimeError``).
        strict: raise instead of falling back.
        stats: a dict to fill with ``acceptance`` (the share of proposals accepted), ``proposed``,
            ``rounds``, ``fallback`` (slots filled by the fallback) and ``bounds``.

    Returns:
        ``(num_images, ...)`` float32 array of kept samples.
    """
    num_images = check_int("num_images", num_images, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    burn_in = check_int("burn_in", burn_in, minimum=1)
    max_rounds = check_int("max_rounds", max_rounds, minimum=1)
    if bound is None:
        percentile = check_float("percentile", percentile, low=0.0, high=100.0)
    else:
        bound = check_float("bound", bound)
    z_rng = np.random.default_rng(seed)
    u_rng = np.random.default_rng((seed, 2))

    def draw(rng, count, slot_labels):
        images = propose(rng, count, slot_labels)
        logits = np.asarray(score(images, slot_labels), np.float64)
        if not np.isfinite(logits).all():
            raise ValueError("score: the discriminator's logits are not all finite (NaN or inf): has D diverged?")
        return images, logits

    # One bound per label (a single one for unlabelled proposals): `bounds[label]`.
    classes = np.unique(labels) if labels is not None else np.zeros(1, np.int64)
    if bound is not None:
        bounds = dict.fromkeys(classes.tolist(), bound)
    else:
        # A separate burn-in draw, so the first round's stream is the one plain sampling uses.
        each = burn_in if len(classes) == 1 else max(burn_in // len(classes), MIN_PER_LABEL)
        probe_labels = None if labels is None else np.repeat(classes, each)
        _, probe = draw(u_rng, each * len(classes), probe_labels)
        per_class = probe.reshape(len(classes), each)
        bounds = {c: float(np.percentile(row, percentile)) for c, row in zip(classes.tolist(), per_class)}
    slot_bounds = np.array([bounds[c] for c in (labels.tolist() if labels is not None else [0] * num_images)])

    out, best = None, np.full(num_images, -np.inf)
    pending, proposed, accepted, rounds = np.arange(num_images), 0, 0, 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (read after the loop)
        slots = np.tile(pending, -(-MIN_ROUND // len(pending)))
        images, logits = draw(z_rng, len(slots), None if labels is None else labels[slots])
        proposed += len(slots)
        if out is None:
            out = np.empty((num_images, *images.shape[1:]), np.float32)
            fallback = np.empty_like(out)
        # Remember each open slot's best proposal so far (the fallback).
        order = np.argsort(logits)  # ascending: the last write per slot is its best this round
        better = logits[order] > best[slots[order]]
        fallback[slots[order][better]] = images[order][better]
        best[slots[order][better]] = logits[order][better]
        keep = u_rng.random(len(slots)) < rejection_acceptance(logits, slot_bounds[slots])
        accepted += int(keep.sum())
        filled, first = np.unique(slots[keep], return_index=True)  # each slot's first accepted proposal
        out[filled] = images[keep][first]
        pending = np.setdiff1d(pending, filled)
        if not len(pending):
            break
    if stats is not None:
        stats.update(
            acceptance=accepted / proposed,
            proposed=proposed,
            rounds=rounds,
            fallback=int(len(pending)),
            bounds=bounds,
        )
    if len(pending):
        message = (
            f"discriminator rejection sampling: {len(pending)} of {num_images} images still rejected after "
            f"max_rounds={max_rounds} rounds"
        )
        if strict:
            raise RuntimeError(f"{message}; lower `percentile` or `bound`, or raise max_rounds.")
        warnings.warn(f"{message}: they keep their best-scoring proposal.", RuntimeWarning, stacklevel=2)
        out[pending] = fallback[pending]
    return out
