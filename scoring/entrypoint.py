"""The Azure ML scoring job (``python -m scoring.entrypoint``) and the staged shard it reads.

The orchestrator stages a shard under a prefix of a blob container: its windows as
``rows.parquet`` and its devices' model bundles in the model store layout (``models/``).
The job opens a Dagster Pipes session on the same storage account, scores the shard with
``scoring.engine.score_shard``, writes ``predictions.parquet``, ``missing_models.parquet`` and
``refused_models.parquet`` beside its input, and reports row counts, anomaly counts, refused
devices and timings as a custom message. A bundle that does not load (malformed, a hash that
does not match, a detector the image cannot build) refuses its own device only; the rest of
the shard is scored. Needs only this package and ``docker/requirements.txt`` (numpy, pandas,
pyarrow, scikit-learn and skops for the non-SVM detectors, azure-storage-blob, azure-identity,
dagster-pipes).
"""

from __future__ import annotations

import os
import time

import pandas as pd

from scoring.engine import ShardScores, score_shard
from scoring.model_store import load_current_bundles_or_refusals, save_bundle
from scoring.parquet import from_parquet_bytes, to_parquet_bytes
from scoring.shards import Shard

ROWS = "rows.parquet"
PREDICTIONS = "predictions.parquet"
MISSING = "missing_models.parquet"
REFUSED = "refused_models.parquet"
REFUSED_COLUMNS = ["device", "reason", "rows"]
ACCOUNT_URL_VAR = "BSCORE_AML_STORAGE_ACCOUNT_URL"
MESSAGE_INTERVAL_SECONDS = 5.0


class ContainerBlobs:
    """The model store's blob protocol on a container client, rooted at ``prefix``."""

    def __init__(self, container, prefix: str = ""):
        self.container = container
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def read_bytes(self, key: str) -> bytes:
        return self.container.download_blob(self.prefix + key).readall()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A block blob upload commits in one step, so readers never see part of it.
        self.container.upload_blob(self.prefix + key, data, overwrite=True)

    def exists(self, key: str) -> bool:
        return self.container.get_blob_client(self.prefix + key).exists()

    def list(self, prefix: str) -> list[str]:
        names = self.container.list_blob_names(name_starts_with=self.prefix + prefix)
        return sorted(name[len(self.prefix):] for name in names)

    def write_parquet(self, key: str, frame: pd.DataFrame) -> None:
        self.write_bytes(key, to_parquet_bytes(frame))

    def read_parquet(self, key: str) -> pd.DataFrame:
        return from_parquet_bytes(self.read_bytes(key))

    def delete_all(self) -> int:
        """Delete every blob under the prefix; returns how many."""
        names = list(self.container.list_blob_names(name_starts_with=self.prefix))
        for name in names:
            self.container.delete_blob(name)
        return len(names)


def stage_shard(stage: ContainerBlobs, shard: Shard) -> None:
    """Write a shard's windows and its devices' current bundles where the job reads them."""
    for bundle in shard.bundles.values():
        save_bundle(stage, bundle)
    stage.write_parquet(ROWS, shard.rows)


def read_shard_scores(stage: ContainerBlobs) -> ShardScores:
    """The scores a finished job wrote beside its input."""
    return ShardScores(stage.read_parquet(PREDICTIONS), stage.read_parquet(MISSING))


def read_shard_refusals(stage: ContainerBlobs) -> dict[str, str]:
    """Devices whose bundle the job refused, with the reason (empty when it wrote none)."""
    if not stage.exists(REFUSED):
        return {}
    frame = stage.read_parquet(REFUSED)
    return dict(zip(frame["device"].astype(str), frame["reason"].astype(str)))


def refusal_table(rows: pd.DataFrame, refused: dict[str, str]) -> pd.DataFrame:
    """One row per refused device: its reason and how many of the shard's rows it left unscored."""
    counts = rows["device"].astype(str).value_counts()
    return pd.DataFrame({
        "device": pd.Series(sorted(refused), dtype=object),
        "reason": pd.Series([refused[d] for d in sorted(refused)], dtype=object),
        "rows": pd.Series([int(counts.get(d, 0)) for d in sorted(refused)], dtype="int64"),
    })[REFUSED_COLUMNS]


def score_staged_shard(stage: ContainerBlobs) -> dict:
    """Score the shard staged at ``stage``, write its outputs there, return what to report."""
    started = time.perf_counter()
    rows = stage.read_parquet(ROWS)
    devices = rows["device"].astype(str)
    bundles, refused = load_current_bundles_or_refusals(stage, sorted(devices.unique()))
    loaded = time.perf_counter()
    # A refused device's rows are not scored, and not reported as missing a model either:
    # they are in the refusals, with the reason.
    kept = rows if not refused else rows[~devices.isin(list(refused))].reset_index(drop=True)
    scores = score_shard(kept, bundles)
    scored = time.perf_counter()
    refusals = refusal_table(rows, refused)
    stage.write_parquet(PREDICTIONS, scores.predictions)
    stage.write_parquet(MISSING, scores.missing_models)
    stage.write_parquet(REFUSED, refusals)
    written = time.perf_counter()
    return {
        "rows": len(rows),
        "rows_scored": len(scores.predictions),
        "anomalies": int(scores.predictions["is_anomaly"].sum()),
        "rows_missing_model": int(scores.missing_models["rows"].sum()) if len(scores.missing_models) else 0,
        "models": sum(len(b.models) for b in bundles.values()),
        "devices_refused": dict(sorted(refused.items())),
        "rows_refused": int(refusals["rows"].sum()),
        "load_seconds": round(loaded - started, 3),
        "score_seconds": round(scored - loaded, 3),
        "write_seconds": round(written - scored, 3),
    }


def blob_service_client():
    """A connection string when the environment has one (Azurite), else the managed identity."""
    from azure.storage.blob import BlobServiceClient

    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string)
    from azure.identity import DefaultAzureCredential

    # On an Azure ML cluster with a user-assigned identity, Azure ML names it in this variable.
    credential = DefaultAzureCredential(managed_identity_client_id=os.environ.get("DEFAULT_IDENTITY_CLIENT_ID"))
    return BlobServiceClient(os.environ[ACCOUNT_URL_VAR], credential=credential)


def main() -> None:
    from dagster_pipes import (
        PipesAzureBlobStorageContextLoader,
        PipesAzureBlobStorageMessageWriter,
        open_dagster_pipes,
    )

    client = blob_service_client()
    with open_dagster_pipes(
        context_loader=PipesAzureBlobStorageContextLoader(client=client),
        message_writer=PipesAzureBlobStorageMessageWriter(client=client, interval=MESSAGE_INTERVAL_SECONDS),
    ) as pipes:
        shard, container, prefix = (pipes.get_extra(k) for k in ("shard", "container", "prefix"))
        stage = ContainerBlobs(client.get_container_client(container), prefix)
        pipes.log.info(f"{shard}: scoring the shard staged at {container}/{prefix}")
        report = {"shard": shard, **score_staged_shard(stage)}
        for device, reason in report["devices_refused"].items():
            pipes.log.error(f"{shard}: device {device}: model refused, not scored: {reason}")
        pipes.log.info(f"{shard}: {report['rows_scored']} rows scored, {report['anomalies']} anomalies, "
                       f"{len(report['devices_refused'])} device(s) refused")
        pipes.report_custom_message(report)


if __name__ == "__main__":
    main()
