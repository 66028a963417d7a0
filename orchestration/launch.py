"""Launch runs the way the Dagster UI does: through the instance, from the workspace's code
location (``workspace.yaml``), so runs started by ``speakerlake run`` appear under their job
in the UI with their logs, and can be re-executed there.

This is what ``dagster job launch`` does, except that the run goes straight to the run
launcher (``instance.launch_run``) instead of the run coordinator's queue, which needs the
daemon of ``dagster dev`` to be dequeued.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._cli.job import _create_run
from dagster._cli.workspace.cli_target import (
    get_code_location_from_workspace,
    get_remote_job_from_remote_repo,
    get_remote_repository_from_code_location,
    get_workspace_from_cli_opts,
)
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster_shared.cli import WorkspaceOpts

WORKSPACE_YAML = Path(__file__).resolve().parent.parent / "workspace.yaml"
TERMINAL = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    events: list  # EventLogEntry


class WorkspaceLauncher:
    """Launches runs of the jobs of the workspace's code location and waits for them."""

    def __init__(self, instance: dg.DagsterInstance, workspace, job_name: str):
        self.instance = instance
        self.workspace = workspace
        self.location = get_code_location_from_workspace(workspace, None)
        self.repo = get_remote_repository_from_code_location(self.location, None)
        self.job_name = job_name

    def launch(self, run_config: Mapping, tags: Mapping[str, str], job_name: str | None = None) -> str:
        """A run of ``job_name`` (default: the launcher's job)."""
        run = _create_run(
            instance=self.instance,
            code_location=self.location,
            remote_repo=self.repo,
            remote_job=get_remote_job_from_remote_repo(self.repo, job_name or self.job_name),
            run_config=dict(run_config),
            tags=dict(tags),
            op_selection=None,
            run_id=None,
        )
        self.instance.launch_run(run.run_id, self.workspace)
        return run.run_id

    def wait(self, run_id: str, poll_s: float = 0.5) -> RunOutcome:
        while True:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.status in TERMINAL:
                break
            time.sleep(poll_s)
        events = [r.event_log_entry for r in self.instance.get_records_for_run(run_id, limit=100_000).records]
        return RunOutcome(run_id, run.status == DagsterRunStatus.SUCCESS, events)


@contextmanager
def workspace_launcher(instance: dg.DagsterInstance, job_name: str, workspace_yaml: Path = WORKSPACE_YAML) -> Iterator[WorkspaceLauncher]:
    """A launcher over the code location of ``workspace_yaml`` (a code server it starts and stops)."""
    opts = WorkspaceOpts(workspace=[str(workspace_yaml)])
    with get_workspace_from_cli_opts(instance, version=dg.__version__, workspace_opts=opts, log_level="WARNING") as workspace:
        yield WorkspaceLauncher(instance, workspace, job_name)
