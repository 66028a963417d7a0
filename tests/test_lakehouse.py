"""Issue 3: lakehouse foundation — ingest on local and S3 lakes, idempotency, rejects,
incremental sensor/schedule, DuckDB vs deltalake consistency, CLI, definitions."""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.ingest import assets as ingest_assets
from assets.ingest.ingest import ingest_file
from assets.ingest.planning import plan_batches
from orchestration import lake
from orchestration.resources import default_resources
from orchestration.tables import TABLES
from tests.conftest import TEST_SECRET
from tests.media_factory import REJECT_KINDS

REPO = Path(__file__).resolve().parent.parent


def _source_with(tmp_path: Path, inputs: dict[str, Path], names: list[str]) -> Path:
    src = tmp_path / "inbox"
    src.mkdir(exist_ok=True)
    for n in names:
        shutil.copyfile(inputs[n], src / inputs[n].name)
    return src


def _ingest(instance: dg.DagsterInstance, batch_id: str) -> dg.ExecuteInJobResult:
    instance.add_dynamic_partitions("ingest_batches", [batch_id])
    return dg.materialize([ingest_assets.ingest], partition_key=batch_id, instance=instance, resources=default_resources())


def test_ingest_local_and_s3_idempotent(lake_uri, tmp_path, ingest_inputs):
    src = _source_with(tmp_path, ingest_inputs, list(ingest_inputs))
    [batch] = plan_batches(str(src), max_files=100)
    inst = dg.DagsterInstance.ephemeral()
    assert _ingest(inst, batch).success

    videos = lake.read("videos")
    assert videos.height == 2
    talking = videos.filter(pl.col("source_uri").str.ends_with("talking.mp4")).row(0, named=True)
    assert talking["has_audio"] and talking["audio_rate"] == 16000 and talking["audio_channels"] == 1
    assert talking["width"] == 176 and talking["height"] == 144 and abs(talking["duration_s"] - 4.8) < 0.05
    assert talking["video_codec"] == "h264" and talking["video_bitrate"] > 0 and talking["n_frames"] == 120
    assert talking["raw_uri"].startswith(lake_uri + "/raw/") and lake.uri_exists(talking["raw_uri"])
    rejects = lake.read("rejects")
    assert sorted(rejects["reason"].to_list()) == sorted(REJECT_KINDS)

    before = {t: lake.read(t).drop([c for c in ("ingested_at", "rejected_at") if c in TABLES[t].schema]).sort(pl.all()) for t in ("videos", "rejects", "batch_files")}
    assert _ingest(inst, batch).success  # rerun of the same batch
    assert plan_batches(str(src), max_files=100) == []  # nothing new to plan
    for t, df in before.items():
        after = lake.read(t).drop([c for c in ("ingested_at", "rejected_at") if c in TABLES[t].schema]).sort(pl.all())
        assert after.equals(df), f"{t} changed on rerun"


@pytest.mark.parametrize("kind", REJECT_KINDS)
def test_reject_kind(kind, ingest_inputs, local_lake):
    out = ingest_file(str(ingest_inputs[kind]), "b-test")
    assert out["reject"]["reason"] == kind, out
    assert out["reject"]["message"]


def test_reject_manifest_path_escaping_root(tmp_path, ingest_inputs, local_lake):
    root = tmp_path / "corpus"
    root.mkdir()
    shutil.copyfile(ingest_inputs["good_bikes"], root / "bikes.mp4")
    outside = tmp_path / "secret.mp4"
    shutil.copyfile(ingest_inputs["good_talking"], outside)
    manifest = root / "manifest.csv"
    manifest.write_text("path\nbikes.mp4\n../secret.mp4\n/etc/passwd\n")
    [batch] = plan_batches(str(manifest), max_files=10)
    inst = dg.DagsterInstance.ephemeral()
    assert _ingest(inst, batch).success
    assert lake.read("videos")["source_uri"].to_list() == [str(root / "bikes.mp4")]
    rej = lake.read("rejects").sort("source_uri")
    assert rej["reason"].to_list() == ["path_escapes_root", "path_escapes_root"]
    assert set(rej["source_uri"].to_list()) == {"../secret.mp4", "/etc/passwd"}


