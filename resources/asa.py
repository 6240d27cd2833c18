"""Azure Stream Analytics as the aggregation stage: the job ``bscore asa provision`` creates.

The job does on Azure what ``sensor_aggregates`` does locally, from the same settings: it
reads the Event Hub, stamps each event with its own time (``TIMESTAMP BY``), keeps each
(device, sensor, time) once, averages and counts the readings of each tumbling window of
``window_seconds`` and keeps their smallest and largest (windows are ``(start, end]`` and
``System.Timestamp()`` is the end, as ``scoring.windows``) into SQL ``sensor_values``, and archives every accepted event to Blob
Storage as Parquet under ``raw/<yyyy-mm-ddTHH>/`` (the hour that holds its window), and
writes a census per hour and device of the distinct readings it aggregated, under
``asa-census/<hour>/``, which ``bscore_assets.aggregation.asa`` reconciles SQL against. Events later than
``BSCORE_ALLOWED_LATENESS_MINUTES`` are dropped: Stream Analytics cannot re-open a window it
has written, so its path behaves like ``late_policy=deadletter`` (counted in the job's
"Late input events" metric), and windows are written that long after they close.

The job is parallel: compatibility level 1.2, its input partitioned by device (each event in
the Event Hub partition of its device, ``partitionKey`` ``device``), every step ``PARTITION BY
PartitionId``, and one SQL writer per partition; a restart re-delivers windows already written,
which ``sensor_values``' key ignores on SQL Server (``IGNORE_DUP_KEY``) instead of stopping.
The job signs in to the Event Hub, SQL and Blob Storage with its system-assigned managed
identity, so its definition holds no secret. Query generation is a pure function; the
management call takes a client, so a test can point one at a stand-in service.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from scoring.blob_layout import ASA_CENSUS_PREFIX, RAW_PREFIX

INPUT = "readings"
SQL_OUTPUT = "sensor-values"
RAW_OUTPUT = "raw-archive"
CENSUS_OUTPUT = "hour-census"
SQL_TABLE = "sensor_values"
# raw/<hour>/ as scoring.blob_layout.raw_prefix writes it (raw/%Y-%m-%dT%H/), through a custom
# partition column: {date}/{time} would file a reading at exactly 01:00:00 under hour 01, but
# it belongs to hour 00, whose last window it closes.
RAW_PATH_PATTERN = RAW_PREFIX + "{hour}"
# Per hour and device, the distinct readings the job accepted: what the observation sensor
# reconciles SQL against without reading the raw archive.
CENSUS_PATH_PATTERN = ASA_CENSUS_PREFIX + "{hour}"
HOUR_COLUMN = "hour"
# The service's limits on the two tolerances (REST API 2020-03-01, portal: 9:59 and 20 days).
MAX_OUT_OF_ORDER_SECONDS = 599
MAX_LATE_ARRIVAL_SECONDS = 1_814_399
# Either field naming of DESIGN.md, first match wins. One event uses one naming, so
# COALESCE picks the one present; the same name in two cases is the same field to ASA,
# which matches field names without regard to case.
FIELD_ALIASES = {
    "ts": ["ts", "TS"],
    "device": ["device", "Device"],
    "sensor": ["sensor", "Sensor", "Tag"],
    "value": ["value", "Value"],
}
ID_MAX_LENGTH = 64  # sensor_values.device / .sensor are VARCHAR(64)
# The events' field their Event Hub partition follows (IoT Hub routes by device; bscore's own
# publisher, resources/eventhub.py, keys each event by its device): each step of the query runs
# per partition and a device's windows are whole in one.
PARTITION_KEY = "device"


def _coalesce(field: str) -> str:
    names = FIELD_ALIASES[field]
    return f"COALESCE({', '.join(f'[{n}]' for n in names)})"


def _hour_of(timestamp: str) -> str:
    """ASA expression: the ``yyyy-MM-ddTHH`` hour partition of a time, ``H`` for ``(H, H + 1h]``."""
    return f"SUBSTRING(CAST(DATEADD(millisecond, -1, {timestamp}) AS nvarchar(max)), 1, 13)"


def aggregation_query(window_seconds: int, input_name: str = INPUT, sql_output: str = SQL_OUTPUT,
                      raw_output: str = RAW_OUTPUT, census_output: str = CENSUS_OUTPUT) -> str:
    """The Stream Analytics query that computes ``sensor_aggregates`` and the raw archive.

    Parameters
    ----------
    window_seconds : int
        Tumbling window length; must divide 3600, as ``scoring.windows.tumbling_window_means``
        requires, so an hour holds whole windows.
    input_name, sql_output, raw_output, census_output : str
        The job's input and output names.

    Returns
    -------
    str
        Steps ``Accepted`` (either naming, typed; events without a device, sensor or numeric
        value dropped) and ``FirstReadings`` (each device, sensor and event time once, the first
        enqueued, as ``drop_duplicate_readings`` keeps the first); then one ``SELECT`` per
        output: window averages, reading counts and extremes (``low``, ``high``) stamped with
        the window's end into SQL,
        every accepted event into the raw archive under its hour, and per hour and device the
        distinct readings (the census the observation sensor reconciles SQL against).
    """
    if not isinstance(window_seconds, int) or window_seconds <= 0 or 3600 % window_seconds:
        raise ValueError(f"window_seconds={window_seconds!r} must be a whole number of seconds dividing 3600")
    window = f"TumblingWindow(second, {window_seconds})"
    return f"""-- Generated by bscore (resources/asa.py) from window_seconds={window_seconds}.
