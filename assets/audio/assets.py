"""Dagster wiring of the audio stage: VAD, diarization and whisperx ASR in one pass per video."""

from pathlib import Path

import polars as pl

from assets.audio.pipeline import OUTPUTS, analyze_audio, load_audio_models
from orchestration.resources import ModelsResource
from orchestration.stage_assets import per_video_stage


def setup_audio(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    loaded = load_audio_models(models.audio())

    def analyze(video: dict, media_path: Path):
        return analyze_audio(video["video_id"], media_path, loaded)

    return analyze


audio = per_video_stage(
    "audio",
    OUTPUTS,
    setup_audio,
    kinds={"speech_segments": {"silero"}, "speaker_turns": {"pytorch"}, "video_speakers": {"pytorch"}, "transcripts": {"whisperx"}},
)
