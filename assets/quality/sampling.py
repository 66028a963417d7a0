"""Frame sampling for clip quality with PyAV: a few frame pairs per clip, never a full decode.

Each clip gets ``samples_per_clip`` sample frames, evenly spread (at (k + 0.5) / K of the
clip), and with each the frame ``flow_step_frames`` later (the pair optical flow is measured
on). So a clip costs 2 K decoded-and-converted frames (6 with the defaults). Decoding walks
the sorted sample frames of the whole video once: it seeks (to the keyframe before) when the
next needed frame is more than ``seek_gap_s`` ahead and decodes forward otherwise; skipped
frames are decoded but never converted. Only the frames of pairs not yet handed out are held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from assets.vision.decode import stream_fps, to_bgr


def sample_frames_for_clip(start_s: float, end_s: float, fps: float, k: int) -> list[int]:
    """Frame indices of ``k`` evenly spread samples inside [start_s, end_s)."""
    first, last = int(np.ceil(start_s * fps - 1e-6)), max(int(np.ceil(start_s * fps - 1e-6)), int(np.ceil(end_s * fps - 1e-6)) - 1)
    return sorted({int(round(first + (i + 0.5) / k * (last - first))) for i in range(k)})


@dataclass(frozen=True)
class FramePair:
    index: int  # frame index of the sample
    frame: np.ndarray  # BGR
    later: np.ndarray | None  # BGR, ``step`` frames later (None at the end of the video)


def iter_pairs(path: str | Path, indices: list[int], step: int, seek_gap_s: float) -> Iterator[FramePair]:
    """Every frame in ``indices`` (sorted, unique) with the frame ``step`` later, in order."""
    if not indices:
        return
    wanted = set(indices) | {i + step for i in indices}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = stream_fps(stream)
        tb = float(stream.time_base)
        start = float(stream.start_time or 0) * tb
        seek_gap = max(1, int(round(seek_gap_s * fps)))
        held: dict[int, np.ndarray] = {}
        decoder: Iterator[av.VideoFrame] | None = None
        current = -1  # index of the last decoded frame
        ended = False
        for target in indices:
            for i in [i for i in held if i < target]:
                del held[i]
            if (decoder is None or target - current > seek_gap or target < current - step) and target not in held:
                container.seek(int((start + target / fps) / tb), stream=stream, backward=True, any_frame=False)
                decoder, ended, current = container.decode(stream), False, -1
            while not ended and current < target + step:
                try:
                    frame = next(decoder)
                except StopIteration:
                    ended = True
                    break
                current = int(round(((frame.pts or 0) * tb - start) * fps))
                if current in wanted and current >= target:
                    held[current] = to_bgr(frame)
            frame_bgr = held.get(target)
            if frame_bgr is None:  # past the end, or a gap in the timestamps: the nearest decoded frame after it
                after = [i for i in held if i >= target]
                if not after:
                    continue
                frame_bgr = held[min(after)]
            yield FramePair(target, frame_bgr, held.get(target + step))
