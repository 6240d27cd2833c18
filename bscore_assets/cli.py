"""The ``bscore`` command line: the product's contract with users and tests.

Only click is imported here at module level: ``bscore --help`` and ``bscore <command> --help``
must answer at once, so dagster, pandas, tqdm, scikit-learn and even ``Settings`` (which
imports dagster and pandas) are imported inside the commands that use them.
tests/test_cli_help.py keeps it that way.
"""

from __future__ import annotations

import fcntl
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bscore_assets.settings import Settings

CHUNK = 50_000


def _settings() -> Settings:
    from bscore_assets.settings import Settings

    try:
        return Settings.from_env()
    except ValueError as exc:
        _fail(exc)


def _ops(settings: Settings | None = None):
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from bscore_assets.operations import Operations, local_instance
    from bscore_assets.definitions import build_defs

    settings = settings or _settings()
    try:
        defs = build_defs(settings)
    except ValueError as exc:
        _fail(exc)
    # Two commands on a fresh BSCORE_HOME would both create the instance's SQLite schemas
    # (and race on alembic_version): the first creates them while the other waits.
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / ".instance.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            instance = local_instance(settings)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return Operations(settings, defs, instance)


def _fail(exc: Exception):
    from bscore_assets.failures import disk_full_message

    # A ValueError already says what went wrong in bscore's words; others may hide a full disk.
    full = None if isinstance(exc, ValueError) else disk_full_message(exc, _home())
    click.echo(f"bscore: {full or exc}", err=True)
    sys.exit(2)


def _home() -> Path:
    from bscore_assets.settings import Settings

    try:
        return Settings.from_env().home
    except ValueError:
        return Path(".bscore")


class _Command(click.Command):
    """Checks every variable before the command runs (some modules read them at import), so a
    bad one ends in one ``bscore:`` line; ``--help`` is answered before, without them."""

    def invoke(self, ctx):
        _settings()
        return super().invoke(ctx)


class _Group(click.Group):
    command_class = _Command


class _Commands(_Group):
    """Ends a command that ran out of disk, wherever, with one ``bscore:`` line."""

    group_class = _Group

    def invoke(self, ctx):
        from bscore_assets.failures import disk_full_message

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.UsageError):
            raise  # --help and mistyped options: click's own, and _home() would import Settings
        except Exception as exc:
            if disk_full_message(exc, _home()) is None:
                raise
            _fail(exc)


def _describe(report) -> str:
    """One line per run: the totals it stored, as its per-partition metadata adds them up."""
    totals, statuses = report.totals, report.statuses
    if report.job == "ingest_job":
        dead = report.check_metadata("raw_readings", "no_dead_letters")
        unchanged = statuses.get("sensor_aggregates.aggregated=False", 0)
        return (f"{totals.get('sensor_aggregates.readings', 0):,} distinct readings in "
                f"{report.partitions.get('raw_readings', 0)} hour(s) ({totals.get('sensor_aggregates.redelivered', 0):,} "
                f"re-delivered, {totals.get('sensor_aggregates.conflicts', 0):,} re-sent with another value and ignored; "
                f"{dead.get('readings_stored', 0):,} drained now, {dead.get('readings_redelivered', 0):,} re-delivered, "
                f"{dead.get('events_dead_lettered', 0):,} dead-lettered, {dead.get('late_readings', 0):,} late); "
                f"{totals.get('sensor_aggregates.windows', 0):,} windows "
                f"({statuses.get('sensor_aggregates.aggregated=True', 0)} hour(s) aggregated, {unchanged} unchanged)")
    if report.job == "training_job":
        counts = ", ".join(f"{k.split('=', 1)[1]}: {v}" for k, v in sorted(statuses.items()))
        gate = report.check_metadata("device_models", "challenger_gate")
        refused = report.check_metadata("device_models", "every_sensor_has_model").get("devices_refused") or {}
        lines = [f"{report.partitions.get('device_models', 0)} device(s) trained ({counts or 'none'})"]
        for device, sensors in sorted((gate.get("sensors_refused") or {}).items()):
            lines += [f"  device {device} sensor {s}: refused, {why}" for s, why in sorted(sensors.items())]
        for device, sensors in sorted((gate.get("sensors_fell_back") or {}).items()):
            lines += [f"  device {device} sensor {s}: robust kind instead ({why})" for s, why in sorted(sensors.items())]
        for device, sensors in sorted((gate.get("constant_sensors") or {}).items()):
            lines.append(f"  device {device}: constant in training, flagged only when they move: {', '.join(sensors)}")
        for device, why in sorted((gate.get("device_models_refused") or {}).items()):
            lines.append(f"  device {device}: no device model (its verdicts stay the vote): {why}")
        lines += [f"  device {d}: no model: {why}" for d, why in sorted(refused.items())]
        return "\n".join(lines)
    if report.job == "verdicts_job":
        multivariate = statuses.get("device_verdicts.method=multivariate", 0)
        how = "judged by each device's multivariate model (the vote where a device has none)" if multivariate \
            else "voted by their sensors"
        return (f"{totals.get('device_verdicts.device_windows', 0):,} device windows {how} in "
                f"{report.partitions.get('device_verdicts', 0)} hour(s), "
                f"{totals.get('device_verdicts.anomalous_device_windows', 0):,} anomalous")
    coverage = report.check_metadata("sensor_predictions", "scoring_coverage")
    return (f"{totals.get('sensor_predictions.rows_scored', 0):,} windows scored of "
            f"{totals.get('sensor_predictions.windows', 0):,}, {totals.get('sensor_predictions.anomalies', 0):,} "
            f"anomalies, in {report.partitions.get('sensor_predictions', 0)} partition(s) "
            f"({statuses.get('sensor_predictions.scored=True', 0)} scored, "
            f"{statuses.get('sensor_predictions.scored=False', 0)} unchanged since scoring); devices without a model: "
            f"{len(coverage.get('devices_missing_model') or {})}, models refused: "
            f"{len(coverage.get('devices_model_refused') or {})}")


