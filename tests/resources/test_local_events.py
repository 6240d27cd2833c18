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
