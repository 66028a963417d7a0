"""Dagster wiring of the release export: one non-partitioned asset, ``release``, that writes the
kept clips (sql/release.sql) to a local folder or an s3:// target (assets/release/export.py),
and job ``export_release`` that runs it alone. The release is not part of the per-batch job:
exporting is a decision (where to, with media or not) made in the launchpad's run config.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from assets.release.export import ExportReport, export_release
from assets.release.target import ReleaseTarget
from orchestration import lake as lake_io
from orchestration.lake import SQL_DIR, run_sql_file
from orchestration.resources import LakeResource
from orchestration.tables import TABLES

GROUP = "release"
RELEASE_JOB = "export_release"
RELEASE_SQL = SQL_DIR / "release.sql"
TURN_COLUMNS = ("video_id", "speaker_local", "start", "end")


class ReleaseConfig(dg.Config):
    target: str = Field(default="", description="folder or s3://bucket/prefix to export to; empty: <lake>/release")
    media: bool = Field(default=False, description="also cut clip media: mp4 crops, cleaned audio and WebDataset shards")
    shard_samples: int = Field(default=500, description="clips per WebDataset shard (media only)")


def release_clips(lake: LakeResource) -> pl.DataFrame:
    con = lake.duckdb_connection()
    run_sql_file(con, RELEASE_SQL)
    return pl.from_arrow(con.execute("SELECT * FROM release_clips ORDER BY video_id, clip_id").to_arrow_table())


def export_lake_release(lake: LakeResource, target: str, *, media: bool, shard_samples: int) -> ExportReport:
    """Export the lake's kept clips to ``target`` (only changed files are written, files of clips that
    left the release are deleted); also what a takedown runs to purge its clips from a release."""
    clips = release_clips(lake)
    turns_by_video: dict[str, pl.DataFrame] = {}
    if media:
        # one read of the released videos' turns, not one scan per video (on S3 each scan is a listing)
        turns = lake.scan("speaker_turns").select(TURN_COLUMNS).filter(pl.col("video_id").is_in(clips["video_id"].unique().to_list())).collect()
        turns_by_video = {k[0]: v for k, v in turns.partition_by("video_id", as_dict=True).items()}
    empty_turns = pl.DataFrame(schema={c: TABLES["speaker_turns"].schema[c] for c in TURN_COLUMNS})
    return export_release(
        clips,
        lake.read("sft_subset")["clip_id"].to_list(),
        lake.read("vidchat_testset"),
        ReleaseTarget(target),
        media=media,
        turns_for=lambda vid: turns_by_video.get(vid, empty_turns),
        open_media=lake_io.local_copy,
        shard_samples=shard_samples,
    )


@dg.asset(
    name="release",
    deps=["clip_tiers", "sft_subset", "clips", "clip_quality", "vidchat_testset"],
    group_name=GROUP,
    kinds={"json", "s3"},
    description=(
        "The downloadable release: all_data_list.json, SFT_set.json, testset.json, merged_anno/<clip>.json per kept clip "
        "(JSON Schemas in assets/release/schema), and with media: mp4 crops, cleaned audio, WebDataset shards. "
        "Deterministic bytes; a re-export rewrites only what changed (manifest.json)."
    ),
)
def release(context: dg.AssetExecutionContext, config: ReleaseConfig, lake: LakeResource) -> dg.MaterializeResult:
    report = export_lake_release(lake, config.target or f"{lake.uri}/release", media=config.media, shard_samples=config.shard_samples)
    context.log.info("release to %s: %d written, %d unchanged, %d deleted", report.target, len(report.written), report.unchanged, len(report.deleted))
    return dg.MaterializeResult(
        metadata={
            "target": dg.MetadataValue.path(report.target),
            "clips": report.clips,
            "videos": report.videos,
            "shards": report.shards,
            "media": config.media,
            "files_written": len(report.written),
            "files_unchanged": report.unchanged,
            "files_deleted": len(report.deleted),
            "bytes_written": report.bytes_written,
            "written_first": dg.MetadataValue.md("\n".join(f"- {f}" for f in report.written[:20]) or "(none)"),
        }
    )


export_release_job = dg.define_asset_job(
    RELEASE_JOB,
    selection=dg.AssetSelection.assets("release"),
    description="Export the release (run config: target, media, shard_samples); only changed files are rewritten.",
)