def _report(reports) -> None:
    """Print every run's totals and failed checks; exit 1 when an ERROR check failed."""
    for report in reports:
        click.echo(f"run {report.run_id} ({report.job}): {_describe(report)}")
        for check in report.failed_warn_checks:
            click.echo(f"  warning: check {check} failed (WARN)")
        for check in report.failed_error_checks:
            click.echo(f"  check {check} FAILED (ERROR)", err=True)
    failed = sorted({c for r in reports for c in r.failed_error_checks})
    if failed:
        click.echo(f"bscore: failed at ERROR: {', '.join(failed)}; what depends on these results was not run",
                   err=True)
        sys.exit(1)


def _run(operation):
    """Run an operation; print its runs' reports, also when a check stopped it."""
    from bscore_assets.operations import ChecksFailed

    try:
        reports = operation()
    except ChecksFailed as exc:
        reports = exc.reports
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    _report(reports)


@click.group(cls=_Commands)
def main():
    """Batch-score one anomaly model per sensor of every device, hourly, with Dagster.

    Settings come from BSCORE_* environment variables (docs/configuration.md); each
    command checks them all before it starts. 'bscore COMMAND --help' shows a command's options.

    \b
    Example: the whole job on a simulated fleet, then the help of one command:
      bscore demo
      bscore score --help
    """


@main.command(short_help="Run the whole job on a simulated fleet.")
@click.option("--devices", default=3, show_default=True, help="Devices in the simulated fleet (ids 1..N).")
@click.option("--sensors", default=5, show_default=True, help="Sensors of each device (ids 1..M).")
@click.option("--train-hours", default=2, show_default=True,
              help="Clean hours simulated first, to train the models on.")
@click.option("--score-hours", default=2, show_default=True,
              help="Hours simulated after them, with planted anomalies, then scored; they end with the last "
                   "closed hour.")
@click.option("--anomaly-rate", default=0.01, show_default=True,
              help="Share of each sensor's scored readings inside a planted anomaly (realistic simulator).")
@click.option("--seed", default=7, show_default=True, help="Random seed: the same seed simulates the same fleet.")
@click.option("--profile", type=click.Choice(["realistic", "uniform"]), default="realistic", show_default=True,
              help="The simulator, as for 'bscore simulate' (docs/simulation.md).")
def demo(devices, sensors, train_hours, score_hours, anomaly_rate, seed, profile):
    """Simulate a realistic fleet, ingest, aggregate, train, score; report precision, recall and false alarms.

    Runs on the configured stores (local defaults in $BSCORE_HOME) and prints where the
    outputs and the UI are.

    \b
    Example: 10 devices, 4 scored hours, the reference's uniform simulator:
      bscore demo --devices 10 --score-hours 4 --profile uniform
    """
    from bscore_assets.demo import run_demo

    ops = _ops()
    try:
        summary = run_demo(ops, devices, sensors, train_hours, score_hours, anomaly_rate, seed, echo=click.echo,
                           profile=profile)
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    click.echo("\nPer-sensor results (windows; precision, recall and false-alarm rate against the planted anomalies):")
    click.echo(summary.to_string(index=False))
    r = ops.resources
    click.echo(f"\nSQL:          {r['sql'].describe()} (tables sensor_values, predictions, device_verdicts)")
    click.echo(f"Blob storage: {r['blob'].describe()} (raw/, models/, predictions/, verdicts/)")
    click.echo(f"Dagster runs: {ops.settings.dagster_home}")
    click.echo("UI:           make ui   (then open http://127.0.0.1:3000)")


@main.command(short_help="Simulate readings with planted anomalies.")
@click.option("--devices", default=3, show_default=True, help="Devices to simulate (ids 1..N).")
@click.option("--sensors", default=5, show_default=True, help="Sensors of each device (ids 1..M).")
@click.option("--start", default=None, metavar="HOUR",
              help="First hour (ISO-8601), e.g. --start 2026-01-01T00; default: hours ending at the last closed hour.")
@click.option("--hours", default=1.0, show_default=True, help="Length of the span in hours; fractions too, e.g. 0.5.")
@click.option("--anomaly-rate", default=0.01, show_default=True,
              help="Share of each sensor's readings inside a planted anomaly (uniform: of its windows).")
@click.option("--seed", default=0, show_default=True,
              help="Random seed: the same seed gives the same readings and anomalies.")
