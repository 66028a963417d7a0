"""Face identities: within a video (ArcFace correction of the sync labels) and across the
dataset (``speaker_id`` clusters that new batches join without re-clustering the lake).

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

Across videos (`assign_speaker_ids`): each (video, speaker_local) group of tracks — and
each track with a null speaker_local on its own — is one *unit* with the duration-weighted
mean embedding of its tracks. A unit whose cosine to an existing ``speakers`` centroid is
at least ``threshold`` joins the closest one. The remaining units are clustered among
themselves (average linkage on cosine distance, cut at ``1 - threshold``); each new
cluster gets ``speaker_id = "spk_" + sha1("<video_id>/<track_id>")[:12]`` of its first
member track (smallest (video_id, track_id)), so ids are stable across reruns.
The existing lake is never re-clustered: joined clusters only update their running
centroid (duration-weighted, like `assets.binding.speakers.speakers_rollup`) and counts.
The counts in the upsert are incremental (existing + this batch), so they double-count a
video processed twice; the Dagster asset therefore recomputes the ``speakers`` rows from
all member tracks (`speakers_rollup`) and uses only the ids from here.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
from scipy.cluster.hierarchy import fcluster, linkage

from assets.binding.assign import mark_evidence, pair_scores
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


def video_identities(video_id: str, face_tracks: pl.DataFrame, sync_scores: pl.DataFrame, bindings: pl.DataFrame, *, min_confidence: float, outlier_cos: float, same_cos: float, max_offset: int | None = None, min_margin: float | None = None, min_seconds: float | None = None) -> pl.DataFrame:
    """``track_identities`` rows of one video, ``speaker_id`` left null (see module doc)."""
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
    evidence = mark_evidence(sync_scores, min_confidence=min_confidence, max_offset=max_offset, min_margin=min_margin, min_seconds=min_seconds)
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
        rows.append({"video_id": video_id, "track_id": t, "speaker_local": final, "speaker_id": None, "cosine": cos, "reassigned": reassigned})
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))


# ---------------------------------------------------------------- dataset-wide ids
def track_embedding_columns(face_tracks: pl.DataFrame | pl.LazyFrame):
    """Each track's key, ArcFace embedding and duration (``seconds``)."""
    return face_tracks.select("video_id", "track_id", "embedding", seconds=pl.col("end") - pl.col("start"))


def track_embeddings(track_identities: pl.DataFrame, face_tracks: pl.DataFrame) -> pl.DataFrame:
    """The input of `assign_speaker_ids`: track_identities joined with each track's
    ArcFace embedding and duration (``seconds``)."""
    ft = track_embedding_columns(face_tracks)
    return track_identities.drop("speaker_id", strict=False).join(ft, on=["video_id", "track_id"], how="left")


def speaker_id_for(video_id: str, track_id: int) -> str:
    return "spk_" + hashlib.sha1(f"{video_id}/{int(track_id)}".encode()).hexdigest()[:12]


