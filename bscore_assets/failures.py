"""Say a full disk in one line: where writing failed and what to do, not a traceback.

A full disk shows up in many forms: ``OSError`` ENOSPC from a file write, SQLite's "database or
disk is full", or, on some file systems, SQLite's bare "disk I/O error" (then the free space of
``BSCORE_HOME``'s disk decides), wrapped by SQLAlchemy, Dagster or a run's failure message.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

LOW_SPACE = 1 << 20  # bytes: below this, a disk I/O error on the disk is taken as a full disk


def _chain(exc: BaseException) -> list[BaseException]:
    seen = []
    while exc is not None and exc not in seen and len(seen) < 50:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def disk_full_message(exc: BaseException, home: Path) -> str | None:
    """The line to end a command with when ``exc`` comes from a full disk, else None."""
    chain = _chain(exc)
    enospc = [e for e in chain if isinstance(e, OSError) and e.errno == errno.ENOSPC]
    text = " ".join(str(e).lower() for e in chain)
    free = _free_bytes(Path(home).absolute())
    if not (enospc or "no space left on device" in text or "database or disk is full" in text
            or ("disk i/o error" in text and free is not None and free < LOW_SPACE)):
        return None
    where = next((e.filename for e in enospc if e.filename), None) or Path(home).absolute()
    return (f"the disk is full: cannot write {where} ({free if free is not None else '?'} bytes free on the disk of "
            f"BSCORE_HOME={Path(home).absolute()}). Free space there (or set BSCORE_HOME to a disk with room) and "
            "run the command again: what earlier commands stored is intact, and runs store their results whole")
