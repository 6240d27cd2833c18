"""The landing-folder event source: ordered batches, checkpoints, re-delivery until committed."""

from resources.events import LocalEventSource


def test_each_event_is_received_once_after_commit(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    source.publish(["a", "b"])
    source.publish(["c"])
    batch = source.receive()
    assert batch.bodies == ["a", "b", "c"]
    source.commit(batch)
    assert source.receive() is None
    source.publish(["d"])
    assert source.receive().bodies == ["d"]


def test_uncommitted_batch_is_delivered_again_with_the_same_label(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    source.publish(["a"])
    first = source.receive()
    again = LocalEventSource(landing=str(tmp_path / "landing")).receive()  # e.g. after a crash
    assert again.bodies == first.bodies and again.label == first.label


def test_batches_are_bounded_by_max_events(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    for i in range(5):
        source.publish([str(i)] * 10)
    batch = source.receive(max_events=20)
    assert len(batch.bodies) == 20
    source.commit(batch)
    assert len(source.receive(max_events=100).bodies) == 30


def test_old_checkpoint_never_moves_back(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    source.publish(["a"])
    old = source.receive()
    source.publish(["b"])
    newer = source.receive()
    source.commit(newer)
    source.commit(old)
    assert source.receive() is None


def test_batches_are_bounded_by_bytes_and_carry_the_payload(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    for i in range(4):
        source.publish([f"event-{i}-{j}" for j in range(100)])
    batch = source.receive(max_bytes=1500)  # a file is ~1,200 bytes: two files reach the bound
    assert batch.payload.count(b"\n") == 200 and batch.bodies[0] == "event-0-0" and batch.bodies[-1] == "event-1-99"
    source.commit(batch)
    assert len(source.receive(max_bytes=1).bodies) == 100  # at least one whole file


def test_events_split_on_newlines_only(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    bodies = ['{"note": "a\u2028b\u2029c\x85d\x1ce\x0bf\x0cg\rh"}', "second"]
    source.publish(bodies)
    assert source.receive().bodies == bodies
    source.publish_payload("x\u2028y\n\n  \nz".encode())  # a file landed as bytes, last line unterminated
    batch = source.receive()
    assert batch.bodies == bodies + ["x\u2028y", "z"]
