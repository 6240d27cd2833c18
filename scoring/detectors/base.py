"""What every detector kind provides, and the options training hands it.

A kind is one module with one ``DetectorKind`` object: it fits a sensor's model from its
training windows (thresholded on its own training scores to the false-alarm budget),
stores it as plain arrays and a JSON spec and loads it back validated, and compiles many
models into batches that score whole runs of rows at once. The registry of kinds is
``scoring.detectors.KINDS``.

Every kind's ``score`` is a decision value: higher is more normal, and each kind's
``is_anomaly`` says where its threshold lies (an SVM flags ``score <= threshold``; the robust
kind folds its thresholds into the score and flags ``score < 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

DEFAULT_FALSE_ALARM_RATE = 0.005


class TrainingError(ValueError):
    """A sensor's windows cannot be fitted; the message says why."""


@dataclass(frozen=True)
class SvmParams:
    """Hyperparameters of the one-class SVM; the defaults are the reference's."""

    nu: float = 0.0001
    kernel: str = "rbf"
    gamma: float | str = 0.01
    coef0: float = 0.0
    degree: int = 3
    min_samples: int = 10


@dataclass(frozen=True)
class FitOptions:
    """What training asks of every kind: the false-alarm budget its threshold is calibrated to
    (share of its own training windows it may flag), the fewest windows it fits on, and the
    SVM's hyperparameters for the reference kind."""

    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    min_samples: int = 10
    svm: SvmParams = field(default_factory=SvmParams)

    def __post_init__(self):
        if not 0 < self.false_alarm_rate < 0.5:
            raise ValueError(f"false_alarm_rate={self.false_alarm_rate} must be in (0, 0.5)")
        if self.min_samples < 2:
            raise ValueError(f"min_samples={self.min_samples} must be at least 2")


class Batch(Protocol):
    """Compiled models of one kind that score whole runs of rows together."""

    def decision(self, x: np.ndarray, model: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and anomaly flags of ``x``: consecutive runs of ``length`` rows (each run one
        series in time order), run ``i`` under batch-local model ``model[i]``."""


class DetectorKind(Protocol):
    name: str  # the registry key, stored as the model's "type" in bundle.json
    model_type: type

    def fit(self, values: np.ndarray, options: FitOptions, trained_from=None, trained_to=None):
        """A model of one sensor's training windows (in time order); ``TrainingError`` if none."""

    def to_entry(self, model) -> tuple[dict[str, np.ndarray], dict]:
        """The model's arrays (by short name) and its JSON spec."""

    def from_entry(self, spec: dict, arrays: dict[str, np.ndarray]):
        """The model a ``to_entry`` wrote, validated (``ModelFormatError`` otherwise)."""

    def compile(self, models: list) -> list[tuple[np.ndarray, Batch]]:
        """Batches over ``models``: each with the indices (into ``models``) of its members, in
        the order of its local model numbers."""


TAIL_FROM = 0.10  # the share of training values whose excesses fit the tail


def tail_threshold(values: np.ndarray, rate: float) -> float:
    """The value at most ``rate`` of the distribution exceeds, from a peaks-over-threshold fit.

    The excesses of the top ``TAIL_FROM`` of ``values`` over their lower end are fitted with
    an exponential tail (a generalized Pareto of shape 0, as in Siffer et al., KDD 2017), so
    the threshold is extrapolated from many values rather than read off the few most extreme
    ones of a short training window; never below the empirical threshold. Light (Gaussian)
    tails make it a little conservative, which is the side a false-alarm budget wants.
    """
    empirical = upper_threshold(values, rate)
    if rate >= TAIL_FROM or len(values) == 0:
        return empirical
    start = upper_threshold(values, TAIL_FROM)
    excess = values[values > start] - start
    if not len(excess):
        return empirical
    return max(empirical, float(start + excess.mean() * np.log(TAIL_FROM / rate)))


def upper_threshold(values: np.ndarray, rate: float) -> float:
    """The smallest training value ``t`` that at most ``rate`` of ``values`` lie strictly above.

    An observed value (so ties on quantized data are never split): flagging ``value > t``
    flags at most ``rate`` of the training values.
    """
    return float(np.quantile(values, 1.0 - rate, method="higher"))


def lower_threshold(values: np.ndarray, rate: float) -> float:
    """The largest training value ``t`` that at most ``rate`` of ``values`` lie strictly below."""
    return float(np.quantile(values, rate, method="lower"))
