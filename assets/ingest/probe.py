"""Validate and probe one media file with PyAV (bundled FFmpeg, no system ffmpeg).

`probe_video` either returns a :class:`VideoProbe` or raises :class:`Rejected` with a
machine-readable reason. The checks are ordered cheapest first and are chosen so that
every way a real crawl goes wrong maps to one reason:

=================  =============================================================
reason             meaning
=================  =============================================================
empty_file         zero bytes
truncated          the container says more data follows than the file holds
                   (an MP4 box runs past end of file, or packets stop well
                   before the declared duration)
corrupt            a video container signature is present but it cannot be
                   demuxed or its frames cannot be decoded
not_a_video        not a media container at all, or a still image
no_video_stream    media without a video stream (e.g. audio only)
too_short          shorter than the minimum usable duration (3 s)
=================  =============================================================
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import av

from assets.vision.decode import display_rotation

MIN_DURATION_S = 3.0

# Container signatures: a file that starts like a video container but will not open is
# corrupt (or truncated), anything else is simply not a video.
_MAGIC = (
    (4, b"ftyp"),  # ISO BMFF: mp4 / mov / m4v
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM
    (0, b"RIFF"),  # AVI
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG-PS
    (0, b"\x47"),  # MPEG-TS sync byte (weak; checked with the packet size below)
)


class Rejected(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class VideoProbe:
    sha256: str
    size_bytes: int
    container: str
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    video_codec: str
    video_bitrate: int
    has_audio: bool
    audio_codec: str | None
    audio_rate: int | None
    audio_channels: int | None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def video_id_for(sha256: str) -> str:
    """Stable id from the content hash: the same bytes under any name are the same video."""
    return sha256[:16]


def _looks_like_video_container(head: bytes) -> bool:
    for offset, magic in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if magic == b"\x47":
                return len(head) > 188 and head[188] == 0x47
            return True
    return False


def _isobmff_overrun(path: Path, size: int) -> str | None:
    """Walk top-level MP4 boxes; report a box that claims bytes past end of file (raise on garbage boxes)."""
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            hdr = f.read(16)
            box_size, box_type = struct.unpack(">I4s", hdr[:8])
            if box_size == 1 and len(hdr) >= 16:
                box_size = struct.unpack(">Q", hdr[8:16])[0]
            elif box_size == 0:  # box extends to end of file by definition
                return None
            if box_size < 8 or not all(32 <= c < 127 or c == 0xA9 for c in box_type):
                raise Rejected("corrupt", f"invalid MP4 box (type {box_type!r}, size {box_size}) at byte {pos}")
            if pos + box_size > size:
                return f"box {box_type.decode('latin1')!r} at byte {pos} needs {box_size} bytes, file ends after {size - pos}"
            pos += box_size
    return None


def probe_video(path: Path, *, min_duration_s: float = MIN_DURATION_S) -> VideoProbe:
    size = path.stat().st_size
    if size == 0:
        raise Rejected("empty_file", "file has zero bytes")
    with open(path, "rb") as f:
        head = f.read(512)
    is_container = _looks_like_video_container(head)
    if head[4:8] == b"ftyp":
        overrun = _isobmff_overrun(path, size)
        if overrun:
            raise Rejected("truncated", overrun)

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise Rejected("corrupt" if is_container else "not_a_video", f"cannot open container: {e}") from e

    with container:
        fmt = container.format.name
        if fmt in ("image2", "tty") or fmt.endswith("_pipe"):
            raise Rejected("not_a_video", f"container format {fmt!r} is a still image or text")
        vstreams = container.streams.video
        astreams = container.streams.audio
        if not vstreams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise Rejected("no_video_stream", f"streams present: {', '.join(kinds)}")
        vs = vstreams[0]
        declared = float(container.duration / av.time_base) if container.duration else None
        if vs.duration and vs.time_base:
            declared = max(declared or 0.0, float(vs.duration * vs.time_base))

        # Demux every video packet (no decoding: cheap) to learn the real extent of the data.
        n_packets, n_bytes, last_end, first_pts = 0, 0, 0.0, None
        try:
            for pkt in container.demux(vs):
                if pkt.size == 0 or pkt.pts is None:
                    continue
                n_bytes += pkt.size
                t = float(pkt.pts * pkt.time_base)
                first_pts = t if first_pts is None else min(first_pts, t)
                last_end = max(last_end, t + float((pkt.duration or 0) * pkt.time_base))
                n_packets += 1
        except av.error.FFmpegError as e:
            raise Rejected("corrupt", f"demux failed after {n_packets} packets: {e}") from e
        if n_packets == 0:
            raise Rejected("corrupt" if declared else "not_a_video", "no video packets")
        extent = last_end - (first_pts or 0.0)
        if declared and extent < 0.9 * declared - 1.0:
            raise Rejected("truncated", f"packets cover {extent:.2f}s of a declared {declared:.2f}s")
        duration = extent if extent > 0 else (declared or 0.0)

        # Decode a few frames at the start and the middle: catches corrupt codec data.
        rotation = _check_decodes(path, duration)

        if duration < min_duration_s:
            raise Rejected("too_short", f"duration {duration:.2f}s < {min_duration_s:.1f}s")

        fps = float(vs.average_rate) if vs.average_rate else (n_packets / duration if duration else 0.0)
        bitrate = vs.codec_context.bit_rate or 0
        if not bitrate and duration > 0:
            # Streams without a bitrate tag: video bits over time, from the demuxed packets.
            bitrate = int(n_bytes * 8 / duration)
        a = astreams[0] if astreams else None
        width, height = vs.codec_context.width, vs.codec_context.height
        if rotation in (90, 270):  # a phone video stored sideways: the size as displayed
            width, height = height, width
        return VideoProbe(
            sha256=sha256_file(path),
            size_bytes=size,
            container=fmt,
            duration_s=round(duration, 4),
            fps=fps,
            n_frames=vs.frames or n_packets,
            width=width,
            height=height,
            video_codec=vs.codec_context.name,
            video_bitrate=int(bitrate),
            has_audio=a is not None,
            audio_codec=a.codec_context.name if a else None,
            audio_rate=a.codec_context.sample_rate if a else None,
            audio_channels=a.codec_context.channels if a else None,
        )


def _check_decodes(path: Path, duration: float, frames_per_probe: int = 3) -> int:
    """Raise ``corrupt`` unless frames decode at the start and the middle; returns the display
    rotation of the first frame (see assets.vision.decode.display_rotation)."""
    rotation = 0
    points = [0.0] + ([duration / 2] if duration > 2 else [])
    for t in points:
        try:
            with av.open(str(path)) as c:
                vs = c.streams.video[0]
                if t > 0:
                    c.seek(int(t / vs.time_base), stream=vs, backward=True)
                got = 0
                for frame in c.decode(vs):
                    frame.to_ndarray(format="gray")
                    if t == 0 and got == 0:
                        rotation = display_rotation(frame)
                    got += 1
                    if got >= frames_per_probe:
                        break
        except av.error.FFmpegError as e:
            raise Rejected("corrupt", f"frames at {t:.1f}s do not decode: {e}") from e
        if got == 0:
            raise Rejected("corrupt", f"no decodable frame at {t:.1f}s")
    return rotation
