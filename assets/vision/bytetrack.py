"""ByteTrack (Zhang et al., ECCV 2022) for face boxes: Kalman motion + two-stage IoU matching.

Why a local copy: ``supervision`` 0.31 removed ``sv.ByteTrack`` (it moved to Roboflow's
``trackers`` package, which is not a dependency here). This is a compact, faithful port of
the reference algorithm (``yifuzhang/ByteTrack`` ``byte_tracker.py`` / ``kalman_filter.py``)
using scipy's Hungarian solver; the face stage calls it only on detection keyframes.

Algorithm per :meth:`ByteTracker.update` (one call per keyframe):

1. predict every tracked and lost track with a constant-velocity Kalman filter on
   (cx, cy, aspect, height);
2. match high-score detections (``score >= high_thresh``) to tracked+lost tracks by IoU
   (Hungarian, IoU >= ``match_iou``);
3. match the remaining *tracked* tracks to the low-score detections (IoU >= 0.5):
   this is ByteTrack's key idea, keeping tracks alive through blurred/occluded frames;
4. unconfirmed (one-hit) tracks may match leftover high detections (IoU >= 0.3), else die;
5. leftover detections with ``score >= new_thresh`` start new tracks;
6. tracks lost for more than ``max_lost`` updates are removed.

Every track matched in the current update is reported by :meth:`update`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count

import numpy as np
from scipy.optimize import linear_sum_assignment

# ---------------------------------------------------------------- Kalman filter
_STD_POS = 1.0 / 20
_STD_VEL = 1.0 / 160


class _Kalman:
    """Constant velocity model on (cx, cy, a, h, vx, vy, va, vh), as in ByteTrack/DeepSORT."""

    def __init__(self) -> None:
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.r_[z, np.zeros(4)]
        h = z[3]
        std = [2 * _STD_POS * h, 2 * _STD_POS * h, 1e-2, 2 * _STD_POS * h,
               10 * _STD_VEL * h, 10 * _STD_VEL * h, 1e-5, 10 * _STD_VEL * h]
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        std = [_STD_POS * h, _STD_POS * h, 1e-2, _STD_POS * h, _STD_VEL * h, _STD_VEL * h, 1e-5, _STD_VEL * h]
        mean = self.F @ mean
        cov = self.F @ cov @ self.F.T + np.diag(np.square(std))
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        r = np.diag(np.square([_STD_POS * h, _STD_POS * h, 1e-1, _STD_POS * h]))
        s = self.H @ cov @ self.H.T + r
        k = np.linalg.solve(s, (cov @ self.H.T).T).T
        mean = mean + k @ (z - self.H @ mean)
        cov = cov - k @ s @ k.T
        return mean, cov


def _xyxy_to_xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] + w / 2, b[1] + h / 2, w / max(h, 1e-6), h], dtype=np.float64)


def _xyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    cx, cy, a, h = m[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of [N,4] and [M,4] boxes in [x1,y1,x2,y2]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _assign(iou: np.ndarray, min_iou: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian matching on IoU; pairs below ``min_iou`` are not matched."""
    n, m = iou.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    rows, cols = linear_sum_assignment(-iou)
    pairs = [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
    mr = {r for r, _ in pairs}
    mc = {c for _, c in pairs}
    return pairs, [r for r in range(n) if r not in mr], [c for c in range(m) if c not in mc]


# ---------------------------------------------------------------- tracker
@dataclass
class _Track:
    track_id: int
    mean: np.ndarray
    cov: np.ndarray
    score: float
    hits: int = 1
    lost_for: int = 0
    confirmed: bool = False
    tracked: bool = True
    det_index: int = -1  # index of the detection matched in the current update, -1 if none

    @property
    def box(self) -> np.ndarray:
        return _xyah_to_xyxy(self.mean)


@dataclass
class ByteTracker:
    high_thresh: float = 0.5
    new_thresh: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    max_lost: int = 3
    _tracks: list[_Track] = field(default_factory=list)
    _ids: count = field(default_factory=lambda: count(1))
    _kf: _Kalman = field(default_factory=_Kalman)
    _first_update: bool = True

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> list[tuple[int, int]]:
        """Feed one keyframe's detections; return ``(track_id, detection_index)`` for every
        track matched to (or started from) a detection in this keyframe. A track started here
        that finds no match at the next keyframe is dropped by the tracker; the caller drops
        such one-hit tracks by its minimum track length."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        for t in self._tracks:
            t.mean, t.cov = self._kf.predict(t.mean, t.cov)
            t.det_index = -1
        high = np.flatnonzero(scores >= self.high_thresh)
        low = np.flatnonzero(scores < self.high_thresh)

        confirmed = [t for t in self._tracks if t.confirmed]
        unconfirmed = [t for t in self._tracks if not t.confirmed]

        # 1) all confirmed tracks (tracked + lost) vs high-score detections
        pool = confirmed
        iou = iou_matrix(np.array([t.box for t in pool]), boxes[high])
        pairs, rest_t, rest_d = _assign(iou, self.match_iou)
        for ti, di in pairs:
            self._hit(pool[ti], boxes[high[di]], scores[high[di]], int(high[di]))
        remaining_high = high[rest_d]

        # 2) still-unmatched *tracked* tracks vs low-score detections
        pool2 = [pool[i] for i in rest_t if pool[i].tracked]
        iou = iou_matrix(np.array([t.box for t in pool2]), boxes[low])
        pairs, rest_t2, _ = _assign(iou, self.low_match_iou)
        for ti, di in pairs:
            self._hit(pool2[ti], boxes[low[di]], scores[low[di]], int(low[di]))
        for ti in rest_t2:
            pool2[ti].tracked = False
        for i in rest_t:
            t = pool[i]
            if t.det_index < 0:
                t.tracked = False
                t.lost_for += 1

        # 3) unconfirmed tracks vs leftover high detections
        iou = iou_matrix(np.array([t.box for t in unconfirmed]), boxes[remaining_high])
        pairs, rest_u, rest_d = _assign(iou, 0.3)
        for ti, di in pairs:
            self._hit(unconfirmed[ti], boxes[remaining_high[di]], scores[remaining_high[di]], int(remaining_high[di]))
            unconfirmed[ti].confirmed = True
        dead = {id(unconfirmed[i]) for i in rest_u}
        leftover = remaining_high[rest_d]

        # 4) new tracks (confirmed at once on the very first update, as in ByteTrack)
        for di in leftover:
            if scores[di] < self.new_thresh:
                continue
            mean, cov = self._kf.initiate(_xyxy_to_xyah(boxes[di]))
            self._tracks.append(
                _Track(next(self._ids), mean, cov, float(scores[di]), confirmed=self._first_update, det_index=int(di))
            )
        self._first_update = False

        # 5) forget long-lost and dead tracks
        self._tracks = [t for t in self._tracks if id(t) not in dead and t.lost_for <= self.max_lost]
        return [(t.track_id, t.det_index) for t in self._tracks if t.det_index >= 0]

    def _hit(self, t: _Track, box: np.ndarray, score: float, det_index: int) -> None:
        t.mean, t.cov = self._kf.update(t.mean, t.cov, _xyxy_to_xyah(box))
        t.score = float(score)
        t.hits += 1
        t.lost_for = 0
        t.tracked = True
        t.det_index = det_index
