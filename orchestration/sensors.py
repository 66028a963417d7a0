"""Incremental ingestion: a sensor (and a schedule, see schedules.py) turn new source
content into ingest-batch partitions plus run requests.

Both call :func:`scan_for_batches`, which first persists the plan in Delta and then
reconciles: every planned batch without a partition is (re-)added and requested, so a
tick that dies after planning loses nothing.
"""

from __future__ import annotations

import dagster as dg

from assets.ingest.planning import plan_batches, planned_batches
from orchestration.partitions import ingest_batches
from orchestration.settings import get_settings

PROCESS_JOB = "process_batch"


def scan_for_batches(instance: dg.DagsterInstance) -> tuple[list[str], list[dg.RunRequest], list]:
    settings = get_settings()
    if settings.source:
        plan_batches(settings.source, settings.batch_max_files, settle_seconds=settings.settle_seconds)
    known = set(instance.get_dynamic_partitions(ingest_batches.name))
    pending = [b for b in planned_batches() if b not in known]
    requests = [dg.RunRequest(partition_key=b, run_key=b, tags={"speakerlake/batch": b}) for b in pending]
    adds = [ingest_batches.build_add_request(pending)] if pending else []
    return pending, requests, adds


@dg.sensor(
    job_name=PROCESS_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches SPEAKERLAKE_SOURCE (folder, s3:// prefix or manifest) and starts one run per new ingest batch.",
)
def new_media_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    if not get_settings().source:
        return dg.SkipReason("SPEAKERLAKE_SOURCE is not set")
    pending, requests, adds = scan_for_batches(context.instance)
    if not pending:
        return dg.SkipReason("no new media")
    context.log.info(f"new batches: {pending}")
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=adds)
