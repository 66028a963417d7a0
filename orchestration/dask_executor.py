"""Dask executor for partitioned, concurrent runs.

dagster-dask 0.29.27's executor is not safe for this pipeline in three ways, fixed here:

* it passes the ``DagsterRun`` to ``Client.submit`` as a plain argument. Dask ≥ 2025 walks
  tuple arguments looking for futures, and a partitioned run's record contains a partitions
  subset that forbids iteration, so every partitioned run fails ("Iteration is not allowed
  on `@record` KeyRangesPartitionsSubset"). Here the run and the known state travel
  serialized (opaque strings dask does not walk) and are deserialized on the worker;
* it submits every step up front and lets Dask order them, so Dagster's concurrency
  pools are never claimed: two batch runs would each run ``speaker_ids`` (pool
  ``speaker_ids``) or the tier steps at the same time. Here an ``ActiveExecution`` with the
  instance's concurrency context decides which steps may start, exactly as Dagster's own
  multiprocess executor does, and Dask only runs them; a step waiting for a pool slot stays
  in the run process, not on a worker;
* a step whose upstream failed still ran (its Dask dependency had *completed*, with a
  failure event as its result). Here it is skipped or abandoned like in any Dagster run.

Every step is one Dask task, keyed by run, step and attempt, so two runs of the same job on
one cluster never share a task. A worker that dies mid-step makes Dask reschedule the task
on another worker (the stage writes are idempotent); after
``distributed.scheduler.allowed-failures`` deaths the task raises ``KilledWorker`` and the
step fails like any other step.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

import dask.distributed
from dagster import _check as check
from dagster._core.definitions.executor_definition import ExecutorDefinition
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._serdes import deserialize_value, serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_dask.executor import DaskExecutor, dask_executor, get_dask_resource_requirements, query_on_dask_worker

# The run config of every run on the cluster (orchestration.execution.execution_config): the
# scheduler's address is resolved from the environment of the run process when the run starts,
# so sensors, schedules and `speakerlake run` need not know it.
DASK_EXECUTION_CONFIG = {"execution": {"config": {"cluster": {"existing": {"address": {"env": "SPEAKERLAKE_DASK_SCHEDULER"}}}}}}

# How long the run process waits on Dask before it looks again at pool slots and retries.
POLL_SECONDS = 1.0


def dask_setup(worker) -> None:
    """Worker preload (``dask worker --preload orchestration.dask_executor``; `speakerlake run
    --workers` passes it): SIGTERM gets back its default action in the worker process.

    A worker started from a process that ignores SIGTERM (a nohup-like launcher, some CI
    shells) passes the ignore on to every child, and Dagster ends each step's compute-log
    ``tail -F`` with SIGTERM: ignored, every step then waited about a minute for its tails, and
    the tails outlived the step."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_step_on_worker(recon_job, run_json, run_config, step_key, instance_ref, state_json) -> str:
    """One step on a worker; its events return serialized too (dask cannot size a list of
    Dagster records and warns on every task)."""
    run = deserialize_value(run_json)
    state = deserialize_value(state_json) if state_json else None
    return serialize_value(list(query_on_dask_worker([], recon_job, run, run_config, [step_key], instance_ref, state)))


class PartitionSafeDaskExecutor(DaskExecutor):
    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan):
        check.invariant(plan_context.instance.is_persistent, "Dask execution requires a persistent DagsterInstance")
        instance = plan_context.instance
        run_json = serialize_value(plan_context.dagster_run)
        # the executor's config as the run process resolved it: an {"env": ...} scheduler address
        # is read here, so the workers need not have the variable
        run_config = {**plan_context.run_config, "execution": {"config": {"cluster": {self.cluster_type: self.cluster_configuration}}}}
        with ExitStack() as stack:
            concurrency = stack.enter_context(InstanceConcurrencyContext(instance, plan_context.dagster_run))
            active = stack.enter_context(ActiveExecution(execution_plan, retry_mode=self.retries, instance_concurrency_context=concurrency))
            cluster = self._cluster(plan_context.job_name)
            if not isinstance(cluster, str):  # a LocalCluster of this run: closed with it
                stack.enter_context(cluster)
            client = stack.enter_context(dask.distributed.Client(cluster))
            running: dict[dask.distributed.Future, str] = {}
            attempts: dict[str, int] = {}
            while not active.is_complete:
                if active.check_for_interrupts():
                    active.mark_interrupted()
                    client.cancel(list(running))
                    yield DagsterEvent.engine_event(
                        plan_context,
                        "Dask executor: received termination signal, cancelled the steps in flight",
                        EngineEventData.interrupted(list(running.values())),
                    )
                    raise DagsterExecutionInterruptedError()
                for step in active.get_steps_to_execute():
                    attempts[step.key] = attempts.get(step.key, 0) + 1
                    future = client.submit(
                        _run_step_on_worker,
                        plan_context.reconstructable_job,
                        run_json,
                        run_config,
                        step.key,
                        instance.get_ref(),
                        serialize_value(active.get_known_state()),
                        key=f"{plan_context.job_name}.{step.key}.{plan_context.run_id}.{attempts[step.key]}",
                        resources=get_dask_resource_requirements(step.tags),
                        pure=False,
                    )
                    running[future] = step.key
                yield from active.concurrency_event_iterator(plan_context)
                if not running:  # nothing on the cluster: waiting for a pool slot or a retry time
                    active.sleep_til_ready()
                    yield from active.plan_events_iterator(plan_context)
                    continue
                try:
                    done = dask.distributed.wait(list(running), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED").done
                except TimeoutError:  # none finished yet: look again at interrupts and pool slots
                    done = ()
                for future in done:
                    step_key = running.pop(future)
                    yield from self._step_events(plan_context, active, future, step_key)
                    active.verify_complete(plan_context, step_key)
                yield from active.plan_events_iterator(plan_context)

    def _step_events(self, plan_context, active: ActiveExecution, future, step_key: str):
        """The events a finished task returned; a task that raised (a framework error, or
        ``KilledWorker`` after repeated worker deaths) becomes the step's failure."""
        try:
            events = deserialize_value(future.result(), list)
        except Exception:  # noqa: BLE001 - any task error is this step's failure, reported as such
            step_context = plan_context.for_step(active.get_step_by_key(step_key))
            event = self.log_failure_or_retry_event_after_error(step_context, serializable_error_info_from_exc_info(sys.exc_info()), active.get_known_state())
            active.handle_event(event)
            yield event
            return
        for event in events:
            active.handle_event(check.inst(event, DagsterEvent))
            yield event

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
