"""EventHubSource: its receive loop, checkpoints and batching, with only the AMQP link stood in.

The Event Hubs endpoint cannot run here, so the consumer and producer clients are replaced by
thin stand-ins that hold partitions of the SDK's own ``EventData``, built from AMQP messages
with sequence numbers, offsets and enqueued times as the SDK's receiver builds them.
Checkpoints are real: ``BlobCheckpointStore`` on Azurite.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import dagster as dg
import pandas as pd
import pytest
from azure.eventhub import EventData, EventDataBatch, PartitionContext
from azure.eventhub._pyamqp.message import Message
from click.testing import CliRunner

from bscore_assets.ingestion.drain import drain_events
from bscore_assets.storage import read_raw_hour
from resources.blob import LocalBlobStore
from resources.eventhub import EventHubSource

NAMESPACE = "bscore-test.servicebus.windows.net"
HUBS: dict[str, "StandInHub"] = {}


class StandInHub:
    """An Event Hub's partitions, numbering events as the service does."""

    def __init__(self, partitions: int = 2):
        self.partitions: dict[str, list[EventData]] = {str(p): [] for p in range(partitions)}
        self._next = 0
        self._lock = threading.Lock()

    def append(self, body: bytes, partition: str | None = None) -> None:
        with self._lock:
            partition = partition or str(self._next % len(self.partitions))  # round robin, as without a key
            self._next += 1
            events = self.partitions[partition]
            annotations = {b"x-opt-sequence-number": len(events), b"x-opt-offset": str(len(events) * 512).encode(),
                           b"x-opt-enqueued-time": 1767225600000 + len(events)}
            events.append(EventData._from_message(Message(data=[body], message_annotations=annotations)))


class StandInConsumer:
    """``EventHubConsumerClient.receive_batch`` of one partition of a StandInHub: blocks until ``close``."""

    def __init__(self, hub: StandInHub, source: EventHubSource):
        self.hub, self.source, self.closed = hub, source, threading.Event()

    def get_partition_ids(self):
        return list(self.hub.partitions)

    def receive_batch(self, on_event_batch, *, partition_id, starting_position, max_batch_size, max_wait_time,
                      starting_position_inclusive=False, prefetch=None, **_):
        assert starting_position_inclusive is False  # a checkpoint names the last event stored
        assert (max_batch_size, prefetch) == (self.source.max_batch_size, self.source.prefetch)  # as configured
        events = self.hub.partitions[partition_id]
        context = PartitionContext(NAMESPACE, self.source.eventhub_name, self.source.consumer_group, partition_id)
        after, quiet_since = int(starting_position), time.monotonic()
        while not self.closed.is_set():
            pending = [e for e in list(events) if int(e.offset) > after][:max_batch_size]
            if pending:
                on_event_batch(context, pending)
                after, quiet_since = int(pending[-1].offset), time.monotonic()
            elif time.monotonic() - quiet_since >= max_wait_time:  # the SDK's empty batch after max_wait_time
                on_event_batch(context, [])
                quiet_since = time.monotonic()
            self.closed.wait(0.01)

    def close(self):
        self.closed.set()


class StandInProducer:
    """``EventHubProducerClient`` over a StandInHub, with the SDK's own size-limited batches."""

    def __init__(self, hub: StandInHub, max_size_in_bytes: int = 4096):
        self.hub, self.max_size_in_bytes, self.sent_batches = hub, max_size_in_bytes, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def create_batch(self, partition_key=None):
        return EventDataBatch(max_size_in_bytes=self.max_size_in_bytes, partition_key=partition_key)

    def send_batch(self, batch: EventDataBatch):
        self.sent_batches += 1
        key = batch._partition_key
        # The service hashes a key to a partition: the same key, the same partition.
        partition = (str(int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(self.hub.partitions))
                     if key is not None else None)
        for event in batch._internal_events:
            self.hub.append(b"".join(event.body), partition)


class StandInEventHubSource(EventHubSource):
    """The real source, with its two AMQP clients replaced."""

    def _consumer_client(self):
        return StandInConsumer(HUBS[self.eventhub_name], self)

    def _producer_client(self):
        return StandInProducer(HUBS[self.eventhub_name])


@pytest.fixture
def hub_name(azurite, monkeypatch, request) -> str:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    name = f"hub-{azurite.new_container_name()}"
    HUBS[name] = StandInHub(partitions=3)
    yield name
    del HUBS[name]


