"""The whole life cycle, as `make demo` shows it: serve, data v1 → triggered retrain → first champion,
data v2 → the watcher's event → the triggered retrain → the gate's decision against the champion."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.ground.errors import ToolError
from headstart.ground.run_folder import find_run_folder
from headstart.library.data.workspace import commit

PAGE = 200  # log lines per API call
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass(frozen=True)
class DemoPlan:
    """What the demo imports (images per class of data v1, data v2 and the fixed test set) and the params it
    trains with beyond the shipped ones (dotted key → value; empty: params.yaml as shipped)."""

    per_class: int
    v2_per_class: int
    test_per_class: int
    trims: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: the sizes and every trimmed param."""
        trims = ", ".join(f"{key}={value}" for key, value in self.trims.items()) or "params.yaml as shipped"
        return f"{self.per_class} → {self.v2_per_class} images/class, {self.test_per_class} test images/class; {trims}"


# `make demo`: small enough for about five minutes on 2 cores, with a clear gain from v1 to v2 (v1 is small enough
# to be fitted as features + logistic regression, v2 large enough to be fine-tuned).
QUICK = DemoPlan(20, 150, 100, {"train.epochs": 4, "model.features_input_size": 96})
# `make demo-full` / `headstart demo --full`: the shipped params.yaml on larger data.
FULL = DemoPlan(200, 300, 100)


def apply_trims(workspace: Path, trims: dict[str, Any]) -> None:
    """Write ``trims`` into the workspace's params.yaml (its comments kept) and commit it, so the deployments'
    runs train with them and the record says so."""
    from headstart.library.data.workspace import set_params_keys

    if not trims:
        return
    set_params_keys(workspace, trims)
    commit(workspace, "demo: quick settings (" + ", ".join(f"{k}={v}" for k, v in trims.items()) + ")", ["params.yaml"])


def import_and_commit(workspace: Path, per_class: int, test_per_class: int, say: Callable[[str], None]) -> str:
    """Import a Fashion-MNIST version through the CLI (as a user would) and commit its .dvc files."""
    args = [
        str(Path(sys.executable).parent / "headstart"),
        "data",
        "import",
        "fashion-mnist",
        "--per-class",
        str(per_class),
    ]
    if test_per_class:
        args += ["--test-per-class", str(test_per_class)]
    done = subprocess.run(args, cwd=workspace, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"data import failed: {done.stderr[-1000:]}")
    commit(workspace, f"data: fashion-mnist {per_class}/class", ["data"])
    from headstart.library.data.versioning import read_dvc_md5

    md5 = read_dvc_md5(workspace / "data" / "fashion-mnist.dvc")
    say(f"data version {md5} ({per_class} images/class) tracked, pushed and committed")
    return md5


def project_log_lines(client, flow_run_id, seen: set) -> list[str]:
    """The run's log lines from Headstart's own loggers (steps, epochs, the gate) not in ``seen`` (log ids; updated),
    read from the Prefect API (the worker ships them there in batches, so a late one is still shown once)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    from headstart.ground.environment import PROJECT_LOGGERS

    of_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    logs: list = []
    while page := client.read_logs(log_filter=of_run, sort=LogSort.TIMESTAMP_ASC, limit=PAGE, offset=len(logs)):
        logs += page  # the API answers at most PAGE at a time
        if len(page) < PAGE:
            break
    new = [log for log in logs if log.id not in seen and log.name.split(".")[0] in PROJECT_LOGGERS]
    seen.update(log.id for log in new)
    return [log.message.splitlines()[0] if log.message else "" for log in new]  # the first line of each


def wait_for_triggered_run(new_md5: str, timeout: float, say: Callable[[str], None]):
    """The on-data-change run created for ``new_md5``, once it reaches a terminal state; its progress (the
    project's log lines: steps, epochs, the gate) is passed to ``say`` as it happens."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline, announced, seen = time.monotonic() + timeout, None, set()
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/on-data-change")
        of_deployment = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        while time.monotonic() < deadline:
            runs = [
                r
                for r in client.read_flow_runs(deployment_filter=of_deployment)
                if r.parameters.get("new_md5") == new_md5  # parameters are not filterable server-side
            ]
            if runs and announced is None:
                announced = runs[0].id
                say(f"the trigger started flow run {runs[0].name} ({runs[0].id}); the worker is running it")
            if runs:
                for line in project_log_lines(client, runs[0].id, seen):
                    say(f"  [{runs[0].name}] {line}")
            if runs and runs[0].state_type.value in TERMINAL:
                time.sleep(2)  # the last lines are shipped in the worker's next batch
                for line in project_log_lines(client, runs[0].id, seen):
                    say(f"  [{runs[0].name}] {line}")
                return runs[0]
            time.sleep(3)
    raise ToolError(f"no finished retrain for data {new_md5} within {timeout:.0f} s")


def summary_of(workspace: Path, flow_run_id: str) -> dict:
    """The summary.json the run wrote (its run folder is named after the flow-run id)."""
    run = find_run_folder(workspace / "runs", flow_run_id)
    if run is None or not run.summary.is_file():
        raise ToolError(f"run {flow_run_id} left no run summary under {workspace / 'runs'}")
    return json.loads(run.summary.read_text())


def lifecycle(
    workspace: Path, versions: list[tuple[int, int]], say: Callable[[str], None], timeout: float
) -> list[dict]:
    """For each (per_class, test_per_class): import, watch (emits the event), wait for the triggered retrain."""
    from flows.watch import watch

    summaries = []
    for per_class, test_per_class in versions:
        md5 = import_and_commit(workspace, per_class, test_per_class, say)
        changes = watch(workspace, Path("params.yaml"))
        say(
            "watcher: "
            + "; ".join(
                f"{c['dataset']} {c['old_md5']} → {c['new_md5']} (event emitted: {c['emitted']})" for c in changes
            )
        )
        run = wait_for_triggered_run(md5, timeout, say)
        if run.state_type.value != "COMPLETED":
            raise ToolError(f"the triggered retrain ended {run.state_type.value}: {run.state.message}")
        summaries.append(summary_of(workspace, run.id))
    return summaries
