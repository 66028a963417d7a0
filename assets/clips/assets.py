"""Dagster wiring of the clips stage: the ``clips`` table per ingest batch, after binding
and the dataset-wide speaker ids (``speaker_assignments``)."""

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from assets.audio.decode import decode_audio
from assets.binding.params import BindingParams
from assets.binding.sync import load_sync_models
from assets.clips.pipeline import ClipParams, analyze_clips
from assets.vision.params import VisionParams
from orchestration import lake as lake_io
from orchestration.checks import FIRST_KEYS, stage_check_spec
from orchestration.resources import ModelsResource
from orchestration.stage_assets import per_video_stage

UPSTREAM = ("face_tracks", "shots", "speaker_turns", "transcripts", "bindings", "track_identities", "listening_segments", "speaker_assignments", "sync_scores")


def setup_clips(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    sync_models = load_sync_models(models.sync_backend, models.syncnet_weights)
    params, binding, vision = ClipParams.from_thresholds(), BindingParams.from_thresholds(sync_models.backend), VisionParams.from_thresholds()
    ids = videos["video_id"].to_list()
    upstream = {t: lake_io.read(t, lake_uri, video_ids=ids) for t in UPSTREAM}

    def analyze(video: dict, media_path: Path):
        vid = video["video_id"]
        tables = {t: df.filter(pl.col("video_id") == vid) for t, df in upstream.items()}
        audio = decode_audio(media_path) if not tables["speaker_turns"].is_empty() else None
        audio = audio if isinstance(audio, np.ndarray) else None  # no voice: no talking clips, no sync
        clips = analyze_clips(video, tables, audio, params=params, binding=binding, vision=vision, sync_models=sync_models, media_path=media_path)
        return {"clips": clips}

    return analyze


def _offenders(df: pl.DataFrame) -> dict:
    return {"count": df.height, "first_offenders": ", ".join(df["clip_id"].head(FIRST_KEYS).to_list())}


def duration_check():
    """Every clip lasts between clip_min_s and clip_max_s (whole frames; 1 ms slack for float seconds)."""
    name = "clips_duration_in_range"
    spec = stage_check_spec("clips", name, "every clip of the batch lasts between clip_min_s and clip_max_s seconds")

    def evaluate(run, lake_uri: str, ids: list[str]) -> list[dg.AssetCheckResult]:
        p = ClipParams.from_thresholds()
        clips = lake_io.read("clips", lake_uri, video_ids=ids)
        bad = clips.filter((pl.col("duration") < p.min_s - 1e-3) | (pl.col("duration") > p.max_s + 1e-3))
        return [dg.AssetCheckResult(asset_key="clips", check_name=name, passed=bad.is_empty(), metadata={"min_s": p.min_s, "max_s": p.max_s, "rows_checked": clips.height, **_offenders(bad)})]

    return spec, evaluate


def inside_shot_check():
    """Every clip lies inside the one shot it names (no cut, dissolve or fade inside a clip)."""
    name = "clips_inside_one_shot"
    spec = stage_check_spec("clips", name, "every clip of the batch lies inside its shot: shot start <= clip start < clip end <= shot end")

    def evaluate(run, lake_uri: str, ids: list[str]) -> list[dg.AssetCheckResult]:
        clips = lake_io.read("clips", lake_uri, video_ids=ids)
        shots = lake_io.read("shots", lake_uri, video_ids=ids).select("video_id", "shot_id", s0="start", s1="end")
        rows = clips.join(shots, on=["video_id", "shot_id"], how="left")
        bad = rows.filter(pl.col("s0").is_null() | (pl.col("start_seconds") < pl.col("s0") - 1e-6) | (pl.col("end_seconds") > pl.col("s1") + 1e-6))
        return [dg.AssetCheckResult(asset_key="clips", check_name=name, passed=bad.is_empty(), metadata={"rows_checked": clips.height, **_offenders(bad)})]

    return spec, evaluate


def clips_summary(run) -> dict[str, dict]:
    df = run.frames["clips"]
    talking = df.filter(pl.col("is_talking"))
    listening = df.filter(~pl.col("is_talking"))
    return {
        "clips": {
            "clips": df.height,
            "hours": round(float(df["duration"].sum() or 0.0) / 3600, 4),
            "talking_clips": talking.height,
            "talking_hours": round(float(talking["duration"].sum() or 0.0) / 3600, 4),
            "listening_clips": listening.height,
            "listening_hours": round(float(listening["duration"].sum() or 0.0) / 3600, 4),
        }
    }


clips = per_video_stage(
    "clips",
    ("clips",),
    setup_clips,
    deps=UPSTREAM,
    checks=[duration_check(), inside_shot_check()],
    summary=clips_summary,
    kinds={"clips": {"numpy"}},
)
