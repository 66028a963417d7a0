"""clip_quality stage time against the decode floor (one full PyAV decode of the same video).

    python bench/quality_rtf.py --lake /path/to/lake [--repeats 2] [--videos conv_a,mono]

For every video of a lake that went through vision and audio: the stage's ``analyze_clips``
on the lake's ``clips`` rows (when the clips stage has run; otherwise hand-made clips: every
face track cut into 3-14 s pieces with its person box, as tests/test_quality.py does), and
in the same process a full decode of the video to BGR frames (assets.vision.decode.iter_frames,
the vision stage's decode). Reported per video: clips, stage seconds, seconds per clip,
stage ÷ duration (issue 17's budget: clips + quality at most 0.08x real time on 2 cores) and
decode floor ÷ duration. Each time is the minimum over ``--repeats`` passes (shared machine).
Models: the default backends (BRISQUE, Farneback flow, measured captions), loaded before timing.
"""

from __future__ import annotations

import argparse
import time

import polars as pl

from assets.quality.measures import brisque_model
from assets.quality.params import QualityParams
from assets.quality.pipeline import analyze_clips
from assets.vision.decode import iter_frames
from orchestration import lake
from orchestration.tables import TABLES


def clips_from_tracks(tracks: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for r in tracks.iter_rows(named=True):
        t = r["start"]
        while r["end"] - t >= 3.0:
            d = min(14.0, r["end"] - t)
            rows.append({"clip_id": f"{r['video_id']}_{r['track_id']}_{int(t * 1000)}", "video_id": r["video_id"], "track_id": r["track_id"],
                         "start_seconds": t, "end_seconds": t + d, "is_talking": True, "bbox": r["person_box"], "shot_id": r["shot_id"]})
            t += d
    spec = TABLES["clips"]
    given = pl.DataFrame(rows, schema={c: spec.schema[c] for c in rows[0]}) if rows else spec.empty()
    return spec.conform(given.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in spec.schema.items() if c not in given.columns))


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", required=True)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--videos", default="", help="comma-separated file stems (default: all)")
    args = ap.parse_args()
    params = QualityParams.from_thresholds()
    brisque_model()
    videos = lake.read("videos", args.lake).sort("source_uri")
    tables = {t: lake.read(t, args.lake) for t in ("clips", "face_tracks", "transcripts")}
    wanted = set(filter(None, args.videos.split(",")))
    tot = {"dur": 0.0, "q": 0.0, "dec": 0.0, "clips": 0}
    print("| video | duration s | clips | quality s | s/clip | quality ÷ duration | decode floor s | decode ÷ duration | quality ÷ decode |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in videos.iter_rows(named=True):
        stem = v["source_uri"].rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if wanted and stem not in wanted:
            continue
        t = {k: df.filter(pl.col("video_id") == v["video_id"]) for k, df in tables.items()}
        clips = t["clips"] if t["clips"].height else clips_from_tracks(t["face_tracks"])
        with lake.local_copy(v["raw_uri"]) as path:
            q, out = best(lambda: analyze_clips(v, path, clips, t["face_tracks"], t["transcripts"], params=params), args.repeats)
            dec, _ = best(lambda: sum(1 for _ in iter_frames(path)), args.repeats)
        dur = v["duration_s"]
        n = max(1, out.height)
        print(f"| {stem} | {dur:.1f} | {out.height} | {q:.2f} | {q / n:.3f} | {q / dur:.4f} | {dec:.2f} | {dec / dur:.4f} | {q / dec:.2f} |")
        tot["dur"] += dur
        tot["q"] += q
        tot["dec"] += dec
        tot["clips"] += out.height
    if tot["dur"]:
        print(f"| all | {tot['dur']:.1f} | {tot['clips']} | {tot['q']:.2f} | {tot['q'] / max(1, tot['clips']):.3f} | {tot['q'] / tot['dur']:.4f} | {tot['dec']:.2f} | {tot['dec'] / tot['dur']:.4f} | {tot['q'] / tot['dec']:.2f} |")


if __name__ == "__main__":
    main()
