"""Clip spans: where a talking or listening clip may lie, in video frames, before the
length rules (`split_span`).

All spans are half-open frame ranges ``[f0, f1)`` on the video's frame grid; a frame
belongs to a time span when its centre ``(j + 0.5) / fps`` lies inside it (the convention
of `assets.binding.sync.sync_windows`). Spans never leave the face track they show, and
face tracks never leave their shot nor hold a frame of a dissolve or fade (the vision
stage), so every span lies inside one shot; `talking_spans` clips to the shot anyway.

**Talking** (`talking_spans`): for each diarized turn of a speaker that the binding stage
bound to a face, and each face track whose identity (`track_identities.speaker_local`:
the bound track plus the tracks ArcFace gave to the same person in other shots) is that
speaker, the frames where turn, track and shot overlap. The turn is first narrowed so that
the clip holds that voice alone:

- its edges are trimmed by ``trim_s`` (diarized edges are uncertain by a few hundred ms and
  the partner's last or first syllable sits there);
- the seconds where another speaker's turn is active, widened by ``trim_s`` on both sides,
  are cut out (overlapped speech and backchannels), so a long turn with an interjection
  becomes two spans.

Before that, consecutive turns of one speaker (no other speaker's turn starts between
them) whose pause is shorter than ``join_s`` are joined into one turn (`speaker_runs`): the
diarizer splits a reply at its breathing pauses (a 9.9 s reply into four 1-2.4 s turns on
the demo corpus), which would leave every piece under the 3 s clip minimum and the reply
without a clip. The joined turn keeps its first turn's ``turn_id``.

**Listening** (`listening_spans`): each ``listening_segments`` row as it is (the binding
stage already decided frame by frame that the face listens and nobody else talks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import polars as pl


@dataclass(frozen=True)
class Span:
    """A candidate clip: frames ``[f0, f1)`` of ``track_id`` in ``shot_id``."""

    track_id: int
    shot_id: int
    f0: int
    f1: int
    is_talking: bool
    speaker_local: str | None  # the person's diarized speaker (null: a face that never speaks)
    turn_id: int | None = None  # talking: the turn
    listening_kind: str | None = None  # listening: co_present / not_co_present
    partner_speaker_local: str | None = None  # listening: whom the person listens to

    @property
    def n_frames(self) -> int:
        return self.f1 - self.f0


def frame_at(t: float, fps: float) -> int:
    """The first frame whose centre is at or after ``t`` seconds."""
    return int(math.ceil(t * fps - 0.5 - 1e-9))


def subtract(spans: list[tuple[float, float]], cuts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``spans`` minus the union of ``cuts`` (all half-open intervals in seconds)."""
    out = []
    for a, b in spans:
        pieces = [(a, b)]
        for c, d in cuts:
            nxt = []
            for x, y in pieces:
                if d <= x or c >= y:
                    nxt.append((x, y))
                    continue
                if c > x:
                    nxt.append((x, c))
                if d < y:
                    nxt.append((d, y))
            pieces = nxt
        out.extend(p for p in pieces if p[1] > p[0])
    return out


def speaker_runs(turns: pl.DataFrame, *, join_s: float = 0.0) -> list[tuple[int, str, float, float]]:
    """(turn_id of the first turn, speaker_local, start, end) of every run of consecutive
    turns of one speaker, in start order: a turn joins the run before it when it is the same
    speaker's and its pause after the run's end is shorter than ``join_s`` (0: no joining)."""
    return [(k, spk, a, b) for k, spk, a, b, _ in _runs(turns, join_s)]


def _runs(turns: pl.DataFrame, join_s: float) -> list[list]:
    """speaker_runs with each run's member turns [(turn_id, start, end)] last."""
    runs: list[list] = []
    for k, spk, a, b in turns.sort("start", "turn_id").select("turn_id", "speaker_local", "start", "end").rows():
        if runs and runs[-1][1] == spk and a - runs[-1][3] < join_s:
            runs[-1][3] = max(runs[-1][3], b)
            runs[-1][4].append((int(k), a, b))
        else:
            runs.append([int(k), spk, a, b, [(int(k), a, b)]])
    return runs


def solo_speech(turns: pl.DataFrame, *, trim_s: float, join_s: float = 0.0) -> dict[int, list[tuple[float, float]]]:
    """turn_id -> the parts of the turn (a run of turns joined over pauses shorter than
    ``join_s``, keyed by its first turn), trimmed by ``trim_s`` at both ends, where no other
    speaker's turn, widened by ``trim_s``, is active."""
    rows = turns.select("turn_id", "speaker_local", "start", "end").rows()
    out = {}
    for k, spk, a, b in speaker_runs(turns, join_s=join_s):
        others = [(s - trim_s, e + trim_s) for k2, spk2, s, e in rows if spk2 != spk and s - trim_s < b and e + trim_s > a]
        out[int(k)] = subtract([(a + trim_s, b - trim_s)], others)
    return out


