"""Build ingest test inputs from real shipped media: good videos and one file per reject kind."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from demo import media


def reencode(src: Path, dst: Path, *, seconds: float | None = None, audio_wav: Path | None = None, fps: int = 25) -> Path:
    """Re-encode (a prefix of) a real clip with PyAV, optionally muxing real speech."""
    frames = []
    with av.open(str(src)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
    n = len(frames) if seconds is None else int(seconds * fps)
    h, w = frames[0].shape[:2]
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        astream = out.add_stream("aac", rate=16000, layout="mono") if audio_wav else None
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(frames[i % len(frames)][: vs.height, : vs.width], format="rgb24")
            for p in vs.encode(fr):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if astream is not None:
            with av.open(str(audio_wav)) as a:
                resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
                total = 0
                for fr in a.decode(audio=0):
                    for r in resampler.resample(fr):
                        if total >= n / fps * 16000:
                            break
                        total += r.samples
                        for p in astream.encode(r):
                            out.mux(p)
            for p in astream.encode():
                out.mux(p)
    return dst


def audio_only(dst: Path) -> Path:
    """Real speech in an .mp4 container with no video stream."""
    wav = media.pyannote_sample()["wav"]
    with av.open(str(wav)) as a, av.open(str(dst), "w", format="mp4") as out:
        s = out.add_stream("aac", rate=16000, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=16000)
        for fr in a.decode(audio=0):
            for r in resampler.resample(fr):
                for p in s.encode(r):
                    out.mux(p)
        for p in s.encode():
            out.mux(p)
    return dst


def build_ingest_inputs(root: Path) -> dict[str, Path]:
    """Two good videos plus one file per reject kind, in ``root``. Returns name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    carphone = media.carphone()
    files: dict[str, Path] = {}
    files["good_talking"] = reencode(carphone, root / "talking.mp4", audio_wav=media.pyannote_sample()["wav"])
    files["good_bikes"] = root / "bikes.mp4"
    shutil.copyfile(carphone.parent / "bikes.mp4", files["good_bikes"])

    data = files["good_talking"].read_bytes()
    files["empty_file"] = root / "empty.mp4"
    files["empty_file"].write_bytes(b"")
    files["truncated"] = root / "truncated.mp4"
    files["truncated"].write_bytes(data[: len(data) // 2])
    # Overwrite the start of the movie header: the ftyp signature survives, the box structure does not.
    corrupt = bytearray(data)
    rng = np.random.default_rng(7)
    corrupt[32:4096] = rng.integers(0, 256, 4096 - 32, dtype=np.uint8).tobytes()
    files["corrupt"] = root / "corrupt.mp4"
    files["corrupt"].write_bytes(bytes(corrupt))
    files["not_a_video"] = root / "notes.mp4"
    files["not_a_video"].write_text("speaker list for tuesday's interview, not a video\n" * 20)
    files["no_video_stream"] = audio_only(root / "voice_only.mp4")
    files["too_short"] = reencode(carphone, root / "short.mp4", seconds=2.0)
    return files


# Expected reject reason of every bad input above.
REJECT_KINDS = ["empty_file", "truncated", "corrupt", "not_a_video", "no_video_stream", "too_short"]


# ---------------------------------------------------------------- hard-to-decode inputs (issue 21)
def _frames(src: Path, seconds: float) -> tuple[list[np.ndarray], float]:
    """The BGR frames of the first ``seconds`` of ``src`` and its frame rate."""
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate)
        out = []
        for f in c.decode(stream):
            if f.time >= seconds:
                break
            out.append(f.to_ndarray(format="bgr24"))
    return out, fps


def _encode(dst: Path, frames: list[np.ndarray], times: list[float], *, fps: float, rotation: int = 0) -> Path:
    """H.264 (ultrafast) of BGR ``frames`` shown at ``times`` (s): any timing, variable or not;
    ``rotation``: the display matrix (counterclockwise degrees) players apply."""
    import cv2

    h, w = frames[0].shape[:2]
    tb = Fraction(1, 1000)
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000), options={"preset": "ultrafast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.time_base = tb
        if rotation:
            vs.set_display_rotation(rotation)
        for img, t in zip(frames, times):
            # 4:2:0 made by OpenCV: swscale's RGB->YUV at 8K costs about a second a frame
            fr = av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
            fr.pts, fr.time_base = int(round(t / tb)), tb
            for p in vs.encode(fr):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return dst


def upscaled(src: Path, dst: Path, *, size: tuple[int, int], seconds: float, fps: float) -> Path:
    """The first ``seconds`` of ``src`` at ``fps``, scaled up to ``size`` (e.g. 7680x4320) by
    swscale straight from the decoded 4:2:0 frames (no full-size BGR copy: fast enough for CI)."""
    w, h = size
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        step = max(1, int(round(float(stream.average_rate) / fps)))
        vs = out.add_stream("libx264", rate=Fraction(stream.average_rate) / step, options={"preset": "ultrafast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i, f in enumerate(inp.decode(stream)):
            if f.time >= seconds:
                break
            if i % step == 0:
                big = f.reformat(width=w, height=h, format="yuv420p")
                big.pts, big.time_base = i // step, step / Fraction(stream.average_rate)
                for p in vs.encode(big):
                    out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return dst


def rotated(src: Path, dst: Path, *, seconds: float) -> Path:
    """A phone-style file: ``src``'s frames stored turned a quarter counterclockwise (on their
    side), with a display matrix turning them back (-90: clockwise), as phones record portrait."""
    frames, fps = _frames(src, seconds)
    stored = [np.ascontiguousarray(np.rot90(f)) for f in frames]
    return _encode(dst, stored, [i / fps for i in range(len(stored))], fps=fps, rotation=-90)


def variable_rate(first: Path, second: Path, dst: Path, *, cut_s: float, dense_until_s: float, sparse_fps: float, seconds: float) -> Path:
    """Variable frame rate: ``first`` until ``cut_s`` then ``second`` (a hard cut at a known
    time), every source frame until ``dense_until_s``, then only ``sparse_fps`` frames a second.
    Each frame keeps the time it has in its source, so only the timestamps say when it shows."""
    a, fps = _frames(first, seconds)
    b, _ = _frames(second, seconds)
    step = int(round(fps / sparse_fps))
    keep = [i for i in range(min(len(a), len(b))) if i / fps < dense_until_s or i % step == 0]
    frames = [a[i] if i / fps < cut_s else b[i] for i in keep]
    times = [i / fps for i in keep]
    return _encode(dst, frames, times, fps=len(frames) / seconds)


def delayed_audio(src: Path, dst: Path, *, delay_s: float, seconds: float) -> Path:
    """``src``'s first ``seconds`` with its audio stream starting ``delay_s`` later than the
    video (packets remuxed with shifted timestamps, nothing re-encoded)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        iv, ia = inp.streams.video[0], inp.streams.audio[0]
        ov, oa = out.add_stream_from_template(iv), out.add_stream_from_template(ia)
        for p in inp.demux(iv, ia):
            if p.dts is None:
                continue
            t = float(p.pts * p.time_base)
            if p.stream is iv:
                if t >= seconds:
                    continue
                p.stream = ov
            else:
                if t + delay_s >= seconds:
                    continue
                shift = int(round(delay_s / p.time_base))
                p.pts, p.dts = p.pts + shift, p.dts + shift
                p.stream = oa
            out.mux(p)
    return dst


def single_frame(src: Path, dst: Path) -> Path:
    frames, fps = _frames(src, 1.0)
    return _encode(dst, frames[:1], [0.0], fps=fps)


def near_black(src: Path, dst: Path, *, seconds: float, gain: float = 0.03) -> Path:
    """``src``'s frames at ``gain`` of their brightness (a lens cap, a dark room): real
    content down at a few grey levels."""
    frames, fps = _frames(src, seconds)
    dark = [(f.astype(np.float32) * gain).round().astype(np.uint8) for f in frames]
    return _encode(dst, dark, [i / fps for i in range(len(dark))], fps=fps)
