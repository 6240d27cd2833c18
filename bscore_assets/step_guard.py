"""A step outlives neither its run's process nor its run's verdict.

Under the daemon a run's steps are processes of their own. If the run's process is killed,
Dagster marks the run failed; the step must then stop too (``guard_step``), and in any case must
not publish for a run already over (``ensure_run_active``, checked before each publishing
transaction).
"""

import dagster as dg

from resources.lifeline import die_with_parent_step

ENDED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


class RunEndedError(RuntimeError):
    """The step's run was marked ended (failed or canceled) while the step was still working."""


def guard_step() -> None:
    """Call first in an asset: a step in a process of its own ends when the run's process does."""
    die_with_parent_step()


def ensure_run_active(instance: dg.DagsterInstance, run_id: str) -> None:
    """Raise :class:`RunEndedError` when run ``run_id`` is already failed or canceled."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status in ENDED:
        raise RunEndedError(f"run {run_id} was marked {run.status.value} while its step was still working; "
                            "not publishing for it (a later run scores these partitions)")
