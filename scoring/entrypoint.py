"""The Azure ML job (``python -m scoring.entrypoint``): one scoring or training shard, named, not staged.

A training shard (``scoring.training_task``) is run the same way: it reads its devices'
windows, trains them behind the gate, stores their bundles (not current: the run makes them
so) and reports each device's outcome.


The orchestrator sends only names over the Dagster Pipes context (extra ``task``: the shard's
devices, the run's hours and sensors, the run's token). The job reads its devices'
windows from SQL itself (``BSCORE_SQL_URL`` in its environment: on Azure a URL signing in with
the cluster's managed identity, never a password, with ``BSCORE_SQL_AUTH=entra``), loads their
current bundles from the blob store (``BSCORE_BLOB_URL``; a bundle that does not load refuses its own device only), scores
with ``scoring.engine.score_shard``, writes its predictions (one Parquet part per partition in
blob storage) and stages them in SQL under the run's token (``scoring.shard_sql``), from where
the run publishes each hour on the database server, and reports the shard's summary (counts per partition and device, model versions, devices
missing a model or refused; never rows) as a custom Pipes message. Needs only this package and
``docker/requirements.txt`` (numpy, pandas, pyarrow, scikit-learn and skops, SQLAlchemy,
azure-storage-blob, azure-identity, dagster-pipes).
"""

from __future__ import annotations

import os

from scoring.blobs import Blobs, open_blobs
from scoring.remote_tasks import run_task, task_from_json

ACCOUNT_URL_VAR = "BSCORE_AML_STORAGE_ACCOUNT_URL"
SQL_URL_VAR = "BSCORE_SQL_URL"
SQL_AUTH_VAR = "BSCORE_SQL_AUTH"
BLOB_URL_VAR = "BSCORE_BLOB_URL"
MESSAGE_INTERVAL_SECONDS = 5.0


def open_job_blobs(env=None) -> Blobs:
    """The blob store the job's ``BSCORE_BLOB_URL`` names, opened as the resources open it
    (``scoring.blobs.open_blobs``: same classes, same client builder, retries and secret-safe
    errors), signed in as the job's identity when it is an account URL."""
    env = os.environ if env is None else env
    url = env.get(BLOB_URL_VAR)
    if not url:
        raise ValueError(f"the scoring job needs {BLOB_URL_VAR} in its environment (the blob store's URL)")
    return open_blobs(url)


def open_pipes_service():
    """Pipes' storage account: a connection string when the environment has one (Azurite), else
    the job's identity at ``BSCORE_AML_STORAGE_ACCOUNT_URL``."""
    from scoring.azure_storage import CONNECTION_STRING_ENV, service_client

    return service_client(os.environ.get(ACCOUNT_URL_VAR), os.environ.get(CONNECTION_STRING_ENV))


def main() -> None:
    from dagster_pipes import (
        PipesAzureBlobStorageContextLoader,
        PipesAzureBlobStorageMessageWriter,
        open_dagster_pipes,
    )

    from scoring.shard_sql import ShardSql

    client = open_pipes_service()
    with open_dagster_pipes(
        context_loader=PipesAzureBlobStorageContextLoader(client=client),
        message_writer=PipesAzureBlobStorageMessageWriter(client=client, interval=MESSAGE_INTERVAL_SECONDS),
    ) as pipes:
        task = task_from_json(pipes.get_extra("task"))
        pipes.log.info(f"{task.label}: {len(task.devices)} device(s)")
        sql = ShardSql(os.environ[SQL_URL_VAR], os.environ.get(SQL_AUTH_VAR, "password"))
        summary = run_task(task, sql, open_job_blobs())
        for device, reason in summary.devices_refused.items():
            pipes.log.error(f"{task.label}: device {device}: refused: {reason}")
        pipes.log.info(summary.log_line())
        pipes.report_custom_message(summary.to_json())


if __name__ == "__main__":
    main()
