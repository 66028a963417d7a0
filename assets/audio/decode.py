"""Decode a video's audio track once, with PyAV, to 16 kHz mono float32.

`decode_audio` never raises for a bad input: it returns either the waveform or a
:class:`NoAudio` carrying a machine-readable reason, so the audio stage can write empty
tables plus a reject row instead of crashing.

=================  =============================================================
reason             meaning
=================  =============================================================
missing_file       the path does not exist
no_audio_stream    the container has no audio stream
undecodable        PyAV/FFmpeg failed to open or decode the audio
no_audio_samples   an audio stream exists but decodes to zero samples
silent             digital silence: peak level below ``silence_dbfs``
=================  =============================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class NoAudio:
    """Why a video has no usable audio (``reason`` is one of the codes in the module doc)."""

    reason: str
    message: str


def decode_audio(path: str | Path, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray | NoAudio:
    """All of the first audio stream of ``path`` as mono float32 in [-1, 1] at ``sample_rate``,
    on the video's clock: sample 0 is at the video stream's start (the time of vision frame 0), so
    an audio stream that starts later is padded with silence in front, one that starts earlier
    loses its lead. FFmpeg's resampler does the channel down-mix and rate conversion in one pass.
    """
    path = Path(path)
    if not path.exists():
        return NoAudio("missing_file", f"{path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return NoAudio("no_audio_stream", f"{path.name} has no audio stream")
            stream = container.streams.audio[0]
            clock_start = _video_start(container)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks: list[np.ndarray] = []
            lead = None  # samples of audio before the video's first frame (< 0: a gap before the audio)
            for frame in container.decode(stream):
                if lead is None:
                    lead = int(round((clock_start - frame.time) * sample_rate)) if frame.time is not None and clock_start is not None else 0
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's delay line
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError, OSError) as exc:  # noqa: PERF203
        return NoAudio("undecodable", f"{path.name}: {type(exc).__name__}: {exc}")
    if not chunks:
        return NoAudio("no_audio_samples", f"{path.name}: the audio stream decoded to no samples")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    audio = np.concatenate([np.zeros(-lead, dtype=np.float32), audio]) if lead < 0 else audio[lead or 0 :]
    if audio.size == 0:
        return NoAudio("no_audio_samples", f"{path.name}: the audio stream decoded to no samples")
    return audio


def _video_start(container: av.container.InputContainer) -> float | None:
    """Start time (s) of the first video stream: the clock every stage's times are on."""
    if not container.streams.video:
        return None
    v = container.streams.video[0]
    return float(v.start_time * v.time_base) if v.start_time is not None and v.time_base else None


def peak_dbfs(audio: np.ndarray) -> float:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def check_silence(audio: np.ndarray, *, silence_dbfs: float) -> NoAudio | None:
    """``NoAudio('silent')`` when the loudest sample is below ``silence_dbfs`` (e.g. -60)."""
    level = peak_dbfs(audio)
    if level < silence_dbfs:
        return NoAudio("silent", f"peak level {level:.1f} dBFS is below {silence_dbfs:.0f} dBFS (digital silence)")
    return None