-- Windows are (end - {window_seconds} s, end], stamped with their end: System.Timestamp().
-- Every step runs per Event Hub partition (PARTITION BY PartitionId): events are partitioned
-- by device, so a device's windows and census are whole in one partition.
WITH Accepted AS (
    SELECT
        System.Timestamp() AS ts,
        CAST({_coalesce('device')} AS nvarchar(max)) AS device,
        CAST({_coalesce('sensor')} AS nvarchar(max)) AS sensor,
        TRY_CAST({_coalesce('value')} AS float) AS value,
        EventEnqueuedUtcTime AS enqueued,
        PartitionId
    FROM [{input_name}] TIMESTAMP BY {_coalesce('ts')} PARTITION BY PartitionId
    WHERE {_coalesce('device')} IS NOT NULL
      AND {_coalesce('sensor')} IS NOT NULL
      AND TRY_CAST({_coalesce('value')} AS float) IS NOT NULL
      AND LEN(CAST({_coalesce('device')} AS nvarchar(max))) <= {ID_MAX_LENGTH}
      AND LEN(CAST({_coalesce('sensor')} AS nvarchar(max))) <= {ID_MAX_LENGTH}
),
FirstReadings AS (
    SELECT PartitionId, device, sensor, ts, TopOne() OVER (ORDER BY enqueued ASC) AS first
    FROM Accepted PARTITION BY PartitionId
    GROUP BY PartitionId, device, sensor, ts, {window}
)
SELECT System.Timestamp() AS ts, device, sensor, AVG(first.value) AS value, COUNT(*) AS readings, MIN(first.value) AS low, MAX(first.value) AS high
INTO [{sql_output}]
FROM FirstReadings PARTITION BY PartitionId
GROUP BY PartitionId, device, sensor, {window}

SELECT ts, device, sensor, value, {_hour_of('ts')} AS {HOUR_COLUMN}
INTO [{raw_output}]
FROM Accepted PARTITION BY PartitionId

