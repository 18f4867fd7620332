"""A retrain run that survives its process being killed: a real worker runs the deployment, the flow-run process is
SIGKILLed after the epoch-2 checkpoint, the run is Crashed, `prefect flow-run retry` reschedules it, and training
picks up where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from typer.testing import CliRunner

from flows.services import Services, deploy, ensure_pools, start_worker
from headstart.cli.main import app
from headstart.library.training.checkpoints import checkpoint_epoch as published_epoch
from tests.support.leftovers import carrying, kill
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # trains models end to end (`pytest -m 'not slow'` skips them)

EPOCHS = 8
OVERRIDES = [
    f"train.epochs={EPOCHS}",
    "train.scenario=finetune",
    "train.num_workers=0",
    "train.batch_size=16",
    "model.input_size=32",
    "registry.model_name=resume-test",
]


def checkpoint_epoch(workspace: Path, run_id: UUID) -> int:
    """The epoch of the run's last complete checkpoint (0 while there is none)."""
    for checkpoints in workspace.glob(f"runs/*-{str(run_id)[:8]}/checkpoints"):
        try:
            return published_epoch(checkpoints)
        except (OSError, RuntimeError, EOFError):  # the folder LATEST named was just replaced
            return 0
    return 0


def flow_run_pids(run_id: UUID) -> list[int]:
    """Processes executing this flow run: the worker starts each with PREFECT__FLOW_RUN_ID in its environment."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return pids


def worker_lines(folder: Path) -> int:
    """Lines the worker itself (not the flow run) has logged so far."""
    return (folder / "worker.log").read_text().count("| prefect.flow_runs.worker - ")


def state_of(run_id: UUID):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


@pytest.fixture
def gpu_pool_worker(prefect_server, tmp_path: Path, monkeypatch, fashion_idx_dir):
    """A workspace with data, the `retrain/gpu` deployment pointing at it, and a worker polling the `gpu` pool
    (on the CPU here: the pool is what a GPU machine would serve)."""
    from headstart.library.data.workspace import init_workspace

    monkeypatch.setenv("HEADSTART_DVC_REMOTE", str(tmp_path / "remote"))
    workspace = init_workspace(tmp_path / "ws")
    monkeypatch.chdir(workspace)
    data = ["data", "import", "fashion-mnist", "--per-class", "16", "--test-per-class", "4"]
    imported = CliRunner().invoke(app, data)
    assert imported.exit_code == 0, imported.output
    ensure_pools()
    deploy(prefect_server, workspace, names=("gpu",))
    worker = start_worker(prefect_server, "gpu", workspace, tmp_path / "worker.log")
    services = Services(prefect_server, processes=[worker])  # by keyword: the second field is the auth string
    yield workspace
    services.stop()
    # the flow-run processes the worker started run in sessions of their own: a failed test may leave one
    kill(carrying("HEADSTART_WORKSPACE", str(workspace.resolve())))


def test_resume_after_flow_run_process_is_killed(gpu_pool_worker: Path, tmp_path: Path) -> None:
    workspace = gpu_pool_worker
    started = run_deployment("retrain/gpu", parameters={"overrides": OVERRIDES}, timeout=0)
    run_id = started.id

    killed_at = wait_for(lambda: checkpoint_epoch(workspace, run_id) >= 2, 240, 0.05, "the epoch-2 checkpoint")
    lines_before_kill = worker_lines(tmp_path)
    pids = flow_run_pids(run_id)
    assert pids, "no process runs the flow run"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    killed_at = checkpoint_epoch(workspace, run_id)
    assert 2 <= killed_at < EPOCHS

    crashed = wait_for(lambda: (r := state_of(run_id)).state_type.value == "CRASHED" and r, 60, 0.5, "Crashed")
    # The run's executor reports the crash at once and the worker seconds later, re-proposing Crashed if the run is
    # not final by then: a retry in between would be overwritten. Retry once the worker has logged the exit too.
    wait_for(lambda: worker_lines(tmp_path) > lines_before_kill, 60, 0.5, "the worker to handle the exit")
    assert not list(workspace.glob("runs/*/summary.json"))  # nothing half-finished was reported as done

    retry = subprocess.run(["prefect", "flow-run", "retry", str(run_id)], capture_output=True, text=True)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    # the killed attempt's slot lease lapses within a minute; then the worker runs the retry to the end
    final = wait_for(lambda: (r := state_of(run_id)).state.is_final() and r, 300, 1.0, "the retried run to finish")
    worker_log = (tmp_path / "worker.log").read_text()
    assert final.state_type.value == "COMPLETED", f"{final.state}\n{worker_log[-3000:]}"
    assert final.run_count >= 2 and crashed.run_count < final.run_count

    [run_dir] = workspace.glob(f"runs/*-{str(run_id)[:8]}")  # the retry got its run folder back
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    messages = "\n".join(log.message for log in logs)
    assert f"resuming after epoch {killed_at}" in messages
    curves = (run_dir / "curves.csv").read_text().splitlines()
    assert len(curves) == EPOCHS + 1 and curves[1].startswith("1,")  # every epoch once, the first attempt's included
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_id"] == str(run_id) and len(summary["history"]) == EPOCHS
