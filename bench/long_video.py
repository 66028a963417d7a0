"""Peak memory and real-time factor of the per-video stages on 10, 30 and 120 minutes of conversation.

    python -m bench.long_video --corpus data/demo --work /tmp/long-bench \
        [--runs audio:10,30,120 vision:10,30 binding:10,30] [--out docs/benchmarks.md]

Inputs: the demo conversation videos (conv_a, conv_b, conv_long: 640x360, 25 fps, h264 + AAC)
appended whole, in turn, until the length is reached, by remuxing their packets with shifted
timestamps (no re-encode: a 2-hour input is built in seconds). Each input is kept in ``--work``
and reused by later runs.

Every (stage, input) runs in its own process under ``nice -n 10`` (the machine is shared): the
process loads the stage's models through the stage's own ``setup_*`` function (the one its
Dagster asset calls, with the models resource from the environment), warms up on conv_a, then
calls the returned ``analyze(video, path)`` on the long input, timed, and writes the tables to a
work lake (untimed), where binding reads its upstream tables as in a pipeline run. Peak RSS is the
largest of the child's own high-water mark (``ru_maxrss``, which includes model loading) and the
resident memory of the child and its children polled every 0.2 s. RTF = analyze wall seconds ÷
media seconds; CPU RTF = the process's CPU seconds over the same span ÷ media seconds.

``--out`` rewrites the section between the ``long-video benchmark`` markers of that markdown
file (appended when missing); the rest of the file is left alone. ``--report A.json B.json``
only writes that section from the ``--json`` files of runs made separately (e.g. in parallel,
each with its own ``--work``: binding needs audio and vision of the same input in its work lake).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SOURCES = ("conv_a", "conv_b", "conv_long")
STAGES = ("audio", "vision", "binding")
BEGIN = "<!-- long-video benchmark (bench/long_video.py --out): edits between these markers are overwritten -->"
END = "<!-- end of the long-video benchmark -->"
JOIN_GAP_S = 0.1  # seconds between appended sources


# --------------------------------------------------------------------------- inputs
def write_long_video(corpus: Path, minutes: float, out: Path) -> list[str]:
    """``out``: the conversation videos appended whole, in turn, to at least ``minutes``.

    Packets are copied with their timestamps shifted by the length of what came before (every
    source has the same codecs and parameters), so nothing is re-encoded. Returns the sources
    in order."""
    import av

    paths = [corpus / f"{name}.mp4" for name in SOURCES]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"{missing} missing: build the demo corpus first (make corpus)")
    order: list[str] = []
    offset = end = 0.0
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(paths[0])) as first, av.open(str(tmp), "w") as dst:
        video = dst.add_stream_from_template(first.streams.video[0])
        audio = dst.add_stream_from_template(first.streams.audio[0])
        while offset < minutes * 60:
            src = paths[len(order) % len(paths)]
            with av.open(str(src)) as c:
                targets = {c.streams.video[0].index: video, c.streams.audio[0].index: audio}
                for packet in c.demux(c.streams.video[0], c.streams.audio[0]):
                    if packet.dts is None:  # the demuxer's end-of-stream flush packet
                        continue
                    shift = int(round(offset / packet.time_base))
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    end = max(end, float((max(packet.pts, packet.dts) + packet.duration) * packet.time_base))
                    packet.stream = targets[packet.stream.index]
                    dst.mux(packet)
            # the next source starts after the last packet of either stream, leaving room for its
            # negative start times (B-frame reordering, AAC priming: < 0.1 s), so times only grow
            offset = end + JOIN_GAP_S
            order.append(src.stem)
    tmp.rename(out)
    return order


def long_input(corpus: Path, work: Path, minutes: float) -> tuple[Path, list[str]]:
    path = work / f"conversation_{minutes:g}min.mp4"
    manifest = path.with_suffix(".json")
    if not (path.exists() and manifest.exists()):
        order = write_long_video(corpus, minutes, path)
        manifest.write_text(json.dumps(order))
    return path, json.loads(manifest.read_text())


def media_seconds(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return c.duration / av.time_base


# --------------------------------------------------------------------------- one stage, one input (child)
def stage_analyze(stage: str, lake_uri: str, videos):
    """The stage's ``analyze(video, path)`` from the same setup function its asset calls."""
    from orchestration.resources import models_from_env

    models = models_from_env(resolved=True)
    if stage == "audio":
        from assets.audio.assets import setup_audio as setup
    elif stage == "vision":
        from assets.vision.assets import setup_vision as setup
    else:
        from assets.binding.assets import setup_binding as setup
    return setup(models, lake_uri, videos)


