"""ASR with word times and Whisper's quality fields, speaker-attributed.

Design (one decoder pass, nothing decoded twice):

* **Engine.** ``whisperx.load_model(<SPEAKERLAKE_ASR_MODEL_DIR>, device, compute_type,
  language, vad_method="pyannote")`` loads the CTranslate2 Whisper model (CUDA + float16
  when available, CPU + int8 otherwise). whisperx's own ``transcribe`` returns neither word
  times nor ``no_speech_prob`` / ``compression_ratio``, so the model it loaded
  (``pipeline.model``, a ``faster_whisper.WhisperModel``) is driven by faster-whisper's
  ``BatchedInferencePipeline`` — the same batched algorithm (it was ported from whisperx:
  VAD chunks of at most 30 s, batched encoder + beam search without timestamp tokens)
  but it also returns, from the *same* encoder output, cross-attention DTW word times and
  word probabilities, and per chunk ``avg_logprob``, ``no_speech_prob`` and
  ``compression_ratio``. (The pyannote VAD that ``load_model`` attaches stays unused on
  this path; it costs ~0.3 s once and keeps ``pipeline.transcribe`` usable.) Measured on
  the pyannote sample with tiny.en: one pass at RTF 0.07-0.15 on 2 shared cores, WER
  13.6 % (LibriVox 2.8 %); whisperx's own ``transcribe`` (its pyannote VAD, no word times)
  took RTF 0.25-0.33 for WER 16.0 % (LibriVox 2.8 %) in the same conditions.
  Greedy decoding (``asr_beam_size`` 1) is ~20 % faster but raised WER on the phone call
  from 13.6 % to 17.3 %, so beam 5 (whisperx's default) stays.
* **Chunks** come from our silero speech regions (the ``speech_segments`` table), merged
  greedily into windows of at most ``chunk_s`` seconds, so ASR never sees audio the VAD
  called silence and no second VAD runs.
* **Language** (filter F6): a multilingual model detects it once per video on the first
  30 s of *speech* (``language_prob`` = Whisper's probability); ``SPEAKERLAKE_ASR_LANGUAGE``
  forces the decoding language but the detected one is still stored. An English-only
  model (``*.en``) cannot detect: ``language='en'`` and ``language_prob`` is null.
* **Alignment (optional).** With ``SPEAKERLAKE_ALIGN_MODEL_DIR`` (a local wav2vec2 CTC
  directory) word times come from ``whisperx.align`` instead of DTW; NLTK ``punkt_tab``
  is generated locally when missing (whisperx would otherwise try to download it).
* **Speakers.** Each word gets the speaker whose turns overlap it most (nearest turn
  within ``max_word_gap_s`` when none overlaps). A transcript row is a maximal run of
  consecutive words of one speaker inside one ASR chunk, i.e. chunks are **split at
  speaker changes**; the split rows keep their chunk's quality fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from orchestration.tables import TABLES

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AsrParams:
    chunk_s: float = 30.0
    batch_size: int = 4
    beam_size: int = 5
    language: str | None = None  # force the decoding language (None: detect)
    max_word_gap_s: float = 1.0  # a word may take the nearest turn at most this far away


@dataclass(frozen=True)
class Word:
    word: str
    start: float | None
    end: float | None
    score: float | None


@dataclass(frozen=True)
class AsrSegment:
    start: float
    end: float
    text: str
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class AsrResult:
    segments: list[AsrSegment]
    language: str | None
    language_prob: float | None


# --------------------------------------------------------------------------- models
def device_and_compute_type() -> tuple[str, str]:
    import torch

    return ("cuda", "float16") if torch.cuda.is_available() else ("cpu", "int8")


@lru_cache(maxsize=2)
def load_asr(model_dir: str, device: str, compute_type: str, language: str | None = None, threads: int = 0):
    """whisperx's FasterWhisperPipeline over a local CTranslate2 Whisper directory."""
    import whisperx

    return whisperx.load_model(
        model_dir,
        device,
        compute_type=compute_type,
        language=language,
        vad_method="pyannote",  # the VAD bundled in the whisperx wheel: offline
        threads=threads or min(4, os.cpu_count() or 1),
        local_files_only=True,
    )


@lru_cache(maxsize=2)
def load_align(model_dir: str, language: str, device: str):
    """whisperx alignment model (wav2vec2 CTC) from a local directory, no hub access."""
    import whisperx

    return whisperx.load_align_model(language, device, model_name=model_dir, model_cache_only=True)


