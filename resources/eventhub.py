"""The event source on Azure Event Hubs, the cloud twin of ``LocalEventSource``.

``receive`` first claims partitions in ``BlobCheckpointStore`` (the SDK's partition ownership:
a blob per partition, written with the etag it was read with, so two claimers cannot both
win), taking its fair share of the partitions that no live drainer holds: ``ceil(partitions /
live owners)``, where an owner is live while its claim is younger than
``ownership_expiry_seconds``. It then reads the claimed partitions concurrently, one receiver
thread each, from their checkpoints, for a bounded time, so a run's drain ends. ``commit``
writes each partition's checkpoint only after the batch is stored, then releases the claims,
so several Dagster hosts draining one hub read disjoint partitions and every event is stored
once; a drainer that crashes between the two leaves its claims to expire, and the next
drainer re-reads from the checkpoint (at-least-once, as Event Hubs is; readers of raw storage
drop repeats). Claims are per receive/commit cycle rather than held for hours as the SDK's
long-running ``EventProcessor`` does, because a drain is a short-lived step of a run.

Secrets are read from the environment variables whose *names* the resource holds, or come
from ``DefaultAzureCredential``; they never enter resource config, logs or errors.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import socket
import threading
import time
import uuid

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient, parse_connection_string
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

from scoring.azure_storage import CONNECTION_STRING_ENV, container_client
from resources.events import EventBatch, EventSource

def event_device(body: str) -> str | None:
    """The device a reading's JSON body names (either field naming), or None."""
    try:
        reading = json.loads(body)
    except ValueError:
        return None
    if not isinstance(reading, dict):
        return None
    device = reading.get("device", reading.get("Device"))
    return None if device is None else str(device)


def _credential():
    from scoring.azure_storage import azure_credential

    return azure_credential()


def _text(event: EventData) -> str:
    """The event's body as text; an undecodable one becomes text the parser dead-letters."""
    try:
        return event.body_as_str()
    except TypeError:
        return "<event body is not UTF-8>"


class _Collector:
    """Gathers each partition's events until enough arrived or every partition is idle."""

    def __init__(self, partitions, max_events: int):
        self.partitions, self.max_events = set(partitions), max_events
        self.events: dict[str, list[EventData]] = {}
        self.idle: set[str] = set()
        self.errors: list[tuple[str, Exception]] = []  # where, and the SDK's error (outage or not)
        self.total = 0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def on_event_batch(self, partition_context, events: list[EventData]) -> None:
        with self._lock:
            if self.done.is_set():
                return  # after the cut, events stay for the next receive
            partition = partition_context.partition_id
            if events:
                taken = events[: self.max_events - self.total]
                self.events.setdefault(partition, []).extend(taken)
                self.total += len(taken)
                self.idle.discard(partition)
            else:  # the SDK's signal that nothing arrived for max_wait_time: caught up
                self.idle.add(partition)
            if self.total >= self.max_events or self.idle >= self.partitions:
                self.done.set()

    def on_error(self, partition_context, error: Exception) -> None:
        with self._lock:
            where = f"partition {partition_context.partition_id}" if partition_context else "the Event Hub"
            self.errors.append((f"{type(error).__name__} on {where}", error))


def _stop(client, workers: list[threading.Thread], timeout: float = 30.0) -> None:
    """Close the client until every receiver has returned."""
    deadline = time.monotonic() + timeout
    while True:
        client.close()  # ends every receive_batch started so far; one that starts late needs another
        for worker in workers:
            worker.join(timeout=0.2)
        if not any(worker.is_alive() for worker in workers) or time.monotonic() > deadline:
            return


