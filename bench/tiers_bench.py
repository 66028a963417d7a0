"""Benchmark of the tier SQL (sql/tiers.sql) at SpeakerVid-5M scale: 5.2 M clips.

Builds (once, reused when present) a synthetic lake holding only ``clips`` and
``clip_quality`` Delta tables with paper-like distributions (3-14 s clips averaging about
6 s, ~35 clips per source video, clarity per source video, mostly English, 15 % listening
clips, no hand visible in 40 %), then times the tier decision in a fresh process — the
connection with its views, the SQL, and the result as a Polars frame (what the
``clip_tiers`` asset writes) — and reads that process's peak RSS.

    python -m bench.tiers_bench [--lake /tmp/tiers-bench-lake] [--clips 5200000]

Asserts at most 10 s and 4 GB and prints one markdown table row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import polars as pl
from deltalake import write_deltalake

from bench.synthetic import conform, cpu_seconds, ensure_lake, measure_in_fresh_process, peak_rss_gb
from orchestration import lake as lake_io

MAX_SECONDS = 10.0
MAX_RSS_GB = 4.0
CLIPS_PER_VIDEO = 35
CHUNK = 1_000_000


def _chunk(rng: np.random.Generator, first_video: int, n_videos: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Clips and their quality rows for ``n_videos`` source videos."""
    per_video = rng.poisson(CLIPS_PER_VIDEO, n_videos).clip(1)
    n = int(per_video.sum())
    video = np.repeat(np.arange(first_video, first_video + n_videos), per_video)
    video_ids = pl.Series([f"{v:016x}" for v in range(first_video, first_video + n_videos)]).gather(video - first_video)
    duration = np.clip(3 + rng.gamma(2.0, 1.5, n), 3, 14)
    # clips of a video follow each other (one every ~15 s), so (video, track, start ms) ids are unique
    in_video = np.arange(n) - np.repeat(np.cumsum(per_video) - per_video, per_video)
    start = in_video * 15.0 + rng.uniform(0, 1, n)
    talking = rng.random(n) < 0.85
    box = rng.uniform(0.05, 0.45, (n, 4)).astype(np.float32)
    clip_ids = video_ids + "_" + pl.Series(np.arange(n) % 4).cast(pl.String) + "_" + pl.Series((start * 1000).astype(np.int64)).cast(pl.String)
    asr_null = ~talking & (rng.random(n) < 0.5)
    clips = pl.DataFrame({
        "clip_id": clip_ids,
        "video_id": video_ids,
        "track_id": (np.arange(n) % 4).astype(np.int32),
        "speaker_id": "spk_" + pl.Series(video % 83_000).cast(pl.String),
        "identity_unit": "S0",
        "start_seconds": start,
        "end_seconds": start + duration,
        "duration": duration,
        "is_talking": talking,
        "bbox": pl.Series(box).cast(pl.List(pl.Float32)),
        "raw_video_width": np.int32(1920),
        "raw_video_height": np.int32(1080),
        "language": np.where(rng.random(n) < 0.96, "en", "es"),
        "language_prob": rng.beta(20, 1, n),
        "avg_logprob": np.where(asr_null, np.nan, rng.normal(-0.45, 0.35, n)),
        "no_speech_prob": np.where(asr_null, np.nan, rng.beta(1, 12, n)),
        "compression_ratio": np.where(asr_null, np.nan, rng.normal(1.6, 0.3, n)),
    }).with_columns(pl.col("avg_logprob", "no_speech_prob", "compression_ratio").fill_nan(None))
    clarity_per_video = rng.lognormal(-2.5, 0.8, n_videos)
    hand = rng.random(n) < 0.6
    quality = pl.DataFrame({
        "clip_id": clip_ids,
        "video_id": video_ids,
        "n_frames_sampled": np.int32(8),
        "luminance": rng.normal(115, 40, n),
        "clarity": clarity_per_video[video - first_video],
        "visual_quality": rng.beta(5, 3, n),
        "face_blur": rng.beta(4, 2, n),
        "hands_visible": hand,
        "hand_blur": np.where(hand, rng.beta(3, 2, n), np.nan),
        "motion_score": rng.integers(1, 6, n).astype(np.int32),
    }).with_columns(pl.col("hand_blur").fill_nan(None))
    # 0.1 % of clips have no quality row (no_quality)
    quality = quality.filter(pl.Series(rng.random(n) >= 0.001))
    return conform("clips", clips), conform("clip_quality", quality)


def build(lake: str, clips: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    videos = clips // CLIPS_PER_VIDEO
    per_chunk = CHUNK // CLIPS_PER_VIDEO
    for first in range(0, videos, per_chunk):
        c, q = _chunk(rng, first, min(per_chunk, videos - first))
        for table, df in (("clips", c), ("clip_quality", q)):
            write_deltalake(lake_io.table_uri(table, lake), df.to_arrow(), mode="append")
        print(f"built videos {first}..{first + per_chunk} ({c.height} clips)", file=sys.stderr)


def measure(lake: str) -> dict:
    """In this (fresh) process: time the tier decision and read the peak RSS."""
    from assets.tiers.tiers import clip_tiers
    start, cpu_start = time.perf_counter(), cpu_seconds()
    con = lake_io.duckdb_connection(lake)
    tiers = clip_tiers(con)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    counts = dict(tiers.group_by("tier").len().iter_rows())
    return {"clips": tiers.height, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_gb": peak_rss_gb(), "tiers": counts}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", default="/tmp/tiers-bench-lake")
    ap.add_argument("--clips", type=int, default=5_200_000)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    lake = lake_io.lake_uri(a.lake)
    if a.measure:
        print(json.dumps(measure(lake)))
        return
    ensure_lake(lake, lambda: build(lake, a.clips))
    r, load_start = measure_in_fresh_process("bench.tiers_bench", lake)
    share = {t: f"{n / r['clips']:.1%}" for t, n in sorted(r["tiers"].items())}
    print(f"| tier SQL (sql/tiers.sql → Polars) | {r['clips']:,} clips | {r['seconds']:.2f} s | {r['cpu_seconds']:.2f} s | {r['peak_rss_gb']:.2f} GB | {share} | {os.cpu_count()} cores, load {load_start:.2f} |")
    assert r["seconds"] <= MAX_SECONDS, f"tier SQL took {r['seconds']:.1f} s (limit {MAX_SECONDS} s)"
    assert r["peak_rss_gb"] <= MAX_RSS_GB, f"peak RSS {r['peak_rss_gb']:.2f} GB (limit {MAX_RSS_GB} GB)"


if __name__ == "__main__":
    main()
