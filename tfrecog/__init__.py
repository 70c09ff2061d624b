"""tfrecog: recognition models (amortised variational inference) for deep directed latent-variable models.

Keras 3 models on TensorFlow with TFP distributions, a zoo of pretrained models and encoders for deployment.

`import tfrecog` is light: TensorFlow loads on the first use of a name below (PEP 562 module `__getattr__`), so the
`tfrecog` command answers `--help`, `--version` and `zoo list` without it.
"""

import importlib
import sys
import types

from tfrecog import cards
from tfrecog.version import __version__  # noqa: F401

# name -> module that defines it (the submodules themselves map to None)
_LAZY = {
    "data": None, "estimators": None, "evaluate": None, "export": None, "io": None, "loader": None,
    "models": None, "training": None, "zoo": None,
    "log_likelihood": "tfrecog.evaluate", "ais_log_likelihood": "tfrecog.evaluate", "bdmc": "tfrecog.evaluate",
    "inference_gaps": "tfrecog.evaluate", "DLGM": "tfrecog.models", "SBN": "tfrecog.models",
    "VAE": "tfrecog.models", "LatentVariableModel": "tfrecog.models",
}

__all__ = ["DLGM", "SBN", "VAE", "LatentVariableModel", "data", "estimators", "evaluate", "export", "impute",
           "io", "loader", "log_likelihood", "models", "training", "zoo", "ais_log_likelihood", "bdmc",
           "inference_gaps", "__version__"]


class _ZooPresets:
    """`LatentVariableModel.from_preset`'s source of presets (registered in `tfrecog.cards`, the bottom layer, so that
    the models need not import the zoo above them): zoo names and run folders through `tfrecog.loader`."""

    def model_class(self, name_or_run):
        from tfrecog import loader

        return loader.model_class(name_or_run)

    def load(self, name_or_run, compile: bool = True):
        from tfrecog import loader

        return loader.load_model(name_or_run, compile=compile)


cards.set_preset_source(_ZooPresets())


class _Package(types.ModuleType):
    """The class of this package's module object: `tfrecog.impute` is the function (as `tfrecog.log_likelihood` is),
    even once the submodule `tfrecog.impute` is loaded, when the import system sets the package's attribute of that
    name to the submodule."""

    @property
    def impute(self):
        from tfrecog.impute import impute

        return impute

    @impute.setter
    def impute(self, value):
        pass  # the import system's `tfrecog.impute = <submodule>`: the name keeps meaning the function


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tfrecog' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name] or f"tfrecog.{name}")
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value  # the next access skips __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