SELECT {_hour_of('System.Timestamp()')} AS {HOUR_COLUMN}, device, COUNT(*) AS readings
INTO [{census_output}]
FROM FirstReadings PARTITION BY PartitionId
GROUP BY PartitionId, device, TumblingWindow(hour, 1)
"""


def lateness_policy(allowed_lateness_minutes: int) -> dict:
    """The job's event-ordering settings for ``BSCORE_ALLOWED_LATENESS_MINUTES``.

    Out-of-order tolerance holds each window back until events up to the lateness behind the
    newest have arrived; late-arrival tolerance accepts events whose time is up to the lateness
    before their arrival. Anything later is dropped ("Drop"), never moved into another window
    ("Adjust" would re-stamp it with the watermark and average it into the wrong window).
    """
    seconds = int(allowed_lateness_minutes) * 60
    if not 0 <= seconds <= MAX_OUT_OF_ORDER_SECONDS:
        raise ValueError(f"BSCORE_ALLOWED_LATENESS_MINUTES={allowed_lateness_minutes} is outside what Stream "
                         f"Analytics can hold windows back for (0..{MAX_OUT_OF_ORDER_SECONDS // 60} minutes)")
    return {
        "events_out_of_order_max_delay_in_seconds": seconds,
        "events_late_arrival_max_delay_in_seconds": min(seconds, MAX_LATE_ARRIVAL_SECONDS),
        "events_out_of_order_policy": "Drop",
    }


@dataclass(frozen=True)
class AsaJobSpec:
    """Where the job lives, what it reads and writes, and the window settings it computes with."""

    subscription_id: str
    resource_group: str
    job_name: str
    location: str
    streaming_units: int
    window_seconds: int
    allowed_lateness_minutes: int
    eventhub_namespace: str  # the namespace's name, without .servicebus.windows.net
    eventhub_name: str
    consumer_group: str
    sql_server: str  # the server's name, without .database.windows.net
    sql_database: str
    storage_account: str
    container: str
    raw_prefix: str = ""  # the blob store's prefix inside the container, if any

    def __post_init__(self):
        if self.streaming_units < 1:
            raise ValueError(f"ASA_STREAMING_UNITS={self.streaming_units} must be at least 1")
        aggregation_query(self.window_seconds)
        lateness_policy(self.allowed_lateness_minutes)

    def _under_prefix(self, pattern: str) -> str:
        return f"{self.raw_prefix.strip('/')}/{pattern}" if self.raw_prefix.strip("/") else pattern

    @property
    def raw_path_pattern(self) -> str:
        return self._under_prefix(RAW_PATH_PATTERN)

    @property
    def census_path_pattern(self) -> str:
        return self._under_prefix(CENSUS_PATH_PATTERN)

    @classmethod
    def from_env(cls, window_seconds: int, allowed_lateness_minutes: int, env=None,
                 placeholders: bool = False) -> "AsaJobSpec":
        """The job the ``ASA_*``, ``EVENTHUB_*`` and ``BSCORE_*`` variables describe.

        SQL server and database come from an ``mssql`` ``BSCORE_SQL_URL`` and the storage account
        and container from an ``https://`` ``BSCORE_BLOB_URL`` unless ``ASA_SQL_SERVER``,
        ``ASA_SQL_DATABASE``, ``ASA_STORAGE_ACCOUNT`` and ``ASA_BLOB_CONTAINER`` say otherwise.

        Parameters
        ----------
        window_seconds, allowed_lateness_minutes : int
            The local aggregation's settings, which the query and policies reproduce.
        env : mapping, optional
            Variables to read instead of ``os.environ``.
        placeholders : bool
            Put ``<VARIABLE>`` where a value is missing instead of failing (``--dry-run``).
        """
        env = os.environ if env is None else env
        sql = _sql_target(env.get("BSCORE_SQL_URL", ""))
        blob = _blob_target(env.get("BSCORE_BLOB_URL", ""))
        values = {
            "subscription_id": env.get("ASA_SUBSCRIPTION_ID") or env.get("AZUREML_SUBSCRIPTION_ID"),
            "resource_group": env.get("ASA_RESOURCE_GROUP"),
            "location": env.get("ASA_LOCATION"),
            "eventhub_namespace": _eventhub_namespace(env),
            "eventhub_name": env.get("EVENTHUB_NAME") or _entity_path(env.get("EVENTHUB_CONNECTION_STRING", "")),
            "sql_server": env.get("ASA_SQL_SERVER") or sql[0],
            "sql_database": env.get("ASA_SQL_DATABASE") or sql[1],
            "storage_account": env.get("ASA_STORAGE_ACCOUNT") or blob[0],
            "container": env.get("ASA_BLOB_CONTAINER") or blob[1],
        }
        variables = {"subscription_id": "ASA_SUBSCRIPTION_ID", "resource_group": "ASA_RESOURCE_GROUP",
                     "location": "ASA_LOCATION", "eventhub_namespace": "EVENTHUB_FULLY_QUALIFIED_NAMESPACE",
                     "eventhub_name": "EVENTHUB_NAME", "sql_server": "ASA_SQL_SERVER",
                     "sql_database": "ASA_SQL_DATABASE", "storage_account": "ASA_STORAGE_ACCOUNT",
                     "container": "ASA_BLOB_CONTAINER"}
        missing = [variables[k] for k, v in values.items() if not v]
        if missing and not placeholders:
            raise ValueError(f"bscore asa provision needs {', '.join(missing)} (see docs/azure.md, Stream Analytics)")
        values = {k: v or f"<{variables[k]}>" for k, v in values.items()}
        return cls(
            **values,
            job_name=env.get("ASA_JOB_NAME", "bscore-aggregation"),
            streaming_units=int(env.get("ASA_STREAMING_UNITS", "3")),
            window_seconds=window_seconds,
            allowed_lateness_minutes=allowed_lateness_minutes,
            consumer_group=env.get("ASA_CONSUMER_GROUP", "bscore-asa"),
            raw_prefix=env.get("ASA_BLOB_PREFIX", blob[2]),
        )


def _eventhub_namespace(env) -> str | None:
    host = env.get("EVENTHUB_FULLY_QUALIFIED_NAMESPACE")
    if not host:
        match = re.search(r"Endpoint=sb://([^/;]+)", env.get("EVENTHUB_CONNECTION_STRING", ""))
        host = match.group(1) if match else None
    return host.split(".")[0] if host else None


def _entity_path(connection_string: str) -> str | None:
    match = re.search(r"EntityPath=([^;]+)", connection_string)
    return match.group(1) if match else None


def _sql_target(url: str) -> tuple[str | None, str | None]:
    """(server name, database) of an Azure SQL URL; (None, None) for any other database."""
    if not url.startswith("mssql"):
        return None, None
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    return (parsed.host or "").split(".")[0] or None, parsed.database or None


def _blob_target(url: str) -> tuple[str | None, str | None, str]:
    """(account, container, prefix) of an ``https://<account>.blob.core.windows.net/<container>/<prefix>`` URL."""
    if url.startswith("az://"):
        container, _, prefix = url[len("az://"):].partition("/")
        return None, container or None, prefix.strip("/")
    if not url.startswith("https://"):
        return None, None, ""
    parsed = urlparse(url)
    container, _, prefix = parsed.path.lstrip("/").partition("/")
    return parsed.hostname.split(".")[0], container or None, prefix.strip("/")


