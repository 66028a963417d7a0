"""The audio stage for one video: ``analyze_audio(video_id, media_path, models)``.

Decodes the audio once (PyAV, 16 kHz mono), then runs silero VAD, diarization and
whisperx ASR on that one array and returns the tables ``speech_segments``,
``speaker_turns``, ``video_speakers``, ``transcripts`` and ``asr_coverage`` (share of the
VAD speech that got words) conformed to their declared schemas. Every tuned number is read
from ``sql/thresholds.csv`` (stage ``audio``). The models are loaded once per process by
:func:`load_audio_models` from an :class:`AudioModelSettings` (the ``models`` resource's
audio fields: silero VAD ONNX file, CTranslate2 Whisper dir, resemblyzer weights, optional
segmentation checkpoint, optional pyannote pipeline dir, optional wav2vec2 alignment dir,
optional forced language); a missing location fails there, naming the setting, before any
video is touched.

A video without usable audio is not an error: the result holds empty tables and
``result.reason`` / ``result.message`` say why (``missing_file``, ``no_audio_stream``,
``undecodable``, ``no_audio_samples``, ``silent`` or ``no_speech``). ``result.timings``
holds the seconds spent in each step and the audio duration (for RTF reporting).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from assets.audio import asr as asr_mod
from assets.audio import diarization as diar
from assets.audio import vad as vad_mod
from assets.audio.decode import SAMPLE_RATE, NoAudio, check_silence, decode_audio
from orchestration.settings import require_path
from orchestration.tables import TABLES
from orchestration.thresholds import setting, threshold

OUTPUTS = ("speech_segments", "speaker_turns", "video_speakers", "transcripts", "asr_coverage")


class AudioTables(dict):
    """``{table name: polars frame}`` for one video, plus why it is empty and step timings."""

    def __init__(self, frames: dict[str, pl.DataFrame], *, reason: str | None = None, message: str | None = None, timings: dict[str, float] | None = None):
        super().__init__(frames)
        self.reason = reason
        self.message = message
        self.timings = timings or {}


def empty_tables(reason: str, message: str, timings: dict[str, float] | None = None) -> AudioTables:
    return AudioTables({t: TABLES[t].empty() for t in OUTPUTS}, reason=reason, message=message, timings=timings)


# --------------------------------------------------------------------------- parameters
def vad_params() -> dict[str, float]:
    return {
        "threshold": threshold("vad_threshold"),
        "min_speech_s": threshold("vad_min_speech_s"),
        "min_silence_s": threshold("vad_min_silence_s"),
        "pad_s": threshold("vad_pad_s"),
    }


def diarization_params() -> diar.DiarizationParams:
    return diar.DiarizationParams(
        step_s=threshold("diar_step_s"),
        onset=threshold("diar_onset"),
        min_embed_s=threshold("diar_min_embed_s"),
        cluster_threshold=threshold("diar_cluster_threshold"),
        max_speakers=int(threshold("diar_max_speakers")),
        min_speaker_s=threshold("diar_min_speaker_s"),
        min_gap_s=threshold("diar_min_gap_s"),
        min_turn_s=threshold("diar_min_turn_s"),
        overlap_min_s=threshold("diar_overlap_min_s"),
        cluster_block_items=int(threshold("diar_cluster_block_items")),
    )


def asr_params(language: str | None = None) -> asr_mod.AsrParams:
    return asr_mod.AsrParams(
        chunk_s=threshold("asr_chunk_s"),
        batch_size=int(threshold("asr_batch_size")),
        beam_size=int(threshold("asr_beam_size")),
        language=language,
        max_word_gap_s=threshold("asr_max_word_gap_s"),
        windowing=setting("asr_windowing"),
        timestamps=bool(threshold("asr_timestamps")),
        min_window_coverage=threshold("asr_min_window_coverage"),
        word_pad_s=threshold("asr_word_pad_s"),
        min_piece_s=threshold("asr_min_piece_s"),
        max_rounds=int(threshold("asr_max_rounds")),
        max_compression_ratio=threshold("asr_max_compression_ratio"),
        windows_per_call=int(threshold("asr_windows_per_call")),
    )


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- models
@dataclass(frozen=True)
class AudioModelSettings:
    """Where the audio models are (fields of the ``models`` resource; see orchestration.settings)."""

    vad_model: str | None = None
    asr_model_dir: str | None = None
    speaker_model: str | None = None
    segmentation_model: str | None = None  # None: the PyanNet checkpoint bundled in whisperx
    pyannote_dir: str | None = None  # set: the pyannote pipeline replaces the resemblyzer diarizer
    align_model_dir: str | None = None  # set: word times from whisperx.align
    asr_language: str | None = None  # force the decoding language


@dataclass(frozen=True)
class AudioModels:
    """The loaded audio models of one process (loading is cached per path)."""

    settings: AudioModelSettings
    device: str
    vad: object
    asr: object  # whisperx FasterWhisperPipeline; .model is the faster_whisper.WhisperModel
    encoder: object | None = None  # resemblyzer VoiceEncoder (default diarizer)
    segmentation: object | None = None  # PyanNet segmentation (default diarizer)
    pyannote: object | None = None  # pyannote pipeline (when configured)
    load_seconds: dict[str, float] = field(default_factory=dict)


def load_audio_models(settings: AudioModelSettings) -> AudioModels:
    """Check every configured location, then load (and cache) the models.

    Fails with :class:`~orchestration.settings.MissingSettingError` naming the setting when a
    required model is not configured or does not exist: a setup error, not a per-video one.
    """
    vad_path = require_path(settings.vad_model, "vad_model", what="silero VAD (ONNX)")
    asr_dir = require_path(settings.asr_model_dir, "asr_model_dir", what="Whisper ASR model (CTranslate2)")
    if settings.pyannote_dir:
        pyannote_dir = require_path(settings.pyannote_dir, "pyannote_dir", what="pyannote diarization pipeline")
    else:
        speaker_path = require_path(settings.speaker_model, "speaker_model", what="resemblyzer speaker encoder")
        seg_path = (
            require_path(settings.segmentation_model, "segmentation_model", what="pyannote segmentation model")
            if settings.segmentation_model
            else diar.segmentation_default_path()
        )
    if settings.align_model_dir:
        require_path(settings.align_model_dir, "align_model_dir", what="wav2vec2 alignment model")
    device = _torch_device()
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    vad = vad_mod.load_vad(str(vad_path))
    seconds["vad"] = time.perf_counter() - t
    t = time.perf_counter()
    encoder = segmentation = pyannote = None
    if settings.pyannote_dir:
        pyannote = diar.load_pyannote_pipeline(str(pyannote_dir), device)
    else:
        encoder = diar.load_voice_encoder(str(speaker_path), device)
        segmentation = diar.load_segmentation(str(seg_path), device)
    seconds["diarization"] = time.perf_counter() - t
    t = time.perf_counter()
    asr_device, compute_type = asr_mod.device_and_compute_type()
    asr = asr_mod.load_asr(str(asr_dir), asr_device, compute_type, settings.asr_language or None)
    seconds["asr"] = time.perf_counter() - t
    return AudioModels(settings, device, vad, asr, encoder, segmentation, pyannote, seconds)


# --------------------------------------------------------------------------- steps
def run_vad(audio: np.ndarray, vad_model, params: dict[str, float]) -> list[tuple[float, float]]:
    probs = vad_mod.speech_probabilities(vad_model, audio)
    return vad_mod.speech_regions(probs, duration=len(audio) / SAMPLE_RATE, **params)


def run_diarization(audio: np.ndarray, regions: list[tuple[float, float]], models: AudioModels, params: diar.DiarizationParams) -> list[diar.Turn]:
    if models.pyannote is not None:
        return diar.diarize_pyannote(audio, pipeline=models.pyannote, max_speakers=params.max_speakers, overlap_min_s=params.overlap_min_s)
    return diar.diarize_resemblyzer(
        audio, segmentation_model=models.segmentation, encoder=models.encoder, params=params, speech_regions=regions
    )


def run_asr(
    audio: np.ndarray, regions: list[tuple[float, float]], models: AudioModels, params: asr_mod.AsrParams, turns: list[tuple[str, float, float]] | None = None
) -> asr_mod.AsrResult:
    """ASR of the speech ``regions``; ``turns`` (speaker, start, end) bound the Whisper windows to one speaker."""
    align_dir = models.settings.align_model_dir
    result = asr_mod.transcribe(models.asr.model, audio, regions, params=params, word_timestamps=not align_dir, turns=turns)
    if align_dir and result.segments:
        align_model, metadata = asr_mod.load_align(align_dir, result.language or params.language or "en", models.device)
        result = asr_mod.align_segments(result, audio, align_model=align_model, align_metadata=metadata, device=models.device)
    return result


# --------------------------------------------------------------------------- entry point
def analyze_audio(video_id: str, media_path: str | Path, models: AudioModels) -> AudioTables:
    """All four audio tables of one video (see the module doc); ``models`` from :func:`load_audio_models`."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    audio = decode_audio(media_path)
    timings["decode"] = time.perf_counter() - t
    if isinstance(audio, NoAudio):
        return empty_tables(audio.reason, audio.message, timings)
    timings["audio_seconds"] = len(audio) / SAMPLE_RATE
    silent = check_silence(audio, silence_dbfs=threshold("audio_silence_dbfs"))
    if silent is not None:
        return empty_tables(silent.reason, silent.message, timings)

    t = time.perf_counter()
    regions = run_vad(audio, models.vad, vad_params())
    timings["vad"] = time.perf_counter() - t
    if not regions:
        return empty_tables("no_speech", "the VAD found no speech", timings)
    speech = vad_mod.speech_segments_table(video_id, regions)

    t = time.perf_counter()
    turns = run_diarization(audio, regions, models, diarization_params())
    timings["diarization"] = time.perf_counter() - t
    speaker_turns = diar.speaker_turns_table(video_id, turns)
    video_speakers = diar.video_speakers_table(video_id, speaker_turns)

    t = time.perf_counter()
    params = asr_params(models.settings.asr_language)
    named_turns = list(zip(speaker_turns["speaker_local"].to_list(), speaker_turns["start"].to_list(), speaker_turns["end"].to_list()))
    result = run_asr(audio, regions, models, params, named_turns)
    timings["asr"] = time.perf_counter() - t
    rows = asr_mod.transcript_rows(result, named_turns, max_gap_s=params.max_word_gap_s)
    transcripts = asr_mod.transcripts_table(video_id, rows)

    return AudioTables(
        {
            "speech_segments": speech,
            "speaker_turns": speaker_turns,
            "video_speakers": video_speakers,
            "transcripts": transcripts,
            "asr_coverage": asr_mod.asr_coverage_table(video_id, result),
        },
        timings=timings,
    )
