"""Disk full: commands end with a ``bscore:`` line naming the path and what to do, and a failed
ingest leaves nothing landed (no landing file, no stray ``.tmp``). The disk is a small tmpfs
(mounting one needs root; the test is skipped, saying so, where it cannot be mounted)."""

import json
import subprocess

import pytest

from tests.reliability.test_input_files import RECENT, bscore, env, landed  # noqa: F401  (the env fixture)


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
