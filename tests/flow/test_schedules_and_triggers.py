"""Scheduled and data-triggered retraining on a real Prefect server: deployments applied from prefect.yaml,
the cron schedule, the data-change trigger, the per-model concurrency limit, and `headstart serve`."""

from __future__ import annotations

import contextvars
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from typer.testing import CliRunner

from flows.concurrency import limit_name, retrain_slot
from flows.services import deploy, ensure_pools
from flows.watch import DataChange, change_id, emit_change, watch
from headstart.cli.main import app
from headstart.library.data.versioning import read_dvc_md5
from tests.support.waiting import wait_for

runner = CliRunner()


@pytest.fixture(scope="module")
def deployed(prefect_server, tmp_path_factory, fashion_idx_dir) -> Path:
    """A workspace whose deployments are applied to the session server (pools created first)."""
    import os

    from headstart.library.data.workspace import init_workspace

    base = tmp_path_factory.mktemp("ops")
    os.environ["HEADSTART_DVC_REMOTE"] = str(base / "remote")
    workspace = init_workspace(base / "ws")
    ensure_pools()
    deploy(prefect_server, workspace)
    return workspace


def runs_of(deployment_name: str) -> list:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(),
        )


def test_schedule_nightly_deployment_is_registered_with_scheduled_runs(deployed) -> None:
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("retrain/nightly")
        pools = {d.name: d.work_pool_name for d in client.read_deployments()}
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert pools == {"nightly": "local", "on-data-change": "local", "gpu": "gpu"}
    scheduled = wait_for(lambda: [r for r in runs_of("retrain/nightly") if r.state_type.value == "SCHEDULED"])
    assert scheduled, "the scheduler created no runs for the cron deployment"
    assert all(r.expected_start_time.hour == 2 and r.expected_start_time.minute == 0 for r in scheduled)


def test_trigger_data_change_starts_exactly_one_run(deployed, monkeypatch) -> None:
    monkeypatch.chdir(deployed)
    result = runner.invoke(app, ["data", "import", "fashion-mnist", "--per-class", "3", "--test-per-class", "2"])
    assert result.exit_code == 0, result.output
    md5 = read_dvc_md5(deployed / "data" / "fashion-mnist.dvc")

    [change] = watch(deployed, Path("params.yaml"))
    assert change == {
        "dataset": "fashion-mnist",
        "old_md5": None,
        "new_md5": md5,
        "event_id": change_id("fashion-mnist", md5),
        "drift": {"skipped": "no champion yet", "champion": None},  # measured once a champion has a reference
        "emitted": True,
        "pending": False,
    }
    triggered = wait_for(lambda: runs_of("retrain/on-data-change"))
    assert len(triggered) == 1
    assert triggered[0].parameters["dataset"] == "fashion-mnist" and triggered[0].parameters["new_md5"] == md5

    [again] = watch(deployed, Path("params.yaml"))  # the same change: recorded, not emitted again
    assert again["emitted"] is False

    emit_change(DataChange("fashion-mnist", None, md5, change["event_id"]))  # even a resent event: same id
    # A later, different change is processed after the resent one: once its run exists, a duplicate run for the
    # resent event would exist too. Waiting on that run replaces a fixed sleep.
    sentinel = DataChange("sentinel", None, "sentinel.dir", change_id("sentinel", "sentinel.dir"))
    emit_change(sentinel)
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    wait_for(lambda: runs_for_md5("sentinel.dir"), what="the sentinel event's run")
    assert len(runs_for_md5(md5)) == 1


def test_a_change_sent_while_the_server_is_unreachable_is_sent_again_and_triggers_once(
    deployed, prefect_server, monkeypatch, tmp_path: Path
) -> None:
    """The events client drops what it cannot deliver: the watcher must not record such an event as sent."""
    import json
    import os
    import sys

    from headstart.ground.params import load_params
    from headstart.library.registry.registry import open_registry
    from headstart.library.storage.event_ledger import EventLedger
    from tests.support.corpus import png_bytes
    from tests.support.faulty_proxy import failing_route

    monkeypatch.chdir(deployed)
    for cls in ("a", "b"):
        (tmp_path / "late" / cls).mkdir(parents=True)
        (tmp_path / "late" / cls / "0.png").write_bytes(png_bytes(len(cls)))
    assert runner.invoke(app, ["data", "import", "folder", str(tmp_path / "late"), "--name", "late"]).exit_code == 0
    md5 = read_dvc_md5(deployed / "data" / "late.dvc")
    headstart = str(Path(sys.executable).parent / "headstart")

    def watch_through(api_url: str) -> tuple[int, dict]:
        env = {**os.environ, "PREFECT_API_URL": api_url}
        done = subprocess.run([headstart, "watch", "--json"], env=env, capture_output=True, text=True, timeout=240)
        [late] = [c for c in map(json.loads, done.stdout.splitlines()) if c["dataset"] == "late"]
        return done.returncode, late

    with failing_route(prefect_server, "/events") as (proxy, unreachable):  # events in and reads both refused
        code, late = watch_through(unreachable)
    assert code == 1 and proxy.refused > 0
    assert (late["emitted"], late["pending"]) == (False, True)
    ledger = EventLedger(open_registry(load_params(deployed / "params.yaml").registry).storage, "fashion-mnist")
    assert ledger.pending() == [late["event_id"]] and not ledger.recorded(late["event_id"])

    code, late = watch_through(prefect_server)  # the server is reachable again: sent again, confirmed
    assert code == 0 and (late["emitted"], late["pending"]) == (True, False)
    assert ledger.pending() == [] and ledger.recorded(late["event_id"])
    code, late = watch_through(prefect_server)  # and never a third time
    assert code == 0 and (late["emitted"], late["pending"]) == (False, False)

    wait_for(lambda: runs_for_md5(md5), what="the triggered run")
    sentinel = DataChange("sentinel-late", None, "late.dir", change_id("sentinel-late", "late.dir"))
    emit_change(sentinel)  # processed after anything sent before it: once its run exists, a duplicate would too
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()
    wait_for(lambda: runs_for_md5("late.dir"), what="the sentinel event's run")
    assert len(runs_for_md5(md5)) == 1


