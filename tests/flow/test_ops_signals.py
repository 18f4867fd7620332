"""What the ops stack receives: a webhook POST per gate decision and per failed run (Prefect automations on the
session's server, posting to a capture server on 127.0.0.1), and Prometheus metrics that match the registry,
scraped over HTTP and parsed with prometheus-client's own parser, and stored by a real Prometheus server that
scraped the endpoint throughout (tests/support/prometheus.py)."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.notifications import ensure_notifications, remove_notifications
from flows.ops_metrics import start_metrics_server
from headstart.cli.main import app
from headstart.ground.params import load_params
from headstart.library.registry.registry import open_registry
from tests.support.prometheus import prometheus_binary, scraping
from tests.support.seaweedfs import free_ports
from tests.support.waiting import wait_for
from tests.support.webhook_capture import capturing_webhook

pytestmark = pytest.mark.slow  # trains models end to end (`pytest -m 'not slow'` skips them)
runner = CliRunner()


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """``/metrics`` parsed by prometheus-client: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def run_summary(name: str, *extra: str) -> dict:
    ran = runner.invoke(app, ["run", "--set", "train.scenario=features", "--summary-json", f"{name}.json", *extra])
    assert ran.exit_code == 0, ran.output
    return json.loads(Path(f"{name}.json").read_text())


def triggering_events(client, automation_name: str) -> list[str]:
    """The events (``prefect.event.<id>``) that made the named automation's action run, from the server's event
    history. There must be exactly one automation of that name (serve replaces, never adds)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    [automation] = client.read_automations_by_name(automation_name)
    executed = EventFilter(
        event=EventNameFilter(name=["prefect.automation.action.executed"]),
        resource=EventResourceFilter(id=[f"prefect.automation.{automation.id}"]),
    )
    return [r.id for e in client.read_events(executed, limit=50).events for r in e.related
            if r.role == "triggering-event"]  # fmt: skip


def recorded_firings(model: str, versions: set[str]) -> tuple[int, int] | None:
    """How often the server fired the model's decision automation for these versions' decision events and its
    failure automation at all (executed actions, from the server's event history); None until each decision
    event has fired and the failure automation once. Also checks there is one automation per kind."""
    from prefect.client.orchestration import get_client

    from flows.notifications import automation_names
    from tasks.publish import decision_event_id

    ours = {f"prefect.event.{decision_event_id(model, v)}" for v in versions}
    with get_client(sync_client=True) as client:
        executed = {kind: triggering_events(client, name) for kind, name in automation_names(model).items()}
    decision_firings = sum(1 for event in executed["decision"] if event in ours)
    if not ours <= set(executed["decision"]) or not executed["failure"]:
        return None
    return decision_firings, len(executed["failure"])


def failed_run_id() -> str:
    """The id of this test's failed retrain (the newest Failed one that was given the missing dataset)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    failed = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED])))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["retrain"])),
            flow_run_filter=failed,
            sort=FlowRunSort.START_TIME_DESC,
            limit=20,
        )
    [run] = [r for r in runs if "data.dir=data/no-such-dataset" in (r.parameters.get("overrides") or [])][:1]
    return str(run.id)


