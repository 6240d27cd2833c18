"""What the CLI asks Dagster to do: runs on the local instance, so they show in the UI.

Each operation executes an asset job in-process against the instance under
``$BSCORE_HOME/dagster``, covering many partitions per run through partition-range tags.
"""

from __future__ import annotations

import pandas as pd
import dagster as dg

from bscore_assets.ingestion.drain import drain_events
from bscore_assets.ingestion.fleet import register_fleet
from bscore_assets.partitions import (
    device_partitions_def,
    hour_key,
    sensor_partitions_def,
)
from bscore_assets.runs import hour_range_tags, hour_sensor_range_tags, range_tags
from bscore_assets.settings import Settings
from bscore_assets.storage import BLOB_HOUR_FORMAT

INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def local_instance(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance under ``$BSCORE_HOME/dagster`` (created on first use)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
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
    latest = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=1)
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


def _execute(defs: dg.Definitions, instance, job: str, tags: dict, run_config=None) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags, run_config={**QUIET_LOGS, **(run_config or {})}, raise_on_error=False
    )
    if not result.success:
        raise RuntimeError(f"run {result.run_id} of {job} failed: {failure_reason(result)}")
    return result


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


class Operations:
    """The platform's operations on one settings + definitions + instance."""

    def __init__(self, settings: Settings, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.settings, self.defs, self.instance = settings, defs, instance
        # Resolved as a run would resolve them (environment variables read, e.g. the SQL URL).
        self.resources = {
            key: resource.process_config_and_initialize() if isinstance(resource, dg.ConfigurableResource) else resource
            for key, resource in defs.resources.items()
        }

    def ingest_hours(self, first: pd.Timestamp, last: pd.Timestamp) -> dg.ExecuteInProcessResult:
        """Drain the event source and (re)aggregate the hours ``first..last`` in one run."""
        check_hours(first, last, self.settings)
        result = _execute(self.defs, self.instance, "ingest_job", hour_range_tags(first, last))
        register_fleet(self.instance, self.resources["sql"])
        return result

    def raw_hours(self) -> list[pd.Timestamp]:
        """Hours that have raw readings, after draining what is pending."""
        drain_events(self.resources["events"], self.resources["blob"])
        prefixes = {key.split("/")[1] for key in self.resources["blob"].list("raw/")}
        return sorted(pd.to_datetime(p, format=BLOB_HOUR_FORMAT) for p in prefixes)

    def train(self, devices: list[str] | None, first: pd.Timestamp | None, last: pd.Timestamp | None,
              refresh: bool = True) -> list[dg.ExecuteInProcessResult]:
        """Bring the training window's aggregates up to date (unless ``refresh`` is False, when
        the caller just did), then retrain the devices' models."""
        if first is None or last is None:
            hours = self.raw_hours()
            if not hours:
                raise ValueError("nothing to train on: no readings have been ingested")
            last = last or hours[-1]
            first = first or max(hours[0], last - pd.Timedelta(hours=self.resources["pipeline"].training_hours - 1))
        if refresh:
            self.ingest_hours(first, last)
        known = self.instance.get_dynamic_partitions(device_partitions_def.name)
        unknown = sorted(set(devices or []) - set(known))
        if unknown:
            raise ValueError(f"--device {', '.join(unknown)}: no windows for these devices")
        config = {"ops": {"device_models": {"config": {"from_hour": first.isoformat(), "to_hour": last.isoformat()}}}}
        return [
            _execute(self.defs, self.instance, "training_job", range_tags(a, b), config)
            for a, b in contiguous_blocks(known, devices or known)
        ]

    def import_models(self, directory):
        """Store a folder's model files as the devices' current bundles (every device whose
        files are all good); register new devices. Returns the ``ModelDir`` scanned."""
        from scoring.model_import import import_model_dir

        found = import_model_dir(self.resources["blob"], directory)
        known = set(self.instance.get_dynamic_partitions(device_partitions_def.name))
        new = sorted(set(found.bundles) - known)
        if new:
            self.instance.add_dynamic_partitions(device_partitions_def.name, new)
        return found

    def score(self, first: pd.Timestamp, last: pd.Timestamp, sensors: list[str] | None = None,
              refresh: bool = True):
        """Bring the hours' aggregates up to date (unless ``refresh`` is False, when the caller
        just did), then score them with the current models."""
        if refresh:
            self.ingest_hours(first, last)
        else:
            check_hours(first, last, self.settings)
        known = self.instance.get_dynamic_partitions(sensor_partitions_def.name)
        unknown = sorted(set(sensors or []) - set(known))
        if unknown:
            raise ValueError(f"--sensor {', '.join(unknown)}: no windows for these sensors")
        if not known:
            raise ValueError(f"no windows in {hour_key(first)}..{hour_key(last)} to score")
        return [
            _execute(self.defs, self.instance, "scoring_job", hour_sensor_range_tags(first, last, [a, b]))
            for a, b in contiguous_blocks(known, sensors or known)
        ]

