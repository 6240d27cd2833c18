"""What the CLI asks Dagster to do: runs on the local instance, so they show in the UI.

Each operation executes an asset job in-process against the instance (``DAGSTER_HOME``, else
``$BSCORE_HOME/dagster``), covering many partitions per run through partition-range tags, and
reports what each run stored and which checks failed, read back from the run's own events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd
import dagster as dg

from bscore_assets.ingestion.fleet import register_fleet, sensor_admission
from bscore_assets.partitions import (
    device_partitions_def,
    hour_key,
    sensor_partitions_def,
)
from bscore_assets.runs import hour_range_tags, hour_sensor_range_tags, range_tags
from bscore_assets.settings import Settings
from scoring.time_units import HOUR

if TYPE_CHECKING:
    from scoring.model_import import ModelImport

INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def instance_yaml(settings: Settings) -> str:
    """A new instance's ``dagster.yaml``: no telemetry, and Dagster's own purge of schedule and
    sensor ticks (runs and event logs are removed by ``retention_job``): skipped sensor ticks,
    one a minute per sensor, after a week, the rest after ``BSCORE_RETAIN_RUN_DAYS``."""
    days = settings.retain_run_days
    return (INSTANCE_YAML + "retention:\n  schedule:\n    purge_after_days: " + str(days) + "\n"
            "  sensor:\n    purge_after_days:\n      skipped: " + str(min(7, days)) + "\n"
            "      failure: " + str(days) + "\n      success: " + str(days) + "\n")


def local_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance at ``DAGSTER_HOME`` when set (the daemon's and the UI's), else under
    ``$BSCORE_HOME/dagster`` (created on first use)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(instance_yaml(settings))
    return dg.DagsterInstance.from_config(str(home))


def parse_hour(text: str, option: str) -> pd.Timestamp:
    """An ISO-8601 hour (``2018-08-28T23``) given on the command line."""
    try:
        stamp = pd.Timestamp(text if len(text) > 13 else f"{text}:00")
    except ValueError:
        raise ValueError(f"{option} {text!r} is not an ISO-8601 hour such as 2018-08-28T23") from None
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    if stamp != stamp.floor("h"):
        raise ValueError(f"{option} {text!r} is not on the hour")
    return stamp


def check_hours(first: pd.Timestamp, last: pd.Timestamp, settings: Settings) -> None:
    """Fail clearly when hours are outside the hourly partitions."""
    if first > last:
        raise ValueError(f"--from {first:%Y-%m-%dT%H} is after --to {last:%Y-%m-%dT%H}")
    if first < settings.start:
        raise ValueError(f"hour {first:%Y-%m-%dT%H} is before BSCORE_START={settings.start:%Y-%m-%dT%H:%M}; "
                         "set BSCORE_START to an earlier hour to load older data")
    latest = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - HOUR
    if last > latest:
        raise ValueError(f"hour {last:%Y-%m-%dT%H} has not closed yet (the last closed hour is {latest:%Y-%m-%dT%H})")


def contiguous_blocks(ordered: list[str], selected: list[str]) -> list[tuple[str, str]]:
    """Runs of consecutive keys of ``ordered`` that are all in ``selected``, as (first, last)."""
    wanted, blocks, first, previous = set(selected), [], None, None
    for key in ordered:
        if key in wanted:
            first = first or key
            previous = key
        elif first is not None:
            blocks.append((first, previous))
            first = None
    if first is not None:
        blocks.append((first, previous))
    return blocks


QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}

# Per-partition metadata each asset's totals add up (the run's materializations carry them).
TOTALS = {
    "raw_readings": ("readings",),
    "sensor_aggregates": ("windows", "readings", "redelivered", "conflicts"),
    "sensor_predictions": ("windows", "rows_scored", "anomalies"),
    "device_verdicts": ("device_windows", "anomalous_device_windows"),
}


class CheckOutcome(NamedTuple):
    asset: str
    name: str
    passed: bool
    severity: str  # "ERROR" or "WARN"
    metadata: dict


@dataclass
class RunReport:
    """What one run stored and found, read back from its own events."""

    run_id: str
    job: str
    success: bool
    partitions: dict = field(default_factory=dict)  # asset -> partitions materialized
    totals: dict = field(default_factory=dict)  # "asset.metric" -> sum over the run's partitions
    statuses: dict = field(default_factory=dict)  # "asset.status" -> partitions with that metadata status
    checks: list[CheckOutcome] = field(default_factory=list)
    failure: str | None = None

    def failed_checks(self, severity: str) -> list[str]:
        return [f"{c.asset}.{c.name}" for c in self.checks if not c.passed and c.severity == severity]

    @property
    def failed_error_checks(self) -> list[str]:
        return self.failed_checks("ERROR")

    @property
    def failed_warn_checks(self) -> list[str]:
        return self.failed_checks("WARN")

    def check(self, name: str) -> CheckOutcome:
        return next(c for c in self.checks if c.name == name)

    def check_metadata(self, asset: str, name: str) -> dict:
        return next((c.metadata for c in self.checks if (c.asset, c.name) == (asset, name)), {})


def run_report(result: dg.ExecuteInProcessResult, job: str) -> RunReport:
    report = RunReport(result.run_id, job, result.success)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            asset = materialization.asset_key.to_user_string()
            report.partitions[asset] = report.partitions.get(asset, 0) + 1
            meta = {k: v.value for k, v in materialization.metadata.items()}
            for metric in TOTALS.get(asset, ()):
                if isinstance(meta.get(metric), (int, float)):
                    key = f"{asset}.{metric}"
                    report.totals[key] = report.totals.get(key, 0) + meta[metric]
            for flag in ("status", "aggregated", "scored", "method"):
                if flag in meta:
                    key = f"{asset}.{flag}={meta[flag]}"
                    report.statuses[key] = report.statuses.get(key, 0) + 1
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            report.checks.append(CheckOutcome(evaluation.asset_key.to_user_string(), evaluation.check_name,
                                              evaluation.passed, evaluation.severity.value,
                                              {k: v.value for k, v in evaluation.metadata.items()}))
    if not result.success:
        report.failure = failure_reason(result)
    return report


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """The failed step and the root of its error, in a line or two a person can act on."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            messages = [error.message.strip()]
            while error.cause is not None:
                error = error.cause
                messages.append(error.message.strip())
            root = next((m for m in reversed(messages) if m), "")
            return f"step {event.step_key}: {messages[0].splitlines()[0]}" + (
                f" — caused by {root.splitlines()[0]}" if root != messages[0] else "")
    return "see the run in the Dagster UI"


