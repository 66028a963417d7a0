"""Dagster wiring of the clip_quality stage: per-clip quality scores and caption fields from a
few frames sampled per clip (assets.quality.pipeline)."""

from functools import lru_cache
from pathlib import Path

import polars as pl

from assets.quality.measures import brisque_model
from assets.quality.backends import DoverOnnx, QwenVL, TopicLLM
from assets.quality.params import QualityParams
from assets.quality.pipeline import QualityBackends, analyze_clips
from orchestration import lake as lake_io
from orchestration.resources import ModelsResource
from orchestration.settings import require_path
from orchestration.stage_assets import per_video_stage

UPSTREAM = ("clips", "face_tracks", "transcripts")


# Loaded once per process and reused by later batches (a Dask worker, `speakerlake run --workers`).
_dover = lru_cache(maxsize=2)(DoverOnnx)
_vlm = lru_cache(maxsize=2)(QwenVL.load)
_topic = lru_cache(maxsize=2)(TopicLLM.load)


def load_backends(models: ModelsResource, params: QualityParams) -> QualityBackends:
    """The model backends whose location is configured (each optional; a set but missing path fails)."""
    return QualityBackends(
        dover=_dover(require_path(models.dover_onnx, "dover_onnx", what="DOVER visual quality")) if models.dover_onnx else None,
        vlm=_vlm(require_path(models.vlm_model_dir, "vlm_model_dir", what="Qwen2.5-VL captions"), params.max_new_tokens) if models.vlm_model_dir else None,
        topic=_topic(require_path(models.topic_llm_dir, "topic_llm_dir", what="ASR topic LLM"), params.max_new_tokens, params.topic_max_chars) if models.topic_llm_dir else None,
    )


def setup_clip_quality(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    params = QualityParams.from_thresholds()
    backends = load_backends(models, params)
    if backends.dover is None:
        brisque_model()  # load (seconds: scipy, libsvm) before the per-video timing starts
    ids = videos["video_id"].to_list()
    upstream = {t: lake_io.read(t, lake_uri, video_ids=ids) for t in UPSTREAM}

    def analyze(video: dict, media_path: Path):
        vid = video["video_id"]
        t = {name: df.filter(pl.col("video_id") == vid) for name, df in upstream.items()}
        return {"clip_quality": analyze_clips(video, media_path, t["clips"], t["face_tracks"], t["transcripts"], params=params, backends=backends)}

    return analyze


clip_quality = per_video_stage(
    "clip_quality",
    ("clip_quality",),
    setup_clip_quality,
    deps=["clips", *UPSTREAM[1:], "videos"],
    kinds={"clip_quality": {"opencv", "pyav"}},
)
