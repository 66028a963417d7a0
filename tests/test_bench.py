"""`make bench` is a benchmark, not a timed test: CI only checks that it runs on a tiny input
and reports every figure of issue 22 (bench/run.py). The fixed-cost part launches four
`speakerlake run` processes, which the CLI tests already cover; it is left out here."""

from __future__ import annotations

import re

from bench import run as bench_run
from bench.incremental import clone_batches
from orchestration import lake
from orchestration.tables import TABLES


def test_bench_reports_every_figure_on_a_tiny_input(tmp_path, demo_corpus_dir, shipped_models):
    from tests.media_factory import reencode

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("conv_a", "conv_b"):  # two different files: the incremental run adds one to clones of the other
        reencode(demo_corpus_dir / f"{name}.mp4", corpus / f"{name}.mp4", seconds=3.0, audio_wav=demo_corpus_dir / f"{name}.mp4")
    out = tmp_path / "benchmarks.md"
    out.write_text("# kept above\n\n## a measured section that must survive\n")
    text = bench_run.main(
        ["--corpus", str(corpus), "--out", str(out), "--min-minutes", "0", "--incremental-batches", "2", "--repeats", "1", "--skip", "fixed_cost"]
    )
    written = out.read_text()
    assert text.strip() in written and "## a measured section that must survive" in written
    targets = dict(re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| ≤ [\d.]+ \| (?:yes|\*\*no\*\*) \|$", text, re.M))
    assert any(k.startswith("whole pipeline") for k in targets)
    assert any(k.startswith("vision stage ÷ decoding") for k in targets)
    assert any(k.startswith("audio stage ÷ the ASR model alone") for k in targets)
    assert any(k.startswith("incremental: one video onto 2 batches") for k in targets)
    assert all(float(v) > 0 for v in targets.values())
    assert "| asr model alone | total |" in text
    assert re.search(r"Devices: GPU: (none found .*everything ran on the CPU|\S+)", text)


def test_cloned_batches_are_new_videos_speakers_and_batches(clean_lake, tmp_path):
    """The incremental benchmark's full lake: every clone is a distinct video, batch and speaker
    to every key (the catalogue's keys stay unique) and no clone shares an id with the seed."""
    seed_videos = set(lake.read("videos", clean_lake)["video_id"])
    target = str(tmp_path / "full")
    clone_batches(clean_lake, target, 3)
    videos = lake.read("videos", target)
    assert videos.height == 3 * len(seed_videos) and not seed_videos & set(videos["video_id"])
    assert videos["sha256"].n_unique() == videos.height and lake.read("batch_files", target)["batch_id"].n_unique() == 3
    for name, spec in TABLES.items():
        if lake.table_exists(name, target):
            df = lake.read(name, target)
            assert df.select(spec.key).is_duplicated().sum() == 0, name
            assert df.height == 3 * lake.count(name, clean_lake), name
