"""A clip's ASR fields from the video's ``transcripts`` rows.

- **Words**: the transcript words whose centre lies inside the clip (a word cut by a clip
  boundary belongs to the one clip holding most of it, so split pieces never share a word).
- **Text**: those words joined the way the audio stage joins them
  (`assets.audio.asr.join_words`): Whisper's word pieces ("cold" "-hearted") stay glued.
  The table stores words stripped of the leading space Whisper's tokens carry, so whether a
  word was glued to the previous one is read back from its segment's text.
- **Whisper fields** (``avg_logprob``, ``no_speech_prob``, ``compression_ratio``,
  ``language_prob``): the mean over the transcript segments the words come from, weighted by
  the seconds of each segment inside the clip (a segment that only grazes the clip counts
  little); ``language``: the one with the most such seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from assets.audio.asr import Word, join_words

WEIGHTED = ("language_prob", "avg_logprob", "no_speech_prob", "compression_ratio")


def glued_words(text: str | None, words: list[dict]) -> list[Word]:
    """``words`` (transcript dicts) as `Word` objects whose ``space_before`` says whether
    ``text`` has a space before the word; a word not found in the text keeps a space."""
    out, pos, text = [], 0, text or ""
    for w in words:
        token = w["word"] or ""
        at = text.find(token, pos) if token else -1
        if at < 0:
            out.append(Word(token, w["start"], w["end"], w["score"], True))
            continue
        # a segment's first word always starts a new word (segments are joined with a space)
        out.append(Word(token, w["start"], w["end"], w["score"], not out or at == 0 or text[at - 1].isspace()))
        pos = at + len(token)
    return out


@dataclass(frozen=True)
class ClipText:
    text: str | None
    words: list[dict]
    language: str | None
    language_prob: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None


def _weighted(values: list[float | None], weights: list[float]) -> float | None:
    pairs = [(v, w) for v, w in zip(values, weights) if v is not None]
    total = sum(w for _, w in pairs)
    if not pairs:
        return None
    if total <= 0:
        return sum(v for v, _ in pairs) / len(pairs)
    return sum(v * w for v, w in pairs) / total


def clip_text(transcripts: pl.DataFrame, start: float, end: float) -> ClipText:
    """The ASR fields of the span ``[start, end)`` seconds (module doc); no words: all null
    and ``words`` empty."""
    words: list[Word] = []
    fields: dict[str, list] = {k: [] for k in (*WEIGHTED, "language")}
    weights: list[float] = []
    near = transcripts.filter((pl.col("start") < end) & (pl.col("end") > start)).sort("start", "segment_id")
    for seg in near.iter_rows(named=True):
        ws = glued_words(seg["text"], seg["words"] or [])
        inside = [w for w in ws if w.start is not None and w.end is not None and start <= (w.start + w.end) / 2 < end]
        if not inside:
            continue
        words.extend(inside)
        weights.append(max(0.0, min(end, seg["end"]) - max(start, seg["start"])))
        for k in fields:
            fields[k].append(seg[k])
    if not words:
        return ClipText(None, [], None, None, None, None, None)
    lang_s: dict[str, float] = {}
    for lang, w in zip(fields["language"], weights):
        if lang is not None:
            lang_s[lang] = lang_s.get(lang, 0.0) + w
    language = max(sorted(lang_s), key=lambda k: lang_s[k]) if lang_s else None
    return ClipText(
        text=join_words(words),
        words=[{"word": w.word, "start": w.start, "end": w.end, "score": w.score} for w in words],
        language=language,
        **{k: _weighted(fields[k], weights) for k in WEIGHTED},
    )
