"""The clips of one video: spans (`assets.clips.spans`) cut to length, each with its stable
id, dataset-wide speaker id, person box, ASR fields and lip sync over its own span.

- ``clip_id`` = ``f"{video_id}_t{track_id}_{start_ms:09d}"``: a function of the video, the
  track and the start (whole frames, in ms), so a rerun on the same upstream rows gives
  the same ids.
- ``identity_unit``: the track's ``speaker_local``, or ``track:<track_id>`` for a face that
  never speaks (`assets.binding.speaker_ids.unit_expr`); ``speaker_id`` its row of
  ``speaker_assignments`` when the clip is cut.
- ``bbox``: the vision stage's person-box rule (`assets.vision.faces.person_box`: per
  frame, the face box widened to ``person_box_width_faces`` face widths and from
  ``person_box_above_faces`` face heights above the face to ``person_box_below_faces``
  below it) over the track's boxes on the clip's frames, their union, clipped to the
  frame and normalised to [x, y, w, h].
- ``clip_speaker_num``: distinct people (identity units) whose face tracks are on screen
  in the clip's shot during the clip (a person whose track broke in two counts once).
- ``sync_*``: the binding stage's lip-sync scorer (same backend and settings) over the
  clip's frames against the audio; for a listening clip that is the listener's own
  mouth (low confidence expected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from assets.binding.assign import mark_evidence
from assets.binding.params import BindingParams
from assets.binding.pipeline import video_frames
from assets.binding.sync import SyncModels, SyncResult, SyncWindow, score_windows
from assets.clips.spans import Span, listening_spans, split_span, talking_spans
from assets.clips.text import clip_text
from assets.vision.faces import person_box
from assets.vision.params import VisionParams
from orchestration.tables import TABLES
from orchestration.thresholds import threshold


@dataclass(frozen=True)
class ClipParams:
    # no defaults: every value comes from sql/thresholds.csv (from_thresholds), the one place thresholds live
    min_s: float
    max_s: float
    turn_trim_s: float
    turn_join_s: float

    @classmethod
    def from_thresholds(cls) -> "ClipParams":
        return cls(
            min_s=threshold("clip_min_s"), max_s=threshold("clip_max_s"), turn_trim_s=threshold("clip_turn_trim_s"), turn_join_s=threshold("clip_turn_join_s")
        )


def clip_id(video_id: str, track_id: int, start_s: float) -> str:
    return f"{video_id}_t{int(track_id)}_{int(round(start_s * 1000)):09d}"


def unsynced_turns(sync_scores: pl.DataFrame | None, binding: BindingParams) -> set[tuple[int, int]]:
    """(track_id, turn_id) whose sync row says the face does not speak the turn: a window long
    enough to judge (``bind_min_evidence_s``) that fails the binding stage's evidence rule
    (confidence, plausible offset, margin over rivals). A shorter window decides nothing."""
    if sync_scores is None or sync_scores.is_empty():
        return set()
    rule = binding.evidence()
    marked = mark_evidence(sync_scores, min_confidence=binding.bind_min_confidence, rule=rule)
    judged = pl.col("end") - pl.col("start") >= (rule.min_seconds or 0.0) - 1e-9
    return {(int(t), int(k)) for t, k in marked.filter(judged & ~pl.col("synced")).select("track_id", "turn_id").rows()}


def clip_spans(tables: dict[str, pl.DataFrame], fps: float, params: ClipParams, unsynced: set[tuple[int, int]] | frozenset = frozenset()) -> list[Span]:
    """Talking and listening spans of one video, cut to length, in (track, start) order;
    ``unsynced`` see `talking_spans`."""
    ti, ft = tables["track_identities"], tables["face_tracks"]
    spans = talking_spans(
        tables["speaker_turns"], tables["bindings"], ti, ft, tables["shots"], fps, trim_s=params.turn_trim_s, join_s=params.turn_join_s, unsynced=unsynced
    )
    spans += listening_spans(tables["listening_segments"], ti, ft, fps)
    out = [piece for s in spans for piece in split_span(s, fps, min_s=params.min_s, max_s=params.max_s)]
    return sorted(out, key=lambda s: (s.track_id, s.f0))


def clip_bbox(frames: np.ndarray, boxes: np.ndarray, f0: int, f1: int, width: int, height: int, vision: VisionParams) -> list[float]:
    """The person box over the track's boxes on frames ``[f0, f1)`` (module doc)."""
    keep = (frames >= f0) & (frames < f1)
    return person_box(
        boxes[keep], width, height, width_faces=vision.person_width_faces, above_faces=vision.person_above_faces, below_faces=vision.person_below_faces
    )


