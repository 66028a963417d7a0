"""Face tracks inside one shot: sparse detection, ByteTrack, ArcFace verify/stitch,
per-frame boxes and a per-frame mouth signal.

Per shot (a tracker never sees two shots):

* **keyframes** every ``det_step`` frames from the shot's first frame, plus the shot's last
  frame: SCRFD detection, then ByteTrack (:class:`trackers.ByteTrackTracker`, Roboflow's
  ``trackers`` package; one tracker instance per shot, updated once per keyframe, so its
  ``lost_track_buffer`` counts keyframes, see :func:`make_bytetrack`);
* **track births**: the tracker reports a new track's id only at its second consecutive
  keyframe (``minimum_consecutive_frames=2``; its first detection comes back with
  ``tracker_id`` -1). The previous keyframe's detections that started a tracker track are
  kept, and a newly confirmed id is linked back to the one it grew from (the tracker's
  predicted box of a one-hit track is its first box, so the link is the same IoU match the
  tracker made), so a track starts at the keyframe where the face first appeared;
* **boxes between keyframes** are linearly interpolated between a track's two keyframe
  detections, so ``frames`` covers every video frame of the track; a track missing at up to
  ``max_gap_s`` worth of keyframes is bridged the same way, a longer gap ends it;
* **ArcFace** runs on a track's first detection and then every ``embed_interval_s``:
  a new sample with cosine < ``switch_cos`` to the track's mean so far ends the track (the
  tracker swapped identities), and a new tracker id whose first embedding has cosine >=
  ``same_cos`` with a track of this shot last seen at most ``max_gap_s`` plus one detection
  step ago continues that track (stitching over a tracker loss);
* **landmarks** (2d106) run on every ``mouth_step``-th frame of the shot (keyframes always
  included, since ``det_step`` is a multiple of ``mouth_step``) on the interpolated boxes;
  the crops wait for one batched model call per ``landmark_batch`` crops (or the shot's end),
  and ``mouth_open`` is linearly interpolated to every frame. Detection scores and the
  keyframe head-pose estimates are interpolated the same way.

Frames are buffered only for the span a pending interpolation can reach (max gap plus one
detection step), so memory stays bounded for long shots.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from assets.vision.faces import Detections, LandmarkCrop, detect_faces, embed_face, landmark_crop, landmarks_106_batch, mean_embedding, pose_from_kps
from assets.vision.models import FaceModels
from assets.vision.mouth import mouth_opening, resample

if TYPE_CHECKING:
    from trackers import ByteTrackTracker

# trackers, supervision and SciPy are imported where a shot is tracked, not at module level:
# the Dagster code location imports this module to define the assets, and every Dagster
# process (code server, run worker, UI) would otherwise pay their import (about half a second).


@dataclass
class TrackerConfig:
    det_step: int
    mouth_step: int
    max_gap_frames: int
    embed_every: int
    min_track_frames: int
    min_face_px: float
    same_cos: float
    switch_cos: float
    track_high: float
    track_new: float
    match_iou: float
    landmark_batch: int


def make_bytetrack(cfg: TrackerConfig) -> ByteTrackTracker:
    """A ByteTrack for one shot, updated once per detection keyframe, without timestamps
    (fixed-rate mode: one Kalman step per update, as for the shot's irregular last keyframe).

    Its ``lost_track_buffer`` is in "30 fps frames" scaled by ``frame_rate / 30``, i.e. in
    update calls when ``frame_rate`` is 30, so it is set to the number of keyframes a face may
    be missing and still be bridged (``max_gap_frames`` in detection steps, rounded up);
    ``frame_rate`` has no other effect without timestamps. ``minimum_consecutive_frames=2``:
    a one-hit track must be matched at the next keyframe or it is dropped (ByteTrack's
    unconfirmed tracks); its first detection is recovered by :meth:`ShotFaceTracker._track`."""
    from trackers import ByteTrackTracker

    return ByteTrackTracker(
        lost_track_buffer=max(1, -(-cfg.max_gap_frames // cfg.det_step)),
        frame_rate=30.0,
        track_activation_threshold=cfg.track_new,
        minimum_consecutive_frames=2,
        minimum_iou_threshold=cfg.match_iou,
        high_conf_det_threshold=cfg.track_high,
    )


@dataclass
class _Obs:
    frame: int
    box: np.ndarray
    score: float
    yaw: float
    pitch: float


@dataclass
class FaceTrack:
    """One contiguous face track of a shot; every list is per frame from start to end."""

    shot_id: int
    start_frame: int
    end_frame: int  # exclusive
    boxes: np.ndarray  # [n, 4]
    det_scores: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    mouth_open: np.ndarray
    embedding: np.ndarray  # [512], L2-normalised
    n_detections: int  # keyframes with a detection (the rest are interpolated)

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.start_frame, self.end_frame, dtype=np.int64)


@dataclass
class _Segment:
    obs: list[_Obs] = field(default_factory=list)
    boxes: dict[int, np.ndarray] = field(default_factory=dict)
    mouth: dict[int, float] = field(default_factory=dict)
    embs: list[np.ndarray] = field(default_factory=list)
    last_emb_frame: int = -(10**9)

    @property
    def last(self) -> int:
        return self.obs[-1].frame

    def mean_emb(self) -> np.ndarray | None:
        return mean_embedding(self.embs) if self.embs else None


@dataclass
class StepTimes:
    detect: float = 0.0
    track: float = 0.0
    landmarks: float = 0.0
    embed: float = 0.0
    n_detect: int = 0
    n_landmarks: int = 0
    n_embed: int = 0


class ShotFaceTracker:
    """Feed a shot's frames in order with :meth:`push`; :meth:`finish` returns its tracks."""

    def __init__(self, models: FaceModels, cfg: TrackerConfig, shot_id: int, start_frame: int, times: StepTimes | None = None):
        self.models = models
        self.cfg = cfg
        self.shot_id = shot_id
        self.start = start_frame
        self.times = times if times is not None else StepTimes()
        self.tracker = make_bytetrack(cfg)
        self.seen_ids: set[int] = set()
        # the previous keyframe: (frame, detections, indices of detections that started a tracker track)
        self.spawned: tuple[int, Detections, list[int]] | None = None
        self.buffer: deque[tuple[int, np.ndarray]] = deque(maxlen=cfg.max_gap_frames + 2 * cfg.det_step + 1)
        self.active: dict[int, _Segment] = {}
        self.closed: list[_Segment] = []
        self.last_frame = start_frame - 1
        # landmark crops waiting for one batched 2d106 call: (segment, frame, face height, crop)
        self.pending: list[tuple[_Segment, int, float, LandmarkCrop]] = []

    # -------------------------------------------------------------- streaming
    def push(self, frame_idx: int, frame: np.ndarray, *, last_in_shot: bool = False) -> None:
        if frame_idx != self.last_frame + 1:
            raise ValueError(f"frames must be consecutive: got {frame_idx} after {self.last_frame}")
        self.last_frame = frame_idx
        self.buffer.append((frame_idx, frame))
        if (frame_idx - self.start) % self.cfg.det_step == 0 or last_in_shot:
            self._keyframe(frame_idx, frame)

    def finish(self) -> list[FaceTrack]:
        self._run_landmarks()
        self.closed.extend(self.active.values())
        self.active.clear()
        self.buffer.clear()
        tracks = [self._build(s) for s in self.closed if s.obs]
        return sorted(
            [t for t in tracks if (t.end_frame - t.start_frame) >= self.cfg.min_track_frames],
            key=lambda t: (t.start_frame, float(t.boxes[0, 0])),
        )

    # -------------------------------------------------------------- internals
    def _frame(self, idx: int) -> np.ndarray | None:
        for j, img in reversed(self.buffer):
            if j == idx:
                return img
            if j < idx:
                break
        return None

    def _keyframe(self, f: int, frame: np.ndarray) -> None:
        cfg, t = self.cfg, self.times
        t0 = time.perf_counter()
        dets = detect_faces(self.models, frame, min_face_px=cfg.min_face_px)
        t1 = time.perf_counter()
        t.detect += t1 - t0
        t.n_detect += 1
        matches, births = self._track(f, dets)
        t.track += time.perf_counter() - t1

        reach = cfg.max_gap_frames + cfg.det_step
        matched = {tid for tid, _ in matches}
        # 1) tracker ids that already own a track continue it, unless they were gone too long
        #    or ArcFace says the tracker swapped faces
        fresh: list[tuple[int, int, np.ndarray | None]] = []
        for tid, di in matches:
            seg = self.active.get(tid)
            if seg is None:
                fresh.append((tid, di, None))
                continue
            emb = self._embed(frame, dets.kps[di]) if f - seg.last_emb_frame >= cfg.embed_every else None
            ref = seg.mean_emb()
            swapped = emb is not None and ref is not None and float(emb @ ref) < cfg.switch_cos
            if f - seg.last > reach or swapped:
                self._close(tid)
                fresh.append((tid, di, emb))
            else:
                self._observe(seg, f, dets, di, emb)
        # 2) new tracker ids: continue a track of this shot that lost its tracker id recently
        #    and shows the same face (ArcFace), else start a track; a just-confirmed id starts
        #    at the previous keyframe's detection it grew from
        for tid, di, emb in fresh:
            birth = births.get(tid)
            first = self._frame(birth[0]) if birth is not None else None
            if birth is not None and first is not None:
                fb, db, dj = birth
                emb0 = self._embed(first, db.kps[dj])
                seg = self._stitch(fb, emb0, matched) or _Segment()
                self._observe(seg, fb, db, dj, emb0)
                if f - seg.last_emb_frame >= cfg.embed_every:
                    emb = emb if emb is not None else self._embed(frame, dets.kps[di])
                else:
                    emb = None
            else:
                emb = emb if emb is not None else self._embed(frame, dets.kps[di])
                seg = self._stitch(f, emb, matched) or _Segment()
            self._observe(seg, f, dets, di, emb)
            self.active[tid] = seg
        # 3) end tracks unseen for longer than the allowed gap
        for tid in list(self.active):
            if tid not in matched and f - self.active[tid].last > cfg.max_gap_frames:
                self._close(tid)

    def _track(self, f: int, dets: Detections) -> tuple[list[tuple[int, int]], dict[int, tuple[int, Detections, int]]]:
        """One ByteTrack update: ``(tracker id, detection index)`` of every confirmed track
        matched here, and for each id confirmed here for the first time, the previous
        keyframe's ``(frame, detections, index)`` that started it."""
        import supervision as sv
        from scipy.optimize import linear_sum_assignment

        out = self.tracker.update(sv.Detections(xyxy=dets.boxes.reshape(-1, 4), confidence=dets.scores, data={"det": np.arange(len(dets))}))
        ids = [int(i) for i in out.tracker_id] if len(out) else []
        idx = [int(i) for i in out.data["det"]] if len(out) else []
        matches = [(tid, di) for tid, di in zip(ids, idx) if tid >= 0]
        new = [(tid, di) for tid, di in matches if tid not in self.seen_ids]
        self.seen_ids.update(tid for tid, _ in new)
        births: dict[int, tuple[int, Detections, int]] = {}
        if new and self.spawned is not None and self.spawned[2]:
            fb, db, cand = self.spawned
            iou = sv.box_iou_batch(dets.boxes[[di for _, di in new]].reshape(-1, 4), db.boxes[cand].reshape(-1, 4))
            for r, c in zip(*linear_sum_assignment(iou, maximize=True)):
                if iou[r, c] >= self.cfg.match_iou:
                    births[new[r][0]] = (fb, db, cand[c])
        # untracked (-1) detections that cleared both thresholds started a tracker track
        start = max(self.cfg.track_high, self.cfg.track_new)
        self.spawned = (f, dets, [di for tid, di in zip(ids, idx) if tid < 0 and dets.scores[di] >= start])
        return matches, births

    def _observe(self, seg: _Segment, f: int, dets, di: int, emb: np.ndarray | None) -> None:
        yaw, pitch = pose_from_kps(dets.kps[di])
        self._extend(seg, _Obs(f, dets.boxes[di].astype(np.float64), float(dets.scores[di]), yaw, pitch))
        if emb is not None:
            seg.embs.append(emb)
            seg.last_emb_frame = f

    def _close(self, tid: int) -> None:
        self.closed.append(self.active.pop(tid))

    def _stitch(self, f: int, emb: np.ndarray | None, matched: set[int]) -> _Segment | None:
        """The best-matching track of this shot that ended (or whose tracker id went
        unmatched) within the gap limit, if its face is the same (cosine >= same_cos)."""
        if emb is None:
            return None
        reach = self.cfg.max_gap_frames + self.cfg.det_step
        cands: list[tuple[int | None, _Segment]] = [(None, s) for s in self.closed]
        cands += [(tid, s) for tid, s in self.active.items() if tid not in matched]
        best, best_cos = None, self.cfg.same_cos
        for tid, seg in cands:
            if not seg.embs or seg.last >= f or f - seg.last > reach:
                continue
            c = float(emb @ seg.mean_emb())
            if c >= best_cos:
                best, best_cos = (tid, seg), c
        if best is None:
            return None
        tid, seg = best
        if tid is None:
            self.closed.remove(seg)
        else:
            del self.active[tid]
        return seg

    def _embed(self, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        e = embed_face(self.models, frame, kps)
        self.times.embed += time.perf_counter() - t0
        self.times.n_embed += 1
        return e

    def _extend(self, seg: _Segment, ob: _Obs) -> None:
        """Append a keyframe observation: interpolate boxes since the previous one and run
        landmarks on the mouth-sampled frames in between (and on the keyframe itself)."""
        f = ob.frame
        if seg.obs:
            a = seg.obs[-1]
            span = f - a.frame
            new = range(a.frame + 1, f + 1)
            for j in new:
                w = (j - a.frame) / span
                seg.boxes[j] = (1 - w) * a.box + w * ob.box
        else:
            new = range(f, f + 1)
            seg.boxes[f] = ob.box
        seg.obs.append(ob)
        t0 = time.perf_counter()
        for j in new:
            if (j - self.start) % self.cfg.mouth_step != 0 and j != f:
                continue
            img = self._frame(j)
            if img is None:
                continue
            box = seg.boxes[j]
            self.pending.append((seg, j, float(box[3] - box[1]), landmark_crop(self.models, img, box)))
        self.times.landmarks += time.perf_counter() - t0
        if len(self.pending) >= self.cfg.landmark_batch:
            self._run_landmarks()

    def _run_landmarks(self) -> None:
        """The mouth opening of every pending crop, from one batched 2d106 call."""
        if not self.pending:
            return
        t0 = time.perf_counter()
        lms = landmarks_106_batch(self.models, [crop for *_, crop in self.pending])
        for (seg, j, height, _), lm in zip(self.pending, lms):
            seg.mouth[j] = mouth_opening(lm, height)
        self.times.n_landmarks += len(self.pending)
        self.pending = []
        self.times.landmarks += time.perf_counter() - t0

    def _build(self, seg: _Segment) -> FaceTrack:
        first, last = seg.obs[0].frame, seg.obs[-1].frame
        frames = np.arange(first, last + 1)
        kf = [o.frame for o in seg.obs]
        boxes = np.stack([seg.boxes[j] for j in frames]).astype(np.float32)
        mk = sorted(seg.mouth)
        emb = seg.mean_emb()
        return FaceTrack(
            shot_id=self.shot_id,
            start_frame=int(first),
            end_frame=int(last + 1),
            boxes=boxes,
            det_scores=resample(kf, [o.score for o in seg.obs], frames),
            yaw=resample(kf, [o.yaw for o in seg.obs], frames),
            pitch=resample(kf, [o.pitch for o in seg.obs], frames),
            mouth_open=resample(mk, [seg.mouth[j] for j in mk], frames),
            embedding=emb if emb is not None else np.zeros(512, dtype=np.float32),
            n_detections=len(seg.obs),
        )
