"""Entry points of the binding stage.

- `analyze_binding` (per video): sync_scores, bindings, track_identities, identity_units
  (what dataset-wide ids are given to, by the serialized ``speakers`` asset:
  `assets.binding.speaker_ids`) and listening_segments.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from assets.binding.assign import bind_speakers
from assets.binding.envelope import SAMPLE_RATE
from assets.binding.identity import video_identities
from assets.binding.speaker_ids import identity_units
from assets.binding.listening import listening_frames, merge_spans
from assets.binding.params import BindingParams
from assets.binding.sync import SyncModels, score_windows, sync_scores_frame, sync_windows
from orchestration.tables import TABLES

OUTPUTS = ("sync_scores", "bindings", "track_identities", "identity_units", "listening_segments")


@dataclass
class BindingStats:
    sync: float = 0.0
    bind: float = 0.0
    identity: float = 0.0
    listening: float = 0.0
    total: float = 0.0


def video_fps(tables: dict[str, pl.DataFrame], default: float = 25.0) -> float:
    """Frame rate implied by the vision tables (frame index / seconds)."""
    for name in ("shots", "face_tracks"):
        df = tables.get(name)
        if df is not None and not df.is_empty():
            d = df.filter(pl.col("end") > pl.col("start"))
            if not d.is_empty():
                r = ((d["end_frame"] - d["start_frame"]) / (d["end"] - d["start"])).median()
                if r and math.isfinite(r) and r > 0:
                    return float(r)
    return default


def video_frames(tables: dict[str, pl.DataFrame], audio: np.ndarray | None, fps: float) -> int:
    n = 0
    for name in ("shots", "face_tracks"):
        df = tables.get(name)
        if df is not None and not df.is_empty():
            n = max(n, int(df["end_frame"].max()))
    if audio is not None and len(audio):
        n = max(n, int(math.ceil(len(audio) / SAMPLE_RATE * fps)))
    return n


def _table(tables: dict[str, pl.DataFrame], name: str) -> pl.DataFrame:
    df = tables.get(name)
    return df if df is not None else TABLES[name].empty()


def analyze_binding(
    video_id: str,
    audio: np.ndarray | None,
    tables: dict[str, pl.DataFrame],
    *,
    params: BindingParams | None = None,
    sync_models: SyncModels | None = None,
    media_path: str | Path | None = None,
    fps: float | None = None,
    stats: BindingStats | None = None,
) -> dict[str, pl.DataFrame]:
    """Binding tables of one video.

    ``audio``: the video's 16 kHz mono waveform (`assets.audio.decode.decode_audio`), or
    None (or its ``NoAudio``) when it has none: then no sync, no bindings, identities
    without speakers and no listening. ``tables``: that video's ``face_tracks``, ``shots``,
    ``speaker_turns``, ``video_speakers`` and ``transcripts``. ``sync_models``: the lip-sync backend
    (`assets.binding.sync.load_sync_models`; default ``mouth``); ``syncnet`` also needs ``media_path``.
    """
    sync_models = sync_models or SyncModels()
    backend = sync_models.backend
    params = params or BindingParams.from_thresholds(backend)
    stats = stats if stats is not None else BindingStats()
    t_start = time.perf_counter()
    tracks = _table(tables, "face_tracks")
    turns = _table(tables, "speaker_turns")
    transcripts = _table(tables, "transcripts")
    vs = _table(tables, "video_speakers")
    if not isinstance(audio, np.ndarray) or audio.size == 0:  # None or a decode_audio NoAudio
        audio = None
        turns = turns.clear()
    fps = fps or video_fps(tables)
    n_frames = video_frames(tables, audio, fps)

    t0 = time.perf_counter()
    windows = sync_windows(tracks, turns, fps, min_overlap_s=params.sync_min_overlap_s, trim_s=params.sync_turn_trim_s)
    results = score_windows(windows, tracks, audio, fps, n_frames, params=params, sync_models=sync_models, media_path=media_path)
    sync = sync_scores_frame(video_id, windows, results, fps)
    t1 = time.perf_counter()
    stats.sync = t1 - t0

    speakers = sorted(set(vs["speaker_local"].to_list()) | set(turns["speaker_local"].to_list())) if audio is not None else []
    bindings = bind_speakers(
        video_id,
        speakers,
        sync,
        min_confidence=params.bind_min_confidence,
        prior_s=params.bind_prior_s,
        rule=params.evidence(),
    )
    t2 = time.perf_counter()
    stats.bind = t2 - t1

    identities = video_identities(
        video_id,
        tracks,
        sync,
        bindings,
        min_confidence=params.bind_min_confidence,
        outlier_cos=params.identity_outlier_cos,
        same_cos=params.identity_same_cos,
        rule=params.evidence(),
    )
    t3 = time.perf_counter()
    stats.identity = t3 - t2

    labels = listening_frames(
        tracks,
        turns,
        sync,
        bindings,
        identities,
        transcripts,
        fps,
        n_frames,
        min_gap=params.listen_min_gap,
        speaker_min_conf=params.bind_min_confidence,
        max_sync=params.listen_max_sync,
        asr_min_logprob=params.listen_asr_min_logprob,
        rule=params.evidence(),
    )
    listening = merge_spans(video_id, labels, fps, merge_gap_s=params.listen_merge_gap_s, min_s=params.listen_min_s)
    stats.listening = time.perf_counter() - t3
    stats.total = time.perf_counter() - t_start
    units = identity_units(identities, tracks)
    return {"sync_scores": sync, "bindings": bindings, "track_identities": identities, "identity_units": units, "listening_segments": listening}
