"""Staged events: checked once, landed by moving them into place, never read by the drain before."""

import subprocess
import sys

from bscore_assets.ingestion.staging import Staging
from resources.events import EventSource, LocalEventSource


def test_staged_events_land_in_order_as_one_file_each_and_can_be_withdrawn(tmp_path):
    LocalEventSource(landing=str(tmp_path / "landing")).publish(["before"])  # by another command
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    staging = Staging(source.staging_root(), file_bytes=8)
    for body in (b"a\n", b"bb\n", b"ccc\n", b"dddd\n"):
        staging.add_events(body)
    staging.cut()
    assert source.receive().bodies == ["before"]  # staged events are not the drain's yet
    assert [p.read_bytes() for p in staging.event_files] == [b"a\nbb\nccc\n", b"dddd\n"]
    source.land_files(staging.event_files)
    assert source.receive().bodies == ["before", "a", "bb", "ccc", "dddd"]
    assert not any(p.exists() for p in staging.event_files)
    assert source.withdraw_published() == 2
    assert source.receive().bodies == ["before"]


def test_a_source_that_sends_bodies_gets_the_staged_files_in_batches(tmp_path):
    class Recorder(EventSource):
        sent: list = []

        def publish(self, bodies):
            self.sent.append(list(bodies))
            return len(bodies)

        def receive(self, max_events=100_000):
            return None

        def commit(self, batch):
            pass

        def describe(self):
            return "recorder"

    staged = tmp_path / "1.jsonl"
    staged.write_bytes(b"".join(b"%d\n" % i for i in range(120_001)))
    source = Recorder()
    source.land_files([staged])
    assert [len(batch) for batch in source.sent] == [50_000, 50_000, 20_001] and not staged.exists()


def test_a_killed_commands_staging_is_removed_by_the_next_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f"{dead.stdout.strip()}-1"
    left.mkdir()
    (left / "00000001.jsonl").write_bytes(b"x\n")
    live = Staging(tmp_path)
    other = Staging(tmp_path)
    assert not left.exists() and live.folder.exists() and other.folder.exists()
    other.discard()
    assert not other.folder.exists() and live.folder.exists()