@click.option("--profile", type=click.Choice(["realistic", "uniform"]), default="realistic", show_default=True,
              help="'realistic': sensors as real fleets have them, anomalies sized in their own noise "
                   "(docs/simulation.md); 'uniform': the reference simulator's uniform ranges and far-out windows.")
@click.option("--labels-out", type=click.Path(dir_okay=False), default=None,
              help="Write the planted anomalies' spans here as CSV: device,sensor,start,end,kind "
                   "(ISO-8601; a span holds the readings with start < ts <= end).")
@click.option("--to", "target", default="events", show_default=True,
              help="'events' (the configured event source) or a .csv / .jsonl file, e.g. --to fleet.csv; "
                   "the readings of planted anomalies are listed beside a file (fleet.csv: fleet.planted.csv).")
def simulate(devices, sensors, start, hours, anomaly_rate, seed, profile, labels_out, target):
    """Readings of N devices x M sensors with planted anomalies.

    \b
    Example: 20 devices x 5 sensors for 2 hours, to a file, with the labels beside it:
      bscore simulate --devices 20 --hours 2 --to fleet.csv --labels-out fleet.labels.csv
    """
    import pandas as pd
    from tqdm import tqdm

    from scoring.anomaly_labels import label_mask, labels_from_planted, write_labels_csv
    from scoring.readings import readings_to_event_bodies
    from scoring.simulate import simulate_fleet, simulate_readings

    if start is None:
        start = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=hours)
    try:
        if profile == "uniform":
            readings = simulate_readings(devices, sensors, start, hours, anomaly_rate, seed=seed)
            labels = labels_from_planted(readings, 1.0, 5)
        else:
            fleet = simulate_fleet(devices, sensors, start, hours, anomaly_rate, seed=seed)
            readings, labels = fleet.readings, fleet.labels
            readings["planted"] = label_mask(readings, labels)
    except ValueError as exc:
        _fail(exc)
    if labels_out:
        write_labels_csv(labels, labels_out)
        click.echo(f"{len(labels):,} labelled anomalies written to {labels_out}")
    if target in ("events", "eventhub"):
        if target == "eventhub" and _settings().events != "eventhub":
            _fail(ValueError("--to eventhub needs BSCORE_EVENTS=eventhub and the EVENTHUB_* variables (see docs/azure.md)"))
        events = _ops().resources["events"]
        # Bodies are serialized chunk by chunk, so the bar also covers that (the slow part).
        with tqdm(total=len(readings), unit="event", desc="publishing") as bar:
            for i in range(0, len(readings), CHUNK):
                bar.update(events.publish(readings_to_event_bodies(readings.iloc[i : i + CHUNK])))
        click.echo(f"{len(readings):,} readings sent to {events.describe()}")
    else:
        # The file holds what ingest accepts; the ground truth goes beside it.
        path = Path(target)
        truth = path.with_name(f"{path.stem}.planted.csv")
        with open(path, "w", encoding="utf-8") as out, tqdm(total=len(readings), unit="reading", desc=path.name) as bar:
            for i in range(0, len(readings), CHUNK):
                chunk = readings.iloc[i : i + CHUNK]
                if path.suffix == ".csv":
                    chunk.drop(columns="planted").to_csv(out, index=False, header=i == 0,
                                                         date_format="%Y-%m-%dT%H:%M:%S.%f")
                else:
                    out.write("\n".join(readings_to_event_bodies(chunk)) + "\n")
                bar.update(len(chunk))
        planted = readings.loc[readings["planted"], ["ts", "device", "sensor"]]
        planted.to_csv(truth, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
        click.echo(f"{len(readings):,} readings written to {path}; the {len(planted):,} readings of planted "
                   f"anomalies are listed in {truth}")


@main.command(short_help="Ingest CSV or JSON-lines readings.")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False),
                help="Files of readings: long CSV (ts, device, sensor, value, or the reference's TS, Device, "
                     "Tag, Value), wide CSV (a column per sensor) or JSON-lines; docs/input-contract.md.")
@click.option("--device", default=None,
              help="The device of every row, for a CSV without a device column, e.g. --device pump-7.")
@click.option("--decimal-comma", is_flag=True, help="Values are written with a decimal comma (12,5).")
@click.option("--label-column", "label_columns", multiple=True,
              help="Wide CSV: a column of labels, not a sensor; its nonzero cells mark anomalous readings, kept as "
                   "label spans in $BSCORE_HOME/labels/<file>.csv for `bscore evaluate`. Repeatable, e.g. "
                   "--label-column anomaly --label-column changepoint.")
@click.option("--columns", "columns", default=None,
              help="Wide CSV: ingest only these sensor columns, comma-separated, e.g. --columns Pressure,Temperature.")
@click.option("--exclude", "exclude", default=None,
              help="Wide CSV: do not ingest these columns, comma-separated, e.g. --exclude Volume,Current.")
@click.option("--max-bad", type=click.IntRange(min=0), default=None,
              help="Land a file's good events and dead-letter up to N refused ones with file and line.")