def partitioned_stream_input(models):
    """``StreamInputProperties`` with the input's ``partitionKey``, which the pinned management SDK
    (1.0.0, API 2020-03-01) does not model and later API versions (2021-10-01-preview) put on an
    input's properties: the field the input's events are partitioned by, serialized by the SDK's
    own serializer like the properties it knows."""

    class PartitionedStreamInputProperties(models.StreamInputProperties):
        _attribute_map = {**models.StreamInputProperties._attribute_map,
                          "partition_key": {"key": "partitionKey", "type": "str"}}

        def __init__(self, *, partition_key: str | None = None, **kwargs):
            super().__init__(**kwargs)
            self.partition_key = partition_key

    return PartitionedStreamInputProperties


def streaming_job(spec: AsaJobSpec):
    """The ``StreamingJob`` model of the management SDK: inputs, query and outputs in one body.

    Parameters
    ----------
    spec : AsaJobSpec

    Returns
    -------
    azure.mgmt.streamanalytics.models.StreamingJob
    """
    from azure.mgmt.streamanalytics import models as m

    reading_input = m.Input(name=INPUT, properties=partitioned_stream_input(m)(
        partition_key=PARTITION_KEY,
        datasource=m.EventHubV2StreamInputDataSource(
            service_bus_namespace=spec.eventhub_namespace, event_hub_name=spec.eventhub_name,
            consumer_group_name=spec.consumer_group, authentication_mode="Msi"),
        serialization=m.JsonSerialization(encoding="UTF8"),
    ))
    # One SQL writer per input partition (0: "based on query partition"), not one for the job.
    sql_output = m.Output(name=SQL_OUTPUT, datasource=m.AzureSqlDatabaseOutputDataSource(
        server=spec.sql_server, database=spec.sql_database, table=SQL_TABLE, authentication_mode="Msi",
        max_writer_count=0))

    def blob_output(name: str, path_pattern: str):
        return m.Output(name=name, datasource=m.BlobOutputDataSource(
            storage_accounts=[m.StorageAccount(account_name=spec.storage_account)], container=spec.container,
            path_pattern=path_pattern, authentication_mode="Msi"), serialization=m.ParquetSerialization())

    return m.StreamingJob(
        location=spec.location,
        tags={"bscore": "sensor_aggregates", "window_seconds": str(spec.window_seconds),
              "allowed_lateness_minutes": str(spec.allowed_lateness_minutes)},
        identity=m.Identity(type="SystemAssigned"),
        sku=m.Sku(name="Standard"),
        job_type="Cloud",
        compatibility_level="1.2",
        data_locale="en-US",
        # A row SQL refuses stops the job rather than being lost; a re-delivered window is not
        # refused (sensor_values' key ignores duplicates on SQL Server, resources/sql.py).
        output_error_policy="Stop",
        **lateness_policy(spec.allowed_lateness_minutes),
        inputs=[reading_input],
        transformation=m.Transformation(name="aggregate", streaming_units=spec.streaming_units,
                                        query=aggregation_query(spec.window_seconds)),
        outputs=[sql_output, blob_output(RAW_OUTPUT, spec.raw_path_pattern),
                 blob_output(CENSUS_OUTPUT, spec.census_path_pattern)],
    )


