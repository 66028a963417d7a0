"""SyncNet-style audio-visual sync of face tracks against speaker turns.

For every (face track, speaker turn) pair whose overlap is at least ``min_overlap_s`` we
score the track's frames inside the turn against the audio, over offsets ``s`` in
``[-max_offset, +max_offset]`` video frames, and summarise the curve the way SyncNet does
(`syncnet_python`'s ``SyncNetInstance.evaluate``):

- a distance curve ``d(s)`` (one value per candidate shift, averaged over the window),
- ``offset = -argmin_s d(s)``: SyncNet's sign convention — the video frame ``i`` is
  compared with audio at ``i + s`` and the reported offset is ``-s``; so **offset > 0 means
  the audio leads the video** by that many frames, 0 means in sync,
- ``confidence = median_s d(s) - min_s d(s)`` (peak over the background of the curve),
- ``dist = min_s d(s)`` (the distance at the best shift).

Backends (setting ``sync_backend``, env ``SPEAKERLAKE_SYNC_BACKEND``):

``mouth`` (default, offline, no extra model): ``d(s) = 1 - r(s)`` where ``r(s)`` is the
Pearson correlation between the track's high-passed mouth-opening signal and the
high-passed speech envelope shifted by ``s`` frames (`assets.binding.envelope`), with the
mouth's standard deviation floored at ``sync_mouth_floor`` (in mouth_open units, lip gap /
face height) so a still mouth cannot reach a high correlation by chance. So
``dist`` is in [0, 2] (0 = perfectly correlated), ``confidence = max r - median r`` is in
[0, 2]. Measured on the demo corpus (diarized turns): the true speaker's track 0.57-1.2
(mean 0.97, offset within +-1 frame for 97 % of the time), other faces 0.0-0.5 (mean 0.13;
the high end is overlapped speech, where both mouths move). These numbers are NOT on
SyncNet's scale (its confidences run 0-~12 and its distances ~5-15); thresholds are per
backend (``*_syncnet`` rows in sql/thresholds.csv).

Windows: each diarized turn is trimmed by ``sync_turn_trim_s`` at both ends (see
`sync_windows`) and intersected with the track; the audio side may reach outside the
window by up to ``max_offset`` frames, so every shift is scored on the same video frames.

``syncnet``: the original SyncNet network on face crops and MFCCs
(`assets.binding.syncnet`), weights from the ``syncnet_weights`` setting (``SPEAKERLAKE_SYNCNET_WEIGHTS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from assets.binding.envelope import fill_nan, highpass, speech_envelope
from orchestration.settings import MissingSettingError, setting_label
from orchestration.tables import TABLES

BACKENDS = ("mouth", "syncnet")


@dataclass(frozen=True)
class SyncWindow:
    """Frames ``[f0, f1)`` of ``track_id`` inside ``turn_id`` (video frame indices)."""

    track_id: int
    turn_id: int
    speaker_local: str
    f0: int
    f1: int


@dataclass(frozen=True)
class SyncResult:
    offset: int
    confidence: float
    dist: float


@dataclass(frozen=True)
class SyncModels:
    """The lip-sync backend of a run: ``mouth`` needs no model, ``syncnet`` its loaded network."""

    backend: str = "mouth"
    syncnet: object | None = None


def load_sync_models(backend: str | None, syncnet_weights: str | None = None) -> SyncModels:
    """Check the backend name (the ``sync_backend`` setting) and load what it needs; fails
    naming the setting (``syncnet_weights`` for the syncnet backend)."""
    name = (backend or "mouth").strip().lower()
    if name not in BACKENDS:
        raise MissingSettingError(f"{setting_label('sync_backend')} = {name!r}: expected one of {BACKENDS}")
    if name == "syncnet":
        from assets.binding.syncnet import load_syncnet

        return SyncModels(name, load_syncnet(syncnet_weights))
    return SyncModels(name)


def summarise_curve(dists: np.ndarray, max_offset: int) -> SyncResult:
    """SyncNet's summary of a distance curve indexed by shift ``s = i - max_offset``."""
    d = np.asarray(dists, dtype=np.float64)
    i = int(np.argmin(d))
    return SyncResult(offset=max_offset - i, confidence=float(np.median(d) - d[i]), dist=float(d[i]))


def _shifted(x: np.ndarray, a: int, b: int, s: int) -> np.ndarray:
    """``x[a+s : b+s]`` with zeros outside ``x``."""
    out = np.zeros(b - a, dtype=np.float64)
    lo, hi = max(a + s, 0), min(b + s, x.size)
    if hi > lo:
        out[lo - (a + s) : hi - (a + s)] = x[lo:hi]
    return out


def correlation_curve(mouth: np.ndarray, env: np.ndarray, f0: int, max_offset: int, *, mouth_floor: float = 0.0) -> np.ndarray:
    """Correlation between ``mouth`` (the window's frames, starting at video frame ``f0``)
    and ``env[f0+s : f0+s+len(mouth)]`` for s = -max_offset..max_offset.

    Pearson r, except that the mouth's standard deviation in the denominator is floored
    at ``mouth_floor``: a mouth that barely moves (a still listener: landmark jitter only)
    scores near 0 at every shift instead of a full-scale noisy curve."""
    m = np.asarray(mouth, dtype=np.float64)
    m = m - m.mean()
    mn = max(float(np.linalg.norm(m)), mouth_floor * np.sqrt(m.size))
    r = np.zeros(2 * max_offset + 1)
    if mn < 1e-12:
        return r
    for i, s in enumerate(range(-max_offset, max_offset + 1)):
        e = _shifted(env, f0, f0 + m.size, s)
        e = e - e.mean()
        en = float(np.linalg.norm(e))
        r[i] = float(m @ e) / (mn * en) if en > 1e-12 else 0.0
    return r


