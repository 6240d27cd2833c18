"""What the retention policy would remove now, per kind of data, without removing anything.

Each kind is found by its own function over the store that holds it; the plan lists every
item (a blob key, a landing file, a SQL table's old rows, a Dagster run) with its size where
the store knows it, and the hours it retires. ``apply.apply_plan`` removes exactly what a plan
lists; ``bscore retention --dry-run`` prints its totals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from bscore_assets.retention.policy import HOURLY_KINDS, KINDS, RetentionPolicy
from bscore_assets.retention.records import sightings
from resources.blob import BlobStore
from resources.events import EventSource, LocalEventSource
from resources.sql import SqlStore, metadata
from scoring.blob_layout import (
    ASA_CENSUS_PREFIX,
    DEADLETTER_EXPORTED_PREFIX,
    DEADLETTER_PREFIX,
    DEADLETTER_REPLAYED_PREFIX,
    MANIFEST,
    MODELS_PREFIX,
    PREDICTIONS_PREFIX,
    RAW_PREFIX,
    VERDICTS_PREFIX,
)

DEAD_LETTER_PREFIXES = (DEADLETTER_PREFIX, DEADLETTER_REPLAYED_PREFIX, DEADLETTER_EXPORTED_PREFIX)
HOUR_FOLDER = re.compile(r"^[a-z-]+/(\d{4}-\d{2}-\d{2}T\d{2})/")  # raw/, asa-census/, predictions/
VERDICT_FILE = re.compile(r"^[a-z-]+/(\d{4}-\d{2}-\d{2}T\d{2})\.parquet$")  # verdicts/
VERSION_STAMP = re.compile(r"(\d{8}T\d{6})-[0-9a-f]+$")  # scoring.model_format.versioned_bundle
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class Doomed:
    """One thing retention removes: ``target`` is a blob key, a landing file's path, a SQL table
    (``rows`` of it) or a Dagster run id; ``size`` in bytes, None when the store does not say."""

    kind: str
    target: str
    size: int | None
    rows: int = 1


@dataclass
class RetentionPlan:
    now: pd.Timestamp
    policy: RetentionPolicy
    items: list[Doomed] = field(default_factory=list)
    retire: dict[str, pd.Timestamp] = field(default_factory=dict)  # kind -> first hour kept
    seen: dict[str, pd.Timestamp] = field(default_factory=dict)  # sightings, updated with this look

    def of(self, kind: str) -> list[Doomed]:
        return [item for item in self.items if item.kind == kind]

    def totals(self) -> dict[str, dict]:
        """Per kind: items (rows for SQL) and bytes (None when some size is unknown)."""
        totals = {}
        for kind in KINDS:
            items = self.of(kind)
            sizes = [item.size for item in items]
            totals[kind] = {"count": sum(item.rows for item in items),
                            "bytes": None if any(s is None for s in sizes) else sum(sizes),
                            "days": self.policy.days[kind]}
        return totals


def _hour_of(key: str) -> pd.Timestamp | None:
    match = HOUR_FOLDER.match(key) or VERDICT_FILE.match(key)
    return pd.Timestamp(match.group(1)) if match else None


def landing_items(events: EventSource, policy: RetentionPolicy, now: pd.Timestamp) -> list[Doomed]:
    """Landing files the drain read whole and last changed before the kind's days (the local
    source only: Event Hubs keeps events by its own retention)."""
    if not isinstance(events, LocalEventSource):
        return []
    items = []
    for path in events.drained_files():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if policy.older("landing", pd.Timestamp(stat.st_mtime, unit="s"), now):
            items.append(Doomed("landing", str(path), stat.st_size))
    return items


def hourly_blob_items(blob: BlobStore, kind: str, prefixes: tuple[str, ...], cutoff: pd.Timestamp) -> list[Doomed]:
    """Blobs under ``prefixes`` of hours before ``cutoff``."""
    items = []
    for prefix in prefixes:
        for key, size in blob.sizes(prefix).items():
            hour = _hour_of(key)
            if hour is not None and hour < cutoff:
                items.append(Doomed(kind, key, size))
    return items


def _waited(kind: str, sizes: dict[str, int], policy: RetentionPolicy, now: pd.Timestamp,
            seen: dict[str, pd.Timestamp]) -> list[Doomed]:
    """Keys first seen at least the kind's days ago; keys seen now for the first time are noted."""
    items = []
    for key, size in sizes.items():
        first = seen.setdefault(key, now)
        if policy.older(kind, first, now):
            items.append(Doomed(kind, key, size))
    return items


