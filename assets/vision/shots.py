"""Shot boundaries with PySceneDetect, fed frame by frame: hard cuts, fades and dissolves.

The detectors are PySceneDetect's own (``content``, ``adaptive``, ``histogram``, ``hash`` for
hard cuts; ``ThresholdDetector`` for fades through black), but frames come from the caller
instead of a ``SceneManager``/``VideoStream`` so one PyAV decode serves both the shot and the
face stages. Frames are downscaled exactly as ``SceneManager`` does by default (to an
effective width of at least 256 px), so results match the ``scenedetect`` CLI.

Gradual transitions (`GradualTransitionFinder`): a cut detector compares neighbouring
frames, so a dissolve (each frame a little more of the next shot) or a fade never crosses
its threshold. Over a window of ``2 * half_window + 1`` frames, a dissolve is the one
change that is large end to end (``min_change``) while every frame in between is a blend
``(1 - a) * first + a * last`` of the window's ends (least-squares residual at most
``max_residual`` of the end-to-end change) with ``a`` rising from 0 to 1 through at least
``min_mixed`` frames. A zoom, a pan or a moving head changes the picture geometrically, so
its middle frames are no blend of its ends (and a slow one changes little end to end); a
hard cut has no mixed frames. A blend towards or away from a black frame is one half of a
fade; ThresholdDetector places the fade's boundary in the middle of its dark frames and
the two halves give its extent.

Every boundary is one frame (a cut's first frame of the new shot, a dissolve's frame where
the blend passes one half, a fade's middle of the dark frames) with the span of frames the
transition occupies (`Transition`); the face stage tracks no face inside a span, so no
face track (clip) holds frames of two shots.

A cut is the index of the first frame of a new shot; shots are ``[start_frame, end_frame)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import polars as pl
from scenedetect.common import FrameTimecode
from scenedetect.detector import SceneDetector
from scenedetect.detectors import AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector, ThresholdDetector
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


@dataclass(frozen=True)
class GradualParams:
    """Settings of the gradual-transition finder and the fade detector (sql/thresholds.csv)."""

    half_window: int = 15  # frames each side of a candidate centre: longest transition ~ 2x this
    min_change: float = 14.0  # mean |last - first| of the window on 0-255 BGR, 64x36 px
    max_residual: float = 0.3  # blend residual / end-to-end change, worst frame of the window
    min_mixed: int = 4  # frames with a blend weight inside MIXED: a cut has none
    fade_level: float = 12.0  # ThresholdDetector: mean intensity below which a frame is black
    span_weight: float = 0.05  # a transition spans the frames holding more than this share of both shots


@dataclass(frozen=True)
class Transition:
    """One shot boundary: ``boundary`` is the first frame of the new shot; the transition
    occupies frames ``[start, end)`` (empty for a cut)."""

    kind: str  # "cut" | "dissolve" | "fade"
    boundary: int
    start: int
    end: int


@dataclass(frozen=True)
class _Blend:
    kind: str  # "dissolve" | "fade_out" (towards black) | "fade_in" (from black)
    start: int
    end: int
    boundary: int
    residual: float
    change: float  # mean |last - first| of the window


SMALL = (64, 36)  # frames are compared at this size: dissolves are global, detail is noise
MIXED = (0.15, 0.85)  # blend weights of a "mixed" frame (shot_gradual_min_mixed counts them)
MAX_BACKSTEP = 0.15  # a blend only moves forward: largest drop of the weight allowed (noise)


class GradualTransitionFinder:
    """Streaming dissolve / fade-half finder (see the module doc); push every frame in order."""

    def __init__(self, params: GradualParams):
        self.p = params
        self.frames: deque[tuple[int, np.ndarray, float]] = deque(maxlen=2 * params.half_window + 1)
        self.found: list[_Blend] = []
        self._run: list[_Blend] = []

    @property
    def lag(self) -> int:
        """Frames after which every blend touching a frame is known (window + longest run)."""
        return 4 * self.p.half_window + 2

    def push(self, frame_idx: int, small: np.ndarray) -> None:
        f = small.astype(np.float32)
        self.frames.append((frame_idx, f, float(f.mean())))
        if len(self.frames) == self.frames.maxlen:
            cand = self._evaluate()
            if cand is not None:
                self._run.append(cand)
            elif self._run:
                self._close_run()

    def finish(self) -> list[_Blend]:
        if self._run:
            self._close_run()
        return self.found

    def _close_run(self) -> None:
        # consecutive window centres see the same transition; the one with the largest
        # end-to-end change holds all of it (pure shots at both ends), so its blend weights
        # are calibrated: a window inside the transition fits a blend just as well
        best = max(self._run, key=lambda b: (round(b.change, 1), -b.residual, -b.start))
        self.found.append(best)
        self._run = []

    def _evaluate(self) -> _Blend | None:
        # most windows change little end to end: decided from the two ends, before the stack
        a, b = self.frames[0][1].ravel(), self.frames[-1][1].ravel()
        d = b - a
        change = float(np.abs(d).mean())
        if change < self.p.min_change:
            return None
        idx = [i for i, _, _ in self.frames]
        stack = np.stack([f for _, f, _ in self.frames]).reshape(len(idx), -1)
        dd = float(d @ d)
        alpha = (stack - a) @ d / dd
        resid = stack - a - alpha[:, None] * d
        ratio = np.sqrt((resid**2).mean(axis=1) / (dd / d.size))
        if float(ratio.max()) > self.p.max_residual:
            return None
        if int(((alpha > MIXED[0]) & (alpha < MIXED[1])).sum()) < self.p.min_mixed:
            return None
        if float((np.maximum.accumulate(alpha) - alpha).max()) > MAX_BACKSTEP:
            return None
        w = self.p.span_weight
        start = idx[int(np.argmax(alpha > w))]
        end = idx[len(alpha) - int(np.argmax(alpha[::-1] < 1 - w))] if (alpha < 1 - w).any() else idx[-1]
        boundary = idx[int(np.argmax(alpha >= 0.5))]
        dark_a, dark_b = self.frames[0][2] < self.p.fade_level, self.frames[-1][2] < self.p.fade_level
        kind = "fade_out" if dark_b and not dark_a else "fade_in" if dark_a and not dark_b else "dissolve"
        if dark_a and dark_b:
            return None
        return _Blend(kind, start, end, boundary, float(ratio.max()), change)


def merge_transitions(content_cuts: Iterable[int], fade_cuts: Iterable[int], blends: Iterable[_Blend], *, half_window: int, min_frames: int) -> list[Transition]:
    """One `Transition` per boundary from the three sources.

    A fade is ThresholdDetector's cut (middle of the dark frames) spanning from the blend
    towards black that ends before it to the blend from black that starts after it (a pair
    of such halves without a ThresholdDetector cut is a fade too, its boundary between
    them). A dissolve is its blend. A hard cut from the cut detector inside (or within
    two frames of) a gradual transition is that transition's own flicker and is dropped;
    of two boundaries closer than ``min_frames`` the gradual one is kept."""
    blends = sorted(blends, key=lambda b: b.start)
    outs = [b for b in blends if b.kind == "fade_out"]
    ins = [b for b in blends if b.kind == "fade_in"]
    used: set[int] = set()
    gradual: list[Transition] = []
    for c in sorted(set(int(x) for x in fade_cuts)):
        o = [b for b in outs if c - half_window <= b.end <= c + 2]
        i = [b for b in ins if c - 2 <= b.start <= c + half_window]
        start = o[-1].start if o else c
        end = i[0].end if i else c
        used.update(id(x) for x in (o[-1:] + i[:1]))
        gradual.append(Transition("fade", c, min(start, c), max(end, c)))
    for o in outs:
        if id(o) in used:
            continue
        i = [b for b in ins if id(b) not in used and 0 <= b.start - o.end <= half_window]
        if i:
            used.update({id(o), id(i[0])})
            gradual.append(Transition("fade", (o.end + i[0].start) // 2, o.start, i[0].end))
    gradual += [Transition("dissolve", b.boundary, b.start, b.end) for b in blends if b.kind == "dissolve"]
    out = list(gradual)
    for c in sorted(set(int(x) for x in content_cuts)):
        if not any(g.start - 2 <= c <= g.end + 2 for g in gradual):
            out.append(Transition("cut", c, c, c))
    out.sort(key=lambda t: (t.boundary, t.kind == "cut"))
    kept: list[Transition] = []
    for t in out:
        if kept and t.boundary - kept[-1].boundary < min_frames:
            if kept[-1].kind == "cut" and t.kind != "cut":
                kept[-1] = t
            continue
        kept.append(t)
    return kept


class ShotCutter:
    """Streaming shot-boundary detection: :meth:`push` each frame in order, then :meth:`finish`.

    Detectors may report a boundary well after it happened (the min-scene-length merge
    filter, the fade's dark frames, a dissolve's window); :attr:`lag` bounds that delay, so
    a consumer that stays ``lag`` frames behind the newest pushed frame knows every
    boundary and transition at or before its position.
    """

    def __init__(self, detector: SceneDetector, fps: float, min_frames: int, gradual: GradualParams | None = None):
        self.detector = detector
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.min_frames = int(min_frames)
        self.gradual = gradual
        self.fades = ThresholdDetector(threshold=gradual.fade_level, min_scene_len=int(min_frames)) if gradual else None
        self.blends = GradualTransitionFinder(gradual) if gradual else None
        self.lag = max(int(detector.event_buffer_length), int(min_frames)) + 2
        if self.blends is not None:
            self.lag = max(self.lag, self.blends.lag)
        self._cuts: set[int] = set()
        self._fade_cuts: set[int] = set()
        self._merged: list[Transition] | None = None
        self._scale: float | None = None
        self._n = 0

    def push(self, frame_idx: int, frame: np.ndarray) -> None:
        if self._scale is None:
            self._scale = float(compute_downscale_factor(frame.shape[1], DEFAULT_MIN_WIDTH))
        img = frame
        if self._scale > 1.0:
            h, w = frame.shape[:2]
            img = cv2.resize(frame, (max(1, round(w / self._scale)), max(1, round(h / self._scale))), interpolation=cv2.INTER_LINEAR)
        tc = FrameTimecode(frame_idx, fps=self.fps)
        for c in self.detector.process_frame(tc, img):
            self._add(self._cuts, c.frame_num)
        if self.fades is not None:
            for c in self.fades.process_frame(tc, img):
                self._add(self._fade_cuts, c.frame_num)
            self.blends.push(frame_idx, cv2.resize(img, SMALL, interpolation=cv2.INTER_AREA))
        self._n = frame_idx + 1
        self._merged = None

    def finish(self) -> list[int]:
        last = FrameTimecode(max(self._n - 1, 0), fps=self.fps)
        for c in self.detector.post_process(last):
            self._add(self._cuts, c.frame_num)
        if self.fades is not None:
            for c in self.fades.post_process(last):
                self._add(self._fade_cuts, c.frame_num)
            self.blends.finish()
        self._merged = None
        return self.cuts

    @property
    def transitions(self) -> list[Transition]:
        """Every boundary found so far (final for frames at least :attr:`lag` behind)."""
        if self._merged is None:
            if self.gradual is None:
                self._merged = [Transition("cut", c, c, c) for c in sorted(self._cuts)]
            else:
                self._merged = merge_transitions(self._cuts, self._fade_cuts, self.blends.found, half_window=self.gradual.half_window, min_frames=self.min_frames)
            self._merged = [t for t in self._merged if 0 < t.boundary < max(self._n, 1)]
        return self._merged

    def is_cut(self, frame_idx: int) -> bool:
        return any(t.boundary == frame_idx for t in self.transitions)

    def in_transition(self, frame_idx: int) -> bool:
        """Whether ``frame_idx`` is one of a gradual transition's blended / faded frames."""
        return any(t.start <= frame_idx < t.end for t in self.transitions)

    def shot_index(self, frame_idx: int) -> int:
        return sum(1 for t in self.transitions if t.boundary <= frame_idx)

    @property
    def cuts(self) -> list[int]:
        return [t.boundary for t in self.transitions]

    def _add(self, into: set[int], frame: int) -> None:
        if frame > 0:
            into.add(int(frame))