def talking_spans(
    speaker_turns: pl.DataFrame,
    bindings: pl.DataFrame,
    track_identities: pl.DataFrame,
    face_tracks: pl.DataFrame,
    shots: pl.DataFrame,
    fps: float,
    *,
    trim_s: float,
    join_s: float = 0.0,
    unsynced: set[tuple[int, int]] | frozenset = frozenset(),
) -> list[Span]:
    """Talking spans of one video (module doc), unsplit, in (track, start) order.

    ``unsynced``: (track_id, turn_id) whose lip-sync row is not evidence that this face speaks
    the turn. Inside a run joined from several turns, such a turn is cut out of that track's
    spans: the diarizer that split a reply at its pauses also gives two voices one label at
    a pause (hard_a), and joining must not carry a clip over the other voice."""
    if speaker_turns.is_empty() or face_tracks.is_empty():
        return []
    bound = {s for s, t in bindings.select("speaker_local", "track_id").rows() if t is not None}
    ident = {int(t): s for t, s in track_identities.select("track_id", "speaker_local").rows() if s is not None}
    shot_frames = {int(s): (int(a), int(b)) for s, a, b in shots.select("shot_id", "start_frame", "end_frame").rows()}
    solo = solo_speech(speaker_turns, trim_s=trim_s, join_s=join_s)
    runs = _runs(speaker_turns, join_s)
    turn_speaker = {k: spk for k, spk, _, _, _ in runs}
    members = {k: m for k, _, _, _, m in runs if len(m) > 1}
    out = []
    for t, shot, a, b in face_tracks.sort("track_id").select("track_id", "shot_id", "start_frame", "end_frame").rows():
        spk = ident.get(int(t))
        if spk is None or spk not in bound:
            continue
        sa, sb = shot_frames.get(int(shot), (a, b))
        lo, hi = max(int(a), sa), min(int(b), sb)
        for k in sorted(k for k, s in turn_speaker.items() if s == spk):
            speech = solo[int(k)]
            cut = [(a2, b2) for k2, a2, b2 in members.get(k, ()) if (int(t), k2) in unsynced]
            if cut:  # whole member turns, with the pause around them up to the neighbours
                speech = subtract(speech, cut)
            for ts, te in speech:
                f0, f1 = max(lo, frame_at(ts, fps)), min(hi, frame_at(te, fps))
                if f1 > f0:
                    out.append(Span(int(t), int(shot), f0, f1, True, spk, turn_id=int(k)))
    return sorted(out, key=lambda s: (s.track_id, s.f0))


def listening_spans(listening_segments: pl.DataFrame, track_identities: pl.DataFrame, face_tracks: pl.DataFrame, fps: float) -> list[Span]:
    """One span per ``listening_segments`` row (module doc), in (track, start) order."""
    if listening_segments.is_empty():
        return []
    ident = {int(t): s for t, s in track_identities.select("track_id", "speaker_local").rows()}
    tracks = {int(t): (int(s), int(a), int(b)) for t, s, a, b in face_tracks.select("track_id", "shot_id", "start_frame", "end_frame").rows()}
    out = []
    for t, s, e, kind, partner in listening_segments.select("track_id", "start", "end", "kind", "speaker_local").rows():
        if int(t) not in tracks:
            continue
        shot, a, b = tracks[int(t)]
        # listening rows are already on the frame grid (frame / fps); round, do not re-snap
        f0, f1 = max(a, int(round(s * fps))), min(b, int(round(e * fps)))
        if f1 > f0:
            out.append(Span(int(t), shot, f0, f1, False, ident.get(int(t)), listening_kind=kind, partner_speaker_local=partner))
    return sorted(out, key=lambda s: (s.track_id, s.f0))


def split_span(span: Span, fps: float, *, min_s: float, max_s: float) -> list[Span]:
    """The length rule: a span shorter than ``min_s`` gives no clip; one longer than
    ``max_s`` is cut into ``n = ceil(frames / max_frames)`` pieces of (nearly: whole frames)
    equal length, each between ``min_s`` and ``max_s`` (for max_s >= 2 * min_s)."""
    min_f, max_f = int(math.ceil(min_s * fps - 1e-9)), int(math.floor(max_s * fps + 1e-9))
    n_f = span.n_frames
    if n_f < min_f:
        return []
    n = max(1, math.ceil(n_f / max_f))
    cuts = [span.f0 + round(i * n_f / n) for i in range(n + 1)]
    return [replace(span, f0=a, f1=b) for a, b in zip(cuts[:-1], cuts[1:])]
