"""What training did for one device, as one record: the asset's metadata, checks and the CLI read it
(a training task reports it without the bundle, which it stored)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from scoring.model_format import ModelBundle


@dataclass
class TrainingOutcome:
    """One device's training: its status (``promoted``, ``no model`` or ``refused``), the
    reason as one sentence, and per sensor what happened."""

    status: str = "no model"
    reason: str = "no windows in the training window"
    windows_trained: int = 0
    windows_excluded: int = 0
    hours_excluded: list[str] = field(default_factory=list)
    holdout_rates: dict[str, float] = field(default_factory=dict)  # sensor -> share of the hold-out flagged
    sensors_without_model: dict[str, str] = field(default_factory=dict)  # could not be fitted: why
    sensors_refused: dict[str, str] = field(default_factory=dict)  # over the gate's limit: why
    sensors_kept: dict[str, str] = field(default_factory=dict)  # refused sensor -> the version kept for it
    fell_back: dict[str, str] = field(default_factory=dict)  # sensor -> why it is robust instead
    selected: dict[str, str] = field(default_factory=dict)  # sensor -> the kind chosen and why
    constant_sensors: list[str] = field(default_factory=list)  # sensors under the constant rule
    device_model_holdout_rate: float | None = None  # share of hold-out device windows the device model flags
    device_model_refused: str = ""  # why the bundle has no device model ("" when it has one)
    device_model_dropped: list[str] = field(default_factory=list)  # sensors constant in training, left out of it
    bundle: ModelBundle | None = None

    def story(self, trained: int, limit: float) -> str:
        """The one sentence ``bscore train`` prints for the device."""
        parts = [f"{trained} sensor model(s) trained, every one within {limit:.2%} on the hold-out hour"
                 if not self.sensors_refused else f"{trained} sensor model(s) trained"]
        if self.sensors_refused:
            parts.append("refused: " + "; ".join(f"sensor {s} {why}" for s, why in sorted(self.sensors_refused.items()))
                         + (f" (current model kept for {', '.join(sorted(self.sensors_kept))})" if self.sensors_kept
                            else ""))
        if self.fell_back:
            parts.append("robust instead: " + ", ".join(f"sensor {s} ({why})" for s, why in sorted(self.fell_back.items())))
        if self.constant_sensors:
            parts.append(f"constant in training, flagged only when they move: {', '.join(self.constant_sensors)}")
        if self.device_model_refused:
            parts.append(f"no device model: {self.device_model_refused}")
        if self.hours_excluded:
            parts.append(f"hours left out (current model flags them over the WARN rate): {', '.join(self.hours_excluded)}")
        return "; ".join(parts)

    def metadata(self) -> dict:
        """The outcome as plain JSON values, without the bundle."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "bundle"}

    @classmethod
    def from_metadata(cls, data: dict) -> "TrainingOutcome":
        """The outcome ``metadata()`` gave (its bundle is in blob storage, not here)."""
        return cls(**data)


def gate_passed(outcomes: dict[str, TrainingOutcome]) -> bool:
    """The challenger gate passes when no device had a sensor's model or its device model refused."""
    return not any(o.sensors_refused or o.device_model_refused for o in outcomes.values())
