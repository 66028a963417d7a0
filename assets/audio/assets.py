"""Dagster wiring of the audio stage: VAD, diarization and whisperx ASR in one pass per video."""

from pathlib import Path

import polars as pl

import dagster as dg

from assets.audio import asr as asr_mod
from assets.audio.pipeline import OUTPUTS, analyze_audio, load_audio_models
from orchestration import lake as lake_io
from orchestration.checks import stage_check_spec
from orchestration.resources import ModelsResource
from orchestration.thresholds import threshold
from orchestration.stage_assets import per_video_stage


def setup_audio(models: ModelsResource, lake_uri: str, videos: pl.DataFrame):
    loaded = load_audio_models(models.audio())

    def analyze(video: dict, media_path: Path):
        return analyze_audio(video["video_id"], media_path, loaded)

    return analyze


COVERAGE_CHECK = "transcripts_asr_coverage"


def coverage_check():
    """Every video's words cover at least asr_min_video_coverage of its VAD speech."""
    spec = stage_check_spec("transcripts", COVERAGE_CHECK, "every video's ASR words cover at least asr_min_video_coverage of its VAD speech (table asr_coverage)")

    def evaluate(run, lake_uri: str, ids: list[str]) -> list[dg.AssetCheckResult]:
        return [coverage_result(lake_io.read("asr_coverage", lake_uri, video_ids=ids))]

    return spec, evaluate


def coverage_result(coverage: pl.DataFrame) -> dg.AssetCheckResult:
    """The check's verdict on ``asr_coverage`` rows; the metadata names the offending videos."""
    limit = threshold("asr_min_video_coverage")
    bad = asr_mod.failing_coverage(coverage, limit)
    return dg.AssetCheckResult(
        asset_key="transcripts",
        check_name=COVERAGE_CHECK,
        passed=bad.is_empty(),
        metadata={
            "limit": limit,
            "videos_below": bad.height,
            "first_offenders": ", ".join(f"{v} ({c:.2f})" for v, c in bad.head(5).iter_rows()),
            **{k: v for k, v in asr_mod.coverage_summary(coverage).items() if v is not None},
        },
    )


def coverage_summary(run) -> dict:
    summary = {k: v for k, v in asr_mod.coverage_summary(run.frames["asr_coverage"]).items() if v is not None}
    return {"transcripts": summary, "asr_coverage": summary}


audio = per_video_stage(
    "audio",
    OUTPUTS,
    setup_audio,
    checks=[coverage_check()],
    summary=coverage_summary,
    kinds={"speech_segments": {"silero"}, "speaker_turns": {"pytorch"}, "video_speakers": {"pytorch"}, "transcripts": {"whisperx"}, "asr_coverage": {"whisperx"}},
)