def test_jsonl_manifest_and_same_bytes_other_name_is_noop(tmp_path, ingest_inputs, local_lake):
    root = tmp_path / "m"
    root.mkdir()
    shutil.copyfile(ingest_inputs["good_bikes"], root / "a.mp4")
    (root / "list.jsonl").write_text('{"path": "a.mp4"}\n')
    inst = dg.DagsterInstance.ephemeral()
    [b1] = plan_batches(str(root / "list.jsonl"), max_files=10)
    assert _ingest(inst, b1).success
    shutil.copyfile(ingest_inputs["good_bikes"], root / "copy_of_a.mp4")
    (root / "list.jsonl").write_text('{"path": "a.mp4"}\n{"path": "copy_of_a.mp4"}\n')
    [b2] = plan_batches(str(root / "list.jsonl"), max_files=10)  # only the new name is planned
    assert lake.read("batch_files").filter(pl.col("batch_id") == b2)["source_uri"].to_list() == [str(root / "copy_of_a.mp4")]
    assert _ingest(inst, b2).success
    videos = lake.read("videos")
    assert videos.height == 1 and videos["batch_id"][0] == b1
    dup = lake.read("rejects").filter(pl.col("batch_id") == b2)
    assert dup["reason"].to_list() == ["duplicate"] and dup["video_id"][0] == videos["video_id"][0]


def test_two_identical_files_in_one_batch_keep_one_and_reject_the_other_as_duplicate(tmp_path, ingest_inputs, local_lake):
    """Issue 21: the second copy used to vanish (in ``batch_files`` but in neither ``videos``
    nor ``rejects``); it is a ``duplicate`` reject naming the kept copy, also after a rerun."""
    root = tmp_path / "same"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copyfile(ingest_inputs["good_bikes"], root / name)
    [batch] = plan_batches(str(root), max_files=10)
    inst = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # the rerun must give the same rows
        assert _ingest(inst, batch).success
        videos, rejects = lake.read("videos"), lake.read("rejects")
        planned = set(lake.read("batch_files")["source_uri"].to_list())
        assert planned == {str(root / "a.mp4"), str(root / "b.mp4")}
        assert set(videos["source_uri"].to_list()) | set(rejects["source_uri"].to_list()) == planned
        assert videos.height == 1 and rejects["reason"].to_list() == ["duplicate"]
        assert rejects["video_id"][0] == videos["video_id"][0]
        assert videos["source_uri"][0] in rejects["message"][0]


def test_sensor_adds_only_new_content(tmp_path, ingest_inputs, local_lake, monkeypatch):
    from orchestration.sensors import new_media_sensor

    src = _source_with(tmp_path, ingest_inputs, ["good_bikes", "good_talking"])
    monkeypatch.setenv("SPEAKERLAKE_SOURCE", str(src))
    monkeypatch.setenv("SPEAKERLAKE_BATCH_MAX_FILES", "1")
    monkeypatch.setenv("SPEAKERLAKE_SETTLE_SECONDS", "0")
    inst = dg.DagsterInstance.ephemeral()

    def tick():
        res = new_media_sensor(dg.build_sensor_context(instance=inst))
        if isinstance(res, dg.SensorResult):
            for req in res.dynamic_partitions_requests:
                inst.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return res

    first = tick()
    assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 2  # capped at 1 file per batch
    assert sorted(r.partition_key for r in first.run_requests) == sorted(inst.get_dynamic_partitions("ingest_batches"))
    assert isinstance(tick(), dg.SkipReason)  # nothing new

    shutil.copyfile(ingest_inputs["too_short"], src / "late_arrival.mp4")
    third = tick()
    assert isinstance(third, dg.SensorResult) and len(third.run_requests) == 1
    new_batch = third.run_requests[0].partition_key
    files = lake.read("batch_files").filter(pl.col("batch_id") == new_batch)["source_uri"].to_list()
    assert files == [str(src / "late_arrival.mp4")]


