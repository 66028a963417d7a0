"""Dagster wiring of the binding stage: lip-sync scores, voice->face bindings, identities
within each video and listening segments, per ingest batch."""

from pathlib import Path

import numpy as np
import polars as pl

from assets.audio.decode import decode_audio
from assets.binding.pipeline import analyze_binding
from assets.binding.sync import load_sync_models
from orchestration import lake as lake_io
from orchestration.resources import ModelsResource
from orchestration.stage_assets import per_video_stage

UPSTREAM = ("face_tracks", "shots", "speaker_turns", "video_speakers", "transcripts")
PER_VIDEO = ("sync_scores", "bindings", "track_identities", "listening_segments")


def setup_binding(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    sync_models = load_sync_models(models.sync_backend, models.syncnet_weights)
    ids = videos["video_id"].to_list()
    upstream = {t: lake_io.read(t, lake_uri, video_ids=ids) for t in UPSTREAM}

    def analyze(video: dict, media_path: Path):
        vid = video["video_id"]
        tables = {t: df.filter(pl.col("video_id") == vid) for t, df in upstream.items()}
        audio = decode_audio(media_path)
        audio = audio if isinstance(audio, np.ndarray) else None  # NoAudio: no voices to bind
        return analyze_binding(vid, audio, tables, sync_models=sync_models, media_path=media_path, fps=video["fps"] or None)

    return analyze


binding = per_video_stage(
    "binding",
    PER_VIDEO,
    setup_binding,
    deps=UPSTREAM,
    kinds={"sync_scores": {"numpy"}, "bindings": {"scipy"}, "track_identities": {"insightface"}, "listening_segments": {"numpy"}},
)