class ChecksFailed(RuntimeError):
    """A run stored its results, and an ERROR check failed on them: what depends on them stops."""

    def __init__(self, reports: list[RunReport]):
        self.reports = reports
        failed = sorted({c for r in reports for c in r.failed_error_checks})
        super().__init__(f"check(s) failed at ERROR: {', '.join(failed)} "
                         f"(run {reports[-1].run_id}; see its checks in the Dagster UI)")


def _execute(defs: dg.Definitions, instance, job: str, tags: dict, run_config=None,
             done: list[RunReport] | None = None) -> RunReport:
    """Run ``job`` in-process; a failed ERROR check raises ``ChecksFailed`` (with the reports of
    this and the earlier runs, ``done``), any other failure ``RuntimeError``."""
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, run_config={**QUIET_LOGS, **(run_config or {})}, raise_on_error=False
    )
    report = run_report(result, job)
    if report.failed_error_checks:
        raise ChecksFailed([*(done or []), report])
    if not result.success:
        raise RuntimeError(f"run {result.run_id} of {job} failed: {report.failure}")
    return report


def resolved_resources(defs: dg.Definitions, instance: dg.DagsterInstance | None = None) -> dict:
    """The definitions' resources resolved as a run would resolve them (environment variables
    read, e.g. the SQL URL), for commands that use them outside a run.

    All in one initialization on ``instance``: resolving each alone made Dagster build a
    throwaway in-memory instance per resource (0.4 CPU-s of every command). Like a run's, they
    live as long as the process (nothing bscore defines needs a teardown).
    """
    built = dg.build_resources(defs.resources, instance=instance).__enter__()
    return {key: getattr(built, key) for key in defs.resources}


