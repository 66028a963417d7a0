"""Pure per-frame and per-clip measurements: arrays in, numbers out.

Crops are BGR uint8 arrays. Every mapping to a bounded score is monotone and its constants
live in sql/thresholds.csv (see :class:`assets.quality.params.QualityParams`).
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import cv2
import numpy as np

from assets.quality.params import QualityParams

FACE_CROP_PX = 128  # the crop size for blur (Laplacian variance) and motion (flow)
FLOW_CROP_PX = 128


def crop_normalised(frame: np.ndarray, box_xywh: list[float] | np.ndarray) -> np.ndarray | None:
    """The part of ``frame`` under a box normalised to the frame ([x, y, w, h] in 0-1), or None
    when nothing of it is inside the frame."""
    h, w = frame.shape[:2]
    x, y, bw, bh = (float(v) for v in box_xywh)
    x1, y1 = max(0, int(round(x * w))), max(0, int(round(y * h)))
    x2, y2 = min(w, int(round((x + bw) * w))), min(h, int(round((y + bh) * h)))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return frame[y1:y2, x1:x2]


def square_crop(frame: np.ndarray, box_xyxy: list[float] | np.ndarray, size: int = FACE_CROP_PX) -> np.ndarray | None:
    """A ``size`` x ``size`` gray crop of the square around a pixel box [x1, y1, x2, y2] (side =
    the box's longer side, so every face is judged at the same scale), or None if outside."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w = frame.shape[:2]
    a, b = max(0, int(round(cx - side / 2))), max(0, int(round(cy - side / 2)))
    c, d = min(w, int(round(cx + side / 2))), min(h, int(round(cy + side / 2)))
    if c - a < 4 or d - b < 4:
        return None
    gray = cv2.cvtColor(frame[b:d, a:c], cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)


def shrink(crop: np.ndarray, max_px: int) -> np.ndarray:
    """``crop`` scaled down so its longer side is at most ``max_px`` (never scaled up: an
    upscaled crop looks blurrier to every sharpness and quality measure)."""
    h, w = crop.shape[:2]
    f = max_px / max(h, w)
    return crop if f >= 1 else cv2.resize(crop, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def luminance(crop: np.ndarray) -> float:
    """Mean luma (BT.601 Y', 0-255) of a BGR crop."""
    return float(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).mean())


def clarity(video_bitrate: float | None, width: int | None, height: int | None) -> float | None:
    """The issue's clarity: video bitrate / (W x H), bits per pixel per second."""
    if not video_bitrate or not width or not height:
        return None
    return float(video_bitrate) / (int(width) * int(height))


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al.): high for sharp edges, low for blur."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def sharpness_score(variance: float, half_var: float) -> float:
    """Laplacian variance mapped to [0, 1): var / (var + half_var). Monotone; 0.5 at
    ``half_var`` (threshold quality_blur_half_var, calibrated on the demo corpus' faces)."""
    return float(variance / (variance + half_var))


@lru_cache(maxsize=1)
def brisque_model():
    """The BRISQUE model that ships in the ``brisque`` wheel (libsvm SVR + feature scaling,
    trained on LIVE): no download."""
    from brisque import BRISQUE

    return BRISQUE(url=False)


def brisque_score(crop: np.ndarray) -> float:
    """BRISQUE (Mittal et al. 2012) of a BGR crop: about 0 (pristine) to 100 (heavily
    distorted). The 36 features are the package's own; they are flattened to floats here
    because ``brisque`` 0.2.0's ``score`` fails on numpy 2 (some features are 1-element arrays)."""
    model = brisque_model()
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float64) / 255.0
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy.optimize root-finding warnings on flat crops
        feats = np.concatenate([model.calculate_brisque_features(g, kernel_size=7, sigma=7 / 6) for g in (gray, half)])
        flat = np.array([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in feats])
        return float(model.calculate_image_quality_score(flat))


def brisque_to_quality(score: float, worst: float) -> float:
    """BRISQUE mapped to [0, 1], higher is better: clip(1 - score / worst, 0, 1). Monotone;
    ``worst`` (threshold quality_brisque_worst) is the score mapped to 0. Carphone: pristine
    frames ~16 -> 0.84, the shipped compressed copy ~46 -> 0.54, a 2-px Gaussian blur ~64 -> 0.36."""
    return float(np.clip(1.0 - score / worst, 0.0, 1.0))


def flow_magnitude(a: np.ndarray, b: np.ndarray, frames_apart: int) -> float:
    """Mean Farneback optical-flow magnitude between two BGR crops resized to 128 x 128 gray,
    in pixels per frame (divided by the frames between them)."""
    ga = cv2.resize(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), (FLOW_CROP_PX, FLOW_CROP_PX), interpolation=cv2.INTER_AREA)
    gb = cv2.resize(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY), (FLOW_CROP_PX, FLOW_CROP_PX), interpolation=cv2.INTER_AREA)
    # OpenCV's documented default parameters for Farneback (pyramid 0.5, 3 levels, 15-px window)
    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return float(np.linalg.norm(flow, axis=2).mean() / max(1, frames_apart))


def motion_score(motion: float, cuts: tuple[float, ...]) -> int:
    """1 (still) to 5 (large motion): 1 + the number of cut points (motion_cut_2..5) reached."""
    return 1 + int(sum(motion >= c for c in cuts))


MOTION_LEVELS = {1: "still", 2: "slight", 3: "moderate", 4: "strong", 5: "very strong"}


def framing(face_height_share: float | None, params: QualityParams) -> str | None:
    """close_up / medium / wide from the face's height as a share of the frame height."""
    if face_height_share is None:
        return None
    if face_height_share >= params.framing_close_up_min:
        return "close_up"
    return "medium" if face_height_share >= params.framing_medium_min else "wide"


def facing_direction(abs_yaw: float | None, params: QualityParams) -> str | None:
    """front / three_quarter / profile from the median absolute head yaw (degrees). Sign-free:
    which side the person turns to is not a caption field here."""
    if abs_yaw is None or not np.isfinite(abs_yaw):
        return None
    if abs_yaw <= params.facing_front_max_yaw:
        return "front"
    return "profile" if abs_yaw >= params.facing_profile_min_yaw else "three_quarter"


def caption_from_fields(n_people: int | None, framing_: str | None, facing: str | None, is_talking: bool, speech: bool, level: str | None) -> str:
    """The structured fields as one sentence (the measurements backend's caption)."""
    who = "nobody visible" if not n_people else ("one person" if n_people == 1 else f"{n_people} people")
    parts = [who]
    if framing_:
        parts.append(f"{framing_.replace('_', '-')} shot")
    if facing:
        parts.append(f"facing {facing.replace('_', '-')}" if facing == "front" else f"face in {facing.replace('_', '-')} view")
    parts.append("talking" if is_talking else "listening")
    parts.append("speech audible" if speech else "no speech")
    if level:
        parts.append(f"{level} motion")
    return ", ".join(parts) + "."
