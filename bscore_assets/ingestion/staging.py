"""Events ``bscore ingest`` has checked and not yet landed, kept in files of their own.

A file is read once: each block's checked events are written here as they are found, and the
command lands them only once every file has passed (:meth:`EventSource.land_files`; for the
landing folder, a rename). Refused events that go to the dead-letter store (``--max-bad``) wait
here too, as Parquet. The folder is private to the command and removed when it ends; one left by
a killed command is removed by the next (its process is gone), and the drain never reads it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd

STAGED_FILE_BYTES = 32 << 20  # as much as the drain reads in one batch


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Staging:
    """A command's staged events, in ``root/<pid>-<time>/``: newline-delimited event files of
    about ``file_bytes`` each and Parquet files of refused events, both in the order added."""

    def __init__(self, root: Path, file_bytes: int = STAGED_FILE_BYTES):
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for left in root.iterdir():  # by commands that were killed
            pid = left.name.split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(left, ignore_errors=True)
        self.folder = root / f"{os.getpid()}-{time.time_ns()}"
        self.folder.mkdir()
        self.file_bytes, self._count, self._handle, self._size = file_bytes, 0, None, 0
        self.event_files: list[Path] = []

    def _next(self, suffix: str) -> Path:
        self._count += 1
        return self.folder / f"{self._count:08d}{suffix}"

    def add_events(self, payload: bytes) -> None:
        """Append newline-delimited events."""
        if not payload:
            return
        if self._handle is None or self._size >= self.file_bytes:
            self.cut()
            self.event_files.append(self._next(".jsonl"))
            self._handle, self._size = open(self.event_files[-1], "wb"), 0
        self._handle.write(payload)
        self._size += len(payload)

    def cut(self) -> None:
        """End the current event file: what is added next goes to a new one."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def add_refused(self, frame: pd.DataFrame) -> Path:
        """Keep a frame of refused events for the dead-letter store; returns its file."""
        path = self._next(".parquet")
        frame.to_parquet(path, index=False)
        return path

    def discard(self) -> None:
        try:
            self.cut()
        except OSError:  # a full disk, already reported: what was written goes anyway
            self._handle = None
        shutil.rmtree(self.folder, ignore_errors=True)
