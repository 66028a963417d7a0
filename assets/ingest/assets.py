"""Dagster wiring of the ingest stage: one run per ingest batch."""


import dagster as dg
import polars as pl

from assets.ingest.ingest import ingest_file
from assets.ingest.planning import batch_plan
from orchestration.batch import mark_stage_done, reject_rows, replace_rejects
from orchestration.checks import key_check_results, key_check_specs, share_check, stage_check_spec
from orchestration.metadata import asset_spec, materialization_metadata
from orchestration.partitions import ingest_batches
from orchestration.resources import LakeResource
from orchestration.tables import TABLES
from orchestration.thresholds import threshold

REJECT_SHARE = "ingest_reject_share"


@dg.multi_asset(
    specs=[
        asset_spec("videos", group_name="ingest", kinds={"delta", "pyav"}),
        asset_spec("rejects", group_name="ingest", kinds={"delta"}),
    ],
    check_specs=[
        *key_check_specs(("videos", "rejects")),
        stage_check_spec("rejects", REJECT_SHARE, "share of the batch's planned files rejected at ingest is at most check_max_reject_share"),
    ],
    partitions_def=ingest_batches,
)
def ingest(context: dg.AssetExecutionContext, lake: LakeResource):
    batch_id = context.partition_key
    uri = lake.uri
    plan = batch_plan(batch_id, uri)
    existing = lake.scan("videos").select("video_id", "batch_id", "source_uri").collect()
    known = {v: (b, u) for v, b, u in existing.iter_rows()}
    taken_down = set(lake.scan("takedowns").filter(pl.col("kind") == "video").collect()["target_id"].to_list())
    min_s = threshold("min_video_seconds")
    rows, rejects, done = [], [], 0
    for i, f in enumerate(plan.iter_rows(named=True), 1):
        out = ingest_file(f["source_uri"], batch_id, problem=f["problem"], known_ids=known, taken_down=taken_down, min_duration_s=min_s, lake_uri=uri)
        if "video" in out:
            rows.append(out["video"])
            known[out["video"]["video_id"]] = (batch_id, f["source_uri"])
        elif "reject" in out:
            rejects.append(out["reject"])
            context.log.warning(f"reject {f['source_uri']}: {out['reject']['reason']}")
        else:
            done += 1
        context.log.info(f"ingest {i}/{plan.height}: {f['source_uri']}")
    new_videos = TABLES["videos"].conform(pl.DataFrame(rows)) if rows else TABLES["videos"].empty()
    lake.write("videos", new_videos)
    reject_frame = reject_rows(batch_id, "ingest", rejects)
    replace_rejects(batch_id, "ingest", reject_frame, uri)
    mark_stage_done(batch_id, "ingest", plan.height, uri)
    by_reason = {}
    for r in rejects:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    yield dg.MaterializeResult(
        asset_key="videos",
        metadata={**materialization_metadata("videos", new_videos, lake.count("videos")), "planned_files": plan.height, "already_ingested": done},
    )
    yield dg.MaterializeResult(
        asset_key="rejects",
        metadata={**materialization_metadata("rejects", reject_frame, lake.count("rejects")), **{f"reason_{k}": v for k, v in by_reason.items()}},
    )
    yield from key_check_results("videos", lake.scan("videos").filter(pl.col("batch_id") == batch_id).collect())
    yield from key_check_results("rejects", lake.scan("rejects").filter(pl.col("batch_id") == batch_id).collect())
    # duplicates and taken-down content are not a problem of the batch: the bytes were known before
    problems = [r["source_uri"] for r in rejects if r["reason"] not in ("duplicate", "taken_down")]
    yield share_check("rejects", REJECT_SHARE, numerator=len(problems), denominator=plan.height, limit_name="check_max_reject_share", at_most=True, offenders=problems)
