"""Remove what a retention plan lists, and record the hours it retires.

The retired hours are recorded before their data goes: a run of such an hour that starts
meanwhile is refused rather than finding half its inputs. SQL rows go in one DELETE per table
(an index range on ``ts``, the key's first column); runs go through the Dagster instance, which
removes their event logs with them.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from bscore_assets.retention.plan import RetentionPlan
from bscore_assets.retention.records import record_retired, write_sightings
from resources.blob import BlobStore
from resources.sql import SqlStore, metadata


def apply_plan(plan: RetentionPlan, blob: BlobStore, sql: SqlStore,
               instance: dg.DagsterInstance | None = None) -> dict[str, dict]:
    """Remove every item of ``plan``; returns the plan's totals per kind (what was removed)."""
    record_retired(blob, plan.retire)
    tables = {table.name: table for table in metadata.sorted_tables}
    removed_keys = set()
    for item in plan.items:
        if item.kind == "landing":
            Path(item.target).unlink(missing_ok=True)
        elif item.kind == "sql":
            table = tables[item.target]
            with sql.engine.begin() as conn:
                conn.execute(table.delete().where(table.c.ts <= plan.retire["sql"]))
        elif item.kind == "run":
            if instance is not None:
                instance.delete_run(item.target)
        else:
            blob.delete(item.target)
            removed_keys.add(item.target)
    write_sightings(blob, {key: when for key, when in plan.seen.items() if key not in removed_keys})
    return plan.totals()

