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
    batch = source.receive(max_bytes=1500)  # a file is ~1,200 bytes: the second is cut at a line end
    assert len(batch.payload) <= 1500 and batch.payload.endswith(b"\n")
    assert batch.bodies[0] == "event-0-0" and batch.bodies[100].startswith("event-1-")
    source.commit(batch)
    assert source.receive(max_bytes=1).bodies == [f"event-1-{len(batch.bodies) - 100}"]  # at least one event


def test_a_file_larger_than_a_batch_is_received_in_pieces_cut_at_line_ends(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    bodies = [f"event-{i}" + "x" * (i % 7) for i in range(1000)]
    source.publish(bodies[:900])
    source.publish(bodies[900:])
    received, labels = [], set()
    while (batch := source.receive(max_bytes=1000)) is not None:
        assert len(batch.payload) <= 1000 + 20  # a batch, not the file
        again = LocalEventSource(landing=source.landing).receive(max_bytes=1000)  # re-delivered until committed
        assert (again.payload, again.label) == (batch.payload, batch.label)
        received += batch.bodies
        labels.add(batch.label)
        source.commit(batch)
    assert received == bodies and len(labels) > 10
    source.publish(["late"])
    assert source.receive().bodies == ["late"]


def test_events_split_on_newlines_only(tmp_path):
    source = LocalEventSource(landing=str(tmp_path / "landing"))
    bodies = ['{"note": "a\u2028b\u2029c\x85d\x1ce\x0bf\x0cg\rh"}', "second"]
    source.publish(bodies)
    assert source.receive().bodies == bodies
    source.publish_payload("x\u2028y\n\n  \nz".encode())  # a file landed as bytes, last line unterminated
    batch = source.receive()
    assert batch.bodies == bodies + ["x\u2028y", "z"]
