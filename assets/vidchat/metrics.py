"""VidChatBench metrics of one prediction against its reference responder clip (pure functions).

- ``psnr``, ``ssim``: scikit-image, per aligned frame pair (8-bit range), mean over frames.
  Identical frames have an infinite PSNR; each frame's PSNR is capped at ``psnr_cap_db`` so the
  mean stays finite and the ground truth scores exactly the cap.
- ``arcface``: ArcFace cosine between the face of prediction frame ``i`` and the face of
  reference frame ``i`` (largest SCRFD face of each), mean over the sampled frames whose
  reference has a face; a sampled prediction frame without a face counts 0 (a generator that
  loses the face is not excused). Frame-wise rather than against one mean reference face, so
  the reference scored against itself gives exactly 1.
- ``sync_confidence``, ``sync_offset``, ``sync_dist``: the project's lip-sync scorer
  (`assets.binding.sync.score_windows`, mouth backend) on the prediction's own frames and audio:
  the 2d106 mouth opening as the vision stage computes it (`assets.vision.mouth`, sampled at
  ``face_mouth_fps`` and interpolated), against the prediction's speech envelope. Offset sign as
  ``sync_scores``: > 0 means the audio leads the video.
- ``voice_similarity``: cosine of resemblyzer d-vectors (the diarization encoder,
  `assets.audio.diarization`) of the prediction's and the reference's audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from assets.audio import diarization as diar
from assets.binding.params import BindingParams
from assets.binding.sync import SyncResult, SyncWindow, score_windows
from assets.vision.faces import detect_faces, embed_face, landmarks_106
from assets.vision.models import FaceModels
from assets.vision.mouth import mouth_opening, resample


def psnr_ssim(reference: np.ndarray, prediction: np.ndarray, *, psnr_cap_db: float) -> tuple[float, float]:
    """Mean per-frame PSNR (dB, capped) and SSIM of two aligned uint8 frame stacks [n, h, w, 3]."""
    psnrs, ssims = [], []
    for ref, pred in zip(reference, prediction, strict=True):
        if np.array_equal(ref, pred):  # skimage divides by a zero MSE (inf, with a warning)
            psnrs.append(psnr_cap_db)
            ssims.append(1.0)
            continue
        psnrs.append(min(float(peak_signal_noise_ratio(ref, pred, data_range=255)), psnr_cap_db))
        ssims.append(float(structural_similarity(ref, pred, channel_axis=2, data_range=255)))
    return float(np.mean(psnrs)), float(np.mean(ssims))


@dataclass(frozen=True)
class FaceSamples:
    """The largest face of every sampled frame: ArcFace embedding (None: no face) and mouth opening."""

    frames: np.ndarray  # sampled frame indices
    embeddings: list[np.ndarray | None]
    mouth: np.ndarray  # mouth opening per sampled frame (nan: no face)


def face_samples(models: FaceModels, frames: np.ndarray, step: int, *, min_face_px: float) -> FaceSamples:
    """SCRFD + 2d106 + ArcFace on every ``step``-th frame (the vision stage's mouth sampling)."""
    idx = np.arange(0, len(frames), max(1, step))
    if len(frames) and idx[-1] != len(frames) - 1:
        idx = np.append(idx, len(frames) - 1)  # the last frame too: no extrapolated tail
    embeddings: list[np.ndarray | None] = []
    mouth = np.full(len(idx), np.nan)
    for k, j in enumerate(idx):
        img = np.ascontiguousarray(frames[j])
        det = detect_faces(models, img, min_face_px=min_face_px)
        if not len(det):
            embeddings.append(None)
            continue
        b = int(np.argmax((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])))
        box = det.boxes[b]
        embeddings.append(embed_face(models, img, det.kps[b]))
        mouth[k] = mouth_opening(landmarks_106(models, img, box), box[3] - box[1])
    return FaceSamples(idx, embeddings, mouth)


def identity_similarity(reference: FaceSamples, prediction: FaceSamples) -> float | None:
    """Mean frame-wise ArcFace cosine (module doc); None when the reference shows no face."""
    if not np.array_equal(reference.frames, prediction.frames):
        raise ValueError("face samples of different frames")
    cos = [float(r @ p) if p is not None else 0.0 for r, p in zip(reference.embeddings, prediction.embeddings) if r is not None]
    return float(np.mean(cos)) if cos else None


def clip_sync(samples: FaceSamples, n_frames: int, audio: np.ndarray, fps: float, params: BindingParams) -> SyncResult | None:
    """Lip sync of the clip's face over all its frames against its audio (None: no face seen)."""
    ok = np.isfinite(samples.mouth)
    if ok.sum() < 2:
        return None
    frames = np.arange(n_frames)
    track = pl.DataFrame(
        {"track_id": [0], "start_frame": [0], "end_frame": [n_frames], "frames": [frames.tolist()], "mouth_open": [resample(samples.frames[ok], samples.mouth[ok], frames).tolist()]}
    )
    res = score_windows([SyncWindow(0, 0, "", 0, n_frames)], track, audio, fps, n_frames, params=params)
    return res.get((0, 0))


def voice_embedding(encoder, audio: np.ndarray) -> np.ndarray:
    """resemblyzer d-vector of the whole clip (mean of 1.6 s partials, L2-normalised)."""
    mel = diar.mel_frames(np.asarray(audio, dtype=np.float32))
    return diar.embed_utterances(encoder, mel, [np.arange(len(mel))])[0]