def shot_bounds(cuts: Iterable[int], n_frames: int) -> list[tuple[int, int]]:
    """``[start, end)`` frame ranges from cut frames; no cut gives one shot."""
    if n_frames <= 0:
        return []
    edges = [0, *sorted({int(c) for c in cuts if 0 < int(c) < n_frames}), n_frames]
    return list(zip(edges[:-1], edges[1:]))


def detect_shots(frames: Iterable[np.ndarray], fps: float, *, detector: str = "content", threshold: float = 27.0, min_frames: int = 15, gradual: GradualParams | None = None) -> list[tuple[int, int]]:
    """Shot ranges of a sequence of BGR frames (convenience wrapper over :class:`ShotCutter`);
    ``gradual`` also finds dissolves and fades."""
    cutter = ShotCutter(make_shot_detector(detector, threshold, min_frames), fps, min_frames, gradual)
    n = 0
    for i, f in enumerate(frames):
        cutter.push(i, f)
        n = i + 1
    return shot_bounds(cutter.finish(), n)


def shots_frame(video_id: str, bounds: list[tuple[int, int]], fps: float, transitions: Iterable[Transition] = ()) -> pl.DataFrame:
    """The ``shots`` table rows; times are frame index / fps (end exclusive). Each shot but
    the first carries the transition it begins with (kind and frame span; a cut's span is
    empty at ``start_frame``), taken from ``transitions`` (a cut when none is given)."""
    fps = float(fps) if fps and fps > 0 else 25.0
    by_boundary = {t.boundary: t for t in transitions}
    begins = [None] + [by_boundary.get(s, Transition("cut", s, s, s)) for s, _ in bounds[1:]]
    df = pl.DataFrame(
        {
            "video_id": [video_id] * len(bounds),
            "shot_id": list(range(len(bounds))),
            "start": [s / fps for s, _ in bounds],
            "end": [e / fps for _, e in bounds],
            "start_frame": [s for s, _ in bounds],
            "end_frame": [e for _, e in bounds],
            "transition": [t.kind if t else None for t in begins],
            "transition_start_frame": [t.start if t else None for t in begins],
            "transition_end_frame": [t.end if t else None for t in begins],
        },
        schema_overrides={"video_id": pl.String, "start": pl.Float64, "end": pl.Float64, "transition": pl.String, "transition_start_frame": pl.Int64, "transition_end_frame": pl.Int64},
    )
    return TABLES["shots"].conform(df)
