"""Processes that die with their parent: a run's step processes and a step's pool workers.

When the daemon's run worker is killed (``kill -9``, OOM killer), Dagster marks its run failed,
but a step process the multiprocess executor started, and the process-pool workers that step
started, are not told: they would go on scoring and publishing for a run that is over, then
linger as orphans (parent PID 1). A process that calls :func:`die_with_parent` ends itself, with
SIGKILL, as soon as the process that started it is gone.

Two mechanisms, because each covers a gap of the other: on Linux the kernel's
``PR_SET_PDEATHSIG`` (immediate, but tied to the *thread* that started the process, so used only
where we start the process ourselves: the pool's workers), and everywhere a daemon thread that
watches ``os.getppid()`` (about a second late, but tied to the parent *process*).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
WATCH_SECONDS = 0.5


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(WATCH_SECONDS):
        if os.getppid() != parent:  # re-parented: the process that started us is gone
            _kill_self()


def set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when the thread that started it exits; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0


def die_with_parent(kernel_signal: bool = False) -> None:
    """End this process (SIGKILL) once its parent process is gone.

    Parameters
    ----------
    kernel_signal : bool
        Also set ``PR_SET_PDEATHSIG`` (Linux), for a process whose starting thread lives as long as
        its parent needs it (a pool worker started by the thread that uses the pool).
    """
    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None else os.getppid()
    if kernel_signal:
        set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before we could watch it
        _kill_self()
    threading.Thread(target=_watch_parent, args=(parent,), name="bscore-lifeline", daemon=True).start()


def die_with_parent_step() -> None:
    """In a step process started by Dagster's multiprocess executor, end with the run's process.

    A step executed in the caller's own process (``execute_in_process``, the CLI) is not a
    ``multiprocessing`` child and is left alone: its parent is the user's shell.
    """
    if multiprocessing.parent_process() is not None:
        die_with_parent()