class EventHubSource(EventSource):
    """Readings from an Event Hub, checkpoints in a Blob Storage container."""

    eventhub_name: str
    consumer_group: str = "$Default"
    checkpoint_container: str = "eventhub-checkpoints"
    fully_qualified_namespace: str | None = None  # with DefaultAzureCredential, when no connection string
    connection_string_env: str = "EVENTHUB_CONNECTION_STRING"  # the variable's name, never its value
    storage_account_url: str | None = None  # checkpoints with DefaultAzureCredential
    storage_connection_string_env: str = CONNECTION_STRING_ENV
    max_wait_seconds: float = 10.0
    idle_seconds: float = 1.0
    max_batch_size: int = 1000  # events per receive callback (the SDK's max_batch_size)
    prefetch: int = 1000  # events each partition's link buffers ahead of the callbacks
    max_events: int = 100_000  # events per receive, across partitions: bounds a batch's memory
    ownership_expiry_seconds: float = 60.0  # a claim older than this is free to take

    @classmethod
    def from_env(cls, env=None) -> "EventHubSource":
        """The source the ``EVENTHUB_*`` and ``AZURE_STORAGE_*`` variables describe.

        Parameters
        ----------
        env : mapping, optional
            Variables to read instead of ``os.environ``.

        Returns
        -------
        EventHubSource
        """
        env = os.environ if env is None else env
        connection_string = env.get("EVENTHUB_CONNECTION_STRING")
        namespace = env.get("EVENTHUB_FULLY_QUALIFIED_NAMESPACE")
        if not connection_string and not namespace:
            raise ValueError("BSCORE_EVENTS=eventhub needs EVENTHUB_CONNECTION_STRING, or "
                             "EVENTHUB_FULLY_QUALIFIED_NAMESPACE for DefaultAzureCredential")
        name = env.get("EVENTHUB_NAME") or (parse_connection_string(connection_string).eventhub_name
                                            if connection_string else None)
        if not name:
            raise ValueError("BSCORE_EVENTS=eventhub needs EVENTHUB_NAME")
        account_url = env.get("AZURE_STORAGE_ACCOUNT_URL")
        if not account_url and not env.get(CONNECTION_STRING_ENV):
            raise ValueError(f"Event Hubs checkpoints need {CONNECTION_STRING_ENV} or AZURE_STORAGE_ACCOUNT_URL")
        return cls(
            eventhub_name=name,
            consumer_group=env.get("EVENTHUB_CONSUMER_GROUP", "$Default"),
            checkpoint_container=env.get("EVENTHUB_CHECKPOINT_CONTAINER", "eventhub-checkpoints"),
            fully_qualified_namespace=namespace,
            storage_account_url=account_url,
            max_wait_seconds=float(env.get("EVENTHUB_MAX_WAIT_SECONDS", 10.0)),
            max_batch_size=int(env.get("EVENTHUB_MAX_BATCH_SIZE", 1000)),
            prefetch=int(env.get("EVENTHUB_PREFETCH", 1000)),
            max_events=int(env.get("EVENTHUB_MAX_EVENTS", 100_000)),
            ownership_expiry_seconds=float(env.get("EVENTHUB_OWNERSHIP_EXPIRY_SECONDS", 60.0)),
        )

    @property
    def _connection_string(self) -> str | None:
        return os.environ.get(self.connection_string_env) or None

    @property
    def namespace(self) -> str:
        """The Event Hubs namespace's host name, the checkpoints' first key."""
        if self.fully_qualified_namespace:
            return self.fully_qualified_namespace
        if not self._connection_string:
            raise ValueError(f"set {self.connection_string_env} or fully_qualified_namespace")
        return parse_connection_string(self._connection_string).fully_qualified_namespace

    def _consumer_client(self) -> EventHubConsumerClient:
        if self._connection_string:
            return EventHubConsumerClient.from_connection_string(
                self._connection_string, consumer_group=self.consumer_group, eventhub_name=self.eventhub_name)
        return EventHubConsumerClient(self.namespace, self.eventhub_name, self.consumer_group, _credential())

    def _producer_client(self) -> EventHubProducerClient:
        if self._connection_string:
            return EventHubProducerClient.from_connection_string(self._connection_string,
                                                                 eventhub_name=self.eventhub_name)
        return EventHubProducerClient(self.namespace, self.eventhub_name, _credential())

    def _checkpoint_store(self) -> BlobCheckpointStore:
        container_client(self.checkpoint_container, self.storage_account_url, self.storage_connection_string_env)
        if self.storage_account_url:
            return BlobCheckpointStore(self.storage_account_url, self.checkpoint_container, credential=_credential())
        return BlobCheckpointStore.from_connection_string(os.environ[self.storage_connection_string_env],
                                                          self.checkpoint_container)

    def checkpoints(self) -> dict[str, dict]:
        """The committed checkpoint of each partition that has one."""
        with self._checkpoint_store() as store:
            found = store.list_checkpoints(self.namespace, self.eventhub_name, self.consumer_group)
        return {checkpoint["partition_id"]: checkpoint for checkpoint in found}

    def publish(self, bodies: list[str]) -> int:
        """Send ``bodies``, each keyed by its device (the service puts a key's events in one
        partition, as IoT Hub does with a device's, which Stream Analytics' partitioned query
        needs); a body without a device goes to any partition."""
        sent = 0
        batches: dict[str | None, object] = {}
        with self._producer_client() as producer:
            for body in bodies:
                key = event_device(body)
                batch = batches.get(key) or batches.setdefault(key, producer.create_batch(partition_key=key))
                try:
                    batch.add(EventData(body))
                except ValueError:  # the batch is full: send it and start the next one
                    producer.send_batch(batch)
                    sent += len(batch)
                    batches[key] = batch = producer.create_batch(partition_key=key)
                    batch.add(EventData(body))
            for batch in batches.values():
                if len(batch):
                    producer.send_batch(batch)
                    sent += len(batch)
        return sent

    def _ownership(self, partition: str, owner: str, etag: str | None) -> dict:
        claim = {"fully_qualified_namespace": self.namespace, "eventhub_name": self.eventhub_name,
                 "consumer_group": self.consumer_group, "partition_id": partition, "owner_id": owner}
        return {**claim, "etag": etag} if etag else claim

    def claim_partitions(self, store: BlobCheckpointStore, partitions: list[str], owner: str) -> dict[str, dict]:
        """Claim this drainer's fair share of the partitions no live owner holds.

        Returns the claims won (partition -> ownership with its new etag). Losing a race for a
        partition (another drainer wrote its blob first) just leaves it out.
        """
        current = self._ownerships(store)
        missing = [p for p in partitions if p not in current]
        if missing:
            # Unowned records first, so that every claim below is conditional on an etag: a claim
            # without one is a create, which Azurite (unlike the service) lets two drainers win.
            store.claim_ownership([self._ownership(p, "", None) for p in missing])
            current = self._ownerships(store)
        now = time.time()
        live = {p: o for p, o in current.items()
                if o.get("owner_id") and now - o["last_modified_time"] < self.ownership_expiry_seconds}
        owners = {o["owner_id"] for o in live.values()} | {owner}
        share = math.ceil(len(partitions) / len(owners))
        free = [p for p in partitions if p not in live and p in current]
        random.shuffle(free)  # drainers starting together seldom race for the same partitions
        wanted = {p: current[p]["etag"] for p in free[:share]}
        won = store.claim_ownership([self._ownership(p, owner, etag) for p, etag in wanted.items()]) if wanted else []
        # The SDK keeps a claim whose write failed for an unexpected reason; only a new etag is a win.
        return {o["partition_id"]: o for o in won
                if o["owner_id"] == owner and o.get("etag") != wanted[o["partition_id"]]}

    def _ownerships(self, store: BlobCheckpointStore) -> dict[str, dict]:
        found = store.list_ownership(self.namespace, self.eventhub_name, self.consumer_group)
        return {o["partition_id"]: o for o in found}

    def release_partitions(self, store: BlobCheckpointStore, claims: dict[str, dict]) -> None:
        """Give claimed partitions back (an empty owner), so other drainers need not wait for expiry.

        A claim someone took over meanwhile keeps its new owner: the etag no longer matches.
        """
        if claims:
            store.claim_ownership([self._ownership(p, "", c.get("etag")) for p, c in claims.items()])

    def receive(self, max_events: int = 100_000) -> EventBatch | None:
        """Events after each claimed partition's checkpoint that arrive within ``max_wait_seconds``.

        Returns early once ``max_events`` (at most ``self.max_events``) arrived or every claimed
        partition was idle for ``idle_seconds``; returns None, with the claims released, when
        nothing arrived or every partition is held by other live drainers.
        """
        max_events = min(max_events, self.max_events)
        owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        client = self._consumer_client()
        with self._checkpoint_store() as store:
            claims = self.claim_partitions(store, client.get_partition_ids(), owner)
            if not claims:
                client.close()
                return None
            try:
                committed = {c["partition_id"]: c for c in store.list_checkpoints(
                    self.namespace, self.eventhub_name, self.consumer_group)}
                events = self._receive_partitions(client, sorted(claims), committed, max_events)
            except BaseException:
                self.release_partitions(store, claims)
                raise
            if not events:
                self.release_partitions(store, claims)
                return None
        return self._batch(events, claims)

    def _receive_partitions(self, client, partitions: list[str], committed: dict, max_events: int):
        """Each partition on a thread of its own, from its checkpoint, until enough or all idle."""
        collector = _Collector(partitions, max_events)
        failure: list[BaseException] = []

        def consume(partition: str):
            position = committed.get(partition, {}).get("offset", "-1")
            try:
                client.receive_batch(
                    collector.on_event_batch, on_error=collector.on_error, partition_id=partition,
                    starting_position=position, starting_position_inclusive=False,
                    max_batch_size=self.max_batch_size, max_wait_time=self.idle_seconds, prefetch=self.prefetch)
            except BaseException as exc:  # surfaced below, in the caller's thread
                failure.append(exc)
                collector.done.set()

        # The SDK's all-partitions receive waits on idle partitions one after another, which
        # would not fit in a bounded drain; a receiver per partition waits on them together.
        workers = [threading.Thread(target=consume, args=(p,), name=f"eventhub-{p}", daemon=True) for p in partitions]
        for worker in workers:
            worker.start()
        collector.done.wait(self.max_wait_seconds)
        _stop(client, workers)
        if not collector.total:
            if failure:
                raise RuntimeError(f"receiving from Event Hub {self.eventhub_name} failed: "
                                   f"{type(failure[0]).__name__}") from failure[0]
            if collector.errors:
                where, error = collector.errors[0]
                # Raised from the SDK's error, so an outage (a dropped link) is retried with back-off.
                raise RuntimeError(f"receiving from Event Hub {self.eventhub_name} failed: {where}") from error
        return collector.events

    def _batch(self, events: dict[str, list[EventData]], claims: dict[str, dict]) -> EventBatch:
        partitions = sorted(events, key=lambda p: (len(p), p))
        # The label is a digest of what was read, so a re-delivery of the same events names the
        # same raw parts; the enqueued time tells a recreated hub's restarted sequence numbers apart.
        spans = [(self.namespace, self.eventhub_name)] + [
            (p, events[p][0].sequence_number, events[p][-1].sequence_number, str(events[p][0].enqueued_time))
            for p in partitions
        ]
        digest = hashlib.sha256(repr(spans).encode()).hexdigest()[:16]
        positions = {p: {"offset": events[p][-1].offset, "sequence_number": events[p][-1].sequence_number}
                     for p in partitions}
        bodies = [_text(event) for p in partitions for event in events[p]]
        return EventBatch(bodies, f"eh-p{'.'.join(partitions)}-{digest}",
                          {"partitions": positions, "claims": claims})

    def commit(self, batch: EventBatch) -> None:
        with self._checkpoint_store() as store:
            committed = {c["partition_id"]: c["sequence_number"] for c in store.list_checkpoints(
                self.namespace, self.eventhub_name, self.consumer_group)}
            for partition, position in batch.checkpoint["partitions"].items():
                if position["sequence_number"] <= committed.get(partition, -1):
                    continue  # a late commit of an older batch must not move the checkpoint back
                store.update_checkpoint({
                    "fully_qualified_namespace": self.namespace, "eventhub_name": self.eventhub_name,
                    "consumer_group": self.consumer_group, "partition_id": partition, **position,
                })
            self.release_partitions(store, batch.checkpoint.get("claims", {}))

    def describe(self) -> str:
        return (f"Event Hub {self.eventhub_name} in {self.namespace} (consumer group {self.consumer_group}, "
                f"checkpoints in container {self.checkpoint_container})")
