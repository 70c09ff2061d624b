"""Model families, one module each; every model is a `LatentVariableModel` (see `base`).

VAE (Kingma & Welling), SBN and fDARN (Mnih & Gregor), DLGM (Rezende, Mohamed & Wierstra).

`FAMILIES` is the one list of the families a recipe, a zoo card or the `tfrecog train` command can name: the
model class, the constructor arguments the name implies, and what a training recipe for it needs besides the
model optimizer. A new family is a module with a `LatentVariableModel` subclass plus one entry here.
"""

from __future__ import annotations

import dataclasses

from tfrecog.models.base import InputError, LatentVariableModel
from tfrecog.models.dlgm import DLGM
from tfrecog.models.sbn import SBN, BernoulliLayer
from tfrecog.models.vae import VAE


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family by name.

    Attributes:
      name: what recipes, cards and the CLI call it.
      model_class: the `LatentVariableModel` subclass.
      defaults: constructor arguments the name implies (fDARN is an SBN with autoregressive layers).
      recipe: entries a training recipe for it adds to the defaults (SBN: NVIL's baseline optimizer).
    """

    name: str
    model_class: type
    defaults: dict = dataclasses.field(default_factory=dict)
    recipe: dict = dataclasses.field(default_factory=dict)


# NVIL's input-dependent baseline C(x) has an optimizer of its own.
_NVIL_RECIPE = {"baseline_optimizer": {"class_name": "Adam", "config": {"learning_rate": 3e-3}}}

FAMILIES = {family.name: family for family in (
    Family("vae", VAE),
    Family("sbn", SBN, recipe=_NVIL_RECIPE),
    Family("fdarn", SBN, {"autoregressive_prior": True, "autoregressive_visible": True}, recipe=_NVIL_RECIPE),
    Family("dlgm", DLGM),
)}


def family(name: str) -> Family:
    """The family registered under `name`; a clear error lists the known names."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def from_config(family_name: str, config: dict) -> LatentVariableModel:
    """A built model of the family from its Keras config (`model.get_config()`, as zoo cards store it)."""
    model = family(family_name).model_class.from_config(dict(config))
    model.build((None, model.event_size))
    return model


__all__ = ["DLGM", "FAMILIES", "SBN", "VAE", "BernoulliLayer", "Family", "InputError", "LatentVariableModel",
           "family", "from_config"]