def test_sensor_waits_for_files_being_written(tmp_path, ingest_inputs, local_lake, monkeypatch):
    """A file still being written (fresh mtime, or a downloader's .part name) is not planned yet."""
    import os
    import time

    from orchestration.sensors import new_media_sensor

    src = _source_with(tmp_path, ingest_inputs, ["good_bikes"])
    shutil.copyfile(ingest_inputs["good_talking"], src / "upload.mp4.part.mp4")
    monkeypatch.setenv("SPEAKERLAKE_SOURCE", str(src))
    monkeypatch.setenv("SPEAKERLAKE_SETTLE_SECONDS", "30")
    inst = dg.DagsterInstance.ephemeral()
    assert isinstance(new_media_sensor(dg.build_sensor_context(instance=inst)), dg.SkipReason)  # both too fresh
    old = time.time() - 120
    os.utime(src / "bikes.mp4", (old, old))
    os.utime(src / "upload.mp4.part.mp4", (old, old))
    res = new_media_sensor(dg.build_sensor_context(instance=inst))
    [req] = res.run_requests
    planned = lake.read("batch_files").filter(pl.col("batch_id") == req.partition_key)["source_uri"].to_list()
    assert planned == [str(src / "bikes.mp4")]


def test_sensor_recovers_planned_batch_without_partition(tmp_path, ingest_inputs, local_lake, monkeypatch):
    """A tick that died after planning (partition never added) is picked up by the next tick."""
    from orchestration.sensors import new_media_sensor

    src = _source_with(tmp_path, ingest_inputs, ["good_bikes"])
    [orphan] = plan_batches(str(src), max_files=10)
    monkeypatch.setenv("SPEAKERLAKE_SOURCE", str(src))
    monkeypatch.setenv("SPEAKERLAKE_SETTLE_SECONDS", "0")
    res = new_media_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral()))
    assert [r.partition_key for r in res.run_requests] == [orphan]


def test_schedule_scans_source(tmp_path, ingest_inputs, local_lake, monkeypatch):
    from orchestration.schedules import build_periodic_scan

    periodic_scan = build_periodic_scan()
    assert build_periodic_scan("*/5 * * * *").cron_schedule == "*/5 * * * *"  # the cadence is read when definitions are built
    src = _source_with(tmp_path, ingest_inputs, ["good_bikes"])
    monkeypatch.setenv("SPEAKERLAKE_SOURCE", str(src))
    monkeypatch.setenv("SPEAKERLAKE_SETTLE_SECONDS", "0")
    with dg.instance_for_test() as inst:
        reqs = periodic_scan(dg.build_schedule_context(instance=inst))
        assert len(reqs) == 1 and inst.get_dynamic_partitions("ingest_batches") == [reqs[0].partition_key]
        assert isinstance(periodic_scan(dg.build_schedule_context(instance=inst)), dg.SkipReason)


def test_duckdb_counts_equal_deltalake(lake_uri, tmp_path, ingest_inputs):
    src = _source_with(tmp_path, ingest_inputs, list(ingest_inputs))
    [batch] = plan_batches(str(src), max_files=100)
    assert _ingest(dg.DagsterInstance.ephemeral(), batch).success
    con = lake.duckdb_connection()
    for name in TABLES:
        duck = con.sql(f"SELECT count(*) FROM {name}").fetchone()[0]
        assert duck == lake.count(name), name
        assert [c for c in con.sql(f"SELECT * FROM {name} LIMIT 0").columns] == list(TABLES[name].schema), name
    assert con.sql("SELECT count(*) FROM videos").fetchone()[0] == 2


def test_no_credentials_in_metadata_or_logs(tmp_path, ingest_inputs, moto_endpoint, monkeypatch, capfd):
    from tests.conftest import _use_s3

    monkeypatch.setenv("SPEAKERLAKE_LAKE", _use_s3(monkeypatch, moto_endpoint))  # only S3 lakes have credentials
    src = _source_with(tmp_path, ingest_inputs, ["good_bikes", "empty_file"])
    [batch] = plan_batches(str(src), max_files=10)
    inst = dg.DagsterInstance.ephemeral()
    result = _ingest(inst, batch)
    assert result.success
    text = "\n".join(str(e) for e in result.all_events)
    text += "\n".join(str(r) for r in inst.all_logs(result.run_id))
    out, err = capfd.readouterr()
    assert TEST_SECRET not in text + out + err