class Operations:
    """The platform's operations on one settings + definitions + instance."""

    def __init__(self, settings: Settings, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.settings, self.defs, self.instance = settings, defs, instance
        self.resources = resolved_resources(defs, instance)

    def ingest_hours(self, first: pd.Timestamp, last: pd.Timestamp) -> RunReport | None:
        """Drain the event source and bring the hours ``first..last`` up to date in one run (only
        hours whose raw readings changed are aggregated again). With Stream Analytics doing
        that (``BSCORE_AGGREGATION=asa``) there is no run: its sensor records the hours."""
        check_hours(first, last, self.settings)
        report = None
        if self.settings.aggregation == "local":
            report = _execute(self.defs, self.instance, "ingest_job", hour_range_tags(first, last))
        register_fleet(self.instance, self.resources["sql"], self.settings)
        return report

    def register_fleet(self) -> tuple[dict[str, list[str]], dict[str, str]]:
        """Add the devices with windows and the admitted sensors as dynamic partitions now, as
        ``fleet_partitions_sensor`` does on its ticks; what was added, and ``{sensor: reason}``
        for the sensors held back."""
        held: dict[str, str] = {}
        return register_fleet(self.instance, self.resources["sql"], self.settings, held), held

    def default_training_hours(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The ``training_hours`` closed hours ending with the last closed one (not before BSCORE_START)."""
        last = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - HOUR
        first = max(self.settings.start, last - pd.Timedelta(hours=self.resources["pipeline"].training_hours - 1))
        if first > last:
            raise ValueError(f"no closed hour since BSCORE_START={self.settings.start:%Y-%m-%dT%H:%M} to train on")
        return first, last

    def train(self, devices: list[str] | None, first: pd.Timestamp | None, last: pd.Timestamp | None,
              refresh: bool = True, options: dict | None = None) -> list[RunReport]:
        """Bring the training window's aggregates up to date (unless ``refresh`` is False, when
        the caller just did), then retrain the devices' models (``options``: more of
        ``TrainingConfig``, e.g. ``kind``, ``false_alarm_rate``, ``select``)."""
        if first is None or last is None:
            default_first, default_last = self.default_training_hours()
            first, last = first or default_first, last or default_last
        done = [r for r in [self.ingest_hours(first, last) if refresh else None] if r]
        known = self.instance.get_dynamic_partitions(device_partitions_def.name)
        unknown = sorted(set(devices or []) - set(known))
        if unknown:
            raise ValueError(f"--device {', '.join(unknown)}: no windows for these devices")
        if not known:
            raise ValueError(f"no windows in {hour_key(first)}..{hour_key(last)} to train on")
        config = {"ops": {"device_models": {"config": {"from_hour": first.isoformat(), "to_hour": last.isoformat(),
                                                       **(options or {})}}}}
        for a, b in contiguous_blocks(known, devices or known):
            done.append(_execute(self.defs, self.instance, "training_job", range_tags(a, b), config, done))
        return done

    def import_models(self, directory) -> ModelImport:
        """Store a folder's model files as the devices' current bundles (every device whose
        files are all good) in a run of ``model_import_job``, which registers new devices and
        records a ``device_models`` materialization per device imported (so automation rescores)."""
        folder = Path(directory).resolve()
        if not folder.is_dir():
            raise ValueError(f"{directory} is not a folder")
        config = {"ops": {"import_model_files": {"config": {"directory": str(folder)}}}}
        result = self.defs.resolve_job_def("model_import_job").execute_in_process(
            instance=self.instance, run_config={**QUIET_LOGS, **config}, raise_on_error=False)
        if not result.success:
            raise RuntimeError(f"run {result.run_id} of model_import_job failed: {failure_reason(result)}")
        return result.output_for_node("import_model_files")

    def score(self, first: pd.Timestamp, last: pd.Timestamp, sensors: list[str] | None = None,
              refresh: bool = True) -> list[RunReport]:
        """Bring the hours' aggregates up to date (unless ``refresh`` is False, when the caller
        just did), then score them with the current models."""
        if refresh:
            done = [r for r in [self.ingest_hours(first, last)] if r]
        else:
            check_hours(first, last, self.settings)
            done = []
        known = self.instance.get_dynamic_partitions(sensor_partitions_def.name)
        unknown = sorted(set(sensors or []) - set(known))
        if unknown:
            raise ValueError(f"--sensor {', '.join(unknown)}: no windows for these sensors")
        if not known:
            _, held = sensor_admission(self.resources["sql"], self.settings)
            if held:
                shown = "; ".join(list(held.values())[:5]) + (f"; ... ({len(held)} in all)" if len(held) > 5 else "")
                raise ValueError(f"windows exist, but none of their sensors is admitted as a partition, so "
                                 f"nothing in {hour_key(first)}..{hour_key(last)} can be scored: {shown}")
            raise ValueError(f"no windows in {hour_key(first)}..{hour_key(last)} to score")
        for a, b in contiguous_blocks(known, sensors or known):
            done.append(_execute(self.defs, self.instance, "scoring_job", hour_sensor_range_tags(first, last, [a, b]),
                                 done=done))
        return done

    def score_and_vote(self, first: pd.Timestamp, last: pd.Timestamp, sensors: list[str] | None = None,
                       refresh: bool = True) -> list[RunReport]:
        """:meth:`score`, then vote the hours' device verdicts in one run (over every sensor
        scored in each hour, not only ``sensors``)."""
        done = self.score(first, last, sensors, refresh)
        done.append(_execute(self.defs, self.instance, "verdicts_job", hour_range_tags(first, last), done=done))
        return done
