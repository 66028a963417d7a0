"""How a run executes its steps: the ``execution`` run config every launcher passes
(``speakerlake run``, the sensor, the schedule).

Multiprocess runs use a *forkserver*: it imports the modules every step needs once per run
(:data:`STEP_PRELOAD_MODULES`), and each step process is forked from it. With the default
``spawn`` every step starts a fresh interpreter and imports Dagster, the definitions, torch,
the model libraries and Great Expectations again: 5-15 s per step on 2 cores, times eleven
steps per batch, which dominated small batches (issue 22: fixed cost).
"""

from __future__ import annotations

import os

# the executor's own module first (Dagster does the same: user imports may patch namedtuple),
# then the job's module, then the libraries the steps import lazily
STEP_PRELOAD_MODULES = ("dagster._core.executor.multiprocess", "orchestration.definitions", "orchestration.step_preload")


def execution_config(*, parallel: bool = True, max_concurrent: int | None = None) -> dict:
    """``{"execution": {"config": ...}}``: multiprocess from a preloaded forkserver, or in-process;
    on a Dask deployment (``SPEAKERLAKE_EXECUTOR=dask``) the cluster whose scheduler
    ``SPEAKERLAKE_DASK_SCHEDULER`` names, whatever ``parallel`` says (docs/deployment.md)."""
    if os.environ.get("SPEAKERLAKE_EXECUTOR") == "dask":
        from orchestration.dask_executor import DASK_EXECUTION_CONFIG

        return DASK_EXECUTION_CONFIG
    if not parallel:
        return {"execution": {"config": {"in_process": {}}}}
    return {
        "execution": {
            "config": {
                "multiprocess": {
                    "max_concurrent": max_concurrent or os.cpu_count() or 1,
                    "start_method": {"forkserver": {"preload_modules": list(STEP_PRELOAD_MODULES)}},
                }
            }
        }
    }
