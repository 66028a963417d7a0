"""`dagster dev -w workspace.yaml` describes the lake (checked through its GraphQL API)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from assets.report import REPORT_ASSET
from orchestration.definitions import build_defs

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _wait_for(port: int, query: str, seconds: float = 240) -> dict:
    deadline, last = time.time() + seconds, None
    while time.time() < deadline:
        try:
            data = _graphql(port, query)
            if data.get("data"):
                return data["data"]
            last = data
        except Exception as e:  # not up yet
            last = e
        time.sleep(1)
    raise AssertionError(f"dagster dev did not answer: {last!r}")


ASSET_QUERY = """
{ assetNodes { assetKey { path } isPartitioned kinds
    metadataEntries { label __typename }
    assetMaterializations(limit: 1) { metadataEntries { label ... on IntMetadataEntry { intValue } } }
    assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } } } }
"""


def test_dagster_dev_shows_the_lake(tmp_path, ingest_inputs, shipped_models):
    """The UI describes the lake: every asset with its kinds, column schema, row count and
    check results, the global speaker ids unpartitioned, the sensor and the schedule, and a
    run started with `speakerlake run` under its job (same code location as the UI's)."""
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    lake_dir = tmp_path / "lake"
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPEAKERLAKE_LAKE": str(lake_dir)}
    # Its own process group (job control): SIGTERM then stops webserver, daemon and code server together.
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _wait_for(port, "{ assetNodes { assetKey { path } } }")  # up (and its instance storage created) before the CLI shares it
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        (inbox / "talking.mp4").write_bytes(ingest_inputs["good_talking"].read_bytes())
        run = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "run", str(inbox), "--lake", str(lake_dir), "--in-process"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        nodes = _graphql(port, ASSET_QUERY)["data"]["assetNodes"]
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        assert set(by_key) == {k.to_user_string() for k in build_defs().resolve_asset_graph().get_all_asset_keys()}
        assert not by_key["speakers"]["isPartitioned"] and not by_key["speaker_assignments"]["isPartitioned"]
        assert by_key["speaker_turns"]["isPartitioned"]
        assert "insightface" not in by_key["shots"]["kinds"] and "insightface" in by_key["face_tracks"]["kinds"]
        assert "whisperx" in by_key["transcripts"]["kinds"] and "whisperx" not in by_key["speaker_turns"]["kinds"]
        for key, node in by_key.items():
            if key in ("release", "lake_maintenance"):  # on request (jobs export_release, maintain_lake), not per batch
                assert not node["assetMaterializations"], key
                continue
            if key in ("vidchat_scores", "vidchat_summary"):  # written when predictions are scored (job score_predictions), not per batch
                assert not node["assetMaterializations"], key
                continue
            (mat,) = node["assetMaterializations"]
            if key == REPORT_ASSET:  # metadata, not a table: the histogram images and the summary
                assert {"summary", "histogram_duration", "histogram_clips_per_speaker"} <= {e["label"] for e in mat["metadataEntries"]}
                continue
            assert "TableSchemaMetadataEntry" in {e["__typename"] for e in node["metadataEntries"]}, key
            counts = {e["label"]: e.get("intValue") for e in mat["metadataEntries"]}
            assert counts.get("dagster/row_count") is not None, key
            checks = {c["name"]: c["executionForLatestMaterialization"] for c in node["assetChecksOrError"]["checks"]}
            assert {f"{key}_key_unique", f"{key}_key_not_null"} <= set(checks), key
            assert all(c and c["status"] == "SUCCEEDED" for c in checks.values()), (key, checks)
        assert by_key["speaker_turns"]["assetMaterializations"][0]["metadataEntries"]
        runs = _graphql(port, '{ runsOrError(filter: {pipelineName: "process_batch"}) { ... on Runs { results { runId status tags { key value } } } } }')
        results = runs["data"]["runsOrError"]["results"]
        assert [r["status"] for r in results] == ["SUCCESS"]
        assert any(t["key"] == "dagster/partition" for t in results[0]["tags"])
        repos = _graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name } schedules { name } } } } }")
        repo = repos["data"]["repositoriesOrError"]["nodes"][0]
        assert {s["name"] for s in repo["sensors"]} == {"new_media_sensor", "refresh_dataset"}
        assert {s["name"] for s in repo["schedules"]} == {"periodic_scan", "weekly_lake_maintenance"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