def test_each_decision_and_failed_run_is_posted_and_metrics_match_the_registry(
    workspace: Path, prefect_server: str, fashion_idx_dir
) -> None:
    params = load_params(workspace / "params.yaml")
    model = params.registry.model_name
    imported = runner.invoke(app, ["data", "import", "fashion-mnist", "--per-class", "8", "--test-per-class", "4"])
    assert imported.exit_code == 0, imported.output
    port, prometheus_port = free_ports(2)
    metrics = start_metrics_server(params, port, api_url=prefect_server, refresh_seconds=1.0)
    servers = contextlib.ExitStack()
    try:
        before = scrape(port)
        # a real Prometheus scraping the endpoint throughout (where Debian's package is installed; CI requires it)
        binary = prometheus_binary()
        scraper = [f"127.0.0.1:{port}"], prometheus_port, workspace / "prometheus"
        prometheus = servers.enter_context(scraping(binary, *scraper)) if binary else None
        with capturing_webhook() as (url, received):
            ensure_notifications(url, model)
            ensure_notifications(url, model)  # serve started twice: still one automation per kind, one POST each
            try:
                first, second = run_summary("first"), run_summary("second")
                failed = runner.invoke(app, ["run", "--set", "data.dir=data/no-such-dataset"])
                assert failed.exit_code != 0
                versions = {first["version"], second["version"]}
                mine = lambda: [r for r in received if r["body"]["payload"].get("version") in versions]  # noqa: E731
                wait_for(lambda: len(mine()) >= 2, 90, 0.5, "both decisions' POSTs")
                failed_run = f"prefect.flow-run.{failed_run_id()}"  # (another test's run may fail meanwhile)
                of_run = lambda r: r["body"]["resource"]["prefect.resource.id"] == failed_run  # noqa: E731
                failed_posts = lambda: list(filter(of_run, received))  # noqa: E731
                wait_for(failed_posts, 90, 0.5, "the failed run's POST")
                # no fixed sleep: wait until the server recorded each firing as executed (its own history)
                wait_for(lambda: recorded_firings(model, versions) is not None, 60, 0.5, "the executed actions")
                decision_firings, failure_firings = recorded_firings(model, versions)
                failures = failed_posts()
            finally:
                remove_notifications(model)
        decisions = mine()
        assert len(decisions) == 2 and len(failures) == 1, [r["body"]["event"] for r in received]
        assert decision_firings == 2 and failure_firings >= 1  # one firing per decision event, none twice
        assert failures[0]["body"]["event"] == "prefect.flow-run.Failed"
        by_version = {r["body"]["payload"]["version"]: r["body"] for r in decisions}
        for summary in (first, second):
            body = by_version[summary["version"]]
            assert body["event"] == "headstart.gate.decided" and decisions[0]["content_type"] == "application/json"
            payload = body["payload"]
            assert payload["verdict"] == summary["decision"]["verdict"] and payload["model"] == model
            assert payload["primary_metric"] == {"name": "accuracy", "value": summary["metrics"]["accuracy"]}
            assert payload["champion_after"] == summary["champion"]
            failing = [r["rule"] for r in summary["decision"]["rules"] if r["verdict"] == "FAIL"]
            assert payload["failing_rules"] == failing
        assert by_version[second["version"]]["payload"]["champion_before"] == first["champion"]
        assert by_version[first["version"]]["payload"]["champion_before"] is None

        runs = lambda scraped, state: scraped[("headstart_flow_runs", (("flow", "retrain"), ("state", state)))]  # noqa: E731
        read_again = lambda: (  # noqa: E731  (the endpoint reads its sources in the background, every second)
            (scraped := scrape(port))[("headstart_registered_versions", (("model", model),))] == 2
            and runs(scraped, "failed") > runs(before, "failed")
            and scraped
        )
        after = wait_for(read_again, 30, 0.5, "the endpoint's next reads of the registry and the API")
        registry = open_registry(params.registry)
        champion = registry.champion()
        manifest = registry.manifest(champion)
        labels = (("model", model), ("moved_by", "promote"), ("version", champion))
        assert after[("headstart_champion_info", labels)] == 1.0
        assert (
            after[("headstart_champion_primary_metric", (("metric", "accuracy"), ("model", model)))]
            == (manifest["metrics"]["accuracy"])
        )
        assert after[("headstart_registered_versions", (("model", model),))] == 2
        verdict = (("model", model), ("verdict", second["decision"]["verdict"]), ("version", second["version"]))
        assert after[("headstart_last_retrain_info", verdict)] == 1.0
        assert 0 <= after[("headstart_champion_age_seconds", (("model", model),))] < 600
        assert runs(after, "completed") - runs(before, "completed") == 2
        assert runs(after, "failed") - runs(before, "failed") == 1
        assert after[("headstart_source_up", (("source", "prefect"),))] == 1.0
        assert after[("headstart_source_up", (("source", "registry"),))] == 1.0
        if prometheus is not None:  # what Prometheus stored from its own scrapes: the same champion and counts
            value = lambda expression: [float(r["value"][1]) for r in prometheus.query(expression)]  # noqa: E731
            completed_runs = 'headstart_flow_runs{flow="retrain", state="completed"}'
            caught_up = lambda: (  # noqa: E731  (it scrapes every 5 s: wait for a scrape after the last run)
                value(f'headstart_champion_info{{model="{model}", version="{champion}"}}')
                and value(completed_runs) == [runs(after, "completed")]
            )
            wait_for(caught_up, 60, 0.5, "Prometheus to scrape the champion and the runs")
            assert value(f'headstart_champion_primary_metric{{model="{model}", metric="accuracy"}}') == [
                manifest["metrics"]["accuracy"]
            ]
            assert value(f'headstart_registered_versions{{model="{model}"}}') == [2.0]
            assert value('up{job="headstart"}') == [1.0]  # every scrape of the endpoint succeeded
            [completed] = value(completed_runs)
            [failed] = value('headstart_flow_runs{flow="retrain", state="failed"}')
            assert completed == runs(before, "completed") + 2 and failed >= runs(before, "failed") + 1

        # what `make demo` prints while a run works: the run's own log lines, read back from the API
        from prefect.client.orchestration import get_client

        from flows.demo import project_log_lines

        with get_client(sync_client=True) as client:
            seen: set = set()
            lines = project_log_lines(client, second["run_id"], seen)
            assert project_log_lines(client, second["run_id"], seen) == []  # each line shown once
        verdict = second["decision"]["verdict"]
        assert any(line.startswith(f"gate decision {verdict} against {first['version']}") for line in lines), lines
        assert not any(line.startswith("Finished in state") for line in lines)  # Prefect's own lines left out
    finally:
        servers.close()
        metrics.shutdown()


