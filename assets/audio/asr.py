"""ASR with word times and Whisper's quality fields, speaker-attributed, with every second of speech accounted for.

Design (measured in docs/accuracy.md, "ASR windowing and coverage"):

* **Engine.** ``whisperx.load_model(<SPEAKERLAKE_ASR_MODEL_DIR>, device, compute_type,
  language, vad_method="pyannote")`` loads the CTranslate2 Whisper model (CUDA + float16
  when available, CPU + int8 otherwise). whisperx's own ``transcribe`` returns neither word
  times nor ``no_speech_prob`` / ``compression_ratio``, so the model it loaded
  (``pipeline.model``, a ``faster_whisper.WhisperModel``) is driven by faster-whisper's
  ``BatchedInferencePipeline`` (the batched algorithm ported from whisperx), which also
  returns cross-attention DTW word times and, per window, ``avg_logprob``,
  ``no_speech_prob`` and ``compression_ratio``. pyannote (whisperx's VAD) is imported
  without its torchcodec probe warning (``assets.audio.pyannote_import``).
* **Windows of one voice** (``asr_windowing = speaker``). Our silero speech regions are cut
  at the diarized speaker changes; each speaker's consecutive turns are packed, in time
  order, into one Whisper input of at most ``chunk_s`` (0.5 s of silence between turns),
  and decoded times are mapped back to the file. So the quality fields filter F5 and the SFT
  cut read per clip come from a decode of that speaker's speech, at about as few encoder
  passes as merging all speech. Decoding uses timestamp tokens (``asr_timestamps``): without
  them a one-voice window of the phone call fell into a repetition loop.
* **Coverage.** Whisper may end a window early (decoding without timestamp tokens especially),
  silently dropping the rest. After decoding, each window's coverage (share of its VAD speech
  within ``word_pad_s`` of one of its words) is measured; a window below
  ``min_window_coverage`` is cut at its longest pause (between turns first) or, in running
  speech, after its last word, and the uncovered half decoded again, for at most
  ``max_rounds`` rounds. Speech still without words is reported (``AsrResult.windows``,
  the ``asr_coverage`` table), never dropped silently.
* **Language** (filter F6): a multilingual model detects it once per video on the first
  30 s of *speech* (``language_prob`` = Whisper's probability); ``SPEAKERLAKE_ASR_LANGUAGE``
  forces the decoding language but the detected one is still stored. An English-only
  model (``*.en``) cannot detect: ``language='en'`` and ``language_prob`` is null.
* **Alignment (optional).** With ``SPEAKERLAKE_ALIGN_MODEL_DIR`` (a local wav2vec2 CTC
  directory) word times come from ``whisperx.align`` instead of DTW; NLTK ``punkt_tab``
  is generated locally when missing (whisperx would otherwise try to download it). Without
  DTW word times a packed window cannot be split back into turns, so that path uses one
  window per turn and cannot re-decode.
* **Speakers.** Each word gets the speaker whose turns overlap it most (nearest turn
  within ``max_word_gap_s`` when none overlaps). A transcript row is a maximal run of
  consecutive words of one speaker inside one decoded segment; its text is Whisper's own
  (word pieces such as "cold" "-hearted" stay joined), ``window_id`` names the decode its
  quality fields come from and ``asr_coverage`` is that window's coverage.
* **Coverage as data.** ``asr_coverage_table`` (per video), ``coverage_by_video`` (the same
  from the lake's ``transcripts`` + ``speech_segments``), ``failing_coverage`` (the asset
  check: videos under ``asr_min_video_coverage``) and ``coverage_summary`` (batch metadata).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from orchestration.tables import TABLES

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class AsrParams:
    # no defaults: every value comes from sql/thresholds.csv (assets.audio.pipeline.asr_params), the one place thresholds live
    chunk_s: float
    batch_size: int
    beam_size: int
    max_word_gap_s: float  # a word may take the nearest turn at most this far away
    windowing: str  # one speaker per window, turns packed ("turns": one turn each, "merged": both voices)
    timestamps: bool  # first pass with timestamp tokens (re-decodes always use them)
    min_window_coverage: float  # below this a window is decoded again in smaller pieces
    word_pad_s: float  # a word covers VAD speech this far beyond its DTW edges
    min_piece_s: float  # speech pieces shorter than this are not cut further
    max_rounds: int  # re-decoding rounds at most
    max_compression_ratio: float  # above it a window's text is a repetition loop: decoded again
    windows_per_call: int  # windows packed into one faster-whisper call (bounds memory on long videos)
    language: str | None = None  # force the decoding language (None: detect); a model setting, not a threshold


@dataclass(frozen=True)
class Word:
    word: str
    start: float | None
    end: float | None
    score: float | None
    space_before: bool = True  # False: Whisper emitted it glued to the previous word ("cold" "-hearted")


@dataclass(frozen=True)
class AsrSegment:
    start: float
    end: float
    text: str
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    words: list[Word] = field(default_factory=list)
    window_id: int | None = None  # the decode these words and quality fields come from
    coverage: float | None = None  # share of that piece's VAD speech its words cover


@dataclass(frozen=True)
class Piece:
    """One Whisper window: one speaker's speech, from one or several stretches of the file."""

    window_id: int
    start: float
    end: float
    speaker: object  # diarization label, or None without turns
    regions: tuple[tuple[float, float], ...]  # VAD speech inside the spans
    parent: int | None = None  # the window this piece was cut from (re-decoding)
    spans: tuple[tuple[float, float], ...] = ()  # file stretches joined into the window; () = (start, end)

    @property
    def audio_spans(self) -> tuple[tuple[float, float], ...]:
        return self.spans or ((self.start, self.end),)

    @property
    def speech_s(self) -> float:
        return sum(b - a for a, b in self.regions)