def runs_for_md5(md5: str) -> list:
    """The data-change runs started for one data version (parameters are not filterable server-side)."""
    return [r for r in runs_of("retrain/on-data-change") if r.parameters.get("new_md5") == md5]


@flow(name="hold-retrain-slot")
def hold_slot(model_name: str, seconds: float) -> tuple[float, float]:
    """Occupy the model's retrain slot exactly as the retrain flow does, and report when it held it."""
    with retrain_slot(model_name):
        start = time.monotonic()
        time.sleep(seconds)
        return start, time.monotonic()


def test_concurrency_limit_holds_with_two_runs_at_once(prefect_server) -> None:
    spans: list[tuple[float, float]] = []
    barrier = threading.Barrier(2)

    def request() -> None:
        barrier.wait()
        spans.append(hold_slot("concurrency-test", 2.0))

    # each thread carries this context, where the session's Prefect settings (API URL) live
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(request,)) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    first, second = sorted(spans)
    assert first[1] <= second[0], f"the two runs overlapped: {spans}"
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(limit_name("concurrency-test"))
    assert limit.limit == 1 and limit.active_slots == 0


def test_serve_starts_and_stops_what_it_started(deployed, prefect_server) -> None:
    """With a webhook URL in the environment and --metrics-port, serve also creates the notification automations
    and serves /metrics (both gone or stopped with it; the automations stay on the server, as configuration)."""
    import os
    import urllib.request

    from flows.notifications import automation_names, remove_notifications
    from tests.support.seaweedfs import free_ports

    [metrics_port] = free_ports(1)
    process = subprocess.Popen(
        ["headstart", "serve", "--metrics-port", str(metrics_port)],
        cwd=deployed,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "HEADSTART_WEBHOOK_URL": "http://127.0.0.1:9/secret-token-in-url"},
    )
    try:
        banner = process.stdout.readline()
        assert "Prefect UI: " in banner and prefect_server in banner  # it used the configured server
        with get_client(sync_client=True) as client:
            workers = wait_for(lambda: client.read_workers_for_work_pool("local"), timeout=60)
            for name in automation_names("fashion-mnist").values():
                [automation] = client.read_automations_by_name(name)
                assert automation.actions[0].type == "call-webhook"
        assert workers, "no worker polled the local pool"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as answer:
            assert 'headstart_source_up{source="prefect"} 1.0' in answer.read().decode()
        worker_pids = subprocess.run(
            ["pgrep", "-f", "prefect worker start --pool local"], capture_output=True, text=True
        ).stdout.split()
        assert worker_pids
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0
        printed = banner + process.stdout.read()
        assert "stopped what serve started" in printed and "secret-token-in-url" not in printed
        alive = subprocess.run(["pgrep", "-f", "prefect worker start --pool local"], capture_output=True, text=True)
        assert not set(alive.stdout.split()) & set(worker_pids)
        with pytest.raises(OSError):  # the metrics endpoint stopped with serve
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
        remove_notifications("fashion-mnist")


def test_event_id_is_the_same_in_another_process_and_names_dataset_and_version() -> None:
    """The id dedupes a change across watchers, machines and server restarts: it must not depend on the process
    (no random uuid, no salted hash()) and must tell datasets and versions apart."""
    import sys

    code = "from flows.watch import change_id; print(change_id('fashion-mnist', 'abc.dir'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == change_id("fashion-mnist", "abc.dir")
    ids = {change_id(d, m) for d in ("fashion-mnist", "pets") for m in ("abc.dir", "abd.dir")}
    assert len(ids) == 4
