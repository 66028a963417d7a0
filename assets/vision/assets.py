"""Dagster wiring of the vision stage: shots and face tracks from one decode per video."""

from pathlib import Path

import polars as pl

from assets.vision.params import VisionParams
from assets.vision.pipeline import analyze_video, load_vision_models
from orchestration.resources import ModelsResource
from orchestration.stage_assets import per_video_stage


def setup_vision(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    params = VisionParams.from_thresholds()
    loaded = load_vision_models(models.face_model_dir, params)

    def analyze(video: dict, media_path: Path):
        return analyze_video(video["video_id"], media_path, loaded, params=params)

    return analyze


vision = per_video_stage(
    "vision",
    ("shots", "face_tracks"),
    setup_vision,
    kinds={"shots": {"scenedetect"}, "face_tracks": {"insightface"}},
)