def ingest(files, device, decimal_comma, label_columns, columns, exclude, max_bad):
    """CSV (long or wide, any of , ; tab |) or JSON-lines readings into the event source.

    Every file is checked first; if any event would be refused (more than --max-bad in a file),
    nothing is landed, and every refused line is listed in a report file.

    \b
    Example: a spreadsheet export of one device, ; separated with decimal commas:
      bscore ingest testbed.csv --device "Testbed 1" --decimal-comma
    """
    from bscore_assets.verdicts.evaluation_report import labels_dir
    from bscore_assets.ingestion.file_ingest import (
        RefusalReport,
        check_files,
        land_files,
        landing_error,
        load_mapping,
        refusal_report_path,
        refuses,
        save_file_labels,
        save_mapping,
    )
    from bscore_assets.ingestion.staging import Staging
    from bscore_assets.settings import PipelineSettings
    from bscore_assets.stores import build_blob, build_events
    from scoring.input_files import ColumnChoice, IdMapping, InputError

    settings = _settings()
    ids = IdMapping(known=load_mapping(settings.home))
    names = (lambda text: tuple(n.strip() for n in text.split(",") if n.strip()) if text is not None else None)
    choice = ColumnChoice(columns=names(columns), exclude=names(exclude) or (), labels=tuple(label_columns))
    try:  # landing is no run: no Dagster instance to open, nor every domain's definitions
        events = build_events(settings).process_config_and_initialize()
        blob = build_blob(settings).process_config_and_initialize() if max_bad is not None else None
    except ValueError as exc:
        _fail(exc)
    report = RefusalReport(refusal_report_path(settings.home))
    try:
        staging = Staging(events.staging_root() or settings.home / "staging")
    except OSError as exc:
        _fail(landing_error(exc, events))
    try:
        try:
            checks = check_files(files, ids, settings.start, device, decimal_comma, choice=choice, report=report,
                                 staging=staging)
        except InputError as exc:
            _fail(ValueError(f"{exc}; nothing was landed"))
        except OSError as exc:
            if exc.filename is not None and not str(exc.filename).startswith(str(staging.folder)):
                _fail(ValueError(f"{exc}; nothing was landed"))  # an input file that cannot be read
            _fail(landing_error(exc, events))
        finally:
            report.close()
        refused = sum(check.refused for check in checks if refuses(check, max_bad))
        for check in checks:
            click.echo(f"{check.path}: {check.layout.describe()}; {check.events:,} events"
                       + (f", {check.refused:,} refused" if check.refused else ""))
        if refused:
            for check in checks:
                for error in check.errors:
                    click.echo(f"  {error}", err=True)
            limit = f" in file(s) with more than --max-bad {max_bad}" if max_bad is not None else ""
            _fail(ValueError(f"{refused:,} event(s) refused{limit} (the first ones above, every one in {report.path}); "
                             "nothing was landed. "
                             "Fix them and run again: docs/input-contract.md says what is accepted"))
        if ids.new:
            click.echo("names that ids cannot hold are stored under these ids "
                       f"(kept in {settings.home / 'id_mapping.csv'}):")
            width = max(len(name) for name in ids.new)
            for name, ident in sorted(ids.new.items()):
                click.echo(f"  {name:<{width}}  ->  {ident}")
        try:
            total = land_files(checks, events, dead_letters=blob)
            save_mapping(settings.home, ids.new)
        except ValueError as exc:
            _fail(exc)
        except OSError as exc:
            _fail(ValueError(f"cannot write {exc.filename}: {exc.strerror}; the events were landed, but the names "
                             "mapped to ids above were not kept there: free space and add them to it by hand"))
    finally:
        staging.discard()
    dead = sum(check.dead_lettered for check in checks)
    click.echo(f"{total:,} events landed in {events.describe()}"
               + (f"; {dead:,} refused line(s) dead-lettered (bscore deadletter list; {report.path})" if dead else ""))
    for path, spans in save_file_labels(checks, ids, labels_dir(settings.home), PipelineSettings().window_seconds):
        click.echo(f"{spans:,} label span(s) kept in {path} (used by `bscore evaluate`)")


@main.command(short_help="(Re)train device models.")
@click.option("--device", "devices", multiple=True,
              help="Train only this device; repeatable, e.g. --device 1 --device 2. Default: every device.")
@click.option("--from", "first", metavar="HOUR", default=None,
              help="First hour of the training window (ISO-8601), e.g. --from 2026-01-01T00. Default: "
                   "BSCORE_TRAINING_HOURS (24) hours back from the last closed hour, not before BSCORE_START.")
@click.option("--to", "last", metavar="HOUR", default=None,
              help="Last hour of the training window, included, e.g. --to 2026-01-01T23. Default: the last "
                   "closed hour.")
@click.option("--kind", type=click.Choice(["robust", "svm"]), default=None,
              help="Detector kind of every sensor (default BSCORE_DETECTOR, robust).")
@click.option("--false-alarm-rate", type=float, default=None,
              help="Share of a device's training windows its models may flag (default BSCORE_FALSE_ALARM_RATE, 0.005).")
@click.option("--select", is_flag=True,
              help="Choose each sensor's kind by the recall of anomalies planted into its training windows.")
