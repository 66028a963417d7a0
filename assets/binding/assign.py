"""Voice -> face binding: each diarized speaker gets at most one face track, one-to-one
within a video (Hungarian assignment), and only on positive sync evidence.

*Evidence* (`mark_evidence`): a sync row (one track over one turn) is evidence that the
track's mouth speaks with that voice when it covers at least ``min_seconds`` (shorter
windows hold less than one high-pass window of both signals, and a moving listener's
mouth then correlates with any voice by chance: 0.84 on a 0.84 s window of hard_b), and
its confidence reaches ``min_confidence`` at a plausible offset (``|offset| <= max_offset`` frames: real lips lead or trail their voice
by a few frames, never by 9; LatentSync's data filter uses 6) and clearly beats the other
faces on screen over the same speech (``confidence - rival >= min_margin``, the rival
being the best other track whose row on the same turn overlaps this one in time). A
listener whose mouth moves while silent (smiles, nods, murmurs) may correlate with a voice
by chance, but at a random offset and no better than the other listeners: not evidence.

Aggregation over a (speaker, track) pair's rows (all turns of the speaker the track
overlaps): ``shared_seconds`` = summed overlap, ``confidence`` = time-weighted mean sync
confidence, ``synced_seconds`` = seconds of evidence rows and ``synced_confidence`` =
time-weighted mean confidence counting non-evidence rows as 0. The assignment maximises
the summed *shrunk* score ``synced_confidence * shared / (shared + prior_s)``, so a track
seen for one lucky second cannot beat one seen for a whole conversation at a similar
confidence. A pair is accepted only if its ``synced_confidence`` is at least
``min_confidence``; the bound row reports that value as ``confidence``.

Unbound speakers keep a row with ``track_id`` null and a ``reason``:

- ``no_visible_face``: no face track overlaps any of their turns long enough to score,
- ``no_synced_face``: faces were on screen during their speech, but no mouth showed sync
  evidence for it (a voice that is never on screen: a host or audience member off camera),
- ``low_confidence``: some rows are evidence, but the best track's ``synced_confidence``
  stays below ``min_confidence`` (``confidence``/``shared_seconds`` describe that track),
- ``track_taken``: every track with evidence for them went to another speaker who fits it
  better (one-to-one).
Bound speakers have ``reason`` null.

An :class:`EvidenceRule` field left None (direct callers only; the pipeline always passes
the settings, `BindingParams.evidence`) skips that check: every row at or above
``min_confidence`` counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from orchestration.tables import TABLES


@dataclass(frozen=True)
class EvidenceRule:
    """When a sync row is evidence that a mouth speaks with a voice, beyond its confidence:
    a plausible offset, a clear margin over the other faces on screen, a long enough window.
    None skips that check."""

    max_offset: int | None = None  # |offset| in video frames
    min_margin: float | None = None  # confidence minus the best rival's
    min_seconds: float | None = None  # window length


def mark_evidence(sync_scores: pl.DataFrame, *, min_confidence: float, rule: EvidenceRule = EvidenceRule()) -> pl.DataFrame:
    """``sync_scores`` plus ``rival`` (best confidence of another track over an overlapping
    part of the same turn, 0 when alone on screen) and ``synced`` (the row is evidence)."""
    if sync_scores.is_empty():
        return sync_scores.with_columns(rival=pl.lit(None, pl.Float64), synced=pl.lit(None, pl.Boolean))
    rows = sync_scores.select("track_id", "turn_id", "start", "end", "confidence").rows()
    rival = []
    for t, k, a, b, _ in rows:
        others = [c for t2, k2, a2, b2, c in rows if k2 == k and t2 != t and a2 < b and a < b2]
        rival.append(max(others) if others else 0.0)
    out = sync_scores.with_columns(rival=pl.Series(rival, dtype=pl.Float64))
    synced = pl.col("confidence") >= min_confidence
    if rule.max_offset is not None:
        synced = synced & (pl.col("offset").abs() <= rule.max_offset)
    if rule.min_margin is not None:
        synced = synced & (pl.col("confidence") - pl.col("rival") >= rule.min_margin)
    if rule.min_seconds is not None:
        synced = synced & (pl.col("end") - pl.col("start") >= rule.min_seconds - 1e-9)
    return out.with_columns(synced=synced)


def pair_scores(evidence: pl.DataFrame) -> pl.DataFrame:
    """(speaker_local, track_id) -> shared_seconds, confidence (time-weighted mean),
    synced_seconds, synced_confidence (non-evidence rows count 0), n_turns. Rows without a
    ``synced`` column (plain sync_scores) all count as evidence."""
    if evidence.is_empty():
        return pl.DataFrame(schema={"speaker_local": pl.String, "track_id": pl.Int32, "shared_seconds": pl.Float64, "confidence": pl.Float64, "synced_seconds": pl.Float64, "synced_confidence": pl.Float64, "n_turns": pl.UInt32})
    w = pl.col("end") - pl.col("start")
    ok = pl.col("synced").cast(pl.Float64) if "synced" in evidence.columns else pl.lit(1.0)
    return (
        evidence.group_by("speaker_local", "track_id")
        .agg(
            shared_seconds=w.sum(),
            confidence=(pl.col("confidence") * w).sum() / w.sum(),
            synced_seconds=(w * ok).sum(),
            synced_confidence=(pl.col("confidence") * w * ok).sum() / w.sum(),
            n_turns=pl.len(),
        )
        .sort("speaker_local", "track_id")
    )


def bind_speakers(video_id: str, speakers: list[str], sync_scores: pl.DataFrame, *, min_confidence: float, prior_s: float, rule: EvidenceRule = EvidenceRule()) -> pl.DataFrame:
    """The ``bindings`` rows of one video (one per speaker in ``speakers``)."""
    spec = TABLES["bindings"]
    speakers = sorted(set(speakers))
    pairs = pair_scores(mark_evidence(sync_scores, min_confidence=min_confidence, rule=rule))
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
                if r is not None and r["synced_confidence"] >= min_confidence:
                    cost[i, j] = -r["synced_confidence"] * r["shared_seconds"] / (r["shared_seconds"] + prior_s)
        from scipy.optimize import linear_sum_assignment  # here: the code location loads without SciPy (envelope.py)

        ri, ci = linear_sum_assignment(cost)
        for i, j in zip(ri, ci):
            if cost[i, j] < big:
                assigned[speakers[i]] = tracks[j]
    for s in speakers:
        cands = [r for (sp, _), r in by_pair.items() if sp == s]
        if s in assigned:
            r = by_pair[(s, assigned[s])]
            rows.append({"video_id": video_id, "speaker_local": s, "track_id": assigned[s], "confidence": r["synced_confidence"], "shared_seconds": r["shared_seconds"], "reason": None})
        elif not cands:
            rows.append({"video_id": video_id, "speaker_local": s, "track_id": None, "confidence": None, "shared_seconds": 0.0, "reason": "no_visible_face"})
        else:
            best = max(cands, key=lambda r: (r["synced_confidence"] * r["shared_seconds"] / (r["shared_seconds"] + prior_s), r["confidence"], -r["track_id"]))
            if all(r["synced_seconds"] <= 0 for r in cands):
                reason = "no_synced_face"
            elif all(r["synced_confidence"] < min_confidence for r in cands):
                reason = "low_confidence"
            else:
                reason = "track_taken"
            rows.append({"video_id": video_id, "speaker_local": s, "track_id": None, "confidence": best["confidence"], "shared_seconds": best["shared_seconds"], "reason": reason})
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))
