"""Assembles speakerlake's Dagster definitions: assets, jobs, sensors, schedules, executor.

Executor (SPEAKERLAKE_EXECUTOR): ``multiprocess`` (default, one box), ``in_process``
(tests, the CLI), or ``dask`` (an existing Dask cluster; run config names its address).
"""

from __future__ import annotations

import os

import dagster as dg

from assets.audio import assets as audio_assets
from assets.binding import assets as binding_assets
from assets.ingest import assets as ingest_assets
from assets.vision import assets as vision_assets
from orchestration.partitions import ingest_batches
from orchestration.schedules import periodic_scan
from orchestration.sensors import PROCESS_JOB, new_media_sensor

STAGE_MODULES = [ingest_assets, audio_assets, vision_assets, binding_assets]

all_assets = dg.load_assets_from_modules(STAGE_MODULES)
all_checks = dg.load_asset_checks_from_modules(STAGE_MODULES)
# What each batch must have finished (rows of batch_status); binding also records the
# dataset-wide speaker-id step, which runs after its per-video part.
STAGES = {"ingest", "audio", "vision", "binding", "binding_ids"}

process_batch = dg.define_asset_job(
    PROCESS_JOB,
    selection=dg.AssetSelection.all(),
    partitions_def=ingest_batches,
    description="Everything for one ingest batch: ingest, audio, vision, binding, clips.",
)


def _executor():
    kind = os.environ.get("SPEAKERLAKE_EXECUTOR", "multiprocess")
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "dask":
        from orchestration.dask_executor import partition_safe_dask_executor

        return partition_safe_dask_executor
    return dg.multiprocess_executor


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[process_batch],
    sensors=[new_media_sensor],
    schedules=[periodic_scan],
    executor=_executor(),
)


def process_batch_job() -> dg.JobDefinition:
    """The resolved batch job, importable by name so worker processes can rebuild it."""
    return defs.resolve_job_def(PROCESS_JOB)