def train(devices, first, last, kind, false_alarm_rate, select):
    """(Re)train device models on a window of aggregates and register them as current.

    The window's aggregates are brought up to date from what was ingested first, as
    'bscore score' does. New models pass the retraining gate: a sensor whose new model flags
    too much of the window's held-out last hour falls back to the robust kind or keeps its
    current model (docs/operations.md, 'The retraining gate').

    \b
    Example: train on one day, choosing each sensor's detector kind:
      bscore train --from 2026-01-01T00 --to 2026-01-01T23 --select
    """
    from bscore_assets.operations import parse_hour

    try:
        ops = _ops()
        first = parse_hour(first, "--from") if first else None
        last = parse_hour(last, "--to") if last else None
        if false_alarm_rate is not None and not 0 < false_alarm_rate < 0.5:
            raise ValueError(f"--false-alarm-rate {false_alarm_rate} must be a share between 0 and 0.5, such as 0.005")
    except ValueError as exc:
        _fail(exc)
    options = {"kind": kind, "false_alarm_rate": false_alarm_rate, "select": select or None}
    _run(lambda: ops.train(list(devices) or None, first, last,
                           options={k: v for k, v in options.items() if v is not None}))


@main.command(short_help="Score hours, then vote device verdicts.")
@click.option("--from", "first", metavar="HOUR", required=True,
              help="First hour to score (ISO-8601), e.g. --from 2026-01-01T00.")
@click.option("--to", "last", metavar="HOUR", required=True,
              help="Last hour to score, included and closed, e.g. --to 2026-01-01T23 (or the same hour as --from).")
@click.option("--sensor", "sensors", multiple=True,
              help="Score only this sensor; repeatable, e.g. --sensor 1 --sensor 2. Default: every sensor.")
def score(first, last, sensors):
    """Materialize predictions, then device verdicts, for hours FROM..TO (both included) through Dagster.

    The hours' raw readings and aggregates are brought up to date from what was ingested
    first; every device is scored with its current model version (never retrained). The
    runs show in the Dagster UI.

    \b
    Example: score sensors 1 and 2 over one day:
      bscore score --from 2026-01-01T00 --to 2026-01-01T23 --sensor 1 --sensor 2
    """
    from bscore_assets.operations import parse_hour

    try:
        ops = _ops()
        first, last = parse_hour(first, "--from"), parse_hour(last, "--to")
    except ValueError as exc:
        _fail(exc)
    _run(lambda: ops.score_and_vote(first, last, list(sensors) or None))


@main.command(short_help="Precision and recall against labels.")
@click.option("--labels", "labels_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Labels CSV 'device,start,end[,sensor][,kind]' (ISO-8601 times; a span labels windows "
                   "stamped in (start, end]; no sensor = the whole device), e.g. --labels labels.csv. "
                   "Default: every file that `bscore ingest --label-column` stored in $BSCORE_HOME/labels/.")
@click.option("--from", "first", metavar="HOUR", default=None,
              help="First hour to evaluate (ISO-8601), e.g. --from 2026-01-01T00. "
                   "Default: the first stored prediction.")
@click.option("--to", "last", metavar="HOUR", default=None,
              help="Last hour, included, e.g. --to 2026-01-01T23. Default: the last stored prediction.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Where to write the PNG of F1 and false alarms beside the baselines, e.g. --plot eval.png. "
                   "Default: $BSCORE_HOME/evaluation.png.")
@click.option("--point-adjusted", is_flag=True,
              help="Also print point-adjusted figures (a detected event counts all its windows as found; they "
                   "inflate scores), e.g. --point-adjusted.")
def evaluate(labels_path, first, last, plot_path, point_adjusted):
    """Precision, recall, F1 and false alarms of the stored verdicts against labels, beside the
    flag-everything and random baselines; see docs/evaluation.md.

    \b
    Example: one day's verdicts against a labels file:
      bscore evaluate --labels labels.csv --from 2026-01-01T00 --to 2026-01-01T23
    """
    from bscore_assets.verdicts.evaluation_report import format_evaluation, load_labels, stored_label_files
    from bscore_assets.operations import parse_hour
    from scoring.time_units import HOUR
    from scoring.evaluation import evaluate as evaluate_verdicts
    from scoring.evaluation_plot import plot_evaluation

    settings = _settings()
    paths = [Path(labels_path)] if labels_path else stored_label_files(settings.home)
    if not paths:
        _fail(ValueError("no labels: give --labels FILE (device,start,end[,sensor]) or ingest a wide CSV with "
                         f"--label-column NAME (labels are kept in {settings.home / 'labels'})"))
    try:
        labels = load_labels(paths)
        start = parse_hour(first, "--from") if first else None
        end = parse_hour(last, "--to") + HOUR if last else None
    except ValueError as exc:
        _fail(exc)
    sql = _ops(settings).resources["sql"]
    rows = sql.read_predictions(start, end)
    if rows.empty:
        _fail(ValueError("no stored predictions in that range: run `bscore score --from HOUR --to HOUR` first"))
    # The stored device verdicts (BSCORE_DEVICE_VOTE_MIN_SENSORS) when the range has any;
    # otherwise (hours scored before verdicts were stored) "any sensor flagged" for all of it.
    verdicts = sql.read_device_verdicts(start, end)
    result = evaluate_verdicts(rows, labels, None if verdicts.empty else verdicts, point_adjusted=point_adjusted)
    click.echo(f"{len(labels):,} label(s) from {', '.join(map(str, paths))}; {len(rows):,} sensor windows "
               f"from {rows['ts'].min()} to {rows['ts'].max()}")
    if result.unmatched_labels:
        click.echo(f"  {result.unmatched_labels:,} label(s) cover no stored window (another device, sensor or time)")
    click.echo("\n" + format_evaluation(result, point_adjusted))
    plot = plot_evaluation(result, Path(plot_path) if plot_path else settings.home / "evaluation.png")
    click.echo(f"\nplot written to {plot}")


