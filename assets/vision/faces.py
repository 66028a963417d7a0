"""Per-face operations on one frame: detection, 106-point landmarks, ArcFace embedding,
a geometric head-pose estimate and the person (upper-body) box rule.

Frames are BGR uint8 arrays (OpenCV / insightface convention).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort

from assets.vision.models import FaceModels

# ---------------------------------------------------------------- detection


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # [N, 4] x1, y1, x2, y2 in frame pixels
    scores: np.ndarray  # [N]
    kps: np.ndarray  # [N, 5, 2]: eye (image left), eye (image right), nose, mouth left, mouth right

    def __len__(self) -> int:
        return len(self.scores)


def detect_faces(models: FaceModels, frame: np.ndarray, *, min_face_px: float = 0.0) -> Detections:
    """SCRFD at the configured det size. Frames of any size are letterboxed to det_size x
    det_size by insightface itself, so small frames (e.g. 176x144) are upscaled there and
    need no separate upscaling; boxes come back in frame pixels."""
    det, kps = models.detector.detect(frame, max_num=0)
    det = np.asarray(det, dtype=np.float32).reshape(-1, 5)
    kps = np.asarray(kps if kps is not None else np.zeros((len(det), 5, 2)), dtype=np.float32).reshape(-1, 5, 2)
    if len(det) and min_face_px > 0:
        keep = (det[:, 3] - det[:, 1]) >= min_face_px
        det, kps = det[keep], kps[keep]
    return Detections(det[:, :4].copy(), det[:, 4].copy(), kps)


# ---------------------------------------------------------------- landmarks / identity


@dataclass(frozen=True)
class LandmarkCrop:
    """One face cut out for the 2d106 model: the square crop insightface's ``Landmark.get``
    makes (the box centre, 1.5x the box's longer side, no rotation) and its frame mapping."""

    image: np.ndarray  # [S, S, 3] BGR
    center: tuple[float, float]  # box centre in frame pixels
    scale: float  # crop pixels per frame pixel


def landmark_crop(models: FaceModels, frame: np.ndarray, box: np.ndarray) -> LandmarkCrop:
    """The 2d106 input crop for the face in ``box`` [x1,y1,x2,y2] (frame pixels)."""
    size = models.landmarks.input_size[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    s = size / (max(x2 - x1, y2 - y1) * 1.5)
    # the similarity insightface's face_align.transform builds with skimage, written out
    m = np.array([[s, 0.0, size / 2 - cx * s], [0.0, s, size / 2 - cy * s]])
    return LandmarkCrop(cv2.warpAffine(frame, m, (size, size), borderValue=0.0), (cx, cy), s)


# the 2d106 ONNX declares a [1, 212] output; batched runs are right but ONNX Runtime warns on
# every call that the shape differs, so its run log is kept to errors
_QUIET = ort.RunOptions()
_QUIET.log_severity_level = 3


def landmarks_106_batch(models: FaceModels, crops: Sequence[LandmarkCrop]) -> np.ndarray:
    """2d106 landmarks [N, 106, 2] in frame pixels of N crops, in one ONNX Runtime call
    (insightface's ``Landmark.get`` runs one face per call)."""
    lm = models.landmarks
    if not crops:
        return np.zeros((0, lm.lmk_num, 2), dtype=np.float32)
    size = lm.input_size[0]
    blob = cv2.dnn.blobFromImages([c.image for c in crops], 1.0 / lm.input_std, (size, size), (lm.input_mean,) * 3, swapRB=True)
    pred = lm.session.run(lm.output_names, {lm.input_name: blob}, _QUIET)[0]
    pred = pred.reshape(len(crops), -1, 2)[:, -lm.lmk_num :, :].astype(np.float64)
    crop_px = (pred + 1.0) * (size // 2)
    centre = np.array([c.center for c in crops])[:, None, :]
    scale = np.array([c.scale for c in crops])[:, None, None]
    return ((crop_px - size / 2) / scale + centre).astype(np.float32)


def landmarks_106(models: FaceModels, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """2d106 landmarks [106, 2] in frame pixels for the face in ``box`` [x1,y1,x2,y2]."""
    return landmarks_106_batch(models, [landmark_crop(models, frame, box)])[0]


def embed_face(models: FaceModels, frame: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """L2-normalised 512-d ArcFace embedding of the face aligned on its 5 keypoints."""
    from insightface.utils import face_align

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # skimage deprecation inside insightface
        crop = face_align.norm_crop(frame, landmark=np.asarray(kps, dtype=np.float32), image_size=models.recognizer.input_size[0])
    v = np.asarray(models.recognizer.get_feat(crop), dtype=np.float32).ravel()
    return v / max(float(np.linalg.norm(v)), 1e-12)


def mean_embedding(embeddings: list[np.ndarray]) -> np.ndarray:
    """Mean of L2-normalised embeddings, re-normalised."""
    m = np.mean(np.stack([e / max(float(np.linalg.norm(e)), 1e-12) for e in embeddings]), axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------- head pose from 5 keypoints
# The shipped packs have no 3D landmark model (1k3d68), so insightface's ``pose`` is not
# available. Yaw and pitch are estimated geometrically from SCRFD's 5 keypoints, with a
# generic 3D face (eye centres 1 IOD apart; nose tip 0.43 IOD in front of the eye/mouth
# midline under yaw; nose 0.42 eye-mouth distances in front of the eyes under pitch):
#   yaw   = atan(r / 0.43), r = offset of the nose from the eye-mouth midline along the eye
#           axis, in inter-ocular distances (0 for a frontal face);
#   pitch = atan((t - 0.53) / 0.42), t = position of the nose between the eye line (0) and
#           the mouth line (1); 0.53 is the frontal value (median over the 22 faces of the
#           shipped players.jpg, and the generic model's value).
# Signs: yaw > 0 when the nose points to the image's right; pitch > 0 when the head tilts
# down. Good to roughly +-10 degrees up to ~45 degrees; beyond that the 5 points (and SCRFD)
# degrade. It is an approximation for filtering/ranking, not a calibrated pose.
YAW_DEPTH = 0.43
PITCH_T0 = 0.53
PITCH_DEPTH = 0.42


def pose_from_kps(kps: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees from the 5 keypoints (see the comment above)."""
    k = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    le, re, nose, ml, mr = k
    eyes, mouth = (le + re) / 2, (ml + mr) / 2
    iod = float(np.linalg.norm(re - le))
    if iod < 1e-6:
        return 0.0, 0.0
    u = (re - le) / iod
    v = np.array([-u[1], u[0]])  # image-down direction perpendicular to the eye axis
    r = float(np.dot(nose - (eyes + mouth) / 2, u)) / iod
    em = float(np.dot(mouth - eyes, v))
    t = float(np.dot(nose - eyes, v)) / em if abs(em) > 1e-6 else PITCH_T0
    yaw = float(np.degrees(np.arctan(r / YAW_DEPTH)))
    pitch = float(np.degrees(np.arctan((t - PITCH_T0) / PITCH_DEPTH)))
    return yaw, pitch


# ---------------------------------------------------------------- person box


def person_box(
    face_boxes: np.ndarray,
    frame_w: int,
    frame_h: int,
    *,
    width_faces: float = 3.0,
    above_faces: float = 0.6,
    below_faces: float = 3.0,
) -> list[float]:
    """Upper-body box [x, y, w, h] normalised to the frame, from a track's face boxes.

    Rule, per face box (w, h, centre cx): x from cx - width_faces*w/2 to cx + width_faces*w/2,
    y from (top - above_faces*h) to (bottom + below_faces*h); clipped to the frame; the
    union over all of the track's boxes (one box per clip, like SpeakerVid's ``bbox``).
    """
    b = np.asarray(face_boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0 or frame_w <= 0 or frame_h <= 0:
        return [0.0, 0.0, 0.0, 0.0]
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx = (b[:, 0] + b[:, 2]) / 2
    x1 = np.clip(cx - width_faces * w / 2, 0, frame_w).min()
    x2 = np.clip(cx + width_faces * w / 2, 0, frame_w).max()
    y1 = np.clip(b[:, 1] - above_faces * h, 0, frame_h).min()
    y2 = np.clip(b[:, 3] + below_faces * h, 0, frame_h).max()
    return [float(x1 / frame_w), float(y1 / frame_h), float((x2 - x1) / frame_w), float((y2 - y1) / frame_h)]
