"""Launch runs the way the Dagster UI does: through the instance, from the workspace's code
location (``workspace.yaml``), so runs started by ``speakerlake run`` appear under their job
in the UI with their logs, and can be re-executed there.

This is what ``dagster job launch`` does, except that the run goes straight to the run
launcher (``instance.launch_run``) instead of the run coordinator's queue, which needs the
daemon of ``dagster dev`` to be dequeued.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
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
ACTIVE = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
HOST_TAG = "speakerlake/host"  # where the launching `speakerlake run` ran: its run worker's pid means something only there
LAUNCH_GRACE_S = 120.0  # a run launched this long ago whose process never reported is dead, not starting


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
        self.waiting: str | None = None  # the run :meth:`wait` is waiting for

    def launch(self, run_config: Mapping, tags: Mapping[str, str], job_name: str | None = None) -> str:
        """A run of ``job_name`` (default: the launcher's job)."""
        run_id = self.create(run_config, tags, job_name)
        self.start(run_id)
        return run_id

    def create(self, run_config: Mapping, tags: Mapping[str, str], job_name: str | None = None) -> str:
        """A run of ``job_name``, recorded (NOT_STARTED) but not launched yet: see :meth:`start`."""
        run = _create_run(
            instance=self.instance,
            code_location=self.location,
            remote_repo=self.repo,
            remote_job=get_remote_job_from_remote_repo(self.repo, job_name or self.job_name),
            run_config=dict(run_config),
            tags={**tags, HOST_TAG: socket.gethostname()},
            op_selection=None,
            run_id=None,
        )
        return run.run_id

    def start(self, run_id: str) -> None:
        self.instance.launch_run(run_id, self.workspace)

    def wait(self, run_id: str, poll_s: float = 0.5) -> RunOutcome:
        run = self.wait_until_finished(run_id, poll_s=poll_s)
        events = [r.event_log_entry for r in self.instance.get_records_for_run(run_id, limit=100_000).records]
        return RunOutcome(run_id, run.status == DagsterRunStatus.SUCCESS, events)

    def wait_until_finished(self, run_id: str, *, timeout_s: float | None = None, poll_s: float = 0.5):
        """The run once it has finished, or as it is after ``timeout_s``. Meanwhile
        :attr:`waiting` names it (and still does if an interrupt ends the wait)."""
        self.waiting = run_id
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            run = self.instance.get_run_by_id(run_id)
            if (run is not None and run.status in TERMINAL) or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(poll_s)
        self.waiting = None
        return run


@contextmanager
def workspace_launcher(instance: dg.DagsterInstance, job_name: str, workspace_yaml: Path = WORKSPACE_YAML) -> Iterator[WorkspaceLauncher]:
    """A launcher over the code location of ``workspace_yaml`` (a code server it starts and stops)."""
    opts = WorkspaceOpts(workspace=[str(workspace_yaml)])
    with get_workspace_from_cli_opts(instance, version=dg.__version__, workspace_opts=opts, log_level="WARNING") as workspace:
        yield WorkspaceLauncher(instance, workspace, job_name)


def live_run_of_batch(instance: dg.DagsterInstance, batch: str) -> tuple[str, int | None] | None:
    """(run id, pid: None while its process has not started) of a run launched from this machine that is processing ``batch`` now.

    Two `speakerlake run` on one lake (and one Dagster instance) must not both process the
    batch that one of them planned. A run still marked in progress whose process is gone
    (its `speakerlake run` was killed) is marked failed here, so the UI stops showing it as
    running and the batch's pending work is taken up. Runs launched elsewhere (another host,
    the UI, the sensor) cannot be checked from here, so they never hold a batch back: a
    second run of the same batch costs time, not correctness (writes are idempotent)."""
    return _first_live(instance, dg.RunsFilter(tags={"dagster/partition": batch}, statuses=ACTIVE))


def earlier_live_run(instance: dg.DagsterInstance, run_id: str, created_after: float) -> tuple[str, int | None] | None:
    """(run id, pid) of a live run of the same job as ``run_id`` (created, not yet started),
    launched from this machine after ``created_after`` (a POSIX time) and before ``run_id``.

    Two invocations that each create their run and then look for the other's agree on
    which one runs: the one created first. See :func:`live_run_of_batch` for "live"."""
    own = instance.get_run_record_by_id(run_id)
    after = datetime.fromtimestamp(created_after, timezone.utc)
    runs = dg.RunsFilter(job_name=own.dagster_run.job_name, statuses=ACTIVE, created_after=after, created_before=own.create_timestamp)
    return _first_live(instance, runs, skip=run_id)


def _first_live(instance: dg.DagsterInstance, runs: dg.RunsFilter, skip: str | None = None) -> tuple[str, int | None] | None:
    host = socket.gethostname()
    for run in instance.get_runs(filters=runs):
        if run.run_id == skip or run.tags.get(HOST_TAG) != host:
            continue
        pid = _run_worker_pid(instance, run.run_id)
        if pid is None:
            record = instance.get_run_record_by_id(run.run_id)
            if record is not None and time.time() - record.create_timestamp.timestamp() < LAUNCH_GRACE_S:
                return run.run_id, None  # launched a moment ago, its process not started yet
        elif _process_exists(pid):
            return run.run_id, pid
        worker = f"pid {pid}" if pid is not None else f"not started {LAUNCH_GRACE_S:.0f} s after launch"
        instance.report_run_failed(run, f"its run worker ({worker}) is gone: the `speakerlake run` that launched it was killed. Marked failed by a later `speakerlake run`, which takes up its pending work.")
    return None


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    from dagster._core.events import DagsterEventType

    for rec in instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT, limit=20).records:
        event = rec.event_log_entry.dagster_event
        pid = event.event_specific_data.metadata.get("pid") if event is not None and event.event_specific_data is not None else None
        if pid is not None:
            return int(pid.value)
    return None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
