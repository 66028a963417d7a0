"""Frame sampling for clip quality with PyAV: a few frame pairs per clip, never a full decode.

Each clip gets ``samples_per_clip`` sample frames, evenly spread (at (k + 0.5) / K of the
clip), and with each the frame ``flow_step_frames`` later (the pair optical flow is measured
on). So a clip costs 2 K converted frames (6 with the defaults). Decoding walks the sorted
sample frames of the whole video once (see :func:`iter_pairs`); frames between samples are
decoded but never converted. Only the frames of pairs not yet handed out are held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from assets.vision.decode import Geometry, frame_bgr, frame_geometry, stream_fps


def sample_frames_for_clip(start_s: float, end_s: float, fps: float, k: int) -> list[int]:
    """Frame indices of ``k`` evenly spread samples inside [start_s, end_s)."""
    first, last = int(np.ceil(start_s * fps - 1e-6)), max(int(np.ceil(start_s * fps - 1e-6)), int(np.ceil(end_s * fps - 1e-6)) - 1)
    return sorted({int(round(first + (i + 0.5) / k * (last - first))) for i in range(k)})


@dataclass(frozen=True)
class FramePair:
    index: int  # frame index of the sample
    frame: np.ndarray  # BGR, as displayed, at the working size
    later: np.ndarray | None  # BGR, ``step`` frames later (None at the end of the video)
    scale: float = 1.0  # working pixels per source pixel (multiply source-pixel boxes by it)


def keyframe_indices(path: str | Path) -> list[int]:
    """Frame indices of the video's keyframes, from its packets (demuxed, not decoded)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps, tb = stream_fps(stream), float(stream.time_base)
        start = float(stream.start_time or 0) * tb
        return sorted(int(round((p.pts * tb - start) * fps)) for p in container.demux(stream) if p.is_keyframe and p.pts is not None)


def iter_pairs(path: str | Path, indices: list[int], step: int, *, max_side: int | None = None) -> Iterator[FramePair]:
    """Every frame in ``indices`` (sorted, unique) with the frame ``step`` later, in order;
    frames upright and at most ``max_side`` long (see assets.vision.decode).

    Decoding seeks only when the keyframe before the next sample lies beyond the last decoded
    frame (a seek then skips whole GOPs without samples); otherwise it decodes forward. So no
    frame is decoded twice, and the cost is at most one decode of the GOPs holding samples."""
    if not indices:
        return
    keyframes = np.asarray(keyframe_indices(path) or [0])
    wanted = set(indices) | {i + step for i in indices}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # no frame threading: seeking and restarting the decoder with FFmpeg's frame threads
        # deadlocked (tests, after other tests had run); a few GOPs per clip decode fast on one
        fps, tb = stream_fps(stream), float(stream.time_base)
        start = float(stream.start_time or 0) * tb
        held: dict[int, np.ndarray] = {}
        geometry: Geometry | None = None
        decoder: Iterator[av.VideoFrame] | None = None
        current = -1  # index of the last decoded frame
        ended = False
        for target in indices:
            for i in [i for i in held if i < target]:
                del held[i]
            key_before = int(keyframes[max(0, np.searchsorted(keyframes, target, side="right") - 1)])
            if target not in held and (decoder is None or key_before > current or target <= current - step):
                container.seek(int((start + key_before / fps) / tb), stream=stream, backward=True, any_frame=False)
                decoder, ended, current = container.decode(stream), False, -1
            while not ended and current < target + step:
                try:
                    frame = next(decoder)
                except StopIteration:
                    ended = True
                    break
                current = int(round(((frame.pts or 0) * tb - start) * fps))
                if current in wanted and current >= target:
                    geometry = geometry or frame_geometry(frame, max_side)
                    held[current] = frame_bgr(frame, geometry)
            image = held.get(target)
            if image is None:  # past the end, or a gap in the timestamps: the nearest decoded frame after it
                after = [i for i in held if i >= target]
                if not after:
                    continue
                image = held[min(after)]
            yield FramePair(target, image, held.get(target + step), geometry.scale)