def ensure_punkt_tab(language: str = "english") -> None:
    """Make NLTK's ``punkt_tab`` findable without a download (whisperx.align needs it).

    When no installed copy exists, a minimal model (no collocations or sentence starters,
    a list of common English abbreviations) is written to a private cache directory.
    """
    import nltk

    try:
        nltk.data.find(f"tokenizers/punkt_tab/{language}/")
        return
    except LookupError:
        pass
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "speakerlake" / "nltk_data"
    d = root / "tokenizers" / "punkt_tab" / language
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (d / name).touch()
    abbrevs = "mr mrs ms dr prof sr jr st vs etc e.g i.e inc ltd co corp no jan feb mar apr jun jul aug sep sept oct nov dec"
    (d / "abbrev_types.txt").write_text("\n".join(abbrevs.split()) + "\n")
    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))


# --------------------------------------------------------------------------- ASR
def asr_chunks(regions: list[tuple[float, float]], *, chunk_s: float) -> list[tuple[float, float]]:
    """Speech regions merged greedily into windows of at most ``chunk_s`` (longer regions split evenly)."""
    pieces: list[tuple[float, float]] = []
    for a, b in regions:
        n = max(1, int(np.ceil((b - a) / chunk_s)))
        step = (b - a) / n
        pieces += [(a + i * step, a + (i + 1) * step) for i in range(n)]
    out: list[list[float]] = []
    for a, b in pieces:
        if out and b - out[-1][0] <= chunk_s:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(round(a, 3), round(b, 3)) for a, b in out]


def detect_language(model, audio: np.ndarray, regions: list[tuple[float, float]]) -> tuple[str | None, float | None]:
    """Whisper language ID on the first 30 s of speech; (None, None) for English-only models."""
    if not model.model.is_multilingual:
        return None, None
    speech = np.concatenate([audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in regions])[: 30 * SAMPLE_RATE]
    language, prob, _ = model.detect_language(audio=speech)
    return language, float(prob)


def transcribe(
    model, audio: np.ndarray, regions: list[tuple[float, float]], *, params: AsrParams, word_timestamps: bool = True
) -> AsrResult:
    """Batched Whisper decoding of the speech chunks; ``model`` is a faster_whisper.WhisperModel."""
    from faster_whisper import BatchedInferencePipeline

    chunks = asr_chunks(regions, chunk_s=params.chunk_s)
    if not chunks:
        return AsrResult([], None, None)
    detected, prob = detect_language(model, audio, regions)
    if model.model.is_multilingual:
        language = params.language or detected
        stored = detected
    else:
        language = "en"
        stored, prob = "en", None
    segments, _info = BatchedInferencePipeline(model).transcribe(
        audio,
        language=language,
        clip_timestamps=[{"start": a, "end": b} for a, b in chunks],
        vad_filter=False,
        word_timestamps=word_timestamps,
        without_timestamps=True,
        batch_size=params.batch_size,
        beam_size=params.beam_size,
        log_progress=False,
    )
    out = []
    for s in segments:
        words = [
            Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3), float(w.probability))
            for w in (s.words or [])
            if w.word.strip()
        ]
        out.append(
            AsrSegment(
                start=round(float(s.start), 3),
                end=round(float(s.end), 3),
                text=s.text.strip(),
                avg_logprob=float(s.avg_logprob),
                no_speech_prob=float(s.no_speech_prob),
                compression_ratio=float(s.compression_ratio),
                words=words,
            )
        )
    return AsrResult(out, stored, prob)


def align_segments(
    result: AsrResult, audio: np.ndarray, *, align_model, align_metadata: dict, device: str
) -> AsrResult:
    """Replace word times by whisperx (wav2vec2 CTC) forced alignment, segment by segment."""
    import whisperx

    ensure_punkt_tab()
    out = []
    for seg in result.segments:
        if not seg.text:
            out.append(seg)
            continue
        aligned = whisperx.align(
            [{"text": seg.text, "start": seg.start, "end": seg.end}], align_model, align_metadata, audio, device
        )
        raw = aligned.get("word_segments") or []
        words = []
        for w in raw:
            text = str(w.get("word", "")).strip()
            if not text:
                continue
            start, end = w.get("start"), w.get("end")
            words.append(
                Word(
                    text,
                    None if start is None or np.isnan(start) else round(float(start), 3),
                    None if end is None or np.isnan(end) else round(float(end), 3),
                    None if w.get("score") is None or np.isnan(w.get("score")) else float(w["score"]),
                )
            )
        out.append(AsrSegment(seg.start, seg.end, seg.text, seg.avg_logprob, seg.no_speech_prob, seg.compression_ratio, _fill_times(words, seg)))
    return AsrResult(out, result.language, result.language_prob)


