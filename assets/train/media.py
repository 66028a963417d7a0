"""A training sample's media, decoded with PyAV from the lake's raw video: the clip's person
crop resampled to a fixed frame rate and size, and its mono audio at a fixed sample rate.

Only the clip is decoded: the container seeks to the keyframe before the clip start and
decoding stops at the clip end, so the cost grows with the clip and the keyframe interval,
never with the video's length. Memory: the output arrays plus one decoded frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from assets.release import media as release_media


class MediaError(ValueError):
    """The media cannot give the clip (truncated, or a span without decodable frames)."""


def sample_times(start: float, end: float, fps: float) -> np.ndarray:
    """The ``round((end - start) * fps)`` (at least one) sampling times ``start + k / fps``."""
    n = max(1, int(round((end - start) * fps)))
    return start + np.arange(n) / fps


def crop_graph(stream: av.video.stream.VideoStream, bbox: list[float], size: tuple[int, int]) -> av.filter.Graph:
    """An FFmpeg filter graph taking ``stream``'s frames to the person crop ``bbox``
    (normalised [x, y, w, h], as clips.bbox) scaled to ``size`` = (height, width), RGB: one
    swscale pass over the crop only (a full-frame RGB conversion costs more than decoding)."""
    box = release_media.crop_box(bbox, stream.codec_context.width, stream.codec_context.height)
    graph = av.filter.Graph()
    nodes = [
        graph.add_buffer(template=stream),
        graph.add("crop", f"{box.w}:{box.h}:{box.x}:{box.y}"),
        graph.add("scale", f"{size[1]}:{size[0]}:flags=area"),  # area averaging: downscaling without aliasing
        graph.add("format", "rgb24"),
        graph.add("buffersink"),
    ]
    for a, b in zip(nodes, nodes[1:]):
        a.link_to(b)
    graph.configure()
    return graph


def _no_python_log_callback() -> None:
    """PyAV's default: FFmpeg logs do not call into Python. ``import torchvision.io`` turns the
    callback on (level ERROR); then a frame-threaded decoder closed before the end of the file
    deadlocks: a decoder thread logging waits for the GIL while the main thread, holding it,
    waits for that thread in ``avcodec_free_context`` (seen in the test suite)."""
    if av.logging.get_level() is not None:
        av.logging.set_level(None)


def read_frames(
    media_path: Path, start: float, end: float, bbox: list[float], fps: float, size: tuple[int, int], max_gap_s: float
) -> np.ndarray:
    """The person crop ``bbox`` over ``[start, end)`` sampled at ``fps`` (each sampling time
    takes the decoded frame nearest to it, by timestamp) and resized to ``size`` =
    (height, width): uint8 RGB, T x H x W x 3 with T = round((end - start) * fps).

    Raises MediaError when a sampling time is more than ``max_gap_s`` from every decoded
    frame (the file ends early or has a hole): a silent repeat would be a frozen video."""
    times = sample_times(start, end, fps)
    out = np.empty((len(times), size[0], size[1], 3), dtype=np.uint8)
    _no_python_log_callback()
    k = 0
    prev_t: float | None = None
    prev_frame: av.VideoFrame | None = None
    prev_rgb: np.ndarray | None = None

    def fill_from_prev(upto: float) -> None:
        """Every sampling time before ``upto`` takes the previous decoded frame."""
        nonlocal k, prev_rgb
        while k < len(times) and times[k] < upto:
            if abs(times[k] - prev_t) > max_gap_s:
                raise MediaError(f"no frame within {max_gap_s}s of {times[k]:.2f}s (nearest decoded: {prev_t:.2f}s)")
            if prev_rgb is None:  # crop a frame once, and only when a sampling time uses it
                graph.push(prev_frame)
                prev_rgb = graph.pull().to_ndarray()
            out[k] = prev_rgb
            k += 1

    with av.open(str(media_path)) as inp:
        if not inp.streams.video:
            raise MediaError("no video stream")
        src = inp.streams.video[0]
        src.thread_type = "AUTO"  # frame threads: decoding is the cost, and it parallelises
        graph = crop_graph(src, bbox, size)
        inp.seek(max(0, int(start / src.time_base)), stream=src, backward=True)
        for frame in inp.decode(src):
            t = frame.time
            if t is None:
                continue
            if prev_t is not None:
                fill_from_prev((prev_t + t) / 2)  # the times closer to the previous frame than to this one
            if k == len(times):
                break
            prev_t, prev_frame, prev_rgb = t, frame, None
        if prev_t is None:
            raise MediaError(f"no decodable video frame from {start:.2f}s")
        fill_from_prev(math.inf)
    return out


def read_audio(media_path: Path, start: float, end: float, sample_rate: int, silence: list[tuple[float, float]] | None) -> np.ndarray:
    """Mono float32 audio over ``[start, end)`` at ``sample_rate``, exactly
    ``round((end - start) * sample_rate)`` samples; the clip-relative ``silence`` spans zeroed
    (the release's cleaned audio: other speakers' turns). Zeros when the file has no audio."""
    n = int(round((end - start) * sample_rate))
    audio = release_media.read_audio(media_path, start, end)
    if audio is None:
        return np.zeros(n, dtype=np.float32)
    if silence:
        audio = release_media.silenced(audio, silence)
    mono = audio.samples.mean(axis=0)
    g = math.gcd(sample_rate, audio.rate)
    # polyphase resampling with its anti-aliasing filter (scipy), not sample picking
    res = resample_poly(mono, sample_rate // g, audio.rate // g).astype(np.float32)
    if res.size >= n:
        return res[:n]
    return np.pad(res, (0, n - res.size))

