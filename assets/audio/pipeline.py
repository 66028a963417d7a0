"""The audio stage for one video: ``analyze_audio(video_id, media_path)``.

Decodes the audio once (PyAV, 16 kHz mono), then runs silero VAD, diarization and
whisperx ASR on that one array and returns the tables ``speech_segments``,
``speaker_turns``, ``video_speakers``, ``transcripts`` and ``asr_coverage`` (share of the
VAD speech that got words) conformed to their declared schemas. Every tuned number is read from ``sql/thresholds.csv`` (stage ``audio``); every
model location from a setting (``orchestration.settings.model_dir``), never a download.

A video without usable audio is not an error: the result holds empty tables and
``result.reason`` / ``result.message`` say why (``missing_file``, ``no_audio_stream``,
``undecodable``, ``no_audio_samples``, ``silent`` or ``no_speech``). ``result.timings``
holds the seconds spent in each step and the audio duration (for RTF reporting).

Settings:

=================================  ==========================================================
SPEAKERLAKE_VAD_MODEL              silero VAD ONNX file (required)
SPEAKERLAKE_ASR_MODEL_DIR          CTranslate2 Whisper model directory (required)
SPEAKERLAKE_SPEAKER_MODEL          resemblyzer weights ``pretrained.pt`` (default backend)
SPEAKERLAKE_SEGMENTATION_MODEL     optional; default: the PyanNet checkpoint bundled in whisperx
SPEAKERLAKE_PYANNOTE_DIR           optional local pyannote pipeline: replaces the default diarizer
SPEAKERLAKE_ALIGN_MODEL_DIR        optional local wav2vec2 CTC dir: word times from whisperx.align
SPEAKERLAKE_ASR_LANGUAGE           optional language code forcing the decoding language
=================================  ==========================================================
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from assets.audio import asr as asr_mod
from assets.audio import diarization as diar
from assets.audio import vad as vad_mod
from assets.audio.decode import SAMPLE_RATE, NoAudio, check_silence, decode_audio
from orchestration.settings import model_dir
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
    )


def asr_params() -> asr_mod.AsrParams:
    return asr_mod.AsrParams(
        chunk_s=threshold("asr_chunk_s"),
        batch_size=int(threshold("asr_batch_size")),
        beam_size=int(threshold("asr_beam_size")),
        language=os.environ.get("SPEAKERLAKE_ASR_LANGUAGE") or None,
        max_word_gap_s=threshold("asr_max_word_gap_s"),
        windowing=setting("asr_windowing"),
        timestamps=bool(threshold("asr_timestamps")),
        min_window_coverage=threshold("asr_min_window_coverage"),
        word_pad_s=threshold("asr_word_pad_s"),
        min_piece_s=threshold("asr_min_piece_s"),
        max_rounds=int(threshold("asr_max_rounds")),
        max_compression_ratio=threshold("asr_max_compression_ratio"),
    )


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- steps
def run_vad(audio: np.ndarray, vad_model: Path, params: dict[str, float]) -> list[tuple[float, float]]:
    probs = vad_mod.speech_probabilities(vad_mod.load_vad(str(vad_model)), audio)
    return vad_mod.speech_regions(probs, duration=len(audio) / SAMPLE_RATE, **params)


def run_diarization(audio: np.ndarray, regions: list[tuple[float, float]], params: diar.DiarizationParams) -> list[diar.Turn]:
    device = _torch_device()
    pyannote_dir = os.environ.get("SPEAKERLAKE_PYANNOTE_DIR")
    if pyannote_dir:
        pipeline = diar.load_pyannote_pipeline(str(model_dir("SPEAKERLAKE_PYANNOTE_DIR", what="pyannote diarization pipeline")), device)
        return diar.diarize_pyannote(audio, pipeline=pipeline, max_speakers=params.max_speakers, overlap_min_s=params.overlap_min_s)
    encoder = diar.load_voice_encoder(str(model_dir("SPEAKERLAKE_SPEAKER_MODEL", what="resemblyzer speaker encoder")), device)
    seg_path = (
        model_dir("SPEAKERLAKE_SEGMENTATION_MODEL", what="pyannote segmentation model")
        if os.environ.get("SPEAKERLAKE_SEGMENTATION_MODEL")
        else diar.segmentation_default_path()
    )
    return diar.diarize_resemblyzer(
        audio, segmentation_model=diar.load_segmentation(str(seg_path), device), encoder=encoder, params=params, speech_regions=regions
    )


def run_asr(
    audio: np.ndarray, regions: list[tuple[float, float]], asr_dir: Path, params: asr_mod.AsrParams, turns: list[tuple[str, float, float]] | None = None
) -> asr_mod.AsrResult:
    """ASR of the speech ``regions``; ``turns`` (speaker, start, end) bound the Whisper windows to one speaker."""
    device, compute_type = asr_mod.device_and_compute_type()
    pipeline = asr_mod.load_asr(str(asr_dir), device, compute_type, params.language)
    align_dir = os.environ.get("SPEAKERLAKE_ALIGN_MODEL_DIR")
    result = asr_mod.transcribe(pipeline.model, audio, regions, params=params, word_timestamps=not align_dir, turns=turns)
    if align_dir and result.segments:
        path = model_dir("SPEAKERLAKE_ALIGN_MODEL_DIR", what="wav2vec2 alignment model")
        align_model, metadata = asr_mod.load_align(str(path), result.language or params.language or "en", device)
        result = asr_mod.align_segments(result, audio, align_model=align_model, align_metadata=metadata, device=device)
    return result


def preload_models() -> dict[str, float]:
    """Load (and cache) every configured model; returns seconds per model.

    Optional: ``analyze_audio`` loads lazily. Useful to keep model loading out of
    per-video timings (RTF) or to warm a worker.
    """
    out: dict[str, float] = {}
    device = _torch_device()
    t = time.perf_counter()
    vad_mod.load_vad(str(model_dir("SPEAKERLAKE_VAD_MODEL", what="silero VAD (ONNX)")))
    out["vad"] = time.perf_counter() - t
    t = time.perf_counter()
    if os.environ.get("SPEAKERLAKE_PYANNOTE_DIR"):
        diar.load_pyannote_pipeline(str(model_dir("SPEAKERLAKE_PYANNOTE_DIR", what="pyannote diarization pipeline")), device)
    else:
        diar.load_voice_encoder(str(model_dir("SPEAKERLAKE_SPEAKER_MODEL", what="resemblyzer speaker encoder")), device)
        seg_path = (
            model_dir("SPEAKERLAKE_SEGMENTATION_MODEL", what="pyannote segmentation model")
            if os.environ.get("SPEAKERLAKE_SEGMENTATION_MODEL")
            else diar.segmentation_default_path()
        )
        diar.load_segmentation(str(seg_path), device)
    out["diarization"] = time.perf_counter() - t
    t = time.perf_counter()
    device, compute_type = asr_mod.device_and_compute_type()
    asr_mod.load_asr(
        str(model_dir("SPEAKERLAKE_ASR_MODEL_DIR", what="Whisper ASR model (CTranslate2)")),
        device,
        compute_type,
        os.environ.get("SPEAKERLAKE_ASR_LANGUAGE") or None,
    )
    out["asr"] = time.perf_counter() - t
    return out


# --------------------------------------------------------------------------- entry point
def analyze_audio(video_id: str, media_path: str | Path) -> AudioTables:
    """All four audio tables of one video (see the module doc)."""
    # resolve every required model location first: a misconfiguration fails loudly, naming the setting
    vad_model = model_dir("SPEAKERLAKE_VAD_MODEL", what="silero VAD (ONNX)")
    asr_dir = model_dir("SPEAKERLAKE_ASR_MODEL_DIR", what="Whisper ASR model (CTranslate2)")
    if not os.environ.get("SPEAKERLAKE_PYANNOTE_DIR"):
        model_dir("SPEAKERLAKE_SPEAKER_MODEL", what="resemblyzer speaker encoder")

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
    regions = run_vad(audio, vad_model, vad_params())
    timings["vad"] = time.perf_counter() - t
    if not regions:
        return empty_tables("no_speech", "the VAD found no speech", timings)
    speech = vad_mod.speech_segments_table(video_id, regions)

    t = time.perf_counter()
    turns = run_diarization(audio, regions, diarization_params())
    timings["diarization"] = time.perf_counter() - t
    speaker_turns = diar.speaker_turns_table(video_id, turns)
    video_speakers = diar.video_speakers_table(video_id, speaker_turns)

    t = time.perf_counter()
    params = asr_params()
    named_turns = list(zip(speaker_turns["speaker_local"].to_list(), speaker_turns["start"].to_list(), speaker_turns["end"].to_list()))
    result = run_asr(audio, regions, asr_dir, params, named_turns)
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
