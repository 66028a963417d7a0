"""Benchmark: every figure of issue 22 measured side by side in one run.

On a batch of at least ``--min-minutes`` of talking video (the corpus' videos, cycled), in one
process, per video:
- the time to decode the same media (all video frames to BGR with PyAV; the audio to 16 kHz mono),
- each stage's time (audio: VAD, diarization, ASR; vision: shots, detection, tracking,
  landmarks, ArcFace; binding: sync, assignment, identity, listening; clips: its own audio
  decode, spans, text, person boxes and lip sync over each clip),
- the ASR model alone on the same audio (faster-whisper with its own VAD: bench/audio_rtf.py),
and reports stage ÷ decode, audio stage ÷ ASR model alone and the real-time factor (stage
seconds ÷ media seconds). Then:
- the whole pipeline with audio ∥ vision on the machine's cores (the batch's real-time factor),
- the fixed cost: `speakerlake run` on one short video, multiprocess against in-process, and
  each step's start-up (bench/fixed_cost.py),
- the incremental cost: one video added to a lake of ``--incremental-batches`` batches against
  an empty lake (bench/incremental.py),
- which device each model ran on (CUDA when present, else CPU, and the report says which).
Model loading is reported separately (it happens once per worker process).

    python -m bench.run --corpus data/demo --out docs/benchmarks.md
    python -m bench.run --corpus DIR --min-minutes 0 --incremental-batches 3 --skip fixed_cost --out X.md   # tiny (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import polars as pl

from bench.fixed_cost import measure_fixed_cost
from bench.incremental import measure_incremental, process_cpu_seconds
from orchestration.resources import models_from_env


class Clock:
    def __init__(self):
        self.rows: list[dict] = []

    def timed(self, video: str, stage: str, step: str, fn, *args, **kwargs):
        w0, c0 = time.perf_counter(), process_cpu_seconds()
        out = fn(*args, **kwargs)
        self.add(video, stage, step, time.perf_counter() - w0, process_cpu_seconds() - c0)
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


def bench_video(path: Path, clock: Clock, models, video_name: str | None = None) -> dict:
    from assets.audio.decode import decode_audio
    from assets.audio.pipeline import analyze_audio, asr_params
    from assets.binding.pipeline import BindingStats, analyze_binding
    from assets.vision.pipeline import VisionStats, analyze_video
    from bench.audio_rtf import asr_model_alone

    vid = video_name or path.stem
    with av.open(str(path)) as c:
        duration = float(c.duration / av.time_base)
    n_frames = clock.timed(vid, "decode", "video frames (PyAV, BGR)", decode_video_frames, path)
    audio = clock.timed(vid, "decode", "audio (PyAV, 16 kHz mono)", decode_audio, path)

    w0, c0 = time.perf_counter(), process_cpu_seconds()
    audio_tables = analyze_audio(vid, path, models.audio)
    clock.add(vid, "audio", "total", time.perf_counter() - w0, process_cpu_seconds() - c0)
    for step in ("decode", "vad", "diarization", "asr"):
        clock.add(vid, "audio", step, audio_tables.timings.get(step, 0.0))
    if isinstance(audio, np.ndarray) and len(audio):
        clock.timed(vid, "asr model alone", "total", asr_model_alone, audio, models.audio, asr_params(models.audio.settings.asr_language))

    v_stats = VisionStats()
    w0, c0 = time.perf_counter(), process_cpu_seconds()
    vision_tables = analyze_video(vid, path, models.faces, stats=v_stats)
    clock.add(vid, "vision", "total", time.perf_counter() - w0, process_cpu_seconds() - c0)
    n = max(v_stats.n_frames, 1)
    for step, ms in v_stats.per_frame_ms().items():
        if step != "total":
            clock.add(vid, "vision", step, ms * n / 1000.0)

    b_stats = BindingStats()
    tables = {**audio_tables, **vision_tables}
    w0, c0 = time.perf_counter(), process_cpu_seconds()
    binding = analyze_binding(vid, audio if isinstance(audio, np.ndarray) else None, tables, stats=b_stats, media_path=path)
    clock.add(vid, "binding", "total", time.perf_counter() - w0, process_cpu_seconds() - c0)
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


def report(
    videos: list[dict],
    clock: Clock,
    load_s: dict[str, float],
    concurrent_s: float | None = None,
    fixed=None,
    incremental=None,
    devices: list[tuple[str, str]] = (),
    cores: int | None = None,
    load_average: float = float("nan"),  # 1-minute load average when the bench started
) -> str:
    df = pl.DataFrame(clock.rows)
    media_s = sum(v["duration_s"] for v in videos)
    agg = df.group_by("stage", "step", maintain_order=True).agg(pl.col("wall_s").sum(), pl.col("cpu_s").sum())

    def total(stage: str, step: str = "total") -> float:
        hit = agg.filter((pl.col("stage") == stage) & (pl.col("step").str.starts_with(step)))["wall_s"]
        return float(hit.sum()) if len(hit) else float("nan")

    dec_video, dec_audio = total("decode", "video"), total("decode", "audio")
    lines = [
        "# speakerlake benchmark",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}), load average at start {load_average:.2f}; "
        f"{len(videos)} videos, {media_s:.1f} s of media ({media_s / 60:.1f} min), {sum(v['frames'] for v in videos)} frames.",
        "Ratios are taken within this one run: *÷ decode* divides by the time to decode the same media "
        "(video frames for vision and binding, audio for the audio stage); *RTF* divides by the media duration.",
        "",
    ]
    targets = []
    if concurrent_s is not None:
        targets.append((f"whole pipeline, audio ∥ vision on {cores or os.cpu_count()} cores, batch of {media_s / 60:.1f} min (RTF)", concurrent_s / media_s, 0.25))
    targets += [
        ("vision stage ÷ decoding the same frames", total("vision") / dec_video, 3.0),
        ("audio stage ÷ the ASR model alone on the same audio", total("audio") / total("asr model alone"), 1.5),
    ]
    if fixed is not None:
        multi, single = fixed
        targets.append(("fixed cost: `speakerlake run` multiprocess ÷ `--in-process`, one short video", min(r.wall_s for r in multi) / min(r.wall_s for r in single), 1.5))
    if incremental is not None:
        targets.append((f"incremental: one video onto {incremental.n_batches} batches ÷ onto an empty lake (CPU s)", incremental.ratio, 1.2))
    lines += ["| figure | measured | target | met |", "|---|---:|---:|---|"]
    for name, value, limit in targets:
        lines.append(f"| {name} | {value:.3f} | ≤ {limit:g} | {'yes' if value <= limit else '**no**'} |")
    lines += ["", "| stage | step | wall s | CPU s | ÷ decode | RTF |", "|---|---|---:|---:|---:|---:|"]
    for r in agg.iter_rows(named=True):
        base = dec_audio if r["stage"] in ("audio", "asr model alone") else dec_video
        cpu = "" if not r["cpu_s"] else f"{r['cpu_s']:.2f}"
        ratio = "" if r["stage"] == "decode" else f"{r['wall_s'] / base:.1f}×"
        lines.append(f"| {r['stage']} | {r['step']} | {r['wall_s']:.2f} | {cpu} | {ratio} | {r['wall_s'] / media_s:.3f} |")
    stages = agg.filter((pl.col("step") == "total") & (pl.col("stage") != "asr model alone"))
    pipeline = float(stages["wall_s"].sum())
    pipeline_cpu = float(stages["cpu_s"].sum())
    lines += [
        "",
        f"Whole pipeline, stages one after another: {pipeline:.1f} s wall for {media_s:.1f} s of media = "
        f"{pipeline / media_s:.3f}× real time (CPU {pipeline_cpu / media_s:.3f}× of one core).",
        "",
    ]
    if concurrent_s is not None:
        lines += [
            f"Whole pipeline with audio ∥ vision (two threads, models loaded): {concurrent_s:.1f} s for "
            f"{media_s:.1f} s of media = {concurrent_s / media_s:.3f}× real time, "
            f"{media_s / concurrent_s:.1f} video hours per machine hour.",
            "",
        ]
    if fixed is not None:
        multi, single = fixed
        lines += [
            "Fixed cost (bench/fixed_cost.py; fresh lake and instance per run, minimum over runs): "
            f"multiprocess {min(r.wall_s for r in multi):.1f} s (batch run {min(r.batch_s for r in multi):.1f} s, "
            f"retier {min(r.retier_s for r in multi):.1f} s) against in-process {min(r.wall_s for r in single):.1f} s "
            f"(batch run {min(r.batch_s for r in single):.1f} s, retier {min(r.retier_s for r in single):.1f} s).",
            "Step start-up in the multiprocess run (process asked for → step code starts; the first one "
            "includes the forkserver importing the step libraries): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(multi[0].step_startup_s.items(), key=lambda kv: -kv[1]))
            + ".",
            "",
        ]
    if incremental is not None:
        lines += [
            f"Incremental cost (bench/incremental.py; process_batch in-process, models loaded; wall / CPU s per run): one new video onto "
            f"an empty lake {', '.join(f'{w:.1f}/{c:.1f}' for w, c in zip(incremental.empty_s, incremental.empty_cpu_s))}, onto {incremental.n_batches} batches "
            f"({incremental.files_in_full_lake} data files) {', '.join(f'{w:.1f}/{c:.1f}' for w, c in zip(incremental.full_s, incremental.full_cpu_s))}; "
            f"wall ratio {incremental.wall_ratio:.2f}. "
            f"The dataset-wide job retier, which reads every clip by design: {incremental.retier_empty_s:.1f} s "
            f"on the one-batch lake, {incremental.retier_full_s:.1f} s on the full one.",
            "",
        ]
    if devices:
        lines += ["Devices: " + "; ".join(f"{k}: {v}" for k, v in devices) + ".", ""]
    lines += [
        "Model loading (once per process): " + ", ".join(f"{k} {v:.1f} s" for k, v in load_s.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def device_report(models) -> list[tuple[str, str]]:
    """Where each model runs: CUDA when present (tested by each stage's selection logic), else
    the CPU; the report says so rather than leaving it to be guessed."""
    import onnxruntime as ort
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    asr = models.audio.asr.model.model  # ctranslate2 Whisper
    rows = [
        ("GPU", gpu or "none found (torch sees no CUDA device; onnxruntime offers " + ", ".join(ort.get_available_providers()) + "): everything ran on the CPU"),
        ("VAD (silero, onnxruntime)", "CPU (by design: it is 2 % of the audio stage)"),
        ("diarization (torch)", models.audio.device),
        ("ASR (CTranslate2)", f"{asr.device} {asr.compute_type}"),
        ("faces (onnxruntime)", models.faces.providers[0]),
    ]
    return rows


def load_models() -> SimpleNamespace:
    """Every model, loaded once from the settings in the environment (`.env`), as the stage assets do at setup."""
    from assets.audio.pipeline import load_audio_models
    from assets.vision.pipeline import load_vision_models

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


def batch_of(videos: list[Path], min_minutes: float) -> list[tuple[str, Path]]:
    """The corpus' videos, cycled until at least ``min_minutes`` (every video at least once);
    repeats get their own names."""
    out: list[tuple[str, Path]] = []
    seconds = 0.0
    while not out or seconds < min_minutes * 60 or len(out) < len(videos):
        path = videos[len(out) % len(videos)]
        k = len(out) // len(videos)
        out.append((path.stem if k == 0 else f"{path.stem}~{k}", path))
        with av.open(str(path)) as c:
            seconds += float(c.duration / av.time_base)
    return out


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument("--min-minutes", type=float, default=10.0, help="batch size: the corpus is cycled until at least this much video")
    p.add_argument("--fixed-cost-video", default="conv_b", help="corpus video (stem) for the fixed-cost runs")
    p.add_argument("--incremental-batches", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats of the fixed and incremental cost runs")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out: fixed_cost, incremental")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    corpus = Path(args.corpus)
    videos = sorted(corpus.glob("*.mp4"))
    batch = batch_of(videos, args.min_minutes)
    load_average = os.getloadavg()[0]  # before the bench's own threads run
    clock = Clock()
    # Warm-up: one untimed pass over the first video loads every model (cached per process),
    # so the measured passes exclude model loading.
    t0 = time.perf_counter()
    models = load_models()
    bench_video(videos[0], Clock(), models)
    load = {"warm-up pass incl. model loading": time.perf_counter() - t0}
    results = [bench_video(path, clock, models, name) for name, path in batch]
    concurrent_s = concurrent_pass([path for _, path in batch], models)
    fixed = incremental = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one = corpus / f"{args.fixed_cost_video}.mp4"
        if not one.exists():
            one = videos[0]
        sources = {}
        for name, path in (("seed", videos[-1] if len(videos) > 1 else videos[0]), ("one", one)):
            sources[name] = tmp / name
            sources[name].mkdir()
            shutil.copyfile(path, sources[name] / path.name)
        if "fixed_cost" not in skip:
            fixed = measure_fixed_cost(sources["one"], repeats=args.repeats, workdir=tmp)
        if "incremental" not in skip:
            resources = {"models": models_from_env(resolved=True)}
            incremental = measure_incremental(sources["seed"], sources["one"], resources, n_batches=args.incremental_batches, repeats=args.repeats, workdir=tmp)
    text = report(results, clock, load, concurrent_s, fixed, incremental, device_report(models), load_average=load_average)
    write_generated(Path(args.out), text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"videos": results, "rows": clock.rows}, indent=1))
    print(text)
    return text


if __name__ == "__main__":
    main()
