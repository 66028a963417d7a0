"""Fixed cost: `speakerlake run` on one short video with the multiprocess executor (the
default) against `speakerlake run --in-process`, the same work in one process (issue 22: at
most 1.5×), and the start-up cost of each step.

Each run is a fresh `speakerlake run` process on a fresh lake and Dagster instance, so both
pay what a user pays: the CLI, the code server, the run worker, model loading. The
multiprocess run also pays its forkserver (which imports the step libraries once) and a fork
per step; a step's start-up cost is the time from ``STEP_WORKER_STARTING`` (the executor
asks for the process) to ``STEP_START`` (the step's code begins), read from the instance's
event log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DONE = re.compile(r"^\[[\d:]+\] (batch \S+|dataset tables) .*: done in ([\d.]+)s$", re.M)


@dataclass
class CliRun:
    parallel: bool
    wall_s: float
    batch_s: float
    retier_s: float
    step_startup_s: dict[str, float] = field(default_factory=dict)


def step_startup(home: Path) -> dict[str, float]:
    """Step key -> seconds from asking for its process to its code starting, over the
    multiprocess runs of the instance at ``home``."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    out: dict[str, float] = {}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        for run in instance.get_runs():
            asked: dict[str, float] = {}
            for rec in instance.get_records_for_run(run.run_id, limit=100_000).records:
                entry = rec.event_log_entry
                event = entry.dagster_event
                if event is None or entry.step_key is None:
                    continue
                if event.event_type_value == "STEP_WORKER_STARTING":
                    asked[entry.step_key] = entry.timestamp
                elif event.event_type_value == "STEP_START" and entry.step_key in asked:
                    out[entry.step_key] = entry.timestamp - asked[entry.step_key]
    return out


def cli_run(source: Path, *, parallel: bool, env: dict[str, str] | None = None, workdir: Path | None = None) -> CliRun:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        run_env = {**(env or os.environ), "DAGSTER_HOME": str(home)}
        cmd = [sys.executable, "-m", "orchestration.cli", "run", str(source), "--lake", str(Path(tmp) / "lake")]
        t0 = time.perf_counter()
        p = subprocess.run([*cmd, *([] if parallel else ["--in-process"])], cwd=REPO, env=run_env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{(p.stdout + p.stderr)[-3000:]}")
        done = {("retier" if what == "dataset tables" else "batch"): float(s) for what, s in DONE.findall(p.stdout)}
        return CliRun(parallel, wall, done.get("batch", float("nan")), done.get("retier", float("nan")), step_startup(home) if parallel else {})


def measure_fixed_cost(source: Path, repeats: int = 1, workdir: Path | None = None) -> tuple[list[CliRun], list[CliRun]]:
    """(multiprocess runs, in-process runs), alternating."""
    multi, single = [], []
    for _ in range(repeats):
        multi.append(cli_run(source, parallel=True, workdir=workdir))
        single.append(cli_run(source, parallel=False, workdir=workdir))
    return multi, single
