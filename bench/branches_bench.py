"""Benchmark of the branch SQL (sql/branches.sql) at SpeakerVid-5M scale: 5.2 M clips over
153 K source videos.

Builds (once, reused when present) a synthetic lake holding the tables the branches read:
``clips`` (85 % talking clips, one per diarized turn; 40 % monologue videos, half of the other turns
continuing the same speaker's floor, so the dialogue branch is paper-like: ~0.8 M pairs, 3-14 s averaging ~6 s, with ~50
characters of ASR text; 15 % listening clips over the partner's turn), ``clip_tiers``
(~12 % rejected, ~11 % sft), ``speaker_turns`` (the two main speakers alternate, a reply
every ~1 s with some overlaps, one backchannel in 20 turns), ``video_speakers`` (two main speakers, a third minor one in 5 %
of videos), ``bindings`` (one main speaker unbound in 10 % of videos) and
``speaker_assignments`` (83 K speaker ids, 2 % of units without one). Then it times, in a
fresh process, what the ``branches`` asset computes: the DuckDB connection with its views,
sql/branches.sql, the test split's draw, and the six branch tables as Polars frames; and
reads that process's peak RSS.

    python -m bench.branches_bench [--lake /tmp/branches-bench-lake] [--videos 153000]

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
VIDEOS = 153_000
CLIPS_PER_VIDEO = 34  # 5.2 M / 153 K
CHUNK_VIDEOS = 30_000
SPEAKERS = 83_000


def _chunk(rng: np.random.Generator, first: int, n_videos: int) -> dict[str, pl.DataFrame]:
    """Every table's rows for videos ``first .. first + n_videos``."""
    vids = np.arange(first, first + n_videos)
    video_names = pl.Series([f"{v:016x}" for v in vids])
    n_turns = rng.poisson(CLIPS_PER_VIDEO * 0.85, n_videos).clip(2)
    n = int(n_turns.sum())
    video = np.repeat(np.arange(n_videos), n_turns)
    offset = np.repeat(np.cumsum(n_turns) - n_turns, n_turns)
    turn_id = (np.arange(n) - offset).astype(np.int32)
    # speakers alternate; half the turns continue the same floor (a pause in one reply); 40 % of
    # videos are monologues (SpeakerVid-5M: 770 K dialogue pairs beside 5.2 M clips)
    mono = np.repeat(rng.random(n_videos) < 0.4, n_turns)
    switch = ((rng.random(n) >= 0.5) & ~mono) | (turn_id == 0)
    cum = np.cumsum(switch)
    spk = (cum - np.repeat(cum[np.cumsum(n_turns) - n_turns], n_turns)) % 2
    duration = np.clip(3 + rng.gamma(2.0, 1.5, n), 3, 14)
    gap = rng.exponential(1.0, n) - 0.3
    step = duration + gap
    total = np.cumsum(step)
    start = total - step - np.repeat(np.concatenate([[0.0], total[np.cumsum(n_turns)[:-1] - 1]]), n_turns)  # from each video's start
    start = np.round(np.maximum(start, 0.0), 2)
    end = start + duration
    video_ids = video_names.gather(video)
    local = pl.Series(np.where(spk == 0, "SPEAKER_00", "SPEAKER_01"))
    turns = pl.DataFrame({"video_id": video_ids, "turn_id": turn_id, "speaker_local": local, "start": start, "end": end, "overlap": gap < 0})
    # one backchannel (the other speaker, 0.5 s inside the turn) every 20 turns
    bc = rng.random(n) < 0.05
    back = pl.DataFrame({
        "video_id": video_ids.filter(bc), "turn_id": (turn_id[bc] + 10_000).astype(np.int32),
        "speaker_local": pl.Series(np.where(spk[bc] == 0, "SPEAKER_01", "SPEAKER_00")),
        "start": start[bc] + 1.0, "end": start[bc] + 1.5, "overlap": True,
    })
    speaker_id = (vids[:, None] * 2 + np.arange(2)[None, :]) * 2654435761 % SPEAKERS
    has_id = rng.random((n_videos, 2)) >= 0.02
    ids = np.where(has_id, np.char.add("spk_", speaker_id.astype(str)), None)
    clip_speaker = ids[video, spk]
    text = pl.Series(["words words words of a reply that runs on for a while"] * n)
    talking = pl.DataFrame({
        "clip_id": video_ids + "_t" + pl.Series(spk).cast(pl.String) + "_" + pl.Series((start * 1000).astype(np.int64)).cast(pl.String),
        "video_id": video_ids, "track_id": spk.astype(np.int32), "speaker_id": pl.Series(clip_speaker, dtype=pl.String),
        "speaker_local": local, "identity_unit": local, "start_seconds": start, "end_seconds": end, "duration": duration,
        "is_talking": True, "turn_id": turn_id, "text": text,
    })
    # listening clips: the partner's face over 18 % of the turns (15 % of all clips)
    li = rng.random(n) < 0.18
    other = 1 - spk[li]
    listening = pl.DataFrame({
        "clip_id": video_ids.filter(li) + "_t" + pl.Series(other + 2).cast(pl.String) + "_" + pl.Series((start[li] * 1000).astype(np.int64)).cast(pl.String),
        "video_id": video_ids.filter(li), "track_id": (other + 2).astype(np.int32), "speaker_id": pl.Series(ids[video[li], other], dtype=pl.String),
        "speaker_local": pl.Series(np.where(other == 0, "SPEAKER_00", "SPEAKER_01")),
        "identity_unit": pl.Series(np.where(other == 0, "SPEAKER_00", "SPEAKER_01")),
        "start_seconds": start[li], "end_seconds": end[li], "duration": duration[li], "is_talking": False,
        "listening_kind": pl.Series(np.where(rng.random(int(li.sum())) < 0.7, "co_present", "not_co_present")), "partner_speaker_local": local.filter(li),
    })
    clips = pl.concat([conform("clips", talking), conform("clips", listening)])
    u = rng.random(clips.height)
    tiers = clips.select("clip_id", "video_id", "speaker_id", "is_talking", "duration").with_columns(
        tier=pl.Series(np.where(u < 0.12, "rejected", np.where(u < 0.23, "sft", "pretrain"))),
        reasons=pl.lit([], pl.List(pl.String)), sft_missed=pl.lit([], pl.List(pl.String)),
    )
    is_mono = mono[np.cumsum(n_turns) - n_turns]
    main = pl.DataFrame({
        "video_id": pl.concat([video_names, video_names]), "speaker_local": ["SPEAKER_00"] * n_videos + ["SPEAKER_01"] * n_videos,
        "is_main": np.concatenate([np.ones(n_videos, bool), ~is_mono]), "share": 0.45,
    })
    minor_v = video_names.filter(pl.Series(rng.random(n_videos) < 0.05))
    speakers = pl.concat([main, pl.DataFrame({"video_id": minor_v, "speaker_local": "SPEAKER_02", "is_main": False, "share": 0.1})])
    unbound = rng.random(n_videos) < 0.1
    # a monologue's second speaker never speaks: not main (video_speakers) and bound to nothing
    bindings = main.select("video_id", "speaker_local").with_columns(
        track_id=pl.Series(np.concatenate([np.where(unbound, -1, 0), np.where(is_mono, -1, 1)])).cast(pl.Int32)
    ).with_columns(pl.when(pl.col("track_id") >= 0).then(pl.col("track_id")).alias("track_id"))
    assignments = pl.DataFrame({
        "video_id": pl.concat([video_names, video_names]), "unit": ["SPEAKER_00"] * n_videos + ["SPEAKER_01"] * n_videos,
        "speaker_id": pl.Series(np.concatenate([ids[:, 0], ids[:, 1]]), dtype=pl.String),
    }).drop_nulls("speaker_id")
    return {
        "clips": clips, "clip_tiers": conform("clip_tiers", tiers), "speaker_turns": conform("speaker_turns", pl.concat([turns, back])),
        "video_speakers": conform("video_speakers", speakers), "bindings": conform("bindings", bindings), "speaker_assignments": conform("speaker_assignments", assignments),
    }


