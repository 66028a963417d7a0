"""Face identities within a video: ArcFace correction of the sync labels.

Within a video (`video_identities`), every face track gets a ``speaker_local`` (or null):

1. *Sync label*: the bound track of a speaker gets that speaker. Any other track gets the
   speaker whose turns it is most in sync with (``synced_confidence``: the binding's
   evidence-weighted aggregate, `assets.binding.assign`) if that reaches the binding floor
   ``min_confidence``; otherwise it has no sync label (a listener, a silent close-up, a
   face whose mouth moved while an off-screen voice spoke).
2. *Centroids*: a speaker's anchor is its bound track's ArcFace embedding (or, if it is
   unbound, the mean of its sync-labelled tracks). Its centroid is the duration-weighted,
   re-normalised mean of the anchor tracks plus the sync-labelled tracks whose cosine to
   the anchor is at least ``outlier_cos``.
3. *Correction*: a sync-labelled track (other than the bound one) whose cosine to its
   speaker's centroid is below ``outlier_cos``, or which is on screen together with that
   speaker's anchor track, is an outlier: it is reassigned to the
   nearest other centroid if that cosine is at least ``same_cos``, else to nobody
   (``reassigned`` = true in both cases).
4. *Propagation*: a track with no sync label joins the nearest centroid with cosine at
   least ``same_cos`` (the same person in another shot, e.g. a close-up after a two-shot,
   who never overlapped their own speech there); else it stays null.
   In steps 3 and 4 a track may never join a speaker whose anchor track is on screen at
   the same time (two faces in one frame are two people).

``cosine`` is the track's cosine to its final speaker's centroid, or, when it has none, to
the nearest centroid (null if the video has no centroid).

Dataset-wide ids are given to these identities by the serialized ``speakers`` asset
(`assets.binding.speaker_ids`).
"""

from __future__ import annotations


import numpy as np
import polars as pl

from assets.binding.assign import EvidenceRule, mark_evidence, pair_scores
from orchestration.tables import TABLES


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else v


def _emb(x) -> np.ndarray | None:
    if x is None:
        return None
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.linalg.norm(a) < 1e-12:
        return None
    return _unit(a)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def video_identities(video_id: str, face_tracks: pl.DataFrame, sync_scores: pl.DataFrame, bindings: pl.DataFrame, *, min_confidence: float, outlier_cos: float, same_cos: float, rule: EvidenceRule = EvidenceRule()) -> pl.DataFrame:
    """``track_identities`` rows of one video (see module doc)."""
    spec = TABLES["track_identities"]
    if face_tracks.is_empty():
        return spec.empty()
    tracks = {
        int(r["track_id"]): {
            "emb": _emb(r["embedding"]),
            "span": (int(r["start_frame"]), int(r["end_frame"])),
            "w": max(float(r["end"]) - float(r["start"]), 1e-3),
        }
        for r in face_tracks.iter_rows(named=True)
    }
    bound = {r["speaker_local"]: int(r["track_id"]) for r in bindings.iter_rows(named=True) if r["track_id"] is not None}
    bound_track = {t: s for s, t in bound.items()}

    # 1. sync labels
    label: dict[int, str] = {}
    evidence = mark_evidence(sync_scores, min_confidence=min_confidence, rule=rule)
    for r in pair_scores(evidence).sort("synced_confidence", "speaker_local", descending=[True, False]).iter_rows(named=True):
        t = int(r["track_id"])
        if t not in label and r["synced_confidence"] >= min_confidence:
            label[t] = r["speaker_local"]
    for t, s in bound_track.items():
        label[t] = s

    # 2. anchors and centroids
    speakers = sorted(set(label.values()))
    anchors: dict[str, list[int]] = {}
    centroids: dict[str, np.ndarray] = {}
    for s in speakers:
        members = [t for t, ls in label.items() if ls == s and tracks.get(t, {}).get("emb") is not None]
        anchor_tracks = [bound[s]] if s in bound and tracks[bound[s]]["emb"] is not None else members
        if not anchor_tracks:
            continue
        anchor = _unit(sum(tracks[t]["w"] * tracks[t]["emb"] for t in anchor_tracks))
        inliers = set(anchor_tracks) | {t for t in members if float(tracks[t]["emb"] @ anchor) >= outlier_cos}
        anchors[s] = anchor_tracks
        centroids[s] = _unit(sum(tracks[t]["w"] * tracks[t]["emb"] for t in sorted(inliers)))

    def allowed(t: int, s: str) -> bool:
        return not any(a != t and _overlaps(tracks[t]["span"], tracks[a]["span"]) for a in anchors.get(s, []))

    def nearest(t: int, exclude: str | None) -> tuple[str | None, float | None]:
        e = tracks[t]["emb"]
        best, best_cos = None, None
        for s in sorted(centroids):
            if s == exclude or not allowed(t, s):
                continue
            c = float(e @ centroids[s])
            if best_cos is None or c > best_cos:
                best, best_cos = s, c
        return best, best_cos

    rows = []
    for t in sorted(tracks):
        e = tracks[t]["emb"]
        s0 = label.get(t)
        final, cos, reassigned = s0, None, False
        if e is None:
            cos = None
        elif t in bound_track:
            cos = float(e @ centroids[s0]) if s0 in centroids else None
        elif s0 is not None and s0 in centroids:
            cos = float(e @ centroids[s0])
            if cos < outlier_cos or not allowed(t, s0):
                alt, alt_cos = nearest(t, exclude=s0)
                reassigned = True
                if alt is not None and alt_cos >= same_cos:
                    final, cos = alt, alt_cos
                else:
                    final = None
        else:
            alt, alt_cos = nearest(t, exclude=None)
            cos = alt_cos
            final = alt if alt is not None and alt_cos >= same_cos else None
        if final is None:
            cos = max((float(e @ c) for c in centroids.values()), default=None) if e is not None else None
        rows.append({"video_id": video_id, "track_id": t, "speaker_local": final, "cosine": cos, "reassigned": reassigned})
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))