def dead_letter_items(blob, policy, now, seen) -> list[Doomed]:
    sizes = {}
    for prefix in DEAD_LETTER_PREFIXES:
        sizes.update(blob.sizes(prefix))
    return _waited("deadletter", sizes, policy, now, seen)


def orphan_prediction_parts(blob: BlobStore, keep_from: pd.Timestamp) -> dict[str, int]:
    """Parts of partitions from ``keep_from`` on that their partition's manifest does not name."""
    import json

    sizes = blob.sizes(PREDICTIONS_PREFIX)
    named = set()
    for key in sizes:
        if key.endswith("/" + MANIFEST):
            named.update(json.loads(blob.read_bytes(key)).get("parts", []))
    return {key: size for key, size in sizes.items()
            if key.endswith(".parquet") and key not in named and (_hour_of(key) or keep_from) >= keep_from}


def model_items(blob: BlobStore, policy: RetentionPolicy, now: pd.Timestamp) -> tuple[list[Doomed], dict[str, int]]:
    """Versions neither current nor previous and older than the kind's days; and the files of
    unfinished versions (no ``bundle.json``: a killed training run's), for the orphan kind."""
    import json

    versions: dict[tuple[str, str], dict[str, int]] = {}
    current: dict[str, str] = {}
    for key, size in blob.sizes(MODELS_PREFIX).items():
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == "current.json":
            try:
                current[parts[1]] = json.loads(blob.read_bytes(key))["version"]
            except (ValueError, KeyError, TypeError):
                continue  # a damaged pointer: the device's versions are all kept
        elif len(parts) == 4:
            versions.setdefault((parts[1], parts[2]), {})[key] = size
    doomed, unfinished = [], {}
    for device in sorted({device for device, _ in versions}):
        if device not in current:
            continue  # nothing says which version serves: keep them all
        complete = sorted(version for (d, version), files in versions.items()
                          if d == device and f"{MODELS_PREFIX}{device}/{version}/bundle.json" in files)
        for (d, version), files in versions.items():
            if d == device and version not in complete:
                unfinished.update(files)
        stamped = {v: pd.Timestamp(m.group(1)) for v in complete if (m := VERSION_STAMP.search(v))}
        served = current[device]
        earlier = [v for v in stamped if served in stamped and stamped[v] < stamped[served]]
        kept = {served, *([max(earlier, key=stamped.get)] if earlier else [])}
        for version, stamp in stamped.items():
            if version not in kept and policy.older("model", stamp, now):
                doomed += [Doomed("model", key, size) for key, size in sorted(versions[(device, version)].items())]
    return doomed, unfinished


def hourly_tables() -> list[sa.Table]:
    """The tables of rows per window (``sensor_series`` holds pairs, no time: it is kept)."""
    return [table for table in metadata.sorted_tables if "ts" in table.c]


def sql_items(sql: SqlStore, cutoff: pd.Timestamp) -> list[Doomed]:
    """Per table, its rows of hours before ``cutoff`` (windows ending at or before it), with a
    size estimated from the table's share of the database where the dialect says it."""
    items = []
    engine = sql.engine
    with engine.connect() as conn:
        for table in hourly_tables():
            doomed = conn.execute(sa.select(sa.func.count()).where(table.c.ts <= cutoff)).scalar_one()
            if not doomed:
                continue
            items.append(Doomed("sql", table.name, _estimated_bytes(conn, table, doomed), rows=int(doomed)))
    return items