@dataclass(frozen=True)
class WindowReport:
    """How well one final piece's speech is covered by the words kept for it."""

    window_id: int  # the decode the kept words come from
    start: float
    end: float
    speaker: object
    speech_s: float
    covered_s: float
    uncovered: tuple[tuple[float, float], ...]
    round: int  # 0 = first pass, k = k-th re-decode

    @property
    def coverage(self) -> float:
        return self.covered_s / self.speech_s if self.speech_s > 0 else 1.0


@dataclass(frozen=True)
class AsrResult:
    segments: list[AsrSegment]
    language: str | None
    language_prob: float | None
    windows: list[WindowReport] = field(default_factory=list)
    n_windows: int = 0  # first-pass windows
    n_decodes: int = 0  # windows sent to Whisper, re-decodes included

    @property
    def speech_s(self) -> float:
        return sum(w.speech_s for w in self.windows)

    @property
    def covered_s(self) -> float:
        return sum(w.covered_s for w in self.windows)

    @property
    def coverage(self) -> float | None:
        return self.covered_s / self.speech_s if self.speech_s > 0 else None

    @property
    def uncovered(self) -> list[tuple[float, float]]:
        return sorted(span for w in self.windows for span in w.uncovered)


# --------------------------------------------------------------------------- models
def device_and_compute_type() -> tuple[str, str]:
    import torch

    return ("cuda", "float16") if torch.cuda.is_available() else ("cpu", "int8")


@lru_cache(maxsize=2)
def load_asr(model_dir: str, device: str, compute_type: str, language: str | None = None, threads: int = 0):
    """whisperx's FasterWhisperPipeline over a local CTranslate2 Whisper directory."""
    import whisperx

    from assets.audio.pyannote_import import import_pyannote_audio

    import_pyannote_audio()  # whisperx.load_model imports pyannote for its VAD: without the torchcodec noise

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
    root = Path.home() / ".cache" / "speakerlake" / "nltk_data"
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


# ----------------------------------------------------------- windows and coverage
def _merge_spans(spans) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def _clip(regions, a: float, b: float) -> tuple[tuple[float, float], ...]:
    return tuple((max(x, a), min(y, b)) for x, y in regions if min(y, b) - max(x, a) > 1e-6)


