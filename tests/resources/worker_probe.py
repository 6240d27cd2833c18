"""What a spawned pool worker imported while it scored a shard; a module without Dagster, so
that unpickling the probe in the worker imports nothing the worker would not."""

import sys

from resources.shard_worker import run_shard


def score_and_list_dagster_modules(task, sql, blob):
    return run_shard(task, sql, blob), sorted(m for m in sys.modules if m.split(".")[0] == "dagster")
