"""Mouth-opening signal from insightface's 106-point landmarks.

2d106 mouth points are 52-71 (the ordering is not sequential around the lip; checked on an
open-mouth carphone frame): corners 52 (image left) and 61 (image right); inner upper lip
66, 62, 70, 69 and inner lower lip 65, 54, 60, 57, each listed left to right, so the i-th
upper and i-th lower point face each other across the lip gap.

``mouth_opening`` = mean inner-lip gap of those 4 pairs, measured perpendicular to the
mouth-corner axis (robust to head roll), divided by the face height (the detection box
height; boxes between keyframes are interpolated, so the normaliser is smooth). A closed
mouth gives ~0.01-0.03, a wide-open one ~0.1-0.15.
"""

from __future__ import annotations

import numpy as np

MOUTH = list(range(52, 72))
CORNERS = (52, 61)
INNER_UPPER = (66, 62, 70, 69)
INNER_LOWER = (65, 54, 60, 57)


def mouth_opening(landmarks: np.ndarray, face_height: float) -> float:
    """Inner-lip gap / face height from one face's [106, 2] landmarks (>= 0)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(106, 2)
    axis = lm[CORNERS[1]] - lm[CORNERS[0]]
    n = float(np.linalg.norm(axis))
    down = np.array([-axis[1], axis[0]]) / n if n > 1e-6 else np.array([0.0, 1.0])
    gap = float(np.mean((lm[list(INNER_LOWER)] - lm[list(INNER_UPPER)]) @ down))
    return max(gap, 0.0) / max(float(face_height), 1e-6)


def resample(sample_frames: list[int] | np.ndarray, values: list[float] | np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Linear interpolation of a sparsely sampled per-frame signal onto ``frames``
    (held constant beyond the first/last sample)."""
    x = np.asarray(sample_frames, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return np.full(len(frames), np.nan, dtype=np.float32)
    order = np.argsort(x)
    return np.interp(np.asarray(frames, dtype=np.float64), x[order], y[order]).astype(np.float32)
