"""Clip media for VidChatBench scoring: the reference responder clip (cut exactly as the
release cuts it) and a prediction mp4, decoded onto the reference's frame grid.

Reference: `assets.release.media` crops the responder clip's person box over its span and
silences every other speaker's diarized turns (the release's ``clips/<clip>.mp4`` frames with
the cleaned ``.wav`` audio), encoded once to an mp4 in a work folder. Scoring then decodes
reference and prediction with the same loader, so both went through a codec.

Alignment by time: reference frame ``i`` is shown over ``[i / fps, (i + 1) / fps)``; it is
compared with the prediction frame on screen at time ``i / fps`` (the last one whose
timestamp is not later), whatever the prediction's frame rate. Prediction frames are resized
to the reference crop (``cv2.INTER_AREA``) as they are decoded.

Memory: a clip is at most ``clip_max_s`` (14 s) long; only its frames at the reference crop
size are held. Decoding a prediction stops as soon as its frames run past the reference's
duration plus the length tolerance (a wrong-length file is never decoded whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import polars as pl

from assets.audio.decode import NoAudio, decode_audio
from assets.release import media as release_media
from assets.vision.decode import stream_fps, to_bgr

EPS = 1e-6  # seconds: timestamps equal up to float noise


@dataclass(frozen=True)
class ClipMedia:
    """Decoded clip: BGR frames on the reference grid, 16 kHz mono audio (None: no audio)."""

    frames: np.ndarray  # uint8 [n, h, w, 3], BGR
    fps: float
    audio: np.ndarray | None
    duration: float  # seconds of video (frames / fps for the reference; last timestamp + 1 frame for a prediction)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])


class PredictionError(Exception):
    """Why a prediction cannot be scored: ``status`` is unreadable or wrong_length."""

    def __init__(self, status: str, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status, self.reason = status, reason


def reference_mp4(media_path: Path, clip: dict, turns: pl.DataFrame, width: int, height: int, has_audio: bool) -> bytes:
    """The responder clip as the release cuts it: person crop over ``[start, end)`` with the clip's
    audio, every other speaker's turns silenced (``clip``: a ``clips`` row)."""
    box = release_media.crop_box(clip["bbox"], width, height)
    start, end = clip["start_seconds"], clip["end_seconds"]
    audio = release_media.read_audio(media_path, start, end) if has_audio else None
    if audio is not None:
        audio = release_media.silenced(audio, release_media.other_speaker_spans(turns, clip["speaker_local"], start, end))
    data, _ = release_media.crop_mp4(media_path, start, end, box, audio)
    return data


def _audio(path: Path) -> np.ndarray | None:
    audio = decode_audio(path)
    return None if isinstance(audio, NoAudio) else audio


def load_reference(path: Path) -> ClipMedia:
    """A reference clip mp4 (from :func:`reference_mp4`): every frame, its audio."""
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        fps = stream_fps(stream)
        frames = np.stack([to_bgr(f) for f in inp.decode(stream)])
    return ClipMedia(frames, fps, _audio(path), len(frames) / fps)


def load_prediction(path: Path, reference: ClipMedia, *, tolerance_s: float) -> ClipMedia:
    """``path``'s frames on the reference's frame grid, resized to the reference crop, and its
    audio. Raises :class:`PredictionError` (unreadable / wrong_length), never anything else
    for a bad file."""
    w, h = reference.size
    limit = reference.duration + tolerance_s
    times: list[float] = []
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.video:
                raise PredictionError("unreadable", "no video stream")
            stream = inp.streams.video[0]
            fps = stream_fps(stream)
            for i, frame in enumerate(inp.decode(stream)):
                t = frame.time if frame.time is not None else i / fps
                if t > limit + EPS:
                    raise PredictionError("wrong_length", f"longer than the reference's {reference.duration:.2f} s by more than {tolerance_s} s")
                times.append(t)
                frames.append(cv2.resize(to_bgr(frame), (w, h), interpolation=cv2.INTER_AREA))
    except PredictionError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, IndexError) as e:
        raise PredictionError("unreadable", f"{type(e).__name__}: {e}") from None
    if not frames:
        raise PredictionError("unreadable", "no decodable video frame")
    t = np.asarray(times) - times[0]  # a stream may start at a non-zero pts
    duration = float(t[-1]) + 1.0 / fps
    if abs(duration - reference.duration) > tolerance_s:
        raise PredictionError("wrong_length", f"{duration:.2f} s of video, the reference has {reference.duration:.2f} s (tolerance {tolerance_s} s)")
    return ClipMedia(align_frames(frames, t, len(reference.frames), reference.fps), reference.fps, _audio(path), duration)


def align_frames(frames: list[np.ndarray], times: np.ndarray, n: int, fps: float) -> np.ndarray:
    """The frame on screen at each reference time ``i / fps`` (i < n): the last one whose time is
    not later (the first frame before the prediction starts, the last one after it ends)."""
    order = np.argsort(times, kind="stable")  # decode order is presentation order for these codecs, but be safe
    ts = np.asarray(times)[order]
    k = np.searchsorted(ts, np.arange(n) / fps + EPS, side="right") - 1
    k = np.clip(k, 0, len(ts) - 1)
    return np.stack([frames[order[j]] for j in k])


def static_frame(reference: ClipMedia) -> ClipMedia:
    """The static-frame baseline: the reference's first frame repeated, with its audio."""
    frames = np.broadcast_to(reference.frames[:1], reference.frames.shape)
    return ClipMedia(frames, reference.fps, reference.audio, reference.duration)
