"""Anomalies planted into simulated sensor series, sized in each sensor's own noise.

Four kinds: a ``spike`` (1-3 readings 6-10 sigma out), a ``level_shift`` (3-5 sigma for 2-10
minutes), ``stuck`` (the sensor repeats its last value for 2-10 minutes) and ``variance``
(noise x3-5 for 2-10 minutes). Sigma is the sensor's robust noise scale
(:mod:`scoring.sensor_profiles`); for near-constant sensors it is their quantum. Constant
sensors get none (a constant sensor is stuck by nature, and the others would need a noise it
does not have); near-constant ones get spikes and level shifts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from scoring.sensor_profiles import SensorProfiles

KINDS = ("spike", "level_shift", "stuck", "variance")
KINDS_BY_BEHAVIOUR = {"constant": (), "near_constant": ("spike", "level_shift")}
SPIKE_READINGS = (1, 3)
SPIKE_SIGMAS = (6.0, 10.0)
SHIFT_SIGMAS = (3.0, 5.0)
VARIANCE_FACTOR = (3.0, 5.0)
SPAN_MINUTES = (2.0, 10.0)


@dataclass(frozen=True)
class PlantedAnomaly:
    """Readings ``first..last`` (step indices, both included) of series ``series`` changed by ``kind``."""

    series: int
    first: int
    last: int
    kind: str
    size: float  # sigmas for spikes and shifts (signed), the noise factor for variance, 0 for stuck


def kinds_for(behaviour: str) -> tuple[str, ...]:
    """The anomaly kinds a sensor of this behaviour can carry."""
    return KINDS_BY_BEHAVIOUR.get(behaviour, KINDS)


def _span_steps(kind: str, interval: float, rng: np.random.Generator) -> int:
    if kind == "spike":
        return int(rng.integers(SPIKE_READINGS[0], SPIKE_READINGS[1] + 1))
    return max(1, int(round(rng.uniform(*SPAN_MINUTES) * 60 / interval)))


@lru_cache(maxsize=None)
def _mean_span_steps(kinds: tuple[str, ...], interval: float) -> float:
    spans = [sum(SPIKE_READINGS) / 2 if k == "spike" else max(1.0, sum(SPAN_MINUTES) / 2 * 60 / interval) for k in kinds]
    return float(np.mean(spans))


def _size(kind: str, rng: np.random.Generator) -> float:
    sign = rng.choice([-1.0, 1.0])
    if kind == "spike":
        return sign * rng.uniform(*SPIKE_SIGMAS)
    if kind == "level_shift":
        return sign * rng.uniform(*SHIFT_SIGMAS)
    if kind == "variance":
        return rng.uniform(*VARIANCE_FACTOR)
    return 0.0


def plan_anomalies(profiles: SensorProfiles, steps: int, first_step: int, interval: float, rate: float,
                   rng: np.random.Generator) -> list[PlantedAnomaly]:
    """Where the anomalies go: about ``rate`` of each eligible series' readings from ``first_step`` on.

    Each series draws a Poisson number of anomalies whose expected spans add up to ``rate`` of its
    readings, of kinds drawn evenly from those it can carry. One that would overlap or touch an
    earlier one (a clean reading must separate them, so that ``stuck`` repeats a clean value) is
    dropped, so the realized share is a little under ``rate`` at high rates.
    """
    first_step = max(first_step, 1)  # a stuck sensor repeats the reading before its span
    available = steps - first_step
    planted: list[PlantedAnomaly] = []
    if rate <= 0 or available <= 0:
        return planted
    for series, behaviour in enumerate(profiles.behaviour):
        kinds = kinds_for(behaviour)
        if not kinds:
            continue
        count = rng.poisson(rate * available / _mean_span_steps(kinds, interval))
        drawn = []
        for _ in range(count):
            kind = kinds[rng.integers(len(kinds))]
            span = min(_span_steps(kind, interval, rng), available)
            first = int(rng.integers(first_step, steps - span + 1))
            drawn.append(PlantedAnomaly(series, first, first + span - 1, kind, _size(kind, rng)))
        last_end = -2
        for anomaly in sorted(drawn, key=lambda a: a.first):
            if anomaly.first > last_end + 1:
                planted.append(anomaly)
                last_end = anomaly.last
    return planted


def apply_before_rounding(expected: np.ndarray, noise: np.ndarray, profiles: SensorProfiles,
                          planted: list[PlantedAnomaly]) -> None:
    """Spikes and level shifts move the expected value, variance changes scale the noise (in place)."""
    for a in planted:
        span = slice(a.first, a.last + 1)
        if a.kind in ("spike", "level_shift"):
            expected[span, a.series] += a.size * profiles.sigma[a.series]
        elif a.kind == "variance":
            noise[span, a.series] *= a.size


def apply_after_rounding(values: np.ndarray, planted: list[PlantedAnomaly]) -> None:
    """Stuck sensors repeat the last reported value before their span (in place)."""
    for a in planted:
        if a.kind == "stuck":
            values[a.first : a.last + 1, a.series] = values[a.first - 1, a.series]
