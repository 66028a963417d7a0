"""Per-batch plumbing shared by every stage asset: which videos a run covers, running a pure
per-video function with one video's failure turned into a reject row, per-video status, and
idempotent writes.

Failures are split by where they come from:

* **setup** (a model setting missing, a model that does not load): raised before the
  per-video loop, so the step fails, the run is red and nothing is recorded; every video of
  the batch stays pending and the next run (or the sensor) picks it up again;
* **one video's data** (an undecodable file, a bug hit by one input): that video gets
  ``stage_status`` ``error`` plus a ``stage_error`` reject with the message, the rest of the
  batch goes on, and ``speakerlake run --retry-failed`` (or the sensor's retry) reruns
  exactly those videos.

``stage_status`` (stage, video_id) is the truth of what is done: a video is pending for a
stage when it has no row, failed when its row says ``error``.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import polars as pl

from orchestration import lake
from orchestration.tables import TABLES

PER_VIDEO_STAGES = ("audio", "vision", "binding", "clips", "clip_quality")
SPEAKER_IDS = "speaker_ids"  # the dataset-wide step after binding (assets/binding/assets.py)


def batch_videos(batch_id: str, lake_uri: str | None = None, video_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """The videos first ingested by ``batch_id`` (a re-ingested duplicate belongs to its first
    batch), optionally only ``video_ids`` of them (None: all)."""
    lf = lake.scan("videos", lake_uri).filter(pl.col("batch_id") == batch_id)
    if video_ids is not None:  # [] = none of them
        lf = lf.filter(pl.col("video_id").is_in(list(video_ids)))
    return lf.collect().sort("video_id")


def mark_stage_done(batch_id: str, stage: str, videos: int, lake_uri: str | None = None) -> None:
    """Record that a batch-level step (ingest) finished ``batch_id``, after all of its tables."""
    lake.write(
        "batch_status",
        pl.DataFrame([{"batch_id": batch_id, "stage": stage, "videos": videos, "completed_at": datetime.now(timezone.utc)}]),
        lake=lake_uri,
    )


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


def replace_rejects(batch_id: str, stage: str, rejects: pl.DataFrame, lake_uri: str | None = None, *, video_ids: Iterable[str] | None = None) -> None:
    """Replace this stage's rejects of the batch (or of ``video_ids`` only): a video that
    succeeds on rerun loses its stale reject, videos outside the run keep theirs."""
    predicate = f"batch_id = '{batch_id}' AND stage = '{stage}'"
    if video_ids is not None:
        predicate += f" AND video_id IN ({lake.sql_list(video_ids) or 'NULL'})"
    lake.delete_where("rejects", predicate, lake_uri)
    if not rejects.is_empty():
        lake.write("rejects", rejects, lake=lake_uri)


# ---------------------------------------------------------------- per-video status
def video_status(stage_status: pl.DataFrame, video_ids: list[str], stages: Iterable[str] = PER_VIDEO_STAGES) -> pl.DataFrame:
    """One row per (video, stage) of ``video_ids`` with ``status`` ok / error / pending."""
    grid = pl.DataFrame({"video_id": video_ids}).join(pl.DataFrame({"stage": list(stages)}), how="cross")
    st = stage_status.select("stage", "video_id", "status", "attempts", "fingerprint")
    return grid.join(st, on=["stage", "video_id"], how="left").with_columns(pl.col("status").fill_null("pending"))


def progress(video_ids: list[str], stage_status: pl.DataFrame) -> dict[str, list[str]]:
    """``{"pending": [...], "failed": [...]}`` among ``video_ids``: videos that some per-video
    stage has not run yet, or whose speaker ids were not given after their binding finished
    (a crash or a setup failure) / that a stage recorded as failed (a video can be in both)."""
    if not video_ids:
        return {"pending": [], "failed": []}
    st = stage_status.filter(pl.col("video_id").is_in(video_ids))
    vs = video_status(st, video_ids)
    pending = set(vs.filter(pl.col("status") == "pending")["video_id"].to_list()) | set(videos_needing_ids(st))
    return {"pending": sorted(pending), "failed": sorted(set(vs.filter(pl.col("status") == "error")["video_id"].to_list()))}


def videos_needing_ids(stage_status: pl.DataFrame) -> list[str]:
    """Videos whose binding finished after their speaker ids were last given (or never were)."""
    bound = stage_status.filter((pl.col("stage") == "binding") & (pl.col("status") == "ok")).select("video_id", "updated_at")
    given = stage_status.filter(pl.col("stage") == SPEAKER_IDS).select("video_id", ids_at=pl.col("updated_at"))
    todo = bound.join(given, on="video_id", how="left").filter(pl.col("ids_at").is_null() | (pl.col("ids_at") < pl.col("updated_at")))
    return sorted(todo["video_id"].to_list())


def batch_done_steps(lake_uri: str | None = None) -> dict[str, set[str]]:
    """batch_id -> batch-level steps (ingest, speaker_ids) recorded in batch_status."""
    st = lake.read("batch_status", lake_uri)
    out: dict[str, set[str]] = {}
    for b, s in zip(st["batch_id"].to_list(), st["stage"].to_list()):
        out.setdefault(b, set()).add(s)
    return out


# the per-video stages each stage reads: when a stage (re)processes a video, every stage
# downstream of it must too, and no other
STAGE_UPSTREAM: dict[str, tuple[str, ...]] = {"audio": (), "vision": (), "binding": ("audio", "vision"), "clips": ("binding",), "clip_quality": ("clips",)}


def stage_work(video_ids: list[str], stage_status: pl.DataFrame, *, retry_failed: bool = False) -> dict[str, list[str]]:
    """stage -> the videos of ``video_ids`` that stage must (re)process: those it has not run
    yet (or failed on, with ``retry_failed``), plus those a stage it reads from reprocesses.
    A stage added to the pipeline, or a crash in a late stage, reruns only the stages that need
    it, not the models before them. Clips also wait for dataset-wide speaker ids."""
    st = stage_status.filter(pl.col("video_id").is_in(video_ids))
    vs = video_status(st, video_ids)
    todo = vs.filter((pl.col("status") == "pending") | ((pl.col("status") == "error") & retry_failed))
    need = {stage: set(todo.filter(pl.col("stage") == stage)["video_id"].to_list()) for stage in PER_VIDEO_STAGES}
    need["clips"] |= set(videos_needing_ids(st))
    for stage in PER_VIDEO_STAGES:  # in pipeline order: upstream sets are final when read
        for up in STAGE_UPSTREAM[stage]:
            need[stage] |= need[up]
    return {stage: sorted(v) for stage, v in need.items()}


def batch_work(batches: Iterable[str], lake_uri: str | None = None, *, retry_failed: bool = False) -> dict[str, dict[str, list[str]] | None]:
    """batch -> what its run must do: ``None`` = every video in every stage (the batch was
    never ingested), else :func:`stage_work` (pending videos: a run that crashed or failed at
    setup; with ``retry_failed`` the failed ones too, which alone need a fix, so opt-in).
    Batches with nothing to do are left out."""
    batches = list(batches)
    steps = batch_done_steps(lake_uri)
    # one read of each bookkeeping table for all batches, not one per batch
    members = lake.scan("videos", lake_uri).filter(pl.col("batch_id").is_in(batches)).select("video_id", "batch_id").collect()
    status = lake.scan("stage_status", lake_uri).filter(pl.col("video_id").is_in(members["video_id"].to_list())).collect()
    by_batch: dict[str, list[str]] = {}
    for vid, b in members.iter_rows():
        by_batch.setdefault(b, []).append(vid)
    out: dict[str, dict[str, list[str]] | None] = {}
    for b in batches:
        if "ingest" not in steps.get(b, set()):
            out[b] = None
            continue
        work = stage_work(sorted(by_batch.get(b, [])), status, retry_failed=retry_failed)
        if any(work.values()):
            out[b] = work
    return out


def incomplete_batches(batches: Iterable[str], lake_uri: str | None = None) -> list[str]:
    """Batches with pending work (see :func:`batch_work`)."""
    return list(batch_work(batches, lake_uri))


@dataclass
class StageRun:
    """What one stage did to one batch, for metadata and logs."""

    videos: int = 0
    failed: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)  # the rows written, per table
    seconds: float = 0.0


def status_rows(batch_id: str, stage: str, fingerprint: str, outcomes: dict[str, dict], previous: pl.DataFrame) -> pl.DataFrame:
    """stage_status rows for the videos just processed; ``attempts`` counts consecutive failures."""
    prev = dict(zip(previous["video_id"].to_list(), previous["attempts"].fill_null(0).to_list())) if previous.height else {}
    now = datetime.now(timezone.utc)
    rows = [
        {
            "stage": stage,
            "video_id": vid,
            "batch_id": batch_id,
            "status": o["status"],
            "reason": o.get("reason"),
            "message": (o.get("message") or "")[:2000] or None,
            "fingerprint": fingerprint,
            "attempts": (prev.get(vid, 0) + 1) if o["status"] == "error" else 0,
            "updated_at": now,
        }
        for vid, o in outcomes.items()
    ]
    return TABLES["stage_status"].conform(pl.DataFrame(rows, schema=TABLES["stage_status"].polars_schema))


def run_per_video(
    log,
    batch_id: str,
    stage: str,
    videos: pl.DataFrame,
    fn: Callable[[dict], Mapping[str, pl.DataFrame]],
    outputs: tuple[str, ...],
    *,
    fingerprint: str,
    lake_uri: str | None = None,
) -> StageRun:
    """Run ``fn(video_row) -> {table: frame}`` over ``videos`` and write every output table.

    ``fn`` must already hold its loaded models (setup happens before, so a setup error never
    reaches this loop). A video whose function raises gets status ``error`` and a
    ``stage_error`` reject and contributes no rows; a result carrying a ``reason`` attribute
    (the stage had nothing to work on, e.g. no audio) is ``ok`` with that reason, also kept
    as a reject row. Output rows replace all rows of ``videos`` (idempotent); status rows are
    written last, so a crash before them leaves the videos pending.
    """
    frames: dict[str, list[pl.DataFrame]] = {t: [] for t in outputs}
    outcomes: dict[str, dict] = {}
    rejects: list[dict] = []
    t0 = time.perf_counter()
    for row in videos.iter_rows(named=True):
        vid = row["video_id"]
        try:
            result = fn(row)
        except Exception as e:  # noqa: BLE001 - one bad video must not sink the batch
            log.warning(f"{stage}: video {vid} failed: {e!r}")
            message = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
            outcomes[vid] = {"status": "error", "reason": "stage_error", "message": message}
            rejects.append({"source_uri": row.get("source_uri"), "video_id": vid, "reason": "stage_error", "message": message})
            continue
        reason = getattr(result, "reason", None)
        outcomes[vid] = {"status": "ok", "reason": reason, "message": getattr(result, "message", None)}
        if reason:
            rejects.append({"source_uri": row.get("source_uri"), "video_id": vid, "reason": reason, "message": getattr(result, "message", "") or ""})
        for t in outputs:
            df = result.get(t)
            if df is not None and not df.is_empty():
                frames[t].append(TABLES[t].conform(df))
    ids = videos["video_id"].to_list()
    run = StageRun(videos=len(ids))
    for t in outputs:
        run.frames[t] = pl.concat(frames[t]) if frames[t] else TABLES[t].empty()
        lake.write(t, run.frames[t], video_ids=ids, lake=lake_uri)
    replace_rejects(batch_id, stage, reject_rows(batch_id, stage, rejects), lake_uri, video_ids=ids)
    previous = lake.scan("stage_status", lake_uri).filter((pl.col("stage") == stage) & pl.col("video_id").is_in(ids)).collect()
    if outcomes:
        lake.write("stage_status", status_rows(batch_id, stage, fingerprint, outcomes, previous), lake=lake_uri)
    run.failed = sorted(v for v, o in outcomes.items() if o["status"] == "error")
    for o in outcomes.values():
        if o.get("reason"):
            run.reasons[o["reason"]] = run.reasons.get(o["reason"], 0) + 1
    run.seconds = round(time.perf_counter() - t0, 2)
    return run