def frame_centres(frames: np.ndarray, fps: float) -> np.ndarray:
    return (np.asarray(frames, dtype=np.float64) + 0.5) / fps


def sync_windows(face_tracks: pl.DataFrame, speaker_turns: pl.DataFrame, fps: float, *, min_overlap_s: float, trim_s: float = 0.0) -> list[SyncWindow]:
    """Every (track, turn) overlap of at least ``min_overlap_s``, in video frames.

    Each turn is first trimmed by up to ``trim_s`` at both ends (less if that would leave
    it shorter than ``min_overlap_s``): diarized turn edges are uncertain by a few hundred
    ms, and the neighbouring speaker's mouth moving inside a loose edge would otherwise
    count as sync with this turn's voice."""
    out: list[SyncWindow] = []
    if face_tracks.is_empty() or speaker_turns.is_empty():
        return out
    turns = []
    for turn_id, spk, ts, te in speaker_turns.sort("turn_id").select("turn_id", "speaker_local", "start", "end").rows():
        tr = min(max((te - ts - min_overlap_s) / 2.0, 0.0), trim_s)
        turns.append((turn_id, spk, ts + tr, te - tr))
    for t in face_tracks.sort("track_id").select("track_id", "start_frame", "end_frame").iter_rows(named=True):
        a, b = int(t["start_frame"]), int(t["end_frame"])
        for turn_id, spk, ts, te in turns:
            # frames whose centre lies inside the turn
            f0 = max(a, int(np.ceil(ts * fps - 0.5)))
            f1 = min(b, int(np.ceil(te * fps - 0.5)))
            if f1 - f0 >= max(2, int(round(min_overlap_s * fps))):
                out.append(SyncWindow(int(t["track_id"]), int(turn_id), str(spk), f0, f1))
    return out


def track_mouth_signals(face_tracks: pl.DataFrame, *, hp_frames: int) -> dict[int, tuple[int, np.ndarray]]:
    """track_id -> (first frame, high-passed mouth signal on consecutive frames)."""
    out = {}
    for t in face_tracks.select("track_id", "frames", "mouth_open").iter_rows(named=True):
        frames = np.asarray(t["frames"] or [], dtype=np.int64)
        vals = np.asarray(t["mouth_open"] or [], dtype=np.float64)
        if frames.size == 0 or vals.size != frames.size:
            continue
        f0 = int(frames.min())
        dense = np.full(int(frames.max()) - f0 + 1, np.nan)
        dense[frames - f0] = vals
        out[int(t["track_id"])] = (f0, highpass(fill_nan(dense), hp_frames))
    return out


def mouth_sync(windows: list[SyncWindow], face_tracks: pl.DataFrame, audio: np.ndarray, fps: float, n_frames: int, *, max_offset: int, hp_frames: int, smooth_frames: int, mouth_floor: float) -> dict[tuple[int, int], SyncResult]:
    """The ``mouth`` backend: (track_id, turn_id) -> SyncResult."""
    env = highpass(speech_envelope(audio, fps, n_frames, smooth_frames=smooth_frames), hp_frames)
    mouths = track_mouth_signals(face_tracks, hp_frames=hp_frames)
    out = {}
    for w in windows:
        if w.track_id not in mouths:
            continue
        t0, m = mouths[w.track_id]
        seg = m[w.f0 - t0 : w.f1 - t0]
        r = correlation_curve(seg, env, w.f0, max_offset, mouth_floor=mouth_floor)
        out[(w.track_id, w.turn_id)] = summarise_curve(1.0 - r, max_offset)
    return out


def score_windows(
    windows: list[SyncWindow],
    face_tracks: pl.DataFrame,
    audio: np.ndarray,
    fps: float,
    n_frames: int,
    *,
    params,
    sync_models: SyncModels | None = None,
    media_path=None,
) -> dict[tuple[int, int], SyncResult]:
    """(track_id, turn_id) -> SyncResult of each window with the configured backend (``mouth``
    when ``sync_models`` is None); ``params`` carries the sync_* thresholds (BindingParams).
    The one place the binding stage, the clips stage and the VidChatBench evaluator score sync."""
    if not windows:
        return {}
    if sync_models is not None and sync_models.backend == "syncnet":
        from assets.binding.syncnet import syncnet_sync

        if media_path is None:
            raise ValueError("the syncnet sync backend needs media_path (it reads face crops from the video)")
        return syncnet_sync(windows, face_tracks, audio, media_path, fps, max_offset=params.sync_max_offset, net=sync_models.syncnet, max_side=params.decode_max_side)
    return mouth_sync(
        windows,
        face_tracks,
        audio,
        fps,
        n_frames,
        max_offset=params.sync_max_offset,
        hp_frames=max(3, int(round(params.sync_highpass_s * fps))),
        smooth_frames=params.sync_smooth_frames,
        mouth_floor=params.sync_mouth_floor,
    )


def sync_scores_frame(video_id: str, windows: list[SyncWindow], results: dict[tuple[int, int], SyncResult], fps: float) -> pl.DataFrame:
    spec = TABLES["sync_scores"]
    rows = []
    for w in windows:
        res = results.get((w.track_id, w.turn_id))
        if res is None:
            continue
        rows.append(
            {
                "video_id": video_id,
                "track_id": w.track_id,
                "turn_id": w.turn_id,
                "speaker_local": w.speaker_local,
                "start": w.f0 / fps,
                "end": w.f1 / fps,
                "offset": res.offset,
                "confidence": res.confidence,
                "dist": res.dist,
            }
        )
    if not rows:
        return spec.empty()
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))
