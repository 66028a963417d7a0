"""The deployment files (deploy/, docs/deployment.md) hold together without Docker or Postgres:
the instance config passes Dagster's schema, the classes it names exist with valid config, the
compose services start commands the image installs, and every variable is documented."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes import class_from_code_pointer

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
DOC = (REPO / "docs" / "deployment.md").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _env_refs(node) -> set[str]:
    """Names in ``{env: NAME}`` values of a Dagster config."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(_env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node)) if node else set()
    return set()


@pytest.fixture(scope="module")
def instance_config(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("deploy_home")
    shutil.copyfile(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(home))  # the schema check every Dagster process does at start
    assert custom_class is None
    return config


def test_instance_config_is_valid_and_keeps_no_secret(instance_config):
    raw = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    db = raw["storage"]["postgres"]["postgres_db"]
    assert all(set(db[k]) == {"env"} for k in ("hostname", "username", "password", "db_name")), db
    # every pool of the definitions gets one slot, per step
    assert instance_config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    pools = set().union(*(node.pools or () for node in _defs().resolve_asset_graph().asset_nodes))
    assert pools == {"speaker_ids", "tiers"}, pools
    deploy_extra = {re.split(r"[=<>\[]", r)[0] for r in PYPROJECT["project"]["optional-dependencies"]["deploy"]}
    for section in ("run_coordinator", "run_launcher", "compute_logs"):
        block = instance_config[section]
        if block["module"].startswith("dagster."):  # in dagster itself: the class and its config are checked
            cls = class_from_code_pointer(block["module"], block["class"])
            result = validate_config(cls.config_type(), block.get("config") or {})
            assert result.success, (section, result.errors)
        else:  # an integration this environment need not have: it must be in the `deploy` extra
            assert block["module"].split(".")[0].replace("_", "-") in deploy_extra, (section, block["module"], deploy_extra)
    assert {"dagster-postgres", "dagster-aws"} <= deploy_extra  # storage: postgres is dagster-postgres's


def test_deploy_extra_matches_the_dagster_pin():
    """Dagster integrations are released in lockstep (1.13.27 ↔ 0.29.27): the deploy extra must
    pin the same integration release as the main dependencies."""
    deps = PYPROJECT["project"]["dependencies"]
    integration = {r.split("==")[1] for r in deps if r.startswith("dagster-") and r.split("==")[0] != "dagster-webserver"}
    assert len(integration) == 1, integration
    for r in PYPROJECT["project"]["optional-dependencies"]["deploy"]:
        assert r.split("==")[1] in integration, r


def _defs() -> dg.Definitions:
    from orchestration.definitions import build_defs

    return build_defs("dask")


def test_compose_services_run_installed_commands():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = compose["services"]
    ours = {name: s for name, s in services.items() if s.get("image") == "speakerlake:latest"}
    assert set(ours) == {"codeserver", "webserver", "daemon", "dask-scheduler", "dask-worker"}, set(ours)
    bin_dir = Path(sys.executable).parent
    for name, s in ours.items():
        assert (bin_dir / s["command"][0]).exists(), (name, s["command"])  # installed by pip install .[cluster,deploy]
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert "--nthreads" in services["dask-worker"]["command"] and services["dask-worker"]["command"][services["dask-worker"]["command"].index("--nthreads") + 1] == "1"
    # the workspace the webserver and daemon load points at the code server's host and port
    [location] = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"]
    code = ours["codeserver"]["command"]
    assert location["grpc_server"]["host"] == "codeserver" and str(location["grpc_server"]["port"]) == code[code.index("-p") + 1]
    assert code[code.index("-m") + 1] == "orchestration.definitions"
    # every process that launches or runs steps finds the cluster, the lake, the instance and the models
    env = ours["dask-worker"]["environment"]
    assert env["SPEAKERLAKE_EXECUTOR"] == "dask" and env["SPEAKERLAKE_LAKE"].startswith("s3://")
    assert env["SPEAKERLAKE_DASK_SCHEDULER"].endswith(services["dask-scheduler"]["command"][services["dask-scheduler"]["command"].index("--port") + 1])
    for name in ("codeserver", "dask-worker"):
        assert ours[name]["volumes"] == ["${SPEAKERLAKE_MODELS_DIR}:/models:ro"], name  # read-only weights


def test_every_variable_is_documented_and_every_copied_path_exists():
    compose_text = (DEPLOY / "docker-compose.yaml").read_text()
    compose = yaml.safe_load(compose_text)
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", compose_text))  # interpolated from the env file ($$ escapes)
    used |= set(compose["services"]["dask-worker"]["environment"])  # what the containers get
    used |= _env_refs(yaml.safe_load((DEPLOY / "dagster.yaml").read_text()))
    example = {line.split("=")[0] for line in (DEPLOY / "example.env").read_text().splitlines() if line and not line.startswith("#")}
    undocumented = sorted(v for v in used if f"`{v}`" not in DOC)
    assert not undocumented, undocumented
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)\}", compose_text))  # no default: must be in the env file
    assert interpolated <= example, sorted(interpolated - example)
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), src
    assert "pip install" in (DEPLOY / "Dockerfile").read_text() and '".[cluster,deploy]"' in (DEPLOY / "Dockerfile").read_text()