def _estimated_bytes(conn: sa.Connection, table: sa.Table, rows: int) -> int | None:
    total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    if not total:
        return 0
    if conn.dialect.name == "postgresql":
        size = conn.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": table.name}).scalar_one()
    elif conn.dialect.name == "sqlite":
        try:
            size = conn.execute(sa.text("SELECT sum(pgsize) FROM dbstat WHERE name = :t"), {"t": table.name}).scalar()
        except sa.exc.OperationalError:  # SQLite built without the dbstat table
            return None
    else:
        return None
    return None if size is None else int(size * rows / total)


def run_items(instance: dg.DagsterInstance | None, policy: RetentionPolicy, now: pd.Timestamp) -> list[Doomed]:
    """Finished runs created before the kind's days (deleting one deletes its event log)."""
    if instance is None:
        return []
    before = (pd.Timestamp(now) - pd.Timedelta(days=policy.days["run"])).tz_localize("UTC").to_pydatetime()
    records = instance.get_run_records(filters=dg.RunsFilter(created_before=before, statuses=FINISHED))
    return [Doomed("run", record.dagster_run.run_id, None) for record in records]


def plan_retention(policy: RetentionPolicy, now: pd.Timestamp, blob: BlobStore, sql: SqlStore,
                   events: EventSource | None = None, instance: dg.DagsterInstance | None = None) -> RetentionPlan:
    """Everything the policy would remove at ``now`` (naive UTC), nothing removed.

    Parameters
    ----------
    policy : RetentionPolicy
        Days kept per kind.
    now : pandas.Timestamp
        The time the days count back from, naive UTC.
    blob, sql, events, instance
        The stores; without ``events`` or ``instance`` landing files or runs are not looked at.

    Returns
    -------
    RetentionPlan
        The items per kind, the hours retired per hourly kind, and the sightings as of ``now``.
    """
    now = pd.Timestamp(now)
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)
    seen = sightings(blob)
    plan = RetentionPlan(now, policy, retire={kind: policy.cutoff(kind, now) for kind in HOURLY_KINDS})
    plan.items += landing_items(events, policy, now) if events is not None else []
    plan.items += hourly_blob_items(blob, "raw", (RAW_PREFIX, ASA_CENSUS_PREFIX), plan.retire["raw"])
    plan.items += dead_letter_items(blob, policy, now, seen)
    models, unfinished = model_items(blob, policy, now)
    plan.items += models
    plan.items += hourly_blob_items(blob, "prediction", (PREDICTIONS_PREFIX, VERDICTS_PREFIX),
                                    plan.retire["prediction"])
    orphans = {**orphan_prediction_parts(blob, plan.retire["prediction"]), **unfinished}
    plan.items += _waited("orphan", orphans, policy, now, seen)
    plan.items += sql_items(sql, plan.retire["sql"])
    plan.items += run_items(instance, policy, now)
    waiting = set(orphans) | {key for prefix in DEAD_LETTER_PREFIXES for key in blob.list(prefix)}
    plan.seen = {key: when for key, when in seen.items() if key in waiting}  # forget keys gone meanwhile
    return plan


def describe_plan(plan: RetentionPlan) -> list[str]:
    """One line per kind: what would go, how much, and the policy."""
    lines = []
    for kind, total in plan.totals().items():
        size = "size unknown" if total["bytes"] is None else f"{total['bytes'] / 1e6:,.1f} MB"
        unit = "row(s)" if kind == "sql" else "item(s)"
        retired = f"; hours before {plan.retire[kind]:%Y-%m-%dT%H} retired" if kind in plan.retire else ""
        lines.append(f"{kind:<11} {total['count']:>12,} {unit:<7} {size:>14}  older than {total['days']} day(s): "
                     f"{KINDS[kind]}{retired}")
    return lines
