"""Two batches at once on a two-worker Dask cluster over an S3 lake (moto), launched the way a
deployment launches them: through the Dagster instance and the workspace's code location,
each run in its own process, every step on a Dask worker process."""

from __future__ import annotations

import os
import shutil
import time

import polars as pl

from assets.binding.assets import SPEAKER_IDS_STAGE
from assets.ingest.planning import plan_batches
from orchestration import lake
from orchestration.batch import PER_VIDEO_STAGES, progress
from orchestration.checks import key_check_results
from orchestration.cli import _instance
from orchestration.execution import execution_config
from orchestration.launch import workspace_launcher
from orchestration.partitions import ingest_batches
from orchestration.sensors import PROCESS_JOB
from orchestration.tables import TABLES
from tests.conftest import _use_s3
from tests.media_factory import reencode

# each batch: the first seconds of a real video of the demo corpus (conv_a: a two-shot where
# both speak, then one of them; mono: one lecturer) and a file ingest must reject. The test is
# about where the steps run and what they write, not about the footage: 8 s each is enough to
# fill every table in FILLED.
BATCH_FILES = {"a": ("conv_a", "empty_file"), "b": ("mono", "not_a_video")}
DEMO_SECONDS = 8.0
REJECTED = {"a": "empty_file", "b": "not_a_video"}
HOLDER = "test-holds-the-speaker-ids-slot"  # a run id no run has
# tables every stage must fill for such a video: the test is about rows, so there must be some
FILLED = ("speech_segments", "transcripts", "face_tracks", "bindings", "clips", "clip_quality")


def _batch_rows(table: str, batch: str, video_ids: list[str]) -> pl.DataFrame:
    """The rows of ``table`` that ``batch``'s materialization of it wrote: ingest's rows of the
    batch for its tables (the stages add their own rejects), the batch's videos' otherwise."""
    if table == "rejects":
        return lake.scan(table).filter((pl.col("batch_id") == batch) & (pl.col("stage") == "ingest")).collect()
    if table == "videos":
        return lake.scan(table).filter(pl.col("batch_id") == batch).collect()
    return lake.scan(table).filter(pl.col("video_id").is_in(video_ids)).collect()


def _materializations(events) -> list:
    return [e.dagster_event.event_specific_data.materialization for e in events if e.dagster_event and e.dagster_event.event_type_value == "ASSET_MATERIALIZATION"]


def _step_windows(events, step_key: str) -> tuple[float, float]:
    times = {
        e.dagster_event.event_type_value: e.timestamp
        for e in events
        if e.dagster_event and e.dagster_event.step_key == step_key and e.dagster_event.event_type_value in ("STEP_START", "STEP_SUCCESS")
    }
    return times["STEP_START"], times["STEP_SUCCESS"]


