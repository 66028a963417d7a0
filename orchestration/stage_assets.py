"""Factory for per-video stage assets: one multi-asset per stage, partitioned by ingest
batch, that runs a pure ``analyze(video_id, media_path) -> {table: frame}`` over the
batch's videos and writes every table idempotently (see orchestration.batch)."""

from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg
import polars as pl

from orchestration import lake
from orchestration.batch import batch_videos, run_per_video
from orchestration.partitions import ingest_batches


def per_video_stage(
    name: str,
    tables: Mapping[str, str],
    analyze: Callable[[str, Path], Mapping[str, pl.DataFrame]],
    *,
    deps: tuple[str, ...] = ("videos",),
    kinds: frozenset[str] = frozenset({"delta"}),
) -> dg.AssetsDefinition:
    """``tables`` maps each output table to its description."""

    @dg.multi_asset(
        name=name,
        specs=[dg.AssetSpec(t, deps=list(deps), group_name=name, kinds=set(kinds), description=d) for t, d in tables.items()],
        partitions_def=ingest_batches,
    )
    def _stage(context: dg.AssetExecutionContext):
        batch_id = context.partition_key

        def one(video: dict):
            with lake.local_copy(video["raw_uri"]) as path:
                return analyze(video["video_id"], path)

        meta = run_per_video(context.log, batch_id, name, batch_videos(batch_id), one, tuple(tables))
        for t in tables:
            yield dg.MaterializeResult(
                asset_key=t,
                metadata={
                    "rows": meta[f"rows_{t}"],
                    "videos": meta["videos"],
                    "failed_videos": meta["failed_videos"],
                    "stage_seconds": meta["seconds"],
                },
            )

    return _stage
