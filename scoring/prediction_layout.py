"""How a prediction partition's parts become whole, so that shards write them independently
(the keys are ``scoring.blob_layout``'s).

A partition (hour, sensor) is a folder of Parquet parts, one per shard, named by the shard's
first and last device and the run (``predictions/<hour>/sensor=<s>/part-<first>--<last>--<run>.parquet``),
and a manifest ``predictions/<hour>/sensor=<s>/_manifest.json`` naming the parts that make up
the partition. Shards write parts; only the run writes the manifest, once every shard
succeeded, then removes the parts the manifest it replaced named. A reader reads the
manifest's parts: a partition is whole (the parts of one successful run) or absent (no manifest
yet), and parts of a run still going or of one that failed are never read.

The manifest also records what the partition was scored from (``inputs``: the hour's
aggregates and the models' versions) and the run's summary of it, so that a later run with the
same inputs can report the partition without scoring it again.
"""

from __future__ import annotations

import json
import uuid

import pandas as pd

from scoring.blob_layout import prediction_manifest_key


def run_token() -> str:
    """A new run's token: its parts never overwrite the parts another run's manifest names."""
    return uuid.uuid4().hex[:12]


def manifest_bytes(parts: list[str], rows: int, inputs: str | None = None, summary: dict | None = None) -> bytes:
    """The manifest naming a partition's parts (keys) and its row count; optionally the version
    of the inputs it was scored from and the run's summary of it."""
    return json.dumps({"parts": sorted(parts), "rows": int(rows), "inputs": inputs, "summary": summary}).encode()


def read_manifest(blobs, hour: pd.Timestamp, sensor: str) -> dict | None:
    """The partition's manifest, or None when no run has completed it."""
    key = prediction_manifest_key(hour, sensor)
    if not blobs.exists(key):
        return None
    return json.loads(blobs.read_bytes(key))
