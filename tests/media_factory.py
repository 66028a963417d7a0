"""Build ingest test inputs from real shipped media: good videos and one file per reject kind."""

from __future__ import annotations

import shutil
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
