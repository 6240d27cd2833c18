"""The ``bscore`` command line: the product's contract with users and tests."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click
import pandas as pd
from tqdm import tqdm

from bscore_assets.settings import Settings

CHUNK = 50_000


def _ops():
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from bscore_assets.operations import Operations, local_instance
    from definitions import build_defs

    settings = Settings.from_env()
    return Operations(settings, build_defs(settings), local_instance(settings))


def _fail(exc: Exception):
    click.echo(f"bscore: {exc}", err=True)
    sys.exit(2)


@click.group()
def main():
    """Batch-score one anomaly model per sensor of every device, hourly, with Dagster."""


@main.command()
@click.option("--devices", default=3, show_default=True)
@click.option("--sensors", default=5, show_default=True)
@click.option("--train-hours", default=2, show_default=True)
@click.option("--score-hours", default=2, show_default=True)
@click.option("--anomaly-rate", default=0.01, show_default=True, help="Share of windows with a planted anomaly.")
@click.option("--seed", default=7, show_default=True)
def demo(devices, sensors, train_hours, score_hours, anomaly_rate, seed):
    """Simulate readings, ingest, aggregate, train, score, and report precision and recall."""
    from bscore_assets.demo import run_demo

    ops = _ops()
    try:
        summary = run_demo(ops, devices, sensors, train_hours, score_hours, anomaly_rate, seed, echo=click.echo)
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    click.echo("\nPer-sensor results (windows; precision and recall against the planted anomalies):")
    click.echo(summary.to_string(index=False))
    r = ops.resources
    click.echo(f"\nSQL:          {r['sql'].describe()} (tables sensor_values, predictions)")
    click.echo(f"Blob storage: {r['blob'].describe()} (raw/, models/, predictions/)")
    click.echo(f"Dagster runs: {ops.settings.dagster_home}")
    click.echo("UI:           make ui   (then open http://127.0.0.1:3000)")


@main.command()
@click.option("--devices", default=3, show_default=True)
@click.option("--sensors", default=5, show_default=True)
@click.option("--start", default=None, help="First hour (ISO-8601); default: hours ending at the last closed hour.")
@click.option("--hours", default=1.0, show_default=True)
@click.option("--anomaly-rate", default=0.01, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--to", "target", default="events", show_default=True,
              help="'events' (the configured event source) or a .csv / .jsonl file.")
def simulate(devices, sensors, start, hours, anomaly_rate, seed, target):
    """Readings of N devices x M sensors with planted anomalies."""
    from scoring.readings import readings_to_event_bodies
    from scoring.simulate import simulate_readings

    if start is None:
        start = pd.Timestamp.now("UTC").tz_localize(None).floor("h") - pd.Timedelta(hours=hours)
    try:
        readings = simulate_readings(devices, sensors, start, hours, anomaly_rate, seed=seed)
    except ValueError as exc:
        _fail(exc)
    if target in ("events", "eventhub"):
        if target == "eventhub" and Settings.from_env().events != "eventhub":
            _fail(ValueError("--to eventhub needs BSCORE_EVENTS=eventhub and the EVENTHUB_* variables (see README)"))
        events = _ops().resources["events"]
        # Bodies are serialized chunk by chunk, so the bar also covers that (the slow part).
        with tqdm(total=len(readings), unit="event", desc="publishing") as bar:
            for i in range(0, len(readings), CHUNK):
                bar.update(events.publish(readings_to_event_bodies(readings.iloc[i : i + CHUNK])))
        click.echo(f"{len(readings):,} readings sent to {events.describe()}")
    else:
        path = Path(target)
        with open(path, "w", encoding="utf-8") as out, tqdm(total=len(readings), unit="reading", desc=path.name) as bar:
            for i in range(0, len(readings), CHUNK):
                chunk = readings.iloc[i : i + CHUNK]
                if path.suffix == ".csv":
                    chunk.to_csv(out, index=False, header=i == 0, date_format="%Y-%m-%dT%H:%M:%S.%f")
                else:
                    out.write("\n".join(readings_to_event_bodies(chunk)) + "\n")
                bar.update(len(chunk))
        click.echo(f"{len(readings):,} readings written to {path} ({int(readings['planted'].sum())} planted anomalies)")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def ingest(files):
    """CSV or JSON-lines readings (either field naming) into the event source's landing."""
    from scoring.readings import read_readings_file

    events = _ops().resources["events"]
    total = 0
    for name in files:
        try:
            bodies = read_readings_file(name)
        except (ValueError, UnicodeDecodeError) as exc:
            _fail(exc)
        with tqdm(total=len(bodies), unit="event", desc=Path(name).name) as bar:
            for i in range(0, len(bodies), CHUNK):
                bar.update(events.publish(bodies[i : i + CHUNK]))
        total += len(bodies)
    click.echo(f"{total:,} events landed in {events.describe()}")


