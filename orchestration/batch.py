"""Per-batch plumbing shared by every stage asset: which videos a batch holds, running a
pure per-video function with failures turned into reject rows, and idempotent writes.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

import polars as pl

from orchestration import lake
from orchestration.tables import TABLES


def batch_videos(batch_id: str) -> pl.DataFrame:
    """The videos first ingested by ``batch_id`` (a re-ingested duplicate belongs to its first batch)."""
    return lake.read("videos").filter(pl.col("batch_id") == batch_id).sort("video_id")


def mark_stage_done(batch_id: str, stage: str, videos: int) -> None:
    """Record that ``stage`` finished ``batch_id`` (written last, after all of its tables)."""
    lake.write(
        "batch_status",
        pl.DataFrame([{"batch_id": batch_id, "stage": stage, "videos": videos, "completed_at": datetime.now(timezone.utc)}]),
    )


def completed_batches(stages: set[str]) -> set[str]:
    """Batches that every one of ``stages`` finished."""
    st = lake.read("batch_status")
    done = st.group_by("batch_id").agg(pl.col("stage").unique())
    return {b for b, ss in zip(done["batch_id"].to_list(), done["stage"].to_list()) if stages <= set(ss)}


def reject_rows(batch_id: str, stage: str, items: list[dict]) -> pl.DataFrame:
    """Reject rows keyed by (stage, source, video): a rerun overwrites instead of duplicating."""
    now = datetime.now(timezone.utc)
    rows = []
    for it in items:
        src, vid = it.get("source_uri"), it.get("video_id")
        rid = hashlib.sha1(f"{stage}|{src}|{vid}".encode()).hexdigest()[:20]
        rows.append(
            {
                "reject_id": rid,
                "batch_id": batch_id,
                "stage": stage,
                "source_uri": src,
                "video_id": vid,
                "reason": it["reason"],
                "message": str(it.get("message", ""))[:2000],
                "rejected_at": now,
            }
        )
    return pl.DataFrame(rows, schema=TABLES["rejects"].polars_schema) if rows else TABLES["rejects"].empty()


def replace_rejects(batch_id: str, stage: str, rejects: pl.DataFrame) -> None:
    """Replace this (batch, stage)'s rejects: a video that succeeds on rerun loses its stale reject."""
    lake.delete_where("rejects", f"batch_id = '{batch_id}' AND stage = '{stage}'")
    if not rejects.is_empty():
        lake.write("rejects", rejects)


def run_per_video(
    log,
    batch_id: str,
    stage: str,
    videos: pl.DataFrame,
    fn: Callable[[dict], Mapping[str, pl.DataFrame]],
    outputs: tuple[str, ...],
) -> dict:
    """Run ``fn(video_row) -> {table: frame}`` over a batch and write every output table.

    A video whose function raises becomes a reject row (reason ``stage_error``) and
    contributes no rows; a result carrying a ``reason`` attribute (the stage had nothing to
    work on, e.g. no audio) is recorded with that reason too. The rest of the batch goes on. Outputs are written once per
    table for the whole batch, replacing all rows of the batch's videos (idempotent).
    Returns Dagster metadata: row counts, failures, seconds.
    """
    frames: dict[str, list[pl.DataFrame]] = {t: [] for t in outputs}
    failed: list[dict] = []
    t0 = time.perf_counter()
    for row in videos.iter_rows(named=True):
        try:
            result = fn(row)
        except Exception as e:  # noqa: BLE001 - one bad video must not sink the batch
            log.warning(f"{stage}: video {row['video_id']} failed: {e!r}")
            failed.append(
                {
                    "source_uri": row.get("source_uri"),
                    "video_id": row["video_id"],
                    "reason": "stage_error",
                    "message": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}",
                }
            )
            continue
        if getattr(result, "reason", None):
            # The stage ran but the video gave it nothing to work on (e.g. no audio track):
            # its tables stay empty and the reason is recorded, the video goes on.
            failed.append(
                {"source_uri": row.get("source_uri"), "video_id": row["video_id"], "reason": result.reason, "message": getattr(result, "message", "") or ""}
            )
        for t in outputs:
            df = result.get(t)
            if df is not None and not df.is_empty():
                frames[t].append(TABLES[t].conform(df))
    ids = videos["video_id"].to_list()
    counts = {}
    for t in outputs:
        df = pl.concat(frames[t]) if frames[t] else TABLES[t].empty()
        counts[t] = lake.write(t, df, video_ids=ids)
    replace_rejects(batch_id, stage, reject_rows(batch_id, stage, failed))
    mark_stage_done(batch_id, stage, len(ids))
    return {
        "videos": len(ids),
        "failed_videos": sum(1 for f in failed if f["reason"] == "stage_error"),
        "videos_with_reason": len(failed),
        "seconds": round(time.perf_counter() - t0, 2),
        **{f"rows_{t}": n for t, n in counts.items()},
    }
