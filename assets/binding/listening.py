"""Listening spans (SpeakerVid-5M §3.3), decided per video frame, then merged into spans.

At a frame (centre time ``(j + 0.5) / fps``) with exactly one active voice — one diarized
speaker ``S`` whose turn ``k`` covers it, no other speaker's turn covering it — and the
visible face tracks ``V``:

**co_present** (two or more faces in frame): the *speaker's track* is the visible track
whose identity is ``S`` (bound, or ArcFace-propagated `track_identities`); failing that,
the visible track most in sync with turn ``k`` if it shows sync evidence for it (confidence
at least ``speaker_min_conf`` at a plausible offset, ``|offset| <= max_offset``, over at
least ``min_seconds``, and at least ``min_margin`` above every other visible track), its
identity is not another speaker and ``S`` is not a voice the binding found no synced face
for (``no_synced_face``: an off-screen voice has no track on screen). Every other visible track ``L`` that is not
``S`` and whose sync confidence over turn ``k`` is at least ``min_gap`` below the speaker
track's is *listening*; ``confidence_gap`` is that difference, ``speaker_track_id`` the
speaker's track.

**not_co_present** (one face in frame, or several but none of them is the speaker — e.g.
a third person speaking off screen): a visible track ``L`` is *listening* when ASR is
valid at that time (a transcript segment covering the frame with ``avg_logprob >=
asr_min_logprob``), ``L`` is neither ``S``'s bound track nor identified as ``S``, and
either ``L`` is identified as another speaker (a known face cannot be this voice's) or
``L`` shows no sync evidence for turn ``k`` (confidence below ``max_sync``, or at an
implausible offset, or over less than ``min_seconds``: a listener's mouth moving while
silent is not speech).
``speaker_track_id`` and ``confidence_gap`` are null.

A track whose overlap with turn ``k`` was too short to be scored (no ``sync_scores`` row)
is not labelled. Frames with silence or overlapping voices are never labelled.

Frames with the same (track, kind, speaker, speaker track) are joined into spans; spans
separated by at most ``merge_gap_s`` are merged, and spans shorter than ``min_s`` dropped.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from assets.binding.assign import EvidenceRule
from orchestration.tables import TABLES


def _covering(intervals: list[tuple[float, float]], centres: np.ndarray) -> list[list[int]]:
    """For each frame centre, the indices of the intervals [start, end) covering it."""
    out: list[list[int]] = [[] for _ in range(len(centres))]
    for i, (s, e) in enumerate(intervals):
        lo, hi = np.searchsorted(centres, s, "left"), np.searchsorted(centres, e, "left")
        for j in range(lo, hi):
            out[j].append(i)
    return out


def listening_frames(
    face_tracks: pl.DataFrame,
    speaker_turns: pl.DataFrame,
    sync_scores: pl.DataFrame,
    bindings: pl.DataFrame,
    track_identities: pl.DataFrame,
    transcripts: pl.DataFrame | None,
    fps: float,
    n_frames: int,
    *,
    min_gap: float,
    speaker_min_conf: float,
    max_sync: float,
    asr_min_logprob: float,
    rule: EvidenceRule = EvidenceRule(),
) -> list[dict]:
    """Per-frame listening labels: dicts with frame, track_id, kind, speaker_local,
    speaker_track_id, gap."""
    if face_tracks.is_empty() or speaker_turns.is_empty() or n_frames <= 0:
        return []
    centres = (np.arange(n_frames) + 0.5) / fps
    turns = speaker_turns.sort("turn_id").select("turn_id", "speaker_local", "start", "end").rows()
    turn_cov = _covering([(t[2], t[3]) for t in turns], centres)
    asr_ok = np.zeros(n_frames, dtype=bool)
    if transcripts is not None and not transcripts.is_empty():
        good = transcripts.filter((pl.col("avg_logprob") >= asr_min_logprob) & (pl.col("text").str.strip_chars().str.len_chars() > 0))
        for s, e in good.select("start", "end").rows():
            asr_ok[np.searchsorted(centres, s, "left") : np.searchsorted(centres, e, "left")] = True
    spans = face_tracks.select("track_id", "start_frame", "end_frame").rows()
    visible: list[list[int]] = [[] for _ in range(n_frames)]
    for t, a, b in spans:
        for j in range(max(int(a), 0), min(int(b), n_frames)):
            visible[j].append(int(t))
    conf = {(int(t), int(k)): float(c) for t, k, c in sync_scores.select("track_id", "turn_id", "confidence").rows()}
    offset = {(int(t), int(k)): int(o) for t, k, o in sync_scores.select("track_id", "turn_id", "offset").rows()}
    seconds = {(int(t), int(k)): float(b - a) for t, k, a, b in sync_scores.select("track_id", "turn_id", "start", "end").rows()}
    bound = {s: int(t) for s, t in bindings.select("speaker_local", "track_id").rows() if t is not None}
    unsynced = {s for s, r in bindings.select("speaker_local", "reason").rows() if r == "no_synced_face"}
    ident = {int(t): s for t, s in track_identities.select("track_id", "speaker_local").rows()}

    def plausible(t: int, k: int) -> bool:
        """The row's best offset is one real lips show, over a window long enough to tell."""
        return (rule.max_offset is None or abs(offset[(t, k)]) <= rule.max_offset) and (rule.min_seconds is None or seconds[(t, k)] >= rule.min_seconds - 1e-9)

    out = []
    for j in range(n_frames):
        V = sorted(visible[j])
        if not V or not turn_cov[j]:
            continue
        active = {turns[i][1] for i in turn_cov[j]}
        if len(active) != 1:
            continue
        S = next(iter(active))
        k = int(turns[turn_cov[j][0]][0])

        def is_s(t: int) -> bool:
            return ident.get(t) == S or bound.get(S) == t

        sp = None
        if len(V) >= 2:
            own = [t for t in V if is_s(t)]
            if own:
                sp = max(own, key=lambda t: (conf.get((t, k), -np.inf), -t))
            elif S not in unsynced:
                scored = [t for t in V if (t, k) in conf and ident.get(t) in (None, S)]
                if scored:
                    best = max(scored, key=lambda t: (conf[(t, k)], -t))
                    rival = max((conf[(t, k)] for t in V if t != best and (t, k) in conf), default=0.0)
                    if conf[(best, k)] >= speaker_min_conf and plausible(best, k) and (rule.min_margin is None or conf[(best, k)] - rival >= rule.min_margin):
                        sp = best
        if sp is not None:
            c_sp = conf.get((sp, k))
            if c_sp is None:
                continue
            for t in V:
                if t == sp or is_s(t) or (t, k) not in conf:
                    continue
                gap = c_sp - conf[(t, k)]
                if gap >= min_gap:
                    out.append({"frame": j, "track_id": t, "kind": "co_present", "speaker_local": S, "speaker_track_id": sp, "gap": gap})
        else:
            if not asr_ok[j]:
                continue
            for t in V:
                if is_s(t) or (t, k) not in conf:
                    continue
                someone_else = ident.get(t) not in (None, S)
                if someone_else or conf[(t, k)] < max_sync or not plausible(t, k):
                    out.append({"frame": j, "track_id": t, "kind": "not_co_present", "speaker_local": S, "speaker_track_id": None, "gap": None})
    return out