@pytest.fixture
def source(hub_name, azurite) -> StandInEventHubSource:
    return StandInEventHubSource(eventhub_name=hub_name, fully_qualified_namespace=NAMESPACE,
                                 checkpoint_container=azurite.new_container_name(),
                                 idle_seconds=0.2, max_wait_seconds=5)


def reading(i: int) -> str:
    ts = pd.Timestamp("2026-01-01T00:00:00") + pd.Timedelta(seconds=i + 1)  # inside hour 00, whose windows end after 00:00
    return json.dumps({"ts": ts.isoformat(), "device": f"d{i % 2}", "sensor": "s1", "value": float(i)})


def test_publish_batches_by_size_and_keeps_each_device_in_one_partition(source, hub_name):
    bodies = [reading(i) for i in range(200)]
    assert source.publish(bodies) == 200
    hub = HUBS[hub_name]
    assert sorted(e.body_as_str() for events in hub.partitions.values() for e in events) == sorted(bodies)
    # Stream Analytics aggregates each partition on its own: a device's readings share one.
    partitions_of = {}
    for partition, events in hub.partitions.items():
        for event in events:
            partitions_of.setdefault(json.loads(event.body_as_str())["device"], set()).add(partition)
    assert sorted(partitions_of) == ["d0", "d1"] and all(len(p) == 1 for p in partitions_of.values())
    # Either field naming is keyed by its device; a body that names none goes to any partition.
    other = [json.dumps({"TS": "2026-01-01T00:00:01", "Device": "d0", "Tag": "s1", "Value": 1.0}), "not json"]
    assert source.publish(other) == 2
    [d0] = partitions_of["d0"]
    assert other[0] in [e.body_as_str() for e in hub.partitions[d0]]


def test_receive_commit_receive_until_drained_with_checkpoints_in_blob_storage(source, hub_name):
    source.publish([reading(i) for i in range(90)])
    first = source.receive(max_events=50)
    assert len(first.bodies) == 50
    # Uncommitted, the partitions stay claimed: another drainer gets none of them...
    assert source.receive(max_events=50) is None
    # ... until the claims expire (a crashed drainer's), then the same events come again, same label.
    expired = source.model_copy(update={"ownership_expiry_seconds": 0.0})
    again = expired.receive(max_events=50)
    assert (again.label, again.bodies, again.checkpoint["partitions"]) == (
        first.label, first.bodies, first.checkpoint["partitions"])
    expired.commit(again)
    stored = source.checkpoints()
    assert {p: c["sequence_number"] for p, c in stored.items()} == {
        p: c["sequence_number"] for p, c in first.checkpoint["partitions"].items()}
    assert all(c["offset"] == str(c["sequence_number"] * 512) for c in stored.values())

    second = source.receive(max_events=50)  # the commit released the claims
    assert len(second.bodies) == 40 and second.label != first.label
    assert sorted(first.bodies + second.bodies) == sorted(reading(i) for i in range(90))
    source.commit(second)
    source.commit(first)  # a late commit of an older batch does not move checkpoints back
    last = {p: len(events) - 1 for p, events in HUBS[hub_name].partitions.items() if events}
    assert {p: c["sequence_number"] for p, c in source.checkpoints().items()} == last

    started = time.monotonic()
    assert source.receive() is None
    assert time.monotonic() - started < 2  # every partition idle for idle_seconds ends the wait


def test_a_busy_hub_still_returns_within_max_wait(source, hub_name):
    busy = source.model_copy(update={"idle_seconds": 60.0, "max_wait_seconds": 1.0})
    busy.publish([reading(i) for i in range(10)])
    started = time.monotonic()
    batch = busy.receive()
    assert len(batch.bodies) == 10
    assert time.monotonic() - started < 3


def test_drain_stores_each_event_once_and_dead_letters_bad_ones(source, hub_name, tmp_path):
    blob = LocalBlobStore(root=str(tmp_path / "blob"))
    source.publish([reading(i) for i in range(120)] + ["not json"])
    HUBS[hub_name].append(b"\xff\xfe", partition="1")
    summary = drain_events(source, blob)
    assert (summary.accepted, summary.rejected) == (120, 2)
    raw = read_raw_hour(blob, pd.Timestamp("2026-01-01T00"))
    assert sorted(raw["value"]) == [float(i) for i in range(120)]
    assert drain_events(source, blob).batches == 0