def speaker_pieces(
    regions: list[tuple[float, float]], turns: list[tuple[object, float, float]] | None, *, max_gap_s: float = 1.0
) -> list[tuple[float, float, object]]:
    """VAD speech cut at speaker changes: ``(start, end, speaker)`` pieces, one speaker each.

    Inside overlapped speech the speaker who was already talking keeps the piece (the
    interruption is decoded with the turn it interrupts); speech no turn covers takes the
    nearest turn within ``max_gap_s`` (diarization drops very short turns), else ``None``.
    """
    if not turns:
        return [(a, b, None) for a, b in regions]
    out: list[list] = []
    for a, b in regions:
        cuts = sorted({a, b} | {t for _, ts, te in turns for t in (ts, te) if a < t < b})
        for x, y in zip(cuts, cuts[1:]):
            mid = (x + y) / 2
            active = [(ts, spk) for spk, ts, te in turns if ts <= mid < te]
            if active:
                spk = min(active, key=lambda t: t[0])[1]
            else:
                dist, spk = min((max(ts - mid, mid - te), s) for s, ts, te in turns)
                spk = spk if dist <= max_gap_s else None
            if out and out[-1][2] == spk and abs(out[-1][1] - x) < 1e-6:
                out[-1][1] = y
            else:
                out.append([x, y, spk])
    # slivers (< 0.2 s) between two pieces are diarization edge jitter: give them to a neighbour
    merged: list[list] = []
    for piece in out:
        if merged and piece[1] - piece[0] < 0.2 and abs(merged[-1][1] - piece[0]) < 1e-6:
            merged[-1][1] = piece[1]
        elif merged and merged[-1][1] - merged[-1][0] < 0.2 and abs(merged[-1][1] - piece[0]) < 1e-6:
            merged[-1][1], merged[-1][2] = piece[1], piece[2]
        else:
            merged.append(piece)
    return [(round(a, 3), round(b, 3), spk) for a, b, spk in merged]


def asr_windows(
    regions: list[tuple[float, float]], turns: list[tuple[object, float, float]] | None, *, params: AsrParams
) -> list[Piece]:
    """The first-pass Whisper windows.

    * ``turns``: one window per stretch of one speaker's consecutive speech (longer stretches
      split into windows of at most ``chunk_s``), so every window's quality fields describe
      one voice. In a dialogue that is one Whisper encoder pass per turn.
    * ``speaker``: the same stretches, then each speaker's consecutive stretches packed into
      one window (joined with ``SPLICE_GAP_S`` of silence) up to ``chunk_s``: one voice
      per window as with ``turns``, but about as few encoder passes as ``merged``.
    * ``merged``: all speech regions merged greedily up to ``chunk_s`` (the former behaviour;
      windows may hold both speakers).
    """
    if params.windowing == "merged" or not turns:
        pieces = [(a, b, None) for a, b in regions]
    elif params.windowing in ("turns", "speaker"):
        pieces = speaker_pieces(regions, turns, max_gap_s=params.max_word_gap_s)
    else:
        raise ValueError(f"unknown ASR windowing {params.windowing!r}")
    stretches: list[Piece] = []
    group: list[tuple[float, float, object]] = []

    def flush():
        if not group:
            return
        spk = group[0][2]
        for a, b in asr_chunks([(x, y) for x, y, _ in group], chunk_s=params.chunk_s):
            stretches.append(Piece(len(stretches), a, b, spk, _clip([(x, y) for x, y, _ in group], a, b)))
        group.clear()

    for piece in pieces:
        if group and piece[2] != group[0][2]:
            flush()
        group.append(piece)
    flush()
    if params.windowing != "speaker" or not turns:
        return stretches
    # pack each speaker's stretches, in time order, into windows of at most chunk_s
    open_window: dict[object, list[Piece]] = {}
    packed: list[list[Piece]] = []
    for st in stretches:
        cur = open_window.get(st.speaker)
        if cur is not None and _packed_s(cur + [st]) <= params.chunk_s:
            cur.append(st)
            continue
        cur = [st]
        open_window[st.speaker] = cur
        packed.append(cur)
    packed.sort(key=lambda g: g[0].start)
    return [
        Piece(i, g[0].start, g[-1].end, g[0].speaker, tuple(r for st in g for r in st.regions), spans=tuple((st.start, st.end) for st in g))
        for i, g in enumerate(packed)
    ]


SPLICE_GAP_S = 0.5  # silence between two stretches joined into one window


def _packed_s(stretches: list[Piece]) -> float:
    return sum(st.end - st.start for st in stretches) + SPLICE_GAP_S * (len(stretches) - 1)


def covered_spans(regions, words: list[Word], *, pad_s: float) -> list[tuple[float, float]]:
    """The parts of ``regions`` (VAD speech) that lie within ``pad_s`` of a word."""
    spans = _merge_spans((w.start - pad_s, w.end + pad_s) for w in words if w.start is not None and w.end is not None)
    out = []
    for a, b in regions:
        for x, y in spans:
            lo, hi = max(a, x), min(b, y)
            if hi > lo:
                out.append((lo, hi))
    return out


