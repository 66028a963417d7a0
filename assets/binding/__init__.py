"""Binding stage (issue 5, stages 4-5 and the listening branch of SpeakerVid-5M):
lip sync of face tracks against diarized turns, voice -> face binding, ArcFace identity
correction, dataset-wide speaker ids and listening spans.

Entry points: :func:`analyze_binding` (per video) and :func:`assign_batch_speaker_ids`
(per batch, needs the lake's ``speakers`` table). Everything else is pure functions.
"""

from assets.binding.identity import assign_speaker_ids, track_embeddings
from assets.binding.params import BindingParams
from assets.binding.pipeline import BindingStats, analyze_binding, assign_batch_speaker_ids

__all__ = ["BindingParams", "BindingStats", "analyze_binding", "assign_batch_speaker_ids", "assign_speaker_ids", "track_embeddings"]
