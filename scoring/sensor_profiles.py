"""How each simulated sensor behaves when nothing is wrong: its kind, level, noise and quantum.

Every sensor of every device draws one behaviour from :data:`DEFAULT_MIX` (deterministic
by seed). Each behaviour's series is a deterministic part (level, daily cycle, drift,
operating regime) plus a noise part whose robust scale (MAD / 0.6745) is ``sigma``;
anomalies (:mod:`scoring.planted_anomalies`) are sized in that ``sigma``. docs/simulation.md
lists the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BEHAVIOURS = ("noisy", "seasonal", "drifting", "regimes", "heavy_tailed", "quantized", "constant", "near_constant")
DEFAULT_MIX = {
    "noisy": 0.20, "seasonal": 0.15, "drifting": 0.10, "regimes": 0.15,
    "heavy_tailed": 0.10, "quantized": 0.15, "constant": 0.05, "near_constant": 0.10,
}
DAY_SECONDS = 86_400.0
T_DF = 3.0
T_MEDIAN_ABS = 0.7648923  # median of |t| with 3 degrees of freedom: scales t noise to a robust sigma
MAD_NORMAL = 0.6744898
MIN_DWELL_SECONDS = 300.0
NEAR_CONSTANT_BLIPS_PER_HOUR = 2.0


@dataclass(frozen=True)
class SensorProfiles:
    """One entry per series (device-major, sensor-minor): the parameters of its behaviour."""

    behaviour: np.ndarray  # str
    level: np.ndarray
    sigma: np.ndarray  # robust noise scale; the quantum for constant and near-constant sensors
    quantum: np.ndarray  # 0 = continuous (values rounded to 4 decimals)
    correlation_seconds: np.ndarray  # AR(1) noise: phi = exp(-interval / correlation_seconds)
    season_amplitude: np.ndarray
    season_phase: np.ndarray
    drift_per_hour: np.ndarray
    regime_offsets: np.ndarray  # (series, 3); regimes use the first ``regime_count``
    regime_count: np.ndarray
    mean_dwell_seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.behaviour)


def check_mix(mix: dict[str, float]) -> np.ndarray:
    """The mix as probabilities in :data:`BEHAVIOURS` order; a clear error for bad names or weights."""
    unknown = sorted(set(mix) - set(BEHAVIOURS))
    if unknown:
        raise ValueError(f"mix: unknown behaviour(s) {unknown}; known: {', '.join(BEHAVIOURS)}")
    weights = np.array([float(mix.get(name, 0.0)) for name in BEHAVIOURS])
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ValueError(f"mix: weights must be finite, >= 0 and not all 0, got {mix}")
    return weights / weights.sum()


def draw_profiles(base_ranges: list[tuple[float, float]], rng: np.random.Generator,
                  mix: dict[str, float] | None = None) -> SensorProfiles:
    """A profile per series; ``base_ranges[i]`` is series ``i``'s reference range (level and scale)."""
    lo, hi = np.array(base_ranges, dtype=float).T
    n, width = len(lo), hi - lo
    behaviour = np.array(BEHAVIOURS, dtype=object)[rng.choice(len(BEHAVIOURS), size=n, p=check_mix(mix or DEFAULT_MIX))]
    level = (lo + hi) / 2 + rng.uniform(-0.25, 0.25, n) * width
    sigma = width * rng.uniform(0.05, 0.15, n)
    quantum = np.zeros(n)
    discrete = np.isin(behaviour, ["quantized", "constant", "near_constant"])
    quantum[discrete] = rng.choice([0.5, 1.0], size=discrete.sum())
    quantized = behaviour == "quantized"
    sigma[quantized] = quantum[quantized] * rng.uniform(1.0, 3.0, quantized.sum())
    flat = np.isin(behaviour, ["constant", "near_constant"])
    sigma[flat] = quantum[flat]
    level[discrete] = np.round(level[discrete] / quantum[discrete]) * quantum[discrete]
    regime_offsets = np.zeros((n, 3))
    regime_offsets[:, 1:] = rng.choice([-1.0, 1.0], (n, 2)) * rng.uniform(4.0, 8.0, (n, 2)) * sigma[:, None]
    regime_offsets[:, 2] += regime_offsets[:, 1]  # a third level beyond the second, not on the first
    return SensorProfiles(
        behaviour=behaviour,
        level=level,
        sigma=sigma,
        quantum=quantum,
        correlation_seconds=np.where(behaviour == "heavy_tailed", 0.0, rng.uniform(2.0, 30.0, n)),
        season_amplitude=np.where(behaviour == "seasonal", rng.uniform(2.0, 5.0, n) * sigma, 0.0),
        season_phase=rng.uniform(0, 2 * np.pi, n),
        drift_per_hour=np.where(behaviour == "drifting", rng.choice([-1.0, 1.0], n) * rng.uniform(0.1, 0.3, n) * sigma, 0.0),
        regime_offsets=regime_offsets,
        regime_count=rng.integers(2, 4, n),
        mean_dwell_seconds=rng.uniform(15 * 60, 45 * 60, n),
    )


