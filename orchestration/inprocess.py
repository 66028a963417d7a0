"""Jobs executed in this process (``execute_in_process`` on an ephemeral instance): the batches
of a lake through ``process_batch``, then job ``retier`` — what `speakerlake run --in-process`
does, minus the CLI, the code server and the run worker process, and with the models this
process has already loaded (the stages cache them per process). For test fixtures that need a
pipeline lake and for the benchmark, which times a batch without process start-up; the CLI
itself is tested by tests/test_pipeline.py and tests/test_orchestration.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg


def _defs(lake_uri: str, resources: Mapping | None) -> dg.Definitions:
    from orchestration.definitions import build_defs
    from orchestration.resources import LakeResource, models_from_env

    given = dict(resources or {})
    if "models" not in given:  # the model settings of this process's environment, as the CLI's run workers read them
        given["models"] = models_from_env(resolved=True)
    return build_defs(resources={**given, "lake": LakeResource(location=lake_uri)})


def run_batches(batches: Sequence[str], lake_uri: str, resources: Mapping | None = None) -> None:
    """Job ``process_batch`` on each of ``batches`` (planned in ``lake_uri``), one after another."""
    from orchestration.partitions import ingest_batches
    from orchestration.sensors import PROCESS_JOB

    job = _defs(lake_uri, resources).resolve_job_def(PROCESS_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(ingest_batches.name, list(batches))
        for batch in batches:
            if not job.execute_in_process(partition_key=batch, instance=instance).success:
                raise RuntimeError(f"batch {batch} of {lake_uri} failed")


def run_retier(lake_uri: str, resources: Mapping | None = None) -> None:
    """Job ``retier``: the dataset-wide tables of ``lake_uri`` from its batches' tables."""
    from assets.tiers.assets import RETIER_JOB

    with dg.DagsterInstance.ephemeral() as instance:
        if not _defs(lake_uri, resources).resolve_job_def(RETIER_JOB).execute_in_process(instance=instance).success:
            raise RuntimeError(f"job {RETIER_JOB} on {lake_uri} failed")


def run_pipeline(source: Path | str, lake_uri: str, batch_size: int = 10, resources: Mapping | None = None) -> list[str]:
    """Plan the media of ``source`` as new batches of ``lake_uri``, run them, then job ``retier``; the new batches."""
    from assets.ingest.planning import plan_batches

    batches = plan_batches(str(source), batch_size, lake_uri)
    run_batches(batches, lake_uri, resources)
    run_retier(lake_uri, resources)
    return batches
