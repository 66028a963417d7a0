"""Dagster wiring of the audio stage: VAD, diarization and whisperx ASR in one pass per video."""

from assets.audio.pipeline import analyze_audio
from orchestration.stage_assets import per_video_stage

audio = per_video_stage(
    "audio",
    {
        "speech_segments": "Voice activity (silero VAD, shipped ONNX).",
        "speaker_turns": "Diarized turns (resemblyzer d-vectors + clustering, or pyannote when configured).",
        "video_speakers": "Speaking time per diarized speaker; the two main speakers are marked.",
        "transcripts": "whisperx ASR segments with word times and the Whisper quality fields of filters F5/F6.",
        "asr_coverage": "Per video: share of VAD speech covered by ASR words, and the speech left without words.",
    },
    analyze_audio,
    kinds=frozenset({"delta", "whisperx"}),
)
