"""Dagster wiring of the vision stage: shots and face tracks from one decode per video."""

from assets.vision.pipeline import analyze_video
from orchestration.stage_assets import per_video_stage

vision = per_video_stage(
    "vision",
    {
        "shots": "PySceneDetect shots: hard cuts, fades and dissolves, each with its transition kind and frame span (settings in sql/thresholds.csv).",
        "face_tracks": "insightface faces tracked within shots: 2d106 mouth signal, ArcFace embedding, person box.",
    },
    analyze_video,
    kinds=frozenset({"delta", "insightface"}),
)