def build(lake: str, videos: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for first in range(0, videos, CHUNK_VIDEOS):
        tables = _chunk(rng, first, min(CHUNK_VIDEOS, videos - first))
        for table, df in tables.items():
            write_deltalake(lake_io.table_uri(table, lake), df.to_arrow(), mode="append")
        print(f"built videos {first}..{first + CHUNK_VIDEOS} ({tables['clips'].height} clips)", file=sys.stderr)


def measure(lake: str) -> dict:
    """In this (fresh) process: time the branches and read the peak RSS."""
    from assets.branches.branches import BRANCH_TABLES, branch_rows, draw_split
    start, cpu_start = time.perf_counter(), cpu_seconds()
    con = lake_io.duckdb_connection(lake)
    clips = con.execute("SELECT count(*) FROM clips").fetchone()[0]
    split = draw_split(con)
    rows = {}
    for name in BRANCH_TABLES:  # as the asset: one output table in memory at a time
        rows[name] = branch_rows(con, name).height
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    return {"clips": clips, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_gb": peak_rss_gb(),
            "rows": rows, "test_pairs": split.pairs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", default="/tmp/branches-bench-lake")
    ap.add_argument("--videos", type=int, default=VIDEOS)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    lake = lake_io.lake_uri(a.lake)
    if a.measure:
        print(json.dumps(measure(lake)))
        return
    ensure_lake(lake, lambda: build(lake, a.videos))
    r, load_start = measure_in_fresh_process("bench.branches_bench", lake)
    rows = ", ".join(f"{t} {n:,}" for t, n in r["rows"].items())
    print(f"| branch SQL (sql/branches.sql → Polars) | {r['clips']:,} clips | {r['seconds']:.2f} s | {r['cpu_seconds']:.2f} s | {r['peak_rss_gb']:.2f} GB | {rows} | {os.cpu_count()} cores, load {load_start:.2f} |")
    assert r["seconds"] <= MAX_SECONDS, f"branch SQL took {r['seconds']:.1f} s (limit {MAX_SECONDS} s)"
    assert r["peak_rss_gb"] <= MAX_RSS_GB, f"peak RSS {r['peak_rss_gb']:.2f} GB (limit {MAX_RSS_GB} GB)"


if __name__ == "__main__":
    main()
