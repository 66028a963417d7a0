"""Render a predicted motion: warp the responder's reference frame, mux the responder audio.

Warp (documented, simple): piecewise affine over a Delaunay triangulation (SciPy) of the 106
landmarks plus 8 fixed anchors on the frame border (corners and edge midpoints). Frame ``t``
moves each reference landmark to its predicted position (`assets.train.motion.apply_deltas`);
each output pixel takes the affine map of the moved triangle that holds it (rasterised with
``cv2.fillConvexPoly``) back to the original triangle and samples the reference there
(``cv2.remap``, bilinear) (scikit-image's ``PiecewiseAffineTransform`` is the same map, but took 2.7 s a
256x256 frame on the shared 2 cores; this one is vectorised over pixels); the border anchors do not move, so the background and the body stay
put while the face deforms (jaw and lips open, head nods). No new texture is invented: an open
mouth is the reference lips stretched apart.

Mux: PyAV, the release's codec settings (MPEG-4 Part 2 at a fixed quantiser, AAC), frame ``t``
at ``t / fps``; the file is ``<pair_id>.mp4``, the name `speakerlake vidchat-eval` reads.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from scipy.spatial import Delaunay

from assets.release.media import AUDIO_CODEC, BITEXACT, FF_QP2LAMBDA, VIDEO_CODEC, VIDEO_QSCALE
from assets.train.motion import SAMPLE_RATE


def border_anchors(width: int, height: int) -> np.ndarray:
    """[8, 2] (x, y): the frame's corners and edge midpoints."""
    xs, ys = (0, (width - 1) / 2, width - 1), (0, (height - 1) / 2, height - 1)
    return np.array([(x, y) for x in xs for y in ys if (x, y) != (xs[1], ys[1])], np.float64)


def warp_frames(reference: np.ndarray, ref_landmarks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3]: ``reference`` [H, W, 3] warped so ``ref_landmarks`` [106, 2] land on
    each frame's ``landmarks`` [T, 106, 2] (module doc)."""
    h, w = reference.shape[:2]
    anchors = border_anchors(w, h)
    src = np.concatenate([ref_landmarks, anchors]).astype(np.float64)
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), axis=-1).reshape(-1, 2)
    out = np.empty((len(landmarks), h, w, 3), np.uint8)
    for t, lm in enumerate(landmarks):
        dst = np.concatenate([np.clip(lm, 0, [w - 1, h - 1]), anchors])
        if np.allclose(dst, src, atol=1e-3):
            out[t] = reference
            continue
        # output pixel -> the moved triangle holding it (rasterised) -> that triangle's affine map back
        tris = Delaunay(dst).simplices
        owner = np.full((h, w), -1, np.int32)
        for k, tr in enumerate(tris):
            cv2.fillConvexPoly(owner, np.round(dst[tr]).astype(np.int32), k)
        affine = np.stack([cv2.getAffineTransform(dst[tr].astype(np.float32), src[tr].astype(np.float32)) for tr in tris])  # [K, 2, 3]
        k = owner.reshape(-1)
        mapped = grid.copy()
        inside = k >= 0  # the anchors' hull is the whole frame; a rounding gap stays put
        mapped[inside] = np.einsum("nij,nj->ni", affine[k[inside], :, :2], grid[inside]) + affine[k[inside], :, 2]
        maps = mapped.reshape(h, w, 2).astype(np.float32)
        out[t] = cv2.remap(reference, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def write_mp4(path: Path, frames_rgb: np.ndarray, fps: float, audio: np.ndarray | None) -> None:
    """``frames_rgb`` [T, H, W, 3] (even H and W) at ``fps`` with 16 kHz mono ``audio`` (AAC)."""
    rate = Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        v = out.add_stream(VIDEO_CODEC, rate=rate)
        v.width, v.height, v.pix_fmt = frames_rgb.shape[2], frames_rgb.shape[1], "yuv420p"
        v.codec_context.time_base = 1 / rate
        v.codec_context.options = {"flags": "+bitexact+qscale", "global_quality": str(VIDEO_QSCALE * FF_QP2LAMBDA)}
        a = None
        if audio is not None:
            a = out.add_stream(AUDIO_CODEC, rate=SAMPLE_RATE, layout="mono")
            a.codec_context.options = dict(BITEXACT)
        for i, rgb in enumerate(frames_rgb):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = i, v.codec_context.time_base
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            af = av.AudioFrame.from_ndarray(np.asarray(audio, np.float32).reshape(1, -1), format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = SAMPLE_RATE, 0, Fraction(1, SAMPLE_RATE)
            for packet in a.encode(af):
                out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
    tmp.replace(path)  # a half-written file is never left under the scored name
