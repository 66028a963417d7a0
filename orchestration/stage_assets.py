"""Factory for per-video stage assets: one multi-asset per stage, partitioned by ingest
batch. A stage supplies ``setup(models, lake_uri, videos) -> analyze`` (load models and
whatever the batch shares, once) and ``analyze(video_row, media_path) -> {table: frame}``
(pure, per video). The factory wires resources and run config, runs setup *before* the
per-video loop (a setup error fails the step and leaves the videos pending), records
per-video status, writes every table idempotently (orchestration.batch), evaluates the
catalogue's key checks and the stage's soundness checks, and reports catalogue metadata.
"""


import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from orchestration import lake as lake_io
from orchestration.batch import StageRun, batch_videos, run_per_video
from orchestration.checks import key_check_results, key_check_specs, share_check, stage_check_spec
from orchestration.metadata import asset_spec, materialization_metadata
from orchestration.partitions import ingest_batches
from orchestration.resources import LakeResource, ModelsResource
from orchestration.tables import TABLES

Analyze = Callable[[dict, Path], Mapping[str, pl.DataFrame]]
Setup = Callable[[ModelsResource, str, pl.DataFrame], Analyze]
StageChecks = Callable[[StageRun, str, list[str]], list[dg.AssetCheckResult]]


class StageConfig(dg.Config):
    """Run config of a per-video stage."""

    video_ids: list[str] | None = Field(
        default=None,
        description=(
            "Process only these videos of the batch (e.g. the failed ones, `speakerlake run --retry-failed`); "
            "not set: every video; empty: none (a resumed run whose other stages have the work)."
        ),
    )


def failed_share_check(asset: str, stage: str) -> tuple[dg.AssetCheckSpec, StageChecks]:
    """The soundness check every per-video stage has: share of its videos that failed."""
    name = f"{stage}_failed_share"
    spec = stage_check_spec(asset, name, f"share of the batch's videos the {stage} stage failed on (stage_error) is at most check_max_failed_share")

    def evaluate(run: StageRun, lake_uri: str, ids: list[str]) -> list[dg.AssetCheckResult]:
        return [share_check(asset, name, numerator=len(run.failed), denominator=run.videos, limit_name="check_max_failed_share", at_most=True, offenders=run.failed)]

    return spec, evaluate


def per_video_stage(
    name: str,
    tables: Sequence[str],
    setup: Setup,
    *,
    deps: Sequence[str] = ("videos",),
    kinds: Mapping[str, set[str]] | None = None,
    checks: Sequence[tuple[dg.AssetCheckSpec, StageChecks]] = (),
    summary: Callable[[StageRun], Mapping[str, Mapping]] | None = None,
) -> dg.AssetsDefinition:
    """``kinds`` maps a table to the tools that make it (the UI's kind tags; every table is
    delta); ``checks`` are the stage's soundness checks; ``summary(run)`` adds metadata per
    table (e.g. the batch's ASR coverage on ``transcripts``)."""
    kinds = kinds or {}
    checks = [failed_share_check(tables[0], name), *checks]

    @dg.multi_asset(
        name=name,
        specs=[asset_spec(t, deps=list(deps), group_name=name, kinds={"delta", *kinds.get(t, ())}) for t in tables],
        check_specs=[*key_check_specs(tables), *(spec for spec, _ in checks)],
        partitions_def=ingest_batches,
    )
    def _stage(context: dg.AssetExecutionContext, config: StageConfig, lake: LakeResource, models: ModelsResource):
        batch_id = context.partition_key
        uri = lake.uri
        videos = batch_videos(batch_id, uri, config.video_ids)
        setup_start = time.perf_counter()
        analyze = setup(models, uri, videos)  # setup errors propagate: the step fails, nothing is recorded
        # model loading and the batch's upstream reads: near zero when this worker process
        # already loaded the models for an earlier batch (the stages cache them per process)
        setup_seconds = round(time.perf_counter() - setup_start, 3)

        def one(video: dict):
            with lake_io.local_copy(video["raw_uri"]) as path:
                return analyze(video, path)

        run = run_per_video(context.log, batch_id, name, videos, one, tuple(tables), fingerprint=models.fingerprint(), lake_uri=uri)
        ids = videos["video_id"].to_list()
        stage_meta = {"videos": run.videos, "failed_videos": len(run.failed), "setup_seconds": setup_seconds, "stage_seconds": run.seconds, **{f"reason_{k}": v for k, v in run.reasons.items()}}
        # a video taken down while this step ran has just been written back: remove it again
        from assets.operations.execute import reapply_takedowns  # here: assets.operations imports the stages

        if again := reapply_takedowns(lake, video_ids=ids):
            context.log.warning(f"{name}: {', '.join(again)} recorded while this step ran; the rows it wrote back were removed again")
            stage_meta["takedowns_reapplied"] = ", ".join(again)
        extra = summary(run) if summary else {}
        for t in tables:
            yield dg.MaterializeResult(asset_key=t, metadata={**materialization_metadata(t, run.frames[t], lake.count(t)), **stage_meta, **extra.get(t, {})})
        for t in tables:
            yield from key_check_results(t, lake.scan(t).filter(pl.col("video_id").is_in(ids)).select(TABLES[t].key).collect())
        for _, evaluate in checks:
            yield from evaluate(run, uri, ids)

    return _stage
