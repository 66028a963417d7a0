"""The whole pipeline in the test process: each planned batch through ``process_batch``, then
job ``retier``, with ``execute_in_process`` — what `speakerlake run --in-process` does, minus
the CLI, the code server and the run worker process, and with the models this process has
already loaded (the stages cache them per process). For fixtures that need a pipeline lake;
the CLI itself is tested by tests/test_pipeline.py and tests/test_orchestration.py."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


def run_pipeline(source: Path, lake_uri: str, batch_size: int = 10) -> list[str]:
    from assets.ingest.planning import plan_batches
    from assets.tiers.assets import RETIER_JOB
    from orchestration.definitions import build_defs
    from orchestration.resources import LakeResource, models_from_env
    from orchestration.sensors import PROCESS_JOB

    batches = plan_batches(str(source), batch_size, lake_uri)
    defs = build_defs(resources={"lake": LakeResource(location=lake_uri), "models": models_from_env(resolved=True)})
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("ingest_batches", batches)
        for batch in batches:
            assert defs.resolve_job_def(PROCESS_JOB).execute_in_process(partition_key=batch, instance=instance).success, batch
        assert defs.resolve_job_def(RETIER_JOB).execute_in_process(instance=instance).success
    return batches
