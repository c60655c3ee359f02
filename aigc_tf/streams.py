"""Random streams and the dtype policy saved with the model, so that a reloaded model continues as it was.

Every model of the course draws its randomness (latents, the VAE's noise, dropout
masks, sampling) from ``keras.random.SeedGenerator`` objects it owns. Their state
is a variable, but Keras's ``.keras`` and ``.weights.h5`` files do not store it: a
reloaded model would start its streams again from their initial values and replay
the noise of its first steps. :class:`SavedRandomState` stores it with the weights.

A model built under ``mixed_float16`` records the policy in its config, but Keras
builds the layers of a subclassed model under the *global* policy when it loads
one: :func:`from_config_under_policy` builds them under the saved one.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = ["SEED_STATE", "SavedRandomState", "from_config_under_policy", "random_variables"]

#: The name Keras gives a ``SeedGenerator``'s state variable.
SEED_STATE = "seed_generator_state"
_KEY = "random_state_"


def random_variables(model) -> list:
    """The state variables of every ``SeedGenerator`` in ``model`` (its own and its layers'), in a fixed order."""
    return [v for v in model.variables if v.name == SEED_STATE]


class SavedRandomState:
    """Mixin for a ``keras.Model``: its files carry the state of all its random streams.

    ``model.save`` / ``keras.models.load_model`` and ``save_weights`` / ``load_weights``
    then restore the streams where they were, so training that resumes from a file
    draws the same noise as training that never stopped. Files written without the
    states (older ones) load as before, with the streams at their initial values.
    """

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        for i, variable in enumerate(random_variables(self)):
            store[f"{_KEY}{i}"] = variable.numpy()

    def load_own_variables(self, store: Any) -> None:
        keys = list(store.keys())
        saved = sorted((k for k in keys if k.startswith(_KEY)), key=lambda k: int(k[len(_KEY) :]))
        super().load_own_variables({k: store[k] for k in keys if not k.startswith(_KEY)})
        if not saved:
            return
        variables = random_variables(self)
        if len(saved) != len(variables):
            raise ValueError(
                f"the file holds {len(saved)} random-stream states but {type(self).__name__} has {len(variables)}: "
                "it was saved from a different architecture."
            )
        for variable, key in zip(variables, saved):
            variable.assign(store[key])


def from_config_under_policy(cls: type, config: dict[str, Any]) -> Any:
    """``cls(**config)`` with the global dtype policy set to the one ``config`` was saved under.

    A model saved under ``mixed_float16`` then loads with float16 layers (and its
    loss scaling) rather than as float32, whatever the global policy is when loading.
    """
    saved = config.get("dtype")
    policy = keras.dtype_policies.get(saved) if saved is not None else None
    previous = keras.config.dtype_policy()
    if policy is None or policy.name == previous.name:
        return cls(**config)
    keras.config.set_dtype_policy(policy)
    try:
        return cls(**config)
    finally:
        keras.config.set_dtype_policy(previous)