def regime_levels(profiles: SensorProfiles, steps: int, interval: float, rng: np.random.Generator) -> np.ndarray:
    """(steps, series) offset of each regime sensor's current operating level (0 for the others).

    Dwell times are 5 minutes plus an exponential with the profile's mean; each switch moves to
    another of the sensor's 2-3 levels.
    """
    out = np.zeros((steps, len(profiles)))
    cols = np.flatnonzero(profiles.behaviour == "regimes")
    if not len(cols):
        return out
    max_switches = int(np.ceil(steps * interval / MIN_DWELL_SECONDS)) + 1
    extra = (profiles.mean_dwell_seconds[cols] - MIN_DWELL_SECONDS)[:, None]
    dwell = (MIN_DWELL_SECONDS + rng.exponential(1.0, (len(cols), max_switches)) * extra) / interval
    dwell[:, 0] *= rng.random(len(cols))  # the first regime began before the series did
    switch_at = np.ceil(np.cumsum(dwell, axis=1)).astype(np.int64)
    switches = np.zeros((steps + 1, len(cols)), dtype=np.int64)
    rows, which = np.nonzero(switch_at < steps)
    np.add.at(switches, (switch_at[rows, which], rows), 1)
    count = np.cumsum(switches[:steps], axis=0)
    n_levels = profiles.regime_count[cols][:, None]
    # A move of 1..count-1 levels (mod the count) always lands on another level.
    moves = 1 + np.floor(rng.random((len(cols), max_switches + 1)) * (n_levels - 1)).astype(np.int64)
    moves[:, 0] = np.floor(rng.random(len(cols)) * n_levels[:, 0]).astype(np.int64)
    sequence = np.cumsum(moves, axis=1) % n_levels
    regime = np.take_along_axis(sequence.T, count, axis=0)
    out[:, cols] = np.take_along_axis(profiles.regime_offsets[cols].T, regime, axis=0)
    return out


def noise(profiles: SensorProfiles, steps: int, interval: float, rng: np.random.Generator) -> np.ndarray:
    """(steps, series) noise: AR(1) Gaussian with robust scale ``sigma``; iid Student-t (3 df) for
    heavy-tailed sensors; none for constant sensors; rare one-quantum blips for near-constant ones."""
    n = len(profiles)
    behaviour = profiles.behaviour
    phi = np.exp(-interval / np.maximum(profiles.correlation_seconds, 1e-9))
    shocks = rng.standard_normal((steps, n))
    heavy = np.flatnonzero(behaviour == "heavy_tailed")
    shocks[:, heavy] = rng.standard_t(T_DF, (steps, len(heavy))) * (MAD_NORMAL / T_MEDIAN_ABS)
    out = shocks * profiles.sigma
    out[1:] *= np.sqrt(1 - phi**2)
    for t in range(1, steps):  # one vector step per reading: the recursion runs over time, not series
        out[t] += phi * out[t - 1]
    flat = np.isin(behaviour, ["constant", "near_constant"])
    out[:, flat] = 0.0
    blippy = np.flatnonzero(behaviour == "near_constant")
    blips = rng.random((steps, len(blippy))) < NEAR_CONSTANT_BLIPS_PER_HOUR * interval / 3600
    out[:, blippy] = blips * rng.choice([-1.0, 1.0], blips.shape) * profiles.quantum[blippy]
    return out


def expected_values(profiles: SensorProfiles, seconds: np.ndarray, rng: np.random.Generator,
                    interval: float) -> np.ndarray:
    """(steps, series) deterministic part: level, daily cycle (on the clock), drift, regime level."""
    out = regime_levels(profiles, len(seconds), interval, rng)
    out += profiles.level
    seasonal = np.flatnonzero(profiles.season_amplitude)
    angle = 2 * np.pi * np.mod(seconds, DAY_SECONDS)[:, None] / DAY_SECONDS + profiles.season_phase[seasonal]
    out[:, seasonal] += profiles.season_amplitude[seasonal] * np.sin(angle)
    drifting = np.flatnonzero(profiles.drift_per_hour)
    out[:, drifting] += profiles.drift_per_hour[drifting] * ((seconds - seconds[0]) / 3600)[:, None]
    return out


def finish(values: np.ndarray, profiles: SensorProfiles) -> np.ndarray:
    """Values as the sensors report them: on their quantum's grid, or rounded to 4 decimals."""
    out = np.round(values, 4)
    stepped = np.flatnonzero(profiles.quantum)
    q = profiles.quantum[stepped]
    out[:, stepped] = np.round(values[:, stepped] / q) * q
    return out
