"""Benchmark: every stage's time as a ratio measured in the same run.

For each video of a corpus it measures, in one process:
- the time to decode the same media (all video frames to BGR with PyAV; the audio to 16 kHz mono),
- each stage's time (audio: VAD, diarization, ASR; vision: shots, detection, tracking,
  landmarks, ArcFace; binding: sync, assignment, identity, listening; clips: its own audio
  decode, spans, text, person boxes and lip sync over each clip),
and reports stage ÷ decode and the real-time factor (stage seconds ÷ media seconds).
Model loading is reported separately (it happens once per worker process).

    python -m bench.run --corpus data/demo --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import polars as pl


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    def __init__(self):
        self.rows: list[dict] = []

    def timed(self, video: str, stage: str, step: str, fn, *args, **kwargs):
        w0, c0 = time.perf_counter(), _cpu()
        out = fn(*args, **kwargs)
        self.add(video, stage, step, time.perf_counter() - w0, _cpu() - c0)
        return out

    def add(self, video: str, stage: str, step: str, wall: float, cpu: float | None = None):
        self.rows.append({"video": video, "stage": stage, "step": step, "wall_s": wall, "cpu_s": cpu})


def decode_video_frames(path: Path) -> int:
    n = 0
    with av.open(str(path)) as c:
        c.streams.video[0].thread_type = "AUTO"
        for f in c.decode(video=0):
            f.to_ndarray(format="bgr24")
            n += 1
    return n


def bench_video(path: Path, clock: Clock, models) -> dict:
    from assets.audio.decode import decode_audio
    from assets.audio.pipeline import analyze_audio
    from assets.binding.pipeline import BindingStats, analyze_binding
    from assets.vision.pipeline import VisionStats, analyze_video

    vid = path.stem
    with av.open(str(path)) as c:
        duration = float(c.duration / av.time_base)
    n_frames = clock.timed(vid, "decode", "video frames (PyAV, BGR)", decode_video_frames, path)
    audio = clock.timed(vid, "decode", "audio (PyAV, 16 kHz mono)", decode_audio, path)

    w0, c0 = time.perf_counter(), _cpu()
    audio_tables = analyze_audio(vid, path, models.audio)
    clock.add(vid, "audio", "total", time.perf_counter() - w0, _cpu() - c0)
    for step in ("decode", "vad", "diarization", "asr"):
        clock.add(vid, "audio", step, audio_tables.timings.get(step, 0.0))

    v_stats = VisionStats()
    w0, c0 = time.perf_counter(), _cpu()
    vision_tables = analyze_video(vid, path, models.faces, stats=v_stats)
    clock.add(vid, "vision", "total", time.perf_counter() - w0, _cpu() - c0)
    n = max(v_stats.n_frames, 1)
    for step, ms in v_stats.per_frame_ms().items():
        if step != "total":
            clock.add(vid, "vision", step, ms * n / 1000.0)

    b_stats = BindingStats()
    tables = {**audio_tables, **vision_tables}
    w0, c0 = time.perf_counter(), _cpu()
    binding = analyze_binding(vid, audio if isinstance(audio, np.ndarray) else None, tables, stats=b_stats, media_path=path)
    clock.add(vid, "binding", "total", time.perf_counter() - w0, _cpu() - c0)
    for step in ("sync", "bind", "identity", "listening"):
        clock.add(vid, "binding", step, getattr(b_stats, step))
    clock.timed(vid, "clips", "total", run_clips, vid, path, {**tables, **binding})
    return {"video": vid, "duration_s": duration, "frames": n_frames}


def run_clips(vid: str, path: Path, tables: dict):
    """The clips stage as its asset runs it: its own audio decode, then `analyze_clips`
    (no dataset-wide speaker ids in the benchmark)."""
    from assets.audio.decode import decode_audio
    from assets.clips.pipeline import analyze_clips
    from orchestration.tables import TABLES

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        video = {"video_id": vid, "fps": float(s.average_rate or 25), "width": s.width, "height": s.height}
    audio = decode_audio(path)
    return analyze_clips(video, {**tables, "speaker_assignments": TABLES["speaker_assignments"].empty()}, audio if isinstance(audio, np.ndarray) else None, media_path=path)


def concurrent_pass(paths: list[Path], models) -> float:
    """Wall seconds for the whole pipeline with the audio and vision stages of each video
    running at the same time (two threads: their model kernels release the GIL), the way a
    2-core worker overlaps the two independent Dagster assets. Models are already loaded."""
    from concurrent.futures import ThreadPoolExecutor

    from assets.audio.decode import decode_audio
    from assets.audio.pipeline import analyze_audio
    from assets.binding.pipeline import analyze_binding
    from assets.vision.pipeline import analyze_video

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for path in paths:
            fa = pool.submit(analyze_audio, path.stem, path, models.audio)
            fv = pool.submit(analyze_video, path.stem, path, models.faces)
            audio = decode_audio(path)
            tables = {**fa.result(), **fv.result()}
            binding = analyze_binding(path.stem, audio if isinstance(audio, np.ndarray) else None, tables, media_path=path)
            run_clips(path.stem, path, {**tables, **binding})
    return time.perf_counter() - t0


def report(videos: list[dict], clock: Clock, load_s: dict[str, float], concurrent_s: float | None = None) -> str:
    df = pl.DataFrame(clock.rows)
    media_s = sum(v["duration_s"] for v in videos)
    agg = df.group_by("stage", "step", maintain_order=True).agg(pl.col("wall_s").sum(), pl.col("cpu_s").sum())
    dec_video = agg.filter((pl.col("stage") == "decode") & pl.col("step").str.starts_with("video"))["wall_s"].item()
    dec_audio = agg.filter((pl.col("stage") == "decode") & pl.col("step").str.starts_with("audio"))["wall_s"].item()
    lines = [
        "# speakerlake benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), load average at start {os.getloadavg()[0]:.2f}; "
        f"{len(videos)} videos, {media_s:.1f} s of media, {sum(v['frames'] for v in videos)} frames.",
        "Ratios are taken within this one run: *÷ decode* divides by the time to decode the same media "
        "(video frames for vision and binding, audio for the audio stage); *RTF* divides by the media duration.",
        "",
        "| stage | step | wall s | CPU s | ÷ decode | RTF |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in agg.iter_rows(named=True):
        base = dec_audio if r["stage"] == "audio" else dec_video
        cpu = "" if not r["cpu_s"] else f"{r['cpu_s']:.2f}"
        ratio = "" if r["stage"] == "decode" else f"{r['wall_s'] / base:.1f}×"
        lines.append(f"| {r['stage']} | {r['step']} | {r['wall_s']:.2f} | {cpu} | {ratio} | {r['wall_s'] / media_s:.3f} |")
    totals = agg.filter(pl.col("step") == "total")
    pipeline = float(totals["wall_s"].sum())
    pipeline_cpu = float(totals["cpu_s"].sum())
    lines += [
        "",
        f"Whole pipeline, stages one after another: {pipeline:.1f} s wall for {media_s:.1f} s of media = "
        f"{pipeline / media_s:.3f}× real time (CPU {pipeline_cpu / media_s:.3f}× of one core).",
        "",
    ]
    if concurrent_s is not None:
        lines += [
            f"**Whole pipeline with audio ∥ vision on 2 cores (measured in this run): {concurrent_s:.1f} s for "
            f"{media_s:.1f} s of media = {concurrent_s / media_s:.3f}× real time** (target ≤ 0.25×).",
            "",
        ]
    lines += [
        "Model loading (once per process): " + ", ".join(f"{k} {v:.1f} s" for k, v in load_s.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def load_models() -> SimpleNamespace:
    """Every model, loaded once from the settings in the environment (`.env`), as the stage assets do at setup."""
    from assets.audio.pipeline import load_audio_models
    from assets.vision.pipeline import load_vision_models
    from orchestration.resources import models_from_env

    settings = models_from_env(resolved=True)
    return SimpleNamespace(audio=load_audio_models(settings.audio()), faces=load_vision_models(settings.face_model_dir))


# `make bench` rewrites only its own block of docs/benchmarks.md; the measured sections after
# it (one per issue: audio RTF, tier and branch SQL at scale, ...) are kept.
GENERATED_START = "<!-- generated by `make bench` (bench/run.py): edits between these markers are overwritten -->"
GENERATED_END = "<!-- end of the generated block -->"


def write_generated(path: Path, text: str) -> None:
    block = f"{GENERATED_START}\n{text.rstrip()}\n{GENERATED_END}\n"
    old = path.read_text() if path.exists() else ""
    if GENERATED_START in old and GENERATED_END in old:
        head, rest = old.split(GENERATED_START, 1)
        tail = rest.split(GENERATED_END, 1)[1].lstrip("\n")
        new = head + block + ("\n" + tail if tail else "")
    else:
        new = block + ("\n" + old if old else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--out", default="docs/benchmarks.md")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    videos = sorted(Path(args.corpus).glob("*.mp4"))
    clock = Clock()
    # Warm-up: one untimed pass over the first video loads every model (cached per process),
    # so the measured passes exclude model loading.
    t0 = time.perf_counter()
    models = load_models()
    bench_video(videos[0], Clock(), models)
    load = {"warm-up pass incl. model loading": time.perf_counter() - t0}
    results = [bench_video(v, clock, models) for v in videos]
    concurrent_s = concurrent_pass(videos, models)
    text = report(results, clock, load, concurrent_s)
    write_generated(Path(args.out), text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"videos": results, "rows": clock.rows}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