def speakers_on_screen(span: Span, face_tracks: pl.DataFrame, units: dict[int, str]) -> int:
    """Distinct identity units of the tracks of ``span``'s shot overlapping its frames."""
    rows = face_tracks.filter((pl.col("shot_id") == span.shot_id) & (pl.col("start_frame") < span.f1) & (pl.col("end_frame") > span.f0))
    return len({units[int(t)] for t in rows["track_id"].to_list()})


def clip_sync(
    spans: list[Span], face_tracks: pl.DataFrame, audio: np.ndarray | None, fps: float, n_frames: int, *, params: BindingParams, sync_models: SyncModels, media_path: str | Path | None
) -> dict[int, SyncResult]:
    """Clip index -> lip sync of its track over its own frames (none without audio)."""
    if audio is None or not spans:
        return {}
    windows = [SyncWindow(s.track_id, i, s.speaker_local or "", s.f0, s.f1) for i, s in enumerate(spans)]
    res = score_windows(windows, face_tracks, audio, fps, n_frames, params=params, sync_models=sync_models, media_path=media_path)
    return {turn: r for (_, turn), r in res.items()}


def analyze_clips(
    video: dict,
    tables: dict[str, pl.DataFrame],
    audio: np.ndarray | None,
    *,
    params: ClipParams | None = None,
    binding: BindingParams | None = None,
    vision: VisionParams | None = None,
    sync_models: SyncModels | None = None,
    media_path: str | Path | None = None,
) -> pl.DataFrame:
    """The ``clips`` rows of one video.

    ``video``: its ``videos`` row (video_id, fps, width, height); ``tables``: that video's
    ``face_tracks``, ``shots``, ``speaker_turns``, ``transcripts``, ``bindings``,
    ``track_identities``, ``listening_segments``, ``speaker_assignments`` and (optional)
    ``sync_scores``; ``audio``:
    16 kHz mono (`assets.audio.decode.decode_audio`) or None (no sync then).
    """
    spec = TABLES["clips"]
    params = params or ClipParams.from_thresholds()
    sync_models = sync_models or SyncModels()
    binding = binding or BindingParams.from_thresholds(sync_models.backend)
    vision = vision or VisionParams.from_thresholds()
    vid = video["video_id"]
    fps = float(video.get("fps") or 0) or 25.0
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    ft = tables["face_tracks"]
    spans = clip_spans(tables, fps, params, unsynced_turns(tables.get("sync_scores"), binding))
    if not spans:
        return spec.empty()

    idents = dict(tables["track_identities"].select("track_id", "speaker_local").rows())
    units = {int(t): idents.get(t) or f"track:{int(t)}" for t in ft["track_id"].to_list()}
    assigned = dict(tables["speaker_assignments"].select("unit", "speaker_id").rows())
    track_boxes = {int(t): (np.asarray(f, dtype=np.int64), np.asarray(b, dtype=np.float64).reshape(-1, 4)) for t, f, b in ft.select("track_id", "frames", "boxes").rows()}
    sync = clip_sync(spans, ft, audio, fps, video_frames(tables, audio, fps), params=binding, sync_models=sync_models, media_path=media_path)
    rows = []
    for i, s in enumerate(spans):
        start, end = s.f0 / fps, s.f1 / fps
        asr = clip_text(tables["transcripts"], start, end)
        unit = units[s.track_id]
        sy = sync.get(i)
        rows.append(
            {
                "clip_id": clip_id(vid, s.track_id, start),
                "video_id": vid,
                "track_id": s.track_id,
                "speaker_id": assigned.get(unit),
                "speaker_local": s.speaker_local,
                "identity_unit": unit,
                "start_seconds": start,
                "end_seconds": end,
                "duration": s.n_frames / fps,
                "is_talking": s.is_talking,
                "clip_speaker_num": speakers_on_screen(s, ft, units),
                "bbox": clip_bbox(*track_boxes[s.track_id], s.f0, s.f1, width, height, vision),
                "raw_video_width": width,
                "raw_video_height": height,
                "shot_id": s.shot_id,
                "turn_id": s.turn_id,
                "listening_kind": s.listening_kind,
                "partner_speaker_local": s.partner_speaker_local,
                "text": asr.text,
                "words": asr.words,
                "language": asr.language,
                "language_prob": asr.language_prob,
                "avg_logprob": asr.avg_logprob,
                "no_speech_prob": asr.no_speech_prob,
                "compression_ratio": asr.compression_ratio,
                "sync_offset": sy.offset if sy else None,
                "sync_confidence": sy.confidence if sy and math.isfinite(sy.confidence) else None,
                "sync_dist": sy.dist if sy and math.isfinite(sy.dist) else None,
            }
        )
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))
