"""Dagster wiring of the binding stage: lip-sync scores, voice->face bindings, identities,
dataset-wide speaker ids and listening segments for one ingest batch."""

import time

import dagster as dg
import numpy as np
import polars as pl

from assets.audio.decode import decode_audio
from assets.binding.pipeline import analyze_binding, assign_batch_speaker_ids
from assets.binding.identity import track_embedding_columns
from assets.binding.speakers import speakers_rollup
from orchestration import lake
from orchestration.batch import batch_videos, mark_stage_done, run_per_video
from orchestration.partitions import ingest_batches
from orchestration.tables import TABLES

UPSTREAM = ("face_tracks", "shots", "speaker_turns", "video_speakers", "transcripts")
PER_VIDEO = ("sync_scores", "bindings", "listening_segments")
_DESCRIPTIONS = {
    "sync_scores": "SyncNet-style offset / confidence / dist of each face track over each speaker turn it overlaps.",
    "bindings": "Each diarized speaker bound one-to-one to the face track whose lips move with the voice.",
    "track_identities": "Every face track's speaker after ArcFace correction, and its dataset-wide speaker_id.",
    "speakers": "Dataset-wide identities (ArcFace clusters); new batches join existing clusters.",
    "listening_segments": "Spans where a visible face listens while another speaker talks.",
}


@dg.multi_asset(
    name="binding",
    specs=[dg.AssetSpec(t, deps=list(UPSTREAM), group_name="binding", kinds={"delta"}, description=d) for t, d in _DESCRIPTIONS.items()],
    partitions_def=ingest_batches,
)
def binding(context: dg.AssetExecutionContext):
    batch_id = context.partition_key
    videos = batch_videos(batch_id)
    ids = videos["video_id"].to_list()
    upstream = {t: lake.read(t, video_ids=ids) for t in UPSTREAM}
    identities: list[pl.DataFrame] = []

    def one(video: dict):
        vid = video["video_id"]
        tables = {t: df.filter(pl.col("video_id") == vid) for t, df in upstream.items()}
        with lake.local_copy(video["raw_uri"]) as path:
            audio = decode_audio(path)
            audio = audio if isinstance(audio, np.ndarray) else None  # NoAudio: no voices to bind
            out = analyze_binding(vid, audio, tables, media_path=path, fps=video["fps"] or None)
        identities.append(out["track_identities"])
        return out

    meta = run_per_video(context.log, batch_id, "binding", videos, one, PER_VIDEO)

    # Dataset-wide ids: this batch's tracks join the lake's clusters (or found new ones).
    t0 = time.perf_counter()
    batch_ti = pl.concat(identities) if identities else TABLES["track_identities"].empty()
    existing = lake.read("speakers")
    ti, _ = assign_batch_speaker_ids(batch_ti, upstream["face_tracks"], existing)
    n_ti = lake.write("track_identities", ti, video_ids=ids)
    touched = sorted(set(ti["speaker_id"].drop_nulls().to_list()))
    members = lake.scan("track_identities").filter(pl.col("speaker_id").is_in(touched)).select("speaker_id", "video_id", "track_id").collect()
    member_tracks = track_embedding_columns(
        lake.scan("face_tracks").filter(pl.col("video_id").is_in(members["video_id"].unique().to_list()))
    ).collect()
    members = members.join(member_tracks, on=["video_id", "track_id"], how="left")
    n_sp = lake.write("speakers", speakers_rollup(members))
    mark_stage_done(batch_id, "binding_ids", len(ids))
    common = {"videos": meta["videos"], "failed_videos": meta["failed_videos"], "stage_seconds": meta["seconds"]}
    for t in PER_VIDEO:
        yield dg.MaterializeResult(asset_key=t, metadata={"rows": meta[f"rows_{t}"], **common})
    yield dg.MaterializeResult(asset_key="track_identities", metadata={"rows": n_ti, **common})
    yield dg.MaterializeResult(
        asset_key="speakers",
        metadata={"speakers_touched": n_sp, "speakers_total": lake.count("speakers"), "seconds": round(time.perf_counter() - t0, 2)},
    )

