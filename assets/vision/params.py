"""The vision stage's knobs, read from sql/thresholds.csv (rows with stage=vision)."""

from __future__ import annotations

from dataclasses import dataclass

from assets.vision.shots import GradualParams
from orchestration.thresholds import setting, threshold


@dataclass(frozen=True)
class VisionParams:
    # no defaults: every value comes from sql/thresholds.csv (from_thresholds), the one place thresholds live
    # shots (PySceneDetect)
    shot_detector: str
    shot_threshold: float
    shot_min_frames: int
    # dissolves and fades (0 half window: hard cuts only)
    shot_gradual_half_window: int
    shot_gradual_min_change: float
    shot_gradual_max_residual: float
    shot_gradual_min_mixed: int
    shot_fade_level: float
    shot_gradual_span_weight: float
    # face detection / tracking
    det_size: int
    det_thresh: float  # SCRFD floor: low-score boxes feed ByteTrack's second association only
    det_fps: float
    mouth_fps: float
    track_high: float
    track_new: float
    track_match_iou: float
    max_gap_s: float
    min_track_s: float
    min_face_px: float
    embed_interval_s: float
    same_face_cos: float  # stitch a new tracker id onto a recently ended track
    switch_face_cos: float  # below this, a track's new embedding means an identity swap
    # person box rule, in face widths/heights
    person_width_faces: float
    person_above_faces: float
    person_below_faces: float
    # onnxruntime intra-op threads per session (0 = onnxruntime's default)
    ort_threads: int
    # face crops per batched 2d106 landmark call
    landmark_batch: int
    # frames are decoded at most this long side (source pixels beyond it are scaled down)
    decode_max_side: int

    @classmethod
    def from_thresholds(cls) -> "VisionParams":
        return cls(
            shot_detector=setting("shot_detector"),
            shot_threshold=threshold("shot_threshold"),
            shot_min_frames=int(threshold("shot_min_frames")),
            shot_gradual_half_window=int(threshold("shot_gradual_half_window")),
            shot_gradual_min_change=threshold("shot_gradual_min_change"),
            shot_gradual_max_residual=threshold("shot_gradual_max_residual"),
            shot_gradual_min_mixed=int(threshold("shot_gradual_min_mixed")),
            shot_fade_level=threshold("shot_fade_level"),
            shot_gradual_span_weight=threshold("shot_gradual_span_weight"),
            det_size=int(threshold("face_det_size")),
            det_thresh=threshold("face_det_thresh"),
            det_fps=threshold("face_det_fps"),
            mouth_fps=threshold("face_mouth_fps"),
            track_high=threshold("face_track_high"),
            track_new=threshold("face_track_new"),
            track_match_iou=threshold("face_track_match_iou"),
            max_gap_s=threshold("face_max_gap_s"),
            min_track_s=threshold("face_min_track_s"),
            min_face_px=threshold("face_min_px"),
            embed_interval_s=threshold("face_embed_interval_s"),
            same_face_cos=threshold("face_same_cos"),
            switch_face_cos=threshold("face_switch_cos"),
            person_width_faces=threshold("person_box_width_faces"),
            person_above_faces=threshold("person_box_above_faces"),
            person_below_faces=threshold("person_box_below_faces"),
            ort_threads=int(threshold("vision_ort_threads")),
            landmark_batch=int(threshold("face_landmark_batch")),
            decode_max_side=int(threshold("decode_max_side")),
        )

    def gradual(self) -> GradualParams | None:
        """Gradual-transition settings, or None when only hard cuts are detected."""
        if self.shot_gradual_half_window <= 0:
            return None
        return GradualParams(
            half_window=self.shot_gradual_half_window,
            min_change=self.shot_gradual_min_change,
            max_residual=self.shot_gradual_max_residual,
            min_mixed=self.shot_gradual_min_mixed,
            fade_level=self.shot_fade_level,
            span_weight=self.shot_gradual_span_weight,
        )

    def steps(self, fps: float) -> tuple[int, int]:
        """(mouth step, detection step) in frames. The detection step is a multiple of the
        mouth step so every keyframe is also a landmark frame."""
        fps = fps if fps > 0 else 25.0
        mouth = max(1, round(fps / self.mouth_fps)) if self.mouth_fps > 0 else 1
        det = mouth * max(1, round(fps / self.det_fps / mouth)) if self.det_fps > 0 else mouth
        return mouth, det
