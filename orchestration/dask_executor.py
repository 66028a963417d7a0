"""Dask executor for partitioned runs.

dagster-dask 0.29.27 submits the ``DagsterRun`` to ``Client.submit`` as a plain argument.
Dask ≥ 2025 walks tuple arguments looking for futures, and a partitioned run's record
contains a partitions subset that forbids iteration, so every partitioned run fails
("Iteration is not allowed on `@record` KeyRangesPartitionsSubset"). This executor is
dagster-dask's, except that the run and the known state travel serialized (opaque strings
dask does not walk) and are deserialized on the worker.
"""

from __future__ import annotations

import dask.distributed
from dagster import _check as check
from dagster._core.definitions.executor_definition import ExecutorDefinition
from dagster._core.errors import raise_execution_interrupts
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._serdes import deserialize_value, serialize_value
from dagster._utils import iterate_with_context
from dagster_dask.executor import DaskExecutor, dask_executor, get_dask_resource_requirements, query_on_dask_worker


def _run_step_on_worker(dependencies, recon_job, run_json, run_config, step_keys, instance_ref, state_json):
    run = deserialize_value(run_json)
    state = deserialize_value(state_json) if state_json else None
    return query_on_dask_worker(dependencies, recon_job, run, run_config, step_keys, instance_ref, state)


class PartitionSafeDaskExecutor(DaskExecutor):
    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan):
        check.invariant(plan_context.instance.is_persistent, "Dask execution requires a persistent DagsterInstance")
        instance = plan_context.instance
        job_name = plan_context.job_name
        cluster = self._cluster(job_name)
        run_json = serialize_value(plan_context.dagster_run)
        state_json = serialize_value(execution_plan.known_state) if execution_plan.known_state else None
        with dask.distributed.Client(cluster) as client:
            futures, by_key = [], {}
            for level in execution_plan.get_steps_to_execute_by_level():
                for step in level:
                    deps = [by_key[k] for inp in step.step_inputs for k in inp.dependency_keys]
                    fut = client.submit(
                        _run_step_on_worker,
                        deps,
                        plan_context.reconstructable_job,
                        run_json,
                        plan_context.run_config,
                        [step.key],
                        instance.get_ref(),
                        state_json,
                        key=f"{job_name}.{step.key}.{plan_context.run_id}",
                        resources=get_dask_resource_requirements(step.tags),
                    )
                    futures.append(fut)
                    by_key[step.key] = fut
            done = dask.distributed.as_completed(futures, with_results=True)
            for _future, result in iterate_with_context(raise_execution_interrupts, done):
                for event in result:
                    yield check.inst(event, DagsterEvent)

    def _cluster(self, job_name: str):
        if self.cluster_type == "existing":
            return self.build_dict(job_name)["address"]
        if self.cluster_type == "local":
            from dask.distributed import LocalCluster

            return LocalCluster(**self.build_dict(job_name))
        raise ValueError(f"speakerlake's dask executor supports 'existing' and 'local' clusters, not {self.cluster_type!r}")


def _make(init_context):
    ((cluster_type, cluster_configuration),) = init_context.executor_config["cluster"].items()
    return PartitionSafeDaskExecutor(cluster_type, cluster_configuration)


# Same name and config schema as dagster-dask's executor, so run config is unchanged.
partition_safe_dask_executor = ExecutorDefinition(
    name="dask",
    config_schema=dask_executor.config_schema,
    executor_creation_fn=_make,
    requirements=dask_executor._requirements_fn,
    description=__doc__,
)
