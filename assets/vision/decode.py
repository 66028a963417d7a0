"""PyAV decoding to BGR arrays (decode once, share frames between stages).

Every stage that looks at pixels reads frames through :class:`FrameReader`, which hands out
what a viewer sees, at a bounded size, on the video's own clock:

* **bounded working size**: a frame whose longer side exceeds ``max_side`` is scaled down by
  swscale while it is converted (``VideoFrame.reformat``), so no full-size BGR frame of an 8K
  source is ever made and the frames a stage holds (shot lag queue, tracker buffer) stay small.
  :attr:`Geometry.scale` maps working pixels back to source pixels.
* **display orientation**: a phone video stored landscape with a display matrix (``rotate``
  tag) is turned the way players turn it (``VideoFrame.rotation``), so boxes are upright and in
  the displayed frame's coordinates.
* **a constant frame-rate grid from timestamps**: frame ``j`` is the frame shown at
  ``j / fps`` seconds after the video's start (each decoded frame goes to the slot nearest its
  ``pts * time_base``; a slot with no frame repeats the previous one, a second frame in one slot
  is dropped, like FFmpeg's ``fps`` filter). So ``index / fps`` is a timestamp for every stage
  downstream, also for variable frame rate sources.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

# cv2.rotate code that turns a stored frame counterclockwise by the key (degrees)
_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}


def to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """BGR uint8 array of a decoded frame at its stored size and orientation. 4:2:0 frames are
    converted by OpenCV, about twice as fast as PyAV's swscale path here (same BT.601 result
    within a few levels)."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def stream_fps(stream: av.video.stream.VideoStream, default: float = 25.0) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else default


def display_rotation(frame: av.VideoFrame) -> int:
    """Counterclockwise degrees (0, 90, 180 or 270) the display matrix turns the stored frame."""
    try:
        degrees = frame.rotation or 0
    except (ValueError, TypeError):  # malformed side data: show the frame as stored
        degrees = 0
    return int(round(degrees / 90.0)) * 90 % 360


@dataclass(frozen=True)
class Geometry:
    """How the frames handed out relate to the source."""

    width: int  # source frame as displayed (after the rotation), pixels
    height: int
    work_width: int  # the frames handed out (displayed orientation, at most max_side)
    work_height: int
    rotation: int  # counterclockwise degrees, see display_rotation

    @property
    def scale(self) -> float:
        """Working pixels per source pixel (1.0 when the source fits ``max_side``)."""
        return self.work_width / self.width if self.width else 1.0


def frame_geometry(frame: av.VideoFrame, max_side: int | None) -> Geometry:
    rotation = display_rotation(frame)
    w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
    s = min(1.0, max_side / max(w, h)) if max_side else 1.0
    if s >= 1.0:
        return Geometry(w, h, w, h, rotation)
    # even sizes: 4:2:0 chroma and the OpenCV conversion want them
    return Geometry(w, h, max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2), rotation)


def frame_bgr(frame: av.VideoFrame, geometry: Geometry) -> np.ndarray:
    """The frame as displayed, at the working size: scaled while converting (never a full-size
    BGR copy of a large frame), then turned by the display rotation."""
    turned = geometry.rotation in (90, 270)
    sw, sh = (geometry.work_height, geometry.work_width) if turned else (geometry.work_width, geometry.work_height)
    if (sw, sh) == (frame.width, frame.height):
        img = to_bgr(frame)
    else:
        img = frame.reformat(width=sw, height=sh, format="bgr24", interpolation="AREA").to_ndarray()
    return to_displayed(img, geometry.rotation)


def to_displayed(img: np.ndarray, rotation: int) -> np.ndarray:
    """A stored frame's array turned by ``rotation`` (see :func:`display_rotation`) as players show it."""
    return cv2.rotate(img, _ROTATE[rotation]) if rotation else img


class FrameReader:
    """The first video stream of ``path`` as ``(index, BGR frame)`` on a constant frame-rate
    grid (see the module doc). :attr:`geometry` is known once the first frame is decoded."""

    def __init__(self, path: str | Path, *, max_side: int | None = None):
        self.container = av.open(str(path))
        self.stream = self.container.streams.video[0]
        self.fps = stream_fps(self.stream)
        self.max_side = max_side
        self.geometry: Geometry | None = None
        tb = float(self.stream.time_base) if self.stream.time_base else 0.0
        self.start = float(self.stream.start_time) * tb if self.stream.start_time is not None else None

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        slot, previous = 0, None
        for frame in self.container.decode(self.stream):
            if self.start is None and frame.time is not None:
                self.start = frame.time
            index = int(round((frame.time - self.start) * self.fps)) if frame.time is not None else slot
            if index < slot:  # a second frame in a slot already filled: the first one is shown
                continue
            if self.geometry is None:
                self.geometry = frame_geometry(frame, self.max_side)
            img = frame_bgr(frame, self.geometry)
            while slot < index:  # no frame was shown at these slots: the previous one still is
                yield slot, img if previous is None else previous
                slot += 1
            yield index, img
            slot, previous = index + 1, img


def iter_frames(path: str | Path, *, max_side: int | None = None) -> Iterator[np.ndarray]:
    """Every frame of the first video stream on its frame-rate grid, as BGR arrays."""
    with FrameReader(path, max_side=max_side) as reader:
        for _, img in reader:
            yield img


def video_fps(path: str | Path) -> float:
    with av.open(str(path)) as container:
        return stream_fps(container.streams.video[0])
