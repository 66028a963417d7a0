"""Binding stage (stages 4-5 and the listening branch of SpeakerVid-5M): lip sync of face
tracks against diarized turns, voice -> face binding, ArcFace identity correction within a
video, listening spans, and dataset-wide speaker ids.

Entry points: :func:`analyze_binding` (per video) and
:func:`assets.binding.speaker_ids.update_speaker_ids` (the serialized ``speakers`` asset,
over the identity units of every video). Everything else is pure functions.
"""

from assets.binding.params import BindingParams
from assets.binding.pipeline import BindingStats, analyze_binding

__all__ = ["BindingParams", "BindingStats", "analyze_binding"]
