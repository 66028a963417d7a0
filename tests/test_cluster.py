"""The batch job runs on an existing Dask cluster (here a local one with worker processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

from assets.ingest.planning import plan_batches
from orchestration import lake

REPO = Path(__file__).resolve().parent.parent


def test_ingest_on_dask_cluster(tmp_path, ingest_inputs, local_lake, monkeypatch):
    from dask.distributed import LocalCluster

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    src = tmp_path / "inbox"
    src.mkdir()
    for k in ("good_bikes", "good_talking", "empty_file"):
        shutil.copyfile(ingest_inputs[k], src / ingest_inputs[k].name)
    [batch] = plan_batches(str(src), max_files=10)
    with dg.DagsterInstance.get() as inst:
        inst.add_dynamic_partitions("ingest_batches", [batch])

    # Workers take their settings from the environment they start in, like any deployment.
    monkeypatch.setenv("SPEAKERLAKE_EXECUTOR", "dask")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cfg = {"execution": {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}}}
        env = dict(os.environ)
        r = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "orchestration.definitions",
             "--select", "videos,rejects", "--partition", batch, "--config-json", json.dumps(cfg)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        with cluster.get_client() as client:
            worker_pids = set(client.run(os.getpid).values())
    assert lake.count("videos") == 2 and lake.read("rejects")["reason"].to_list() == ["empty_file"]
    # The step ran in a dask worker process, not in the launching `dagster` process.
    with dg.DagsterInstance.get() as inst:
        [run] = inst.get_runs()
        step_pids = {
            e.dagster_event.pid for e in inst.all_logs(run.run_id) if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"
        }
    assert step_pids and step_pids <= worker_pids, (step_pids, worker_pids)
