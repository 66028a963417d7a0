"""The clips stage: SpeakerVid-5M's unit, 3-14 s single-person talking and listening clips
(`assets.clips.pipeline.analyze_clips`)."""

from assets.clips.pipeline import ClipParams, analyze_clips, clip_id

__all__ = ["ClipParams", "analyze_clips", "clip_id"]
