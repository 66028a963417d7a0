"""VidChatBench metrics of one prediction against its reference responder clip (pure functions).

- ``psnr``, ``ssim``: scikit-image, per aligned frame pair (8-bit range), mean over frames.
  Identical frames have an infinite PSNR; each frame's PSNR is capped at ``psnr_cap_db`` so the
  mean stays finite and the ground truth scores exactly the cap.
- ``arcface``: ArcFace cosine between the face of prediction frame ``i`` and the face of
  reference frame ``i`` (largest SCRFD face of each), mean over the sampled frames whose
  reference has a face; a sampled prediction frame without a face counts 0 (a generator that
  loses the face is not excused). Frame-wise rather than against one mean reference face, so
  the reference scored against itself gives exactly 1.
- ``landmark_error``: mean distance between the 2d106 landmarks (the vision stage's model) of
  prediction frame ``i`` and reference frame ``i``, divided by the reference face box size
  (square root of its area), mean over the sampled frames whose reference has a face; a sampled
  prediction frame without a face counts 1 (a whole face size). The reference scores 0; a still
  frame scores above 0 as soon as the reference's head or mouth moves.
- ``sync_confidence``, ``sync_offset``, ``sync_dist``: the project's lip-sync scorer
  (`assets.binding.sync.score_windows`) with the configured ``sync_backend`` on the prediction's
  own frames and audio. ``mouth``: the 2d106 mouth opening as the vision stage computes it
  (`assets.vision.mouth`, sampled at ``face_mouth_fps`` and interpolated) against the speech
  envelope; ``syncnet``: SyncNet on face crops of the prediction's frames (written to a
  temporary mp4, the boxes interpolated between the samples). Offset sign as ``sync_scores``:
  > 0 means the audio leads the video.
- ``voice_similarity``: cosine of resemblyzer d-vectors (the diarization encoder,
  `assets.audio.diarization`) of the prediction's and the reference's audio.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from assets.audio import diarization as diar
from assets.binding.params import BindingParams
from assets.binding.sync import SyncModels, SyncResult, SyncWindow, score_windows
from assets.vision.faces import detect_faces, embed_face, landmarks_106
from assets.vision.models import FaceModels
from assets.vision.mouth import mouth_opening, resample


def psnr_ssim(reference: np.ndarray, prediction: np.ndarray, *, psnr_cap_db: float) -> tuple[float, float]:
    """Mean per-frame PSNR (dB, capped) and SSIM of two aligned uint8 frame stacks [n, h, w, 3]."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # here: the code location loads without scikit-image

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
    """The largest face of every sampled frame: ArcFace embedding (None: no face), mouth opening,
    box, 5 keypoints and 2d106 landmarks (nan: no face)."""

    frames: np.ndarray  # sampled frame indices
    embeddings: list[np.ndarray | None]
    mouth: np.ndarray  # mouth opening per sampled frame (nan: no face)
    boxes: np.ndarray  # [n, 4] x1, y1, x2, y2
    kps: np.ndarray  # [n, 5, 2]
    landmarks: np.ndarray  # [n, 106, 2]

    @property
    def has_face(self) -> np.ndarray:
        return np.isfinite(self.mouth)


def face_samples(models: FaceModels, frames: np.ndarray, step: int, *, min_face_px: float) -> FaceSamples:
    """SCRFD + 2d106 + ArcFace on every ``step``-th frame (the vision stage's mouth sampling)."""
    idx = np.arange(0, len(frames), max(1, step))
    if len(frames) and idx[-1] != len(frames) - 1:
        idx = np.append(idx, len(frames) - 1)  # the last frame too: no extrapolated tail
    embeddings: list[np.ndarray | None] = []
    mouth = np.full(len(idx), np.nan)
    boxes, kps, landmarks = np.full((len(idx), 4), np.nan), np.full((len(idx), 5, 2), np.nan), np.full((len(idx), 106, 2), np.nan)
    for k, j in enumerate(idx):
        img = np.ascontiguousarray(frames[j])
        det = detect_faces(models, img, min_face_px=min_face_px)
        if not len(det):
            embeddings.append(None)
            continue
        b = int(np.argmax((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])))
        boxes[k], kps[k] = det.boxes[b][:4], det.kps[b]
        embeddings.append(embed_face(models, img, det.kps[b]))
        landmarks[k] = landmarks_106(models, img, boxes[k])
        mouth[k] = mouth_opening(landmarks[k], boxes[k, 3] - boxes[k, 1])
    return FaceSamples(idx, embeddings, mouth, boxes, kps, landmarks)


