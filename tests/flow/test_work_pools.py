"""Work-pool routing on a real Prefect server: one real worker per pool, and each deployment's runs are executed
by its own pool's worker, never by the other's.

The runs are made cheap on purpose: each names a params file that does not exist, so the retrain flow ends Failed
with its own message within seconds of starting. What is under test is which worker ran it, not training."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.deployments import run_deployment

from flows.notifications import model_tag
from flows.services import Services, deploy, ensure_pools, start_worker
from headstart.ground.params import load_params
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # real worker processes and flow-run processes

POOL_OF = {"retrain/nightly": "local", "retrain/gpu": "gpu"}  # as prefect.yaml routes them
RUNS_PER_DEPLOYMENT = 1  # each flow-run process imports torch (~10 s of CPU): one per pool shows the routing
WORKER_NAME = re.compile(r"Worker '(ProcessWorker [0-9a-f-]+)' started")
UUIDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def flow_run_pids(run_ids: set[UUID]) -> list[int]:
    """Processes still executing one of these runs: the worker starts each (in a session of its own, so killing
    the worker's process group does not reach it) with PREFECT__FLOW_RUN_ID in its environment."""
    wanted = {f"PREFECT__FLOW_RUN_ID={run_id}".encode() for run_id in run_ids}
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted & set(environ.read_bytes().split(b"\0")):
                pids.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def test_each_deployments_runs_are_executed_by_its_own_pools_worker(
    prefect_server: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_pools()
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")  # the workers poll every second, not every ten
    logs = {pool: tmp_path / f"worker-{pool}.log" for pool in sorted(set(POOL_OF.values()))}
    services = Services(prefect_server)
    pool_of_run: dict[UUID, str] = {}
    try:
        # The workers start while `prefect deploy` runs: both take seconds, and neither needs the other.
        for pool, log in logs.items():
            services.processes.append(start_worker(prefect_server, pool, workspace, log))
        deploy(prefect_server, workspace, names=tuple(name.split("/")[1] for name in POOL_OF))

        # Each run names its own missing params file, so its Failed message says which run it was.
        missing_file_of: dict[UUID, str] = {}
        for deployment, pool in POOL_OF.items():
            for i in range(RUNS_PER_DEPLOYMENT):
                missing = f"absent-{pool}-{i}.yaml"
                run = run_deployment(deployment, parameters={"params_path": missing}, timeout=0)
                pool_of_run[run.id], missing_file_of[run.id] = pool, missing

        def all_final() -> bool:
            with get_client(sync_client=True) as client:
                return all(client.read_flow_run(run_id).state.is_final() for run_id in pool_of_run)

        wait_for(all_final, 120, 0.5, "every run to end")
    finally:
        services.stop()
        for pid in flow_run_pids(set(pool_of_run)):  # none should be left; if one is, it goes too
            os.kill(pid, signal.SIGKILL)

    # Read back once the workers are gone: these are the states they left, and the names they registered.
    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(run_id) for run_id in pool_of_run]
        registered = {pool: {worker.name for worker in client.read_workers_for_work_pool(pool)} for pool in logs}
        run_logs = {
            run_id: "\n".join(
                log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
            )
            for run_id in pool_of_run
        }
    texts = {pool: log.read_text() for pool, log in logs.items()}
    diagnostics = "\n".join(f"--- worker-{pool}.log\n{text[-2500:]}" for pool, text in texts.items())
    worker_name = {}
    for pool, text in texts.items():
        names = WORKER_NAME.findall(text)
        assert len(names) == 1, f"{pool}: expected one worker start in its log\n{diagnostics}"
        worker_name[pool] = names[0]
        assert worker_name[pool] in registered[pool], f"{pool}: its worker did not register with the pool"
    assert worker_name["local"] != worker_name["gpu"]

    for run in runs:
        pool = pool_of_run[run.id]
        # the flow itself ran (in the workspace) and ended the run with its own message: not Crashed, not skipped
        assert run.state_type.value == "FAILED", f"{run.state}\n{diagnostics}"
        assert f"{missing_file_of[run.id]}: params file not found" in run.state.message
        assert run.work_pool_name == pool  # routed to the deployment's pool...
        assert run.infrastructure_pid  # ...and a worker started a process for it
        # ...and that pool's worker is the one that submitted it (the server keeps the worker's run log)
        assert f"Worker '{worker_name[pool]}' submitting flow run '{run.id}'" in run_logs[run.id], diagnostics

    # Each worker's own log names exactly its pool's runs among ours, none of the other pool's.
    for pool, text in texts.items():
        named = {UUID(found) for found in UUIDS.findall(text)} & set(pool_of_run)
        assert named == {run_id for run_id, p in pool_of_run.items() if p == pool}, diagnostics

    # Every run carries the workspace model's tag from the deploy (`prefect deploy --tag`), and so does its Failed
    # event: what that model's "run failed" automation matches (tests/flow/test_ops_signals.py), so a failing
    # scheduled or triggered run notifies its own model's receiver.
    tag = model_tag(load_params(workspace / "params.yaml").registry.model_name)
    assert all(tag in run.tags for run in runs), [run.tags for run in runs]
    resources = {f"prefect.flow-run.{run_id}" for run_id in pool_of_run}

    def failed_events_naming_the_tag() -> set[str]:
        from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

        failed = EventFilter(
            event=EventNameFilter(name=["prefect.flow-run.Failed"]), resource=EventResourceFilter(id=sorted(resources))
        )
        with get_client(sync_client=True) as client:
            events = client.read_events(failed, limit=50).events
        return {e.resource.id for e in events if any(r.id == f"prefect.tag.{tag}" for r in e.related)}

    wait_for(lambda: failed_events_naming_the_tag() == resources, 30, 0.5, "the Failed events in the history")
