"""The Stream Analytics job: its query against the local aggregation's settings, and the
management call against a stand-in Azure Resource Manager that records what the SDK sends.

The stand-in is a small HTTP server on 127.0.0.1 answering the streaming-jobs endpoints as
ARM does (GET 404 for a job that does not exist, PUT 201 with the job); the SDK's own client
is pointed at it with ``base_url``, and the recorded bodies are read back with the SDK's own
``StreamingJob.deserialize``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.streamanalytics.models import (
    AzureSqlDatabaseOutputDataSource,
    BlobOutputDataSource,
    EventHubV2StreamInputDataSource,
    ParquetSerialization,
    StreamingJob,
)
from click.testing import CliRunner

from bscore_assets.settings import PipelineSettings, Settings
from scoring.blob_layout import raw_prefix
from resources import asa
from resources.sql import sensor_values

ENV = {
    "ASA_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "ASA_RESOURCE_GROUP": "bscore-rg",
    "ASA_LOCATION": "westeurope",
    "ASA_STREAMING_UNITS": "6",
    "EVENTHUB_FULLY_QUALIFIED_NAMESPACE": "bscore-ns.servicebus.windows.net",
    "EVENTHUB_NAME": "readings",
    "BSCORE_SQL_URL": "mssql+pyodbc://@bscore-sql.database.windows.net:1433/bscore?driver=ODBC+Driver+18+for+SQL+Server",
    "BSCORE_BLOB_URL": "https://bscoreblobs.blob.core.windows.net/data/fleet-a",
    "BSCORE_ALLOWED_LATENESS_MINUTES": "7",
}


@pytest.fixture
def asa_env(bscore_home, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV


def dry_run_body(output: str) -> dict:
    """The JSON request body a ``--dry-run`` printed after its query."""
    return json.loads(output[output.index("): request body\n") + len("): request body\n"):])


def test_dry_run_job_computes_what_the_local_aggregation_computes(asa_env):
    from bscore_assets.cli import main

    result = CliRunner().invoke(main, ["asa", "provision", "--dry-run"])
    assert result.exit_code == 0, result.output
    job = StreamingJob.deserialize(dry_run_body(result.output))
    query = job.transformation.query
    window = PipelineSettings().window_seconds
    lateness = Settings.from_env().allowed_lateness_minutes
    assert lateness == 7 and query in result.output  # the readable query is the body's

    # Windows: the local length, tumbling; stamped with their end; average, reading count and extremes
    # per device and sensor, in the columns of SQL sensor_values.
    assert re.findall(r"TumblingWindow\((\w+), (\d+)\)", query) == [("second", str(window))] * 2 + [("hour", "1")]
    [into_sql] = re.findall(r"SELECT (.*)\nINTO \[sensor-values\]", query)
    columns = dict(reversed(part.rsplit(" AS ", 1)) if " AS " in part else (part, part)
                   for part in into_sql.split(", "))
    assert sorted(columns) == sorted(c.name for c in sensor_values.columns)
    assert columns["ts"] == "System.Timestamp()"
    assert columns["value"].startswith("AVG(") and columns["readings"] == "COUNT(*)"
    # ...and each window's smallest and largest reading (a mean dilutes a one-reading spike).
    assert (columns["low"], columns["high"]) == ("MIN(first.value)", "MAX(first.value)")
    assert "GROUP BY PartitionId, device, sensor, TumblingWindow" in query
    # Each (device, sensor, time) once, as raw readers keep the first of repeats.
    assert "GROUP BY PartitionId, device, sensor, ts, TumblingWindow" in query and "ORDER BY enqueued ASC" in query
    # Either field naming, and the event's own time.
    for field, aliases in asa.FIELD_ALIASES.items():
        assert f"COALESCE({', '.join(f'[{a}]' for a in aliases)})" in query
    assert "TIMESTAMP BY COALESCE([ts], [TS])" in query

    # Lateness: windows held back and late events accepted for the same minutes; later ones
    # dropped, never re-stamped into another window.
    assert job.events_out_of_order_max_delay_in_seconds == lateness * 60
    assert job.events_late_arrival_max_delay_in_seconds == lateness * 60
    assert job.events_out_of_order_policy == "Drop" and job.output_error_policy == "Stop"
    assert job.transformation.streaming_units == 6 and job.compatibility_level == "1.2"
    # Parallel: the input partitioned by device, every step per partition, one SQL writer per
    # partition (maxWriterCount 0), so the job scales with the hub's partitions.
    body = dry_run_body(result.output)
    assert body["properties"]["inputs"][0]["properties"]["partitionKey"] == "device"
    steps = re.findall(r"\bFROM \[?(\w+)\]?[^\n]*", query)
    assert steps == ["readings", "Accepted", "FirstReadings", "Accepted", "FirstReadings"]
    assert len(re.findall(r"\bFROM [^\n]*PARTITION BY PartitionId\n", query)) == 5
    assert all(group.startswith("GROUP BY PartitionId, ") for group in re.findall(r"GROUP BY [^\n]*", query))

    [source] = job.inputs
    assert isinstance(source.properties.datasource, EventHubV2StreamInputDataSource)
    assert (source.properties.datasource.service_bus_namespace, source.properties.datasource.event_hub_name,
            source.properties.datasource.consumer_group_name) == ("bscore-ns", "readings", "bscore-asa")
    outputs = {o.name: o for o in job.outputs}
    assert sorted(outputs) == ["hour-census", "raw-archive", "sensor-values"]
    sql = outputs["sensor-values"].datasource
    assert isinstance(sql, AzureSqlDatabaseOutputDataSource)
    assert (sql.server, sql.database, sql.table) == ("bscore-sql", "bscore", sensor_values.name)
    assert sql.max_writer_count == 0  # a writer per partition ("based on query partition")
    raw = outputs["raw-archive"].datasource
    assert isinstance(raw, BlobOutputDataSource) and isinstance(outputs["raw-archive"].serialization,
                                                                ParquetSerialization)
    assert (raw.storage_accounts[0].account_name, raw.container) == ("bscoreblobs", "data")
    # The archive's folders are the blob store's raw/<hour>/ under its prefix, the hour being
    # H for readings in (H, H + 1h], as local raw parts are filed.
    hour = pd.Timestamp("2026-03-01T07:00")
    assert raw.path_pattern.replace("{hour}", hour.strftime("%Y-%m-%dT%H")) + "/" == f"fleet-a/{raw_prefix(hour)}"
    assert re.search(r"SELECT ts, device, sensor, value, "
                     r"SUBSTRING\(CAST\(DATEADD\(millisecond, -1, ts\) AS nvarchar\(max\)\), 1, 13\) AS hour\n"
                     r"INTO \[raw-archive\]\nFROM Accepted PARTITION BY PartitionId", query)
    # The census the observation sensor reconciles SQL against: distinct readings per hour and device.
    census = outputs["hour-census"]
    assert census.datasource.path_pattern == "fleet-a/asa-census/{hour}"
    assert isinstance(census.serialization, ParquetSerialization)
    assert re.search(r"AS hour, device, COUNT\(\*\) AS readings\nINTO \[hour-census\]\nFROM FirstReadings "
                     r"PARTITION BY PartitionId\nGROUP BY PartitionId, device, TumblingWindow\(hour, 1\)", query)
    # Every connection is the job's managed identity: nothing secret in the definition.
    assert job.identity.type == "SystemAssigned"
    assert {source.properties.datasource.authentication_mode, sql.authentication_mode,
            raw.authentication_mode, census.datasource.authentication_mode} == {"Msi"}
    assert not re.search(r"(?i)password|accesskey|accountkey|sharedaccesspolicykey", result.output)


def test_dry_run_without_configuration_shows_what_is_missing_and_provision_refuses(bscore_home):
    from bscore_assets.cli import main

    shown = CliRunner().invoke(main, ["asa", "provision", "--dry-run"])
    assert shown.exit_code == 0 and '"location": "<ASA_LOCATION>"' in shown.output
    refused = CliRunner().invoke(main, ["asa", "provision"])
    assert refused.exit_code == 2
    assert "needs ASA_SUBSCRIPTION_ID, ASA_RESOURCE_GROUP, ASA_LOCATION" in refused.output


def test_window_and_lateness_outside_what_stream_analytics_can_hold_are_refused():
    with pytest.raises(ValueError, match="dividing 3600"):
        asa.aggregation_query(7)
    with pytest.raises(ValueError, match="BSCORE_ALLOWED_LATENESS_MINUTES=10"):
        asa.lateness_policy(10)


class StandInArm:
    """Azure Resource Manager's streaming-jobs endpoints, keeping jobs in memory."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None, dict]] = []
        arm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                arm.requests.append(("GET", self.path, None, dict(self.headers)))
                path = self.path.split("?")[0]
                if path in arm.jobs:
                    return self._reply(200, arm.jobs[path])
                self._reply(404, {"error": {"code": "ResourceNotFound", "message": f"{path} not found"}})

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                arm.requests.append(("PUT", self.path, body, dict(self.headers)))
                path = self.path.split("?")[0]
                stored = json.loads(json.dumps(body))
                stored.update(id=path, name=path.rsplit("/", 1)[1], type="Microsoft.StreamAnalytics/streamingjobs")
                stored["properties"].update(provisioningState="Succeeded", jobState="Created")
                created = path not in arm.jobs
                arm.jobs[path] = stored
                self._reply(201 if created else 200, stored)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeCredential:
    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        return AccessToken("stand-in-token", 4_000_000_000)


