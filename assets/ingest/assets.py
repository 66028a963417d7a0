"""Dagster wiring of the ingest stage: one run per ingest batch."""


import dagster as dg
import polars as pl

from assets.ingest.ingest import ingest_file
from assets.ingest.planning import batch_plan
from orchestration import lake
from orchestration.batch import mark_stage_done, reject_rows, replace_rejects
from orchestration.partitions import ingest_batches
from orchestration.tables import TABLES
from orchestration.thresholds import threshold


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "videos",
            group_name="ingest",
            kinds={"delta", "pyav"},
            description="One row per unique source video (content hash), probed with PyAV; media copied into the lake.",
        ),
        dg.AssetSpec(
            "rejects",
            group_name="ingest",
            kinds={"delta"},
            description="Unusable inputs with a machine-readable reason (later stages add their failures too).",
        ),
    ],
    partitions_def=ingest_batches,
)
def ingest(context: dg.AssetExecutionContext):
    batch_id = context.partition_key
    plan = batch_plan(batch_id)
    existing = lake.read("videos").select("video_id", "batch_id")
    known = dict(zip(existing["video_id"].to_list(), existing["batch_id"].to_list()))
    min_s = threshold("min_video_seconds")
    rows, rejects, done = [], [], 0
    for i, f in enumerate(plan.iter_rows(named=True), 1):
        out = ingest_file(f["source_uri"], batch_id, problem=f["problem"], known_ids=known, min_duration_s=min_s)
        if "video" in out:
            rows.append(out["video"])
            known[out["video"]["video_id"]] = batch_id
        elif "reject" in out:
            rejects.append(out["reject"])
            context.log.warning(f"reject {f['source_uri']}: {out['reject']['reason']}")
        else:
            done += 1
        context.log.info(f"ingest {i}/{plan.height}: {f['source_uri']}")
    n_new = lake.write("videos", pl.DataFrame(rows) if rows else TABLES["videos"].empty())
    replace_rejects(batch_id, "ingest", reject_rows(batch_id, "ingest", rejects))
    mark_stage_done(batch_id, "ingest", plan.height)
    by_reason = {}
    for r in rejects:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    yield dg.MaterializeResult(
        asset_key="videos",
        metadata={"planned_files": plan.height, "new_videos": n_new, "already_ingested": done},
    )
    yield dg.MaterializeResult(asset_key="rejects", metadata={"rejected": len(rejects), **{f"reason_{k}": v for k, v in by_reason.items()}})