def test_an_overview_that_cannot_be_read_costs_only_the_overview(prefect_server: str, tmp_path: Path) -> None:
    """The publish step against a registry whose champion history is damaged (an alias entry that is not JSON: the
    overview refuses to show a history it cannot trust; a damaged manifest alone is skipped and named now): the
    step fails, but the final summary is on disk, the decision event is on the server and the run's page is
    published."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from headstart.ground.params import Params
    from headstart.ground.run_folder import RunFolder
    from headstart.library.evaluation.gate import Decision, RuleResult
    from headstart.library.registry.errors import RegistryError
    from headstart.library.reports.dashboard import Dashboard, artifact_key
    from tasks.pipeline import steps_by_name
    from tasks.publish import decision_event_id
    from tasks.publish import run as publish
    from tasks.report import RunReport
    from tasks.step import StepContext

    model, version = f"unreadable-{uuid.uuid4().hex[:8]}", "20260101T000000000000Z-cafebabe"
    registry = tmp_path / "registry"
    bad = registry / model / "aliases" / "champion" / "00000001.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    params = Params.model_validate({"registry": {"uri": f"file://{registry}", "model_name": model}})
    decision = Decision("FAIL", [RuleResult("floor accuracy", "0.1000", ">= 0.5", "FAIL")])
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    summary = {"run_id": "local", "run_dir": str(run.root), "version": version, "registry": f"file://{registry}",
               "metrics": {"accuracy": 0.1, "macro_f1": 0.1}, "decision": decision.to_dict(), "champion": None,
               "promoted": None}  # fmt: skip
    page = Dashboard("decision", artifact_key(model, "decision"), "markdown", "# Gate decision", "FAIL")
    results = {"report": RunReport(summary, [page]), "gate": decision, "promote": None}
    ctx = StepContext(params, run, steps_by_name(), results=results)

    with pytest.raises(RegistryError, match="champion history is damaged"):  # raised after everything else
        publish(ctx)
    assert json.loads(run.summary.read_text())["promoted"] is False
    query = {"filter": {"id": {"id": [str(decision_event_id(model, version))]}}, "limit": 5}
    with get_client(sync_client=True) as client:
        events = wait_for(
            lambda: client.request("POST", "/events/filter", json=query).json()["events"], 30, 0.5, "the event"
        )
        keys = [artifact_key(model, what) for what in ("decision", "registry", "overview")]
        published = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    assert events[0]["payload"]["verdict"] == "FAIL" and events[0]["payload"]["failing_rules"] == ["floor accuracy"]
    assert sorted(a.key for a in published) == sorted(keys[:2])  # the run's pages, not the overview


def test_serve_without_a_webhook_url_turns_the_models_notifications_off(prefect_server: str, monkeypatch) -> None:
    from prefect.client.orchestration import get_client

    from flows.notifications import WEBHOOK_ENV, automation_names, configure_notifications
    from headstart.ground.params import Params

    model = "notify-off"
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/hook")
    assert configure_notifications(Params(), model) == list(automation_names(model).values())
    monkeypatch.delenv(WEBHOOK_ENV)
    assert configure_notifications(Params(), model) == []
    with get_client(sync_client=True) as client:
        assert [client.read_automations_by_name(name) for name in automation_names(model).values()] == [[], []]


def test_a_failed_run_notifies_its_own_models_receiver_once_and_never_anothers(
    workspace: Path, prefect_server: str
) -> None:
    """Two models on one Prefect server, each with its receiver: a failure of one model's run posts once to that
    model's receiver and never to the other's (the run carries its model's tag; each failure automation matches
    its own tag)."""
    from prefect.client.orchestration import get_client

    from flows.notifications import automation_names, model_tag

    mine, other = "parts-line-a", "parts-line-b"
    with capturing_webhook() as (mine_url, mine_received), capturing_webhook() as (other_url, other_received):
        ensure_notifications(mine_url, mine)
        ensure_notifications(other_url, other)
        try:
            failed = runner.invoke(
                app, ["run", "--set", f"registry.model_name={mine}", "--set", "data.dir=data/no-such-dataset",
                      "--set", "data.test_dir=null"],
            )  # fmt: skip
            assert failed.exit_code == 1, failed.output  # a failed run (2: refused before any run started)
            run_id = failed_run_id()
            with get_client(sync_client=True) as client:
                assert model_tag(mine) in client.read_flow_run(run_id).tags
            resource = f"prefect.flow-run.{run_id}"
            of_run = lambda received: [r for r in received if r["body"]["resource"]["prefect.resource.id"] == resource]  # noqa: E731
            wait_for(lambda: of_run(mine_received), 90, 0.5, "the failure's POST to its own model's receiver")
            # the triggers service evaluates an event against every automation in one pass, before any action
            # runs: once this model's action is recorded as executed, the other's automation has seen the event
            event_id = of_run(mine_received)[0]["body"]
            wait_for(lambda: _failure_firings(mine, resource), 60, 0.5, "the executed action in the server's history")
            assert _failure_firings(other, resource) == 0
        finally:
            remove_notifications(mine)
            remove_notifications(other)
    assert len(of_run(mine_received)) == 1 and of_run(other_received) == []
    assert event_id["event"] == "prefect.flow-run.Failed"
    assert automation_names(mine)["failure"] != automation_names(other)["failure"]


def _failure_firings(model: str, flow_run_resource: str) -> int:
    """Executed actions of the model's failure automation whose triggering event was about this flow run."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter

    from flows.notifications import automation_names

    with get_client(sync_client=True) as client:
        triggering = [UUID(e.removeprefix("prefect.event.")) for e in triggering_events(
            client, automation_names(model)["failure"])]  # fmt: skip
        if not triggering:
            return 0
        found = client.read_events(EventFilter(id=EventIDFilter(id=triggering)), limit=50).events
    # the triggering event's own resource is the flow run it was about
    return sum(1 for e in found if e.resource.id == flow_run_resource)


