"""The event source readings arrive through: a landing folder by default, Event Hubs on Azure.

A consumer receives batches of raw event bodies and commits a checkpoint once it has stored
them, so a crash between the two re-delivers the batch (at-least-once, as Event Hubs is)
and nothing is lost; downstream de-duplication makes the repeat harmless.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr


@dataclass(frozen=True)
class EventBatch:
    """Raw bodies received together, and what to commit once they are stored.

    A source that holds its events as newline-delimited JSON (the landing folder) hands them
    over as one ``payload`` of bytes, which ``scoring.event_lines.parse_event_lines`` parses
    in columns; ``bodies`` then splits it on demand for code that wants one string per event.
    """

    body_list: list[str] | None  # one string per event, or None when ``payload`` holds them
    label: str  # names what was read, stable across re-deliveries of the same events
    checkpoint: dict = field(default_factory=dict)
    payload: bytes | None = None  # newline-delimited events

    @property
    def bodies(self) -> list[str]:
        """One string per event (the payload's non-blank lines, split on ``\\n`` only)."""
        if self.body_list is not None:
            return self.body_list
        return payload_bodies(self.payload or b"")


def payload_bodies(payload: bytes) -> list[str]:
    """The events of newline-delimited bytes: split on ``\\n`` only, blank lines skipped.

    ``str.splitlines`` would also split on U+2028, U+2029 and other separators that JSON
    allows inside a string, cutting one event in two.
    """
    text = payload.decode("utf-8", errors="replace")
    return [line for line in text.split("\n") if line.strip()]


class EventSource(dg.ConfigurableResource, ABC):
    """Where devices' readings arrive."""

    @abstractmethod
    def publish(self, bodies: list[str]) -> int:
        """Send event bodies; return how many were sent."""

    def publish_payload(self, payload: bytes, batch_events: int = 50_000) -> int:
        """Send newline-delimited event bodies, ``batch_events`` at a time; return how many were
        sent. A source that stores events as lines (the landing folder) keeps the bytes as they are."""
        bodies = payload_bodies(payload)
        return sum(self.publish(bodies[i : i + batch_events]) for i in range(0, len(bodies), batch_events))

    def land_files(self, paths: list[Path]) -> None:
        """Publish files of newline-delimited events (a few tens of MB each), in order, and remove
        them. The landing folder moves them into place instead of copying them."""
        for path in paths:
            self.publish_payload(Path(path).read_bytes())
            Path(path).unlink()

    def staging_root(self) -> Path | None:
        """A folder on the same file system as what :meth:`land_files` lands into, where the
        files it will land can wait, or None when any local folder will do."""
        return None

    @abstractmethod
    def receive(self, max_events: int = 100_000) -> EventBatch | None:
        """The next batch after the committed checkpoint, or None when nothing is pending."""

    @abstractmethod
    def commit(self, batch: EventBatch) -> None:
        """Record that ``batch`` is stored, so it is not received again."""

    @abstractmethod
    def describe(self) -> str: ...

    def withdraw_published(self) -> int:
        """Take back what this resource published and no consumer has received yet, after a
        command failed half-way; returns how many files (or batches) were withdrawn. A source
        whose events cannot be taken back once sent (Event Hubs) withdraws nothing."""
        return 0


def _write_durably(path: Path, data: bytes) -> None:
    """Write to a temporary file, flush it to disk, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: no half-written file left behind
        raise


def _move_durably(path: Path, target: Path) -> None:
    """Flush a file to disk, then rename it into place (copy it, across file systems)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    try:
        os.replace(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _write_durably(target, path.read_bytes())
        path.unlink()


def _read_piece(path: Path, start: int, limit: int) -> tuple[bytes, int, bool]:
    """About ``limit`` bytes of a landing file from ``start``, cut after the last line end (longer
    when a single line is); with the offset it ends at, and whether that is the file's end.
    The last line gets a newline if the file lacks one."""
    with open(path, "rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        handle.seek(start)
        data = handle.read(limit)
        while start + len(data) < total and b"\n" not in data:  # a line longer than the bound
            data += handle.read(max(limit, 1 << 20))
    if start + len(data) < total or len(data) > limit:
        cut = data.rfind(b"\n", 0, limit)
        cut = cut if cut >= 0 else data.find(b"\n")
        data = data[: cut + 1] if cut >= 0 else data
    end = start + len(data)
    if end >= total and data and not data.endswith(b"\n"):
        data += b"\n"
    return data, end, end >= total


def _progress(checkpoint: dict) -> tuple[int, float]:
    """Orders checkpoints: files up to ``sequence`` stored, then ``partial`` = [file, offset]."""
    if "partial" in checkpoint:
        return checkpoint["partial"][0], checkpoint["partial"][1]
    return checkpoint["sequence"], float("inf")


class LocalEventSource(EventSource):
    """A landing folder of JSON-lines files with increasing sequence numbers.

    Publishing takes a lock, so sequence numbers are assigned in order and a file is renamed
    into place whole; the consumer's checkpoint is the last sequence number it stored.
    """

    landing: str
    _published: list = PrivateAttr(default_factory=list)  # sequences this resource landed

    @property
    def _dir(self) -> Path:
        path = Path(self.landing)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def _locked(self):
        with open(self._dir / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _sequences(self) -> list[int]:
        return sorted(int(p.stem) for p in self._dir.glob("*.jsonl") if p.stem.isdigit())

    def _checkpoint(self) -> int:
        path = self._dir / "_checkpoint.json"
        return json.loads(path.read_text())["sequence"] if path.exists() else 0

    def publish(self, bodies: list[str]) -> int:
        if not bodies:
            return 0
        data = "".join(body.replace("\n", " ") + "\n" for body in bodies).encode()
        with self._locked():
            sequences = self._sequences()
            sequence = max(sequences[-1] if sequences else 0, self._checkpoint()) + 1
            _write_durably(self._dir / f"{sequence:012d}.jsonl", data)
            self._published.append(sequence)
        return len(bodies)

    def publish_payload(self, payload: bytes, batch_events: int = 0) -> int:
        """Land newline-delimited events as they are (one file, whatever their number); return how
        many lines they hold."""
        if not payload.strip():
            return 0
        if not payload.endswith(b"\n"):
            payload += b"\n"
        with self._locked():
            sequences = self._sequences()
            sequence = max(sequences[-1] if sequences else 0, self._checkpoint()) + 1
            _write_durably(self._dir / f"{sequence:012d}.jsonl", payload)
            self._published.append(sequence)
        return payload.count(b"\n")

    def staging_root(self) -> Path:
        return self._dir / ".staging"  # a folder: the drain reads only the landing's *.jsonl files

    def land_files(self, paths: list[Path]) -> None:
        """Move the files into place as the next landing files, in order."""
        with self._locked():
            sequences = self._sequences()
            sequence = max(sequences[-1] if sequences else 0, self._checkpoint())
            for path in paths:
                sequence += 1
                _move_durably(Path(path), self._dir / f"{sequence:012d}.jsonl")
                self._published.append(sequence)

    def _position(self) -> dict:
        path = self._dir / "_checkpoint.json"
        return json.loads(path.read_text()) if path.exists() else {"sequence": 0}

    def receive(self, max_events: int = 1_000_000, max_bytes: int = 32 << 20) -> EventBatch | None:
        """Landing files after the checkpoint, from where it stopped, until ``max_events`` events
        or ``max_bytes`` bytes are reached (at least one event), as one newline-delimited
        ``payload``. A file larger than what is left of the bound is read in pieces cut at line
        ends, so a batch needs memory for ``max_bytes`` whatever the files' sizes."""
        position = self._position()
        done, (resume_file, resume_at) = position["sequence"], position.get("partial", (None, 0))
        pending = [s for s in self._sequences() if s > done]
        if not pending:
            return None
        parts, events, size, complete = [], 0, 0, done
        for sequence in pending:
            start = resume_at if sequence == resume_file else 0
            data, end, whole = _read_piece(self._dir / f"{sequence:012d}.jsonl", start, max(max_bytes - size, 1))
            parts.append(data)
            events += data.count(b"\n")
            size += len(data)
            last = sequence
            if not whole:
                break
            complete = sequence
            if events >= max_events or size >= max_bytes:
                break
        first_at = resume_at if pending[0] == resume_file else 0
        label = f"local-{pending[0]:012d}-{last:012d}"
        if first_at or complete != last:  # a piece of a file: where it starts and ends
            label += f"@{first_at}-{end}"
        checkpoint = {"sequence": complete} if complete == last else {"sequence": complete, "partial": [last, end]}
        return EventBatch(None, label, checkpoint, payload=b"".join(parts))

    def commit(self, batch: EventBatch) -> None:
        with self._locked():
            if _progress(batch.checkpoint) <= _progress(self._position()):
                return
            _write_durably(self._dir / "_checkpoint.json", json.dumps(batch.checkpoint).encode())

    def withdraw_published(self) -> int:
        """Delete the landing files this resource published that the drain has not begun."""
        with self._locked():
            position = self._position()
            started = position.get("partial", [position["sequence"]])[0]
            withdrawn = [s for s in self._published if s > started]
            for sequence in withdrawn:
                (self._dir / f"{sequence:012d}.jsonl").unlink(missing_ok=True)
            self._published = [s for s in self._published if s <= started]
        return len(withdrawn)

    def drained_files(self) -> list[Path]:
        """Landing files the drain has read whole (at or before its checkpoint), oldest first."""
        with self._locked():
            done = self._position()["sequence"]
            return [self._dir / f"{sequence:012d}.jsonl" for sequence in self._sequences() if sequence <= done]

    def describe(self) -> str:
        return str(Path(self.landing).resolve())
