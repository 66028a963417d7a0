"""`dagster dev -w workspace.yaml` serves every asset (checked through its GraphQL API)."""

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


def test_dagster_dev_shows_every_asset(tmp_path):
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "SPEAKERLAKE_LAKE": str(tmp_path / "lake")}
    # Its own process group (job control): SIGTERM then stops webserver, daemon and code server together.
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.time() + 180
        nodes = None
        while time.time() < deadline:
            try:
                data = _graphql(port, "{ assetNodes { assetKey { path } isPartitioned } }")
                nodes = data["data"]["assetNodes"]
                if nodes:
                    break
            except Exception:
                pass
            time.sleep(1)
        assert nodes, "dagster dev did not serve asset nodes"
        served = {"/".join(n["assetKey"]["path"]) for n in nodes}
        expected = {k.to_user_string() for k in build_defs().resolve_asset_graph().get_all_asset_keys()}
        assert served == expected
        assert all(n["isPartitioned"] for n in nodes)
        repos = _graphql(port, "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name } schedules { name } } } } }")
        repo = repos["data"]["repositoriesOrError"]["nodes"][0]
        assert {s["name"] for s in repo["sensors"]} == {"new_media_sensor"}
        assert {s["name"] for s in repo["schedules"]} == {"periodic_scan"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