def _merge_worker(uri_and_env):
    import os

    uri, worker = uri_and_env
    os.environ["SPEAKERLAKE_LAKE"] = uri
    from orchestration import lake as lk

    for i in range(6):
        df = pl.DataFrame(
            {"reject_id": [f"r{i}"], "batch_id": [f"w{worker}"], "stage": ["t"], "source_uri": ["x"], "video_id": [None],
             "reason": ["r"], "message": [f"{worker}-{i}"], "rejected_at": [None]},
            schema=TABLES["rejects"].polars_schema,
        )
        lk.write("rejects", df)
    return True


def test_concurrent_merges_retry_commit_conflicts(local_lake):
    """Two processes MERGE the same keys at once: conflicts are retried, nothing is lost or duplicated."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        assert pool.map(_merge_worker, [(local_lake, 1), (local_lake, 2)]) == [True, True]
    df = lake.read("rejects")
    assert df.height == 6 and df["reject_id"].n_unique() == 6


def test_sql_cli_read_only_and_formats(tmp_path, ingest_inputs, local_lake):
    src = _source_with(tmp_path, ingest_inputs, ["good_bikes"])
    [batch] = plan_batches(str(src), max_files=10)
    assert _ingest(dg.DagsterInstance.ephemeral(), batch).success
    cli = [sys.executable, "-m", "orchestration.cli"]
    ok = subprocess.run(cli + ["sql", "select count(*) as n from videos"], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0 and ok.stdout.split("\n")[2].strip() == "1", ok.stdout + ok.stderr
    for stmt in ("drop view videos", "delete from videos", "create table x as select 1", "copy videos to '/tmp/x.csv'", "attach 'x.db'"):
        bad = subprocess.run(cli + ["sql", stmt], capture_output=True, text=True, cwd=REPO)
        assert bad.returncode == 2 and "read-only" in bad.stderr, (stmt, bad.stderr)
    out = tmp_path / "v.parquet"
    assert subprocess.run(cli + ["sql", "select * from videos", "--format", "parquet", "--out", str(out)], cwd=REPO).returncode == 0
    assert pl.read_parquet(out).height == 1
    js = subprocess.run(cli + ["sql", "select video_id from videos", "--format", "json"], capture_output=True, text=True, cwd=REPO)
    assert '"video_id"' in js.stdout


def test_definitions_validate():
    r = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_s3_prefix_source_and_http_manifest(tmp_path, ingest_inputs, moto_endpoint, monkeypatch):
    """Sources beyond local folders: an S3 prefix (into an S3 lake) and http(s) URLs in a manifest."""
    import functools
    import http.server
    import threading

    import boto3

    from tests.conftest import _use_s3

    lake_uri = _use_s3(monkeypatch, moto_endpoint)
    monkeypatch.setenv("SPEAKERLAKE_LAKE", lake_uri)
    bucket = lake_uri.split("/")[2]
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.upload_file(str(ingest_inputs["good_bikes"]), bucket, "inbox/day1/bikes.mp4")
    s3.upload_file(str(ingest_inputs["empty_file"]), bucket, "inbox/day1/empty.mp4")
    s3.put_object(Bucket=bucket, Key="inbox/readme.txt", Body=b"not media")
    inst = dg.DagsterInstance.ephemeral()
    [b1] = plan_batches(f"s3://{bucket}/inbox/", max_files=10)
    assert _ingest(inst, b1).success
    assert lake.read("videos")["source_uri"].to_list() == [f"s3://{bucket}/inbox/day1/bikes.mp4"]
    assert lake.read("rejects")["reason"].to_list() == ["empty_file"]

    served = tmp_path / "www"
    served.mkdir()
    shutil.copyfile(ingest_inputs["good_talking"], served / "talking.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        port = httpd.server_address[1]
        manifest = tmp_path / "remote.jsonl"
        manifest.write_text(
            f'{{"url": "http://127.0.0.1:{port}/talking.mp4"}}\n{{"url": "http://127.0.0.1:{port}/missing.mp4"}}\n'
        )
        [b2] = plan_batches(str(manifest), max_files=10)
        assert _ingest(inst, b2).success
    finally:
        httpd.shutdown()
    videos = lake.read("videos").filter(pl.col("batch_id") == b2)
    assert videos["source_uri"].to_list() == [f"http://127.0.0.1:{port}/talking.mp4"] and videos["has_audio"][0]
    assert lake.read("rejects").filter(pl.col("batch_id") == b2)["reason"].to_list() == ["fetch_failed"]
