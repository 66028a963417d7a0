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
            out = _Samples(_expected_samples(container, stream, sample_rate))
            lead = None  # samples of audio before the video's first frame (< 0: a gap before the audio)
            for frame in container.decode(stream):
                if lead is None:
                    lead = int(round((clock_start - frame.time) * sample_rate)) if frame.time is not None and clock_start is not None else 0
                    out.skip(lead)
                for piece in resampler.resample(frame):
                    out.append(piece.to_ndarray().reshape(-1))
            for piece in resampler.resample(None):  # flush the resampler's delay line
                out.append(piece.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, ValueError, OSError) as exc:  # noqa: PERF203
        return NoAudio("undecodable", f"{path.name}: {type(exc).__name__}: {exc}")
    if out.decoded == 0:
        return NoAudio("no_audio_samples", f"{path.name}: the audio stream decoded to no samples")
    audio = out.samples()
    if audio.size == 0:
        return NoAudio("no_audio_samples", f"{path.name}: the audio stream decoded to no samples")
    return audio


class _Samples:
    """The decoded waveform, written in place into one buffer sized from the container's duration.

    Collecting the decoder's frames and concatenating them would hold the waveform twice (920 MB
    for 2 hours at 16 kHz); the buffer holds it once. ``np.zeros`` of a large size is mapped
    lazily, so an over-estimate costs address space, not memory; an under-estimate grows it.
    """

    def __init__(self, expected: int):
        self.buf = np.zeros(max(expected, 1), np.float32)
        self.end = 0  # samples written (leading silence included)
        self.drop = 0  # decoded samples still to drop (audio before the video's first frame)
        self.decoded = 0

    def skip(self, lead: int) -> None:
        """``lead`` > 0: drop that many first samples; < 0: start after that much silence."""
        if lead > 0:
            self.drop = lead
        elif lead < 0:
            self._reserve(-lead)
            self.end = -lead

    def append(self, x: np.ndarray) -> None:
        self.decoded += len(x)
        if self.drop:
            cut = min(self.drop, len(x))
            x, self.drop = x[cut:], self.drop - cut
        self._reserve(self.end + len(x))
        self.buf[self.end : self.end + len(x)] = x
        self.end += len(x)

    def _reserve(self, size: int) -> None:
        if size > len(self.buf):
            grown = np.zeros(max(size, int(len(self.buf) * 1.25)), np.float32)
            grown[: self.end] = self.buf[: self.end]
            self.buf = grown

    def samples(self) -> np.ndarray:
        return self.buf[: self.end]


MAX_PREALLOCATED_S = 6 * 3600  # a header claiming more (a broken file) gets this much and grows


def _expected_samples(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, sample_rate: int) -> int:
    """Samples the stream should decode to, from its duration (else the container's), + 1 s."""
    if stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    else:
        seconds = 0.0
    return int((min(seconds, MAX_PREALLOCATED_S) + 1.0) * sample_rate)


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
