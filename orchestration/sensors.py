"""Incremental ingestion: a sensor (and a schedule, see schedules.py) turn new source
content into ingest-batch partitions plus run requests, and rerun what failed.

Both call :func:`scan_for_batches`, which first persists the plan in Delta and then
reconciles: every planned batch without a partition is (re-)added and requested, so a
tick that dies after planning loses nothing. The sensor also requests, per batch, a run of
exactly the videos a stage failed on (``stage_status`` error) while they have failed fewer
than ``retry_max_attempts`` times in a row, so a transient failure heals by itself and a
persistent one stops costing compute.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from assets.ingest.planning import plan_batches, planned_batches
from orchestration import lake
from orchestration.batch import PER_VIDEO_STAGES, stage_work
from orchestration.execution import execution_config
from orchestration.partitions import ingest_batches
from orchestration.settings import get_settings
from orchestration.thresholds import threshold

PROCESS_JOB = "process_batch"


def retry_run_config(work: dict[str, list[str]]) -> dict:
    """Run config that makes each per-video stage process only its videos (``work``: stage ->
    videos, see batch.stage_work; a stage with none skips every video)."""
    return {"ops": {stage: {"config": {"video_ids": sorted(work.get(stage, []))}} for stage in PER_VIDEO_STAGES}}


def scan_for_batches(instance: dg.DagsterInstance) -> tuple[list[str], list[dg.RunRequest], list]:
    settings = get_settings()
    if settings.source:
        plan_batches(settings.source, settings.batch_max_files, settle_seconds=settings.settle_seconds)
    known = set(instance.get_dynamic_partitions(ingest_batches.name))
    pending = [b for b in planned_batches() if b not in known]
    requests = [dg.RunRequest(partition_key=b, run_key=b, run_config=execution_config(), tags={"speakerlake/batch": b}) for b in pending]
    adds = [ingest_batches.build_add_request(pending)] if pending else []
    return pending, requests, adds


def retry_requests(max_attempts: int | None = None) -> list[dg.RunRequest]:
    """One run request per batch with failed videos still under the attempt limit; each stage
    reruns only where it failed, or where a stage it reads from reruns."""
    limit = int(max_attempts if max_attempts is not None else threshold("retry_max_attempts"))
    status = lake.scan("stage_status")
    failed = status.filter((pl.col("status") == "error") & (pl.col("attempts") < limit)).select("batch_id", "video_id", "attempts").collect()
    if failed.is_empty():
        return []
    # every stage's row of the failed videos (a few per video), read once for all batches
    rows = status.filter(pl.col("video_id").is_in(failed["video_id"].unique().to_list())).collect()
    out = []
    for (batch,), g in failed.group_by(["batch_id"], maintain_order=True):
        ids = sorted(set(g["video_id"].to_list()))
        attempt = int(g["attempts"].max())
        out.append(
            dg.RunRequest(
                partition_key=batch,
                run_key=f"{batch}:retry:{attempt}:{','.join(ids)}",
                run_config={**execution_config(), **retry_run_config(stage_work(ids, rows, retry_failed=True))},
                tags={"speakerlake/batch": batch, "speakerlake/retry": str(attempt)},
            )
        )
    return out


def build_refresh_dataset_sensor(process_job, retier_job) -> dg.RunStatusSensorDefinition:
    """After a successful batch run, one run of ``retier_job`` (the dataset-wide tables).

    Batches that finish while a retier run is still waiting to start are covered by it, so
    they add no run; one that finishes while a retier run is working gets its own."""

    @dg.run_status_sensor(
        name="refresh_dataset",
        run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=[process_job],
        request_job=retier_job,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="After each successful process_batch run, recomputes the dataset-wide tiers, branches and report (job retier). Turn it on with new_media_sensor or periodic_scan.",
    )
    def refresh_dataset(context: dg.RunStatusSensorContext):
        waiting = context.instance.get_run_records(
            dg.RunsFilter(job_name=retier_job.name, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]), limit=1
        )
        if waiting:
            return dg.SkipReason(f"retier run {waiting[0].dagster_run.run_id} has not started yet and will include batch run {context.dagster_run.run_id}")
        # in one process, as `speakerlake run` does: the retier steps run one after another, so
        # step processes would only add their start-up
        return dg.RunRequest(run_key=f"after:{context.dagster_run.run_id}", run_config=execution_config(parallel=False), tags={"speakerlake/after_run": context.dagster_run.run_id})

    return refresh_dataset


@dg.sensor(
    job_name=PROCESS_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches SPEAKERLAKE_SOURCE (folder, s3:// prefix or manifest), starts one run per new ingest batch, and reruns failed videos.",
)
def new_media_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    pending, requests, adds = scan_for_batches(context.instance) if get_settings().source else ([], [], [])
    retries = retry_requests()
    if not requests and not retries:
        return dg.SkipReason("no new media and no failed videos to retry" if get_settings().source else "SPEAKERLAKE_SOURCE is not set; no failed videos to retry")
    if pending:
        context.log.info(f"new batches: {pending}")
    return dg.SensorResult(run_requests=requests + retries, dynamic_partitions_requests=adds)
