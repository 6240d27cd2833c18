"""Disk full: commands end with a ``bscore:`` line naming the path and what to do, and a failed
ingest leaves nothing landed (no landing file, no stray ``.tmp``). The disk is a small tmpfs
(mounting one needs root; the test is skipped, saying so, where it cannot be mounted)."""

import json
import subprocess

import pytest

from tests.reliability.test_input_files import RECENT, bscore, env, landed  # noqa: F401  (the env fixture)

pytestmark = pytest.mark.slow  # CLI subprocesses on tmpfs mounts


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_ingest_on_a_full_disk_says_so_and_lands_nothing(env, small_disk, tmp_path):  # noqa: F811
    home = small_disk / "home"
    lines = (json.dumps({"ts": RECENT, "device": str(i % 50), "sensor": str(i % 7), "value": i * 0.5})
             for i in range(200_000))  # ~14 MB of events: more than the disk holds
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = bscore(["ingest", path], {**env, "BSCORE_HOME": str(home)}, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "bscore: " in result.stderr, result.stderr
    assert "No space left on device" in result.stderr and str(home / "landing") in result.stderr
    assert "free space there" in result.stderr.lower() and "nothing was landed" in result.stderr
    assert landed(home) == []
    assert [p.name for p in (home / "landing").iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def disk(tmp_path):
    """A 256 MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def fill(disk):
    """Take the disk's free space with one file."""
    try:
        with open(disk / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
    except OSError:
        pass


def test_score_on_a_full_disk_ends_in_a_bscore_line_not_a_traceback(env, disk, tmp_path):  # noqa: F811
    import pandas as pd

    from scoring.readings import readings_to_event_bodies
    from scoring.simulate import simulate_readings

    env = {**env, "BSCORE_HOME": str(disk / "home"), "BSCORE_START": "2026-02-28T00:00"}
    path = tmp_path / "readings.jsonl"
    readings = simulate_readings(1, 2, pd.Timestamp("2026-03-01T00:00"), 2, anomaly_rate=0.0, seed=1)
    path.write_text("\n".join(readings_to_event_bodies(readings)) + "\n")
    bscore(["ingest", path], env)
    bscore(["train", "--from", "2026-03-01T00", "--to", "2026-03-01T00"], env)
    fill(disk)
    result = bscore(["score", "--from", "2026-03-01T01", "--to", "2026-03-01T01"], env, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("bscore: ")]
    assert "disk" in line and "full" in line and str(disk / "home") in line and "free space" in line.lower(), line