@main.group(short_help="Export stored predictions.")
def predictions():
    """Work with stored predictions.

    \b
    Example:
      bscore predictions export --out preds/
    """


@predictions.command("export", short_help="Write predictions as CSV or Parquet files.")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Folder to write the files into (created when missing), e.g. --out preds/.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="csv in the reference's layout, or parquet with the same columns.")
@click.option("--from", "first", metavar="HOUR", default=None,
              help="First hour to export (ISO-8601), e.g. --from 2026-01-01T00. Default: the first stored prediction.")
@click.option("--to", "last", metavar="HOUR", default=None,
              help="Last hour to export, included, e.g. --to 2026-01-01T23. Default: the last stored prediction.")
def export(out, fmt, first, last):
    """One file per device and sensor, DIR/<device>/preds_<device>_<sensor>: TS, Device, Sensor, Val, Prediction, Score.

    Prediction is 1 for an anomaly; Score is the model's decision value (an anomaly when <= 0).

    \b
    Example: one day's predictions as CSV:
      bscore predictions export --out preds/ --from 2026-01-01T00 --to 2026-01-01T23
    """
    from bscore_assets.predictions.export import export_predictions
    from bscore_assets.operations import parse_hour
    from scoring.time_units import HOUR

    try:
        ops = _ops()
        start = parse_hour(first, "--from") if first else None
        end = parse_hour(last, "--to") + HOUR if last else None
        files = export_predictions(ops.resources["sql"], Path(out), fmt, start, end)
    except ValueError as exc:
        _fail(exc)
    click.echo(f"{len(files)} file(s) written to {out}")


@main.group(short_help="List, replay or export refused events.")
def deadletter():
    """Events the drain refused: list them, re-submit them once they can be accepted.

    \b
    Example: see why events were refused, then re-publish those with names ids cannot hold:
      bscore deadletter list
      bscore deadletter replay --reason "bad sensor" --fix-ids
    """


@deadletter.command("list", short_help="Count dead letters per reason.")
def deadletter_list():
    """Dead letters per reason, and in which blobs.

    \b
    Example:
      bscore deadletter list
    """
    from bscore_assets.ingestion.deadletters import list_dead_letters

    blob = _ops().resources["blob"]
    table = list_dead_letters(blob)
    if table.empty:
        click.echo(f"no dead letters in {blob.describe()}")
        return
    click.echo("dead letters per reason:")
    for reason, count in table.groupby("reason")["count"].sum().sort_values(ascending=False).items():
        click.echo(f"  {count:>10,}  {reason}")
    click.echo(f"in {table['key'].nunique()} blob(s) under deadletter/ of {blob.describe()}:")
    for key, group in table.groupby("key", sort=True):
        click.echo(f"  {key}: " + ", ".join(f"{r} {c:,}" for r, c in zip(group["reason"], group["count"])))
    click.echo(f"{int(table['count'].sum()):,} dead letter(s) in all")


@deadletter.command("replay", short_help="Re-publish dead letters accepted now.")
@click.option("--reason", default=None, help="Only this reason (as `deadletter list` shows it), e.g. 'bad sensor'. "
                                             "Default: every reason.")
@click.option("--fix-ids", is_flag=True, help="Map names that ids cannot hold, as `bscore ingest` does.")
def deadletter_replay(reason, fix_ids):
    """Re-publish dead letters that are accepted now; each is sent once, then taken out.

    Those still refused stay in deadletter/.

    \b
    Example: re-publish the events refused for their sensor names, mapped to ids:
      bscore deadletter replay --reason "bad sensor" --fix-ids
    """
    from bscore_assets.ingestion.deadletters import replay_dead_letters
    from bscore_assets.ingestion.file_ingest import load_mapping, save_mapping
    from scoring.input_files import IdMapping, InputError

    settings = _settings()
    ops = _ops(settings)
    ids = IdMapping(known=load_mapping(settings.home)) if fix_ids else None
    try:
        summary = replay_dead_letters(ops.resources["blob"], ops.resources["events"], reason, ids)
    except InputError as exc:
        _fail(exc)
    if ids is not None:
        save_mapping(settings.home, ids.new)
        for name, ident in sorted(ids.new.items()):
            click.echo(f"  {name}  ->  {ident}")
    click.echo(f"{summary.sent:,} of {summary.selected:,} dead letter(s) re-published to "
               f"{ops.resources['events'].describe()}")
    for category, count in sorted(summary.still_refused.items()):
        click.echo(f"  {count:,} still refused ({category}); they stay in deadletter/")