def child(stage: str, video: Path, video_id: str, lake_uri: str, warmup: Path | None) -> dict:
    import polars as pl
    import psutil

    from orchestration import lake

    rows = [{"video_id": video_id, "fps": 25.0}]
    if warmup is not None:
        rows.append({"video_id": "warmup", "fps": 25.0})
    analyze = stage_analyze(stage, lake_uri, pl.DataFrame(rows))
    if warmup is not None:
        analyze(rows[1], warmup)
    rss_ready = psutil.Process().memory_info().rss
    wall, cpu = time.perf_counter(), time.process_time()
    tables = analyze(rows[0], video)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for name, df in tables.items():
        lake.write(name, df, video_ids=[video_id], lake=lake_uri)
    seconds = media_seconds(video)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    return {
        "stage": stage, "media_s": round(seconds, 2), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
        "rtf": wall / seconds, "cpu_rtf": cpu / seconds, "rss_ready_mb": rss_ready / 2**20, "ru_maxrss_mb": maxrss / 2**20,
        "rows": {name: df.height for name, df in tables.items()},
    }  # fmt: skip


# --------------------------------------------------------------------------- parent
def run_child(stage: str, video: Path, video_id: str, lake_uri: str, warmup: Path | None) -> dict:
    """One child process under ``nice -n 10``; its result plus the polled peak RSS of its tree."""
    import psutil

    cmd = ["nice", "-n", "10", sys.executable, "-m", "bench.long_video", "child", stage, str(video), video_id, lake_uri]
    cmd += [str(warmup)] if warmup else []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0]

    def poll() -> None:
        p = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]))
            except psutil.Error:
                pass
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, _ = proc.communicate()
    poller.join()
    if proc.returncode:
        raise RuntimeError(f"{stage} on {video.name} exited with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["polled_peak_mb"] = peak[0] / 2**20
    result["peak_rss_mb"] = max(result["polled_peak_mb"], result["ru_maxrss_mb"])
    return result


def parse_runs(specs: list[str]) -> list[tuple[str, float]]:
    """``["audio:10,30", "binding:10"]`` -> [(audio, 10), (audio, 30), (binding, 10)], stages in pipeline order."""
    runs = []
    for spec in specs:
        stage, _, minutes = spec.partition(":")
        if stage not in STAGES:
            raise SystemExit(f"unknown stage {stage!r} (one of {STAGES})")
        runs += [(stage, float(m)) for m in minutes.split(",") if m]
    return sorted(runs, key=lambda r: (r[1], STAGES.index(r[0])))


def markdown(results: list[dict], measured: str) -> str:
    lines = [
        BEGIN,
        "## Long videos: peak memory and RTF against length",
        "",
        f"Measured {measured} UTC by `bench/long_video.py` (`make bench-long`) on {os.cpu_count()} cores shared with other engineers' "
        "jobs, every run under `nice -n 10`, so wall-clock RTF depends on their load (1-minute load average at the end of each run in "
        "the last column) and CPU RTF (process CPU seconds ÷ media seconds) is the figure to compare across lengths. "
        "Inputs: conv_a, conv_b and conv_long (640x360, 25 fps) appended whole, in turn, by remuxing. "
        "One process per stage and input: models loaded by the stage's `setup_*` function, a warm-up on conv_a (audio and vision), then the stage's "
        "`analyze` on the input. Peak RSS is the process's whole high-water mark, model loading included; "
        "*ready* is the resident memory after the warm-up, so peak − ready is what the long video added.",
        "",
        "| stage | minutes | media s | wall s | CPU s | RTF | CPU RTF | RSS ready MB | peak RSS MB | peak − ready MB | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(results, key=lambda r: (STAGES.index(r["stage"]), r["minutes"])):
        lines.append(
            f"| {r['stage']} | {r['minutes']:g} | {r['media_s']:.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['rtf']:.3f} | {r['cpu_rtf']:.3f} "
            f"| {r['rss_ready_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_ready_mb']:.0f} | {r['load_avg'][0]:.1f} |"
        )
    lines += ["", *growth_lines(results), END]
    return "\n".join(lines) + "\n"


def growth_lines(results: list[dict]) -> list[str]:
    """Per stage: RTF and CPU RTF of the longest input against the shortest, and RSS per minute."""
    out = []
    for stage in STAGES:
        rs = sorted((r for r in results if r["stage"] == stage), key=lambda r: r["minutes"])
        if len(rs) < 2:
            continue
        a, b = rs[0], rs[-1]
        per_min = (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["minutes"] - a["minutes"])
        out.append(
            f"* **{stage}**, {a['minutes']:g} → {b['minutes']:g} min: RTF ×{b['rtf'] / a['rtf']:.2f}, CPU RTF ×{b['cpu_rtf'] / a['cpu_rtf']:.2f}; "
            f"peak RSS {a['peak_rss_mb']:.0f} → {b['peak_rss_mb']:.0f} MB ({per_min:+.1f} MB per minute of video)."
        )
    return out


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        stage, video, video_id, lake_uri, *warm = sys.argv[2:]
        print(json.dumps(child(stage, Path(video), video_id, lake_uri, Path(warm[0]) if warm else None)), flush=True)
        return
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", default="data/demo")
    p.add_argument("--work", default="/tmp/speakerlake-long-bench", help="long inputs (reused) and the work lake")
    p.add_argument("--runs", nargs="+", default=["audio:10,30,120", "vision:10,30", "binding:10,30"], help="stage:minutes,...")
    p.add_argument("--out", default="", help="markdown file whose long-video section is rewritten")
    p.add_argument("--json", default="", help="also write the results here")
    p.add_argument("--report", nargs="+", default=[], help="write --out from these --json files only (no runs)")
    a = p.parse_args()
    if a.report:
        results = [r for f in a.report for r in json.loads(Path(f).read_text())]
        stamps = sorted(datetime.fromtimestamp(Path(f).stat().st_mtime, timezone.utc) for f in a.report)
        measured = f"{stamps[0]:%Y-%m-%d}, runs ending {stamps[0]:%H:%M}-{stamps[-1]:%H:%M}"
        for line in growth_lines(results):
            print(line)
        if a.out:
            write_section(Path(a.out), markdown(results, measured))
        return
    corpus, work = Path(a.corpus), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    lake_uri = str(work / "lake")
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")
    results = []
    for stage, minutes in parse_runs(a.runs):
        video, _ = long_input(corpus, work, minutes)
        warmup = corpus / f"{SOURCES[0]}.mp4" if stage != "binding" else None
        try:
            r = {"minutes": minutes, **run_child(stage, video, f"long_{minutes:g}min", lake_uri, warmup), "load_avg": os.getloadavg()}
        except RuntimeError as e:  # reported; the other runs still go
            print(f"FAILED: {e}", flush=True)
            continue
        print(json.dumps(r), flush=True)
        results.append(r)
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=1))
    for line in growth_lines(results):
        print(line)
    if a.out:
        write_section(Path(a.out), markdown(results, f"from {started}"))


if __name__ == "__main__":
    main()