def identity_similarity(reference: FaceSamples, prediction: FaceSamples) -> float | None:
    """Mean frame-wise ArcFace cosine (module doc); None when the reference shows no face."""
    if not np.array_equal(reference.frames, prediction.frames):
        raise ValueError("face samples of different frames")
    cos = [float(r @ p) if p is not None else 0.0 for r, p in zip(reference.embeddings, prediction.embeddings) if r is not None]
    return float(np.mean(cos)) if cos else None


def landmark_error(reference: FaceSamples, prediction: FaceSamples) -> float | None:
    """Mean normalised 2d106 landmark distance (module doc); None when the reference shows no face."""
    if not np.array_equal(reference.frames, prediction.frames):
        raise ValueError("face samples of different frames")
    ref = reference.has_face
    if not ref.any():
        return None
    size = np.sqrt((reference.boxes[ref, 2] - reference.boxes[ref, 0]) * (reference.boxes[ref, 3] - reference.boxes[ref, 1]))
    dist = np.linalg.norm(prediction.landmarks[ref] - reference.landmarks[ref], axis=2).mean(axis=1) / size
    return float(np.mean(np.where(prediction.has_face[ref], dist, 1.0)))


def clip_sync(
    samples: FaceSamples, frames: np.ndarray, audio: np.ndarray, fps: float, params: BindingParams, sync_models: SyncModels | None = None
) -> SyncResult | None:
    """Lip sync of the clip's face over all its ``frames`` against its audio (None: no face seen)."""
    ok = samples.has_face
    if ok.sum() < 2:
        return None
    n_frames = len(frames)
    idx = np.arange(n_frames)
    track = pl.DataFrame(
        {
            "track_id": [0], "start_frame": [0], "end_frame": [n_frames], "frames": [idx.tolist()],
            "mouth_open": [resample(samples.frames[ok], samples.mouth[ok], idx).tolist()],
            "boxes": [np.stack([resample(samples.frames[ok], samples.boxes[ok, c], idx) for c in range(4)], 1).tolist()],
        }
    )
    window = [SyncWindow(0, 0, "", 0, n_frames)]
    if sync_models is None or sync_models.backend == "mouth":
        return score_windows(window, track, audio, fps, n_frames, params=params).get((0, 0))
    with tempfile.TemporaryDirectory(prefix="speakerlake-vidchat-sync-") as tmp:  # the syncnet backend reads its crops from a video file
        path = Path(tmp) / "frames.mp4"
        write_frames(path, frames, fps)
        return score_windows(window, track, audio, fps, n_frames, params=params, sync_models=sync_models, media_path=path).get((0, 0))


def write_frames(path: Path, frames: np.ndarray, fps: float) -> None:
    """BGR frames to an mp4 with the release's codec settings (deterministic, near-lossless)."""
    from fractions import Fraction

    import av

    from assets.release import media as release_media

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(release_media.VIDEO_CODEC, rate=rate)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2, "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.options = {"flags": "+qscale", "global_quality": str(release_media.VIDEO_QSCALE * release_media.FF_QP2LAMBDA)}
        stream.codec_context.thread_count = 1
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: stream.height, : stream.width]), format="bgr24")
            frame.pts, frame.time_base = i, stream.codec_context.time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def voice_embedding(encoder, audio: np.ndarray) -> np.ndarray:
    """resemblyzer d-vector of the whole clip (mean of 1.6 s partials, L2-normalised)."""
    mel = diar.mel_frames(np.asarray(audio, dtype=np.float32))
    return diar.embed_utterances(encoder, mel, [np.arange(len(mel))])[0]
