"""Dagster wiring of the dataset report: ``dataset_report``, a non-partitioned asset whose
materialization metadata is the report (no table): the Figure 3 histograms as inline PNG
images, the markdown summary, and the headline numbers as floats the UI plots over runs.

It reads the whole lake through DuckDB views (a table not written yet is an empty view, so
the report works on a lake at any stage). stage_status is bookkeeping
written by the per-video stages, not an asset; the stage assets are upstream through clips.
"""

import dagster as dg

from assets.branches.branches import BRANCH_TABLES
from assets.report import REPORT_ASSET
from assets.report.report import build_report, histogram_image, summary_markdown
from assets.tiers.assets import POOL as TIERS_POOL
from orchestration.resources import LakeResource, ThresholdsResource

UPSTREAM = ("videos", "rejects", "clips", "clip_quality", "clip_tiers", *BRANCH_TABLES)


@dg.asset(
    name=REPORT_ASSET,
    deps=list(UPSTREAM),
    group_name="report",
    kinds={"duckdb", "matplotlib"},
    # the tiers pool: the report never reads a half-replaced tier decision of a concurrent run
    pool=TIERS_POOL,
    description=(
        "The dataset report: the paper's Figure 3 histograms (clip duration, source resolution, visual quality, sync "
        "confidence, clips per speaker) and a summary of hours, clips and speaker ids per branch, SFT share, hour yield "
        "from raw input and reject reasons, as this asset's materialization metadata (sql/report.sql)."
    ),
)
def dataset_report(context: dg.AssetExecutionContext, lake: LakeResource, thresholds: ThresholdsResource) -> dg.MaterializeResult:
    report = build_report(lake.duckdb_connection(thresholds.path))
    images = {f"histogram_{h.name}": dg.MetadataValue.md(histogram_image(h)) for h in report.histograms}
    # ratios of an empty lake are undefined: left out rather than reported as 0
    ratios = {"hour_yield": report.hour_yield, "sft_share_clips": report.sft_share_clips, "sft_share_hours": report.sft_share_hours}
    context.log.info("report: %d kept clips, %.3f kept h of %.3f raw h", report.kept_clips, report.kept_hours, report.yield_["raw_hours"])
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(summary_markdown(report)),
            **images,
            "kept_clips": report.kept_clips,
            "kept_hours": dg.MetadataValue.float(report.kept_hours),
            "raw_hours": dg.MetadataValue.float(float(report.yield_["raw_hours"])),
            **{k: dg.MetadataValue.float(v) for k, v in ratios.items() if v is not None},
            "failed_stage_videos": report.failed_stage_videos,
        }
    )