def test_from_env_and_describe_keep_secrets_out(monkeypatch):
    secret = "c2VjcmV0LWtleS1ub3QtZm9yLWxvZ3M="
    env = {"EVENTHUB_CONNECTION_STRING": f"Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=listen;"
                                         f"SharedAccessKey={secret};EntityPath=readings",
           "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k2;", "EVENTHUB_CHECKPOINT_CONTAINER": "cp"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    source = EventHubSource.from_env(env)
    assert (source.eventhub_name, source.consumer_group, source.checkpoint_container) == ("readings", "$Default", "cp")
    assert (source.max_batch_size, source.prefetch, source.max_events, source.ownership_expiry_seconds) == (
        1000, 1000, 100_000, 60.0)
    tuned = EventHubSource.from_env({**env, "EVENTHUB_MAX_BATCH_SIZE": "250", "EVENTHUB_PREFETCH": "4000",
                                     "EVENTHUB_MAX_EVENTS": "500000", "EVENTHUB_OWNERSHIP_EXPIRY_SECONDS": "30"})
    assert (tuned.max_batch_size, tuned.prefetch, tuned.max_events, tuned.ownership_expiry_seconds) == (
        250, 4000, 500_000, 30.0)
    assert source.namespace == "ns1.servicebus.windows.net"
    shown = source.describe() + repr(source) + json.dumps(source.model_dump())
    assert secret not in shown and "k2" not in shown
    with pytest.raises(ValueError, match="EVENTHUB_CONNECTION_STRING"):
        EventHubSource.from_env({})


def test_simulate_to_eventhub_publishes_through_the_configured_source(bscore_home, azurite, monkeypatch, hub_name):
    from bscore_assets.cli import main

    monkeypatch.setenv("BSCORE_EVENTS", "eventhub")
    monkeypatch.setenv("EVENTHUB_CONNECTION_STRING", f"Endpoint=sb://{NAMESPACE}/;SharedAccessKeyName=send;"
                                                     f"SharedAccessKey=k;EntityPath={hub_name}")
    monkeypatch.setenv("EVENTHUB_CHECKPOINT_CONTAINER", azurite.new_container_name())
    monkeypatch.setattr(EventHubSource, "_producer_client", lambda self: StandInProducer(HUBS[self.eventhub_name]))
    result = CliRunner().invoke(main, ["simulate", "--devices", "2", "--sensors", "2", "--hours", "0.01",
                                       "--start", "2026-01-01T00", "--to", "eventhub"])
    assert result.exit_code == 0, result.output
    sent = [e.body_as_str() for events in HUBS[hub_name].partitions.values() for e in events]
    assert len(sent) == 2 * 2 * 36 and f"{len(sent)} readings sent to Event Hub {hub_name}" in result.output
    assert len({json.loads(body)["device"] for body in sent}) == 2


def test_simulate_to_eventhub_without_eventhub_configured_fails_clearly(bscore_home):
    from bscore_assets.cli import main

    result = CliRunner().invoke(main, ["simulate", "--devices", "1", "--sensors", "1", "--hours", "0.01",
                                       "--to", "eventhub"])
    assert result.exit_code == 2
    assert "--to eventhub needs BSCORE_EVENTS=eventhub" in result.output
    assert not (bscore_home / "landing").exists()  # nothing went to the local landing instead


def test_soak_32_partitions_two_concurrent_drainers_store_every_event_once(azurite, monkeypatch, tmp_path):
    from scoring.blob_layout import part_rows

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    name, container = f"hub-{azurite.new_container_name()}", azurite.new_container_name()
    HUBS[name] = hub = StandInHub(partitions=32)
    try:
        per_partition = 250
        for i in range(32 * per_partition):
            hub.append(reading(i).encode())
        blob = LocalBlobStore(root=str(tmp_path / "blob"))
        drainers = [StandInEventHubSource(eventhub_name=name, fully_qualified_namespace=NAMESPACE,
                                          checkpoint_container=container, idle_seconds=0.2, max_wait_seconds=5,
                                          max_events=1000, max_batch_size=100, prefetch=200) for _ in range(2)]
        accepted = [0, 0]
        errors: list[BaseException] = []
        deadline = time.monotonic() + 90

        def drained() -> bool:
            return {p: c["sequence_number"] for p, c in drainers[0].checkpoints().items()} == {
                str(p): per_partition - 1 for p in range(32)}

        def run(i: int):
            try:
                while not drained() and time.monotonic() < deadline:
                    accepted[i] += drain_events(drainers[i], blob).accepted
            except BaseException as exc:
                errors.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        assert not errors, errors
        assert drained() and elapsed < 90
        # Every event stored once across both drainers: no batch was read by both.
        assert sum(accepted) == 32 * per_partition and min(accepted) > 0, accepted
        hours = [pd.Timestamp("2026-01-01T00") + pd.Timedelta(hours=h) for h in range(3)]
        parts = [key for hour in hours for key in blob.list(f"raw/{hour:%Y-%m-%dT%H}/") if key.endswith(".parquet")]
        assert sum(part_rows(key) for key in parts) == 32 * per_partition
        raw = pd.concat([read_raw_hour(blob, hour) for hour in hours], ignore_index=True)
        assert sorted(raw["value"]) == [float(i) for i in range(32 * per_partition)]
        # Every claim was given back: the next drainer need not wait for expiry.
        with drainers[0]._checkpoint_store() as store:
            owners = {o["owner_id"] for o in store.list_ownership(NAMESPACE, name, "$Default")}
        assert owners and not any(owners)  # released: an empty owner
        print(f"soak: {32 * per_partition} events, 32 partitions, 2 drainers {accepted}, {elapsed:.1f} s")
    finally:
        del HUBS[name]


class RefusedLinkConsumer(StandInConsumer):
    """A receive whose AMQP link fails as the SDK reports it: ``on_error`` with the SDK's error,
    then (the SDK retrying the link itself) nothing until the receive is closed."""

    def __init__(self, hub, source, error: Exception):
        super().__init__(hub, source)
        self.error = error

    def receive_batch(self, on_event_batch, *, partition_id, on_error=None, **_):
        context = PartitionContext(NAMESPACE, self.source.eventhub_name, self.source.consumer_group, partition_id)
        on_error(context, self.error)
        self.closed.wait()


FAILING_RECEIVES: dict[str, list[Exception]] = {}


class FlakyEventHubSource(StandInEventHubSource):
    """The stand-in source whose next receives fail with the errors queued for its hub."""

    def _consumer_client(self):
        queued = FAILING_RECEIVES.get(self.eventhub_name)
        if queued:
            return RefusedLinkConsumer(HUBS[self.eventhub_name], self, queued.pop(0))
        return super()._consumer_client()


def materialize_raw_hour(source, tmp_path):
    from bscore_assets.ingestion.assets import raw_readings_asset
    from bscore_assets.settings import PipelineSettings, Settings

    settings = Settings.from_env({"BSCORE_HOME": str(tmp_path / "home"), "BSCORE_START": "2026-01-01T00:00"})
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([raw_readings_asset(settings)], partition_key="2026-01-01-00:00", instance=instance,
                            raise_on_error=False,
                            resources={"events": source, "blob": LocalBlobStore(root=str(tmp_path / "blob")),
                                       "pipeline": PipelineSettings()})
    retries = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    return result, retries


def test_event_hubs_connect_error_is_an_outage_retried_with_back_off(hub_name, azurite, tmp_path):
    from azure.eventhub.exceptions import ConnectError

    source = FlakyEventHubSource(eventhub_name=hub_name, fully_qualified_namespace=NAMESPACE,
                                 checkpoint_container=azurite.new_container_name(), idle_seconds=0.2,
                                 max_wait_seconds=1)
    source.publish([reading(i) for i in range(30)])
    FAILING_RECEIVES[hub_name] = [ConnectError("Failed to open the AMQP link")]

    result, retries = materialize_raw_hour(source, tmp_path)

    assert result.success
    [retry] = retries  # one outage, one retry, then the drain stored everything
    assert "ConnectError: Failed to open the AMQP link" in retry.dagster_event.event_specific_data.error.to_string()
    raw = read_raw_hour(LocalBlobStore(root=str(tmp_path / "blob")), pd.Timestamp("2026-01-01T00"))
    assert sorted(raw["value"]) == [float(i) for i in range(30)]


def test_event_hubs_refused_sign_in_fails_the_run_at_once(hub_name, azurite, tmp_path):
    from azure.eventhub.exceptions import AuthenticationError

    source = FlakyEventHubSource(eventhub_name=hub_name, fully_qualified_namespace=NAMESPACE,
                                 checkpoint_container=azurite.new_container_name(), idle_seconds=0.2,
                                 max_wait_seconds=1)
    source.publish([reading(i) for i in range(3)])
    FAILING_RECEIVES[hub_name] = [AuthenticationError("Unauthorized access: missing Listen claim")] * 4

    result, retries = materialize_raw_hour(source, tmp_path)

    assert not result.success and retries == []
    assert len(FAILING_RECEIVES.pop(hub_name)) == 3  # one receive, no retry
