"""The whole pipeline on real media: every table filled, a rerun changes nothing, and a run
killed mid-batch (SIGKILL) then rerun ends with the same tables as an uninterrupted run.
(``inbox`` and ``clean_lake`` are session fixtures in conftest, shared with tests/test_clips.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from assets.ingest.planning import planned_batches
from orchestration import lake
from orchestration.batch import PER_VIDEO_STAGES
from orchestration.tables import TABLES

REPO = Path(__file__).resolve().parent.parent
# Columns that legitimately differ between two lakes or two runs.
# every table a per-video (model) stage writes
PER_VIDEO_TABLES = {"speech_segments", "speaker_turns", "video_speakers", "transcripts", "asr_coverage", "shots", "face_tracks", "sync_scores", "bindings", "track_identities", "identity_units", "listening_segments", "clips", "clip_quality"}
VOLATILE = {"ingested_at", "rejected_at", "discovered_at", "completed_at", "updated_at", "batch_id", "raw_uri"}


def snapshot(lake_uri: str) -> dict[str, pl.DataFrame]:
    out = {}
    for name, spec in TABLES.items():
        df = lake.read(name, lake_uri)
        df = df.drop([c for c in df.columns if c in VOLATILE])
        keys = [k for k in spec.key if k in df.columns] or [c for c in df.columns if not isinstance(df.schema[c], pl.List)]
        out[name] = df.sort(keys)
    return out


def assert_same_tables(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in TABLES:
        # Float tolerance: multi-threaded model kernels may differ in the last bits between runs.
        assert_frame_equal(a[name], b[name], check_exact=False, rel_tol=1e-3, abs_tol=1e-3), name


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestration.cli", *args], cwd=REPO, env=env or dict(os.environ), **kw)


def test_every_table_filled(clean_lake):
    counts = {t: lake.count(t, clean_lake) for t in TABLES}
    # the demo corpus's people are still photographs whose mouths move with their voice: every
    # clip has motion_score 1, and SFT needs motion_score > 2 (the paper's rule), so no demo
    # clip is SFT; the SFT path is tested on synthetic rows (tests/test_tiers.py). conv_a's
    # turns are cut below 3 s by overlaps and shots except one: no pair, listening clip or chain,
    # and no test split; tests/test_branches.py fills those on conv_b + conv_long.
    # vidchat_scores / vidchat_summary are written only when predictions are scored (job score_predictions, tests/test_vidchat.py),
    # takedowns only by `speakerlake takedown` (tests/test_operations.py)
    empty_ok = {"rejects", "takedowns", "sft_subset", "dialogue_pairs", "listening_pairs", "multi_turn_context", "multi_turn_chains", "vidchat_testset", "vidchat_scores", "vidchat_summary"}
    assert all(n > 0 for t, n in counts.items() if t not in empty_ok), {t: n for t, n in counts.items() if n == 0}  # the empty ones
    assert lake.read("batch_status", clean_lake)["stage"].to_list() == ["ingest"]
    st = lake.read("stage_status", clean_lake)
    assert st.height == 2 * (len(PER_VIDEO_STAGES) + 1) and set(st["status"]) == {"ok"}  # 2 videos x per-video stages + speaker_ids
    videos = lake.read("videos", clean_lake)
    bikes = videos.filter(pl.col("source_uri").str.ends_with("bikes.mp4"))["video_id"][0]
    rejects = lake.read("rejects", clean_lake)
    assert rejects.select("video_id", "stage", "reason").rows() == [(bikes, "audio", "no_audio_stream")]
    for t in ("speech_segments", "speaker_turns", "transcripts", "sync_scores", "bindings", "listening_segments"):
        assert lake.read(t, clean_lake, video_ids=[bikes]).is_empty(), t
    ti = lake.read("track_identities", clean_lake, video_ids=[bikes])
    assert ti.height == lake.read("face_tracks", clean_lake, video_ids=[bikes]).height
    assert ti["speaker_local"].null_count() == ti.height  # no voice to bind a face to
    assert lake.read("shots", clean_lake, video_ids=[bikes]).height >= 1


def test_duckdb_agrees_with_deltalake_on_every_table(clean_lake):
    """Guard against silent wrong results in the query layer (duckdb-delta #303/#304)."""
    con = lake.duckdb_connection(clean_lake)
    for name in TABLES:
        assert con.sql(f"SELECT count(*) FROM {name}").fetchone()[0] == lake.count(name, clean_lake), name
    # A join users run: speaking seconds per dataset-wide speaker.
    rows = con.sql(
        """SELECT ts.speaker_id, sum(t."end" - t.start) AS s
           FROM speaker_turns t JOIN (SELECT DISTINCT video_id, speaker_local, speaker_id FROM track_speakers) ts USING (video_id, speaker_local)
           WHERE ts.speaker_id IS NOT NULL GROUP BY 1"""
    ).fetchall()
    assert rows and all(s > 0 for _, s in rows)


def test_rerun_changes_nothing(clean_lake, inbox):
    before = snapshot(clean_lake)
    # Force the batch to run again: drop its per-video status, as a run that crashed before writing it would leave it.
    lake.delete_where("stage_status", "true", clean_lake)
    p = _cli("run", str(inbox), "--lake", clean_lake, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-4000:]
    assert "1 to run" in out
    assert_same_tables(before, snapshot(clean_lake))


def test_killed_run_then_rerun_equals_clean_run(clean_lake, inbox, tmp_path, shipped_models):
    uri = str(tmp_path / "lake")
    p = _cli("run", str(inbox), "--lake", uri, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill it hard once the audio stage has committed and the vision stage is still working.
    deadline = time.time() + 600
    while not lake.table_exists("speaker_turns", uri):
        assert p.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not lake.table_exists("listening_segments", uri), "killed too late to test recovery"

    p = _cli("run", str(inbox), "--lake", uri, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = p.communicate(timeout=900)
    assert p.returncode == 0, out[-4000:]
    assert_same_tables(snapshot(clean_lake), snapshot(uri))
    # the killed run no longer shows as running: the rerun marked it failed
    import dagster as dg

    from orchestration.launch import ACTIVE

    with dg.DagsterInstance.get() as instance:
        (batch,) = planned_batches(uri)
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": batch}))
        assert len(runs) == 2 and not [r for r in runs if r.status in ACTIVE], [(r.run_id, r.status) for r in runs]


def test_retiering_the_pipeline_lake_by_editing_thresholds_runs_no_model(clean_lake, tmp_path):
    """Issue 17: on a lake the real pipeline made, editing thresholds.csv and running the
    ``retier`` job re-cuts the tiers (and what is built on them) in seconds; no model asset runs."""
    import shutil

    import dagster as dg

    from assets.tiers.assets import RETIER_JOB
    from orchestration.definitions import build_defs
    from orchestration.resources import LakeResource, ThresholdsResource
    from orchestration.thresholds import THRESHOLDS_CSV

    uri = str(tmp_path / "lake")
    shutil.copytree(clean_lake, uri)
    before = lake.read("clip_tiers", uri)
    assert before.height > 0 and set(before["tier"]) <= {"pretrain", "rejected"}  # demo people are photographs: motion 1, no SFT
    edited = tmp_path / "thresholds.csv"
    text = THRESHOLDS_CSV.read_text()
    for name, value in (("sft_motion_score_min", "0"), ("sft_face_blur_min", "0.0"), ("sft_visual_quality_min", "0.0"), ("sft_hand_blur_min", "0.0"), ("sft_avg_logprob_min", "-99")):
        line = next(x for x in text.splitlines() if x.startswith(name + ","))
        text = text.replace(line, ",".join([name, value, *line.split(",")[2:]]))
    edited.write_text(text)
    job = build_defs("in_process", resources={"lake": LakeResource(location=uri), "thresholds": ThresholdsResource(path=str(edited))}).resolve_job_def(RETIER_JOB)
    start = time.perf_counter()
    run = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    seconds = time.perf_counter() - start
    assert run.success
    materialized = {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()}
    assert materialized.isdisjoint({*PER_VIDEO_TABLES, "speakers", "speaker_assignments", "videos"}), materialized
    assert {"clip_tiers", "sft_subset"} <= materialized
    after = lake.read("clip_tiers", uri)
    kept = before.filter(pl.col("tier") == "pretrain")["clip_id"].sort().to_list()
    assert sorted(after.filter(pl.col("tier") == "sft")["clip_id"].to_list()) == kept  # every kept clip missed only SFT rules, all lowered now
    assert lake.count("sft_subset", uri) == len(kept)
    assert seconds < 60, seconds


def test_dataset_tables_are_fresh_after_a_run_and_stale_after_a_batch_write(clean_lake, tmp_path):
    """`speakerlake run` recomputes the dataset-wide tables after its batches; a lake where a
    batch wrote later (a run that died before job retier) is stale, so the next run refreshes it."""
    import shutil

    from assets.tiers.assets import dataset_stale

    assert not dataset_stale(clean_lake)
    uri = str(tmp_path / "lake")
    shutil.copytree(clean_lake, uri)
    quality = lake.read("clip_quality", uri)
    lake.write("clip_quality", quality, video_ids=quality["video_id"].unique().to_list(), lake=uri)
    assert dataset_stale(uri)
