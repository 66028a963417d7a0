"""Assembles speakerlake's Dagster definitions: assets, checks, resources, jobs, sensors,
schedules and the executor, built by :func:`build_defs`.

Executor: Dagster's ``multi_or_in_process_executor`` — multiprocess by default, chosen per
run in run config (``execution: {config: {in_process: {}}}`` or ``{multiprocess:
{max_concurrent: N, start_method: ...}}``; launchers pass :func:`orchestration.execution.execution_config`,
a forkserver with the step libraries preloaded); ``executor="dask"`` builds definitions for an existing Dask cluster
(run config names its address). Resources come from the environment
(:func:`orchestration.resources.default_resources`) and can be overridden in the launchpad.
"""

from __future__ import annotations

import os

import dagster as dg

from assets.audio import assets as audio_assets
from assets.binding import assets as binding_assets
from assets.branches import assets as branches_assets
from assets.clips import assets as clips_assets
from assets.ingest import assets as ingest_assets
from assets.operations import assets as operations_assets
from assets.quality import assets as quality_assets
from assets.release import assets as release_assets
from assets.report import assets as report_assets
from assets.tiers import assets as tiers_assets
from assets.vidchat import assets as vidchat_assets
from assets.vision import assets as vision_assets
from orchestration.resources import default_resources
from orchestration.schedules import build_lake_maintenance_schedule, build_periodic_scan
from orchestration.sensors import PROCESS_JOB, build_refresh_dataset_sensor, new_media_sensor

STAGE_MODULES = [ingest_assets, audio_assets, vision_assets, binding_assets, clips_assets, quality_assets, tiers_assets, branches_assets, report_assets, release_assets, vidchat_assets, operations_assets]

process_batch = dg.define_asset_job(
    PROCESS_JOB,
    # the release is exported, and predictions are scored (job score_predictions), on request with run config, not per
    # batch; the dataset-wide tables are job retier's, run once after new batches (see assets.tiers.assets)
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.assets("release", "vidchat_scores", "vidchat_summary", "lake_maintenance", *tiers_assets.DATASET_ASSETS),
    description="Everything for one ingest batch: ingest, audio, vision, binding, speaker ids, clips, clip quality. The dataset-wide tiers, branches and report follow in job retier.",
)


def _executor(kind: str) -> dg.ExecutorDefinition:
    if kind == "dask":
        from orchestration.dask_executor import partition_safe_dask_executor

        return partition_safe_dask_executor
    if kind not in ("multiprocess", "in_process"):
        raise ValueError(f"executor {kind!r}: expected multiprocess, in_process or dask")
    # in_process vs multiprocess is then a run-config choice, so the default here only matters
    # for runs that do not say.
    return dg.multi_or_in_process_executor


def build_defs(executor: str = "multiprocess", resources: dict | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=dg.load_assets_from_modules(STAGE_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(STAGE_MODULES),
        jobs=[process_batch, tiers_assets.retier, release_assets.export_release_job, vidchat_assets.vidchat_eval_job, operations_assets.maintain_lake_job],
        sensors=[new_media_sensor, build_refresh_dataset_sensor(process_batch, tiers_assets.retier)],
        schedules=[build_periodic_scan(), build_lake_maintenance_schedule(operations_assets.maintain_lake_job)],
        # given resources replace the defaults of the same key (e.g. a test's lake); the rest keep theirs
        resources={**default_resources(), **(resources or {})},
        executor=_executor(executor),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev` / the workspace loads: built when the code location starts."""
    return build_defs(os.environ.get("SPEAKERLAKE_EXECUTOR", "multiprocess"))


def process_batch_job() -> dg.JobDefinition:
    """The resolved batch job, importable by name so worker processes can rebuild it."""
    return build_defs(os.environ.get("SPEAKERLAKE_EXECUTOR", "multiprocess")).resolve_job_def(PROCESS_JOB)