@main.command()
@click.option("--device", "devices", multiple=True)
@click.option("--from", "first", default=None)
@click.option("--to", "last", default=None)
def train(devices, first, last):
    """(Re)train device models on a window of aggregates and register them as current."""
    from bscore_assets.operations import parse_hour

    try:
        ops = _ops()
        first = parse_hour(first, "--from") if first else None
        last = parse_hour(last, "--to") if last else None
        results = ops.train(list(devices) or None, first, last)
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    click.echo(f"trained in {len(results)} run(s): {', '.join(r.run_id for r in results)}")


@main.command()
@click.option("--from", "first", required=True)
@click.option("--to", "last", required=True)
@click.option("--sensor", "sensors", multiple=True)
def score(first, last, sensors):
    """Materialize predictions for hours FROM..TO (both included) through Dagster."""
    from bscore_assets.operations import parse_hour

    try:
        ops = _ops()
        results = ops.score(parse_hour(first, "--from"), parse_hour(last, "--to"), list(sensors) or None)
    except (ValueError, RuntimeError) as exc:
        _fail(exc)
    for result in results:
        for event in result.get_asset_materialization_events():
            meta = event.materialization.metadata
            click.echo(f"run {result.run_id}: {meta['rows_scored'].value} windows scored, "
                       f"{meta['anomalies'].value} anomalies")
            break


@main.group()
def predictions():
    """Work with stored predictions."""


@predictions.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--from", "first", default=None)
@click.option("--to", "last", default=None)
def export(out, fmt, first, last):
    """One file per device and sensor in the reference's layout: TS, Device, Sensor, Val, Prediction."""
    from bscore_assets.export import export_predictions
    from bscore_assets.operations import parse_hour

    try:
        ops = _ops()
        start = parse_hour(first, "--from") if first else None
        end = parse_hour(last, "--to") + pd.Timedelta(hours=1) if last else None
        files = export_predictions(ops.resources["sql"], Path(out), fmt, start, end)
    except ValueError as exc:
        _fail(exc)
    click.echo(f"{len(files)} file(s) written to {out}")


@main.group()
def models():
    """Work with device model bundles."""


@models.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def models_import(directory):
    """Model files named model_<device>_<sensor>[.pkl|.pickle|.skops] as current bundles.

    The name is split at the first _ after model_ (write a _ inside a device id as %5F).
    Every file is imported or refused with its reason; a device with a refused file keeps
    its current bundle, and the command then exits 2.
    """
    try:
        found = _ops().import_models(Path(directory))
    except ValueError as exc:
        _fail(exc)
    for device, bundle in sorted(found.bundles.items()):
        click.echo(f"device {device}: {len(bundle.models)} model(s), version {bundle.version}")
    for name, reason in sorted(found.not_models.items()):
        click.echo(f"skipped {name}: {reason}")
    for name, reason in sorted(found.refused.items()):
        click.echo(f"refused {reason}", err=True)
    for device, files in sorted(found.devices_refused.items()):
        click.echo(f"device {device}: not imported (refused: {', '.join(sorted(files))}); its current bundle is unchanged",
                   err=True)
    if not found.bundles and not found.refused:
        _fail(f"no model_<device>_<sensor> files in {directory}")
    click.echo(f"{len(found.bundles)} device bundle(s) imported and registered as current"
               + (f"; {len(found.refused)} file(s) refused" if found.refused else ""))
    if found.refused:
        sys.exit(2)


@main.group()
def aml():
    """Azure Machine Learning: the scoring cluster and its Environment."""


@aml.command("provision")
@click.option("--cluster", default="bscore-cpu", envvar="AZUREML_CLUSTER", show_default=True)
@click.option("--vm-size", default="Standard_DS3_v2", envvar="AZUREML_VM_SIZE", show_default=True)
@click.option("--min-nodes", default=0, envvar="AZUREML_MIN_NODES", show_default=True)
@click.option("--max-nodes", default=4, envvar="AZUREML_MAX_NODES", show_default=True)
@click.option("--idle-seconds", default=600, envvar="AZUREML_IDLE_SECONDS", show_default=True,
              help="Idle time before a node is released.")
@click.option("--environment", default="bscore-scoring", envvar="AZUREML_ENVIRONMENT", show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the entities without contacting Azure.")
def aml_provision(cluster, vm_size, min_nodes, max_nodes, idle_seconds, environment, dry_run):
    """Create or update the autoscaling cluster and the scoring Environment (built from docker/)."""
    from resources import azureml_provision as prov

    try:
        spec = prov.ClusterSpec(cluster, vm_size, min_nodes, max_nodes, idle_seconds)
        build_dir = prov.stage_build_context(Settings.from_env().home / "azureml" / "scoring-image")
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


if __name__ == "__main__":
    main()