def test_two_batches_at_once_on_dask_over_s3(tmp_path, ingest_inputs, demo_corpus_dir, shipped_models, moto_endpoint, monkeypatch):
    from dask.distributed import LocalCluster

    uri = _use_s3(monkeypatch, moto_endpoint)
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # No step log capture: Dagster's local compute log manager follows each step's log with a
    # `tail -F` started in the step's process, and when a Dask worker is torn down its watcher
    # can go with it, leaving tails that ignore SIGTERM (seen in CI under load). A deployment
    # keeps step logs in S3 (deploy/dagster.yaml), which starts no tail.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n  class: NoOpComputeLogManager\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    batches = {}
    for name, kinds in BATCH_FILES.items():
        src = tmp_path / f"inbox_{name}"
        src.mkdir()
        for k in kinds:
            if k in ingest_inputs:
                shutil.copyfile(ingest_inputs[k], src / ingest_inputs[k].name)
            else:
                reencode(demo_corpus_dir / f"{k}.mp4", src / f"{k}.mp4", seconds=DEMO_SECONDS, audio_wav=demo_corpus_dir / f"{k}.mp4")
        [batches[name]] = plan_batches(str(src), 10, uri)

    # Workers, the code server and the run processes take their settings from the environment
    # they start in, like any deployment (the dask executor, the S3 lake, AWS_*, the models).
    monkeypatch.setenv("SPEAKERLAKE_EXECUTOR", "dask")
    instance = _instance()  # the pool of speaker_ids (one slot), as `speakerlake run` sets it
    instance.add_dynamic_partitions(ingest_batches.name, list(batches.values()))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", preload=["orchestration.dask_executor"]) as cluster:
        # the run config the sensor, the schedule and `speakerlake run` pass on a Dask deployment
        monkeypatch.setenv("SPEAKERLAKE_DASK_SCHEDULER", cluster.scheduler_address)
        cfg = {**execution_config(), "resources": {"lake": {"config": {"location": uri}}}}
        assert "cluster" in cfg["execution"]["config"], cfg
        # The test holds the one slot of pool speaker_ids until both runs wait for it: the
        # executor must claim it in each run before the step goes to Dask.
        pools = instance.event_log_storage
        assert pools.claim_concurrency_slot(SPEAKER_IDS_STAGE, HOLDER, "hold").is_claimed
        with workspace_launcher(instance, PROCESS_JOB) as launcher:
            run_ids = {name: launcher.launch(cfg, {"dagster/partition": b}) for name, b in batches.items()}  # both at once
            deadline = time.time() + 600
            while pools.get_concurrency_info(SPEAKER_IDS_STAGE).pending_run_ids != set(run_ids.values()):
                ended = [n for n, r in run_ids.items() if instance.get_run_by_id(r).is_finished]
                assert not ended and time.time() < deadline, f"runs {ended or 'none'} ended / timed out before both waited for the speaker_ids slot"
                time.sleep(1)
            pools.free_concurrency_slots_for_run(HOLDER)
            outcomes = {name: launcher.wait(run_id) for name, run_id in run_ids.items()}
        with cluster.get_client() as client:
            worker_pids = set(client.run(os.getpid).values())
    for name, out in outcomes.items():
        assert out.success, (name, [e.message + str(getattr(getattr(e.dagster_event, "event_specific_data", None), "error", "") or "") for e in out.events if e.level >= 40])

    # every step ran in a dask worker process, none in the run processes
    step_pids = {e.dagster_event.pid for out in outcomes.values() for e in out.events if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
    assert step_pids and step_pids <= worker_pids, (step_pids, worker_pids)
    # the runs overlapped; their speaker_ids steps (pool of one slot) waited for it, then ran one after the other
    for n, out in outcomes.items():
        assert any(e.dagster_event and e.dagster_event.step_key == SPEAKER_IDS_STAGE and e.message.startswith("Step blocked by limit for pool speaker_ids") for e in out.events), n
    a, b = (_step_windows(outcomes[n].events, SPEAKER_IDS_STAGE) for n in ("a", "b"))
    assert a[1] <= b[0] or b[1] <= a[0], (a, b)
    starts = {n: min(e.timestamp for e in out.events) for n, out in outcomes.items()}
    ends = {n: max(e.timestamp for e in out.events) for n, out in outcomes.items()}
    assert max(starts.values()) < min(ends.values()), (starts, ends)

    videos = lake.read("videos")
    ids = {n: sorted(videos.filter(pl.col("batch_id") == b)["video_id"].to_list()) for n, b in batches.items()}
    assert all(len(v) == 1 for v in ids.values()), ids
    status = lake.read("stage_status")
    for n, b in batches.items():
        assert progress(ids[n], status) == {"pending": [], "failed": []}, (n, status)
        done = status.filter(pl.col("video_id").is_in(ids[n]) & (pl.col("status") == "ok"))["stage"].sort().to_list()
        assert done == sorted([*PER_VIDEO_STAGES, SPEAKER_IDS_STAGE]), (n, done)
        assert _batch_rows("rejects", b, ids[n])["reason"].to_list() == [REJECTED[n]]

    # every row each run reported writing for its batch is in the lake, and no other
    written: dict[str, int] = {}
    for n, b in batches.items():
        mats = [m for m in _materializations(outcomes[n].events) if m.partition == b]
        reported = {m.asset_key.to_user_string(): m.metadata["dagster/partition_row_count"].value for m in mats}
        assert len(reported) == len(mats) and all(reported[t] > 0 for t in FILLED), (n, reported)
        for table, rows in reported.items():
            assert _batch_rows(table, b, ids[n]).height == rows, (n, table, rows)
            written[table] = written.get(table, 0) + rows
    assert written["videos"] == 2, written
    for table, rows in written.items():
        if table != "rejects":  # the only one other steps (every stage's rejects) also write
            assert lake.count(table) == rows, (table, lake.count(table), rows)
    # no key is duplicated in any table of the lake
    for table in TABLES:
        unique, not_null = key_check_results(table, lake.read(table))
        assert unique.passed and not_null.passed, (table, unique.metadata, not_null.metadata)
