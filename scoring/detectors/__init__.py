"""The registry of detector kinds: one module a kind, one line here.

``KINDS`` maps a kind's name (stored as each model's ``type`` in ``bundle.json``) to its
``DetectorKind``; ``kind_of`` finds a model's kind from its type. ``TRAINABLE`` are the kinds
``bscore train`` fits; ``DEFAULT_KIND`` is the one that measured best on realistic and real
labelled data (``bench/quality.py``).
"""

from scoring.detectors import robust, sklearn_detectors, svm
from scoring.detectors.base import DEFAULT_FALSE_ALARM_RATE, FitOptions, SvmParams, TrainingError
from scoring.detectors.sklearn_detectors import DetectorModel, dump_detector, load_detector, training_samples

KINDS = {kind.name: kind for kind in (svm.KIND, robust.KIND, sklearn_detectors.KIND)}
TRAINABLE = ("robust", "svm")
DEFAULT_KIND = "robust"


def kind_of(model):
    """The kind of a fitted model (``ValueError`` for an object no kind stores)."""
    for kind in KINDS.values():
        if isinstance(model, kind.model_type):
            return kind
    raise ValueError(f"{type(model).__name__} is not a model of any detector kind ({', '.join(KINDS)})")


__all__ = ["KINDS", "TRAINABLE", "DEFAULT_KIND", "DEFAULT_FALSE_ALARM_RATE", "FitOptions", "SvmParams",
           "TrainingError", "DetectorModel", "dump_detector", "load_detector", "training_samples", "kind_of"]
