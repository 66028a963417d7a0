"""Clip media with PyAV (FFmpeg's libraries in the wheel; no system ffmpeg): the person crop
of a clip as an mp4 with the clip's audio, and the clip's cleaned audio (WAV) in which every
other speaker's speech is silenced.

Determinism: the mp4 muxer and the encoders run with FFmpeg's ``bitexact`` flags (no encoder
version string or creation time in the file) and frames get timestamps counted from 0, so the
same source span gives the same bytes. Memory: one clip is decoded at a time, from a seek to
its start, and only its own frames are held (a 14 s crop, never the whole video).
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import polars as pl

from assets.vision.decode import display_rotation, to_displayed

# MPEG-4 Part 2 (FFmpeg's own encoder), not H.264: PyAV 18.1's wheel has libx264, but its
# output is not reproducible: 25 encodes of one crop under CPU load gave 4 different files, also
# with one thread and x264-params threads=1:lookahead-threads=1:sync-lookahead=0 (mpeg4: 1 file
# in 25, every run). Byte-identical re-exports are a requirement, so mpeg4 it is; every mp4
# player decodes it.
VIDEO_CODEC = "mpeg4"
# fixed quantiser (ffmpeg's -q:v): quality independent of crop size; 3 is visually near-lossless
# for MPEG-4 Part 2 (the default 200 kb/s rate control gives 8.7 KB for a 3.2 s 96x144 crop: blocky)
VIDEO_QSCALE = 3
FF_QP2LAMBDA = 118  # libavutil's quantiser -> lambda factor (global_quality is in lambda units)
AUDIO_CODEC = "aac"
BITEXACT = {"flags": "+bitexact"}
EPS = 1e-6  # seconds: a frame time equal to a boundary up to float noise counts as on it


@dataclass(frozen=True)
class CropBox:
    """Pixel crop ``[x, x + w) x [y, y + h)``; even sizes (yuv420p needs them)."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class ClipAudio:
    samples: np.ndarray  # float32, (channels, n) in [-1, 1]
    rate: int
    layout: str


def crop_box(bbox: list[float], width: int, height: int) -> CropBox:
    """The pixel crop of a normalised ``[x, y, w, h]`` box, rounded to even sizes inside the frame."""
    x, y, w, h = (float(v) for v in bbox)
    x0 = min(max(int(round(x * width)), 0), width - 2)
    y0 = min(max(int(round(y * height)), 0), height - 2)
    cw = max(2, min(int(round(w * width)), width - x0) // 2 * 2)
    ch = max(2, min(int(round(h * height)), height - y0) // 2 * 2)
    return CropBox(x0, y0, cw, ch)


def other_speaker_spans(turns: pl.DataFrame, speaker_local: str | None, start: float, end: float) -> list[tuple[float, float]]:
    """The clip-relative spans of every diarized turn of another speaker inside ``[start, end)``
    (a clip without a speaker_local, a face that never speaks, silences every turn)."""
    spans = []
    for s, e, who in turns.select("start", "end", "speaker_local").sort("start", "end").iter_rows():
        if who == speaker_local or e <= start or s >= end:
            continue
        spans.append((max(s, start) - start, min(e, end) - start))
    return spans


def read_audio(media_path: Path, start: float, end: float) -> ClipAudio | None:
    """The source's audio over ``[start, end)`` as float samples at its own rate and layout
    (None when the file has no audio stream)."""
    with av.open(str(media_path)) as inp:
        if not inp.streams.audio:
            return None
        stream = inp.streams.audio[0]
        rate, layout = stream.rate, stream.layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        n = int(round((end - start) * rate))
        out = np.zeros((stream.channels, n), dtype=np.float32)
        inp.seek(max(0, int((start - 1.0) / stream.time_base)), stream=stream, backward=True)
        for frame in inp.decode(stream):
            if frame.time is None:
                continue
            t0 = frame.time
            for rf in resampler.resample(frame):
                arr = rf.to_ndarray()
                first = int(round((t0 - start) * rate))  # this frame's first sample, clip-relative
                lo, hi = max(first, 0), min(first + arr.shape[1], n)
                if hi > lo:
                    out[:, lo:hi] = arr[:, lo - first : hi - first]
                t0 += arr.shape[1] / rate
            if t0 >= end:
                break
    return ClipAudio(out, rate, layout)


def silenced(audio: ClipAudio, spans: list[tuple[float, float]]) -> ClipAudio:
    """``audio`` with the clip-relative ``spans`` set to zero."""
    samples = audio.samples.copy()
    for s, e in spans:
        samples[:, int(math.floor(s * audio.rate)) : int(math.ceil(e * audio.rate))] = 0.0
    return ClipAudio(samples, audio.rate, audio.layout)


def wav_bytes(audio: ClipAudio) -> bytes:
    """16-bit PCM WAV (stdlib writer: a fixed header, no metadata)."""
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(audio.rate)
        w.writeframes(pcm.T.tobytes())
    return buf.getvalue()


def crop_mp4(media_path: Path, start: float, end: float, box: CropBox, audio: ClipAudio | None) -> tuple[bytes, int]:
    """The crop ``box`` of the frames whose time lies in ``[start, end)``, as an mp4 with ``audio``
    (AAC) when given. Returns the file's bytes and the number of video frames."""
    buf = io.BytesIO()
    n_frames = 0
    with av.open(str(media_path)) as inp, av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        src = inp.streams.video[0]
        rate = src.average_rate or Fraction(25)
        vout = out.add_stream(VIDEO_CODEC, rate=rate)
        vout.width, vout.height, vout.pix_fmt = box.w, box.h, "yuv420p"
        vout.codec_context.time_base = Fraction(1) / rate
        vout.codec_context.options = {"flags": "+bitexact+qscale", "global_quality": str(VIDEO_QSCALE * FF_QP2LAMBDA)}
        vout.codec_context.thread_count = 1  # slice threads would make the bytes depend on the core count
        aout = None
        if audio is not None:
            aout = out.add_stream(AUDIO_CODEC, rate=audio.rate, layout=audio.layout)
            aout.codec_context.options = dict(BITEXACT)
        inp.seek(max(0, int(start / src.time_base)), stream=src, backward=True)
        for frame in inp.decode(src):
            t = frame.time
            if t is None or t < start - EPS:
                continue
            if t >= end - EPS:
                break
            rgb = to_displayed(frame.to_ndarray(format="rgb24"), display_rotation(frame))[box.y : box.y + box.h, box.x : box.x + box.w]
            crop = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            crop.pts = n_frames
            crop.time_base = vout.codec_context.time_base
            n_frames += 1
            for packet in vout.encode(crop):
                out.mux(packet)
        for packet in vout.encode():
            out.mux(packet)
        if aout is not None:
            # one frame for the whole span: PyAV cuts it into the encoder's frame size itself
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.samples), format="fltp", layout=audio.layout)
            af.sample_rate, af.pts, af.time_base = audio.rate, 0, Fraction(1, audio.rate)
            for packet in aout.encode(af):
                out.mux(packet)
            for packet in aout.encode():
                out.mux(packet)
    return buf.getvalue(), n_frames
