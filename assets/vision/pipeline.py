"""One pass over a video: PyAV decode -> shot boundaries -> per-shot face tracks.

Each frame is decoded once (PyAV, BGR; at a bounded working size, upright, on a frame-rate grid
from its timestamps: see assets.vision.decode). It goes to the shot detectors right away and into
a short lag queue; the face stage reads from the queue ``lag`` frames behind, by which time
every boundary and gradual transition at or before its frame is known. So tracks never
cross a shot boundary and hold no frame of a dissolve or fade, and memory holds only the
lag queue, a few frames read ahead and the tracker's interpolation buffer. Decoding and the
shot detectors run in a second thread ahead of the face models (:func:`read_ahead`), so the
two use both cores"""

from __future__ import annotations

import math
import queue as queue_mod
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from assets.vision.decode import FrameReader
from assets.vision.faces import person_box
from assets.vision.models import FaceModels, load_face_models
from assets.vision.params import VisionParams
from assets.vision.shots import ShotCutter, make_shot_detector, shot_bounds, shots_frame
from assets.vision.tracking import FaceTrack, ShotFaceTracker, StepTimes, TrackerConfig
from orchestration.tables import TABLES

# decoded frames the decode thread may run ahead of the face models (each a working-size BGR frame)
READ_AHEAD_FRAMES = 8


@dataclass
class VisionStats:
    """Wall-clock seconds per step (filled by :func:`analyze_video` when passed in);
    ``total`` excludes model loading. ``decode`` and ``shots`` run in the decode thread at the
    same time as the face steps, so the steps add up to more than ``total``."""

    n_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    load: float = 0.0  # model loading (cached after the first video of a process)
    decode: float = 0.0
    shots: float = 0.0
    total: float = 0.0
    cpu: float = 0.0  # process CPU seconds for the same span as ``total`` (robust to a loaded machine)
    steps: StepTimes = field(default_factory=StepTimes)

    def per_frame_ms(self) -> dict[str, float]:
        n = max(self.n_frames, 1)
        s = asdict(self.steps)
        out = {"decode": self.decode, "shots": self.shots, **{k: s[k] for k in ("detect", "track", "landmarks", "embed")}, "total": self.total}
        return {k: 1000.0 * v / n for k, v in out.items()}

    def realtime_factor(self, *, cpu: bool = False) -> float:
        """Seconds of processing per second of video (wall clock, or CPU time if ``cpu``)."""
        dur = self.n_frames / self.fps if self.fps else 0.0
        return (self.cpu if cpu else self.total) / dur if dur else float("nan")


def tracker_config(params: VisionParams, fps: float) -> TrackerConfig:
    mouth_step, det_step = params.steps(fps)
    fps = fps if fps > 0 else 25.0
    return TrackerConfig(
        det_step=det_step,
        mouth_step=mouth_step,
        max_gap_frames=max(det_step, int(round(params.max_gap_s * fps))),
        embed_every=max(1, int(round(params.embed_interval_s * fps))),
        min_track_frames=max(1, int(math.ceil(params.min_track_s * fps))),
        min_face_px=params.min_face_px,
        same_cos=params.same_face_cos,
        switch_cos=params.switch_face_cos,
        track_high=params.track_high,
        track_new=params.track_new,
        match_iou=params.track_match_iou,
        landmark_batch=params.landmark_batch,
    )


def face_tracks_frame(video_id: str, tracks: list[FaceTrack], fps: float, frame_w: int, frame_h: int, params: VisionParams, scale: float = 1.0) -> pl.DataFrame:
    """The ``face_tracks`` table rows (track ids numbered 0.. in shot/start order). Tracks found
    on frames decoded at ``scale`` (working / source pixels) get their boxes in source pixels
    of the displayed ``frame_w`` x ``frame_h`` frame."""
    fps = fps if fps > 0 else 25.0
    rows = []
    for tid, t in enumerate(tracks):
        boxes = t.boxes / scale
        rows.append(
            {
                "video_id": video_id,
                "track_id": tid,
                "shot_id": t.shot_id,
                "start": t.start_frame / fps,
                "end": t.end_frame / fps,
                "start_frame": t.start_frame,
                "end_frame": t.end_frame,
                "n_frames": t.end_frame - t.start_frame,
                "frames": t.frames.tolist(),
                "boxes": np.round(boxes, 2).tolist(),
                "det_scores": t.det_scores.tolist(),
                "yaw": t.yaw.tolist(),
                "pitch": t.pitch.tolist(),
                "mouth_open": t.mouth_open.tolist(),
                "embedding": t.embedding.astype(np.float32).tolist(),
                "mean_det_score": float(np.mean(t.det_scores)) if len(t.det_scores) else 0.0,
                "person_box": person_box(
                    boxes,
                    frame_w,
                    frame_h,
                    width_faces=params.person_width_faces,
                    above_faces=params.person_above_faces,
                    below_faces=params.person_below_faces,
                ),
            }
        )
    spec = TABLES["face_tracks"]
    if not rows:
        return spec.empty()
    return spec.conform(pl.DataFrame(rows, schema=spec.polars_schema))