def uncovered_spans(regions, words: list[Word], *, pad_s: float) -> list[tuple[float, float]]:
    covered = covered_spans(regions, words, pad_s=pad_s)
    out = []
    for a, b in regions:
        t = a
        for x, y in covered:
            if y <= a or x >= b:
                continue
            if x > t:
                out.append((t, x))
            t = max(t, y)
        if b > t:
            out.append((t, b))
    return [(round(a, 3), round(b, 3)) for a, b in out if b - a > 1e-3]


def _seconds(spans) -> float:
    return float(sum(b - a for a, b in spans))


def split_piece(piece: Piece, words: list[Word], *, min_piece_s: float) -> list[Piece] | None:
    """Cut a poorly covered piece in two for re-decoding, or None when it cannot be cut.

    The cut goes into the longest pause between its VAD regions that leaves at least
    ``min_piece_s`` of speech on both sides. A piece without such a pause (one continuous
    region) is cut after its last word before the first uncovered stretch, where Whisper
    stopped: a word boundary is the only safe place to cut running speech.
    """
    regs = list(piece.regions)
    best = None
    for i in range(1, len(regs)):
        left = sum(b - a for a, b in regs[:i])
        right = sum(b - a for a, b in regs[i:])
        gap = regs[i][0] - regs[i - 1][1]
        if left >= min_piece_s and right >= min_piece_s and (best is None or gap > best[0]):
            best = (gap, (regs[i - 1][1] + regs[i][0]) / 2)
    cut = best[1] if best else None
    if cut is None:
        hole = uncovered_spans(piece.regions, words, pad_s=0.0)
        hole = [h for h in hole if h[1] - h[0] >= min_piece_s]
        before = [w.end for w in words if w.end is not None and hole and w.end <= hole[0][0] + 1e-6]
        if hole and before and before[-1] - piece.start >= min_piece_s and piece.end - before[-1] >= min_piece_s:
            cut = before[-1]
    if cut is None:
        return None
    cut = round(cut, 3)
    halves = []
    for a, b in ((piece.start, cut), (cut, piece.end)):
        spans = _clip(piece.audio_spans, a, b)
        halves.append(Piece(-1, spans[0][0], spans[-1][1], piece.speaker, _clip(piece.regions, a, b), piece.window_id, spans if len(spans) > 1 else ()))
    return halves


def _within(seg: AsrSegment, a: float, b: float) -> AsrSegment | None:
    """The part of a decoded segment whose words lie in [a, b) (by word midpoint)."""
    words = [w for w in seg.words if w.start is not None and a <= (w.start + w.end) / 2 < b]
    if not words:
        return None
    if len(words) == len(seg.words):
        return seg
    return replace(seg, start=max(seg.start, a), end=min(seg.end, b), text=join_words(words), words=words)