def merge_spans(video_id: str, labels: list[dict], fps: float, *, merge_gap_s: float, min_s: float) -> pl.DataFrame:
    """Join per-frame labels into ``listening_segments`` rows."""
    spec = TABLES["listening_segments"]
    groups: dict[tuple, list[dict]] = {}
    for lab in labels:
        groups.setdefault((lab["track_id"], lab["kind"], lab["speaker_local"], lab["speaker_track_id"]), []).append(lab)
    max_gap = int(round(merge_gap_s * fps))
    rows = []
    for (t, kind, spk, sp_t), labs in groups.items():
        labs = sorted(labs, key=lambda x: x["frame"])
        cur = [labs[0]]
        runs = []
        for lab in labs[1:]:
            if lab["frame"] - cur[-1]["frame"] - 1 <= max_gap:
                cur.append(lab)
            else:
                runs.append(cur)
                cur = [lab]
        runs.append(cur)
        for run in runs:
            f0, f1 = run[0]["frame"], run[-1]["frame"] + 1
            if (f1 - f0) / fps < min_s:
                continue
            gaps = [x["gap"] for x in run if x["gap"] is not None]
            rows.append({"video_id": video_id, "track_id": t, "start": f0 / fps, "end": f1 / fps, "kind": kind, "speaker_local": spk, "speaker_track_id": sp_t, "confidence_gap": float(np.mean(gaps)) if gaps else None})
    if not rows:
        return spec.empty()
    # a track may carry two labels only in different frames; resolve same-start clashes
    df = pl.DataFrame(rows, schema=spec.polars_schema).sort("track_id", "start", "end", descending=[False, False, True]).unique(["track_id", "start"], keep="first", maintain_order=True)
    return spec.conform(df)
