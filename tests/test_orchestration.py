"""Failures never hide: a setup error fails the run and leaves the batch pending, one bad
video is one stage_error and the rest succeed, `--retry-failed` reruns exactly the failed
videos; the catalogue's generated checks catch a duplicated key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import write_deltalake

from assets.ingest.planning import plan_batches, planned_batches
from orchestration import lake
from orchestration.batch import PER_VIDEO_STAGES, incomplete_batches, stage_work
from orchestration.checks import key_check_names, key_check_results
from orchestration.definitions import build_defs
from orchestration.resources import LakeResource, models_from_env
from orchestration.tables import TABLES

REPO = Path(__file__).resolve().parent.parent
NOT_ASSETS = {"batch_files", "batch_status", "stage_status", "takedowns"}  # bookkeeping tables written by the plumbing (takedowns: by `speakerlake takedown`)
NOT_TABLES = {"release", "dataset_report", "lake_maintenance"}  # assets whose output is files or metadata, not a catalogue table


def cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    # cwd outside the repo: the CLI must not pick up a developer's .env
    return subprocess.run([sys.executable, "-m", "orchestration.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture
def inbox(tmp_path, ingest_inputs) -> Path:
    src = tmp_path / "inbox"
    src.mkdir()
    for name in ("good_talking", "good_bikes"):
        (src / ingest_inputs[name].name).write_bytes(ingest_inputs[name].read_bytes())
    return src


def statuses(uri: str) -> pl.DataFrame:
    return lake.read("stage_status", uri).sort("stage", "video_id")


def test_missing_model_setting_fails_the_run_and_leaves_the_batch_pending(tmp_path, inbox, shipped_models):
    uri = str(tmp_path / "lake")
    env = {k: v for k, v in os.environ.items() if k != "SPEAKERLAKE_FACE_MODEL_DIR"}
    r = cli("run", str(inbox), "--lake", uri, "--in-process", env=env, cwd=tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "SPEAKERLAKE_FACE_MODEL_DIR" in r.stdout and "FAILED" in r.stdout
    (batch,) = planned_batches(uri)
    assert incomplete_batches([batch], uri) == [batch]
    assert statuses(uri).filter(pl.col("stage") == "vision").is_empty()  # nothing marked done
    assert lake.read("rejects", uri).filter(pl.col("reason") == "stage_error").is_empty()  # not the videos' fault

    r = cli("run", str(inbox), "--lake", uri, "--in-process", env=dict(os.environ), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "1 to run" in r.stdout
    st = statuses(uri)
    assert st.height == 2 * (len(PER_VIDEO_STAGES) + 1) and set(st["status"]) == {"ok"}  # + speaker_ids
    assert incomplete_batches([batch], uri) == []


def test_a_corrupt_video_is_one_stage_error_and_retry_failed_reruns_only_it(tmp_path, inbox, shipped_models, monkeypatch):
    uri = str(tmp_path / "lake")
    monkeypatch.setenv("SPEAKERLAKE_LAKE", uri)
    (batch,) = plan_batches(str(inbox), 10, uri)
    defs = build_defs(resources={"lake": LakeResource(location=uri), "models": models_from_env(resolved=True)})
    with dg.DagsterInstance.get() as instance:  # the tests' own DAGSTER_HOME (conftest), shared with the CLI below
        instance.add_dynamic_partitions("ingest_batches", [batch])
        job = defs.resolve_job_def("process_batch")
        assert job.execute_in_process(partition_key=batch, instance=instance, asset_selection=[dg.AssetKey("videos"), dg.AssetKey("rejects")]).success
        videos = lake.read("videos", uri)
        bad = videos.filter(pl.col("source_uri").str.ends_with("talking.mp4")).row(0, named=True)
        good = videos.filter(pl.col("video_id") != bad["video_id"])["video_id"].to_list()
        raw = Path(bad["raw_uri"])
        intact = raw.read_bytes()
        raw.write_bytes(intact[:2048])  # the stored copy got corrupted after ingest
        stage_keys = [k for k in job.asset_layer.executable_asset_keys if k.to_user_string() not in ("videos", "rejects")]
        result = job.execute_in_process(partition_key=batch, instance=instance, asset_selection=stage_keys, raise_on_error=False)
    assert result.success  # one bad video does not fail the batch
    st = statuses(uri)
    errors = st.filter(pl.col("status") == "error")
    assert errors.select("stage", "video_id").rows() == [("vision", bad["video_id"])]
    assert errors["reason"].to_list() == ["stage_error"] and errors["attempts"].to_list() == [1]
    assert set(st.filter(pl.col("video_id").is_in(good))["status"]) == {"ok"}
    assert lake.read("face_tracks", uri, video_ids=good).height > 0
    rej = lake.read("rejects", uri).filter(pl.col("reason") == "stage_error")
    assert rej.select("stage", "video_id").rows() == [("vision", bad["video_id"])] and "Error" in rej["message"][0]
    failed_checks = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "vision_failed_share" in failed_checks  # 1 of 2 videos failed: above check_max_failed_share

    # the cause is fixed; only the failed video runs again, in the failed stage and the ones after it
    raw.write_bytes(intact)
    before = st.filter(pl.col("video_id").is_in(good) | (pl.col("stage") == "audio")).select("stage", "video_id", "updated_at")
    r = cli("run", "--retry-failed", "--lake", uri, "--in-process", env=dict(os.environ), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "work left: vision 1, binding 1, clips 1, clip_quality 1" in r.stdout
    st = statuses(uri)
    assert set(st["status"]) == {"ok"}
    assert set(st.filter(pl.col("video_id") == bad["video_id"])["attempts"]) == {0}
    after = st.filter(pl.col("video_id").is_in(good) | (pl.col("stage") == "audio")).select("stage", "video_id", "updated_at")
    assert after.equals(before)  # neither the good video nor the bad one's audio was processed again
    assert lake.read("face_tracks", uri, video_ids=[bad["video_id"]]).height > 0
    assert lake.read("rejects", uri).filter(pl.col("reason") == "stage_error").is_empty()
    # nothing left to retry
    r = cli("run", "--retry-failed", "--lake", uri, "--in-process", env=dict(os.environ), cwd=tmp_path)
    assert r.returncode == 0 and "0 to run" in r.stdout


def _status(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    now = datetime.now(timezone.utc)
    return pl.DataFrame(
        [{"stage": st, "video_id": v, "status": s, "attempts": 0, "fingerprint": "f", "updated_at": now} for st, v, s in rows],
        schema={"stage": pl.String, "video_id": pl.String, "status": pl.String, "attempts": pl.Int32, "fingerprint": pl.String, "updated_at": pl.Datetime("us", "UTC")},
    )


def test_a_resume_reruns_only_the_stages_that_need_it():
    done = [(st, v, "ok") for v in ("a", "b", "c") for st in ("audio", "vision", "binding", "speaker_ids")]
    # a: clips never ran (a stage added to the pipeline, or a crash after binding); b: complete;
    # c: binding failed
    status = _status(done + [("clips", "b", "ok"), ("clip_quality", "b", "ok"), ("clips", "c", "ok"), ("clip_quality", "c", "ok")])
    status = status.with_columns(pl.when((pl.col("video_id") == "c") & (pl.col("stage") == "binding")).then(pl.lit("error")).otherwise("status").alias("status"))
    assert stage_work(["a", "b", "c"], status) == {"audio": [], "vision": [], "binding": [], "clips": ["a"], "clip_quality": ["a"]}
    assert stage_work(["a", "b", "c"], status, retry_failed=True) == {"audio": [], "vision": [], "binding": ["c"], "clips": ["a", "c"], "clip_quality": ["a", "c"]}
    # a video no stage has seen runs everywhere
    assert all(v == ["d"] for v in stage_work(["d"], status).values())


def test_every_asset_table_has_generated_key_checks():
    graph = build_defs().resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assets = {k.to_user_string() for k in graph.get_all_asset_keys()} - NOT_TABLES
    assert assets == set(TABLES) - NOT_ASSETS
    for t in assets:
        for name in key_check_names(t):
            assert (t, name) in checks, (t, name)


def test_generated_key_checks_fail_on_a_duplicated_key(tmp_path):
    uri = str(tmp_path / "lake")
    rows = pl.DataFrame(
        {"video_id": ["v1", "v1", "v1", "v2"], "turn_id": [0, 1, 1, None], "speaker_local": ["A", "B", "B", "A"], "start": [0.0, 1.0, 1.0, 0.0], "end": [1.0, 2.0, 2.0, 1.0], "overlap": [False] * 4}
    )
    lake.write("speaker_turns", rows.head(2), video_ids=["v1"], lake=uri)
    # a writer that bypassed the catalogue appended a copy of a row and a row without a key
    write_deltalake(lake.table_uri("speaker_turns", uri), TABLES["speaker_turns"].conform(rows.tail(2)).to_arrow(), mode="append")
    results = {r.check_name: r for r in key_check_results("speaker_turns", lake.read("speaker_turns", uri))}
    unique, not_null = key_check_names("speaker_turns")
    assert not results[unique].passed and results[unique].metadata["duplicated_keys"].value == 1
    assert results[unique].metadata["first_keys"].value == "v1/1"
    assert not results[not_null].passed and results[not_null].metadata["rows_with_null_key"].value == 1
    clean = {r.check_name: r.passed for r in key_check_results("speaker_turns", lake.read("speaker_turns", uri).unique(keep="first").drop_nulls("turn_id"))}
    assert clean == {unique: True, not_null: True}


def _ids_by_face(uri: str) -> dict[tuple[str, str], str]:
    """(source file, unit) -> speaker_id: the same face in two lakes has the same key."""
    videos = dict(lake.read("videos", uri).select("video_id", "source_uri").iter_rows())
    return {(Path(videos[v]).name, u): s for v, u, s in lake.read("speaker_assignments", uri).select("video_id", "unit", "speaker_id").iter_rows()}


def test_two_runs_at_once_and_batches_in_either_order_give_the_same_speaker_ids(tmp_path, demo_corpus_dir, shipped_models):
    """Two inboxes with the same two people (two cuts of one conversation, different bytes):
    two `speakerlake run` processes started together on one lake end with two speaker ids,
    each batch processed by one run only (each process runs its own batch first and leaves
    the other's to it), and the ids equal those of ingesting the batches one after the other
    in reverse order (that run on a local Dask cluster of one worker, whose models load once
    for both batches)."""
    from tests.media_factory import reencode

    inboxes = []
    for name, seconds in (("first", 6.0), ("second", 8.0)):  # a two-shot where both speak, then a single
        d = tmp_path / name
        d.mkdir()
        reencode(demo_corpus_dir / "conv_a.mp4", d / f"{name}.mp4", seconds=seconds, audio_wav=demo_corpus_dir / "conv_a.mp4")
        inboxes.append(d)
    env = dict(os.environ)
    together = str(tmp_path / "together")
    procs = [subprocess.Popen([sys.executable, "-m", "orchestration.cli", "run", str(d), "--lake", together, "--in-process"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for d in inboxes]
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out[-3000:]
    assert lake.count("speakers", together) == 2
    with dg.DagsterInstance.get() as instance:
        for b in planned_batches(together):
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="process_batch", tags={"dagster/partition": b}))
            assert len(runs) == 1, (b, [r.tags for r in runs])
    ids = _ids_by_face(together)
    assert len(set(ids.values())) == 2 and {f for f, _ in ids} == {"first.mp4", "second.mp4"}

    reverse = str(tmp_path / "reverse")
    batches = []
    for i, d in enumerate(reversed(inboxes)):  # two batches, second inbox first; one run takes them in batch-id (time) order
        batches += plan_batches(str(d), 10, reverse, now=datetime(2026, 1, 1, 0, 0, i, tzinfo=timezone.utc))
    # on a local Dask cluster of one worker kept for the invocation (issue 22: models load once per worker)
    r = cli("run", "--lake", reverse, "--workers", "1", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "2 to run" in r.stdout, r.stdout[-3000:]
    assert _ids_by_face(reverse) == ids
    first, second = (_setup_seconds(b) for b in sorted(batches))
    assert first["audio"] > 1.0, first  # loads Whisper, the segmentation model and the speaker encoder
    assert second["audio"] < 0.5 and second["vision"] < 0.5, second  # the same worker: already loaded


def _setup_seconds(batch: str) -> dict[str, float]:
    """Step -> setup_seconds of the per-video stages of the (one) run of ``batch``."""
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": batch}))
        out = {}
        for rec in instance.get_records_for_run(run.run_id, limit=100_000).records:
            event = rec.event_log_entry.dagster_event
            if event is not None and event.event_type_value == "ASSET_MATERIALIZATION":
                meta = event.event_specific_data.materialization.metadata
                if "setup_seconds" in meta:
                    out[rec.event_log_entry.step_key] = meta["setup_seconds"].value
        return out


def test_asr_coverage_check_fails_on_a_lake_row_with_coverage_one_half(tmp_path):
    from assets.audio.assets import COVERAGE_CHECK, coverage_check

    uri = str(tmp_path / "lake")
    rows = pl.DataFrame({"video_id": ["good", "half"], "speech_seconds": [10.0, 10.0], "covered_seconds": [9.8, 5.0], "coverage": [0.98, 0.5], "n_windows": [1, 1], "n_decodes": [1, 2], "uncovered": [[], [{"start": 5.0, "end": 10.0}]]})
    lake.write("asr_coverage", rows, video_ids=["good", "half"], lake=uri)
    spec, evaluate = coverage_check()
    assert spec.name == COVERAGE_CHECK and spec.asset_key == dg.AssetKey("transcripts")
    (result,) = evaluate(None, uri, ["good", "half"])
    assert not result.passed
    assert result.metadata["videos_below"].value == 1 and result.metadata["first_offenders"].value == "half (0.50)"
    assert result.metadata["asr_coverage_min"].value == 0.5
    (result,) = evaluate(None, uri, ["good"])
    assert result.passed


def test_definitions_load_as_the_code_server_loads_them():
    # what `dagster dev` and every CLI run do first: names must be unique across jobs and ops
    dg.Definitions.validate_loadable(build_defs())


def test_multiprocess_runs_fork_steps_from_a_preloaded_forkserver():
    """Issue 22 (fixed cost): the run config every launcher passes is valid for process_batch
    and forks steps from a forkserver that imported the step libraries once; importing the
    preload module loads no model and prints nothing (no warning text in a clean run's log)."""
    from orchestration.definitions import build_defs
    from orchestration.execution import STEP_PRELOAD_MODULES, execution_config
    from orchestration.sensors import PROCESS_JOB

    job = build_defs("multiprocess").resolve_job_def(PROCESS_JOB)
    config = execution_config(max_concurrent=2)
    mp = config["execution"]["config"]["multiprocess"]
    assert mp["start_method"]["forkserver"]["preload_modules"] == list(STEP_PRELOAD_MODULES)
    validated = dg.validate_run_config(job, config)["execution"]["multi_or_in_process_executor"]["multiprocess"]
    assert validated["max_concurrent"] == 2 and "forkserver" in validated["start_method"]
    assert "in_process" in execution_config(parallel=False)["execution"]["config"]
    p = subprocess.run([sys.executable, "-c", "import orchestration.step_preload, sys; print(sorted(m for m in ('torch', 'faster_whisper', 'great_expectations') if m in sys.modules))"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    # Great Expectations is only for job retier, which runs in one process
    assert p.stdout.strip() == "['faster_whisper', 'torch']"
    assert not [line for line in p.stderr.splitlines() if "Warning" in line or "Traceback" in line], p.stderr


def test_refresh_dataset_sensor_requests_one_retier_per_finished_batch_unless_one_is_waiting():
    """The dataset-wide tables are not part of a batch run: after a successful batch run the
    sensor asks for job retier, and a retier run still waiting to start covers later batches."""
    from assets.tiers.assets import DATASET_ASSETS, RETIER_JOB

    defs = build_defs("in_process")
    batch_assets = {k.to_user_string() for k in defs.resolve_job_def("process_batch").asset_layer.executable_asset_keys}
    assert not batch_assets & set(DATASET_ASSETS) and {"clips", "clip_quality", "speaker_assignments"} <= batch_assets
    sensor = defs.get_sensor_def("refresh_dataset")

    @dg.op
    def noop() -> None:
        pass

    @dg.job(name="process_batch")
    def batch_run():
        noop()

    with dg.instance_for_test() as instance:
        finished = batch_run.execute_in_process(instance=instance)
        event = next(e for e in finished.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
        ctx = dg.build_run_status_sensor_context(sensor_name="refresh_dataset", dagster_instance=instance, dagster_run=finished.dagster_run, dagster_event=event)
        request = sensor(ctx)
        assert isinstance(request, dg.RunRequest) and request.run_key == f"after:{finished.run_id}"
        assert "in_process" in request.run_config["execution"]["config"]
        waiting = instance.create_run_for_job(defs.resolve_job_def(RETIER_JOB), run_config={}, status=dg.DagsterRunStatus.NOT_STARTED)
        skip = sensor(ctx)
        assert isinstance(skip, dg.SkipReason) and waiting.run_id in skip.skip_message


def test_the_code_location_loads_without_the_stage_libraries():
    """Every Dagster process (code server, run worker, `dagster dev`) imports the definitions;
    the libraries only a step needs (SciPy, trackers, supervision, scikit-image, torch) are
    imported by the steps (and preloaded by the multiprocess forkserver, orchestration/
    step_preload.py), not by the code location. A new module-level import of one fails here."""
    code = "import sys, orchestration.definitions; print(' '.join(sorted(m for m in ('scipy', 'trackers', 'supervision', 'skimage', 'torch') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == []


def test_a_batch_run_is_live_while_its_process_exists_and_marked_failed_once_it_is_gone():
    """What keeps two `speakerlake run` from processing one batch twice, and what clears the
    runs a killed `speakerlake run` leaves marked as started."""
    import socket

    from dagster._core.events import EngineEventData
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    from assets.tiers.assets import RETIER_JOB
    from orchestration.launch import HOST_TAG, earlier_live_run, live_run_of_batch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with dg.DagsterInstance.ephemeral() as instance:

        def started(batch: str, pid: int, host: str) -> DagsterRun:
            run = instance.add_run(DagsterRun(job_name="process_batch", status=DagsterRunStatus.STARTED, tags={"dagster/partition": batch, HOST_TAG: host}))
            instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
            return run

        here = socket.gethostname()
        alive = started("b_alive", os.getpid(), here)
        assert live_run_of_batch(instance, "b_alive") == (alive.run_id, os.getpid())

        gone = started("b_gone", dead.pid, here)
        assert live_run_of_batch(instance, "b_gone") is None
        assert instance.get_run_by_id(gone.run_id).status == DagsterRunStatus.FAILURE
        (failure,) = [r for r in instance.get_records_for_run(gone.run_id).records if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.event_type_value == "PIPELINE_FAILURE"]
        assert f"pid {dead.pid}" in failure.event_log_entry.message

        launching = instance.add_run(DagsterRun(job_name="process_batch", status=DagsterRunStatus.NOT_STARTED, tags={"dagster/partition": "b_launching", HOST_TAG: here}))
        assert live_run_of_batch(instance, "b_launching") == (launching.run_id, None)  # no process yet, launched a moment ago: live

        elsewhere = started("b_elsewhere", os.getpid(), "another-host")  # its pid means nothing here: never holds the batch back, never marked
        assert live_run_of_batch(instance, "b_elsewhere") is None
        assert instance.get_run_by_id(elsewhere.run_id).status == DagsterRunStatus.STARTED

        # the dataset tables: of two invocations' retier runs the one created first runs, if it
        # was created after the other's batches had ended
        before = time.time() - 1
        first = instance.add_run(DagsterRun(job_name=RETIER_JOB, status=DagsterRunStatus.STARTED, tags={HOST_TAG: here}))
        instance.report_engine_event(f"Started process for run (pid: {os.getpid()}).", first, EngineEventData.in_process(os.getpid()))
        time.sleep(0.01)
        second = instance.add_run(DagsterRun(job_name=RETIER_JOB, status=DagsterRunStatus.NOT_STARTED, tags={HOST_TAG: here}))
        assert earlier_live_run(instance, second.run_id, created_after=before) == (first.run_id, os.getpid())
        assert earlier_live_run(instance, first.run_id, created_after=before) is None  # the later one never holds back the earlier
        assert earlier_live_run(instance, second.run_id, created_after=time.time() + 1) is None  # created before these batches ended


def test_ctrl_c_stops_the_run_and_leaves_the_batch_pending(tmp_path, inbox, shipped_models):
    """SIGINT to `speakerlake run` alone (a terminal's Ctrl-C also reaches the run's process):
    the run it waits for is asked to cancel and waited for, not left working unseen; exit 130
    with one line naming the run and how it ended."""
    import signal

    uri = str(tmp_path / "lake")
    # SIGINT as a terminal delivers it, also when the suite itself runs in the background (where it is ignored and children inherit that)
    p = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "run", str(inbox), "--lake", uri, "--in-process"], env=dict(os.environ), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines = []
    for line in p.stdout:  # until the batch's run is launched
        lines.append(line)
        if "(every video): run " in line:
            break
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    out = "".join(lines) + p.communicate(timeout=120)[0]
    assert p.returncode == 130, out[-3000:]
    (batch,) = planned_batches(uri)
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": batch}))
    # the run is ended, and the line says how. CANCELED in a terminal; in a CI job whose shell
    # started the suite in the background the cancel request has been seen not to take and the
    # run to finish (SUCCESS) within the CLI's wait: then nothing is left pending either
    assert run.is_finished and f"interrupted (run {run.run_id}: {run.status.value})" in out, (run.status, out[-3000:])
    assert incomplete_batches([batch], uri) == ([] if run.status == dg.DagsterRunStatus.SUCCESS else [batch])
