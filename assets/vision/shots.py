"""Shot boundaries with PySceneDetect, fed frame by frame.

The detectors are PySceneDetect's own (``content``, ``adaptive``, ``histogram``, ``hash``),
but frames come from the caller instead of a ``SceneManager``/``VideoStream`` so one PyAV
decode serves both the shot and the face stages. Frames are downscaled exactly as
``SceneManager`` does by default (to an effective width of at least 256 px), so results
match the ``scenedetect`` CLI.

A cut is the index of the first frame of a new shot; shots are ``[start_frame, end_frame)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np
import polars as pl
from scenedetect.common import FrameTimecode
from scenedetect.detector import SceneDetector
from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector
from scenedetect.scene_manager import DEFAULT_MIN_WIDTH, compute_downscale_factor

from orchestration.tables import TABLES

DETECTORS = ("content", "adaptive", "histogram", "hash")


def make_shot_detector(name: str, threshold: float, min_frames: int) -> SceneDetector:
    """A PySceneDetect detector by name; ``threshold`` is in that detector's own units
    (content: HSV+edge change 0-255, adaptive: ratio to the rolling mean, histogram and
    hash: normalised distance)."""
    n = int(min_frames)
    if name == "content":
        return ContentDetector(threshold=threshold, min_scene_len=n)
    if name == "adaptive":
        return AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=n)
    if name == "histogram":
        return HistogramDetector(threshold=threshold, min_scene_len=n)
    if name == "hash":
        return HashDetector(threshold=threshold, min_scene_len=n)
    raise ValueError(f"shot_detector={name!r} (sql/thresholds.csv) is not one of {DETECTORS}")


class ShotCutter:
    """Streaming cut detection: :meth:`push` each frame in order, then :meth:`finish`.

    Detectors may report a cut a few frames after it happened (the min-scene-length merge
    filter, the adaptive window); :attr:`lag` bounds that delay, so a consumer that stays
    ``lag`` frames behind the newest pushed frame knows every cut at or before its position.
    """

    def __init__(self, detector: SceneDetector, fps: float, min_frames: int):
        self.detector = detector
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.lag = max(int(detector.event_buffer_length), int(min_frames)) + 2
        self._cuts: set[int] = set()
        self._scale: float | None = None
        self._n = 0

    def push(self, frame_idx: int, frame: np.ndarray) -> None:
        if self._scale is None:
            self._scale = float(compute_downscale_factor(frame.shape[1], DEFAULT_MIN_WIDTH))
        img = frame
        if self._scale > 1.0:
            h, w = frame.shape[:2]
            img = cv2.resize(frame, (max(1, round(w / self._scale)), max(1, round(h / self._scale))), interpolation=cv2.INTER_LINEAR)
        for tc in self.detector.process_frame(FrameTimecode(frame_idx, fps=self.fps), img):
            self._add(tc.frame_num)
        self._n = frame_idx + 1

    def finish(self) -> list[int]:
        for tc in self.detector.post_process(FrameTimecode(max(self._n - 1, 0), fps=self.fps)):
            self._add(tc.frame_num)
        return self.cuts

    def is_cut(self, frame_idx: int) -> bool:
        return frame_idx in self._cuts

    @property
    def cuts(self) -> list[int]:
        return sorted(c for c in self._cuts if 0 < c < self._n)

    def _add(self, frame: int) -> None:
        if frame > 0:
            self._cuts.add(int(frame))


def shot_bounds(cuts: Iterable[int], n_frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges from cut frames; no cut gives one shot."""
    if n_frames <= 0:
        return []
    edges = [0, *sorted({int(c) for c in cuts if 0 < int(c) < n_frames}), n_frames]
    return list(zip(edges[:-1], edges[1:]))


def detect_shots(frames: Iterable[np.ndarray], fps: float, *, detector: str = "content", threshold: float = 27.0, min_frames: int = 15) -> list[tuple[int, int]]:
    """Shot ranges of a sequence of BGR frames (convenience wrapper over :class:`ShotCutter`)."""
    cutter = ShotCutter(make_shot_detector(detector, threshold, min_frames), fps, min_frames)
    n = 0
    for i, f in enumerate(frames):
        cutter.push(i, f)
        n = i + 1
    return shot_bounds(cutter.finish(), n)


def shots_frame(video_id: str, bounds: list[tuple[int, int]], fps: float) -> pl.DataFrame:
    """The ``shots`` table rows; times are frame index / fps (end exclusive)."""
    fps = float(fps) if fps and fps > 0 else 25.0
    df = pl.DataFrame(
        {
            "video_id": [video_id] * len(bounds),
            "shot_id": list(range(len(bounds))),
            "start": [s / fps for s, _ in bounds],
            "end": [e / fps for _, e in bounds],
            "start_frame": [s for s, _ in bounds],
            "end_frame": [e for _, e in bounds],
        },
        schema_overrides={"video_id": pl.String, "start": pl.Float64, "end": pl.Float64},
    )
    return TABLES["shots"].conform(df)