def load_vision_models(face_model_dir: str | Path | None, params: VisionParams | None = None) -> FaceModels:
    """The face models for :func:`analyze_video`, loaded once per process (see assets.vision.models)."""
    params = params or VisionParams.from_thresholds()
    return load_face_models(face_model_dir, det_size=params.det_size, det_thresh=params.det_thresh, ort_threads=params.ort_threads)


@dataclass(frozen=True)
class ShotFrame:
    """A decoded frame with its final shot decision (known ``cutter.lag`` frames later)."""

    index: int
    image: np.ndarray
    shot: int
    in_transition: bool  # a blended / faded frame: it belongs to no clip
    last_in_shot: bool


def shot_frames(reader: FrameReader, cutter: ShotCutter, stats: VisionStats) -> Iterator[ShotFrame]:
    """Every frame of ``reader`` through ``cutter``, handed out ``cutter.lag`` frames behind the
    decode, by which time every boundary and gradual transition at or before it is known."""
    queue: deque[tuple[int, np.ndarray]] = deque()
    n = 0

    def decided(j: int, img: np.ndarray, last_frame: bool) -> ShotFrame:
        last_in_shot = last_frame or cutter.is_cut(j + 1) or cutter.in_transition(j + 1)
        return ShotFrame(j, img, cutter.shot_index(j), cutter.in_transition(j), last_in_shot)

    frames = iter(reader)
    while True:
        t0 = time.perf_counter()
        item = next(frames, None)
        t1 = time.perf_counter()
        stats.decode += t1 - t0
        if item is None:
            break
        j, img = item
        cutter.push(j, img)
        stats.shots += time.perf_counter() - t1
        queue.append((j, img))
        n = j + 1
        while len(queue) > cutter.lag:
            yield decided(*queue.popleft(), False)
    t1 = time.perf_counter()
    cutter.finish()
    stats.shots += time.perf_counter() - t1
    while queue:
        j, img = queue.popleft()
        yield decided(j, img, j + 1 >= n)


_DONE = object()


def read_ahead(items: Iterator, maxsize: int) -> Iterator:
    """``items`` produced by a background thread, at most ``maxsize`` ahead of the consumer.

    Decoding and the shot detectors (PyAV, OpenCV, NumPy) and the face models (ONNX Runtime)
    release the GIL in their heavy parts, so on two cores the decode of the next frames runs
    while the face models look at earlier ones. An exception in the producer is raised in the
    consumer; a consumer that stops early stops the producer."""
    q: queue_mod.Queue = queue_mod.Queue(maxsize)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue_mod.Full:
                        continue
                if stop.is_set():
                    return
            q.put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
            q.put((_DONE, e))

    worker = threading.Thread(target=produce, name="vision-decode", daemon=True)
    worker.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue_mod.Empty:
                pass
        worker.join()


def analyze_video(
    video_id: str, media_path: str | Path, models: FaceModels, *, params: VisionParams | None = None, stats: VisionStats | None = None
) -> dict[str, pl.DataFrame]:
    """Shots and face tracks of one video: ``{"shots": ..., "face_tracks": ...}``; ``models``
    from :func:`load_vision_models`. Decoding and shot detection run in a second thread a few
    frames ahead of the face models (see :func:`read_ahead`)."""
    params = params or VisionParams.from_thresholds()
    stats = stats if stats is not None else VisionStats()
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    tracks: list[FaceTrack] = []

    with FrameReader(media_path, max_side=params.decode_max_side) as reader:
        fps = reader.fps
        cutter = ShotCutter(make_shot_detector(params.shot_detector, params.shot_threshold, params.shot_min_frames), fps, params.shot_min_frames, params.gradual())
        cfg = tracker_config(params, fps)
        tracker: ShotFaceTracker | None = None
        n = 0
        for fr in read_ahead(shot_frames(reader, cutter, stats), READ_AHEAD_FRAMES):
            n = fr.index + 1
            if fr.in_transition:  # blended / faded frames belong to no clip
                if tracker is not None:
                    tracks.extend(tracker.finish())
                    tracker = None
                continue
            if tracker is None or fr.shot != tracker.shot_id:
                if tracker is not None:
                    tracks.extend(tracker.finish())
                tracker = ShotFaceTracker(models, cfg, fr.shot, fr.index, stats.steps)
            tracker.push(fr.index, fr.image, last_in_shot=fr.last_in_shot)
        if tracker is not None:
            tracks.extend(tracker.finish())
        geometry = reader.geometry

    stats.n_frames, stats.fps = n, fps
    if geometry is not None:  # source size as displayed (boxes are mapped back to it)
        stats.width, stats.height = geometry.width, geometry.height
    bounds = shot_bounds(cutter.cuts, n)
    out = {
        "shots": shots_frame(video_id, bounds, fps, cutter.transitions),
        "face_tracks": face_tracks_frame(video_id, tracks, fps, stats.width, stats.height, params, geometry.scale if geometry else 1.0),
    }
    stats.total = time.perf_counter() - t_start - stats.load
    stats.cpu = time.process_time() - cpu_start
    return out
