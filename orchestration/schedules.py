"""Periodic scan (SPEAKERLAKE_SCAN_CRON, default hourly): the same planning as the sensor,
for deployments that prefer a fixed cadence to a polling sensor."""

from __future__ import annotations

import dagster as dg

from orchestration.partitions import ingest_batches
from orchestration.sensors import PROCESS_JOB, scan_for_batches
from orchestration.settings import get_settings


def build_periodic_scan(cron: str | None = None) -> dg.ScheduleDefinition:
    """The schedule, with its cron read when the definitions are built (not at import)."""

    @dg.schedule(
        name="periodic_scan",
        job_name=PROCESS_JOB,
        cron_schedule=cron or get_settings().scan_cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Scans SPEAKERLAKE_SOURCE on a cron and starts one run per new ingest batch.",
    )
    def periodic_scan(context: dg.ScheduleEvaluationContext):
        if not get_settings().source:
            return dg.SkipReason("SPEAKERLAKE_SOURCE is not set")
        pending, requests, _ = scan_for_batches(context.instance)
        if not pending:
            return dg.SkipReason("no new media")
        # Schedules cannot return partition requests (sensors can): add the partitions directly.
        context.instance.add_dynamic_partitions(ingest_batches.name, pending)
        return requests

    return periodic_scan


def build_lake_maintenance_schedule(job: dg.UnresolvedAssetJobDefinition, cron: str = "0 3 * * 0") -> dg.ScheduleDefinition:
    """Weekly lake maintenance (Sunday 03:00), off until turned on in the UI: compaction rewrites
    files and a vacuum ends time travel past the retention, both choices for the operator."""
    return dg.ScheduleDefinition(
        name="weekly_lake_maintenance",
        job=job,
        cron_schedule=cron,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Compacts, checkpoints and vacuums every table (job maintain_lake).",
    )