# ------------------------------------------------------------------ decoding
class WhisperDecoder:
    """Decodes windows with faster-whisper's batched pipeline.

    A window is a list of file spans; the spans of one window are joined with
    ``SPLICE_GAP_S`` of silence into one Whisper input (padded to 30 s like any batched
    chunk) and the decoded times are mapped back to the file. Returns each window's
    segments (one per window without timestamp tokens, several with them), in file time.
    """

    def __init__(self, model, *, language: str, params: AsrParams, word_timestamps: bool = True):
        self.model, self.language, self.params, self.word_timestamps = model, language, params, word_timestamps

    def __call__(self, audio: np.ndarray, windows: list[tuple[tuple[float, float], ...]]) -> list[list[AsrSegment]]:
        # faster-whisper holds the packed input and every window's log-mel features for the
        # whole call (about 1.3x the packed audio), so a long video is decoded in groups of
        # windows; each window is decoded on its own anyway, so grouping changes no result
        step = max(1, self.params.windows_per_call)
        return [segs for i in range(0, len(windows), step) for segs in self._decode(audio, windows[i : i + step])]

    def _decode(self, audio: np.ndarray, windows: list[tuple[tuple[float, float], ...]]) -> list[list[AsrSegment]]:
        from faster_whisper import BatchedInferencePipeline

        gap = np.zeros(int(SPLICE_GAP_S * SAMPLE_RATE), np.float32)
        parts: list[np.ndarray] = []
        clips: list[dict] = []
        maps: list[list[tuple[float, float, float]]] = []  # per window: (input start, input end, file start) per span
        pos = 0
        for spans in windows:
            begin, m = pos, []
            for i, (a, b) in enumerate(spans):
                if i:
                    parts.append(gap)
                    pos += len(gap)
                x = audio[int(round(a * SAMPLE_RATE)) : int(round(b * SAMPLE_RATE))]
                m.append((pos / SAMPLE_RATE, (pos + len(x)) / SAMPLE_RATE, a))
                parts.append(x)
                pos += len(x)
            clips.append({"start": begin / SAMPLE_RATE, "end": pos / SAMPLE_RATE})
            maps.append(m)
        packed = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        segments, _info = BatchedInferencePipeline(self.model).transcribe(
            packed,
            language=self.language,
            clip_timestamps=clips,
            vad_filter=False,
            word_timestamps=self.word_timestamps,
            without_timestamps=not self.params.timestamps,
            batch_size=self.params.batch_size,
            beam_size=self.params.beam_size,
            log_progress=False,
        )
        out: list[list[AsrSegment]] = [[] for _ in windows]
        starts = np.array([c["start"] for c in clips])
        for s in segments:
            # a segment belongs to the window holding its middle (inputs never overlap)
            k = max(int(np.searchsorted(starts, (s.start + s.end) / 2, side="right")) - 1, 0)
            spans = maps[k]
            # each word goes to the stretch holding its middle (the nearer one inside a splice
            # gap) and its times are kept inside that stretch
            by_span: dict[int, list[Word]] = {}
            for i, w in enumerate(s.words or []):
                if not w.word.strip():
                    continue
                j = _nearest_span(spans, (w.start + w.end) / 2)
                by_span.setdefault(j, []).append(
                    Word(w.word.strip(), _to_file(spans[j], w.start), _to_file(spans[j], w.end), float(w.probability), w.word[:1].isspace() or i == 0)
                )
            quality = dict(avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob), compression_ratio=float(s.compression_ratio))
            if len(spans) == 1:
                out[k].append(AsrSegment(_to_file(spans[0], s.start), _to_file(spans[0], s.end), s.text.strip(), words=by_span.get(0, []), **quality))
                continue
            # a window joined from several stretches: one segment per stretch, from the same decode
            for j, words in sorted(by_span.items()):
                out[k].append(AsrSegment(words[0].start, words[-1].end, join_words(words), words=words, **quality))
        return out


def _nearest_span(spans: list[tuple[float, float, float]], t: float) -> int:
    return min(range(len(spans)), key=lambda j: 0.0 if spans[j][0] <= t <= spans[j][1] else min(abs(t - spans[j][0]), abs(t - spans[j][1])))


def _to_file(span: tuple[float, float, float], t: float) -> float:
    """Whisper-input seconds -> file seconds inside one joined stretch (clamped to it)."""
    x, y, file_start = span
    return round(file_start + min(max(float(t) - x, 0.0), y - x), 3)


