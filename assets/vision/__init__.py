"""Vision stages (issue 5): shots, face tracks with person boxes, mouth-opening signal.

Entry point: :func:`analyze_video` -> ``{"shots": DataFrame, "face_tracks": DataFrame}``
conforming to ``orchestration.tables.TABLES``.
"""

from assets.vision.pipeline import VisionStats, analyze_video, load_vision_models

__all__ = ["VisionStats", "analyze_video", "load_vision_models"]
