"""The ``azureml_orphan_jobs`` sensor: cancel Azure ML jobs that outlived their Dagster run.

A run cancels its own jobs when it fails or is interrupted (``resources/azureml_jobs.py``), but
not when the host running it dies: the run stays STARTED (the ``DefaultRunLauncher`` has no
worker health check) until run monitoring's ``max_runtime_seconds`` marks it failed
(``deploy/azure/dagster.yaml``), and its jobs keep running and billing. Once the daemon is back,
this sensor finds every unfinished job of the scoring experiment whose run is finished or unknown
to the instance, and cancels it. It only observes and cancels; it requests no runs.
"""

import dagster as dg

from resources.compute import ComputeBackend

CHECK_EVERY_SECONDS = 300


@dg.sensor(minimum_interval_seconds=CHECK_EVERY_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Cancels Azure ML scoring jobs whose Dagster run is over or gone (a host that died).")
def azureml_orphan_jobs(context: dg.SensorEvaluationContext, compute: ComputeBackend):
    cancel = getattr(compute, "cancel_orphan_jobs", None)
    if cancel is None:
        return dg.SkipReason(f"{compute.describe()} leaves no jobs behind")

    def run_status(run_id: str) -> str | None:
        run = context.instance.get_run_by_id(run_id)
        return run.status.value if run is not None else None

    orphans = cancel(run_status, context.log)
    if not orphans:
        return dg.SkipReason("no Azure ML job outlived its run")
    return dg.SkipReason(f"canceled {len(orphans)} Azure ML job(s) whose run was over: "
                         + ", ".join(f"{o.name} (run {o.run_id[:8]} {o.run_status})" for o in orphans))