def transcribe(
    model,
    audio: np.ndarray,
    regions: list[tuple[float, float]],
    *,
    params: AsrParams,
    word_timestamps: bool = True,
    turns: list[tuple[object, float, float]] | None = None,
    decoder=None,
) -> AsrResult:
    """Whisper decoding of the speech, checked for coverage; ``model`` is a faster_whisper.WhisperModel.

    1. Windows: see ``asr_windows`` (one speaker per window when ``turns`` are given).
    2. Every window is decoded (batched). Its coverage = the share of its VAD speech that
       lies within ``word_pad_s`` of one of its words. Whisper decoding without timestamp
       tokens may emit end-of-text long before the window ends; nothing else reports it.
    3. A window under ``min_window_coverage`` is cut in two (``split_piece``); a half its
       own words already cover keeps them, the other is decoded again (with timestamp
       tokens), for at most ``max_rounds`` rounds. A first pass without timestamp tokens
       whose text is a repetition loop (compression ratio above ``max_compression_ratio``)
       is decoded again whole. What still has no words is reported in ``result.windows``
       (``uncovered``), never dropped silently.

    ``decoder(audio, windows) -> per-window segments`` replaces Whisper (tests); without
    word times (``word_timestamps=False``, the alignment path) coverage cannot be measured,
    so no window is re-decoded and coverage comes from segment spans.
    """
    if not regions:
        return AsrResult([], None, None)
    if not word_timestamps and params.windowing == "speaker":
        # without word times the text of a joined window cannot be split back into its turns
        params = replace(params, windowing="turns")
    if decoder is None:
        detected, prob = detect_language(model, audio, regions)
        if model.model.is_multilingual:
            language = params.language or detected
            stored = detected
        else:
            language = "en"
            stored, prob = "en", None
        decoder = WhisperDecoder(model, language=language, params=params, word_timestamps=word_timestamps)
        # re-decodes always use timestamp tokens: Whisper's own remedy for a window that
        # stopped early or ran into a repetition loop
        redecoder = WhisperDecoder(model, language=language, params=replace(params, timestamps=True), word_timestamps=word_timestamps)
    else:
        stored, prob = params.language, None
        redecoder = decoder

    pending = asr_windows(regions, turns, params=params)
    n_windows = next_id = len(pending)
    segments: list[AsrSegment] = []
    reports: list[WindowReport] = []
    n_decodes = 0
    for rnd in range(params.max_rounds + 1):
        if not pending:
            break
        decoded = (decoder if rnd == 0 else redecoder)(audio, [p.audio_spans for p in pending])
        n_decodes += len(pending)
        retry: list[Piece] = []
        for piece, segs in zip(pending, decoded):
            segs = [replace(s, window_id=piece.window_id) for s in segs]
            words = [w for s in segs for w in s.words]
            if not word_timestamps:  # aligned later: the segment span stands for its words
                words = [Word(s.text, s.start, s.end, None) for s in segs if s.text]
            covered = _seconds(covered_spans(piece.regions, words, pad_s=params.word_pad_s))
            coverage = covered / piece.speech_s if piece.speech_s > 0 else 1.0
            halves = None
            looped = any(s.compression_ratio is not None and s.compression_ratio > params.max_compression_ratio for s in segs)
            if word_timestamps and looped and rnd == 0 and params.max_rounds > 0 and not params.timestamps:
                # a repetition loop (Whisper's compression-ratio test) in a first pass without
                # timestamp tokens: none of its words can be trusted, so the whole window is
                # decoded again with them (a timestamped window would only loop again)
                retry.append(replace(piece, window_id=next_id, parent=piece.window_id))
                next_id += 1
                continue
            if word_timestamps and coverage < params.min_window_coverage and rnd < params.max_rounds:
                halves = split_piece(piece, words, min_piece_s=params.min_piece_s)
            if halves is None:
                _keep(piece, segs, words, params, rnd, coverage, segments, reports)
                continue
            for half in halves:
                half_words = [w for w in words if w.start is not None and half.start <= (w.start + w.end) / 2 < half.end]
                half_cov = _seconds(covered_spans(half.regions, half_words, pad_s=params.word_pad_s)) / max(half.speech_s, 1e-9)
                if half_cov >= params.min_window_coverage:
                    kept = [k for k in (_within(s, half.start, half.end) for s in segs) if k is not None]
                    _keep(replace(half, window_id=piece.window_id), kept, half_words, params, rnd, half_cov, segments, reports)
                else:
                    retry.append(replace(half, window_id=next_id))
                    next_id += 1
        pending = retry
    segments.sort(key=lambda s: (s.start, s.end))
    reports.sort(key=lambda r: r.start)
    return AsrResult(segments, stored, prob, reports, n_windows, n_decodes)


def _keep(piece: Piece, segs, words, params: AsrParams, rnd: int, coverage: float, segments: list, reports: list) -> None:
    uncovered = tuple(uncovered_spans(piece.regions, words, pad_s=params.word_pad_s))
    reports.append(
        WindowReport(piece.window_id, piece.start, piece.end, piece.speaker, round(piece.speech_s, 3), round(piece.speech_s - _seconds(uncovered), 3), uncovered, rnd)
    )
    segments.extend(replace(s, window_id=piece.window_id, coverage=round(coverage, 4)) for s in segs if s.text or s.words)


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
        out.append(replace(seg, words=_fill_times(words, seg)))
    return replace(result, segments=out)


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
        out.append(Word(w.word, start, max(start, end), w.score, w.space_before))
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
    """One row per run of one speaker's words inside an ASR segment.

    With speaker-bounded windows a segment is normally one run; a split happens only when
    the words' own times disagree with the window's speaker (a backchannel inside a turn).
    The text of a run that is the whole segment is Whisper's own text for it.
    """
    rows: list[dict] = []
    for seg in result.segments:
        base = {
            "language": result.language,
            "language_prob": result.language_prob,
            "avg_logprob": seg.avg_logprob,
            "no_speech_prob": seg.no_speech_prob,
            "compression_ratio": seg.compression_ratio,
            "window_id": seg.window_id,
            "asr_coverage": seg.coverage,
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
                        "text": seg.text if len(ws) == len(seg.words) and seg.text else join_words(ws),
                        "words": [{"word": w.word, "start": w.start, "end": w.end, "score": w.score} for w in ws],
                    }
                )
                run = []
            if i < len(seg.words):
                run.append(i)
    rows.sort(key=lambda r: (r["start"], r["end"]))
    return rows


