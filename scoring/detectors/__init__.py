"""The registry of detector kinds: one module a kind, one line here.

``KINDS`` maps a kind's name (stored as each model's ``type`` in ``bundle.json``) to its
``DetectorKind``; ``kind_of`` finds a model's kind from its type. ``TRAINABLE`` are the kinds
``bscore train`` fits; ``DEFAULT_KIND`` is the one that measured best on realistic and real
labelled data (``bench/quality.py``).
"""

import importlib
import sys

from scoring.detectors import robust, svm
from scoring.detectors.base import DEFAULT_FALSE_ALARM_RATE, FitOptions, SvmParams, TrainingError

# The skops kind (scikit-learn and skops, seconds to import) loads only when a bundle names it
# or a caller asks for one of its names: scoring and training the other kinds never need it.
_SKOPS_MODULE = "scoring.detectors.sklearn_detectors"
_SKOPS_NAMES = ("DetectorModel", "dump_detector", "load_detector", "training_samples")


class _LazyKinds(dict):
    def __missing__(self, name):
        if name != "skops":
            raise KeyError(name)
        self[name] = importlib.import_module(_SKOPS_MODULE).KIND
        return self[name]

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default


KINDS = _LazyKinds({kind.name: kind for kind in (svm.KIND, robust.KIND)})
TRAINABLE = ("robust", "svm")
DEFAULT_KIND = "robust"


def kind_of(model):
    """The kind of a fitted model (``ValueError`` for an object no kind stores)."""
    for kind in (svm.KIND, robust.KIND):
        if isinstance(model, kind.model_type):
            return kind
    skops = sys.modules.get(_SKOPS_MODULE)  # a skops model exists only once its module is loaded
    if skops is not None and isinstance(model, skops.DetectorModel):
        return KINDS["skops"]
    raise ValueError(f"{type(model).__name__} is not a model of any detector kind (svm, robust, skops)")


def __getattr__(name):
    if name in _SKOPS_NAMES:
        return getattr(importlib.import_module(_SKOPS_MODULE), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["KINDS", "TRAINABLE", "DEFAULT_KIND", "DEFAULT_FALSE_ALARM_RATE", "FitOptions", "SvmParams",
           "TrainingError", "DetectorModel", "dump_detector", "load_detector", "training_samples", "kind_of"]