@deadletter.command("export", short_help="Move dead letters into a JSON-lines file.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="JSON-lines file to write them to, e.g. --out dead.jsonl.")
@click.option("--reason", default=None, help="Only this reason (as `deadletter list` shows it). Default: every reason.")
def deadletter_export(out, reason):
    """Move dead letters into a JSON-lines file, to fix by hand and `bscore ingest`.

    \b
    Example: take out the events with bad values, fix them, ingest them again:
      bscore deadletter export --out dead.jsonl --reason "bad value"
      bscore ingest dead.jsonl
    """
    from bscore_assets.ingestion.deadletters import export_dead_letters

    count = export_dead_letters(_ops().resources["blob"], Path(out), reason)
    click.echo(f"{count:,} dead letter(s) written to {out} and taken out of deadletter/; "
               f"fix them, then `bscore ingest {out}`")


@main.command(short_help="Remove data past the retention policy's days.")
@click.option("--dry-run", is_flag=True, help="List what would be removed, per kind, and remove nothing.")
def retention(dry_run):
    """Remove what the retention policy (days per kind of data, see docs/configuration.md) says is past its days.

    Lists, per kind of data, how many items (SQL: rows) and bytes go, and which hours are
    retired: a later run of a retired hour is refused by name. The retention_schedule runs
    the same on BSCORE_RETENTION_CRON once turned on.

    \b
    Example: see what would go, then remove it:
      bscore retention --dry-run
      bscore retention
    """
    import pandas as pd

    from bscore_assets.retention.apply import apply_plan
    from bscore_assets.retention.plan import describe_plan, plan_retention
    from bscore_assets.retention.policy import RetentionPolicy

    settings = _settings()
    ops = _ops(settings)
    blob, sql = ops.resources["blob"], ops.resources["sql"]
    plan = plan_retention(RetentionPolicy.from_settings(settings), pd.Timestamp.now("UTC"), blob, sql,
                          ops.resources["events"], ops.instance)
    click.echo(("would remove" if dry_run else "removing") + " (kind, count, size, policy):")
    for line in describe_plan(plan):
        click.echo(f"  {line}")
    if dry_run:
        click.echo("dry run: nothing removed")
        return
    totals = apply_plan(plan, blob, sql, ops.instance)
    freed = sum(total["bytes"] or 0 for total in totals.values())
    click.echo(f"removed {sum(t['count'] for t in totals.values()):,} item(s) and row(s), {freed / 1e6:,.1f} MB")


@main.group(short_help="Import device model files.")
def models():
    """Work with device model bundles.

    \b
    Example:
      bscore models import legacy-models/
    """


@models.command("import", short_help="Import model files as current bundles.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False),
                help="Folder holding the model_<device>_<sensor> files.")
def models_import(directory):
    """Model files named model_<device>_<sensor>[.pkl|.pickle|.skops] as current bundles.

    The name is split at the first _ after model_ (write a _ inside a device id as %5F).
    Every file is imported or refused with its reason; a device with a refused file keeps
    its current bundle, and the command then exits 2. The import is a Dagster run
    (model_import_job): each device's new model is recorded, and automation rescores.
    docs/input-contract.md, 'Model files', says which files are accepted.

    \b
    Example: the reference implementation's 15 scikit-learn 0.19 pickles:
      bscore models import legacy-models/
    """
    try:
        found = _ops().import_models(Path(directory))
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    for device, version in found.versions.items():
        click.echo(f"device {device}: {found.sensor_models[device]} model(s), version {version}")
    for name, reason in sorted(found.not_models.items()):
        click.echo(f"skipped {name}: {reason}")
    for name, reason in sorted(found.refused.items()):
        click.echo(f"refused {reason}", err=True)
    for device, files in sorted(found.devices_refused.items()):
        click.echo(f"device {device}: not imported (refused: {', '.join(sorted(files))}); its current bundle is unchanged",
                   err=True)
    if not found.versions and not found.refused:
        _fail(ValueError(f"no model_<device>_<sensor> files in {directory}"))
    click.echo(f"{len(found.versions)} device bundle(s) imported and registered as current"
               + (f"; {len(found.refused)} file(s) refused" if found.refused else ""))
    if found.refused:
        sys.exit(2)


@main.group(short_help="Register devices and sensors as partitions.")
def fleet():
    """The devices and sensors Dagster partitions by.

    \b
    Example:
      bscore fleet register
    """


@fleet.command("register", short_help="Register devices and sensors now.")
def fleet_register():
    """Register the devices and sensors with windows as Dagster's dynamic partitions.

    The daemon's fleet_partitions_sensor does this each minute once it is on, and bscore's own
    commands before they run; run this on a fresh instance before Dagster's own commands.

    \b
    Example: train device 1 with Dagster's own command on a fresh instance:
      bscore fleet register
      DAGSTER_HOME=$BSCORE_HOME/dagster dagster asset materialize -f definitions.py --select device_models --partition 1
    """
    from bscore_assets.partitions import device_partitions_def, sensor_partitions_def

    ops = _ops()
    try:
        added, held = ops.register_fleet()
    except ValueError as exc:
        _fail(exc)
    for name, keys in added.items():
        click.echo(f"new {name}: {', '.join(keys)}")
    for reason in held.values():
        click.echo(f"sensor held back: {reason}", err=True)
    devices, sensors = (len(ops.instance.get_dynamic_partitions(d.name))
                        for d in (device_partitions_def, sensor_partitions_def))
    click.echo(f"{devices} device(s) and {sensors} sensor(s) registered"
               + ("" if devices else "; none has windows yet: aggregate hours first (`bscore score`, or Dagster's "
                                     "raw_readings and sensor_aggregates)"))


@main.group(short_help="Azure ML: the scoring cluster and image.")
def aml():
    """Azure Machine Learning: the scoring cluster and its Environment.

    \b
    Example:
      bscore aml provision --dry-run
    """


@aml.command("provision", short_help="Create or update the Azure ML cluster.")
@click.option("--cluster", default="bscore-cpu", envvar="AZUREML_CLUSTER", show_default=True, show_envvar=True,
              help="Name of the compute cluster the scoring jobs run on.")
@click.option("--vm-size", default="Standard_DS3_v2", envvar="AZUREML_VM_SIZE", show_default=True, show_envvar=True,
              help="Azure VM size of the cluster's nodes.")
@click.option("--min-nodes", default=0, envvar="AZUREML_MIN_NODES", show_default=True, show_envvar=True,
              help="Nodes kept when idle (0: none left running).")
@click.option("--max-nodes", default=4, envvar="AZUREML_MAX_NODES", show_default=True, show_envvar=True,
              help="Most nodes the cluster scales out to (1 or more).")
@click.option("--idle-seconds", default=600, envvar="AZUREML_IDLE_SECONDS", show_default=True, show_envvar=True,
              help="Idle time before a node is released.")
@click.option("--environment", default="bscore-scoring", envvar="AZUREML_ENVIRONMENT", show_default=True,
              show_envvar=True, help="Name of the Azure ML Environment the scoring jobs run in (<name>:<hash of this checkout's build context>).")
@click.option("--dry-run", is_flag=True, help="Print the entities without contacting Azure.")
def aml_provision(cluster, vm_size, min_nodes, max_nodes, idle_seconds, environment, dry_run):
    """Create or update the autoscaling cluster and the scoring Environment (built from docker/).

    Azure ML is reached with the AZUREML_* variables and DefaultAzureCredential (README.md,
    'Azure ML: scoring as command jobs').

    \b
    Example: a cluster of up to 8 nodes, printed first, then created:
      bscore aml provision --max-nodes 8 --dry-run
      bscore aml provision --max-nodes 8
    """
    from resources import azureml_provision as prov

    try:
        spec = prov.ClusterSpec(cluster, vm_size, min_nodes, max_nodes, idle_seconds)
        build_dir = prov.stage_build_context(_settings().home / "azureml" / "scoring-image")
        entities = [prov.cluster_entity(spec), prov.environment_entity(environment, build_dir)]
    except ValueError as exc:
        _fail(exc)
    if dry_run:
        click.echo(prov.dump_entities(entities))
        return
    from resources.azureml import AzureMLComputeBackend

    try:
        ml_client = AzureMLComputeBackend.from_env().ml_client()
    except ValueError as exc:
        _fail(exc)
    compute, env = prov.provision(ml_client, *entities)
    click.echo(f"cluster {compute.name}: {compute.size}, {compute.min_instances}..{compute.max_instances} nodes")
    click.echo(f"environment {env.name}:{env.version} (image built by Azure ML at its first job)")


@main.group(short_help="Azure Stream Analytics aggregation job.")
def asa():
    """Azure Stream Analytics: the job that aggregates on Azure (BSCORE_AGGREGATION=asa).

    \b
    Example:
      bscore asa provision --dry-run
    """


@asa.command("provision", short_help="Create or update the Stream Analytics job.")
@click.option("--dry-run", is_flag=True, help="Print the job's query and request body without contacting Azure.")
def asa_provision(dry_run):
    """Create or update the Stream Analytics job from the local aggregation's window settings.

    \b
    Example: look at the query and request body, then create the job:
      bscore asa provision --dry-run
      bscore asa provision
    """
    from bscore_assets.settings import PipelineSettings
    from resources import asa as prov

    settings = _settings()
    try:
        spec = prov.AsaJobSpec.from_env(PipelineSettings().window_seconds, settings.allowed_lateness_minutes,
                                        placeholders=dry_run)
    except ValueError as exc:
        _fail(exc)
    if dry_run:
        click.echo(prov.dry_run_text(spec), nl=False)
        return
    try:
        job = prov.provision(prov.management_client(spec), spec)
    except RuntimeError as exc:
        _fail(exc)
    click.echo(f"Stream Analytics job {job.name}: {job.provisioning_state}, {job.job_state}; "
               f"{spec.window_seconds} s windows into SQL {prov.SQL_TABLE}, raw events to "
               f"{spec.container}/{spec.raw_path_pattern}")
    click.echo(f"start it: az stream-analytics job start -g {spec.resource_group} -n {spec.job_name} "
               "--output-start-mode JobStartTime")


if __name__ == "__main__":
    main()