def join_words(words: list[Word]) -> str:
    """Words back to text the way Whisper wrote them: pieces of one token run stay glued."""
    return "".join((" " if w.space_before else "") + w.word for w in words).strip()


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


# --------------------------------------------------------------------------- coverage as data
def asr_coverage_table(video_id: str, result: AsrResult) -> pl.DataFrame:
    """One ``asr_coverage`` row for a video (empty when the VAD found no speech)."""
    spec = TABLES["asr_coverage"]
    if not result.windows:
        return spec.empty()
    row = {
        "video_id": video_id,
        "speech_seconds": round(result.speech_s, 3),
        "covered_seconds": round(result.covered_s, 3),
        "coverage": round(result.coverage, 4),
        "n_windows": result.n_windows,
        "n_decodes": result.n_decodes,
        "uncovered": [{"start": a, "end": b} for a, b in result.uncovered],
    }
    return spec.conform(pl.DataFrame([row], schema=spec.polars_schema))


def coverage_by_video(transcripts: pl.DataFrame, speech_segments: pl.DataFrame, *, word_pad_s: float) -> pl.DataFrame:
    """Per-video coverage recomputed from two lake tables (``transcripts`` words, ``speech_segments``).

    Returns ``video_id, speech_seconds, covered_seconds, coverage`` for every video with
    speech; a video whose speech got no transcript row at all has coverage 0. Same
    definition as the stage's ``asr_coverage`` table (share of VAD speech within
    ``word_pad_s`` of a word), for checks that only read the lake.
    """
    words_by_video: dict[str, list[Word]] = {}
    for vid, ws in zip(transcripts["video_id"].to_list(), transcripts["words"].to_list()):
        words_by_video.setdefault(vid, []).extend(Word(w["word"], w["start"], w["end"], w["score"]) for w in ws or [])
    regions_by_video: dict[str, list[tuple[float, float]]] = {}
    for vid, a, b in zip(speech_segments["video_id"].to_list(), speech_segments["start"].to_list(), speech_segments["end"].to_list()):
        regions_by_video.setdefault(vid, []).append((a, b))
    rows = []
    for vid, regions in sorted(regions_by_video.items()):
        speech = _seconds(regions)
        covered = _seconds(covered_spans(_merge_spans(regions), words_by_video.get(vid, []), pad_s=word_pad_s))
        rows.append({"video_id": vid, "speech_seconds": speech, "covered_seconds": covered, "coverage": covered / speech if speech > 0 else 1.0})
    schema = {"video_id": pl.String, "speech_seconds": pl.Float64, "covered_seconds": pl.Float64, "coverage": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def failing_coverage(coverage: pl.DataFrame, min_coverage: float) -> pl.DataFrame:
    """Videos whose ASR coverage is under ``min_coverage`` (threshold ``asr_min_video_coverage``).

    ``coverage``: the ``asr_coverage`` table or ``coverage_by_video(...)`` (columns
    ``video_id`` and ``coverage``). Returns ``video_id, coverage`` of the offenders, lowest
    first; empty means the check passes.
    """
    return coverage.filter(pl.col("coverage") < min_coverage).select("video_id", "coverage").sort("coverage", "video_id")


def coverage_summary(coverage: pl.DataFrame) -> dict[str, float | int | None]:
    """Metadata for a batch: minimum and mean video coverage, and the uncovered seconds."""
    if coverage.is_empty():
        return {"asr_coverage_min": None, "asr_coverage_mean": None, "asr_uncovered_seconds": 0.0, "asr_videos": 0}
    return {
        "asr_coverage_min": float(coverage["coverage"].min()),
        "asr_coverage_mean": float(coverage["coverage"].mean()),
        "asr_uncovered_seconds": float((coverage["speech_seconds"] - coverage["covered_seconds"]).sum()),
        "asr_videos": coverage.height,
    }