class BearerOverHttp(SansIOHTTPPolicy):
    """The ARM bearer policy refuses plain http; the stand-in has no TLS, so the token is added here."""

    def __init__(self, credential):
        self.credential = credential

    def on_request(self, request):
        token = self.credential.get_token("https://management.azure.com/.default").token
        request.http_request.headers["Authorization"] = f"Bearer {token}"


@pytest.fixture
def arm():
    service = StandInArm()
    yield service
    service.close()


def spec() -> asa.AsaJobSpec:
    return asa.AsaJobSpec.from_env(PipelineSettings().window_seconds, 5, env=ENV)


def test_provision_sends_the_job_through_the_management_sdk(arm):
    job_spec = spec()
    credential = FakeCredential()
    client = asa.management_client(job_spec, credential=credential, base_url=arm.url,
                                   authentication_policy=BearerOverHttp(credential), polling_interval=0)

    created = asa.provision(client, job_spec)

    puts = [r for r in arm.requests if r[0] == "PUT"]
    assert len(puts) == 1
    _, path, body, headers = puts[0]
    assert path == (f"/subscriptions/{ENV['ASA_SUBSCRIPTION_ID']}/resourcegroups/bscore-rg/providers/"
                    "Microsoft.StreamAnalytics/streamingjobs/bscore-aggregation?api-version=2020-03-01")
    assert headers["Authorization"] == "Bearer stand-in-token"
    assert body == asa.job_body(asa.streaming_job(job_spec))  # what --dry-run prints is what is sent
    sent = StreamingJob.deserialize(copy.deepcopy(body))  # (deserializing consumes the dict)
    assert sent.transformation.query == asa.aggregation_query(PipelineSettings().window_seconds)
    assert [o.name for o in sent.outputs] == ["sensor-values", "raw-archive", "hour-census"]
    assert sent.outputs[0].datasource.table == "sensor_values"
    assert sent.events_out_of_order_max_delay_in_seconds == 300
    assert (created.name, created.provisioning_state) == ("bscore-aggregation", "Succeeded")

    # Provisioning again replaces the stopped job's definition (create or update).
    asa.provision(client, job_spec)
    assert len([r for r in arm.requests if r[0] == "PUT"]) == 2

    # A running job is refused by name, and nothing is sent.
    [stored] = arm.jobs.values()
    stored["properties"]["jobState"] = "Running"
    with pytest.raises(RuntimeError, match="bscore-aggregation is Running: stop it first"):
        asa.provision(client, job_spec)
    assert len([r for r in arm.requests if r[0] == "PUT"]) == 2