def job_body(job) -> dict:
    """The request body the SDK sends for ``job`` (PUT .../streamingjobs/<name>)."""
    return job.serialize()


def dry_run_text(spec: AsaJobSpec) -> str:
    """What ``--dry-run`` prints: the query readable, then the whole request body as JSON."""
    body = job_body(streaming_job(spec))
    where = {k: v for k, v in asdict(spec).items() if k in ("subscription_id", "resource_group", "job_name")}
    return (f"# Stream Analytics job {spec.job_name}: query\n{aggregation_query(spec.window_seconds)}\n"
            f"# PUT streamingjobs/{spec.job_name} ({json.dumps(where)}): request body\n"
            f"{json.dumps(body, indent=2, sort_keys=True)}\n")


def management_client(spec: AsaJobSpec, credential=None, **kwargs):
    """A ``StreamAnalyticsManagementClient`` for the spec's subscription (``DefaultAzureCredential``)."""
    from azure.mgmt.streamanalytics import StreamAnalyticsManagementClient

    if credential is None:
        from scoring.azure_storage import azure_credential

        credential = azure_credential()
    return StreamAnalyticsManagementClient(credential, spec.subscription_id, **kwargs)


RUNNING_STATES = {"Running", "Starting", "Restarting", "Scaling", "Stopping"}


def provision(client, spec: AsaJobSpec):
    """Create the job, or replace a stopped one's definition; returns the job the service reports.

    A running job cannot take a new definition: it is refused by name, with how to stop it,
    rather than replaced under a running query.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        existing = client.streaming_jobs.get(spec.resource_group, spec.job_name)
    except ResourceNotFoundError:
        existing = None
    if existing is not None and existing.job_state in RUNNING_STATES:
        raise RuntimeError(f"Stream Analytics job {spec.job_name} is {existing.job_state}: stop it first "
                           f"(az stream-analytics job stop -g {spec.resource_group} -n {spec.job_name}), "
                           "then provision again and start it with output start mode LastOutputEventTime")
    return client.streaming_jobs.begin_create_or_replace(spec.resource_group, spec.job_name,
                                                         streaming_job(spec)).result()
