"""Per-frame motion and audio features of a clip, for the reference responder.

Motion: insightface 2d106 landmarks of the clip's largest face (the pipeline's landmark model,
`assets.vision.faces`), normalised to that frame's face box (centre at 0, box height 1), minus
the clip's first frame: ``delta[t] = norm(lm[t]) - norm(lm[0])``, flattened to 212 values. Being
a displacement from the clip's own first frame it carries mouth and head movement, not face
shape, so a model trained on some people drives another person's reference frame. Frames without
a detected face take the nearest detected frame's landmarks (a clip without any face is unusable).

Audio: log-mel (torchaudio, 40 bands) with one hop per video frame (16 kHz / fps), so feature row
``t`` covers the audio of video frame ``t``.

Frames come from the loader as RGB; insightface runs on BGR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

from assets.vision.faces import detect_faces, landmarks_106
from assets.vision.models import FaceModels

N_LANDMARKS = 106
MOTION_DIM = 2 * N_LANDMARKS
N_MELS = 40
SAMPLE_RATE = 16000


class NoFace(ValueError):
    """A clip in which no frame shows a face: it has no motion to learn from or to drive."""


@dataclass(frozen=True)
class FaceTrack:
    """Landmarks [T, 106, 2] and face boxes [T, 4] (x1, y1, x2, y2) in frame pixels, every frame
    filled (``detected``: the frames where a face was actually found)."""

    landmarks: np.ndarray
    boxes: np.ndarray
    detected: np.ndarray  # bool [T]


def face_track(models: FaceModels, frames_rgb: np.ndarray, *, min_face_px: float = 0.0, bgr: bool = False) -> FaceTrack:
    """2d106 landmarks of the largest face of every frame (module doc); ``bgr``: the frames are BGR already."""
    n = len(frames_rgb)
    lms = np.full((n, N_LANDMARKS, 2), np.nan, np.float32)
    boxes = np.full((n, 4), np.nan, np.float32)
    for i, rgb in enumerate(frames_rgb):
        img = np.ascontiguousarray(rgb if bgr else rgb[..., ::-1])
        det = detect_faces(models, img, min_face_px=min_face_px)
        if not len(det):
            continue
        b = int(np.argmax((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])))
        boxes[i] = det.boxes[b]
        lms[i] = landmarks_106(models, img, det.boxes[b])
    found = np.isfinite(boxes[:, 0])
    if not found.any():
        raise NoFace(f"no face in any of the {n} frames")
    # nearest detected frame for the others
    idx = np.flatnonzero(found)
    near = idx[np.clip(np.searchsorted(idx, np.arange(n)), 0, len(idx) - 1)]
    prev = idx[np.clip(np.searchsorted(idx, np.arange(n), side="right") - 1, 0, len(idx) - 1)]
    near = np.where(np.abs(prev - np.arange(n)) <= np.abs(near - np.arange(n)), prev, near)
    return FaceTrack(lms[near], boxes[near], found)


def normalise(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Landmarks [T, 106, 2] in box units: centre of the box at 0, box height 1 (both axes)."""
    centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)[:, None, None]
    return (landmarks - centre) / height


def motion_deltas(track: FaceTrack) -> np.ndarray:
    """[T, 212] float32: box-normalised landmarks minus the first frame's (module doc)."""
    norm = normalise(track.landmarks, track.boxes)
    return (norm - norm[:1]).reshape(len(norm), MOTION_DIM).astype(np.float32)


def apply_deltas(landmarks: np.ndarray, box: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Pixel landmarks [T, 106, 2] of a face at ``landmarks`` [106, 2] / ``box`` moved by ``deltas`` [T, 212]."""
    height = max(float(box[3] - box[1]), 1e-6)
    return landmarks[None] + deltas.reshape(-1, N_LANDMARKS, 2) * height


_MEL: dict[int, torchaudio.transforms.MelSpectrogram] = {}


def audio_features(audio: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """[n_frames, 40] float32 log-mel of 16 kHz mono ``audio``, one row per video frame (module doc)."""
    hop = int(round(SAMPLE_RATE / fps))
    if hop not in _MEL:
        n_fft = 1 << (2 * hop - 1).bit_length()  # a power of two holding the two-hop window
        _MEL[hop] = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=n_fft, win_length=2 * hop, hop_length=hop, n_mels=N_MELS)
    wav = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
    if wav.numel() < 2 * hop:
        wav = torch.nn.functional.pad(wav, (0, 2 * hop - wav.numel()))
    with torch.no_grad():
        mel = torch.log(_MEL[hop](wav) + 1e-6).T.numpy()  # [frames, mels]; centred: row t is at t * hop
    out = np.full((n_frames, N_MELS), float(np.log(1e-6)), np.float32)  # silence past the audio's end
    k = min(n_frames, len(mel))
    out[:k] = mel[:k]
    return out


def landmark_error(reference: FaceTrack, prediction: FaceTrack) -> float | None:
    """Mean 2d106 point distance between prediction and reference frames, in reference face-box
    heights (NME-style), over the frames where both show a detected face; a frame whose
    prediction lost the face counts 1 box height (a generator that loses the face is not
    excused). None when the reference shows no face."""
    if len(reference.detected) != len(prediction.detected):
        raise ValueError("face tracks of different lengths")
    ref_ok = reference.detected
    if not ref_ok.any():
        return None
    height = np.maximum(reference.boxes[:, 3] - reference.boxes[:, 1], 1e-6)
    err = np.linalg.norm(prediction.landmarks - reference.landmarks, axis=2).mean(axis=1) / height
    err = np.where(prediction.detected, err, 1.0)
    return float(err[ref_ok].mean())


def clip_landmark_error(models: FaceModels, reference_bgr: np.ndarray, prediction_bgr: np.ndarray, *, step: int = 1) -> float | None:
    """:func:`landmark_error` of two aligned BGR frame stacks (VidChatBench's decoded clips), on
    every ``step``-th frame; None when the reference shows no face, 1.0 when the prediction never does."""
    idx = np.arange(0, len(reference_bgr), max(1, step))
    try:
        ref = face_track(models, reference_bgr[idx], bgr=True)
    except NoFace:
        return None
    try:
        pred = face_track(models, prediction_bgr[idx], bgr=True)
    except NoFace:
        return 1.0
    return landmark_error(ref, pred)
