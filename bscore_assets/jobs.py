"""Asset jobs: one per partitioning, since a job's assets share one partitions definition."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest_job", selection=["raw_readings", "sensor_aggregates"],
    description="Drain the event source into raw readings and aggregate the hours' windows into SQL.",
)
training_job = dg.define_asset_job(
    "training_job", selection=["device_models"], description="(Re)train device model bundles.",
)
scoring_job = dg.define_asset_job(
    "scoring_job", selection=["sensor_predictions"], description="Score hours x sensors with the current models.",
)
verdicts_job = dg.define_asset_job(
    "verdicts_job", selection=["device_verdicts"], description="Vote each device window's verdict from its sensors.",
)