def assign_speaker_ids(track_embeddings_df: pl.DataFrame, existing_speakers_df: pl.DataFrame | None, threshold: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Dataset-wide ``speaker_id`` for a batch of tracks (see module doc).

    ``track_embeddings_df``: video_id, track_id, speaker_local (nullable), embedding,
    seconds, and optionally cosine/reassigned (carried through). Returns
    ``(track_identities rows with speaker_id, speakers rows to MERGE)``; the upsert holds
    every cluster this batch created or joined, with its updated centroid and counts.
    Tracks without a usable embedding get a null speaker_id.
    """
    ti_spec, sp_spec = TABLES["track_identities"], TABLES["speakers"]
    df = track_embeddings_df
    for col, dtype in (("speaker_local", pl.String), ("cosine", pl.Float64), ("reassigned", pl.Boolean), ("seconds", pl.Float64)):
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(col))
    df = df.sort("video_id", "track_id")
    existing = existing_speakers_df if existing_speakers_df is not None else sp_spec.empty()
    existing = existing.sort("speaker_id")
    ex_ids = existing["speaker_id"].to_list()
    ex_c = np.array([_unit(np.asarray(c, dtype=np.float64)) for c in existing["centroid"].to_list()]) if len(ex_ids) else np.zeros((0, 0))

    # units: (video, speaker_local) groups and null-label singletons
    units: dict[tuple, list[dict]] = {}
    for r in df.iter_rows(named=True):
        e = _emb(r["embedding"])
        if e is None:
            continue
        key = (r["video_id"], "s", r["speaker_local"]) if r["speaker_local"] is not None else (r["video_id"], "t", str(r["track_id"]))
        units.setdefault(key, []).append({**r, "emb": e, "w": max(float(r["seconds"] or 0.0), 1e-3)})
    ukeys = sorted(units)
    uemb = np.array([_unit(sum(m["w"] * m["emb"] for m in units[k])) for k in ukeys]) if ukeys else np.zeros((0, 0))

    unit_spk: dict[tuple, str] = {}
    rest = []
    for i, k in enumerate(ukeys):
        if len(ex_ids):
            sims = ex_c @ uemb[i]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                unit_spk[k] = ex_ids[j]
                continue
        rest.append(i)
    if len(rest) == 1:
        labels = np.array([1])
    elif rest:
        z = linkage(uemb[rest], method="average", metric="cosine")
        labels = fcluster(z, t=1.0 - threshold, criterion="distance")
    else:
        labels = np.array([], dtype=int)
    clusters: dict[int, list[int]] = {}
    for i, lab in zip(rest, labels):
        clusters.setdefault(int(lab), []).append(i)
    for members in clusters.values():
        first = min((m["video_id"], int(m["track_id"])) for i in members for m in units[ukeys[i]])
        sid = speaker_id_for(*first)
        for i in members:
            unit_spk[ukeys[i]] = sid

    # identities
    track_spk = {(m["video_id"], int(m["track_id"])): unit_spk[k] for k in ukeys for m in units[k]}
    ti = df.with_columns(
        speaker_id=pl.Series([track_spk.get((v, int(t))) for v, t in zip(df["video_id"], df["track_id"])], dtype=pl.String)
    ).select(list(ti_spec.schema))
    ti = ti_spec.conform(ti)

    # speakers upsert
    ex_rows = {r["speaker_id"]: r for r in existing.iter_rows(named=True)}
    agg: dict[str, dict] = {}
    for k in ukeys:
        sid = unit_spk[k]
        a = agg.setdefault(sid, {"sum": 0.0, "n": 0, "sec": 0.0, "videos": set()})
        for m in units[k]:
            a["sum"] = a["sum"] + m["w"] * m["emb"]
            a["n"] += 1
            a["sec"] += float(m["seconds"] or 0.0)
            a["videos"].add(m["video_id"])
    rows = []
    for sid in sorted(agg):
        a = agg[sid]
        old = ex_rows.get(sid)
        if old is not None:
            n_old = int(old["n_tracks"] or 0)
            w_old = max(float(old["seconds"] or 0.0), 1e-3 * n_old)
            c = _unit(_unit(np.asarray(old["centroid"], dtype=np.float64)) * w_old + a["sum"])
            rows.append({"speaker_id": sid, "centroid": c.astype(np.float32).tolist(), "n_videos": int(old["n_videos"] or 0) + len(a["videos"]), "n_tracks": n_old + a["n"], "seconds": float(old["seconds"] or 0.0) + a["sec"]})
        else:
            c = _unit(a["sum"])
            rows.append({"speaker_id": sid, "centroid": c.astype(np.float32).tolist(), "n_videos": len(a["videos"]), "n_tracks": a["n"], "seconds": a["sec"]})
    sp = sp_spec.conform(pl.DataFrame(rows, schema=sp_spec.polars_schema)) if rows else sp_spec.empty()
    return ti, sp
