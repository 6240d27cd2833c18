"""The Azure ML scoring job (``python -m scoring.entrypoint``) and the staged shard it reads.

The orchestrator stages a shard under a prefix of a blob container: its windows as
``rows.parquet`` and its devices' model bundles in the model store layout (``models/``).
The job opens a Dagster Pipes session on the same storage account, scores the shard with
``scoring.engine.score_shard``, writes ``predictions.parquet`` and ``missing_models.parquet``
beside its input, and reports row counts, anomaly counts and timings as a custom message.
Needs only this package, numpy, pandas, pyarrow, azure-storage-blob, dagster-pipes (and
azure-identity when the job authenticates with the compute's managed identity).
"""

from __future__ import annotations

import os
import time

import pandas as pd

from scoring.engine import ShardScores, score_shard
from scoring.model_store import load_current_bundles, save_bundle
from scoring.parquet import from_parquet_bytes, to_parquet_bytes
from scoring.shards import Shard

ROWS = "rows.parquet"
PREDICTIONS = "predictions.parquet"
MISSING = "missing_models.parquet"
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


def score_staged_shard(stage: ContainerBlobs) -> dict:
    """Score the shard staged at ``stage``, write its outputs there, return what to report."""
    started = time.perf_counter()
    rows = stage.read_parquet(ROWS)
    bundles = load_current_bundles(stage, sorted(rows["device"].astype(str).unique()))
    loaded = time.perf_counter()
    scores = score_shard(rows, bundles)
    scored = time.perf_counter()
    stage.write_parquet(PREDICTIONS, scores.predictions)
    stage.write_parquet(MISSING, scores.missing_models)
    written = time.perf_counter()
    return {
        "rows": len(rows),
        "rows_scored": len(scores.predictions),
        "anomalies": int(scores.predictions["is_anomaly"].sum()),
        "rows_missing_model": int(scores.missing_models["rows"].sum()) if len(scores.missing_models) else 0,
        "models": sum(len(b.models) for b in bundles.values()),
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
        pipes.log.info(f"{shard}: {report['rows_scored']} rows scored, {report['anomalies']} anomalies")
        pipes.report_custom_message(report)


if __name__ == "__main__":
    main()
