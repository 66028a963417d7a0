"""Voice -> face binding: each diarized speaker gets at most one face track, one-to-one
within a video (Hungarian assignment).

Aggregation over a (speaker, track) pair's sync rows (all turns of the speaker the track
overlaps): ``shared_seconds`` = summed overlap, ``confidence`` = time-weighted mean sync
confidence. The assignment maximises the summed *shrunk* score
``confidence * shared / (shared + prior_s)``, so a track seen for one lucky second cannot
beat one seen for a whole conversation at a similar confidence. A pair is accepted only if
its mean confidence is at least ``min_confidence``.

Unbound speakers keep a row with ``track_id`` null and a ``reason``:

- ``no_visible_face``: no face track overlaps any of their turns long enough to score,
- ``low_confidence``: the best available track's confidence is below ``min_confidence``
  (``confidence``/``shared_seconds`` then describe that track),
- ``track_taken``: every track with evidence for them went to another speaker who fits it
  better (one-to-one).
Bound speakers have ``reason`` null.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.optimize import linear_sum_assignment

from orchestration.tables import TABLES


def pair_scores(sync_scores: pl.DataFrame) -> pl.DataFrame:
    """(speaker_local, track_id) -> shared_seconds, confidence (time-weighted mean), n_turns."""
    if sync_scores.is_empty():
        return pl.DataFrame(schema={"speaker_local": pl.String, "track_id": pl.Int32, "shared_seconds": pl.Float64, "confidence": pl.Float64, "n_turns": pl.UInt32})
    w = pl.col("end") - pl.col("start")
    return (
        sync_scores.group_by("speaker_local", "track_id")
        .agg(
            shared_seconds=w.sum(),
            confidence=(pl.col("confidence") * w).sum() / w.sum(),
            n_turns=pl.len(),
        )
        .sort("speaker_local", "track_id")
    )


def bind_speakers(video_id: str, speakers: list[str], sync_scores: pl.DataFrame, *, min_confidence: float, prior_s: float) -> pl.DataFrame:
    """The ``bindings`` rows of one video (one per speaker in ``speakers``)."""
    spec = TABLES["bindings"]
    speakers = sorted(set(speakers))
    pairs = pair_scores(sync_scores)
    tracks = sorted(set(pairs["track_id"].to_list()))
    rows = []
    if not speakers:
        return spec.empty()
    by_pair = {(r["speaker_local"], r["track_id"]): r for r in pairs.iter_rows(named=True)}
    assigned: dict[str, int] = {}
    if tracks:
        big = 1e6
        cost = np.full((len(speakers), len(tracks)), big)
        for i, s in enumerate(speakers):
            for j, t in enumerate(tracks):
                r = by_pair.get((s, t))
                if r is not None and r["confidence"] >= min_confidence:
                    cost[i, j] = -r["confidence"] * r["shared_seconds"] / (r["shared_seconds"] + prior_s)
        ri, ci = linear_sum_assignment(cost)
        for i, j in zip(ri, ci):
            if cost[i, j] < big:
                assigned[speakers[i]] = tracks[j]
    for s in speakers:
        cands = [r for (sp, _), r in by_pair.items() if sp == s]
        if s in assigned:
            r = by_pair[(s, assigned[s])]
            rows.append({"video_id": video_id, "speaker_local": s, "track_id": assigned[s], "confidence": r["confidence"], "shared_seconds": r["shared_seconds"], "reason": None})
        elif not cands:
            rows.append({"video_id": video_id, "speaker_local": s, "track_id": None, "confidence": None, "shared_seconds": 0.0, "reason": "no_visible_face"})
        else:
            best = max(cands, key=lambda r: (r["confidence"] * r["shared_seconds"] / (r["shared_seconds"] + prior_s), -r["track_id"]))
            reason = "low_confidence" if all(r["confidence"] < min_confidence for r in cands) else "track_taken"
            rows.append({"video_id": video_id, "speaker_local": s, "track_id": None, "confidence": best["confidence"], "shared_seconds": best["shared_seconds"], "reason": reason})
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))