PUBLISH = """
import json, sys
from tasks.publish import emit_decision
print(json.dumps(emit_decision(json.loads(sys.argv[1]))))
"""
FORCE = """
import json, sys
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from tasks.publish import GATE_DECIDED, decision_event_id
payload = json.loads(sys.argv[1])
emit_event(event=GATE_DECIDED, resource={"prefect.resource.id": "headstart.model." + payload["model"]},
           payload=payload, id=decision_event_id(payload["model"], payload["version"]))
EventsWorker.drain_all()
"""


@pytest.mark.server
def test_a_decision_published_again_after_a_server_restart_is_not_notified_twice(tmp_path: Path) -> None:
    """Prefect de-duplicates event ids in memory only: after a restart, a retried publish would notify again. The
    publish step looks the decision's id up in the server's history first and does not send it twice; every POST
    carries the event's id, which a re-delivery repeats (the receiver's idempotency key). Each publish is a
    process of its own, as a retried run is, talking to this test's own server."""
    import os
    import signal
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.services import start_server
    from tasks.publish import decision_event_id, event_recorded

    [port] = free_ports(1)
    home, model = tmp_path / "prefect", "restarted-model"
    payload = lambda version: json.dumps({"model": model, "version": version, "verdict": "PASS"})  # noqa: E731

    def publish(script: str, version: str) -> str:
        env = {**os.environ, "PREFECT_API_URL": api_url}
        done = subprocess.run([sys.executable, "-c", script, payload(version)], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()

    def stop(process: subprocess.Popen) -> None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    process, api_url = start_server(port, home, tmp_path / "server.log")
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}), capturing_webhook() as (url, received):
            posts = lambda version: [r for r in received if r["body"]["payload"].get("version") == version]  # noqa: E731
            ensure_notifications(url, model)
            assert publish(PUBLISH, "v1") == "true"
            wait_for(lambda: posts("v1"), 90, 0.5, "the decision's POST")
            first_id = str(decision_event_id(model, "v1"))
            wait_for(lambda: event_recorded(decision_event_id(model, "v1")), 60, 0.5, "the event in the history")
            stop(process)
            process, api_url = start_server(port, home, tmp_path / "server.log")  # the same database
            assert publish(PUBLISH, "v1") == "false"  # already in the history: not sent again
            assert publish(PUBLISH, "v2") == "true"  # a new decision is; its POST marks "later"
            wait_for(lambda: posts("v2"), 90, 0.5, "the next decision's POST")
            assert [p["body"]["id"] for p in posts("v1")] == [first_id]  # one POST, carrying the event's id
            # what a publish without the look-up would do: the same event again, delivered again after the
            # restart (the server forgot the id) -- with the same id in the body for the receiver to drop
            publish(FORCE, "v1")
            wait_for(lambda: len(posts("v1")) == 2, 90, 0.5, "the re-sent event's POST")
            assert {p["body"]["id"] for p in posts("v1")} == {first_id}
            remove_notifications(model)
    finally:
        stop(process)