def _fill_times(words: list[Word], seg: AsrSegment) -> list[Word]:
    """Words the aligner could not place (digits, symbols) take their neighbours' edges."""
    out = []
    for i, w in enumerate(words):
        start = w.start
        if start is None:
            start = next((x.end for x in reversed(out) if x.end is not None), seg.start)
        end = w.end
        if end is None:
            end = next((x.start for x in words[i + 1 :] if x.start is not None), seg.end)
        out.append(Word(w.word, start, max(start, end), w.score))
    return out


# --------------------------------------------------------------------------- speakers
def word_speakers(
    words: list[Word], turns: list[tuple[int | str, float, float]], *, max_gap_s: float
) -> list[int | str | None]:
    """The speaker whose turns overlap each word most (nearest turn within max_gap_s otherwise)."""
    if not turns:
        return [None] * len(words)
    spk = np.array([t[0] for t in turns], dtype=object)
    ts = np.array([t[1] for t in turns], float)
    te = np.array([t[2] for t in turns], float)
    out: list[int | str | None] = []
    for w in words:
        if w.start is None or w.end is None:
            out.append(None)
            continue
        ov = np.minimum(te, w.end) - np.maximum(ts, w.start)
        if ov.max() > 0:
            per: dict = {}
            for k, o in zip(spk, ov):
                if o > 0:
                    per[k] = per.get(k, 0.0) + o
            out.append(max(per, key=per.get))
            continue
        dist = np.maximum(ts - w.end, w.start - te)
        i = int(np.argmin(dist))
        out.append(spk[i] if dist[i] <= max_gap_s else None)
    return out


def transcript_rows(result: AsrResult, turns: list[tuple[str, float, float]], *, max_gap_s: float) -> list[dict]:
    """One row per run of one speaker's words inside an ASR chunk (chunks split at speaker changes)."""
    rows: list[dict] = []
    for seg in result.segments:
        base = {
            "language": result.language,
            "language_prob": result.language_prob,
            "avg_logprob": seg.avg_logprob,
            "no_speech_prob": seg.no_speech_prob,
            "compression_ratio": seg.compression_ratio,
        }
        if not seg.words:
            if not seg.text:
                continue
            span = Word(seg.text, seg.start, seg.end, None)
            (spk,) = word_speakers([span], turns, max_gap_s=max_gap_s)
            rows.append({**base, "speaker_local": spk, "start": seg.start, "end": seg.end, "text": seg.text, "words": []})
            continue
        speakers = word_speakers(seg.words, turns, max_gap_s=max_gap_s)
        # a word with no speaker joins the run it sits in
        for i, s in enumerate(speakers):
            if s is None:
                speakers[i] = speakers[i - 1] if i else next((x for x in speakers if x is not None), None)
        run: list[int] = []
        for i in range(len(seg.words) + 1):
            if run and (i == len(seg.words) or speakers[i] != speakers[run[0]]):
                ws = [seg.words[k] for k in run]
                rows.append(
                    {
                        **base,
                        "speaker_local": speakers[run[0]],
                        "start": ws[0].start if ws[0].start is not None else seg.start,
                        "end": ws[-1].end if ws[-1].end is not None else seg.end,
                        "text": _join(ws),
                        "words": [{"word": w.word, "start": w.start, "end": w.end, "score": w.score} for w in ws],
                    }
                )
                run = []
            if i < len(seg.words):
                run.append(i)
    rows.sort(key=lambda r: (r["start"], r["end"]))
    return rows


def _join(words: list[Word]) -> str:
    return " ".join(w.word for w in words).strip()


def transcripts_table(video_id: str, rows: list[dict]) -> pl.DataFrame:
    spec = TABLES["transcripts"]
    if not rows:
        return spec.empty()
    df = pl.DataFrame(
        [
            {"video_id": video_id, "segment_id": i, **{k: r[k] for k in spec.schema if k not in ("video_id", "segment_id")}}
            for i, r in enumerate(rows)
        ],
        schema=spec.polars_schema,
    )
    return spec.conform(df)
